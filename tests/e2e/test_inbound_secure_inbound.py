"""Inbound calls to a `secure` trunk (CALLS.md "Media", issue 6 item 4): carrier (plain
RTP, UDP) -> live `opentrunk serve` -> the customer's PBX over TLS with SRTP.

The PBX is the test's own TLS UAS on a real socket, with a development certificate the
edge trusts through its outbound TLS settings (the system trust store, here pointed at
that certificate with SSL_CERT_FILE, which OpenSSL honours). Media is the test's own
RTP sockets; the SRTP side is checked by decrypting what the PBX received and
comparing it with what the carrier sent, and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.harness import Api, EdgeProcess, free_port
from e2e.inbound_harness import (
    ORIGINATION_TIMEOUTS,
    Inbound,
    inbound_client,
    setup_inbound,
)
from e2e.media_peers import Message, Pbx, Peer, SipSocket, close_all
from e2e.test_media_calls import HOST, run
from media.peers import RtpPeer, sdp_crypto_key, sdp_port, srtp_session
from media.rtpengine_daemon import require_rtpengine, rtpengine_daemon
from opentrunk.edge.inbound import delivery_target
from opentrunk.edge.origination import OriginationTarget, parse_origination_uri
from opentrunk.edge.tls_cert import write_dev_cert
from opentrunk.media.rtp import build_rtp
from opentrunk.sip.message import Request

pytestmark = pytest.mark.sipp

# Media ranges below the kernel's ephemeral range: the relay's, then rtpengine's.
LOW, HIGH = 26400, 26599
ENGINE_LOW, ENGINE_HIGH = 26600, 26799
COUNT = 40


@dataclass
class Certs:
    trusted: tuple[Path, Path]  # the PBX's pair, in the edge's trust store
    untrusted: tuple[Path, Path]  # a pair nobody vouches for


def tls_edge_env(data: Path, trusted: Path, media_ports: tuple[int, int]) -> dict[str, str]:
    """An edge's environment with a TLS listener of its own (a development pair under
    `data`), trusting the certificate in `trusted`, with its own media port range."""
    own = write_dev_cert(data / "tls", [HOST])
    return {
        **ORIGINATION_TIMEOUTS,
        "OPENTRUNK_MEDIA_PORTS": f"{media_ports[0]}-{media_ports[1]}",
        "OPENTRUNK_SIP_TLS": f"{HOST}:{free_port()}",
        "OPENTRUNK_TLS_CERT": str(own.cert_path),
        "OPENTRUNK_TLS_KEY": str(own.key_path),
        "SSL_CERT_FILE": str(trusted),
    }


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    base = tmp_path_factory.mktemp("pbx-certs")
    good = write_dev_cert(base / "good", [HOST])
    bad = write_dev_cert(base / "bad", [HOST])
    return Certs((good.cert_path, good.key_path), (bad.cert_path, bad.key_path))


@pytest.fixture(scope="module", params=["relay", "rtpengine"])
def secure_edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, certs: Certs
) -> Iterator[EdgeProcess]:
    """The edge with a TLS listener of its own, trusting the PBX's certificate, on the
    embedded relay and on rtpengine (the same SRTP offer and checks either way)."""
    data = tmp_path_factory.mktemp(f"secure-inbound-{request.param}")
    env = tls_edge_env(data, certs.trusted[0], (LOW, HIGH))
    with contextlib.ExitStack() as stack:
        if request.param == "rtpengine":
            ng_port = stack.enter_context(
                rtpengine_daemon(
                    require_rtpengine(), ENGINE_LOW, ENGINE_HIGH, ("--config-file=none",)
                )
            )
            env["OPENTRUNK_MEDIA_BACKEND"] = "rtpengine"
            env["OPENTRUNK_RTPENGINE_NG"] = f"{HOST}:{ng_port}"
        process = stack.enter_context(EdgeProcess(data, env=env))
        process.media_ports = (
            (ENGINE_LOW, ENGINE_HIGH) if request.param == "rtpengine" else (LOW, HIGH)
        )  # type: ignore[attr-defined]
        yield process


@pytest.fixture(scope="module")
def secure_api(secure_edge: EdgeProcess) -> Iterator[Api]:
    with inbound_client(secure_edge) as client:
        yield client


class TlsPbx(Peer):
    """The customer's PBX: a TLS listener taking the edge's connection, answering as a
    UAS (Contact with transport=tls, so the edge's in-dialog requests come back over
    TLS)."""

    def __init__(self, cert: tuple[Path, Path]) -> None:
        super().__init__(SipSocket())
        self.cert = cert
        self.port = 0
        self.connections = 0
        self.tag = os.urandom(5).hex()
        self._server: asyncio.Server | None = None

    async def listen(self) -> TlsPbx:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        self._server = await asyncio.start_server(self._accept, HOST, 0, ssl=context)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.sock.transport_name = "tls"
        self.sock._writer = writer
        await self.sock.read_stream(reader)

    async def answer(self, sdp_for: Callable[[bytes], bytes], timeout: float = 8.0) -> Request:
        invite = await self.wait_request("INVITE", timeout)
        contact = (("Contact", f"<sip:pbx@{HOST}:{self.port};transport=tls>"),)
        self.respond(invite, 180, to_tag=self.tag, headers=contact)
        body = sdp_for(invite.body)
        self.respond(invite, 200, to_tag=self.tag, headers=contact, body=body)
        await self.wait_request("ACK", timeout)
        return invite

    def close(self) -> None:
        self.sock.close()
        if self._server is not None:
            self._server.close()


def secure_setup(api: Api, pbx: TlsPbx, uri_suffix: str = "") -> Inbound:
    setup = setup_inbound(api, f"{HOST}:{pbx.port}{uri_suffix}")
    setup.account.post(f"Zentrunk/Trunk/{setup.trunk_id}/", {"secure": True})
    return setup


async def carrier_invite(edge: EdgeProcess, setup: Inbound, rtp: RtpPeer) -> Pbx:
    """The carrier: a UDP UAC from 127.0.0.1 (its inbound source) with a plain offer."""
    sock = await SipSocket.udp((HOST, edge.sip_port))
    return Pbx(sock, HOST, "14155550199", setup.number)


def record_of(setup: Inbound) -> dict[str, object]:
    return setup.account.call_record(setup.number)


def test_secure_trunk_gets_tls_and_srtp_both_ways(
    secure_edge: EdgeProcess, secure_api: Api, certs: Certs
) -> None:
    holder: dict[str, TlsPbx] = {}

    async def scenario() -> None:
        pbx = await TlsPbx(certs.trusted).listen()
        holder["pbx"] = pbx
        # No transport in the URI: the trunk's `secure` flag alone decides TLS.
        setup = secure_setup(secure_api, pbx)
        holder["setup"] = setup  # type: ignore[assignment]
        carrier_rtp, pbx_rtp = await RtpPeer().open(), await RtpPeer().open()
        carrier = await carrier_invite(secure_edge, setup, carrier_rtp)
        answering = asyncio.create_task(pbx.answer(lambda _offer: pbx_rtp.sdp(srtp=True)))
        final = await carrier.call(carrier_rtp.sdp())
        assert final.status == 200, final.start_line()
        invite = await answering
        # Signalling: over TLS (the test's listener took the connection), a TLS
        # Request-URI and Contact.
        assert pbx.connections == 1
        assert ";transport=tls" in str(invite.uri)
        assert str(invite.contacts[0].uri).startswith("sips:")
        # Media offer to the PBX: SRTP with the relay's SDES key, nothing of the
        # carrier's; answer to the carrier: plain RTP, no key.
        offer, answer = invite.body, final.body
        assert b"m=audio" in offer and b"RTP/SAVP" in offer
        assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offer
        assert offer.count(b"a=crypto:") == 1 and b"a=fingerprint" not in offer  # SDES only
        assert str(carrier_rtp.port).encode() not in offer
        assert b"RTP/AVP" in answer and b"RTP/SAVP" not in answer and b"a=crypto" not in answer
        low, high = secure_edge.media_ports  # type: ignore[attr-defined]
        assert low <= sdp_port(offer) <= high and low <= sdp_port(answer) <= high
        relay_key = sdp_crypto_key(offer)
        assert relay_key != pbx_rtp.key
        # Carrier -> PBX: plain in, SRTP under the relay's key out.
        plain_down = [build_rtp(0, 100 + i, 160 * i, 0xC1, os.urandom(160)) for i in range(COUNT)]
        for packet in plain_down:
            carrier_rtp.send_to(packet, (HOST, sdp_port(answer)))
            await asyncio.sleep(0.005)
        # PBX -> carrier: SRTP under the PBX's key in (one packet tampered), plain out.
        encrypt = srtp_session(pbx_rtp.key, inbound=False)
        plain_up = [build_rtp(0, 700 + i, 160 * i, 0xD2, os.urandom(160)) for i in range(COUNT)]
        for i, packet in enumerate(plain_up):
            protected = bytearray(encrypt.protect(packet))
            if i == 7:
                protected[30] ^= 0x55
            pbx_rtp.send_to(bytes(protected), (HOST, sdp_port(offer)))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        decrypt = srtp_session(relay_key, inbound=True)
        got_pbx = [data for _at, data, _addr in pbx_rtp.received.rtp]
        assert len(got_pbx) == COUNT
        assert all(data not in plain_down for data in got_pbx)  # encrypted on the wire
        assert [decrypt.unprotect(data) for data in got_pbx] == plain_down
        got_carrier = [data for _at, data, _addr in carrier_rtp.received.rtp]
        assert got_carrier == plain_up[:7] + plain_up[8:]  # the tampered one dropped
        # The carrier hangs up; the BYE reaches the PBX over its TLS connection.
        bye = await carrier.bye()
        assert bye.status == 200
        pbx_bye = await pbx.wait_request("BYE", 5)
        pbx.respond(pbx_bye, 200)
        close_all(carrier_rtp, pbx_rtp, carrier, pbx)

    try:
        run(scenario)
    finally:
        if "pbx" in holder:
            holder["pbx"].close()
    setup: Inbound = holder["setup"]  # type: ignore[assignment]
    record = record_of(setup)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3000", "carrier")
    assert record["call_direction"] == "inbound"
    assert record["transport_protocol"] == "tls"
    assert record["srtp"] is True and record["secure_trunking"] is True


def test_pbx_answering_plain_rtp_ends_4640(
    secure_edge: EdgeProcess, secure_api: Api, certs: Certs
) -> None:
    holder: dict[str, object] = {}

    async def scenario() -> None:
        pbx = await TlsPbx(certs.trusted).listen()
        setup = secure_setup(secure_api, pbx, ";transport=tls")
        holder["setup"] = setup
        carrier_rtp, pbx_rtp = await RtpPeer().open(), await RtpPeer().open()
        carrier = await carrier_invite(secure_edge, setup, carrier_rtp)
        answering = asyncio.create_task(pbx.answer(lambda _offer: pbx_rtp.sdp()))
        final = await carrier.call(carrier_rtp.sdp())
        await answering
        assert final.status == 488, final.start_line()
        assert "4640" in (final.headers.get("Reason") or "")
        # The PBX's answered dialog is not left up: it gets a BYE.
        pbx_bye = await pbx.wait_request("BYE", 5)
        pbx.respond(pbx_bye, 200)
        close_all(carrier_rtp, pbx_rtp, carrier, pbx)

    run(scenario)
    record = record_of(holder["setup"])  # type: ignore[arg-type]
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4640", "customer")
    assert record["hangup_cause_name"] == "sdp_not_acceptable_here_by_user"
    assert record["transport_protocol"] == "tls"
    assert record["srtp"] is True and record["secure_trunking"] is True


def test_pbx_certificate_not_trusted_gets_no_call(
    secure_edge: EdgeProcess, secure_api: Api, certs: Certs
) -> None:
    holder: dict[str, object] = {}

    async def scenario() -> None:
        pbx = await TlsPbx(certs.untrusted).listen()
        setup = secure_setup(secure_api, pbx)
        holder["setup"] = setup
        carrier_rtp = await RtpPeer().open()
        carrier = await carrier_invite(secure_edge, setup, carrier_rtp)
        final = await carrier.call(carrier_rtp.sdp())
        assert final.status >= 500, final.start_line()
        # The handshake failed on the edge's side: not one SIP message reached the PBX.
        seen: list[Message] = []
        while (message := await pbx.sock.recv(0.2)) is not None:
            seen.append(message)
        assert seen == []
        assert pbx.connections <= 1
        carrier_rtp.close()
        carrier.sock.close()
        pbx.close()

    run(scenario)
    record = record_of(holder["setup"])  # type: ignore[arg-type]
    assert record["hangup_source"] == "customer", record
    assert record["hangup_cause_code"] == "5360", record  # unreachable: as a 503
    assert record["srtp"] is True and record["secure_trunking"] is True


def test_delivery_target_forces_tls_on_a_secure_trunk() -> None:
    target = parse_origination_uri("sip:pbx@192.0.2.10:5070;transport=udp")
    assert delivery_target(target, secure=True) == OriginationTarget(
        "192.0.2.10", 5070, "tls", "pbx"
    )
    assert delivery_target(target, secure=False) == target
    bare = parse_origination_uri("pbx.example.com")
    assert delivery_target(bare, secure=True) == OriginationTarget("pbx.example.com", None, "tls")
