"""Unit tests for the inbound edge's pure parts: origination URI forms, the called
number, the carrier-by-source lookup, session-timer bookkeeping and the OPTIONS limiter.
The live behaviour is in tests/e2e/test_inbound_calls.py and test_midcall_calls.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from opentrunk.domain.hangup_codes import CallEnd, Side
from opentrunk.edge.b2bua import Call, Leg
from opentrunk.edge.config import CarrierTable, parse_acl
from opentrunk.edge.inbound import called_number
from opentrunk.edge.keepalive import OptionsLimiter
from opentrunk.edge.origination import (
    BadOriginationUri,
    OriginationTarget,
    locate_target,
    parse_origination_uri,
)
from opentrunk.edge.session_timer import SessionTimers, parse_session_expires
from opentrunk.edge.views import CarrierView, InboundRoute, OriginationUriView
from opentrunk.sip.message import Request, Response, parse_message
from opentrunk.sip.transaction import Address
from opentrunk.transport.dns import SipLocator


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("192.0.2.10", OriginationTarget("192.0.2.10")),
        ("192.0.2.10:5070", OriginationTarget("192.0.2.10", 5070)),
        ("pbx.example.com", OriginationTarget("pbx.example.com")),
        ("pbx.example.com:5080", OriginationTarget("pbx.example.com", 5080)),
        ("sip:pbx@example.com", OriginationTarget("example.com", None, None, "pbx")),
        ("sip:pbx@192.0.2.1:5090", OriginationTarget("192.0.2.1", 5090, None, "pbx")),
        ("192.0.2.10;transport=tcp", OriginationTarget("192.0.2.10", None, "tcp")),
        ("pbx.example.com:5061;transport=TLS", OriginationTarget("pbx.example.com", 5061, "tls")),
        ("sip:p@example.com;transport=udp", OriginationTarget("example.com", None, "udp", "p")),
        ("[2001:db8::1]:5060", OriginationTarget("2001:db8::1", 5060)),
    ],
)
def test_origination_uri_forms(text: str, target: OriginationTarget) -> None:
    assert parse_origination_uri(text) == target


@pytest.mark.parametrize(
    "text", ["", "sip:@example.com", "example.com;lr", "host:99999", "sips:x@example.com", " a"]
)
def test_bad_origination_uris(text: str) -> None:
    with pytest.raises(BadOriginationUri):
        parse_origination_uri(text)


class _NoDns:
    async def resolve(self, name: str, rdtype: str) -> list[object]:
        raise AssertionError("an IP literal needs no DNS")


def test_locate_literal_and_missing_transport() -> None:
    async def go() -> tuple[Address | None, Address | None]:
        locator = SipLocator(resolver=_NoDns())  # type: ignore[arg-type]
        udp = await locate_target(locator, OriginationTarget("192.0.2.1", 5070), {"udp", "tcp"})
        tls = await locate_target(locator, OriginationTarget("192.0.2.1", None, "tls"), {"udp"})
        return udp, tls

    udp, tls = asyncio.run(go())
    assert udp == Address("udp", "192.0.2.1", 5070)
    assert tls is None  # the edge has no TLS listener: not usable (4320 when alone)


def _invite(ruri: str, to: str) -> Request:
    raw = (
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
        f"From: <sip:+14155550100@192.0.2.1>;tag=a\r\nTo: <{to}>\r\nCall-ID: c\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def test_called_number_from_request_uri_then_to() -> None:
    assert called_number(_invite("sip:16465550123@e", "sip:x@e")) == "+16465550123"
    assert called_number(_invite("sip:+1-646-555-0123@e", "sip:x@e")) == "+16465550123"
    assert called_number(_invite("sip:edge@e", "sip:+16465550123@e")) == "+16465550123"
    assert called_number(_invite("sip:+16465550123;npdi@e", "sip:x@e")) == "+16465550123"
    assert called_number(_invite("sip:edge@e", "sip:nobody@e")) is None


def _carrier(name: str, sources: list[str]) -> CarrierView:
    return CarrierView(
        carrier_id=name,
        name=name,
        host="192.0.2.1",
        port=None,
        transport="udp",
        prefix="",
        priority=10,
        weight=1,
        username=None,
        password=None,
        rate=Decimal(0),
        inbound_sources=parse_acl(str(sources).replace("'", '"')),
    )


def test_carrier_by_inbound_source() -> None:
    table = CarrierTable.of(
        [_carrier("a", ["198.51.100.0/24"]), _carrier("b", ["203.0.113.7", "2001:db8::/32"])]
    )
    found = table.for_source("198.51.100.77")
    assert found is not None and found.name == "a"
    found = table.for_source("::ffff:203.0.113.7")
    assert found is not None and found.name == "b"
    found = table.for_source("2001:db8::5")
    assert found is not None and found.name == "b"
    assert table.for_source("203.0.113.8") is None
    assert table.for_source("not-an-address") is None


def test_inbound_route_deliverable() -> None:
    uri = OriginationUriView("u", "192.0.2.1", False, None, None)
    base = InboundRoute("16465550123", 1, True, "123", "123.zt", True, "inbound", uri, None)
    assert base.deliverable and base.uris == (uri,)
    assert not InboundRoute("16465550123", 1, True).deliverable  # no trunk
    disabled = InboundRoute("1", 1, True, "123", "d", False, "inbound", uri)
    assert not disabled.deliverable
    outbound = InboundRoute("1", 1, True, "123", "d", True, "outbound", uri)
    assert not outbound.deliverable
    assert "secret" not in repr(OriginationUriView("u", "h", True, "user", "secret"))


def test_parse_session_expires() -> None:
    assert parse_session_expires("1800;refresher=uac") == (1800.0, "uac")
    assert parse_session_expires("90") == (90.0, None)
    assert parse_session_expires(" 120 ; refresher = UAS") == (120.0, "uas")
    assert parse_session_expires("0") == (1.0, None)
    assert parse_session_expires("abc") is None
    assert parse_session_expires(None) is None


@dataclass
class _Ended:
    ends: list[tuple[str, CallEnd]] = field(default_factory=list)

    def __call__(self, call: Call, end: CallEnd) -> None:
        self.ends.append((call.call_uuid, end))


def _call(name: str) -> Call:
    return Call(name, Leg(Side.CUSTOMER, Address("udp", "192.0.2.1", 5060)), lambda c, e: None)


def _ok(session_expires: str | None = None, status: int = 200) -> Response:
    extra = f"Session-Expires: {session_expires}\r\n" if session_expires else ""
    raw = (
        f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Response)
    return message


def test_session_timer_expires_and_refreshes() -> None:
    ended = _Ended()

    async def go() -> None:
        timers = SessionTimers(ended)
        silent, refreshed, refused, untimed = (_call(n) for n in ("s", "r", "x", "u"))
        # Carrier called (inbound); refresher=uac: the carrier must refresh.
        timers.call_answered(silent, Side.CARRIER, _ok("1;refresher=uac"))
        timers.call_answered(refreshed, Side.CARRIER, _ok("1;refresher=uas"))
        timers.call_answered(refused, Side.CARRIER, _ok("1;refresher=uac"))
        timers.call_answered(untimed, Side.CARRIER, _ok())
        assert len(timers) == 3
        await asyncio.sleep(0.6)
        timers.request_answered(refreshed, Side.CUSTOMER, "UPDATE", _ok())
        timers.request_answered(refused, Side.CARRIER, "INVITE", _ok(status=500))
        await asyncio.sleep(0.6)
        assert [uuid for uuid, _ in ended.ends] == ["s", "x"]
        await asyncio.sleep(0.6)
        timers.call_ended("u")

    asyncio.run(go())
    codes = {uuid: (end.code, end.source.value) for uuid, end in ended.ends}
    # Silent refresher (the carrier): its server timeout. A refresh the PBX refused with
    # 500: the PBX's mid-call 5xx. The refreshed call ended one interval after refresh.
    assert codes == {"s": (5330, "carrier"), "x": (5230, "customer"), "r": (5340, "customer")}


def test_options_limiter() -> None:
    now = [0.0]
    limiter = OptionsLimiter(5.0, clock=lambda: now[0], max_sources=2)
    assert [limiter.allow("a") for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("b")
    now[0] = 0.2  # one token back for "a"
    assert limiter.allow("a") and not limiter.allow("a")
    limiter.allow("c")  # the table holds 2 sources: the idlest ("b") is dropped
    assert limiter.refused == 2
    assert OptionsLimiter(0).allow("anyone")
