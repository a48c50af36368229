"""Brute-force protection: per source address, count authentication failures and lock
the address out for a while after too many.

A PBX with a wrong password fails every call; a scanner guessing passwords fails many
times a second. Both look the same here: `max_failures` failures within `window` seconds
lock the address for `duration` seconds, during which its INVITEs are refused (403)
before any credential check, so guessing costs the attacker time and costs us nothing.
A success clears the address's count. Memory is bounded: at most `max_entries`
addresses are tracked; the stalest are forgotten first.

The thresholds are settings (`lockout_failures`, `lockout_window`, `lockout_duration`,
env OPENTRUNK_LOCKOUT_*; docs/edge.md); `max_failures` 0 turns the lockout off.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    failures: int
    first_at: float
    locked_until: float = 0.0


class SourceLockout:
    """Failure counts and lockouts per source IP address (a string)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        duration: float = 300.0,
        max_entries: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 0 or window <= 0 or duration < 0:
            raise ValueError(
                "lockout needs max_failures >= 0 (0: off), window > 0 and duration >= 0"
            )
        self.max_failures = max_failures
        self.window = window
        self.duration = duration
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def is_locked(self, address: str) -> bool:
        entry = self._entries.get(address)
        return entry is not None and entry.locked_until > self._clock()

    def failure(self, address: str) -> bool:
        """Count one failure; True when this failure locks the address (log it once)."""
        if self.max_failures == 0:
            return False
        now = self._clock()
        entry = self._entries.get(address)
        if entry is None or now - entry.first_at > self.window:
            locked_until = entry.locked_until if entry is not None else 0.0
            entry = _Entry(0, now, locked_until)
            self._entries[address] = entry
        self._entries.move_to_end(address)
        entry.failures += 1
        newly_locked = False
        if entry.failures >= self.max_failures and entry.locked_until <= now:
            entry.locked_until = now + self.duration
            entry.failures = 0
            entry.first_at = now
            newly_locked = True
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return newly_locked

    def success(self, address: str) -> None:
        entry = self._entries.get(address)
        if entry is not None and entry.locked_until <= self._clock():
            del self._entries[address]

    def __len__(self) -> int:
        return len(self._entries)
