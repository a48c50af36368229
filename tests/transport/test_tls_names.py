"""TLS towards a name (RFC 5922 section 7, RFC 6125): SNI, verification against the SIP
domain or the IP literal, and connections kept apart per verified name.

Real sockets on loopback: the server is a `StreamTransport` TLS listener with a
certificate from a lab CA (`edge.tls_cert.DevCA`) that the client trusts, and an SNI
callback recording what each client sent. Names resolve through the project's locator
(`transport.dns.SipLocator`) against a tiny DNS server on 127.0.0.1, not /etc/hosts.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_dns import TinyDNS, Zone
from transport_helpers import Collector, options, run

from opentrunk.edge.origination import OriginationTarget, locate_target
from opentrunk.edge.tls_cert import DevCA
from opentrunk.sip.transaction import Address
from opentrunk.transport.dns import SipLocator, make_resolver
from opentrunk.transport.tcp import StreamTransport
from opentrunk.transport.tls import (
    NamedAddress,
    client_context,
    identity_error,
    server_context,
    sip_domains,
)

PBX = "pbx.example.test"
# Production runs on uvloop, whose TLS layer is its own: the checks must hold on both.
UVLOOP = pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])


@dataclass
class Lab:
    ca_file: Path
    ca: DevCA
    base: Path

    def server_pair(self, hosts: list[str]) -> tuple[Path, Path]:
        issued = self.ca.write_issued(self.base / "-".join(hosts).replace(":", "_"), hosts)
        return issued.cert_path, issued.key_path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    base = tmp_path_factory.mktemp("tls-names")
    ca = DevCA()
    return Lab(ca.write_cert(base / "ca.pem"), ca, base)


@dataclass
class Peers:
    server: StreamTransport
    client: StreamTransport
    received: Collector
    sni: list[str | None]
    failures: list[tuple[Address, Exception]] = field(default_factory=list)

    def to(self, name: str | None) -> Address:
        """The server's address, named when `name` is given."""
        port = self.server.local_address.port
        if name is None:
            return Address("tls", "127.0.0.1", port)
        return NamedAddress("tls", "127.0.0.1", port, name)

    async def failed(self, count: int = 1) -> None:
        for _ in range(300):
            if len(self.failures) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} send failures, got {self.failures}")


@asynccontextmanager
async def peers(lab: Lab, hosts: list[str]) -> AsyncIterator[Peers]:
    """A TLS server presenting a certificate for `hosts` and a client trusting the CA."""
    cert, key = lab.server_pair(hosts)
    context = server_context(cert, key)
    sni: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        sni.append(name)

    context.sni_callback = record_sni
    received = Collector()
    server = StreamTransport(received, name="tls", server_ssl=context)
    failures: list[tuple[Address, Exception]] = []
    client = StreamTransport(
        Collector(),
        name="tls",
        server_ssl=context,
        client_ssl=client_context(lab.ca_file),
        on_send_error=lambda dest, exc: failures.append((dest, exc)),
    )
    await server.start("127.0.0.1", 0)
    await client.start("127.0.0.1", 0)
    try:
        yield Peers(server, client, received, sni, failures)
    finally:
        await client.close()
        await server.close()


@UVLOOP
def test_a_named_destination_sends_sni_and_is_verified_against_the_name(
    lab: Lab, use_uvloop: bool
) -> None:
    async def main() -> None:
        async with peers(lab, [PBX]) as p:
            p.client.send(options(transport="TLS", call_id="named"), p.to(PBX))
            await p.received.wait_for(1)
            assert p.received.items[0][0].call_id == "named"
            assert p.sni == [PBX]
            assert p.failures == []

    run(main(), uvloop=use_uvloop)


def test_a_wrong_name_fails_the_handshake(lab: Lab) -> None:
    async def main() -> None:
        async with peers(lab, [PBX]) as p:
            wrong = p.to("other.example.test")
            p.client.send(options(transport="TLS"), wrong)
            await p.failed()
            dest, exc = p.failures[0]
            assert isinstance(exc, ssl.SSLCertVerificationError)
            assert "other.example.test" in str(exc)
            # The failure names the destination it was for, name included: only that
            # name's transactions fail.
            assert dest == wrong and dest != p.to(PBX) and dest != p.to(None)
            assert p.sni == ["other.example.test"]
            assert p.received.items == []
            assert p.client.connections == {}

    run(main())


@UVLOOP
def test_a_wildcard_does_not_prove_a_sip_domain(lab: Lab, use_uvloop: bool) -> None:
    """RFC 5922 section 7.2: `*.example.test` does not name pbx.example.test for SIP,
    though OpenSSL's own check would take it; an exact entry beside it does."""

    async def main() -> None:
        async with peers(lab, ["*.example.test"]) as p:
            p.client.send(options(transport="TLS"), p.to(PBX))
            await p.failed()
            assert isinstance(p.failures[0][1], ssl.SSLCertVerificationError)
            assert "wildcard" in str(p.failures[0][1])
            assert p.received.items == [] and p.client.connections == {}
        async with peers(lab, ["*.example.test", PBX]) as p:
            p.client.send(options(transport="TLS", call_id="exact"), p.to(PBX))
            await p.received.wait_for(1)
            assert p.failures == []

    run(main(), uvloop=use_uvloop)


@UVLOOP
def test_sip_uri_subject_alt_names_take_precedence(lab: Lab, use_uvloop: bool) -> None:
    """RFC 5922 section 7.1: a certificate's `sip:` URI subjectAltNames are its SIP
    domains when it has any (OpenSSL's own check, on DNS entries, would refuse the first
    certificate and accept the second); a URI with a user part names a user, not a
    domain."""

    async def main() -> None:
        async with peers(lab, [f"sip:{PBX}"]) as p:
            p.client.send(options(transport="TLS", call_id="uri"), p.to(PBX))
            await p.received.wait_for(1)
            assert p.failures == [] and p.sni == [PBX]
        async with peers(lab, ["sip:other.example.test", PBX]) as p:
            p.client.send(options(transport="TLS"), p.to(PBX))
            await p.failed()
            assert isinstance(p.failures[0][1], ssl.SSLCertVerificationError)
            assert "from URI: other.example.test" in str(p.failures[0][1])
            assert p.received.items == [] and p.client.connections == {}
        async with peers(lab, [f"sip:alice@{PBX}", PBX]) as p:
            p.client.send(options(transport="TLS", call_id="user-uri"), p.to(PBX))
            await p.received.wait_for(1)  # no domain URI: the DNS entry counts
            assert p.failures == []

    run(main(), uvloop=use_uvloop)


def test_sip_domains_of_a_certificate() -> None:
    """`sip_domains` on the dictionaries Python's ssl module gives for peer certificates."""
    cn = ((("commonName", "cn.example.test"),),)
    assert sip_domains({"subject": cn}) == (["cn.example.test"], "CN")
    # A subjectAltName without DNS or SIP entries: the common name is not looked at.
    assert sip_domains({"subject": cn, "subjectAltName": (("IP Address", "192.0.2.1"),)}) == (
        [],
        "DNS",
    )
    both = {
        "subject": cn,
        "subjectAltName": (
            ("DNS", "dns.example.test"),
            ("URI", "SIP:uri.example.test;transport=tls"),
            ("URI", "sips:secure.example.test"),
            ("URI", "https://web.example.test"),
            ("URI", "sip:[2001:db8::5]:5061"),
            ("URI", "sip:not a uri"),
        ),
    }
    assert sip_domains(both) == (["uri.example.test", "2001:db8::5"], "URI")
    # Exact and case-insensitive, a trailing dot ignored; no wildcards.
    assert identity_error(both, "URI.example.test.", "192.0.2.1") is None
    assert identity_error(both, "dns.example.test", "192.0.2.1") is not None
    wildcard = {"subjectAltName": (("DNS", "*.example.test"),)}
    assert "wildcard" in str(identity_error(wildcard, "pbx.example.test", "192.0.2.1"))
    # An IP destination: subjectAltName IP entries only, compared as addresses.
    ips = {
        "subject": ((("commonName", "192.0.2.1"),),),
        "subjectAltName": (("IP Address", "2001:DB8:0:0:0:0:0:1\n"),),
    }
    assert identity_error(ips, "", "[2001:db8::1]") is None
    assert identity_error(ips, "", "192.0.2.1") is not None
    # Verification off: nothing to check.
    assert identity_error({}, "pbx.example.test", "192.0.2.1") is None


def test_an_ip_destination_is_verified_against_the_ip(lab: Lab) -> None:
    async def main() -> None:
        # A certificate naming the PBX only: an IP destination does not match it (what
        # every named destination met before names were carried to the transport).
        async with peers(lab, [PBX]) as p:
            p.client.send(options(transport="TLS"), p.to(None))
            await p.failed()
            assert isinstance(p.failures[0][1], ssl.SSLCertVerificationError)
            assert p.received.items == []
        # A certificate with the address as an IP subjectAltName: verified, and no SNI
        # (RFC 6066 section 3: literal addresses are not sent as names).
        async with peers(lab, ["127.0.0.1"]) as p:
            p.client.send(options(transport="TLS", call_id="by-ip"), p.to(None))
            await p.received.wait_for(1)
            assert p.received.items[0][0].call_id == "by-ip"
            assert p.sni == [None]

    run(main())


@UVLOOP
def test_a_connection_verified_for_one_name_is_not_used_for_another(
    lab: Lab, use_uvloop: bool
) -> None:
    async def main() -> None:
        async with peers(lab, [PBX]) as p:
            p.client.send(options(transport="TLS", call_id="first"), p.to(PBX))
            await p.received.wait_for(1)
            # Same IP:port, another name: a connection (and a check) of its own, which
            # fails, rather than the one verified for PBX.
            p.client.send(options(transport="TLS", call_id="second"), p.to("evil.example.test"))
            await p.failed()
            assert p.sni == [PBX, "evil.example.test"]
            assert [m.call_id for m, _, _ in p.received.items] == ["first"]
            # The first name's connection is still there and still used.
            p.client.send(options(transport="TLS", call_id="third", branch="z9hG4bK-3"), p.to(PBX))
            await p.received.wait_for(2)
            assert p.received.items[1][0].call_id == "third"
            # The other name's connection was made, refused once its certificate was
            # checked, and closed; the first one carried the third message.
            stats = p.client.stats
            assert (stats.connections_opened, stats.connections_closed) == (2, 1)
            assert p.client.has_connection(p.to(PBX))
            assert not p.client.has_connection(p.to("evil.example.test"))

    run(main(), uvloop=use_uvloop)


def test_two_names_on_one_address_get_two_connections(lab: Lab) -> None:
    async def main() -> None:
        async with peers(lab, ["a.example.test", "b.example.test"]) as p:
            p.client.send(options(transport="TLS", call_id="a"), p.to("a.example.test"))
            await p.received.wait_for(1)
            p.client.send(options(transport="TLS", call_id="b"), p.to("b.example.test"))
            await p.received.wait_for(2)
            p.client.send(
                options(transport="TLS", call_id="a2", branch="z9hG4bK-a2"),
                p.to("a.example.test"),
            )
            await p.received.wait_for(3)
            assert p.sni == ["a.example.test", "b.example.test"]
            assert p.client.stats.connections_opened == 2
            assert p.failures == []

    run(main())


async def _located(zone: Zone, target: OriginationTarget) -> Address | None:
    loop = asyncio.get_running_loop()
    dns_server = TinyDNS(zone)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: dns_server, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        locator = SipLocator(make_resolver(["127.0.0.1"], port=port, lifetime=2.0))
        return await locate_target(locator, target, {"udp", "tls"})
    finally:
        transport.close()


def test_an_origination_uri_name_reaches_the_transport(lab: Lab) -> None:
    """`pbx.example.test:PORT;transport=tls` -> A record -> a named address whose
    connection sends SNI pbx.example.test and is verified against it."""

    async def main() -> None:
        async with peers(lab, [PBX]) as p:
            port = p.server.local_address.port
            zone: Zone = {(PBX, "A"): (60, ["127.0.0.1"])}
            dest = await _located(zone, OriginationTarget(PBX, port, "tls"))
            assert dest == NamedAddress("tls", "127.0.0.1", port, PBX)
            assert dest is not None
            p.client.send(options(transport="TLS", call_id="located"), dest)
            await p.received.wait_for(1)
            assert p.sni == [PBX]

    run(main())


def test_srv_targets_are_verified_against_the_uri_domain(lab: Lab) -> None:
    """RFC 5922 section 7.2: the identity is the domain of the URI, not the SRV target."""

    async def main() -> None:
        async with peers(lab, ["example.test"]) as p:
            port = p.server.local_address.port
            zone: Zone = {
                ("_sips._tcp.example.test", "SRV"): (60, [f"10 0 {port} sbc7.example.test."]),
                ("sbc7.example.test", "A"): (60, ["127.0.0.1"]),
            }
            dest = await _located(zone, OriginationTarget("example.test", None, "tls"))
            assert dest == NamedAddress("tls", "127.0.0.1", port, "example.test")
            assert dest is not None
            p.client.send(options(transport="TLS", call_id="srv"), dest)
            await p.received.wait_for(1)
            assert p.sni == ["example.test"]

    run(main())


def test_plain_transports_and_ip_literals_locate_to_plain_addresses() -> None:
    async def main() -> None:
        zone: Zone = {(PBX, "A"): (60, ["127.0.0.1"])}
        udp = await _located(zone, OriginationTarget(PBX, 5070, "udp"))
        literal = await _located(zone, OriginationTarget("127.0.0.1", 5071, "tls"))
        assert type(udp) is Address and udp == Address("udp", "127.0.0.1", 5070)
        assert type(literal) is Address and literal == Address("tls", "127.0.0.1", 5071)

    run(main())


def test_named_addresses_differ_by_name_only() -> None:
    """What the transaction layer matches a transport failure with: one name's failure
    must not fail another name's transactions on the same IP:port, nor an IP's."""
    named = NamedAddress("tls", "127.0.0.1", 5061, PBX)
    same = NamedAddress("tls", "127.0.0.1", 5061, PBX)
    other = NamedAddress("tls", "127.0.0.1", 5061, "other.example.test")
    plain = Address("tls", "127.0.0.1", 5061)
    assert named == same and hash(named) == hash(same)
    assert named != other and named != plain and plain != named
    # `==` both ways too: a tuple's own `==` would say a plain address equals it.
    assert [plain == named, named == plain, plain == Address(*named)] == [False, False, True]
    table: dict[Address, int] = {named: 1}
    assert table.get(same) == 1 and table.get(plain) is None
    # Still an Address for everything else (transport, host, port, reliable).
    assert named.transport == "tls" and named.host == "127.0.0.1" and named.reliable
    assert pickle.loads(pickle.dumps(named)) == named
    assert copy.copy(named).server_name == PBX
    assert "server_name='pbx.example.test'" in repr(named)
