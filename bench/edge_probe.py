"""`opentrunk` with an event-loop lag and garbage-collection probe, for bench/edge_calls.py
(`--probe`): runs the real command line, and once the SIP edge has started, writes one
line per second to $OPENTRUNK_PROBE_FILE:

    <unix time> lag_ms=<worst overshoot of a 10 ms sleep> gc_ms=<g0>,<g1>,<g2> \
        gc_max_ms=<longest collection> objects=<tracked objects>

The lag is how late the event loop ran a 10 ms timer (a stalled loop delays every
packet); the collections are timed with `gc.callbacks`. Diagnostics only.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from typing import Any

from opentrunk.edge import server

_state: dict[str, Any] = {"t": [0.0, 0.0, 0.0], "max": 0.0, "start": 0.0}


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _state["start"] = time.perf_counter()
        return
    took = time.perf_counter() - _state["start"]
    _state["t"][info["generation"]] += took
    _state["max"] = max(_state["max"], took)


async def _probe(path: str) -> None:
    loop = asyncio.get_running_loop()
    worst, since = 0.0, time.monotonic()
    with open(path, "a") as out:
        while True:
            asked = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - asked - 0.01)
            if time.monotonic() - since >= 1.0:
                g0, g1, g2 = (round(1000 * t) for t in _state["t"])
                out.write(
                    f"{time.time():.1f} lag_ms={1000 * worst:.0f} gc_ms={g0},{g1},{g2} "
                    f"gc_max_ms={1000 * _state['max']:.0f} objects={len(gc.get_objects())}\n"
                )
                out.flush()
                _state["t"], _state["max"] = [0.0, 0.0, 0.0], 0.0
                worst, since = 0.0, time.monotonic()


_start = server.SipEdge.start
_tasks: set[asyncio.Task[None]] = set()


async def _start_with_probe(self: server.SipEdge) -> None:
    await _start(self)
    _tasks.add(asyncio.create_task(_probe(os.environ["OPENTRUNK_PROBE_FILE"])))


def main() -> None:
    gc.callbacks.append(_on_gc)
    server.SipEdge.start = _start_with_probe  # type: ignore[method-assign]
    from opentrunk.cli.main import app

    sys.argv[0] = "opentrunk"
    app()


if __name__ == "__main__":
    main()
