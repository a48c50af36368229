"""The embedded relay with real sockets on loopback: forwarding, latching, DTMF,
measured impairments, re-INVITE and RTP timeout."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import uvloop

from opentrunk.media.backend import Leg, MediaTimeout
from opentrunk.media.relay import RelayConfig, RtpRelay
from opentrunk.media.rtp import ReportBlock, build_rr, build_rtp, build_sr, parse_rtcp

from .peers import HOST, RtpPeer, rfc3550_jitter_ms, sdp_port, voice

Address = tuple[str, int]


def run(test: Callable[[RtpRelay], Awaitable[None]], **config: object) -> None:
    async def main() -> None:
        relay = RtpRelay(RelayConfig(bind_address=HOST, port_min=41000, port_max=41999, **config))  # type: ignore[arg-type]
        await relay.start()
        try:
            await asyncio.wait_for(test(relay), 30)
        finally:
            await relay.close()
        assert relay.pool.in_use == 0

    uvloop.run(main())


async def call(
    relay: RtpRelay, call_id: str, a: RtpPeer, b: RtpPeer, srtp_legs: frozenset[Leg] = frozenset()
) -> tuple[Address, Address]:
    """Offer from a, answer from b; returns where a and b must send."""
    to_b = await relay.offer(call_id, "a", a.sdp(srtp="a" in srtp_legs), srtp_legs=srtp_legs)
    to_a = await relay.answer(call_id, "b", b.sdp(srtp="b" in srtp_legs))
    return (HOST, sdp_port(to_a)), (HOST, sdp_port(to_b))


async def settle(condition: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_audio_and_dtmf_both_ways() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        a_dest, b_dest = await call(relay, "c1", a, b)
        sent_a = [voice(i, i * 160, 1) for i in range(40)]
        sent_a += [build_rtp(101, 40 + i, 40 * 160, 1, bytes([5, 0x80, 0, 160])) for i in range(3)]
        for p in sent_a:
            a.send_to(p, a_dest)
            await asyncio.sleep(0.001)
        await settle(lambda: len(b.received.rtp) == len(sent_a))
        assert [d for _, d, _ in b.received.rtp] == sent_a  # untouched, DTMF included
        # b hears the relay from the port it was told to send to (symmetric).
        assert {src for _, _, src in b.received.rtp} == {b_dest}
        sent_b = [voice(i, i * 160, 2) for i in range(20)]
        for p in sent_b:
            b.send_to(p, b_dest)
        await settle(lambda: len(a.received.rtp) == len(sent_b))
        assert [d for _, d, _ in a.received.rtp] == sent_b
        quality = await relay.delete("c1")
        assert quality is not None
        by_leg = {s.leg: s for s in quality.streams}
        assert (by_leg["a"].packets, by_leg["a"].lost, by_leg["a"].codec) == (43, 0, "PCMU")
        assert (by_leg["b"].packets, by_leg["b"].lost) == (20, 0)
        assert quality.rtt_ms is None  # no RTCP: not measured, not invented
        assert await relay.delete("c1") is None
        a.close(), b.close()

    run(body)


def test_latches_to_real_source_and_drops_foreign_packets() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b, nat, intruder = [await RtpPeer().open() for _ in range(4)]
        # b announces an address where nothing listens (behind NAT); it really sends from `nat`.
        to_b = await relay.offer("c2", "a", a.sdp())
        to_a = await relay.answer("c2", "b", b.sdp(port=9))
        a_dest, b_dest = (HOST, sdp_port(to_a)), (HOST, sdp_port(to_b))
        nat.send_to(voice(1, 160, 9), b_dest)
        await settle(lambda: len(a.received.rtp) == 1)
        a.send_to(voice(1, 160, 1), a_dest)
        await settle(lambda: len(nat.received.rtp) == 1)
        assert len(nat.received.rtp) == 1
        intruder.send_to(voice(2, 320, 66), b_dest)
        nat.send_to(voice(2, 320, 9), b_dest)
        await settle(lambda: len(a.received.rtp) == 2)
        await asyncio.sleep(0.05)
        assert [d for _, d, _ in a.received.rtp] == [voice(1, 160, 9), voice(2, 320, 9)]
        assert relay.side("c2", "b").foreign == 1
        for p in (a, b, nat, intruder):
            p.close()

    run(body)


async def _impaired_stream(
    relay: RtpRelay,
    call_id: str,
    *,
    count: int,
    spacing: float,
    loss: float = 0.0,
    max_delay: float = 0.0,
    swap_every: int = 0,
    seed: int = 1,
) -> tuple[RtpPeer, RtpPeer, list[int]]:
    """a sends `count` packets with injected loss/delay/reordering; returns sent seqs."""
    a, b = await RtpPeer().open(), await RtpPeer().open()
    a_dest, _ = await call(relay, call_id, a, b)
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    sent: list[int] = []
    order = list(range(count))
    if swap_every:
        for i in range(swap_every, count - 1, swap_every):
            order[i], order[i + 1] = order[i + 1], order[i]
    for slot, seq in enumerate(order):
        if rng.random() < loss:
            continue
        sent.append(seq)
        delay = rng.uniform(0, max_delay) if max_delay else 0.0
        packet = voice(seq, round(seq * spacing * 8000), 42)  # media clock follows the spacing
        loop.call_at(t0 + slot * spacing + delay, a.send_to, packet, a_dest)
    await asyncio.sleep(count * spacing + max_delay + 0.1)
    await settle(lambda: len(b.received.rtp) >= len(sent))
    return a, b, sent


def test_five_percent_random_loss() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b, sent = await _impaired_stream(relay, "loss", count=1000, spacing=0.002, loss=0.05)
        stream = (await relay.stats("loss")).streams[0]  # type: ignore[union-attr]
        assert stream.leg == "a"
        true_loss = 100 * (1000 - len(sent)) / 1000
        assert 3.0 < true_loss < 7.0
        assert stream.loss_percent is not None and abs(stream.loss_percent - true_loss) <= 1.0
        assert len(b.received.rtp) == len(sent)  # the relay itself lost nothing
        a.close(), b.close()

    run(body)


def test_twenty_ms_jitter() -> None:
    async def body(relay: RtpRelay) -> None:
        # Uniform delays on [0, 60 ms] have a mean |D| of 20 ms: RFC 3550 jitter ~20 ms.
        a, b, _ = await _impaired_stream(
            relay, "jitter", count=300, spacing=0.01, max_delay=0.06, seed=3
        )
        # Reference: the RFC 3550 estimator over the times packets really left the sender.
        reference = rfc3550_jitter_ms(
            [t for t, _ in a.sent], [int.from_bytes(p[4:8], "big") for _, p in a.sent]
        )
        stream = (await relay.stats("jitter")).streams[0]  # type: ignore[union-attr]
        assert stream.jitter_ms is not None
        assert abs(stream.jitter_ms - reference) <= 0.25 * reference, (stream.jitter_ms, reference)
        assert 10.0 < stream.jitter_ms < 30.0
        assert (stream.expected, stream.lost) == (300, 0)  # delays reorder; nothing lost
        a.close(), b.close()

    run(body)


def test_reordering_is_not_counted_as_loss() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b, _ = await _impaired_stream(relay, "reorder", count=400, spacing=0.002, swap_every=7)
        arrived = [int.from_bytes(d[2:4], "big") for _, d, _ in b.received.rtp]
        assert arrived != sorted(arrived)  # really reordered on the wire
        stream = (await relay.stats("reorder")).streams[0]  # type: ignore[union-attr]
        assert (stream.expected, stream.lost, stream.loss_percent) == (400, 0, 0.0)
        a.close(), b.close()

    run(body)


def test_rtt_from_rtcp_with_100ms_delay() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        a_dest, b_dest = await call(relay, "rtt", a, b)
        a_rtcp, b_rtcp = (HOST, a_dest[1] + 1), (HOST, b_dest[1] + 1)
        loop = asyncio.get_running_loop()

        def carrier_reports(data: bytes, addr: Address) -> None:
            # b answers each SR after holding it 30 ms (DLSR); the network adds 100 ms.
            for report in parse_rtcp(data):
                if report.ntp_middle32 is None:
                    continue
                block = ReportBlock(report.ssrc, 0, 0, 0, 0, report.ntp_middle32, int(0.03 * 65536))
                loop.call_later(0.13, b.send_rtcp_to, build_rr(2, (block,)), b_rtcp)

        b.rtcp_proto.on_packet = carrier_reports
        for i in range(5):
            a.send_to(voice(i, i * 160, 1), a_dest)
            a.send_rtcp_to(build_sr(1, time.time(), i * 160, i + 1, 160 * (i + 1)), a_rtcp)
            await asyncio.sleep(0.05)
        await settle(lambda: len(a.received.rtcp) == 5)
        assert len(a.received.rtcp) == 5  # the RRs are relayed on to a
        quality = await relay.stats("rtt")
        assert quality is not None
        b_side = next(s for s in quality.streams if s.leg == "b")
        assert b_side.rtt_ms is not None and abs(b_side.rtt_ms - 100.0) < 15.0, b_side.rtt_ms
        assert next(s for s in quality.streams if s.leg == "a").rtt_ms is None
        assert quality.rtt_ms == round(b_side.rtt_ms, 3)
        a.close(), b.close()

    run(body)


def test_reinvite_moves_media() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b, b2 = await RtpPeer().open(), await RtpPeer().open(), await RtpPeer().open()
        a_dest, b_dest = await call(relay, "move", a, b)
        a.send_to(voice(1, 160, 1), a_dest)
        await settle(lambda: len(b.received.rtp) == 1)
        # The carrier side re-INVITEs: media now at b2. Ports on the relay stay the same.
        to_a = await relay.offer("move", "b", b2.sdp(version=2))
        assert sdp_port(to_a) == a_dest[1]
        to_b = await relay.answer("move", "a", a.sdp(version=2))
        assert sdp_port(to_b) == b_dest[1]
        a.send_to(voice(2, 320, 1), a_dest)
        await settle(lambda: len(b2.received.rtp) == 1)
        assert len(b2.received.rtp) == 1 and len(b.received.rtp) == 1
        for p in (a, b, b2):
            p.close()

    run(body)


def test_silence_times_out_but_hold_does_not() -> None:
    async def body(relay: RtpRelay) -> None:
        events: list[MediaTimeout] = []
        relay.set_timeout_handler(events.append)
        a, b, c, d = [await RtpPeer().open() for _ in range(4)]
        a_dest, b_dest = await call(relay, "talk", a, b)
        # Call "hold": c puts d on hold (sendonly), d answers recvonly; c keeps sending.
        c_dest, _ = await call(relay, "hold", c, d)
        await relay.offer("hold", "a", c.sdp(direction="sendonly", version=2))
        await relay.answer("hold", "b", d.sdp(direction="recvonly", version=2))
        t_end = time.monotonic() + 0.6
        i = 0
        while time.monotonic() < t_end:
            # a and b both talk for the first 0.25 s, then b goes silent.
            a.send_to(voice(i, i * 160, 1), a_dest)
            if time.monotonic() < t_end - 0.35:
                b.send_to(voice(i, i * 160, 2), b_dest)
            c.send_to(voice(i, i * 160, 3), c_dest)
            i += 1
            await asyncio.sleep(0.02)
        assert [(e.call_id, e.leg, e.index) for e in events] == [("talk", "b", 0)]
        assert events[0].silent_for >= 0.2
        relay.check_timeouts(time.monotonic() + 10)
        assert len(events) == 2 and events[1].call_id == "hold" and events[1].leg == "a"
        for p in (a, b, c, d):
            p.close()

    run(body, rtp_timeout=0.2, timeout_check_interval=0.02)


def test_a_refused_send_is_counted_and_forwarding_goes_on() -> None:
    async def body(relay: RtpRelay) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        # b's SDP names the broadcast address: the kernel refuses datagrams to it on a
        # socket without SO_BROADCAST, so everything a sends towards b fails to leave.
        to_b = await relay.offer("refused", "a", a.sdp())
        to_a = await relay.answer("refused", "b", b.sdp(host="255.255.255.255"))
        a_dest, b_dest = (HOST, sdp_port(to_a)), (HOST, sdp_port(to_b))
        for i in range(3):
            a.send_to(voice(i, i * 160, 1), a_dest)
        await settle(lambda: relay.side("refused", "a").send_errors == 3)
        assert relay.side("refused", "a").send_errors == 3
        assert relay.side("refused", "a").stats.packets == 3  # measured all the same
        # The other direction still flows, from the same event loop.
        b.send_to(voice(0, 0, 2), b_dest)
        await settle(lambda: len(a.received.rtp) == 1)
        assert [d for _, d, _ in a.received.rtp] == [voice(0, 0, 2)]
        a.close()
        b.close()

    run(body)
