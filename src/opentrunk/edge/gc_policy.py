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
- when the heap has grown by `RECLAIM_GROWTH` since the last reclaim, or `RECLAIM_EVERY`
  has passed, it unfreezes and runs one full collection: garbage cycles are freed after
  all, at the cost of one long pause (logged) that steady load does not repeat. Not
  while the edge is overloaded (`busy`): the pause would deepen the backlog.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FREEZE_EVERY",
    "MIDDLE_EVERY",
    "OLD_EVERY",
    "RECLAIM_EVERY",
    "RECLAIM_GROWTH",
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
# A reclaim (unfreeze + full collection) when the allocated blocks have grown by this
# fraction of the count after the last reclaim, plus `RECLAIM_MIN_GROWTH` blocks (about
# 200 MB), so that growth with load alone seldom triggers one (300 calls/s from idle
# grew the heap from ~0.5 to ~2 million blocks, and the reclaim paused the loop for
# 0.9 s at the worst moment); or after `RECLAIM_EVERY` seconds at most.
RECLAIM_GROWTH: Final = 2.0
RECLAIM_MIN_GROWTH: Final = 3_000_000
RECLAIM_EVERY: Final = 3600.0


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
    """Freezes the heap at intervals and reclaims frozen garbage now and then (see the
    module docstring). `step()` is one interval's work; `run()` repeats it."""

    def __init__(
        self,
        *,
        every: float = FREEZE_EVERY,
        growth: float = RECLAIM_GROWTH,
        min_growth: int = RECLAIM_MIN_GROWTH,
        reclaim_every: float = RECLAIM_EVERY,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.every = every
        self.busy = busy
        self.growth = growth
        self.min_growth = min_growth
        self.reclaim_every = reclaim_every
        self.clock = clock
        self.baseline = sys.getallocatedblocks()
        self.reclaimed_at = clock()
        self.reclaims = 0

    def due(self, blocks: int, now: float) -> bool:
        """Is a reclaim due with `blocks` allocated at `now`?"""
        grown = blocks - self.baseline > self.growth * self.baseline + self.min_growth
        return grown or now - self.reclaimed_at >= self.reclaim_every

    def step(self) -> Reclaim | None:
        """Freeze what the last interval made; reclaim if due (returns what it did)."""
        gc.freeze()
        blocks = sys.getallocatedblocks()
        if not self.due(blocks, self.clock()) or self.busy():
            return None  # (a reclaim's pause would only deepen an overload: later)
        started = time.perf_counter()
        gc.unfreeze()
        unreachable = gc.collect()
        gc.freeze()
        done = Reclaim(blocks, unreachable, time.perf_counter() - started)
        self.baseline = sys.getallocatedblocks()
        self.reclaimed_at = self.clock()
        self.reclaims += 1
        log.info(
            "gc reclaim: %d blocks allocated, %d unreachable objects freed, %.0f ms pause",
            done.blocks,
            done.unreachable,
            1000 * done.seconds,
        )
        return done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.step()
