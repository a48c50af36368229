"""HTTP digest authentication for SIP (RFC 7616, RFC 8760; RFC 2617 compatible).

This module owns both sides of digest:

* the server side, `DigestChallenger`: builds 401/407 challenges and verifies the
  `Authorization` / `Proxy-Authorization` answers against *stored HA1 hashes* (never
  passwords);
* the client side, `DigestClient`: answers a challenge from a peer (a carrier that
  challenges our outbound INVITE, for example);
* the shared pieces: `ha1`, `digest_response`, and a robust parser for the
  `Digest k=v, k="quoted, value"` parameter lists.

Nonces are stateless: ``base64url(issued_at[8] | random[12] | HMAC-SHA256(key,
issued_at | random | realm)[:16])``. Any server holding the key can check a nonce, and
an old nonce is answered with ``stale=true`` so the client retries without asking its
user again. Replay protection of ``nc`` does need memory: the challenger keeps, per
nonce that has been used, the highest ``nc`` accepted, in a bounded LRU-ordered table.
Expired nonces at its least recently used end leave it as new ones come in; when the
table is still full, the least recently used entry is evicted and its issue time raises
a *floor*: an unknown nonce issued at or before the floor is treated as stale, so an
eviction can never let a replay through (the cost is one extra challenge round for a
client whose nonce was evicted).

Pure computation: no I/O, no logging. The caller passes ``now`` (seconds since the
epoch, or any clock shared by every server that holds the key). Results and errors never
carry HA1 values, passwords or computed responses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ALGORITHMS",
    "DigestChallenger",
    "DigestClient",
    "DigestParseError",
    "DigestResult",
    "Outcome",
    "answer_challenge",
    "choose_challenge",
    "digest_response",
    "format_auth_params",
    "ha1",
    "parse_auth_header",
]

# Hash functions by the RFC 7616 algorithm name (upper-cased). The "-sess" variants use
# the same hash with a session HA1 (RFC 7616 section 3.4.2).
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}
ALGORITHMS: tuple[str, ...] = (
    "MD5",
    "MD5-SESS",
    "SHA-256",
    "SHA-256-SESS",
    "SHA-512-256",
    "SHA-512-256-SESS",
)

_NONCE_RANDOM = 12
_NONCE_MAC = 16
_NONCE_LEN = 8 + _NONCE_RANDOM + _NONCE_MAC


class DigestParseError(ValueError):
    """A credentials or challenge header that cannot be read as digest parameters."""


def _hash_for(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm.upper().removesuffix("-SESS")
    try:
        return _HASHES[base]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}") from None


def _canonical_algorithm(algorithm: str | None) -> str:
    name = (algorithm or "MD5").upper()
    if name not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return name


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password): the hash a server stores instead of the password.

    For a "-sess" algorithm this is still the plain HA1; the session HA1 is derived per
    request from it and the nonces (so a store keeps one HA1 per base hash).
    """
    h = _hash_for(algorithm)
    return h(f"{username}:{realm}:{password}".encode())


def digest_response(
    *,
    ha1_value: str,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The `response` value of RFC 7616 section 3.4.1 (and RFC 2069 when qop is None)."""
    name = _canonical_algorithm(algorithm)
    h = _hash_for(name)
    a1 = ha1_value
    if name.endswith("-SESS"):
        a1 = h(f"{ha1_value}:{nonce}:{cnonce}".encode())
    if qop == "auth-int":
        ha2 = h(f"{method}:{uri}:{h(body)}".encode())
    else:
        ha2 = h(f"{method}:{uri}".encode())
    if qop is None:
        return h(f"{a1}:{nonce}:{ha2}".encode())
    return h(f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


# --- parameter lists -------------------------------------------------------------------

_TOKEN_STOP = frozenset(' \t,="')


# One `name = value` element (token or quoted string) with the separators around it; the
# whole list is read with it when well formed. Anything else goes to the character-level
# reader, which says what is wrong (or accepts what this one was too strict for).
_SCHEME_END_RE = re.compile(r"[^ \t]*")
_AUTH_PARAM_RE = re.compile(
    r'[ \t,]*([^ \t,="]+)[ \t]*=[ \t]*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^ \t,="]+))[ \t]*(?:,|\Z)',
    re.DOTALL,
)
_SEPARATORS_RE = re.compile(r"[ \t,]*\Z")
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Scheme k=v, k="q", ...`` into the scheme and a dict of lower-cased names.

    Quoted strings may hold commas and ``\\``-escaped characters; whitespace around
    ``=`` and ``,`` is allowed, empty list elements are skipped (RFC 7230 #rule). A
    repeated parameter, an unterminated quote or a missing value raises
    `DigestParseError`.
    """
    text = value.strip()
    scheme_end = _SCHEME_END_RE.match(text)
    assert scheme_end is not None  # matches the empty string at least
    scheme = scheme_end.group()
    if scheme and not any(c in _TOKEN_STOP for c in scheme):
        params: dict[str, str] = {}
        pos = scheme_end.end()
        match = _AUTH_PARAM_RE.match
        while True:
            found = match(text, pos)
            if found is None:
                if _SEPARATORS_RE.match(text, pos) is not None:
                    return scheme, params
                break
            name = found.group(1).lower()
            if name in params:
                break
            quoted = found.group(2)
            if quoted is None:
                params[name] = found.group(3)
            else:
                params[name] = _ESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
            pos = found.end()
    return _parse_auth_header_by_char(text)


def _parse_auth_header_by_char(text: str) -> tuple[str, dict[str, str]]:
    """`parse_auth_header` one character at a time: the reference reader, and the one
    that explains a malformed list."""
    i = 0
    n = len(text)
    while i < n and text[i] not in " \t":
        i += 1
    scheme = text[:i]
    if not scheme or any(c in _TOKEN_STOP for c in scheme):
        raise DigestParseError("missing authentication scheme")
    params: dict[str, str] = {}
    while True:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in _TOKEN_STOP:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise DigestParseError("malformed parameter list")
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            raise DigestParseError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise DigestParseError(f"unterminated quoted value for {name!r}")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                chars.append(c)
                i += 1
            param_value = "".join(chars)
        else:
            start = i
            while i < n and text[i] not in _TOKEN_STOP:
                i += 1
            param_value = text[start:i]
            if not param_value:
                raise DigestParseError(f"parameter {name!r} has no value")
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise DigestParseError("parameters must be separated by commas")
        if name in params:
            raise DigestParseError(f"parameter {name!r} repeated")
        params[name] = param_value
    return scheme, params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Parameters sent as tokens rather than quoted strings (RFC 7616 sections 3.3, 3.4).
_UNQUOTED = frozenset({"algorithm", "qop", "nc", "stale", "charset", "userhash"})


def format_auth_params(scheme: str, params: Iterable[tuple[str, str]]) -> str:
    """Build ``Scheme k="v", ...``; token-valued parameters are written unquoted."""
    parts = [f"{k}={v}" if k in _UNQUOTED else f"{k}={_quote(v)}" for k, v in params]
    return f"{scheme} " + ", ".join(parts)


# --- server side -----------------------------------------------------------------------


class Outcome(Enum):
    """Why a credential was accepted or refused. The values are safe to log."""

    OK = "ok"
    MALFORMED = "malformed"
    MISSING_FIELD = "missing field"
    WRONG_SCHEME = "not digest"
    WRONG_REALM = "wrong realm"
    WRONG_URI = "uri does not match the request"
    UNKNOWN_ALGORITHM = "unsupported algorithm"
    UNSUPPORTED_QOP = "unsupported qop"
    BAD_NONCE = "nonce not issued by us"
    STALE = "nonce expired"
    REPLAY = "nonce count replayed"
    UNKNOWN_USER = "unknown user"
    BAD_RESPONSE = "wrong response"


@dataclass(frozen=True, slots=True)
class DigestResult:
    """The verdict on one credential. ``stale`` means: challenge again with stale=true."""

    outcome: Outcome
    username: str | None = None
    realm: str | None = None
    algorithm: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def stale(self) -> bool:
        return self.outcome is Outcome.STALE


# lookup_ha1(username, realm, algorithm) -> stored HA1 (hex) or None.
HA1Lookup = Callable[[str, str, str], str | None]


class DigestChallenger:
    """Issues digest challenges and verifies answers, without per-nonce state for nonces.

    `key` is the HMAC secret shared by every server that must accept this server's
    nonces. `nonce_ttl` is how long a nonce stays fresh (seconds). `replay_entries`
    bounds the nc replay table (see the module docstring).
    """

    def __init__(
        self,
        key: bytes,
        *,
        nonce_ttl: float = 300.0,
        replay_entries: int = 65536,
        require_qop: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(key) < 16:
            raise ValueError("digest nonce key must be at least 16 bytes")
        self._key = key
        self.nonce_ttl = nonce_ttl
        self.require_qop = require_qop
        self._random = random_bytes
        self._replay_entries = replay_entries
        # nonce -> (issued_at, highest nc accepted); insertion order = least recently used.
        self._nc_seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._evicted_floor = float("-inf")

    # nonces

    def _mac(self, stamp_and_random: bytes, realm: str) -> bytes:
        mac = hmac.new(self._key, stamp_and_random + realm.encode(), hashlib.sha256)
        return mac.digest()[:_NONCE_MAC]

    def make_nonce(self, realm: str, now: float) -> str:
        """A fresh nonce carrying its issue time, bound to `realm` by the HMAC."""
        head = struct.pack(">d", now) + self._random(_NONCE_RANDOM)
        return base64.urlsafe_b64encode(head + self._mac(head, realm)).decode("ascii")

    def nonce_issued_at(self, nonce: str, realm: str) -> float | None:
        """The issue time of a nonce we made for `realm`, or None if it is not ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_LEN:
            return None
        head, mac = raw[: 8 + _NONCE_RANDOM], raw[8 + _NONCE_RANDOM :]
        if not hmac.compare_digest(mac, self._mac(head, realm)):
            return None
        issued_at: float = struct.unpack(">d", head[:8])[0]
        return issued_at

    # challenges

    def challenge(
        self,
        realm: str,
        *,
        now: float,
        stale: bool = False,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
    ) -> list[str]:
        """`WWW-Authenticate` / `Proxy-Authenticate` values, one per algorithm, in order.

        RFC 8760 section 2.4: the server lists its preferred (strongest) algorithm first;
        the default offers SHA-256 then MD5 for older phones. Each value has its own nonce.
        """
        values = []
        for algorithm in algorithms:
            name = _canonical_algorithm(algorithm)
            params = [
                ("realm", realm),
                ("nonce", self.make_nonce(realm, now)),
                ("algorithm", name.replace("-SESS", "-sess")),
                ("qop", "auth"),
            ]
            if stale:
                params.append(("stale", "true"))
            values.append(format_auth_params("Digest", params))
        return values

    @staticmethod
    def header_names(proxy: bool) -> tuple[int, str, str]:
        """(status, challenge header, credentials header) for a proxy (407) or UAS (401)."""
        if proxy:
            return 407, "Proxy-Authenticate", "Proxy-Authorization"
        return 401, "WWW-Authenticate", "Authorization"

    # verification

    def verify(
        self,
        header_value: str,
        *,
        method: str,
        realm: str,
        lookup_ha1: HA1Lookup,
        now: float,
        request_uri: str | None = None,
        body: bytes = b"",
    ) -> DigestResult:
        """Check one `Authorization`/`Proxy-Authorization` value for a request.

        `request_uri` is the Request-URI as sent; when given, the credential's ``uri``
        must equal it (RFC 7616 section 3.4.6). `lookup_ha1` is only called once the
        nonce is known to be ours and fresh, so unauthenticated traffic cannot make the
        server hit its credential store with arbitrary names.
        """
        words = header_value.split(None, 1)
        if len(words) != 2 or words[0].lower() != "digest":
            return DigestResult(Outcome.WRONG_SCHEME)
        try:
            _, p = parse_auth_header(header_value)
        except DigestParseError:
            return DigestResult(Outcome.MALFORMED)
        username = p.get("username")
        for field in ("username", "realm", "nonce", "uri", "response"):
            if field not in p:
                return DigestResult(Outcome.MISSING_FIELD, username)
        assert username is not None
        if p["realm"] != realm:
            return DigestResult(Outcome.WRONG_REALM, username, p["realm"])
        try:
            algorithm = _canonical_algorithm(p.get("algorithm"))
        except ValueError:
            return DigestResult(Outcome.UNKNOWN_ALGORITHM, username, realm)
        qop = p.get("qop")
        if qop is None:
            if self.require_qop:
                return DigestResult(Outcome.UNSUPPORTED_QOP, username, realm, algorithm)
        elif qop.lower() != "auth":
            return DigestResult(Outcome.UNSUPPORTED_QOP, username, realm, algorithm)
        nc_value = 0
        if qop is not None:
            if "nc" not in p or "cnonce" not in p:
                return DigestResult(Outcome.MISSING_FIELD, username, realm, algorithm)
            nc_text = p["nc"]
            if len(nc_text) != 8:
                return DigestResult(Outcome.MALFORMED, username, realm, algorithm)
            try:
                nc_value = int(nc_text, 16)
            except ValueError:
                return DigestResult(Outcome.MALFORMED, username, realm, algorithm)
        if request_uri is not None and p["uri"] != request_uri:
            return DigestResult(Outcome.WRONG_URI, username, realm, algorithm)
        nonce = p["nonce"]
        issued_at = self.nonce_issued_at(nonce, realm)
        if issued_at is None:
            return DigestResult(Outcome.BAD_NONCE, username, realm, algorithm)
        if now - issued_at > self.nonce_ttl or issued_at > now + 5.0:
            return DigestResult(Outcome.STALE, username, realm, algorithm)
        if qop is not None:
            seen = self._nc_seen.get(nonce)
            if seen is None and issued_at <= self._evicted_floor:
                # We may have forgotten this nonce's counter: make the client start over.
                return DigestResult(Outcome.STALE, username, realm, algorithm)
            if seen is not None and nc_value <= seen[1]:
                return DigestResult(Outcome.REPLAY, username, realm, algorithm)
        stored = lookup_ha1(username, realm, algorithm.removesuffix("-SESS"))
        if stored is None:
            return DigestResult(Outcome.UNKNOWN_USER, username, realm, algorithm)
        expected = digest_response(
            ha1_value=stored,
            method=method,
            uri=p["uri"],
            nonce=nonce,
            algorithm=algorithm,
            qop=None if qop is None else "auth",
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
            body=body,
        )
        if not hmac.compare_digest(expected.encode(), p["response"].lower().encode()):
            return DigestResult(Outcome.BAD_RESPONSE, username, realm, algorithm)
        if qop is not None:
            self._remember_nc(nonce, issued_at, nc_value, now)
        return DigestResult(Outcome.OK, username, realm, algorithm)

    def _remember_nc(self, nonce: str, issued_at: float, nc_value: int, now: float) -> None:
        table = self._nc_seen
        table[nonce] = (issued_at, nc_value)
        table.move_to_end(nonce)
        # Expired entries at the least recently used end go first (their nonces are
        # answered `stale` by their timestamp anyway), then, while the table is still
        # over its bound, the least recently used. Each entry leaves once: O(1) per
        # call on average. (A scan of the whole table for expired entries on each
        # insert over the bound cost ~4 ms with 65,536 fresh entries: 300 calls/s
        # filled the table in 218 s, and from then on the edge's loop fell seconds
        # behind: bench/edge_calls.py --rates 300 --duration 600.)
        horizon = now - self.nonce_ttl
        while table and next(iter(table.values()))[0] < horizon:
            table.popitem(last=False)
        while len(table) > self._replay_entries:
            _, (evicted_at, _) = table.popitem(last=False)
            self._evicted_floor = max(self._evicted_floor, evicted_at)

    @property
    def replay_table_size(self) -> int:
        return len(self._nc_seen)


# --- client side -----------------------------------------------------------------------

# Our preference when a peer offers several challenges (RFC 8760 section 2.4: strongest).
_CLIENT_PREFERENCE = (
    "SHA-512-256",
    "SHA-256",
    "MD5",
    "SHA-512-256-SESS",
    "SHA-256-SESS",
    "MD5-SESS",
)


def choose_challenge(values: Iterable[str]) -> tuple[str, dict[str, str]] | None:
    """Pick the digest challenge with the strongest algorithm we support, or None."""
    best: tuple[int, str, dict[str, str]] | None = None
    for value in values:
        try:
            scheme, params = parse_auth_header(value)
        except DigestParseError:
            continue
        if scheme.lower() != "digest" or "nonce" not in params or "realm" not in params:
            continue
        name = params.get("algorithm", "MD5").upper()
        if name not in _CLIENT_PREFERENCE:
            continue
        rank = _CLIENT_PREFERENCE.index(name)
        if best is None or rank < best[0]:
            best = (rank, value, params)
    return None if best is None else (best[1], best[2])


class DigestClient:
    """Answers digest challenges for one set of credentials, counting nc per nonce."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.username = username
        self._password = password
        self._random = random_bytes
        self._nc: dict[str, int] = {}

    def __repr__(self) -> str:  # never show the password
        return f"DigestClient(username={self.username!r})"

    def authorization(
        self,
        challenge: str,
        *,
        method: str,
        uri: str,
        body: bytes = b"",
        cnonce: str | None = None,
    ) -> str:
        """The `Authorization`/`Proxy-Authorization` value answering `challenge`.

        Uses qop=auth when offered (auth-int when only that is offered), the legacy
        RFC 2069 form when the challenge has no qop. Raises ValueError for a challenge
        that is not digest or names an algorithm we do not support.
        """
        scheme, params = parse_auth_header(challenge)
        if scheme.lower() != "digest":
            raise ValueError("not a digest challenge")
        if "realm" not in params or "nonce" not in params:
            raise ValueError("digest challenge without realm or nonce")
        algorithm_param = params.get("algorithm")
        algorithm = _canonical_algorithm(algorithm_param)
        realm, nonce = params["realm"], params["nonce"]
        offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
        qop: str | None
        if not offered:
            qop = None
        elif "auth" in offered:
            qop = "auth"
        elif "auth-int" in offered:
            qop = "auth-int"
        else:
            raise ValueError("digest challenge offers no supported qop")
        nc = self._nc.get(nonce, 0) + 1
        if len(self._nc) > 256 and nonce not in self._nc:
            self._nc.clear()  # bound the table; old nonces are dead anyway
        self._nc[nonce] = nc
        nc_text = f"{nc:08x}"
        if cnonce is None:
            cnonce = base64.urlsafe_b64encode(self._random(12)).decode("ascii")
        response = digest_response(
            ha1_value=ha1(self.username, realm, self._password, algorithm),
            method=method,
            uri=uri,
            nonce=nonce,
            algorithm=algorithm,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
            body=body,
        )
        out: list[tuple[str, str]] = [
            ("username", self.username),
            ("realm", realm),
            ("nonce", nonce),
            ("uri", uri),
            ("response", response),
        ]
        if algorithm_param is not None:
            out.append(("algorithm", algorithm_param))
        if "opaque" in params:
            out.append(("opaque", params["opaque"]))
        if qop is not None:
            out += [("qop", qop), ("nc", nc_text), ("cnonce", cnonce)]
        return format_auth_params("Digest", out)


def answer_challenge(
    challenge_header: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    body: bytes = b"",
) -> str:
    """One-shot client answer (nc=00000001); use `DigestClient` to reuse a nonce."""
    return DigestClient(username, password).authorization(
        challenge_header, method=method, uri=uri, body=body
    )
