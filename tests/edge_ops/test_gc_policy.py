"""`gc_policy.apply_serving_policy` freezes the startup heap and sets the serving
thresholds. Run in a child interpreter: freezing the test process would keep its garbage."""

from __future__ import annotations

import json
import subprocess
import sys

from opentrunk.edge.gc_policy import MIDDLE_EVERY, OLD_EVERY, YOUNG_THRESHOLD

CHILD = """
import gc, json
import opentrunk.edge.server  # the edge and everything it imports: the startup heap
before = gc.get_freeze_count()
from opentrunk.edge.gc_policy import apply_serving_policy
apply_serving_policy()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "threshold": gc.get_threshold(), "enabled": gc.isenabled()}))
"""


def test_startup_heap_frozen_and_thresholds_set() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["before"] == 0
    # The edge's modules alone are tens of thousands of objects.
    assert state["frozen"] > 20_000
    assert tuple(state["threshold"]) == (YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
    assert state["enabled"] is True  # cycles are still collected


ROLLING = """
import gc, json, weakref
from opentrunk.edge.gc_policy import RollingFreeze, apply_serving_policy

class Node:
    def __init__(self): self.other = None

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

apply_serving_policy()
now = [0.0]
heap = [1_000]  # the allocated blocks the freezer reads
load = [0]  # the transactions and calls it reads
freezer = RollingFreeze(
    growth=1.0,
    min_growth=500,
    window=10.0,
    clock=lambda: now[0],
    blocks=lambda: heap[0],
    load=lambda: load[0],
)
out = {}

# What exists at a step leaves the scanned generations.
kept = [Node() for _ in range(1000)]
freezer.step()
scanned = {id(o) for g in (0, 1, 2) for o in gc.get_objects(g)}
out["kept_scanned"] = any(id(o) in scanned for o in kept)
# (the comprehension above made a few)
out["young_after_step"] = len(gc.get_objects(0)) < 10

# Reference counting still frees a frozen object.
lone = Node()
lone_ref = weakref.ref(lone)
freezer.step()
del lone
out["frozen_freed_by_refcount"] = lone_ref() is None

# A cycle frozen before it became garbage survives full collections...
ref = cycle()
freezer.step()
gc.collect()
out["frozen_cycle_after_collect"] = ref() is not None

def run(seconds, blocks):
    # One step a second for `seconds` with the heap at `blocks`; the reclaims done.
    done = []
    heap[0] = blocks
    for _ in range(seconds):
        now[0] += 1.0
        step = freezer.step()
        if step is not None:
            done.append(step)
    return done

# ...and load that lifts the heap far past the threshold for less than a window (the
# heap falling back between bursts) is not garbage: no reclaim, however long it goes on.
bursts = []
for _ in range(6):
    bursts += run(9, 50_000) + run(1, 1_200)
out["reclaims_for_bursts"] = len(bursts)
# A floor lifted past the threshold for a whole window is: one reclaim, which frees it.
out["reclaims_below_threshold"] = len(run(30, 2_400))  # 1,000 + 1.0 * 1,000 + 500 = 2,500
done = run(30, 3_000)
out["reclaims_above_threshold"] = len(done)
out["reclaimed"] = bool(done) and done[0].unreachable >= 2 and done[0].blocks == 3_000
out["frozen_cycle_after_reclaim"] = ref() is not None
out["refrozen"] = gc.get_freeze_count() > 10000
# The next reclaim compares with the heap after this one (3,000): not due again.
out["reclaims_after"] = len(run(30, 3_000))
# A heap lifted by the load (more transactions and calls held) is not garbage, however
# long it stays up; the same load's heap growing is: 1.0 * 3,000 + 500 above it.
load[0] = 5_000
out["reclaims_for_load"] = len(run(30, 50_000))
out["reclaims_for_garbage_under_load"] = len(run(30, 54_000))
out["reclaims"] = freezer.reclaims

# An overloaded edge (busy) puts a due reclaim off: its pause would deepen the backlog.
busy = RollingFreeze(
    growth=1.0, min_growth=0, window=1.0, clock=lambda: now[0], blocks=lambda: heap[0],
    busy=lambda: True,
)
heap[0] = 10**9
now[0] += 5.0
out["reclaim_while_busy"] = busy.step() is not None
print(json.dumps(out))
"""


def test_rolling_freeze_keeps_old_objects_out_of_collections_and_reclaims() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ROLLING], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "kept_scanned": False,
        "young_after_step": True,
        "frozen_freed_by_refcount": True,
        "frozen_cycle_after_collect": True,
        "reclaims_for_bursts": 0,
        "reclaims_below_threshold": 0,
        "reclaims_above_threshold": 1,
        "reclaimed": True,
        "frozen_cycle_after_reclaim": False,
        "refrozen": True,
        "reclaims_after": 0,
        "reclaims_for_load": 0,
        "reclaims_for_garbage_under_load": 1,
        "reclaims": 2,
        "reclaim_while_busy": False,
    }
