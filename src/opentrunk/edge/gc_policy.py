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
- when the heap's *floor* has grown beyond what the load explains, it unfreezes and
  runs one full collection: garbage cycles are freed after all, at the cost of one
  long pause (logged). Live call state rises and falls with the load; frozen garbage
  never falls. So each reading of the heap is compared with the smallest heap seen
  since the last reclaim *at about the same load* (the transactions and calls the
  edge holds, in steps of `LOAD_STEP`), and only the smallest such excess over the
  last `RECLAIM_WINDOW` counts: a burst, a ramp or a whole day at a high rate lifts
  the heap but not the excess; garbage lifts both. (A trigger on the heap's size
  fired at the top of a 400 calls/s ramp, where the transactions waiting out 64*T1
  took the heap from 0.8 to 4.6 million blocks in 40 s, and its 1.3 s pause raised
  setup p99 to 1.65 s; one on the floor alone would fire after 15 minutes at such a
  rate.) There is no time-based reclaim: its pause would come whatever the load, and
  garbage too little to pass the threshold costs only that memory. Not while the
  edge is overloaded (`busy`): the pause would deepen the backlog.

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
    "LOAD_STEP",
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
# A reclaim (unfreeze + full collection) when the heap has stood above the smallest
# seen at the same load by more than this fraction of the smallest heap seen at all,
# plus `RECLAIM_MIN_GROWTH` allocated blocks (~100 MB), for a whole `RECLAIM_WINDOW`.
# The idle edge holds ~0.6 million blocks on the development VM.
RECLAIM_GROWTH: Final = 1.0
RECLAIM_MIN_GROWTH: Final = 1_000_000
RECLAIM_WINDOW: Final = 900.0
# Loads (transactions + calls held) within one step count as the same load: 500
# transactions hold ~0.1 million blocks, a tenth of the threshold.
LOAD_STEP: Final = 500


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
    """Freezes the heap at intervals and reclaims frozen garbage when the heap has grown
    beyond what the load explains (see the module docstring). `step()` is one
    interval's work; `run()` repeats it."""

    def __init__(
        self,
        *,
        every: float = FREEZE_EVERY,
        growth: float = RECLAIM_GROWTH,
        min_growth: int = RECLAIM_MIN_GROWTH,
        window: float = RECLAIM_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] = lambda: False,
        load: Callable[[], int] = lambda: 0,
        blocks: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self.every = every
        self.busy = busy
        self.load = load
        self.growth = growth
        self.min_growth = min_growth
        self.window = window
        self.clock = clock
        self.blocks = blocks
        self.reclaims = 0
        self._restart(blocks(), clock())

    def _restart(self, blocks: int, now: float) -> None:
        """Start watching afresh (at start, and after a reclaim)."""
        self.lowest = blocks  # the smallest heap since then, at any load
        self._lowest_at: dict[int, int] = {}  # the smallest per load step
        self.watching_since = now
        # (when, excess) readings of the last window, excess increasing from the front:
        # a reading with a smaller or equal one after it can never be the floor again.
        self._recent: deque[tuple[float, int]] = deque()

    def excess(self, blocks: int, load: int) -> int:
        """Record a reading of the heap at `load`: how far it is above the smallest
        heap seen at that load since the last reclaim."""
        step = load // LOAD_STEP
        lowest = self._lowest_at.get(step)
        if lowest is None or blocks < lowest:
            self._lowest_at[step] = lowest = blocks
        self.lowest = min(self.lowest, blocks)
        return blocks - lowest

    def floor(self, excess: int, now: float) -> int | None:
        """Record an excess; the smallest over the last window, or None until a whole
        window has passed since the last reclaim."""
        recent = self._recent
        while recent and recent[-1][1] >= excess:
            recent.pop()
        recent.append((now, excess))
        while recent[0][0] < now - self.window:
            recent.popleft()
        if now - self.watching_since < self.window:
            return None
        return recent[0][1]

    def due(self, floor: int) -> bool:
        """Is a floor excess of `floor` blocks enough to reclaim?"""
        return floor > self.growth * self.lowest + self.min_growth

    def step(self) -> Reclaim | None:
        """Freeze what the last interval made; reclaim if due (returns what it did)."""
        gc.freeze()
        blocks = self.blocks()
        floor = self.floor(self.excess(blocks, self.load()), self.clock())
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
            "gc reclaim: %d blocks allocated (%d above the same load's lowest for %.0f s; "
            "lowest %d), %d unreachable objects freed, %.0f ms pause",
            done.blocks,
            floor,
            self.window,
            lowest,
            done.unreachable,
            1000 * done.seconds,
        )
        return done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.step()
