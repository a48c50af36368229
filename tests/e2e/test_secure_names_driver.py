"""The work of test_secure_names.py, run inside a loopback-only network namespace (the
origination URIs name example domains): a carrier's call to a number on a `secure`
inbound trunk whose origination URIs are host names, through a live edge.

Everything is real sockets on 127.0.0.1: the edge (`SipEdge`, started in this process so
that its locator can be pointed at the test's DNS server instead of /etc/resolv.conf),
a tiny authoritative DNS server for the example names, the PBX (a TLS `SipEndpoint`
presenting a certificate from a lab CA for pbx.example.test, recording the SNI of each
handshake) and the carrier (a UDP `SipEndpoint` in the carrier's inbound source). The
edge trusts the lab CA the way an operator configures it today: SSL_CERT_FILE.

Run as a script with scenario names (default: all) it prints one JSON line per
scenario and exits non-zero on a failed check; pytest collects nothing here. The
carrier scenario (outbound, carriers configured by name over TLS) needs the change to
`edge/outbound.py` that carries the located name to the transport.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import ssl
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from opentrunk.config import Settings
from opentrunk.edge.config import EdgeConfig
from opentrunk.edge.server import SipEdge
from opentrunk.edge.tls_cert import DevCA, write_dev_cert
from opentrunk.services import accounts as accounts_svc
from opentrunk.services import carriers as carriers_svc
from opentrunk.services import numbers as numbers_svc
from opentrunk.services.ipacls import create_ipacl
from opentrunk.services.trunks import create_trunk
from opentrunk.services.uris import create_uri
from opentrunk.sip.dialog import Dialog
from opentrunk.sip.message import Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.store.store import Store
from opentrunk.transport.dns import SipLocator, make_resolver
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint
from opentrunk.transport.tls import server_context

HOST = "127.0.0.1"
PBX_NAME = "pbx.example.test"
WRONG_NAME = "wrong.example.test"  # resolves to a peer that has no certificate for it
CARRIER_NAME = "sbc.carrier.example.test"
SIP_DOMAIN = "zt.names.test"


def plain_sdp(port: int) -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def srtp_sdp(port: int) -> bytes:
    key = base64.b64encode(os.urandom(30)).decode()
    return (
        f"v=0\r\no=- 2 2 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    ).encode()


@dataclass
class TlsPeer:
    """A UAS on TLS (the customer's PBX, or a carrier): answers INVITE 200 (an SRTP
    answer when `srtp`, else plain RTP), BYE 200; records each handshake's SNI."""

    srtp: bool = True
    endpoint: SipEndpoint = field(init=False)
    sni: list[str | None] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, transport)
    offers: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.endpoint = SipEndpoint(handler=self._on_request)

    async def listen(self, cert: Path, key: Path) -> int:
        context = server_context(cert, key)

        def record_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.sni.append(name)

        context.sni_callback = record_sni
        await self.endpoint.listen("tls", HOST, 0, server_ssl=context)
        return self.endpoint.local_address("tls").port

    def _on_request(self, incoming: IncomingRequest) -> None:
        method = incoming.method
        self.requests.append((method, incoming.source.transport))
        contact = self.endpoint.contact_uri("pbx", "tls")
        if method == "INVITE":
            self.offers.append(incoming.request.body)
            incoming.respond(180, contact=contact)
            headers = (("Content-Type", "application/sdp"),)
            body = srtp_sdp(41000) if self.srtp else plain_sdp(41000)
            incoming.respond(200, contact=contact, headers=headers, body=body)
        elif method in ("BYE", "OPTIONS"):
            incoming.respond(200)


@dataclass
class Carrier:
    endpoint: SipEndpoint
    edge: Address

    async def call(self, number: str) -> tuple[Request, Response]:
        invite = Request(
            "INVITE",
            f"sip:+{number}@{HOST}",
            [
                ("From", f"<sip:+14155550199@{HOST}>;tag={secrets.token_hex(4)}"),
                ("To", f"<sip:+{number}@{HOST}>"),
                ("Call-ID", secrets.token_hex(12)),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{self.endpoint.contact_uri('carrier')}>"),
                ("Content-Type", "application/sdp"),
            ],
            plain_sdp(40000),
        )
        final = await self.endpoint.request(invite, self.edge).final
        if 200 <= final.status < 300:
            self.endpoint.send_ack(Dialog.as_uac(invite, final).create_ack(), self.edge)
        return invite, final

    async def hang_up(self, invite: Request, answer: Response) -> Response:
        bye = Dialog.as_uac(invite, answer).create_request("BYE")
        return await self.endpoint.request(bye, self.edge).final


@dataclass
class World:
    store: Store
    auth_id: str
    account_id: int
    pbx: TlsPeer
    pbx_port: int
    carrier: Carrier
    ca: DevCA
    base: Path
    edge: Address

    def secure_number(self, primary: str, fallback: str | None = None) -> str:
        """A number on a new secure inbound trunk with these origination URIs."""
        number = f"1646555{secrets.randbelow(10000):04d}"
        numbers_svc.add_number(self.store, "+" + number, self.auth_id)
        values: dict[str, Any] = {
            "trunk_direction": "inbound",
            "secure": True,
            "primary_uri_uuid": create_uri(self.store, self.account_id, {"uri": primary}),
        }
        if fallback is not None:
            values["fallback_uri_uuid"] = create_uri(self.store, self.account_id, {"uri": fallback})
        trunk_id = create_trunk(self.store, self.account_id, values)
        numbers_svc.update_number(self.store, self.account_id, number, app_id=trunk_id)
        return number


def check(condition: bool, what: str, **details: object) -> None:
    if not condition:
        print(json.dumps({"failed": what, **{k: repr(v) for k, v in details.items()}}))
        raise SystemExit(1)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def fallback_to_the_right_name(world: World) -> dict[str, object]:
    """Primary URI names a host whose certificate is not for it: the handshake fails,
    the edge falls back to the URI whose name the certificate carries, and the call is
    answered there over TLS with SRTP; the carrier's BYE reaches the PBX over the
    connection verified for that name."""
    pbx = world.pbx
    pbx.sni.clear()
    pbx.requests.clear()
    number = world.secure_number(f"{WRONG_NAME}:{world.pbx_port}", f"{PBX_NAME}:{world.pbx_port}")
    invite, final = await world.carrier.call(number)
    check(final.status == 200, "call answered through the fallback", status=final.status)
    check(pbx.sni == [WRONG_NAME, PBX_NAME], "SNI of each attempt", sni=pbx.sni)
    invites = [transport for method, transport in pbx.requests if method == "INVITE"]
    check(invites == ["tls"], "one INVITE, over TLS", got=pbx.requests)
    offer = pbx.offers[-1]
    check(b"RTP/SAVP" in offer and b"a=crypto:" in offer, "SRTP offer", offer=offer)
    bye = await world.carrier.hang_up(invite, final)
    check(bye.status == 200, "BYE answered", status=bye.status)
    check(await wait_until(lambda: ("BYE", "tls") in pbx.requests), "BYE reached the PBX")
    check(pbx.sni == [WRONG_NAME, PBX_NAME], "BYE on the verified connection", sni=pbx.sni)
    return {"status": final.status, "sni": pbx.sni, "pbx": pbx.requests}


async def wrong_name_alone_fails(world: World) -> dict[str, object]:
    """The only URI names a host whose certificate is not for it: the PBX gets no
    INVITE and the call ends at once as an unreachable PBX does (503 to the carrier)."""
    pbx = world.pbx
    pbx.sni.clear()
    pbx.requests.clear()
    number = world.secure_number(f"{WRONG_NAME}:{world.pbx_port};transport=tls")
    started = asyncio.get_running_loop().time()
    _, final = await world.carrier.call(number)
    took = asyncio.get_running_loop().time() - started
    check(final.status == 503, "refused as unreachable", status=final.status)
    check(pbx.sni == [WRONG_NAME], "SNI was the configured name", sni=pbx.sni)
    check(pbx.requests == [], "no request reached the PBX", got=pbx.requests)
    check(took < 1.5, "failed at once, not after the origination timeout", took=took)
    return {"status": final.status, "sni": pbx.sni, "seconds": round(took, 3)}


async def carrier_by_name(world: World) -> dict[str, object]:
    """Outbound: carriers configured by host name over TLS. The first one's name is
    not on the certificate its address presents: the handshake fails and the call
    fails over to the next carrier, whose certificate carries its name; each
    handshake's SNI is the carrier's configured name."""
    carrier = TlsPeer(srtp=False)
    issued = world.ca.write_issued(world.base / "carrier", [CARRIER_NAME])
    port = await carrier.listen(issued.cert_path, issued.key_path)
    destination = f"1415555{secrets.randbelow(10000):04d}"
    for name, priority in ((WRONG_NAME, 1), (CARRIER_NAME, 5)):
        carriers_svc.add_carrier(
            world.store,
            name=f"{name}-{destination}",
            address=f"{name}:{port}",
            transport="tls",
            prefix=destination,
            priority=priority,
        )
    caller = f"1212555{secrets.randbelow(10000):04d}"
    numbers_svc.add_number(world.store, "+" + caller, world.auth_id)
    acl = create_ipacl(world.store, world.account_id, [f"{HOST}/32"], None)
    trunk_id = create_trunk(
        world.store, world.account_id, {"trunk_direction": "outbound", "ipacl_uuid": acl}
    )
    pbx = SipEndpoint()
    await pbx.listen("udp", HOST, 0)
    try:
        invite = Request(
            "INVITE",
            f"sip:+{destination}@{trunk_id}.{SIP_DOMAIN}",
            [
                ("From", f"<sip:+{caller}@{HOST}>;tag={secrets.token_hex(4)}"),
                ("To", f"<sip:+{destination}@{trunk_id}.{SIP_DOMAIN}>"),
                ("Call-ID", secrets.token_hex(12)),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{pbx.contact_uri('pbx')}>"),
                ("Content-Type", "application/sdp"),
            ],
            plain_sdp(40100),
        )
        final = await pbx.request(invite, world.edge).final
        check(final.status == 200, "answered by the carrier", status=final.status)
        pbx.send_ack(Dialog.as_uac(invite, final).create_ack(), world.edge)
        check(carrier.sni == [WRONG_NAME, CARRIER_NAME], "SNI per carrier", sni=carrier.sni)
        invites = [transport for method, transport in carrier.requests if method == "INVITE"]
        check(invites == ["tls"], "one INVITE, over TLS", got=carrier.requests)
        bye = Dialog.as_uac(invite, final).create_request("BYE")
        check((await pbx.request(bye, world.edge).final).status == 200, "BYE answered")
        check(await wait_until(lambda: ("BYE", "tls") in carrier.requests), "BYE reached")
    finally:
        await pbx.close()
        await carrier.endpoint.close()
    return {"status": final.status, "sni": carrier.sni}


SCENARIOS = {
    scenario.__name__: scenario
    for scenario in (fallback_to_the_right_name, wrong_name_alone_fails, carrier_by_name)
}


class NameServer(asyncio.DatagramProtocol):
    """Authoritative A records for the example names; NXDOMAIN for anything else."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        address = self.addresses.get(question.name.to_text().rstrip(".").lower())
        if address is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", address))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


async def main(base: Path, names: list[str]) -> None:
    ca = DevCA()
    ca_file = ca.write_cert(base / "ca.pem")
    pbx_cert = ca.write_issued(base / "pbx", [PBX_NAME])
    edge_cert = write_dev_cert(base / "edge", [HOST])
    # The edge's outbound TLS trusts the system store, which OpenSSL reads from here.
    os.environ["SSL_CERT_FILE"] = str(ca_file)
    dns_transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: NameServer({PBX_NAME: HOST, WRONG_NAME: HOST, CARRIER_NAME: HOST}),
        local_addr=(HOST, 0),
    )
    dns_port = dns_transport.get_extra_info("sockname")[1]

    settings = Settings(
        data_dir=str(base / "data"),
        sip_domain=SIP_DOMAIN,
        sip=f"{HOST}:0",
        sip_tls=f"{HOST}:0",
        tls_cert=str(edge_cert.cert_path),
        tls_key=str(edge_cert.key_path),
        media_backend="relay",
        media_address=HOST,
        media_ports="27000-27199",
        origination_provisional_timeout=1.0,
        origination_timeout=2.0,
    )
    (base / "data").mkdir()
    store = Store.open(settings)
    edge = SipEdge(settings, store, config=EdgeConfig(store, settings, ttl=60.0))
    edge.locator = SipLocator(make_resolver([HOST], port=dns_port, lifetime=2.0))
    pbx = TlsPeer()
    carrier_endpoint = SipEndpoint()
    try:
        await edge.start()
        pbx_port = await pbx.listen(pbx_cert.cert_path, pbx_cert.key_path)
        await carrier_endpoint.listen("udp", HOST, 0)
        created = accounts_svc.create_account(store, "names")
        auth_id = created["auth_id"]
        account_id = accounts_svc.account_id_of(store, auth_id)
        carriers_svc.add_carrier(
            store, name="names-carrier", address=f"{HOST}:5999", inbound_sources=[f"{HOST}/32"]
        )
        host, port = edge.address()
        edge_address = Address("udp", host, port)
        world = World(
            store,
            auth_id,
            account_id,
            pbx,
            pbx_port,
            Carrier(carrier_endpoint, edge_address),
            ca,
            base,
            edge_address,
        )
        for name in names:
            result = await asyncio.wait_for(SCENARIOS[name](world), 20)
            print(json.dumps({"scenario": name, **result}), flush=True)
    finally:
        await edge.stop()
        await pbx.endpoint.close()
        await carrier_endpoint.close()
        dns_transport.close()
        store.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="secure-names-") as tmp:
        asyncio.run(main(Path(tmp), sys.argv[1:] or list(SCENARIOS)))
    print("secure names: ok")
