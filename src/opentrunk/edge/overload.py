"""Overload control: when the edge's event loop falls behind, new calls are refused at
once (503, hangup code 4330 temporary_unavailable, "edge overloaded") so that the calls
already up keep their signalling on time.

Why the event loop's lag: everything the edge does for SIP runs on one loop, and when it
has more work than time, every message waits behind the backlog: retransmissions pile
on (RFC 3261 timers fire at 500 ms), more work arrives than is done, and calls in
progress fail with the new ones (bench/edge_calls.py above its capacity: hundreds of
408s). A 503 with Retry-After costs a parse and one response (RFC 3261 21.5.4: the
PBX may try another server or retry later), a fraction of a call.

`OverloadGuard` looks every `INTERVAL` seconds at two things: how late its timer fired
(the loop's lag), and how full the SIP UDP socket's receive queue is. Both are needed:
the loop reads a batch of datagrams per turn and runs its timers in between, so under
a flood the timers can stay nearly on time while datagrams wait in the kernel for
seconds and, once the queue is full, are dropped (bench/edge_calls.py at 300 calls/s on
a slower host: loop lag p50 63 ms, 47,789 datagrams dropped). A tick is "late" when
the lag passes `threshold` or the queue is more than `fill` full. One late tick is a
single pause (a garbage-collector reclaim, a slow callback) and does not count; `ticks`
late ticks in a row mean a backlog, and the edge is overloaded from then until `hold`
seconds after the last late tick. Only initial INVITEs are refused: requests inside calls, ACKs and
retransmissions go on as before. The refusal happens before trunk identification, so
it writes no call record (a record would be more work for a store that is behind too);
it shows on the wire (Reason header), in the log and in `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_THRESHOLD", "OverloadGuard"]

log = logging.getLogger(__name__)

INTERVAL: Final = 0.05
DEFAULT_THRESHOLD: Final = 0.25  # seconds of lag per tick
DEFAULT_TICKS: Final = 3
DEFAULT_HOLD: Final = 0.25
# Fraction of the receive queue in use that counts as late: half the 4 MiB buffer is
# ~900 SIP datagrams as the kernel books them, about 0.4 s of what 300 calls/s bring,
# close to T1 (500 ms), after which the peers retransmit. A quarter refused calls in
# passing bursts at 240 calls/s on this VM that the edge then absorbed.
DEFAULT_FILL: Final = 0.5
RETRY_AFTER: Final = 1  # seconds, in the 503's Retry-After


class OverloadGuard:
    """See the module docstring. `threshold` 0 turns the guard off."""

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        ticks: int = DEFAULT_TICKS,
        hold: float = DEFAULT_HOLD,
        interval: float = INTERVAL,
        fill: float = DEFAULT_FILL,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.fill = fill
        self.queue_fill = 0.0  # of the last tick
        self._queues: list[Callable[[], float]] = []
        self.ticks = ticks
        self.hold = hold
        self.interval = interval
        self.on_change = on_change
        self.lag = 0.0  # of the last tick, seconds
        self.late_in_a_row = 0
        self.refused = 0
        self._until = float("-inf")
        self._was_overloaded = False
        self._expected = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def watch_queue(self, fill_of: Callable[[], float]) -> None:
        """Also watch a receive queue (returns how full it is, 0 to 1)."""
        self._queues.append(fill_of)

    def start(self) -> None:
        if not self.enabled or self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._expected = now + self.interval
        self._handle = self._loop.call_at(self._expected, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        fill = max((fill_of() for fill_of in self._queues), default=0.0)
        self.observe(now - self._expected, now, fill)
        self._schedule(now)

    def observe(self, lag: float, now: float, fill: float = 0.0) -> None:
        """One tick that fired `lag` seconds late at `now` (loop time) and found the
        fullest watched receive queue `fill` full."""
        self.lag = lag
        self.queue_fill = fill
        if lag > self.threshold or fill > self.fill:
            self.late_in_a_row += 1
            if self.late_in_a_row >= self.ticks:
                self._until = now + self.hold
        else:
            self.late_in_a_row = 0
        self._report(now)

    def overloaded(self, now: float | None = None) -> bool:
        """Should a new call be refused now?"""
        if not self.enabled:
            return False
        if now is None:
            if self._loop is None:
                return False
            now = self._loop.time()
        return now < self._until

    def refuse(self) -> None:
        """Count one refused call."""
        self.refused += 1

    def _report(self, now: float) -> None:
        overloaded = now < self._until
        if overloaded == self._was_overloaded:
            return
        self._was_overloaded = overloaded
        if overloaded:
            log.warning(
                "edge overloaded: event loop %.0f ms behind, receive queue %.0f%% full; "
                "refusing new calls (503, 4330)",
                1000 * self.lag,
                100 * self.queue_fill,
            )
        else:
            log.warning("edge no longer overloaded; %d new calls were refused", self.refused)
        if self.on_change is not None:
            self.on_change(overloaded)
