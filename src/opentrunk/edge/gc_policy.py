"""The garbage-collector policy of a long-running edge process (`opentrunk serve`).

CPython's cyclic collector scans every tracked object of a generation in one pause. In
the edge, two populations make its default policy costly:

- what the process loaded to start (FastAPI, Pydantic, SQLAlchemy, the app's modules):
  ~150,000 objects that live forever, yet every full collection walked them again;
- live SIP state: calls, dialogs and transactions waiting out their RFC timers (64*T1 =
  32 s), thousands of them at a few hundred calls per second.

With the defaults (a young collection every 700 net allocations) a call's objects were
promoted to the old generation within a few collections, full collections over hundreds
of thousands of objects paused the event loop for 0.3 to 0.7 s, and those pauses, not
the CPU spent, made sipp retransmit and calls time out (docs/performance.md).

`apply_serving_policy()` therefore, once startup is done:

- collects, then `gc.freeze()`s what exists: the startup objects move to the permanent
  generation and are never scanned again;
- raises the young generation's threshold so that short-lived per-message objects die by
  reference counting before a collection sees them, and fewer live ones get promoted.

Reference cycles are still collected; only the cadence changes. Tests that run the edge
in-process do not call this (freezing a test process would keep its garbage).
"""

from __future__ import annotations

import gc
from typing import Final

# Net allocations between young collections (CPython's default is 700), and how many
# young (then middle) collections between the next generation's. Measured with
# bench/edge_calls.py --probe (OPENTRUNK_PROBE_GC compares policies): see
# docs/performance.md. The net count is allocations minus deallocations, and a call's
# objects die soon after it ends, so young collections come far less often than the
# number suggests (every ~5 s at 120 calls/s); the objects that do reach a collection
# are mostly calls still up and transactions waiting out 64*T1. Spacing collections
# lets more of them die first: 100,000 and 10 halved the collector's time (82 -> 32 ms
# per second at 120 calls/s) against 20,000 and 5, with the longest pause unchanged.
YOUNG_THRESHOLD: Final = 100_000
MIDDLE_EVERY: Final = 10
OLD_EVERY: Final = 10


def apply_serving_policy() -> None:
    """Freeze the startup heap and set the thresholds above (idempotent enough: a second
    call freezes whatever was created since)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
