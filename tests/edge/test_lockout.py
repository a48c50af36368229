"""Unit tests for `opentrunk.edge.lockout.SourceLockout` with a fake clock: the failure
threshold within the window, the lockout period and its end, per-address isolation,
what a success does, and the bound on memory."""

from __future__ import annotations

import pytest

from opentrunk.edge.lockout import SourceLockout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lockout(clock: Clock) -> SourceLockout:
    return SourceLockout(max_failures=5, window=60.0, duration=300.0, clock=clock)


def test_fifth_failure_within_the_window_locks_the_address_once() -> None:
    clock = Clock()
    guard = lockout(clock)
    assert [guard.failure("203.0.113.9") for _ in range(4)] == [False] * 4
    assert not guard.is_locked("203.0.113.9")
    assert guard.failure("203.0.113.9") is True
    assert guard.is_locked("203.0.113.9")
    # Further failures while locked do not lock "again" (the lockout is logged once).
    assert [guard.failure("203.0.113.9") for _ in range(10)] == [False] * 10


def test_lockout_lasts_its_duration_then_ends() -> None:
    clock = Clock()
    guard = lockout(clock)
    for _ in range(5):
        guard.failure("203.0.113.9")
    clock.now += 299.0
    assert guard.is_locked("203.0.113.9")
    clock.now += 2.0
    assert not guard.is_locked("203.0.113.9")


def test_failures_during_the_lockout_do_not_extend_it() -> None:
    clock = Clock()
    guard = lockout(clock)
    for _ in range(5):
        guard.failure("203.0.113.9")
    clock.now += 250.0
    for _ in range(3):
        guard.failure("203.0.113.9")
    clock.now += 51.0
    assert not guard.is_locked("203.0.113.9")


def test_failures_spread_wider_than_the_window_do_not_lock() -> None:
    clock = Clock()
    guard = lockout(clock)
    for _ in range(20):
        assert guard.failure("198.51.100.1") is False
        clock.now += 16.0  # at most 4 failures in any 60 s
    assert not guard.is_locked("198.51.100.1")


def test_one_address_locked_leaves_the_others_alone() -> None:
    clock = Clock()
    guard = lockout(clock)
    for _ in range(5):
        guard.failure("198.51.100.1")
    assert guard.is_locked("198.51.100.1")
    assert not guard.is_locked("198.51.100.2")
    assert not guard.is_locked("2001:db8::1")
    assert guard.failure("198.51.100.2") is False


def test_success_clears_the_count_but_not_a_lockout() -> None:
    clock = Clock()
    guard = lockout(clock)
    for _ in range(4):
        guard.failure("192.0.2.4")
    guard.success("192.0.2.4")
    # Counting starts again: four more failures are not enough.
    assert [guard.failure("192.0.2.4") for _ in range(4)] == [False] * 4
    assert guard.failure("192.0.2.4") is True
    # A success while locked (e.g. an ACL call racing the lockout) does not unlock.
    guard.success("192.0.2.4")
    assert guard.is_locked("192.0.2.4")


def test_an_address_can_be_locked_again_after_its_lockout_ends() -> None:
    clock = Clock()
    guard = lockout(clock)
    for _ in range(5):
        guard.failure("192.0.2.4")
    clock.now += 301.0
    assert not guard.is_locked("192.0.2.4")
    assert [guard.failure("192.0.2.4") for _ in range(5)] == [False] * 4 + [True]
    assert guard.is_locked("192.0.2.4")


def test_memory_is_bounded_and_the_stalest_address_goes_first() -> None:
    clock = Clock()
    guard = SourceLockout(max_failures=5, window=60.0, duration=300.0, max_entries=3, clock=clock)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        guard.failure(address)
    guard.failure("10.0.0.1")  # now the freshest
    guard.failure("10.0.0.4")  # evicts 10.0.0.2, the stalest
    assert len(guard) == 3
    for _ in range(3):
        guard.failure("10.0.0.1")
    assert guard.is_locked("10.0.0.1")  # its count survived the eviction of another
    for _ in range(4):
        assert guard.failure("10.0.0.2") is False  # forgotten, so counting afresh


def test_zero_failures_turns_the_lockout_off() -> None:
    guard = SourceLockout(max_failures=0, window=60.0, duration=300.0, clock=Clock())
    assert not any(guard.failure("203.0.113.9") for _ in range(100))
    assert not guard.is_locked("203.0.113.9")


@pytest.mark.parametrize(
    ("failures", "window", "duration"), [(-1, 60.0, 300.0), (5, 0.0, 300.0), (5, 60.0, -1.0)]
)
def test_thresholds_out_of_range_are_refused(failures: int, window: float, duration: float) -> None:
    with pytest.raises(ValueError):
        SourceLockout(max_failures=failures, window=window, duration=duration)
