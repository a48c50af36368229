"""Unit tests for `opentrunk.edge.auth.TrunkAuthenticator`: IP ACL entries (v4, v6, CIDR,
v4-mapped sources), the digest round (407 challenge, MD5 and SHA-256 answers, wrong
passwords, stale nonces, replays) and the RFC 7616 check that the answer's `uri` names
the INVITE's own Request-URI."""

from __future__ import annotations

from ipaddress import ip_network

from opentrunk.edge.auth import TrunkAuthenticator, Verdict
from opentrunk.edge.views import CredentialView, TrunkView
from opentrunk.sip.digest import DigestClient, ha1, parse_auth_header
from opentrunk.sip.message import Request, parse_message

REALM = "zt.test"
USER = "pbx100"
PASSWORD = "Corr3ct!horse-battery"
DOMAIN = "123456789.zt.test"
URI = f"sip:+14155550123@{DOMAIN}"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def credential() -> CredentialView:
    return CredentialView(
        USER, REALM, ha1(USER, REALM, PASSWORD, "MD5"), ha1(USER, REALM, PASSWORD, "SHA-256")
    )


def trunk(*acl: str, with_credential: bool = False) -> TrunkView:
    return TrunkView(
        trunk_id="123456789",
        account_id=1,
        auth_id="MA0000000000000000001",
        domain=DOMAIN,
        enabled=True,
        direction="outbound",
        secure=False,
        acl=tuple(ip_network(entry) for entry in acl),
        credential=credential() if with_credential else None,
    )


def invite(uri: str = URI, *, authorization: str | None = None) -> Request:
    extra = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
    text = (
        f"INVITE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-unit-1\r\n"
        "From: <sip:+12125550100@127.0.0.1>;tag=abc\r\n"
        f"To: <{uri}>\r\n"
        "Call-ID: unit-call-1@127.0.0.1\r\n"
        "CSeq: 2 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def challenge_for(auth: TrunkAuthenticator, algorithm: str = "MD5") -> str:
    result = auth.check(trunk(with_credential=True), invite(), "198.51.100.7")
    assert result.verdict is Verdict.CHALLENGE
    for name, value in result.challenge:
        assert name == "Proxy-Authenticate"
        if parse_auth_header(value)[1]["algorithm"] == algorithm:
            return value
    raise AssertionError(f"no {algorithm} challenge in {result.challenge}")


def answer(
    auth: TrunkAuthenticator,
    *,
    password: str = PASSWORD,
    username: str = USER,
    algorithm: str = "MD5",
    uri: str = URI,
) -> str:
    challenge = challenge_for(auth, algorithm)
    return DigestClient(username, password).authorization(challenge, method="INVITE", uri=uri)


# -- IP ACL --------------------------------------------------------------------------------


def test_source_in_an_ipv4_cidr_entry_is_accepted() -> None:
    result = TrunkAuthenticator().check(trunk("10.1.0.0/16"), invite(), "10.1.200.3")
    assert (result.verdict, result.method) == (Verdict.OK, "acl")


def test_source_in_an_ipv6_entry_is_accepted_and_a_neighbour_is_not() -> None:
    auth = TrunkAuthenticator()
    acl = trunk("2001:db8:5::/48", "2001:db8::1/128")
    assert auth.check(acl, invite(), "2001:db8:5:ffff::9").verdict is Verdict.OK
    assert auth.check(acl, invite(), "2001:db8::1").verdict is Verdict.OK
    assert auth.check(acl, invite(), "2001:db8::2").verdict is Verdict.FORBIDDEN
    assert auth.check(acl, invite(), "2001:db8:6::1").verdict is Verdict.FORBIDDEN


def test_ipv4_mapped_source_matches_its_ipv4_entry() -> None:
    result = TrunkAuthenticator().check(trunk("192.0.2.10/32"), invite(), "::ffff:192.0.2.10")
    assert result.verdict is Verdict.OK


def test_source_outside_the_acl_without_a_credential_is_forbidden() -> None:
    result = TrunkAuthenticator().check(trunk("192.0.2.0/24"), invite(), "192.0.3.1")
    assert result.verdict is Verdict.FORBIDDEN
    assert "ACL" in result.reason
    assert result.challenge == ()


def test_trunk_with_neither_acl_nor_credential_refuses_everyone() -> None:
    result = TrunkAuthenticator().check(trunk(), invite(), "127.0.0.1")
    assert result.verdict is Verdict.FORBIDDEN


# -- digest ----------------------------------------------------------------------------------


def test_first_invite_is_challenged_md5_first_then_sha256() -> None:
    auth = TrunkAuthenticator(clock=Clock())
    result = auth.check(trunk(with_credential=True), invite(), "198.51.100.7")
    assert result.verdict is Verdict.CHALLENGE
    algorithms = [parse_auth_header(v)[1]["algorithm"] for _, v in result.challenge]
    assert algorithms == ["MD5", "SHA-256"]
    params = parse_auth_header(result.challenge[0][1])[1]
    assert params["realm"] == REALM
    assert params["qop"] == "auth"
    assert "stale" not in params


def test_right_password_md5_and_sha256_are_accepted() -> None:
    auth = TrunkAuthenticator(clock=Clock())
    for algorithm in ("MD5", "SHA-256"):
        value = answer(auth, algorithm=algorithm)
        result = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
        assert (result.verdict, result.method) == (Verdict.OK, "digest"), algorithm


def test_wrong_password_is_forbidden_and_the_reason_holds_no_secret() -> None:
    auth = TrunkAuthenticator(clock=Clock())
    value = answer(auth, password="wrong-password")
    result = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert result.verdict is Verdict.FORBIDDEN
    assert result.reason == "digest: wrong response"
    for secret in (PASSWORD, "wrong-password", credential().ha1_md5, credential().ha1_sha256):
        assert secret not in repr(result)


def test_wrong_username_is_forbidden() -> None:
    auth = TrunkAuthenticator(clock=Clock())
    value = answer(auth, username="someone-else")
    result = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert result.verdict is Verdict.FORBIDDEN


def test_answer_for_another_request_uri_is_refused() -> None:
    """RFC 7616 3.4.6: a correctly signed answer whose `uri` names another resource (a
    captured answer replayed to another number or trunk) must not authenticate."""
    auth = TrunkAuthenticator(clock=Clock())
    other = f"sip:+442071838750@{DOMAIN}"
    value = answer(auth, uri=other)
    result = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert result.verdict is Verdict.FORBIDDEN
    assert result.reason == "digest: uri does not match the request"
    # The very same answer is good for the request it was made for.
    fresh = answer(auth, uri=other)
    result = auth.check(trunk(with_credential=True), invite(other, authorization=fresh), "10.0.0.1")
    assert result.verdict is Verdict.OK


def test_answer_with_an_equivalent_uri_form_is_accepted() -> None:
    """RFC 3261 19.1.4: the host compares case-insensitively, so `uri` written with an
    upper-case host names the same resource as the Request-URI."""
    auth = TrunkAuthenticator(clock=Clock())
    value = answer(auth, uri=URI.upper().replace("SIP:", "sip:"))
    result = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert result.verdict is Verdict.OK


def test_expired_nonce_is_challenged_again_with_stale_true() -> None:
    clock = Clock()
    auth = TrunkAuthenticator(clock=clock, nonce_ttl=30.0)
    value = answer(auth)
    clock.now += 31.0
    result = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert result.verdict is Verdict.CHALLENGE
    assert all(parse_auth_header(v)[1].get("stale") == "true" for _, v in result.challenge)


def test_nonce_from_another_edge_key_is_refused() -> None:
    value = answer(TrunkAuthenticator(key=b"k" * 32, clock=Clock()))
    other = TrunkAuthenticator(key=b"x" * 32, clock=Clock())
    result = other.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert result.verdict is Verdict.FORBIDDEN


def test_replayed_answer_is_refused() -> None:
    auth = TrunkAuthenticator(clock=Clock())
    value = answer(auth)
    request = invite(authorization=value)
    assert auth.check(trunk(with_credential=True), request, "10.0.0.1").verdict is Verdict.OK
    again = auth.check(trunk(with_credential=True), invite(authorization=value), "10.0.0.1")
    assert again.verdict is Verdict.FORBIDDEN


# -- both attached ------------------------------------------------------------------------------


def test_with_acl_and_credential_either_one_suffices() -> None:
    auth = TrunkAuthenticator(clock=Clock())
    both = trunk("10.0.0.0/8", with_credential=True)
    assert auth.check(both, invite(), "10.9.9.9").method == "acl"
    # Outside the ACL: challenged, then the digest answer is enough.
    assert auth.check(both, invite(), "203.0.113.5").verdict is Verdict.CHALLENGE
    result = auth.check(both, invite(authorization=answer(auth)), "203.0.113.5")
    assert (result.verdict, result.method) == (Verdict.OK, "digest")
    wrong = auth.check(both, invite(authorization=answer(auth, password="x")), "203.0.113.5")
    assert wrong.verdict is Verdict.FORBIDDEN
