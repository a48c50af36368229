"""Per-stream reception statistics, sans-I/O: fed packets and arrival times, no sockets.

`ReceptionStats` follows RFC 3550 appendix A: sequence numbers extended over
wrap-around (A.1), loss as expected minus received so that reordered packets
that arrive late are not counted lost (A.3), and interarrival jitter in
timestamp units smoothed by 1/16 (A.8). `RttMeter` computes the round-trip
time between the relay and one peer from the LSR/DLSR of that peer's reports
about sender reports the relay forwarded to it (RFC 3550 6.4.1).

Nothing here guesses: a figure with no data behind it stays None.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ReceptionStats", "RttMeter"]

MAX_DROPOUT = 3000
MAX_MISORDER = 100
_SEQ_MOD = 1 << 16


class ReceptionStats:
    """What the relay received on one leg's stream (one RTP source at a time)."""

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_jitter",
        "_max_seq",
        "_prior_expected",
        "_prior_received",
        "_received",
        "_ssrc",
        "_transit",
        "bytes",
        "clock_rate",
        "jitter_payload_types",
        "last_arrival",
        "packets",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        # Payload types whose timestamps advance with the media clock. RFC 4733 events
        # and comfort noise carry event/start timestamps, so they would fake jitter.
        self.jitter_payload_types: frozenset[int] | None = None
        self.packets = 0
        self.bytes = 0
        self.last_arrival: float | None = None
        self._ssrc: int | None = None
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._received = 0
        self._bad_seq: int | None = None
        self._prior_expected = 0
        self._prior_received = 0
        self._transit: float | None = None
        self._jitter: float | None = None

    def on_rtp(
        self, payload_type: int, seq: int, timestamp: int, ssrc: int, size: int, arrival: float
    ) -> None:
        """Account one RTP packet of `size` bytes that arrived at `arrival` (seconds)."""
        self.packets += 1
        self.bytes += size
        self.last_arrival = arrival
        if ssrc != self._ssrc:
            self._restart(seq)
            self._ssrc = ssrc
            self._transit = None
        elif not self._sequence(seq):
            return
        self._received += 1
        allowed = self.jitter_payload_types
        if allowed is not None and payload_type not in allowed:
            return
        transit = arrival * self.clock_rate - timestamp
        previous = self._transit
        self._transit = transit
        if previous is None:
            return
        d = abs(transit - previous)
        # A timestamp jump bigger than a minute is a new talkspurt clock, not jitter.
        if d > 60 * self.clock_rate:
            return
        jitter = self._jitter or 0.0
        self._jitter = jitter + (d - jitter) / 16.0

    def _restart(self, seq: int) -> None:
        if self._ssrc is not None:
            self._prior_expected += self._expected_current()
            self._prior_received += self._received
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._received = 0
        self._bad_seq = None

    def _sequence(self, seq: int) -> bool:
        """RFC 3550 A.1 update_seq; False when the packet must not be counted."""
        udelta = (seq - self._max_seq) % _SEQ_MOD
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += _SEQ_MOD
            self._max_seq = seq
        elif udelta <= _SEQ_MOD - MAX_MISORDER:
            # A very large jump: the source restarted unless this is the first such packet.
            if seq == self._bad_seq:
                self._restart(seq)
            else:
                self._bad_seq = (seq + 1) % _SEQ_MOD
                return False
        else:
            # A duplicate or a reordered packet; it counts as received. One older than
            # the first packet seen moves the base back, or it would count as unexpected.
            extended = self._cycles + self._max_seq - (_SEQ_MOD - udelta)
            if extended < self._base_seq:
                self._base_seq = extended
        return True

    def _expected_current(self) -> int:
        if self._ssrc is None:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def expected(self) -> int:
        """Packets the sequence numbers say were sent (over every source seen)."""
        return self._prior_expected + self._expected_current()

    @property
    def lost(self) -> int | None:
        """Packets expected but never received (duplicates can offset, never below 0)."""
        expected = self.expected
        if expected == 0:
            return None
        return max(0, expected - (self._prior_received + self._received))

    @property
    def loss_percent(self) -> float | None:
        lost = self.lost
        if lost is None:
            return None
        return 100.0 * lost / self.expected

    @property
    def jitter_ms(self) -> float | None:
        """RFC 3550 interarrival jitter in milliseconds; None before two media packets."""
        if self._jitter is None:
            return None
        return 1000.0 * self._jitter / self.clock_rate


class RttMeter:
    """Round trip between the relay and one peer, from that peer's RTCP reports.

    The relay notes when it forwarded each sender report to the peer (keyed by
    the SR's NTP middle 32 bits); a report block from the peer whose LSR names
    that SR gives RTT = now - forwarded_at - DLSR.
    """

    __slots__ = ("_forwarded", "rtt", "samples")

    _KEEP = 16

    def __init__(self) -> None:
        self._forwarded: OrderedDict[int, float] = OrderedDict()
        self.rtt: float | None = None  # seconds, smoothed
        self.samples = 0

    def sr_forwarded(self, ntp_middle32: int, at: float) -> None:
        self._forwarded[ntp_middle32] = at
        if len(self._forwarded) > self._KEEP:
            self._forwarded.popitem(last=False)

    def report_received(self, lsr: int, dlsr: int, at: float) -> None:
        """One report block from the peer (LSR 0 means it has not had an SR yet)."""
        if lsr == 0:
            return
        sent = self._forwarded.get(lsr)
        if sent is None:
            return
        sample = at - sent - dlsr / 65536.0
        if sample < 0:
            return
        self.samples += 1
        # Same 1/8 smoothing as TCP's SRTT: steady, but follows a real change.
        self.rtt = sample if self.rtt is None else self.rtt + (sample - self.rtt) / 8.0

    @property
    def rtt_ms(self) -> float | None:
        return None if self.rtt is None else 1000.0 * self.rtt
