"""Digest authentication: RFC test vectors, challenger/verifier behaviour, client side."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from opentrunk.sip.digest import (
    DigestChallenger,
    DigestClient,
    DigestParseError,
    Outcome,
    answer_challenge,
    choose_challenge,
    digest_response,
    ha1,
    parse_auth_header,
)

KEY = b"k" * 32
REALM = "sip.example.test"
URI = "sip:+15551234567@sip.example.test"


# RFC 7616 section 3.9.1 (GET /dir/index.html, Mufasa / "Circle of Life").
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_vectors(algorithm: str, expected: str) -> None:
    v = RFC7616
    h = ha1(v["username"], v["realm"], v["password"], algorithm)
    got = digest_response(
        ha1_value=h,
        method="GET",
        uri=v["uri"],
        nonce=v["nonce"],
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=v["cnonce"],
    )
    assert got == expected


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_client_builds_the_example_authorization(algorithm: str, expected: str) -> None:
    v = RFC7616
    challenge = (
        f'Digest realm="{v["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{v["nonce"]}", opaque="{v["opaque"]}"'
    )
    client = DigestClient(v["username"], v["password"])
    value = client.authorization(challenge, method="GET", uri=v["uri"], cnonce=v["cnonce"])
    scheme, params = parse_auth_header(value)
    assert scheme == "Digest"
    assert params["response"] == expected
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["opaque"] == v["opaque"]
    assert params["algorithm"] == algorithm
    assert params["cnonce"] == v["cnonce"]


def test_rfc2617_example() -> None:
    h = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    got = digest_response(
        ha1_value=h,
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert got == "6629fae49393a05397450978507c4ef1"


def test_parse_handles_quotes_commas_escapes_and_spacing() -> None:
    scheme, params = parse_auth_header(
        'Digest  username = "a\\"b, c" ,realm="r,x",, nonce=abc,QOP=auth , nc=00000001'
    )
    assert scheme == "Digest"
    assert params == {
        "username": 'a"b, c',
        "realm": "r,x",
        "nonce": "abc",
        "qop": "auth",
        "nc": "00000001",
    }


@pytest.mark.parametrize(
    "value",
    [
        "",
        'Digest username="unterminated',
        "Digest username",
        "Digest username=",
        'Digest realm="a", realm="b"',
        'Digest realm="a" nonce="b"',
        '="x"',
    ],
)
def test_parse_rejects_malformed(value: str) -> None:
    with pytest.raises(DigestParseError):
        parse_auth_header(value)


# --- server side ----------------------------------------------------------------------


class Store:
    """Holds HA1 only, as the real credential store does; counts lookups."""

    def __init__(self) -> None:
        self.ha1 = {
            (name, REALM, alg): ha1(name, REALM, pw, alg)
            for name, pw in {"alice": "s3cret", "bob": "hunter2"}.items()
            for alg in ("MD5", "SHA-256")
        }
        self.lookups = 0

    def __call__(self, username: str, realm: str, algorithm: str) -> str | None:
        self.lookups += 1
        return self.ha1.get((username, realm, algorithm))


def _answer(
    challenger: DigestChallenger,
    *,
    now: float,
    algorithm: str = "SHA-256",
    user: str = "alice",
    password: str = "s3cret",
    method: str = "INVITE",
    uri: str = URI,
    client: DigestClient | None = None,
) -> tuple[str, DigestClient]:
    values = challenger.challenge(REALM, now=now)
    chosen = next(v for v in values if f"algorithm={algorithm}" in v)
    client = client or DigestClient(user, password)
    return client.authorization(chosen, method=method, uri=uri), client


def test_challenge_lists_sha256_first_with_qop_and_own_nonces() -> None:
    c = DigestChallenger(KEY)
    values = c.challenge(REALM, now=1000.0)
    assert len(values) == 2
    parsed = [parse_auth_header(v)[1] for v in values]
    assert [p["algorithm"] for p in parsed] == ["SHA-256", "MD5"]
    assert all(p["qop"] == "auth" and p["realm"] == REALM for p in parsed)
    assert parsed[0]["nonce"] != parsed[1]["nonce"]
    assert "stale" not in parsed[0]
    stale = parse_auth_header(c.challenge(REALM, now=1000.0, stale=True)[0])[1]
    assert stale["stale"] == "true"
    assert DigestChallenger.header_names(True) == (407, "Proxy-Authenticate", "Proxy-Authorization")
    assert DigestChallenger.header_names(False) == (401, "WWW-Authenticate", "Authorization")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip_accepts_correct_password(algorithm: str) -> None:
    c = DigestChallenger(KEY)
    value, _ = _answer(c, now=1000.0, algorithm=algorithm)
    result = c.verify(
        value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0, request_uri=URI
    )
    assert result.ok, result
    assert result.username == "alice"
    assert result.algorithm == algorithm


def test_wrong_password_is_refused() -> None:
    c = DigestChallenger(KEY)
    value, _ = _answer(c, now=1000.0, password="wrong")
    result = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0)
    assert result.outcome is Outcome.BAD_RESPONSE
    assert not result.ok


def test_unknown_user() -> None:
    c = DigestChallenger(KEY)
    value, _ = _answer(c, now=1000.0, user="mallory")
    result = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0)
    assert result.outcome is Outcome.UNKNOWN_USER


def test_method_is_part_of_the_response() -> None:
    c = DigestChallenger(KEY)
    value, _ = _answer(c, now=1000.0, method="REGISTER")
    result = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0)
    assert result.outcome is Outcome.BAD_RESPONSE


def test_expired_nonce_is_stale_not_refused() -> None:
    c = DigestChallenger(KEY, nonce_ttl=300.0)
    value, _ = _answer(c, now=1000.0)
    store = Store()
    result = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1301.0)
    assert result.stale
    assert result.outcome is Outcome.STALE
    assert store.lookups == 0
    fresh = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1299.0)
    assert fresh.ok


def test_forged_or_foreign_nonce_is_refused_before_store_lookup() -> None:
    ours = DigestChallenger(KEY)
    theirs = DigestChallenger(b"x" * 32)
    value, _ = _answer(theirs, now=1000.0)
    store = Store()
    result = ours.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1001.0)
    assert result.outcome is Outcome.BAD_NONCE
    assert store.lookups == 0
    garbage = value.replace('nonce="', 'nonce="AAAA', 1)
    assert (
        ours.verify(garbage, method="INVITE", realm=REALM, lookup_ha1=store, now=1001.0).outcome
        is Outcome.BAD_NONCE
    )


def test_nonce_is_bound_to_its_realm() -> None:
    c = DigestChallenger(KEY)
    nonce = c.make_nonce("other.realm", 1000.0)
    assert c.nonce_issued_at(nonce, "other.realm") == 1000.0
    assert c.nonce_issued_at(nonce, REALM) is None


def test_nc_replay_is_refused_and_increasing_nc_accepted() -> None:
    c = DigestChallenger(KEY)
    store = Store()
    value, client = _answer(c, now=1000.0)
    assert c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1001.0).ok
    again = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1002.0)
    assert again.outcome is Outcome.REPLAY
    # The same client reusing the nonce sends nc=2: accepted.
    challenge = next(v for v in c.challenge(REALM, now=1000.0) if "SHA-256" in v)
    nonce = parse_auth_header(value)[1]["nonce"]
    challenge = challenge.replace(parse_auth_header(challenge)[1]["nonce"], nonce)
    second = client.authorization(challenge, method="INVITE", uri=URI)
    assert parse_auth_header(second)[1]["nc"] == "00000002"
    assert c.verify(second, method="INVITE", realm=REALM, lookup_ha1=store, now=1003.0).ok


def test_replay_table_is_bounded_and_eviction_never_admits_a_replay() -> None:
    c = DigestChallenger(KEY, replay_entries=8)
    store = Store()
    used = []
    for i in range(20):
        value, _ = _answer(c, now=1000.0 + i)
        assert c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1000.0 + i).ok
        used.append(value)
        assert c.replay_table_size <= 8
    for value in used:
        result = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1030.0)
        assert result.outcome in (Outcome.REPLAY, Outcome.STALE)
    # A brand-new nonce still works after evictions.
    value, _ = _answer(c, now=1040.0)
    assert c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1040.0).ok


def test_expired_entries_leave_the_replay_table_first() -> None:
    c = DigestChallenger(KEY, replay_entries=4, nonce_ttl=10.0)
    store = Store()
    for i in range(4):
        value, _ = _answer(c, now=1000.0 + i)
        assert c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=1000.0 + i).ok
    value, _ = _answer(c, now=2000.0)
    assert c.verify(value, method="INVITE", realm=REALM, lookup_ha1=store, now=2000.0).ok
    assert c.replay_table_size == 1


_T = TypeVar("_T")


class _CountingTable(OrderedDict[str, tuple[float, int]]):
    """The replay table, counting the entries its iterators hand out."""

    visited = 0

    def _count(self, it: Iterator[_T]) -> Iterator[_T]:
        for item in it:
            type(self).visited += 1
            yield item

    def items(self) -> Any:
        return self._count(super().items().__iter__())

    def values(self) -> Any:
        return self._count(super().values().__iter__())

    def __iter__(self) -> Iterator[str]:
        return self._count(super().__iter__())


def test_a_full_replay_table_costs_constant_work_per_answer() -> None:
    """Once the table is full of fresh nonces (300 calls/s fill 65,536 in 218 s), each
    accepted answer must not walk it: a walk per answer put the edge's loop seconds
    behind under load."""
    c = DigestChallenger(KEY, replay_entries=500, nonce_ttl=10_000.0)
    table = _CountingTable()
    c._nc_seen = table
    store = Store()
    for i in range(2_000):
        value, _ = _answer(c, now=1000.0 + i / 100)
        assert c.verify(
            value, method="INVITE", realm=REALM, lookup_ha1=store, now=1000.0 + i / 100
        ).ok
    assert c.replay_table_size == 500
    # A walk per answer over the bound would be 1,500 x 500 entries.
    assert _CountingTable.visited <= 3 * 2_000


def _tamper(value: str, name: str, new: str | None) -> str:
    scheme, params = parse_auth_header(value)
    if new is None:
        params.pop(name)
    else:
        params[name] = new
    from opentrunk.sip.digest import format_auth_params

    return format_auth_params(scheme, params.items())


@pytest.mark.parametrize(
    ("field", "new", "outcome"),
    [
        ("realm", "evil.realm", Outcome.WRONG_REALM),
        ("uri", "sip:other@sip.example.test", Outcome.WRONG_URI),
        ("algorithm", "SHA-1", Outcome.UNKNOWN_ALGORITHM),
        ("qop", "auth-int", Outcome.UNSUPPORTED_QOP),
        ("qop", None, Outcome.UNSUPPORTED_QOP),
        ("nc", "1", Outcome.MALFORMED),
        ("nc", "zzzzzzzz", Outcome.MALFORMED),
        ("cnonce", None, Outcome.MISSING_FIELD),
        ("response", None, Outcome.MISSING_FIELD),
        ("username", None, Outcome.MISSING_FIELD),
        ("nonce", None, Outcome.MISSING_FIELD),
    ],
)
def test_rejections(field: str, new: str | None, outcome: Outcome) -> None:
    c = DigestChallenger(KEY)
    value, _ = _answer(c, now=1000.0)
    bad = _tamper(value, field, new)
    result = c.verify(
        bad, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0, request_uri=URI
    )
    assert result.outcome is outcome
    assert not result.ok


def test_not_digest_and_malformed() -> None:
    c = DigestChallenger(KEY)
    assert (
        c.verify(
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            method="INVITE",
            realm=REALM,
            lookup_ha1=Store(),
            now=0.0,
        ).outcome
        is Outcome.WRONG_SCHEME
    )
    assert (
        c.verify(
            'Digest username="x', method="INVITE", realm=REALM, lookup_ha1=Store(), now=0.0
        ).outcome
        is Outcome.MALFORMED
    )


def test_legacy_answer_without_qop_only_when_allowed() -> None:
    strict = DigestChallenger(KEY)
    lenient = DigestChallenger(KEY, require_qop=False)
    nonce = strict.make_nonce(REALM, 1000.0)
    legacy_challenge = f'Digest realm="{REALM}", nonce="{nonce}"'
    value = answer_challenge(legacy_challenge, "INVITE", URI, "alice", "s3cret")
    params = parse_auth_header(value)[1]
    assert "qop" not in params and "nc" not in params
    assert (
        strict.verify(value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0).outcome
        is Outcome.UNSUPPORTED_QOP
    )
    assert lenient.verify(value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0).ok


def test_results_and_repr_never_carry_secrets() -> None:
    c = DigestChallenger(KEY)
    value, client = _answer(c, now=1000.0, password="wrong")
    result = c.verify(value, method="INVITE", realm=REALM, lookup_ha1=Store(), now=1001.0)
    stored = ha1("alice", REALM, "s3cret", "SHA-256")
    for text in (repr(result), str(result.outcome.value), repr(client)):
        assert stored not in text
        assert "s3cret" not in text and "wrong" not in text.replace("wrong response", "")


def test_choose_challenge_prefers_strongest_supported() -> None:
    c = DigestChallenger(KEY)
    values = ['Basic realm="x"', *reversed(c.challenge(REALM, now=0.0))]
    chosen = choose_challenge(values)
    assert chosen is not None
    assert chosen[1]["algorithm"] == "SHA-256"
    assert choose_challenge(['Digest realm="x", nonce="n", algorithm=SHA-1']) is None


def test_client_rejects_unsupported_challenges() -> None:
    client = DigestClient("a", "b")
    with pytest.raises(ValueError):
        client.authorization('Basic realm="x"', method="INVITE", uri=URI)
    with pytest.raises(ValueError):
        client.authorization(
            'Digest realm="x", nonce="n", algorithm=SHA-1', method="INVITE", uri=URI
        )
    with pytest.raises(ValueError):
        client.authorization('Digest realm="x"', method="INVITE", uri=URI)


def test_auth_int_client_includes_body_hash() -> None:
    challenge = 'Digest realm="r", nonce="n", qop="auth-int", algorithm=MD5'
    client = DigestClient("u", "p", random_bytes=lambda n: b"\x00" * n)
    a = parse_auth_header(client.authorization(challenge, method="INVITE", uri=URI, body=b"x"))[1]
    client2 = DigestClient("u", "p", random_bytes=lambda n: b"\x00" * n)
    b = parse_auth_header(client2.authorization(challenge, method="INVITE", uri=URI, body=b"y"))[1]
    assert a["qop"] == "auth-int"
    assert a["response"] != b["response"]
