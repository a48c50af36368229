"""An RTCP endpoint that reports what it really received, as a phone or a carrier's
gateway does: the figures rtpengine turns into its per-SSRC statistics.

rtpengine in passthrough does not count sequence numbers or time arrivals itself; it
reads the reception report blocks the peers send (RFC 3550 6.4) and times the round
trip of each sender report it forwarded (LSR/DLSR). So a test of the rtpengine backend's
loss, jitter and RTT needs peers whose receiver reports are true. `ReportingRtcp`
watches the RTP its `RtpPeer` receives and answers every sender report with a receiver
report carrying that stream's fraction lost, cumulative loss, extended highest sequence
number and interarrival jitter, computed here independently of the project's relay
code (RFC 3550 A.3 and A.8, no wrap-around: the tests' streams are short).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from media.peers import RtpPeer
from opentrunk.media.rtp import RTCP_SR, ReportBlock, build_rr, build_sr, parse_rtcp

__all__ = ["ReceivedStream", "ReportingRtcp"]

CLOCK_RATE = 8000


@dataclass
class ReceivedStream:
    """RFC 3550 reception figures of one source, as a receiver computes them."""

    base_seq: int | None = None
    max_seq: int = 0
    received: int = 0
    jitter_units: float = 0.0  # RTP timestamp units
    _transit: float | None = None
    _expected_prior: int = 0
    _received_prior: int = 0
    seen: set[int] = field(default_factory=set)

    def add(self, seq: int, timestamp: int, arrival: float) -> None:
        if self.base_seq is None or seq < self.base_seq:
            self.base_seq = seq
        self.max_seq = max(self.max_seq, seq)
        self.received += 1
        self.seen.add(seq)
        transit = arrival * CLOCK_RATE - timestamp
        if self._transit is not None:
            self.jitter_units += (abs(transit - self._transit) - self.jitter_units) / 16
        self._transit = transit

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter_units / CLOCK_RATE

    def block(self, ssrc: int, lsr: int, dlsr: int) -> ReportBlock:
        """A report block about this source; moves the fraction-lost interval on."""
        expected_interval = self.expected - self._expected_prior
        lost_interval = expected_interval - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = self.expected, self.received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return ReportBlock(
            ssrc, fraction, self.lost, self.max_seq, int(self.jitter_units), lsr, dlsr
        )


class ReportingRtcp:
    """Sender reports from `peer` every `every` seconds, and a true receiver report in
    answer to each sender report that reaches it.

    `network_delay` holds each answer back on the wire without counting it in DLSR, as a
    slow RTCP path would: it shows up in the round trip rtpengine measures for this peer.
    """

    def __init__(self, peer: RtpPeer, ssrc: int, network_delay: float = 0.0) -> None:
        self.peer = peer
        self.ssrc = ssrc
        self.network_delay = network_delay
        self.dest: tuple[str, int] | None = None
        self.answered = 0
        self.sources: dict[int, ReceivedStream] = {}
        self._task: asyncio.Task[None] | None = None
        self._rtp_seen = 0
        peer.rtcp_proto.on_packet = self._on_rtcp

    def _catch_up(self) -> None:
        """Fold the RTP the peer received since the last look into the sources."""
        packets = self.peer.received.rtp
        for arrival, data, _addr in packets[self._rtp_seen :]:
            if len(data) < 12 or data[0] >> 6 != 2 or data[1] & 0x7F != 0:
                continue  # only the PCMU voice stream (events do not follow the clock)
            seq = int.from_bytes(data[2:4], "big")
            timestamp = int.from_bytes(data[4:8], "big")
            ssrc = int.from_bytes(data[8:12], "big")
            self.sources.setdefault(ssrc, ReceivedStream()).add(seq, timestamp, arrival)
        self._rtp_seen = len(packets)

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        received = time.monotonic()
        loop = asyncio.get_running_loop()
        for report in parse_rtcp(data):
            if report.packet_type != RTCP_SR or report.ntp_middle32 is None:
                continue
            loop.call_later(
                self.network_delay, self._reply, report.ssrc, report.ntp_middle32, received
            )

    def _reply(self, sender: int, lsr: int, received: float) -> None:
        self._catch_up()
        held = time.monotonic() - received - self.network_delay
        dlsr = max(0, int(held * 65536))
        stream = self.sources.get(sender)
        if stream is None:
            block = ReportBlock(sender, 0, 0, 0, 0, lsr, dlsr)
        else:
            block = stream.block(sender, lsr, dlsr)
        if self.dest is not None:
            self.peer.send_rtcp_to(build_rr(self.ssrc, (block,)), self.dest)
            self.answered += 1

    def start(self, dest: tuple[str, int], every: float = 0.25) -> None:
        self.dest = dest
        self._task = asyncio.create_task(self._send_reports(every))

    async def _send_reports(self, every: float) -> None:
        sent = 0
        while True:
            await asyncio.sleep(every)
            sent += 1
            sr = build_sr(self.ssrc, time.time(), sent * 160, sent, sent * 172)
            assert self.dest is not None
            self.peer.send_rtcp_to(sr, self.dest)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
