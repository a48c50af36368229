"""`OverloadGuard`: late ticks in a row (a backlog) make the edge refuse new calls for a
while; a single pause does not; 0 turns it off. Driven by observed lags, then on a real
event loop that is made to fall behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from opentrunk.edge.overload import OverloadGuard


def test_a_single_pause_is_not_overload() -> None:
    guard = OverloadGuard(0.25, ticks=3, hold=1.0)
    guard.observe(0.9, now=10.0)  # one long pause (a collection)
    guard.observe(0.01, now=10.1)
    assert not guard.overloaded(10.1)
    assert guard.late_in_a_row == 0


def test_late_ticks_in_a_row_overload_until_the_hold_ends() -> None:
    changes: list[bool] = []
    guard = OverloadGuard(0.25, ticks=3, hold=1.0, on_change=changes.append)
    guard.observe(0.3, now=10.0)
    guard.observe(0.3, now=10.3)
    assert not guard.overloaded(10.3)
    guard.observe(0.3, now=10.6)
    assert guard.overloaded(10.6)
    guard.observe(0.0, now=10.7)  # back on time: the hold still runs
    assert guard.overloaded(11.5)
    assert not guard.overloaded(11.61)
    guard.observe(0.0, now=11.7)
    assert changes == [True, False]


def test_threshold_zero_turns_it_off() -> None:
    guard = OverloadGuard(0.0)
    for step in range(10):
        guard.observe(5.0, now=float(step))
    assert not guard.enabled
    assert not guard.overloaded(9.0)


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_a_loop_that_falls_behind_is_overloaded_then_recovers(use_uvloop: bool) -> None:
    async def main() -> tuple[bool, bool, bool]:
        guard = OverloadGuard(0.03, ticks=3, hold=0.3, interval=0.01)
        guard.start()
        try:
            await asyncio.sleep(0.05)
            calm = guard.overloaded()
            # A backlog: callbacks that each hold the loop for 60 ms, one after another.
            for _ in range(6):
                time.sleep(0.06)
                await asyncio.sleep(0)
            behind = guard.overloaded()
            await asyncio.sleep(0.5)  # the hold runs out on an idle loop
            return calm, behind, guard.overloaded()
        finally:
            guard.stop()

    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(main())
    else:
        result = asyncio.run(main())
    assert result == (False, True, False)


def test_a_full_receive_queue_counts_as_late_even_with_timers_on_time() -> None:
    guard = OverloadGuard(0.25, ticks=3, hold=1.0, fill=0.25)
    for step in range(3):
        guard.observe(0.01, now=10.0 + 0.05 * step, fill=0.6)
    assert guard.overloaded(10.2)
    assert guard.queue_fill == 0.6


def test_the_tick_reads_the_watched_queues() -> None:
    fills = iter([0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0])

    async def main() -> bool:
        guard = OverloadGuard(10.0, ticks=3, hold=5.0, interval=0.01)
        guard.watch_queue(lambda: next(fills, 0.0))
        guard.start()
        try:
            await asyncio.sleep(0.1)
            return guard.overloaded()
        finally:
            guard.stop()

    assert asyncio.run(main()) is True
