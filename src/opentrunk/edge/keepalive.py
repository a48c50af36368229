"""OPTIONS keep-alives: answered 200, but at most `rate` per second per source address
(a token bucket of `burst`), so that a flood of OPTIONS from one address costs the edge
little. Over the limit the edge answers 503 with Retry-After (an unanswered non-INVITE
would keep its server transaction alive until it times out, which costs more).

The table of buckets is bounded: when it is full, the bucket idle the longest is
dropped (a dropped source starts again with a full bucket, which is harmless).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

MAX_SOURCES: Final = 10_000


class OptionsLimiter:
    """Per-source token buckets for OPTIONS."""

    def __init__(
        self,
        rate: float = 10.0,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate)))
        self._clock = clock
        self._max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0

    def allow(self, source: str) -> bool:
        """Take one token for `source`; False when its bucket is empty."""
        if self.rate <= 0:
            return True
        now = self._clock()
        tokens, last = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.refused += 1
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return allowed
