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
freezer = RollingFreeze(growth=10.0, min_growth=10**9, reclaim_every=60.0, clock=lambda: now[0])
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
out["reclaim_when_not_due"] = freezer.step() is not None
gc.collect()
out["frozen_cycle_after_collect"] = ref() is not None
# ...until a reclaim: here the time bound.
now[0] = 61.0
done = freezer.step()
out["reclaimed"] = done is not None and done.unreachable >= 2
out["frozen_cycle_after_reclaim"] = ref() is not None
out["reclaims"] = freezer.reclaims
out["refrozen"] = gc.get_freeze_count() > 10000

# The growth bound: a heap that doubles (plus the minimum) reclaims.
grower = RollingFreeze(growth=1.0, min_growth=100_000, reclaim_every=1e9)
out["due_small"] = grower.due(grower.baseline + 1000, 0.0)
out["due_grown"] = grower.due(2 * grower.baseline + 100_001, 0.0)
# An overloaded edge (busy) puts a due reclaim off: its pause would deepen the backlog.
busy = RollingFreeze(reclaim_every=0.0, clock=lambda: 0.0, busy=lambda: True)
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
        "reclaim_when_not_due": False,
        "frozen_cycle_after_collect": True,
        "reclaimed": True,
        "frozen_cycle_after_reclaim": False,
        "reclaims": 1,
        "refrozen": True,
        "due_small": False,
        "due_grown": True,
        "reclaim_while_busy": False,
    }
