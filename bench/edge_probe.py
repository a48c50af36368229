"""`opentrunk` with an event-loop lag and garbage-collection probe, for bench/edge_calls.py
(`--probe`): runs the real command line, and once the SIP edge has started, writes one
line per second to $OPENTRUNK_PROBE_FILE:

    <unix time> lag_ms=<worst overshoot of a 10 ms sleep> gc_ms=<g0>,<g1>,<g2> \
        gc_runs=<r0>,<r1>,<r2> gc_freed=<n0>,<n1>,<n2> gc_max_ms=<longest collection> \
        objects=<tracked objects> calls=<call objects> frozen=<frozen objects> \
        blocks=<allocated blocks> gc_threshold=<young>/<middle>/<old>

`calls` counts the `BridgedCall` objects (outbound, inbound calls) still in memory, ended
or not: far more than the calls up means something keeps ended calls alive.

The lag is how late the event loop ran a 10 ms timer (a stalled loop delays every
packet); the collections are counted and timed with `gc.callbacks`, and `gc_freed`
counts the objects they found unreachable (cyclic garbage). Diagnostics only.

`OPENTRUNK_PROBE_GC=young,middle,old` replaces the thresholds of `edge/gc_policy.py` (the
heap is frozen all the same), and `OPENTRUNK_PROBE_FREEZE=off` turns its rolling freeze
off, to compare policies under the same load. `frozen` is `gc.get_freeze_count()`;
`blocks` is `sys.getallocatedblocks()`, what the rolling freeze's reclaim trigger reads.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from typing import Any

from opentrunk.edge import gc_policy, server
from opentrunk.edge.bridge import BridgedCall

_state: dict[str, Any] = {
    "t": [0.0, 0.0, 0.0],
    "n": [0, 0, 0],
    "runs": [0, 0, 0],
    "max": 0.0,
    "start": 0.0,
}


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _state["start"] = time.perf_counter()
        return
    took = time.perf_counter() - _state["start"]
    _state["t"][info["generation"]] += took
    _state["n"][info["generation"]] += info["collected"]
    _state["runs"][info["generation"]] += 1
    _state["max"] = max(_state["max"], took)


async def _probe(path: str) -> None:
    loop = asyncio.get_running_loop()
    worst, since = 0.0, time.monotonic()
    counted = objects = calls = frozen = 0
    with open(path, "a") as out:
        while True:
            asked = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - asked - 0.01)
            if time.monotonic() - since >= 1.0:
                g0, g1, g2 = (round(1000 * t) for t in _state["t"])
                counted += 1
                if counted % COUNT_EVERY == 1:
                    # A walk of every tracked object: costly, hence not every second.
                    tracked = gc.get_objects()
                    objects = len(tracked)
                    frozen = gc.get_freeze_count()  # a walk too
                    calls = sum(1 for o in tracked if isinstance(o, BridgedCall))
                    if os.environ.get("OPENTRUNK_PROBE_TYPES"):
                        _write_types(out, tracked)
                    del tracked  # held on, it would keep every object alive a while
                out.write(
                    f"{time.time():.1f} lag_ms={1000 * worst:.0f} gc_ms={g0},{g1},{g2} "
                    f"gc_runs={','.join(str(n) for n in _state['runs'])} "
                    f"gc_freed={','.join(str(n) for n in _state['n'])} "
                    f"gc_max_ms={1000 * _state['max']:.0f} objects={objects} calls={calls} "
                    f"frozen={frozen} blocks={sys.getallocatedblocks()} "
                    f"gc_threshold={'/'.join(str(t) for t in gc.get_threshold())}\n"
                )
                out.flush()
                _state.update(t=[0.0, 0.0, 0.0], n=[0, 0, 0], runs=[0, 0, 0], max=0.0)
                worst, since = 0.0, time.monotonic()


def _write_types(out: Any, tracked: list[object]) -> None:
    """The most numerous tracked types (OPENTRUNK_PROBE_TYPES=1): what the heap holds."""
    counts: dict[str, int] = {}
    for o in tracked:
        name = type(o).__qualname__
        counts[name] = counts.get(name, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:20]
    out.write("# types " + " ".join(f"{n}={c}" for n, c in top) + "\n")


# Objects and calls are counted every this many seconds (the lines in between repeat them).
COUNT_EVERY = 5
_start = server.SipEdge.start
_tasks: set[asyncio.Task[None]] = set()


async def _start_with_probe(self: server.SipEdge) -> None:
    await _start(self)
    _tasks.add(asyncio.create_task(_probe(os.environ["OPENTRUNK_PROBE_FILE"])))


def _serving_policy_from_env() -> None:
    _apply_policy()
    young, middle, old = (int(v) for v in os.environ["OPENTRUNK_PROBE_GC"].split(","))
    gc.set_threshold(young, middle, old)


_apply_policy = gc_policy.apply_serving_policy


class _NoRollingFreeze(gc_policy.RollingFreeze):
    async def run(self) -> None:
        await asyncio.Event().wait()


def main() -> None:
    gc.callbacks.append(_on_gc)
    if os.environ.get("OPENTRUNK_PROBE_FREEZE") == "off":
        setattr(server, "RollingFreeze", _NoRollingFreeze)  # noqa: B010
    if os.environ.get("OPENTRUNK_PROBE_GC"):
        # run_edge and run_serve call the names they imported.
        from opentrunk.cli import serve

        for module in (server, serve):
            setattr(module, "apply_serving_policy", _serving_policy_from_env)  # noqa: B010
    server.SipEdge.start = _start_with_probe  # type: ignore[method-assign]
    from opentrunk.cli.main import app

    sys.argv[0] = "opentrunk"
    app()


if __name__ == "__main__":
    main()
