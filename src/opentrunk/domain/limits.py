"""Call admission limits (CALLS.md "Outbound" step 7): calls per second per trunk and per
account, and concurrent calls per account, over a shared counter store.

Rate limits use GCRA (the generic cell rate algorithm, a token bucket kept as a single
"theoretical arrival time" per key). A request asks for a reservation and is told how
long to wait before its slot; with `max_wait` 0 that is the token bucket rejecting at
once (trunk CPS), with a positive `max_wait` it is a first-come first-served queue of at
most `max_wait` seconds (account CPS), since each waiting call holds its own future slot.
A call refused by a later check still used its earlier CPS slots: attempts count.

Concurrent calls are leases: a set of call ids per account, each with an expiry, so a
crashed edge node's calls stop counting once their leases lapse instead of leaking
forever. The edge renews the lease of every live call (every `lease / 3` seconds is
plenty) and releases it when the call ends.

A lease alone still holds a dead node's slots for up to `lease` (an hour by default): an
account whose calls were all on the node that died stays at its limit that long. So the
Redis store of a named edge node also indexes the slots it holds under the node
(`node:{node}:slots`, a sorted set of `{calls key}\n{call id}` by lease expiry, expiring
with its last lease), and `release_node_slots` gives back every slot of a node that is
not running: the node's own restart does it before it takes calls, and
`opentrunk calls recover --node` for a node gone for good.

Two stores, one interface (`LimitStore`): `MemoryLimitStore` for a single process, and
`RedisLimitStore` shared by many edge nodes, each operation one atomic Lua script. Time
is always passed in by the caller (an explicit clock: tests drive it; production passes
the wall clock, which all nodes share through NTP; a node whose clock lags simply cannot
move a bucket backwards).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from opentrunk.domain.hangup_codes import CallEnd, refusal

log = logging.getLogger("opentrunk.domain.limits")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_LEASE: Final = 3600.0
# Float arithmetic on timestamps must not turn "exactly on time" into "1e-12 s late".
_EPSILON: Final = 1e-6
_MICRO: Final = 1_000_000


@dataclass(frozen=True)
class Bucket:
    """One calls-per-second check: the key's bucket refills `rate` slots per second and
    holds `burst`; a call may wait up to `max_wait` seconds for its slot."""

    key: str
    rate: float
    burst: int = 1
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        _check_rate(self.rate, self.burst, self.max_wait)


@dataclass(frozen=True)
class AdmissionRequest:
    """Every check of one call, applied in order by `LimitStore.admit` at once."""

    trunk: Bucket | None
    account: Bucket | None
    calls_key: str
    call_id: str
    max_concurrent: int | None
    lease: float


# What `LimitStore.admit` says: the call may go after `delay` seconds (it holds its slots),
# or which check refused it.
ADMITTED: Final = 0
TRUNK_CPS_REFUSED: Final = 1
ACCOUNT_CPS_REFUSED: Final = 2
CONCURRENCY_REFUSED: Final = 3


class LimitStore(Protocol):
    """Shared counters for call admission. Times are seconds on the caller's clock."""

    async def admit(self, request: AdmissionRequest, now: float) -> tuple[int, float]:
        """Apply trunk CPS, account CPS, then concurrent calls, as one atomic step:
        (ADMITTED, delay before the call may go) or (the refusing check, 0.0). A check that
        passed before a later one refused keeps its CPS slot: attempts count."""
        ...

    async def reserve(
        self, key: str, rate: float, burst: int, max_wait: float, now: float
    ) -> float | None:
        """Reserve the next slot of a `rate` per second bucket holding `burst` slots: the
        seconds to wait before using it, or None (nothing reserved) when that would be
        longer than `max_wait`."""
        ...

    async def acquire_slot(
        self, key: str, member: str, limit: int, now: float, lease: float
    ) -> bool:
        """Hold one of `limit` slots for `member` until `now + lease`. True when held
        (again: acquiring a slot already held renews it)."""
        ...

    async def renew_slot(self, key: str, member: str, now: float, lease: float) -> bool:
        """Extend a held slot's lease; False when it is not held (any more)."""
        ...

    async def release_slot(self, key: str, member: str) -> None:
        """Give a slot back; releasing one not held does nothing."""
        ...

    async def slots_in_use(self, key: str, now: float) -> int: ...

    async def release_node_slots(self, node: str) -> int:
        """Give back every slot edge node `node` holds; only for a node that is not
        running (its restart, before it takes calls, or a node gone for good). Returns
        how many slots were taken out of their calls sets."""
        ...


def _gcra(tat: float, rate: float, burst: int, now: float) -> tuple[float, float]:
    """(delay, new TAT) of one reservation; the caller refuses a delay over its max_wait."""
    interval = 1.0 / rate
    tolerance = (burst - 1) * interval
    start = max(tat, now)
    delay = max(0.0, start - tolerance - now)
    return delay, start + interval


def _check_rate(rate: float, burst: int, max_wait: float) -> None:
    if not rate > 0:
        raise ValueError("rate must be positive")
    if burst < 1:
        raise ValueError("burst must be at least 1")
    if max_wait < 0:
        raise ValueError("max_wait cannot be negative")


class MemoryLimitStore:
    """Counters in this process. Safe under asyncio without locks: no method awaits
    between reading and writing its state."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}
        # Per key, a time no later than the earliest lease expiry, so that expired leases
        # are swept only when one may have lapsed, not on every call.
        self._sweep_at: dict[str, float] = {}

    async def reserve(
        self, key: str, rate: float, burst: int, max_wait: float, now: float
    ) -> float | None:
        _check_rate(rate, burst, max_wait)
        delay, new_tat = _gcra(self._tat.get(key, now), rate, burst, now)
        if delay > max_wait + _EPSILON:
            return None
        self._tat[key] = new_tat
        return delay if delay > _EPSILON else 0.0

    def _live(self, key: str, now: float) -> dict[str, float]:
        slots = self._slots.setdefault(key, {})
        if slots and now >= self._sweep_at.get(key, now):
            for member in [m for m, expiry in slots.items() if expiry <= now]:
                del slots[member]
            self._sweep_at[key] = min(slots.values(), default=now)
        return slots

    def _hold(self, key: str, slots: dict[str, float], member: str, expiry: float) -> None:
        slots[member] = expiry
        self._sweep_at[key] = min(self._sweep_at.get(key, expiry), expiry)

    async def acquire_slot(
        self, key: str, member: str, limit: int, now: float, lease: float
    ) -> bool:
        slots = self._live(key, now)
        if member not in slots and len(slots) >= limit:
            return False
        self._hold(key, slots, member, now + lease)
        return True

    async def renew_slot(self, key: str, member: str, now: float, lease: float) -> bool:
        slots = self._live(key, now)
        if member not in slots:
            return False
        self._hold(key, slots, member, now + lease)
        return True

    async def release_slot(self, key: str, member: str) -> None:
        slots = self._slots.get(key)
        if slots is not None:
            slots.pop(member, None)
            if not slots:
                del self._slots[key]
                self._sweep_at.pop(key, None)

    async def slots_in_use(self, key: str, now: float) -> int:
        return len(self._live(key, now))

    async def release_node_slots(self, node: str) -> int:
        # These counters live and die with one process: a node that is not running
        # holds nothing here.
        return 0

    async def admit(self, request: AdmissionRequest, now: float) -> tuple[int, float]:
        # No await below suspends (the primitives never block), so this is atomic too.
        delay = 0.0
        for bucket, refused in (
            (request.trunk, TRUNK_CPS_REFUSED),
            (request.account, ACCOUNT_CPS_REFUSED),
        ):
            if bucket is not None:
                wait = await self.reserve(
                    bucket.key, bucket.rate, bucket.burst, bucket.max_wait, now
                )
                if wait is None:
                    return refused, 0.0
                delay = max(delay, wait)
        if request.max_concurrent is not None and not await self.acquire_slot(
            request.calls_key, request.call_id, request.max_concurrent, now, request.lease
        ):
            return CONCURRENCY_REFUSED, 0.0
        return ADMITTED, delay


# Times travel to Redis as integer microseconds: exact in Lua's doubles (below 2^53) and
# written back with %.0f, where tostring() would keep only 14 significant digits.
_RESERVE: Final = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local start = now
local stored = redis.call('GET', KEYS[1])
if stored then
  start = math.max(tonumber(stored), now)
end
local delay = math.max(0, start - tolerance - now)
if delay > max_wait then
  return -1
end
local tat = start + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.ceil((tat - now) / 1000) + 1000)
return delay
"""

# Every script that holds a slot also files it in the node's index: KEYS[n] the index,
# ARGV[n] the entry ('' when the store names no node: no index).
_INDEX_SLOT: Final = """
local function index_slot(index, entry, now, expiry, lease_ms)
  if entry ~= '' then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
    redis.call('ZADD', index, expiry, entry)
    redis.call('PEXPIRE', index, lease_ms)
  end
end
"""

# KEYS: calls set, node index. ARGV: call id, limit, now, expiry, lease ms, index entry.
_ACQUIRE: Final = (
    _INDEX_SLOT
    + """
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not held) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
index_slot(KEYS[2], ARGV[6], now, ARGV[4], ARGV[5])
return 1
"""
)

# KEYS: calls set, node index. ARGV: call id, now, expiry, lease ms, index entry.
_RENEW: Final = (
    _INDEX_SLOT
    + """
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
index_slot(KEYS[2], ARGV[5], now, ARGV[3], ARGV[4])
return 1
"""
)

# KEYS: calls set, node index. ARGV: call id, index entry.
_RELEASE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
"""


# KEYS: trunk bucket, account bucket, calls set, node index. ARGV: now, then per bucket
# interval, tolerance and max wait (interval 0: no such limit), then call id, concurrent
# limit (-1: none), lease expiry, lease in ms, index entry. Returns {check, delay}.
_ADMIT: Final = (
    _INDEX_SLOT
    + """
local now = tonumber(ARGV[1])
local delay = 0
for i = 1, 2 do
  local interval = tonumber(ARGV[i * 3 - 1])
  if interval > 0 then
    local start = now
    local stored = redis.call('GET', KEYS[i])
    if stored then
      start = math.max(tonumber(stored), now)
    end
    local wait = math.max(0, start - tonumber(ARGV[i * 3]) - now)
    if wait > tonumber(ARGV[i * 3 + 1]) then
      return {i, 0}
    end
    local tat = start + interval
    redis.call('SET', KEYS[i], string.format('%.0f', tat),
               'PX', math.ceil((tat - now) / 1000) + 1000)
    delay = math.max(delay, wait)
  end
end
local limit = tonumber(ARGV[9])
if limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local held = redis.call('ZSCORE', KEYS[3], ARGV[8])
  if (not held) and redis.call('ZCARD', KEYS[3]) >= limit then
    return {3, 0}
  end
  redis.call('ZADD', KEYS[3], ARGV[10], ARGV[8])
  redis.call('PEXPIRE', KEYS[3], ARGV[11])
  index_slot(KEYS[4], ARGV[12], now, ARGV[10], ARGV[11])
end
return {0, delay}
"""
)


def _us(seconds: float) -> int:
    return round(seconds * _MICRO)


# Between a slot's calls key and its call id in a node index entry: in neither of them.
_ENTRY_SEPARATOR: Final = "\n"


def _node_index(node: str) -> str:
    return f"node:{node}:slots"


class RedisLimitStore:
    """Counters in Redis, shared by every edge node using the same key prefix. `node`:
    the edge node this store serves, whose slots it indexes (module docstring); None
    keeps no index (tools that only read or release)."""

    def __init__(
        self, client: Redis, prefix: str = "opentrunk:limits:", node: str | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._index = self._key(_node_index(node or ""))
        self._indexed = node is not None
        self._reserve = client.register_script(_RESERVE)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._admit = client.register_script(_ADMIT)

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _entry(self, key: str, member: str) -> str:
        """The node index's entry for a slot ('' when this store keeps no index)."""
        return f"{key}{_ENTRY_SEPARATOR}{member}" if self._indexed else ""

    async def reserve(
        self, key: str, rate: float, burst: int, max_wait: float, now: float
    ) -> float | None:
        _check_rate(rate, burst, max_wait)
        interval = max(1, _us(1.0 / rate))
        args = [interval, (burst - 1) * interval, _us(max_wait + _EPSILON), _us(now)]
        delay = int(await self._reserve(keys=[self._key(key)], args=args))
        if delay < 0:
            return None
        return delay / _MICRO if delay > _us(_EPSILON) else 0.0

    async def acquire_slot(
        self, key: str, member: str, limit: int, now: float, lease: float
    ) -> bool:
        args: list[str | int] = [
            member,
            limit,
            _us(now),
            _us(now + lease),
            max(1, round(lease * 1000)),
            self._entry(key, member),
        ]
        return bool(await self._acquire(keys=[self._key(key), self._index], args=args))

    async def renew_slot(self, key: str, member: str, now: float, lease: float) -> bool:
        args: list[str | int] = [
            member,
            _us(now),
            _us(now + lease),
            max(1, round(lease * 1000)),
            self._entry(key, member),
        ]
        return bool(await self._renew(keys=[self._key(key), self._index], args=args))

    async def release_slot(self, key: str, member: str) -> None:
        args = [member, self._entry(key, member)]
        await self._release(keys=[self._key(key), self._index], args=args)

    async def release_node_slots(self, node: str) -> int:
        """Every slot in `node`'s index is taken out of its calls set, then the index
        goes. Not atomic with the node's own writes: hence only for a node that is not
        running. Entries whose lease lapsed are gone from the calls sets already."""
        index = self._key(_node_index(node))
        entries = await self._client.zrange(index, 0, -1)
        pipe = self._client.pipeline(transaction=True)
        for raw in entries:
            entry = raw.decode() if isinstance(raw, bytes) else str(raw)
            key, _, member = entry.partition(_ENTRY_SEPARATOR)
            pipe.zrem(self._key(key), member)
        pipe.delete(index)
        results = await pipe.execute()
        return sum(int(removed) for removed in results[:-1])

    async def admit(self, request: AdmissionRequest, now: float) -> tuple[int, float]:
        """All checks in one Lua script: one round trip per call."""
        args: list[str | int] = [_us(now)]
        keys = []
        for bucket in (request.trunk, request.account):
            if bucket is None:
                args += [0, 0, 0]
                keys.append(self._key("unused"))
            else:
                interval = max(1, _us(1.0 / bucket.rate))
                tolerance = (bucket.burst - 1) * interval
                args += [interval, tolerance, _us(bucket.max_wait + _EPSILON)]
                keys.append(self._key(bucket.key))
        limit = -1 if request.max_concurrent is None else request.max_concurrent
        lease_ms = max(1, round(request.lease * 1000))
        args += [
            request.call_id,
            limit,
            _us(now + request.lease),
            lease_ms,
            self._entry(request.calls_key, request.call_id),
        ]
        keys += [self._key(request.calls_key), self._index]
        check, delay = await self._admit(keys=keys, args=args)
        seconds = int(delay) / _MICRO
        return int(check), seconds if seconds > _EPSILON else 0.0

    async def slots_in_use(self, key: str, now: float) -> int:
        return int(await self._client.zcount(self._key(key), f"({_us(now)}", "+inf"))


@dataclass(frozen=True)
class CallLimits:
    """The limits that apply to one call: its trunk's and its account's. None: no limit."""

    trunk_cps: float | None = None
    trunk_burst: int = 1
    account_cps: float | None = None
    account_burst: int = 1
    account_queue_wait: float = 0.5  # seconds a call may wait for an account CPS slot
    max_concurrent: int | None = None


class CallAdmission:
    """Applies `CallLimits` to a new call, in CALLS.md order: trunk CPS (at once), account
    CPS (short queue), account concurrent calls."""

    def __init__(
        self,
        store: LimitStore,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self.lease = lease

    @staticmethod
    def _calls_key(account_id: str) -> str:
        return f"calls:account:{account_id}"

    async def admit(
        self, *, account_id: str, trunk_id: str, call_id: str, limits: CallLimits
    ) -> CallEnd | None:
        """None when the call may proceed (it then holds a concurrent-call slot when the
        account has that limit: call `release` when it ends), else the 5180/5190 refusal.
        A call queued for an account CPS slot holds its call slot while it waits."""
        request = AdmissionRequest(
            trunk=None
            if limits.trunk_cps is None
            else Bucket(f"cps:trunk:{trunk_id}", limits.trunk_cps, limits.trunk_burst),
            account=None
            if limits.account_cps is None
            else Bucket(
                f"cps:account:{account_id}",
                limits.account_cps,
                limits.account_burst,
                limits.account_queue_wait,
            ),
            calls_key=self._calls_key(account_id),
            call_id=call_id,
            max_concurrent=limits.max_concurrent,
            lease=self.lease,
        )
        check, delay = await self._store.admit(request, self._clock())
        if check == TRUNK_CPS_REFUSED:
            return refusal(5180, "trunk calls-per-second limit reached")
        if check == ACCOUNT_CPS_REFUSED:
            return refusal(5180, "account calls-per-second limit reached")
        if check == CONCURRENCY_REFUSED:
            return refusal(5190)
        if delay > 0:
            await self._sleep(delay)
        return None

    async def renew(self, account_id: str, call_id: str) -> bool:
        return await self._store.renew_slot(
            self._calls_key(account_id), call_id, self._clock(), self.lease
        )

    async def release(self, account_id: str, call_id: str) -> None:
        await self._store.release_slot(self._calls_key(account_id), call_id)

    async def active_calls(self, account_id: str) -> int:
        return await self._store.slots_in_use(self._calls_key(account_id), self._clock())

    async def release_node(self, node: str) -> int:
        """Give back the concurrent-call slots of edge node `node`, which is not running
        (`LimitStore.release_node_slots`). Redis out of reach at a node's start is no
        reason not to start: the slots then lapse with their leases."""
        try:
            return await self._store.release_node_slots(node)
        except (RedisError, OSError) as exc:
            log.warning(
                "could not give back the slots of a previous run",
                extra={"fields": {"node": node, "error": type(exc).__name__}},
            )
            return 0
