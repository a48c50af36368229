"""Who may send calls into a trunk (CALLS.md "Outbound" step 4).

A trunk may carry an IP ACL, a digest credential, or both; either one suffices:

* IP ACL: the packet's real source address (never a name or address written in the
  message) must fall within one of the ACL's entries (addresses or CIDR ranges, IPv4 or
  IPv6);
* digest: the INVITE is challenged with 407 (`Proxy-Authenticate`, realm = the
  credential's realm, nonces from `opentrunk.sip.digest.DigestChallenger`), and the
  `Proxy-Authorization` of the retried INVITE must verify against the credential's
  stored HA1 (MD5 or SHA-256) with the credential's username, and its `uri` must name
  the INVITE's own Request-URI (RFC 7616 section 3.4.6: "the same resource", so an
  equivalent form such as a differently cased host is accepted, while an answer
  captured from a request to another trunk or number is not).

The verdict is `Verdict.OK`, `Verdict.CHALLENGE` (send the 407 with `challenge` headers;
not a failure: the first INVITE of every digest call gets one) or `Verdict.FORBIDDEN`
(403, code 4060, counted towards the source's lockout by the caller). `reason` is safe
to log: it never holds a secret.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentrunk.edge.views import TrunkView
from opentrunk.sip.digest import DigestChallenger, parse_auth_header
from opentrunk.sip.message import Request
from opentrunk.sip.uri import parse_uri

# The order of the challenges: RFC 8760 wants the strongest first, but most deployed
# PBXes (and sipp) answer the first challenge they see and know only MD5. Offering MD5
# first keeps them working; SHA-256 stays available to clients that pick the strongest.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("MD5", "SHA-256")


class Verdict(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class AuthResult:
    verdict: Verdict
    method: str = ""  # "acl" or "digest" when OK
    reason: str = ""
    challenge: tuple[tuple[str, str], ...] = ()  # headers of the 407


class TrunkAuthenticator:
    """Checks an INVITE against its trunk's ACL and credential."""

    def __init__(
        self,
        key: bytes | None = None,
        *,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
        nonce_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # One process, one key: nonces are checked only by the edge that issued them.
        self._challenger = DigestChallenger(key or os.urandom(32), nonce_ttl=nonce_ttl)
        self._algorithms = algorithms
        self._clock = clock

    def check(self, trunk: TrunkView, request: Request, source_ip: str) -> AuthResult:
        if trunk.acl and trunk.acl_allows(source_ip):
            return AuthResult(Verdict.OK, "acl")
        credential = trunk.credential
        if credential is None:
            why = "source address not in the trunk's IP ACL" if trunk.acl else "no credential"
            return AuthResult(Verdict.FORBIDDEN, reason=why)
        now = self._clock()
        answers = request.headers.get_all("Proxy-Authorization")
        if not answers:
            return self._challenge(credential.realm, now, stale=False)

        def lookup(username: str, realm: str, algorithm: str) -> str | None:
            if username != credential.username or realm != credential.realm:
                return None
            if algorithm == "MD5":
                return credential.ha1_md5
            if algorithm == "SHA-256":
                return credential.ha1_sha256
            return None

        stale = False
        reason = "no matching credentials"
        for value in answers:
            result = self._challenger.verify(
                value,
                method=request.method,
                realm=credential.realm,
                lookup_ha1=lookup,
                now=now,
                request_uri=_uri_to_check(value, request),
                body=request.body,
            )
            if result.ok:
                return AuthResult(Verdict.OK, "digest")
            if result.stale:
                stale = True
            reason = f"digest: {result.outcome.value}"
        if stale:
            return self._challenge(credential.realm, now, stale=True)
        return AuthResult(Verdict.FORBIDDEN, reason=reason)

    def _challenge(self, realm: str, now: float, *, stale: bool) -> AuthResult:
        values = self._challenger.challenge(
            realm, now=now, stale=stale, algorithms=self._algorithms
        )
        return AuthResult(
            Verdict.CHALLENGE,
            reason="stale nonce" if stale else "challenge",
            challenge=tuple(("Proxy-Authenticate", v) for v in values),
        )


def _uri_to_check(answer: str, request: Request) -> str:
    """The `uri` text the answer must carry: its own when it names the same resource as
    the Request-URI (RFC 3261 19.1.4 comparison), else the Request-URI itself, so that
    the digest check refuses the answer as a wrong uri."""
    target = str(request.uri)
    if f'uri="{target}"' in answer:
        # Nearly every client copies the Request-URI verbatim. Should the text stand in
        # another parameter of a crafted answer instead, returning `target` is still
        # the strict choice (the digest is then checked against the Request-URI), so
        # this saves a second read of the header (`verify` reads it too) safely.
        return target
    try:
        _, params = parse_auth_header(answer)
        claimed = params.get("uri")
        if claimed is not None and (claimed == target or parse_uri(claimed) == request.uri):
            return claimed
    except ValueError:  # DigestParseError, SipParseError: verify() reports it
        pass
    return target
