"""The hangup codes of media anchoring, each triggered for real on a live edge
(docs/media.md "Media anchoring in calls"): no free relay ports (503, 5010), an offer
the relay cannot anchor (488, 4430: an SRTP key the relay cannot use; an INVITE without
SDP is a delayed offer, carried: test_delayed_offer.py) and the media service failing
(500/BYE, 5270: in mid-call the carrier answers a re-INVITE with SDP the relay cannot
anchor; before answer, the operator's rtpengine is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import Api, EdgeProcess
from e2e.media_peers import Pbx, SipSocket, close_all, hang_up
from e2e.media_traffic import Impairment, Stream, send_stream
from e2e.test_media_calls import (
    HOST,
    Setup,
    assert_anchored,
    media_api,
    media_edge,
    open_call,
    run,
)
from media.peers import RtpPeer, sdp_port
from media.rtpengine_daemon import require_rtpengine, rtpengine_daemon

pytestmark = pytest.mark.sipp

__all__ = ["media_api", "media_edge"]  # fixtures used by name

# Four ports: two RTP/RTCP pairs, the two legs of exactly one call. Below the kernel's
# ephemeral range, so no other program's socket lands in it.
TINY_PORTS = "25600-25603"


@pytest.fixture(scope="module")
def tiny_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    with EdgeProcess(
        tmp_path_factory.mktemp("tiny-media-edge"),
        env={"OPENTRUNK_MEDIA_PORTS": TINY_PORTS, "OPENTRUNK_RTP_TIMEOUT": "30"},
    ) as process:
        yield process


def reason(final: object) -> str:
    headers = getattr(final, "headers", None)
    return (headers.get("Reason") or "") if headers is not None else ""


def test_no_free_media_ports_is_503_5010(tiny_edge: EdgeProcess) -> None:
    api = Api(tiny_edge.http_port)
    first, second, third = Setup(api), Setup(api), Setup(api)

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, _offer, _answer = await open_call(tiny_edge, first, a, b)
        # The one call holds every port: the next one cannot be anchored.
        sock = await SipSocket.udp((HOST, tiny_edge.sip_port))
        refused_pbx = Pbx(sock, second.domain, second.account.caller, second.destination)
        refused = await refused_pbx.call(a.sdp())
        assert refused.status == 503, refused.start_line()
        assert "5010" in reason(refused)
        sock.close()
        # Once the call ends its ports are free again: a new call is carried.
        await hang_up(pbx, carrier)
        pbx.sock.close()
        carrier.sock.close()
        await asyncio.sleep(0.3)  # the release runs right after the BYE
        c, d = await RtpPeer().open(), await RtpPeer().open()
        pbx3, carrier3, _offer3, _answer3 = await open_call(tiny_edge, third, c, d)
        assert (await pbx3.bye()).status == 200
        await carrier3.take_bye(5)
        pbx3.sock.close()
        carrier3.sock.close()
        for peer in (a, b, c, d):
            peer.close()

    try:
        run(scenario)
        record = second.account.call_record(second.destination)
        assert (record["hangup_cause_code"], record["hangup_source"]) == ("5010", "zentrunk")
        assert record["hangup_cause_name"] == "port_limit_reached"
        assert third.account.call_record(third.destination)["hangup_cause_code"] == "3010"
    finally:
        api.close()


def test_srtp_key_the_relay_cannot_use_is_488_4430(media_edge: EdgeProcess, media_api: Api) -> None:
    setup = Setup(media_api, secure=True)

    async def scenario() -> None:
        a = await RtpPeer().open()
        sock = await SipSocket.tls((HOST, media_edge.tls_port), media_edge.cafile)  # type: ignore[attr-defined]
        pbx = Pbx(sock, setup.domain, setup.account.caller, setup.destination)
        # A secure offer (TLS, RTP/SAVP with a key) passes admission, but the relay only
        # does AES_CM_128_HMAC_SHA1_80: this 32-bit-tag suite cannot be anchored.
        offer = a.sdp(srtp=True).replace(b"HMAC_SHA1_80", b"HMAC_SHA1_32")
        final = await pbx.call(offer)
        assert final.status == 488, final.start_line()
        assert "4430" in reason(final)
        a.close()
        sock.close()

    run(scenario)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4430", "zentrunk")
    assert record["hangup_cause_name"] == "sdp_not_acceptable_here"


def test_reinvite_answer_the_relay_cannot_anchor_ends_the_call_5270(
    media_edge: EdgeProcess, media_api: Api
) -> None:
    setup = Setup(media_api)

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        pbx, carrier, _offer, _answer = await open_call(media_edge, setup, a, b)
        # The carrier accepts the re-INVITE with SDP that has no connection address.
        broken = b.sdp(version=2).replace(f"c=IN IP4 {HOST}\r\n".encode(), b"")
        answering = asyncio.create_task(carrier.answer_reinvite(broken))
        final = await pbx.reinvite(a.sdp(version=2))
        await answering
        assert final.status == 488, final.start_line()
        bye = await pbx.wait_request("BYE", 5)
        pbx.respond(bye, 200)
        await carrier.take_bye(5)
        close_all(a, b, pbx, carrier)

    run(scenario)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("5270", "zentrunk")
    assert record["hangup_cause_name"] == "internal_error_media_service"


def test_media_service_down_before_answer_is_500_5270(tmp_path: Path) -> None:
    """`serve` with OPENTRUNK_MEDIA_BACKEND=rtpengine anchors through the operator's
    rtpengine; once rtpengine is gone, a new call cannot get media: 500, 5270."""
    binary = require_rtpengine()
    low, high = 25700, 25799  # rtpengine's range, below the ephemeral range
    with contextlib.ExitStack() as daemon:
        ng_port = daemon.enter_context(rtpengine_daemon(binary, low, high))
        edge = EdgeProcess(
            tmp_path / "data",
            env={
                "OPENTRUNK_MEDIA_BACKEND": "rtpengine",
                "OPENTRUNK_RTPENGINE_NG": f"127.0.0.1:{ng_port}",
            },
        )
        edge.start()
        api = Api(edge.http_port)
        try:
            carried, refused = Setup(api), Setup(api)

            async def through_rtpengine() -> None:
                a, b = await RtpPeer().open(), await RtpPeer().open()
                pbx, carrier, offer, answer = await open_call(edge, carried, a, b)
                assert_anchored(offer, answer, a, b, (low, high))
                await asyncio.gather(
                    send_stream(a, (HOST, sdp_port(answer)), Stream(0x41, 10, Impairment())),
                    send_stream(b, (HOST, sdp_port(offer)), Stream(0x42, 10, Impairment())),
                )
                await asyncio.sleep(0.2)
                assert len(a.received.rtp) == 10 and len(b.received.rtp) == 10
                await hang_up(pbx, carrier)
                close_all(a, b, pbx, carrier)

            run(through_rtpengine)
            daemon.close()  # rtpengine stops: the media service is gone

            async def without_media_service() -> None:
                a = await RtpPeer().open()
                sock = await SipSocket.udp((HOST, edge.sip_port))
                pbx = Pbx(sock, refused.domain, refused.account.caller, refused.destination)
                final = await pbx.call(a.sdp(), timeout=15)
                assert final.status == 500, final.start_line()
                assert "5270" in reason(final)
                a.close()
                sock.close()

            run(without_media_service)
            record = refused.account.call_record(refused.destination)
            assert (record["hangup_cause_code"], record["hangup_source"]) == ("5270", "zentrunk")
            assert carried.account.call_record(carried.destination)["hangup_cause_code"] == "3010"
        finally:
            api.close()
            edge.stop()
