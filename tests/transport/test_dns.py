"""RFC 3263 server location against a real DNS server on 127.0.0.1 (dnspython wire path)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from opentrunk.transport.dns import LocateError, ServerTarget, SipLocator, make_resolver, order_srv

Zone = dict[tuple[str, str], tuple[int, list[str]]]


class TinyDNS(asyncio.DatagramProtocol):
    """Authoritative-only UDP DNS server answering from a dict; counts questions."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.questions: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, rdtype))
        entry = self.zone.get((name, rdtype))
        if entry is not None:
            ttl, values = entry
            response.answer.append(
                dns.rrset.from_text_list(question.name, ttl, "IN", rdtype, values)
            )
        elif not any(n == name for n, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


def with_dns(
    zone: Zone,
    body: Callable[[SipLocator, TinyDNS, list[float]], Awaitable[None]],
    **locator_args: Any,
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = TinyDNS(zone)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: server, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        clock = [1000.0]
        locator = SipLocator(
            make_resolver(["127.0.0.1"], port=port, lifetime=2.0),
            clock=lambda: clock[0],
            rng=random.Random(7),
            **locator_args,
        )
        try:
            await asyncio.wait_for(body(locator, server, clock), timeout=20)
        finally:
            transport.close()

    asyncio.run(main())


ZONE: Zone = {
    ("carrier.test", "NAPTR"): (
        300,
        [
            '10 50 "s" "SIP+D2T" "" _sip._tcp.carrier.test.',
            '20 50 "s" "SIP+D2U" "" _sip._udp.carrier.test.',
            '30 50 "s" "X-FOO" "" _foo._udp.carrier.test.',
        ],
    ),
    ("_sip._tcp.carrier.test", "SRV"): (300, ["10 0 5070 sbc1.carrier.test."]),
    ("_sip._udp.carrier.test", "SRV"): (
        60,
        ["10 60 5060 sbc1.carrier.test.", "20 0 5080 sbc2.carrier.test."],
    ),
    ("_sips._tcp.carrier.test", "SRV"): (300, ["10 0 5061 sbc2.carrier.test."]),
    ("sbc1.carrier.test", "A"): (120, ["127.0.0.11"]),
    ("sbc1.carrier.test", "AAAA"): (120, ["::1"]),
    ("sbc2.carrier.test", "A"): (120, ["127.0.0.12", "127.0.0.13"]),
    ("plain.test", "A"): (30, ["127.0.0.20"]),
    ("srvonly.test", "SRV"): (30, ["0 0 0 ."]),
    ("_sip._udp.srvonly.test", "SRV"): (30, ["10 0 6000 plain.test."]),
    ("_sip._tcp.nosvc.test", "SRV"): (30, ["0 0 0 ."]),
    ("nosvc.test", "A"): (30, ["127.0.0.30"]),
}


def test_literal_ip_skips_dns() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        assert await loc.locate("127.0.0.5") == [
            ServerTarget("udp", "127.0.0.5", 5060, "127.0.0.5")
        ]
        assert await loc.locate("[::1]", port=5080, transport="TCP") == [
            ServerTarget("tcp", "::1", 5080, "::1")
        ]
        assert await loc.locate("127.0.0.5", secure=True) == [
            ServerTarget("tls", "127.0.0.5", 5061, "127.0.0.5")
        ]
        assert server.questions == []

    with_dns(ZONE, body)


def test_explicit_port_uses_a_and_aaaa_only() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        got = await loc.locate("sbc1.carrier.test", port=5099)
        assert got == [
            ServerTarget("udp", "127.0.0.11", 5099, "sbc1.carrier.test"),
            ServerTarget("udp", "::1", 5099, "sbc1.carrier.test"),
        ]
        assert {q[1] for q in server.questions} == {"A", "AAAA"}

    with_dns(ZONE, body)


def test_prefer_ipv6_orders_aaaa_first() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        got = await loc.locate("sbc1.carrier.test", port=5099)
        assert [t.host for t in got] == ["::1", "127.0.0.11"]

    with_dns(ZONE, body, prefer_ipv6=True)


def test_transport_param_uses_srv_in_priority_order() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        got = await loc.locate("carrier.test", transport="udp")
        assert got[:2] == [
            ServerTarget("udp", "127.0.0.11", 5060, "carrier.test"),
            ServerTarget("udp", "::1", 5060, "carrier.test"),
        ]
        assert sorted(got[2:]) == [
            ServerTarget("udp", "127.0.0.12", 5080, "carrier.test"),
            ServerTarget("udp", "127.0.0.13", 5080, "carrier.test"),
        ]
        assert ("carrier.test", "NAPTR") not in server.questions

    with_dns(ZONE, body)


def test_naptr_then_srv_then_addresses() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        got = await loc.locate("carrier.test")
        # NAPTR order 10 (TCP) before order 20 (UDP); the unknown service is ignored.
        assert got[0] == ServerTarget("tcp", "127.0.0.11", 5070, "carrier.test")
        assert [t.transport for t in got] == ["tcp", "tcp", "udp", "udp", "udp", "udp"]
        assert server.questions[0] == ("carrier.test", "NAPTR")

    with_dns(ZONE, body)


def test_sips_uses_tls_records_only() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        got = await loc.locate("carrier.test", secure=True)
        # Addresses within one A rrset come in the rrset's (unordered) order.
        assert sorted(got) == [
            ServerTarget("tls", "127.0.0.12", 5061, "carrier.test"),
            ServerTarget("tls", "127.0.0.13", 5061, "carrier.test"),
        ]
        with pytest.raises(LocateError):
            await loc.locate("carrier.test", secure=True, transport="udp")
        tcp = await loc.locate("carrier.test", secure=True, transport="tcp")
        assert {t.transport for t in tcp} == {"tls"}

    with_dns(ZONE, body)


def test_no_naptr_falls_back_to_srv_per_transport() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        got = await loc.locate("srvonly.test")
        assert got == [ServerTarget("udp", "127.0.0.20", 6000, "srvonly.test")]

    with_dns(ZONE, body)


def test_no_srv_falls_back_to_a_record_and_default_port() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        assert await loc.locate("plain.test") == [
            ServerTarget("udp", "127.0.0.20", 5060, "plain.test")
        ]
        assert await loc.locate("plain.test", transport="tls") == [
            ServerTarget("tls", "127.0.0.20", 5061, "plain.test")
        ]
        # A "." SRV target means no service there; the A record of the domain is used.
        assert await loc.locate("nosvc.test", transport="tcp") == [
            ServerTarget("tcp", "127.0.0.30", 5060, "nosvc.test")
        ]

    with_dns(ZONE, body)


def test_unknown_name_raises() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        with pytest.raises(LocateError):
            await loc.locate("nowhere.test")
        with pytest.raises(LocateError):
            await loc.locate("plain.test", transport="sctp")

    with_dns(ZONE, body)


def test_answers_are_cached_for_their_ttl() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        first = await loc.locate("carrier.test", transport="udp")
        asked = len(server.questions)
        assert asked > 0
        assert await loc.locate("carrier.test", transport="udp") == first
        assert len(server.questions) == asked  # all from the cache
        clock[0] += 61  # the udp SRV (TTL 60) expires; the A records (TTL 120) do not
        await loc.locate("carrier.test", transport="udp")
        # sbc2 has no AAAA: that empty answer was cached for the negative TTL (30 s).
        assert sorted(server.questions[asked:]) == [
            ("_sip._udp.carrier.test", "SRV"),
            ("sbc2.carrier.test", "AAAA"),
        ]
        clock[0] += 60
        await loc.locate("carrier.test", transport="udp")
        assert ("sbc1.carrier.test", "A") in server.questions[asked + 1 :]

    with_dns(ZONE, body)


def test_negative_answers_are_cached_briefly() -> None:
    async def body(loc: SipLocator, server: TinyDNS, clock: list[float]) -> None:
        with pytest.raises(LocateError):
            await loc.locate("nowhere.test", port=5060)
        asked = len(server.questions)
        with pytest.raises(LocateError):
            await loc.locate("nowhere.test", port=5060)
        assert len(server.questions) == asked
        clock[0] += 11
        with pytest.raises(LocateError):
            await loc.locate("nowhere.test", port=5060)
        assert len(server.questions) == asked + 2

    with_dns(ZONE, body, negative_ttl=10.0)


def test_unreachable_dns_server_is_not_cached() -> None:
    async def main() -> None:
        resolver = make_resolver(["127.0.0.1"], port=9, lifetime=0.3)  # nothing listens
        loc = SipLocator(resolver)
        with pytest.raises(LocateError):
            await loc.locate("plain.test", port=5060)
        with pytest.raises(LocateError):
            await loc.locate("plain.test", port=5060)
        assert loc.queries_sent == 4  # A and AAAA twice: failures were not cached

    asyncio.run(asyncio.wait_for(main(), timeout=20))


def test_srv_weighting_follows_rfc2782() -> None:
    from opentrunk.transport.dns import _Srv

    records = [_Srv(10, 90, 1, "heavy"), _Srv(10, 10, 2, "light"), _Srv(5, 0, 3, "first")]
    rng = random.Random(1)
    heavy_first = 0
    for _ in range(2000):
        order = order_srv(records, rng)
        assert order[0].target == "first"
        assert sorted(r.target for r in order) == ["first", "heavy", "light"]
        heavy_first += order[1].target == "heavy"
    assert 1650 < heavy_first < 1950  # ~90 %
