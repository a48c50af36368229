"""URIs: parsing, wire form and RFC 3261 19.1.4 comparison."""

from __future__ import annotations

import pytest

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.uri import AbsoluteURI, SipURI, TelURI, parse_uri, uri_equal


def sip(text: str) -> SipURI:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return uri


def test_parse_full_sip_uri() -> None:
    uri = sip("sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?Subject=hi&X=1")
    assert uri.scheme == "sips" and uri.secure
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Example.COM", 5061)
    assert uri.params == {"transport": "tls", "lr": None, "maddr": "10.0.0.1"}
    assert uri.transport == "tls" and uri.lr and uri.maddr == "10.0.0.1"
    assert uri.headers == {"Subject": "hi", "X": "1"}
    assert str(uri) == (
        "sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?Subject=hi&X=1"
    )


def test_ipv6_references() -> None:
    uri = sip("sip:[2001:db8::10]:5070;transport=udp")
    assert uri.host == "[2001:db8::10]" and uri.host_bare == "2001:db8::10"
    assert uri.port == 5070
    assert str(uri) == "sip:[2001:db8::10]:5070;transport=udp"
    assert sip("sip:bob@[::1]").host_bare == "::1"
    assert sip("sip:[2001:DB8::10]") == sip("sip:[2001:db8::10]")
    with pytest.raises(SipParseError):
        parse_uri("sip:[2001:db8::10")


def test_tel_and_absolute_uris() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(tel, TelURI)
    assert tel.digits == "+12015550123"
    assert tel == parse_uri("tel:+12015550123;phone-context=example.com")
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"
    other = parse_uri("urn:service:sos")
    assert isinstance(other, AbsoluteURI)
    assert (other.scheme, other.opaque) == ("urn", "service:sos")
    assert str(other) == "urn:service:sos"
    assert other == parse_uri("URN:service:sos")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip",
        "<sip:a@b>",
        "sip:a@b c",
        "sip:",
        "sip:@host",
        "sip:host:port",
        "sip:host:99999",
        "sip:ho_st",
        "sip:host;;lr",
        "sip:host?noequals",
        "1sip:host",
        "tel:",
        'http:"x"',
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


# RFC 3261 19.1.4 examples.
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
]  # fmt: skip
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua == ub and ub == ua
    assert uri_equal(ua, ub)
    assert hash(ua) == hash(ub)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_unequal_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua != ub and ub != ua
    assert not uri_equal(ua, ub)


def test_kinds_never_equal() -> None:
    assert not uri_equal(parse_uri("sip:1@x"), parse_uri("tel:1"))
    assert parse_uri("sip:1@x") != parse_uri("tel:1")


def test_round_trip_keeps_escapes_and_order() -> None:
    text = "sip:user;par=u%40example.net@example.com;b=2;a;c=%41"
    uri = sip(text)
    assert uri.user == "user;par=u%40example.net"
    assert str(uri) == text
    assert sip(str(uri)) == uri


def test_build_and_copy() -> None:
    uri = SipURI("gw.example.com", "+14155550100", 5060, {"user": "phone"})
    assert str(uri) == "sip:+14155550100@gw.example.com:5060;user=phone"
    dup = uri.copy()
    dup.params["transport"] = "tcp"
    assert "transport" not in uri.params
    assert dup != uri  # transport present on one side only
