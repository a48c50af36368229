"""Anchored media on the edge's other kinds of call (docs/media.md "Media anchoring in
calls"): an inbound call (carrier -> PBX), a REFER transfer (the far party's media
moves to the new leg) and an on-net call (PBX -> PBX), each through a live
`opentrunk serve`, with hand-driven SIP peers whose SDP points at the test's own RTP
sockets, and the figures read back through the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from e2e.harness import Account, Api, EdgeProcess, free_port, unique_number
from e2e.inbound_harness import inbound_client, setup_inbound
from e2e.media_peers import Carrier, Pbx, SipSocket, close_all
from e2e.media_traffic import Impairment, RtcpResponder, Stream, send_stream
from e2e.test_media_calls import Setup, assert_anchored, rtcp_port, run
from media.peers import RtpPeer, sdp_port

pytestmark = pytest.mark.sipp

HOST = "127.0.0.1"
LOW, HIGH = 25000, 25499  # below the ephemeral range (see test_media_calls)


@pytest.fixture(scope="module")
def legs_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    with EdgeProcess(
        tmp_path_factory.mktemp("media-legs-edge"),
        env={"OPENTRUNK_RTP_TIMEOUT": "5", "OPENTRUNK_MEDIA_PORTS": f"{LOW}-{HIGH}"},
    ) as process:
        yield process


@pytest.fixture(scope="module")
def legs_api(legs_edge: EdgeProcess) -> Iterator[Api]:
    # Inbound calls come from 127.0.0.1: the inbound carrier owns that source.
    with inbound_client(legs_edge) as client:
        yield client


def inbound_number(api: Api, pbx_port: int) -> tuple[Account, str]:
    """An account with a number on an inbound trunk whose PBX is 127.0.0.1:pbx_port."""
    setup = setup_inbound(api, f"{HOST}:{pbx_port}")
    return setup.account, setup.number


def test_inbound_call_carries_rtp_both_ways_through_the_relay(
    legs_edge: EdgeProcess, legs_api: Api
) -> None:
    pbx_port = free_port()
    account, number = inbound_number(legs_api, pbx_port)
    count = 200
    from_carrier = Stream(0x1010, count, Impairment.random_loss(count, 5, seed=21))
    from_pbx = Stream(0x2020, count, Impairment())

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()  # carrier's, PBX's media
        carrier_sock = await SipSocket.udp((HOST, legs_edge.sip_port))
        carrier = Pbx(carrier_sock, HOST, "14155550123", number)  # calls in from outside
        pbx = Carrier(await SipSocket.udp((HOST, legs_edge.sip_port), pbx_port))
        answering = asyncio.create_task(pbx.answer(lambda _offer: b.sdp(), ring_delay=0.2))
        final = await carrier.call(a.sdp())
        assert final.status == 200, final.start_line()
        invite = await answering
        # The PBX is offered the relay (never the carrier's port), the carrier answered
        # with the relay's other port.
        assert_anchored(invite.body, final.body, a, b, (LOW, HIGH))
        a_rtcp = RtcpResponder(a, 0x1010)
        b_rtcp = RtcpResponder(b, 0x2020, network_delay=0.05)
        a_rtcp.start((HOST, rtcp_port(final.body)))
        b_rtcp.start((HOST, rtcp_port(invite.body)))
        await asyncio.gather(
            send_stream(a, (HOST, sdp_port(final.body)), from_carrier),
            send_stream(b, (HOST, sdp_port(invite.body)), from_pbx),
        )
        await asyncio.sleep(0.4)
        a_rtcp.stop()
        b_rtcp.stop()
        assert len(b.received.rtp) == count - len(from_carrier.impairment.drop)
        assert len(a.received.rtp) == count
        # Every packet came from the relay, never straight from the other peer.
        assert {addr[1] for _at, _d, addr in b.received.rtp} == {sdp_port(invite.body)}
        assert {addr[1] for _at, _d, addr in a.received.rtp} == {sdp_port(final.body)}
        assert (await carrier.bye()).status == 200
        await pbx.take_bye(5)
        close_all(a, b, carrier_sock, pbx)

    run(scenario)
    record = account.call_record(number)
    assert record["call_direction"] == "inbound"
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3000", "carrier")
    view = account.insights(record)
    injected = 100.0 * len(from_carrier.impairment.drop) / (2 * count)
    assert view["packet_loss"] == pytest.approx(injected, abs=1.0), view
    assert view["jitter"] is not None and view["jitter"] >= 0, view
    assert view["rtt"] is not None and view["rtt"] == pytest.approx(50.0, abs=30.0), view
    assert view["plivo_quality_score"] is not None, view
    assert 200 <= view["post_dial_delay"] <= 600, view  # ms: the PBX rang after 0.2 s


def test_refer_transfer_moves_the_far_party_media_to_the_new_leg(
    legs_edge: EdgeProcess, legs_api: Api
) -> None:
    setup = Setup(legs_api)
    target = unique_number()
    target_port = free_port()
    legs_api.carrier(target_port, target)

    async def scenario() -> None:
        a, b, c = await RtpPeer().open(), await RtpPeer().open(), await RtpPeer().open()
        sock = await SipSocket.udp((HOST, legs_edge.sip_port))
        pbx = Pbx(sock, setup.domain, setup.account.caller, setup.destination)
        far = Carrier(await SipSocket.udp((HOST, legs_edge.sip_port), setup.carrier_port))
        answering = asyncio.create_task(far.answer(lambda _offer: b.sdp()))
        final = await pbx.call(a.sdp())
        assert final.status == 200
        offer = (await answering).body
        pbx_relay, far_relay = (HOST, sdp_port(final.body)), (HOST, sdp_port(offer))
        await asyncio.gather(
            send_stream(a, pbx_relay, Stream(0x0A, 10, Impairment())),
            send_stream(b, far_relay, Stream(0x0B, 10, Impairment())),
        )
        await asyncio.sleep(0.1)
        assert len(a.received.rtp) == 10 and len(b.received.rtp) == 10

        new_leg = Carrier(await SipSocket.udp((HOST, legs_edge.sip_port), target_port))
        target_answers = asyncio.create_task(new_leg.answer(lambda _offer: c.sdp()))
        far_reoffered = asyncio.create_task(far.answer_reinvite(b.sdp(version=2)))
        accepted = await pbx.refer(f"sip:+{target}@{setup.domain}")
        assert accepted.status == 202
        frags = await pbx.follow_transfer(8)
        assert frags[-1] == "SIP/2.0 200 OK", frags
        target_offer = (await target_answers).body
        reoffer = (await far_reoffered).body
        # The new leg takes the transferor's relay port; the far party keeps its own.
        assert sdp_port(target_offer) == sdp_port(final.body)
        assert sdp_port(reoffer) == sdp_port(offer)
        assert f"c=IN IP4 {HOST}".encode() in target_offer
        assert sdp_port(target_offer) not in (b.port, c.port)
        a.received.rtp.clear()
        b.received.rtp.clear()
        await asyncio.gather(
            send_stream(c, (HOST, sdp_port(target_offer)), Stream(0x0C, 30, Impairment())),
            send_stream(b, far_relay, Stream(0x0B, 30, Impairment()), first_seq=1010),
        )
        await asyncio.sleep(0.2)
        assert len(b.received.rtp) == 30  # the new leg's media reaches the far party
        assert len(c.received.rtp) == 30  # and the far party's reaches the new leg
        assert not a.received.rtp  # the transferor hears nothing any more
        assert (await far.bye()).status == 200
        await new_leg.take_bye(5)
        close_all(a, b, c, pbx, far, new_leg)

    run(scenario)
    original = setup.account.call_record(setup.destination)
    assert (original["hangup_cause_code"], original["hangup_source"]) == ("3000", "carrier")
    view = setup.account.insights(original)
    assert view["packet_loss"] == pytest.approx(0.0, abs=0.5), view
    transfer = setup.account.call_record(target)
    assert transfer["hangup_cause_code"] == "3000", transfer


def test_on_net_call_is_anchored_and_both_records_get_the_figures(
    legs_edge: EdgeProcess, legs_api: Api
) -> None:
    called_port = free_port()
    callee, number = inbound_number(legs_api, called_port)
    caller = legs_api.account()
    domain = caller.trunk(acl=["127.0.0.1/32"])

    async def scenario() -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        sock = await SipSocket.udp((HOST, legs_edge.sip_port))
        calling = Pbx(sock, domain, caller.caller, number)
        called = Carrier(await SipSocket.udp((HOST, legs_edge.sip_port), called_port))
        answering = asyncio.create_task(called.answer(lambda _offer: b.sdp()))
        final = await calling.call(a.sdp())
        assert final.status == 200, final.start_line()
        invite = await answering
        assert_anchored(invite.body, final.body, a, b, (LOW, HIGH))
        await asyncio.gather(
            send_stream(a, (HOST, sdp_port(final.body)), Stream(0x31, 50, Impairment())),
            send_stream(b, (HOST, sdp_port(invite.body)), Stream(0x32, 50, Impairment())),
        )
        await asyncio.sleep(0.2)
        assert len(a.received.rtp) == 50 and len(b.received.rtp) == 50
        assert (await calling.bye()).status == 200
        await called.take_bye(5)
        close_all(a, b, sock, called)

    run(scenario)
    outbound = caller.call_record(number)
    inbound = callee.call_record(number)
    assert outbound["hangup_cause_code"] == "3010" and inbound["hangup_cause_code"] == "3000"
    for account, record in ((caller, outbound), (callee, inbound)):
        view = account.insights(record)
        assert view["packet_loss"] == pytest.approx(0.0, abs=0.5), view
        assert view["plivo_quality_score"] is not None, view
