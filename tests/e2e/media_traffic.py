"""RTP and RTCP traffic with injected impairments, between two `RtpPeer`s through a
relay, with what was injected kept so that tests can compare the relay's figures.

`Impairment` says what happens to one direction's packets on their way to the relay:
which sequence numbers are dropped (random loss, never the first or the last packet,
since loss there cannot be seen by any receiver, RFC 3550), a per-packet extra delay
(jitter), and swapped pairs (reordering). `RtcpResponder` answers each sender report it
receives with a receiver report carrying LSR/DLSR, optionally held back for a network
delay that DLSR does not cover (so it shows up in the round-trip time).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from media.peers import RtpPeer, voice
from opentrunk.media.rtp import RTCP_SR, ReportBlock, build_rr, build_sr, parse_rtcp

PACKET_INTERVAL = 0.02  # 20 ms of G.711 per packet
TS_STEP = 160


@dataclass
class Impairment:
    drop: set[int] = field(default_factory=set)  # packet indexes not sent
    delay: dict[int, float] = field(default_factory=dict)  # index -> extra seconds
    swap_every: int = 0  # send packet i+1 before i every N packets (0: never)

    @classmethod
    def random_loss(cls, count: int, percent: float, seed: int) -> Impairment:
        rng = random.Random(seed)
        inner = list(range(1, count - 1))
        return cls(drop=set(rng.sample(inner, round(count * percent / 100))))

    @classmethod
    def alternating_delay(cls, count: int, delay: float) -> Impairment:
        """Every other packet `delay` late: each transit differs from the one before by
        `delay`, so RFC 3550 jitter converges to `delay`."""
        return cls(delay={i: delay for i in range(1, count, 2)})


@dataclass
class Stream:
    """One direction's RTP: what was sent and what the far peer received."""

    ssrc: int
    count: int
    impairment: Impairment
    sent_seqs: list[int] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)

    @property
    def injected_loss_percent(self) -> float:
        return 100.0 * len(self.impairment.drop) / self.count


async def send_stream(
    peer: RtpPeer,
    dest: tuple[str, int],
    stream: Stream,
    *,
    first_seq: int = 1000,
    payload_type: int = 0,
    protect: object | None = None,
) -> None:
    """Send `stream.count` packets every 20 ms (impaired) and return when all are out.

    `protect`, if given, is a pylibsrtp session used to encrypt each packet.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    imp = stream.impairment
    order = list(range(stream.count))
    if imp.swap_every:
        for i in range(imp.swap_every, stream.count - 2, imp.swap_every):
            order[i], order[i + 1] = order[i + 1], order[i]
    done = loop.create_future()
    pending = [0]

    def fire(index: int) -> None:
        seq = (first_seq + index) & 0xFFFF
        packet = voice(seq, index * TS_STEP, stream.ssrc, payload_type)
        if protect is not None:
            packet = protect.protect(packet)  # type: ignore[attr-defined]
        peer.send_to(packet, dest)
        stream.sent_seqs.append(seq)
        stream.send_times.append(time.monotonic())
        pending[0] -= 1
        if pending[0] == 0 and not done.done():
            done.set_result(None)

    for slot, index in enumerate(order):
        if index in imp.drop:
            continue
        at = start + slot * PACKET_INTERVAL + imp.delay.get(index, 0.0)
        pending[0] += 1
        loop.call_at(at, fire, index)
    if pending[0]:
        await asyncio.wait_for(done, stream.count * PACKET_INTERVAL + 10)


class RtcpResponder:
    """Sends sender reports from one peer and answers the reports it receives.

    Each SR that reaches the peer is answered with an RR whose LSR is that SR's NTP
    middle bits and whose DLSR is the time the peer held it; `network_delay` seconds
    are added on the wire after that, invisible to DLSR, as a slow RTCP path would.
    """

    def __init__(self, peer: RtpPeer, ssrc: int, network_delay: float = 0.0) -> None:
        self.peer = peer
        self.ssrc = ssrc
        self.network_delay = network_delay
        self.dest: tuple[str, int] | None = None
        self.answered = 0
        self._task: asyncio.Task[None] | None = None
        peer.rtcp_proto.on_packet = self._on_rtcp

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        received = time.monotonic()
        loop = asyncio.get_running_loop()
        for report in parse_rtcp(data):
            if report.packet_type != RTCP_SR or report.ntp_middle32 is None:
                continue
            lsr = report.ntp_middle32
            sender = report.ssrc

            def reply(lsr: int = lsr, sender: int = sender) -> None:
                held = time.monotonic() - received - self.network_delay
                dlsr = max(0, int(held * 65536))
                block = ReportBlock(sender, 0, 0, 0, 0, lsr, dlsr)
                if self.dest is not None:
                    self.peer.send_rtcp_to(build_rr(self.ssrc, (block,)), self.dest)
                self.answered += 1

            loop.call_later(self.network_delay, reply)

    def start(self, dest: tuple[str, int], every: float = 0.25) -> None:
        self.dest = dest
        self._task = asyncio.create_task(self._send_reports(every))

    async def _send_reports(self, every: float) -> None:
        sent = 0
        while True:
            await asyncio.sleep(every)
            sent += 1
            sr = build_sr(self.ssrc, time.time(), sent * TS_STEP, sent, sent * 172)
            assert self.dest is not None
            self.peer.send_rtcp_to(sr, self.dest)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
