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
