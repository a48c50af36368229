"""The garbage-collector policy of a long-running edge process (`opentrunk serve`).

CPython's cyclic collector scans every tracked object of a generation in one pause. In
the edge, two populations make its default policy costly:

- what the process loaded to start (FastAPI, Pydantic, SQLAlchemy, the app's modules):
  ~150,000 objects that live forever, yet every full collection walked them again;
- live SIP state: calls, dialogs and transactions waiting out their RFC timers (64*T1 =
  32 s), hundreds of thousands of objects at a few hundred calls per second.

The second is the harder one. The young generation's trigger is a *net* count
(allocations minus deallocations), and under steady load the ends of old calls free
about as much as new calls allocate: the count barely moves while everything created
since the last young collection stays in the young generation. A young collection then
scans most of the live call state at once (0.3 s pauses at 200 calls/s, measured with
bench/edge_calls.py --probe), and those pauses, not the CPU spent, made sipp retransmit
and calls time out (docs/performance.md).

So, once startup is done:

- `apply_serving_policy()` collects, then `gc.freeze()`s what exists: the startup
  objects move to the permanent generation and are never scanned again;
- `RollingFreeze` (run by the edge) freezes again every `FREEZE_EVERY` seconds. An
  object then spends at most that long in the scanned generations: young collections
  see only what the last second made, whatever the number of calls up. Reference
  counting still frees frozen objects the moment they die (a call's objects, freed at
  its end); what freezing gives up is finding *cycles* among them. Calls leave none
  (tests/edge/test_live_calls.py), but an error path or a library might, so
- when the heap's *floor* has grown, it unfreezes and runs one full collection: garbage
  cycles are freed after all, at the cost of one long pause (logged). The floor is the
  smallest heap seen over the last `RECLAIM_WINDOW`; it is compared with the smallest
  seen since the last reclaim. Live call state rises and falls with the load, so it
  moves the heap's peaks; frozen garbage never falls, so it lifts the floor. Load that
  lasts less than a window therefore never triggers the pause (at 400 calls/s the heap
  grew eightfold in 40 s, and a trigger on the heap's size paused the loop for 1.3 s at
  the peak: setup p99 1.65 s), while garbage building up does, within a window of its
  passing the threshold. There is no time-based reclaim: its pause would come whatever
  the load, and garbage too little to lift the floor past the threshold costs only that
  memory. Not while the edge is overloaded (`busy`): the pause would deepen the backlog.

The heap's size is read as `sys.getallocatedblocks()` (a walk over the allocator's
arenas: ~0.4 ms with 6 million blocks), not `gc.get_freeze_count()`, which walks every
frozen object (20 ms per million) and would itself be the pause this avoids.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FREEZE_EVERY",
    "MIDDLE_EVERY",
    "OLD_EVERY",
    "RECLAIM_GROWTH",
    "RECLAIM_MIN_GROWTH",
    "RECLAIM_WINDOW",
    "YOUNG_THRESHOLD",
    "Reclaim",
    "RollingFreeze",
    "apply_serving_policy",
]

log = logging.getLogger(__name__)

# Net allocations between young collections (CPython's default is 700), and how many
# young (then middle) collections between the next generation's. With the rolling
# freeze a young collection can only find what was made since the last freeze, so the
# threshold trades the number of pauses against their length; measured with
# bench/edge_calls.py --probe (OPENTRUNK_PROBE_GC compares policies), docs/performance.md.
YOUNG_THRESHOLD: Final = 20_000
MIDDLE_EVERY: Final = 10
OLD_EVERY: Final = 10

# Seconds between freezes: the longest an object stays where collections scan it.
FREEZE_EVERY: Final = 1.0
# A reclaim (unfreeze + full collection) when the heap's floor over the last
# `RECLAIM_WINDOW` seconds exceeds its lowest since the last reclaim by this fraction of
# that lowest, plus `RECLAIM_MIN_GROWTH` allocated blocks (about 200 MB). On the
# development VM the idle edge holds ~0.5 million blocks and 300 calls/s held ~3.5
# million, 400/s ~4.5 million (bench/edge_calls.py --probe): only load sustained at the
# edge's limit for a whole window could lift the floor that far without garbage.
RECLAIM_GROWTH: Final = 2.0
RECLAIM_MIN_GROWTH: Final = 3_000_000
RECLAIM_WINDOW: Final = 900.0


def apply_serving_policy() -> None:
    """Freeze the startup heap and set the thresholds above (idempotent enough: a second
    call freezes whatever was created since)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)


@dataclass(frozen=True, slots=True)
class Reclaim:
    """What one reclaim did: the heap's allocated blocks before it, the unreachable
    objects it found and freed, its pause."""

    blocks: int
    unreachable: int
    seconds: float


class RollingFreeze:
    """Freezes the heap at intervals and reclaims frozen garbage when the heap's floor has
    grown (see the module docstring). `step()` is one interval's work; `run()` repeats
    it."""

    def __init__(
        self,
        *,
        every: float = FREEZE_EVERY,
        growth: float = RECLAIM_GROWTH,
        min_growth: int = RECLAIM_MIN_GROWTH,
        window: float = RECLAIM_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] = lambda: False,
        blocks: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self.every = every
        self.busy = busy
        self.growth = growth
        self.min_growth = min_growth
        self.window = window
        self.clock = clock
        self.blocks = blocks
        self.reclaims = 0
        self._restart(blocks(), clock())

    def _restart(self, blocks: int, now: float) -> None:
        """Start watching afresh (at start, and after a reclaim)."""
        self.lowest = blocks  # the smallest heap since then
        self.watching_since = now
        # (when, blocks) readings of the last window, blocks increasing from the front:
        # a reading with a smaller or equal one after it can never be the floor again.
        self._recent: deque[tuple[float, int]] = deque([(now, blocks)])

    def floor(self, blocks: int, now: float) -> int | None:
        """Record a reading of the heap; the smallest over the last window, or None until
        a whole window has passed since the last reclaim (a shorter floor is a trough of
        the load, not a floor)."""
        recent = self._recent
        while recent and recent[-1][1] >= blocks:
            recent.pop()
        recent.append((now, blocks))
        while recent[0][0] < now - self.window:
            recent.popleft()
        self.lowest = min(self.lowest, blocks)
        if now - self.watching_since < self.window:
            return None
        return recent[0][1]

    def due(self, floor: int) -> bool:
        """Has a floor of `floor` blocks grown enough since the lowest to reclaim?"""
        return floor - self.lowest > self.growth * self.lowest + self.min_growth

    def step(self) -> Reclaim | None:
        """Freeze what the last interval made; reclaim if due (returns what it did)."""
        gc.freeze()
        blocks = self.blocks()
        floor = self.floor(blocks, self.clock())
        if floor is None or not self.due(floor) or self.busy():
            return None  # (a reclaim's pause would only deepen an overload: later)
        lowest = self.lowest
        started = time.perf_counter()
        gc.unfreeze()
        unreachable = gc.collect()
        gc.freeze()
        done = Reclaim(blocks, unreachable, time.perf_counter() - started)
        self._restart(self.blocks(), self.clock())
        self.reclaims += 1
        log.info(
            "gc reclaim: %d blocks allocated (floor %d, lowest %d), %d unreachable objects "
            "freed, %.0f ms pause",
            done.blocks,
            floor,
            lowest,
            done.unreachable,
            1000 * done.seconds,
        )
        return done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.step()
