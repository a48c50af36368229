"""Media through real calls on a live `opentrunk serve` (docs/media.md "Media anchoring in
calls"): a hand-driven PBX and carrier whose SDP points at the test's own RTP sockets,
traffic with injected impairments, and the Insights read back through the API.

Tolerances (stated in docs/media.md): packet loss within 1 point of what was dropped,
jitter within 25% of what was injected, RTT within 30 ms of the 100 ms RTCP-path delay,
post-dial delay at least the carrier's ringing delay and under 400 ms more.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from e2e.harness import Account, Api, EdgeProcess, free_port, metrics_text
from e2e.media_peers import Carrier, Pbx, SipSocket, close_all, hang_up
from e2e.media_traffic import Impairment, RtcpResponder, Stream, send_stream
from media.peers import RtpPeer, sdp_crypto_key, sdp_port, srtp_session
from opentrunk.edge.tls_cert import write_dev_cert
from opentrunk.media.quality import quality_score
from opentrunk.media.rtp import build_rtp, parse_rtp_header

HOST = "127.0.0.1"
RTP_TIMEOUT = 2
# The relay's range, below the kernel's ephemeral range (32768-60999), so that no
# other program's port-0 socket (a test peer, sipp) can take one of its ports.
MEDIA_LOW, MEDIA_HIGH = 24000, 24999


@pytest.fixture(scope="module")
def media_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    data = tmp_path_factory.mktemp("media-edge")
    cert = write_dev_cert(data / "tls", [HOST])
    tls_port = free_port()
    process = EdgeProcess(
        data,
        env={
            "OPENTRUNK_RTP_TIMEOUT": str(RTP_TIMEOUT),
            "OPENTRUNK_MEDIA_PORTS": f"{MEDIA_LOW}-{MEDIA_HIGH}",
            "OPENTRUNK_SIP_TLS": f"{HOST}:{tls_port}",
            "OPENTRUNK_TLS_CERT": str(cert.cert_path),
            "OPENTRUNK_TLS_KEY": str(cert.key_path),
        },
    )
    process.tls_port = tls_port  # type: ignore[attr-defined]
    process.cafile = str(cert.cert_path)  # type: ignore[attr-defined]
    with process:
        yield process


@pytest.fixture(scope="module")
def media_api(media_edge: EdgeProcess) -> Iterator[Api]:
    with Api(media_edge.http_port) as client:
        yield client


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout)

    # uvloop: the default loop's timer slack under a loaded machine smooths the
    # injected jitter before it leaves the sender (20 ms arrived as 14 ms).
    uvloop.run(bounded())


def insights(account: Account, destination: str) -> tuple[dict[str, Any], dict[str, Any]]:
    record = account.call_record(destination)
    return record, account.insights(record)


def rtcp_port(body: bytes) -> int:
    for line in body.decode().split("\r\n"):
        if line.startswith("a=rtcp:"):
            return int(line.split(":")[1].split()[0])
    return sdp_port(body) + 1


class Setup:
    """An account, its trunk and a carrier (the test's UDP socket) for one destination."""

    def __init__(self, api: Api, **trunk: Any) -> None:
        self.api = api
        self.account, self.domain, self.destination = api.outbound(**trunk)
        self.carrier_port = free_port()
        api.carrier(self.carrier_port, self.destination)


async def open_call(
    edge: EdgeProcess,
    setup: Setup,
    pbx_rtp: RtpPeer,
    carrier_rtp: RtpPeer,
    *,
    tls: bool = False,
    srtp: bool = False,
    ring_delay: float = 0.0,
) -> tuple[Pbx, Carrier, bytes, bytes]:
    """Place the call; returns the peers, the offer the carrier got, the answer the PBX got."""
    if tls:
        sock = await SipSocket.tls((HOST, edge.tls_port), edge.cafile)  # type: ignore[attr-defined]
    else:
        sock = await SipSocket.udp((HOST, edge.sip_port))
    pbx = Pbx(sock, setup.domain, setup.account.caller, setup.destination)
    carrier = Carrier(await SipSocket.udp((HOST, edge.sip_port), setup.carrier_port))
    answering = asyncio.create_task(
        carrier.answer(lambda _offer: carrier_rtp.sdp(), ring_delay=ring_delay)
    )
    final = await pbx.call(pbx_rtp.sdp(srtp=srtp))
    assert final.status == 200, final.start_line()
    invite = await answering
    return pbx, carrier, invite.body, final.body


def assert_anchored(
    offer_to_carrier: bytes,
    answer_to_pbx: bytes,
    pbx: RtpPeer,
    far: RtpPeer,
    ports: tuple[int, int] = (MEDIA_LOW, MEDIA_HIGH),
) -> None:
    """Neither side sees the other's media port; both are told the relay's (`ports`)."""
    assert sdp_port(offer_to_carrier) not in (pbx.port, far.port)
    assert sdp_port(answer_to_pbx) not in (pbx.port, far.port)
    assert sdp_port(offer_to_carrier) != sdp_port(answer_to_pbx)
    for body in (offer_to_carrier, answer_to_pbx):
        assert ports[0] <= sdp_port(body) <= ports[1]
    assert b"a=crypto" not in offer_to_carrier


def rtp_payloads(peer: RtpPeer) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for _at, data, _addr in peer.received.rtp:
        header = parse_rtp_header(data)
        assert header is not None
        out[header[1]] = data[12:]
    return out


def dtmf_packets(ssrc: int, first_seq: int, ts: int) -> list[bytes]:
    """An RFC 4733 digit 5: three updates and the end packet sent three times."""
    packets = []
    for i, (duration, end) in enumerate(
        [(160, False), (320, False), (480, False), (640, True), (640, True), (640, True)]
    ):
        payload = struct.pack("!BBH", 5, (0x80 if end else 0) | 10, duration)
        packets.append(build_rtp(101, first_seq + i, ts, ssrc, payload, marker=i == 0))
    return packets


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.sipp
def test_loss_reordering_rtt_dtmf_through_an_anchored_call(
    media_edge: EdgeProcess, media_api: Api
) -> None:
    setup = Setup(media_api)
    count = 200
    a_stream = Stream(0x1111, count, Impairment.random_loss(count, 5, seed=11))
    a_stream.impairment.swap_every = 17
    b_stream = Stream(0x2222, count, Impairment.random_loss(count, 5, seed=12))
    b_stream.impairment.swap_every = 23
    sent_dtmf: list[bytes] = []

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, offer, answer = await open_call(media_edge, setup, a, b, ring_delay=0.3)
        assert_anchored(offer, answer, a, b)
        to_relay_from_a = (HOST, sdp_port(answer))
        to_relay_from_b = (HOST, sdp_port(offer))
        a_rtcp = RtcpResponder(a, 0x1111)
        b_rtcp = RtcpResponder(b, 0x2222, network_delay=0.1)  # the slow RTCP path
        a_rtcp.start((HOST, rtcp_port(answer)))
        b_rtcp.start((HOST, rtcp_port(offer)))
        await asyncio.gather(
            send_stream(a, to_relay_from_a, a_stream),
            send_stream(b, to_relay_from_b, b_stream),
        )
        for packet in dtmf_packets(0x1111, 1000 + count, count * 160):
            sent_dtmf.append(packet)
            a.send_to(packet, to_relay_from_a)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # last reports and packets through
        a_rtcp.stop()
        b_rtcp.stop()
        assert b_rtcp.answered > 3 and a_rtcp.answered > 3
        bye = await pbx.bye()
        assert bye.status == 200
        await carrier.take_bye(5)
        # What crossed the relay: every packet sent, payload intact, DTMF unchanged.
        got_b = rtp_payloads(b)
        assert len(b.received.rtp) == count - len(a_stream.impairment.drop) + len(sent_dtmf)
        for seq in a_stream.sent_seqs:
            assert got_b[seq] == bytes([seq & 0xFF]) * 160
        relayed = [data for _at, data, _addr in b.received.rtp if data[1] & 0x7F == 101]
        assert relayed == sent_dtmf
        assert len(a.received.rtp) == count - len(b_stream.impairment.drop)
        a.close()
        b.close()
        pbx.sock.close()
        carrier.sock.close()

    run(scenario)
    record, view = insights(setup.account, setup.destination)
    assert record["hangup_cause_code"] == "3010"
    assert record["srtp"] is False and record["transport_protocol"] == "udp"
    dropped = len(a_stream.impairment.drop) + len(b_stream.impairment.drop)
    injected = 100.0 * dropped / (2 * count + len(sent_dtmf))
    assert view["packet_loss"] == pytest.approx(injected, abs=1.0), (view, injected)
    assert view["rtt"] == pytest.approx(100.0, abs=30.0), view
    assert view["jitter"] is not None and view["jitter"] >= 0
    expected_score = quality_score("PCMU", view["packet_loss"], view["jitter"], view["rtt"])
    assert expected_score is not None
    assert view["plivo_quality_score"] == pytest.approx(expected_score, abs=0.02)
    assert 1.0 <= view["plivo_quality_score"] < 4.41
    assert 300 <= view["post_dial_delay"] <= 700, view


@pytest.mark.sipp
def test_jitter_injected_on_one_direction_is_measured(
    media_edge: EdgeProcess, media_api: Api
) -> None:
    setup = Setup(media_api)
    count = 200

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, offer, answer = await open_call(media_edge, setup, a, b)
        a_stream = Stream(0x3333, count, Impairment.alternating_delay(count, 0.020))
        b_stream = Stream(0x4444, count, Impairment())
        await asyncio.gather(
            send_stream(a, (HOST, sdp_port(answer)), a_stream),
            send_stream(b, (HOST, sdp_port(offer)), b_stream),
        )
        await asyncio.sleep(0.2)
        await hang_up(pbx, carrier)
        close_all(a, b, pbx, carrier)

    run(scenario)
    _record, view = insights(setup.account, setup.destination)
    assert view["jitter"] == pytest.approx(20.0, rel=0.25), view
    assert view["packet_loss"] == pytest.approx(0.0, abs=0.5), view
    assert view["rtt"] is None  # no RTCP was sent: not measured, not invented


@pytest.mark.sipp
def test_silence_ends_the_call_with_rtp_timeout(media_edge: EdgeProcess, media_api: Api) -> None:
    setup = Setup(media_api)

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, offer, answer = await open_call(media_edge, setup, a, b)
        await asyncio.gather(
            send_stream(a, (HOST, sdp_port(answer)), Stream(0x55, 25, Impairment())),
            send_stream(b, (HOST, sdp_port(offer)), Stream(0x66, 25, Impairment())),
        )
        # Both fall silent: within the timeout plus the watchdog's second, BYE to both.
        loop = asyncio.get_running_loop()
        started = loop.time()
        bye_pbx = await pbx.wait_request("BYE", RTP_TIMEOUT + 4)
        pbx.respond(bye_pbx, 200)
        await carrier.take_bye(2)
        assert loop.time() - started >= RTP_TIMEOUT - 0.6
        close_all(a, b, pbx, carrier)

    run(scenario)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3020", "zentrunk")
    assert record["hangup_cause_name"] == "rtp_timeout"


@pytest.mark.sipp
def test_hold_is_not_silence_and_reinvite_moves_media(
    media_edge: EdgeProcess, media_api: Api
) -> None:
    setup = Setup(media_api)

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, offer, _answer = await open_call(media_edge, setup, a, b)
        # Hold: both sides inactive, nothing sent for longer than the RTP timeout.
        answering = asyncio.create_task(
            carrier.answer_reinvite(b.sdp(direction="inactive", version=2))
        )
        held = await pbx.reinvite(a.sdp(direction="inactive", version=2))
        assert held.status == 200
        relayed_hold = await answering
        assert b"a=inactive" in relayed_hold.body and b"a=inactive" in held.body
        with pytest.raises(AssertionError):
            await pbx.wait_request("BYE", RTP_TIMEOUT + 2.0)
        # Resume on a new PBX port: the carrier's RTP must now reach the new socket.
        moved = await RtpPeer().open()
        answering = asyncio.create_task(carrier.answer_reinvite(b.sdp(version=3)))
        resumed = await pbx.reinvite(moved.sdp(version=3))
        assert resumed.status == 200
        relayed = await answering
        assert sdp_port(relayed.body) == sdp_port(offer)  # same relay port for the carrier
        await asyncio.gather(
            send_stream(moved, (HOST, sdp_port(resumed.body)), Stream(0x77, 20, Impairment())),
            send_stream(b, (HOST, sdp_port(offer)), Stream(0x88, 20, Impairment())),
        )
        await asyncio.sleep(0.2)
        assert len(moved.received.rtp) == 20 and not a.received.rtp
        assert len(b.received.rtp) == 20
        await hang_up(pbx, carrier)
        for peer in (a, b, moved):
            peer.close()
        pbx.sock.close()
        carrier.sock.close()

    run(scenario)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3010", "customer")


@pytest.mark.sipp
def test_tls_srtp_customer_to_plain_rtp_carrier(media_edge: EdgeProcess, media_api: Api) -> None:
    setup = Setup(media_api, secure=True)
    count = 50

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, offer, answer = await open_call(media_edge, setup, a, b, tls=True, srtp=True)
        # The carrier sees plain RTP, no key; the PBX gets SRTP with the relay's own key.
        assert b"RTP/AVP" in offer and b"RTP/SAVP" not in offer and b"a=crypto" not in offer
        assert b"RTP/SAVP" in answer
        relay_key = sdp_crypto_key(answer)
        assert relay_key != a.key and len(relay_key) == 30
        assert base64.b64encode(a.key) not in offer + answer
        to_relay_from_a = (HOST, sdp_port(answer))
        encrypt = srtp_session(a.key, inbound=False)
        plain_from_a = [build_rtp(0, 500 + i, 160 * i, 0xA1, os.urandom(160)) for i in range(count)]
        for i, packet in enumerate(plain_from_a):
            protected = encrypt.protect(packet)
            if i == 10:  # tampered on the way: must be dropped, not relayed
                tampered = bytearray(protected)
                tampered[20] ^= 0xFF
                a.send_to(bytes(tampered), to_relay_from_a)
            else:
                a.send_to(protected, to_relay_from_a)
            await asyncio.sleep(0.005)
        plain_from_b = [build_rtp(0, 900 + i, 160 * i, 0xB2, os.urandom(160)) for i in range(count)]
        for packet in plain_from_b:
            b.send_to(packet, (HOST, sdp_port(offer)))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        # Carrier side: plain RTP, byte for byte what the PBX encrypted, minus the tampered one.
        got_b = [data for _at, data, _addr in b.received.rtp]
        assert got_b == plain_from_a[:10] + plain_from_a[11:]
        # PBX side: SRTP under the relay's key; decrypted it is what the carrier sent.
        decrypt = srtp_session(relay_key, inbound=True)
        got_a = [decrypt.unprotect(data) for _at, data, _addr in a.received.rtp]
        assert got_a == plain_from_b
        assert all(
            data != plain
            for (_at, data, _addr), plain in zip(a.received.rtp, plain_from_b, strict=True)
        )
        await hang_up(pbx, carrier)
        close_all(a, b, pbx, carrier)

    run(scenario)
    record = setup.account.call_record(setup.destination)
    assert record["hangup_cause_code"] == "3010"
    assert record["transport_protocol"] == "tls"
    assert record["srtp"] is True and record["secure_trunking"] is True
    metrics = metrics_text(media_edge.http_port)
    failures = [
        line
        for line in metrics.splitlines()
        if line.startswith("opentrunk_media_srtp_failures_total")
    ]
    assert failures and float(failures[0].split()[-1]) >= 1, failures


@pytest.mark.sipp
@pytest.mark.parametrize(
    ("secure", "tls", "srtp"),
    [
        (True, False, False),
        (True, True, False),
        (True, False, True),
        (False, True, False),
        (False, False, True),
    ],
)
def test_secure_trunking_mismatch_is_refused_4110(
    media_edge: EdgeProcess, media_api: Api, secure: bool, tls: bool, srtp: bool
) -> None:
    setup = Setup(media_api, secure=secure)

    async def scenario() -> None:
        a = await RtpPeer().open()
        if tls:
            sock = await SipSocket.tls((HOST, media_edge.tls_port), media_edge.cafile)  # type: ignore[attr-defined]
        else:
            sock = await SipSocket.udp((HOST, media_edge.sip_port))
        pbx = Pbx(sock, setup.domain, setup.account.caller, setup.destination)
        final = await pbx.call(a.sdp(srtp=srtp))
        assert final.status == 403, final.start_line()
        assert "4110" in (final.headers.get("Reason") or "")
        a.close()
        sock.close()

    run(scenario)
    record = setup.account.call_record(setup.destination)
    assert record["hangup_cause_code"] == "4110"
    assert record["hangup_cause_name"] == "secure_trunking_disabled"
    assert record["secure_trunking"] is secure
    assert record["transport_protocol"] == ("tls" if tls else "udp")


def test_dev_cert_names_the_host(tmp_path: Path) -> None:
    from cryptography import x509

    written = write_dev_cert(tmp_path / "out", ["127.0.0.1", "edge.test"])
    cert = x509.load_pem_x509_certificate(written.cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["edge.test"]
    assert written.key_path.stat().st_mode & 0o777 == 0o600
