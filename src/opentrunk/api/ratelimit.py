"""The per-account API rate limit: a token bucket per auth_id (`rate` tokens a second, at
most `burst` stored), kept by the same counter stores as the SIP edge's call limits
(opentrunk.domain.limits, GCRA: a token bucket held as one timestamp per key).

- In process (`MemoryLimitStore`) by default: exact for one worker.
- In Redis (`RedisLimitStore`, one atomic Lua script per request) when `redis_url` is set
  (OPENTRUNK_REDIS_URL): every worker and every API node then draws from the same bucket,
  so N workers do not give an account N times its limit.

If Redis cannot be reached the request is let through (and a warning logged, at most once
a minute): an outage of the counter store must not take the API down with it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final

from redis.exceptions import RedisError

from opentrunk.domain.limits import LimitStore, MemoryLimitStore, RedisLimitStore

log = logging.getLogger("opentrunk.api")

KEY_PREFIX: Final = "opentrunk:api-rate:"
_WARN_EVERY_S: Final = 60.0


class RateLimiter:
    """`rate` requests per second per key, bursts of `burst`; rate <= 0 disables it."""

    def __init__(
        self,
        rate: float,
        burst: int,
        store: LimitStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.store: LimitStore = store if store is not None else MemoryLimitStore()
        self.shared = isinstance(self.store, RedisLimitStore)
        self._clock = clock
        self._warned_at = -math.inf

    @classmethod
    def for_settings(cls, rate: float, burst: int, redis_url: str) -> RateLimiter:
        """In Redis when `redis_url` is set, else in this process."""
        if not redis_url or rate <= 0:
            return cls(rate, burst)
        from redis.asyncio import Redis

        # Short timeouts: a request waits on this before doing its own work.
        client = Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return cls(rate, burst, RedisLimitStore(client, prefix=KEY_PREFIX))

    async def acquire(self, key: str) -> float:
        """0.0 when the request may proceed, else the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        try:
            wait = await self.store.reserve(key, self.rate, self.burst, 0.0, self._clock())
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                log.warning("API rate limit not applied: the counter store failed: %s", exc)
            return 0.0
        if wait is not None:
            return 0.0
        # Refused: the bucket's next token is at most one refill interval away (a refused
        # request reserves nothing, and an admitted one moved the bucket by one interval).
        return 1.0 / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
