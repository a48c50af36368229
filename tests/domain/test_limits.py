"""Call admission limits over both stores: in-memory, and Redis when it is reachable
(CI sets OPENTRUNK_TEST_REDIS_URL, and then Redis must be there)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis

from opentrunk.domain.limits import (
    Bucket,
    CallAdmission,
    CallLimits,
    LimitStore,
    MemoryLimitStore,
    RedisLimitStore,
)

T = TypeVar("T")
REDIS_URL = os.environ.get("OPENTRUNK_TEST_REDIS_URL", "")
# Wall-clock sized timestamps, so the Redis store's microsecond arithmetic is exercised at
# the magnitude it meets in production.
BASE = 1_700_000_000.0


def _redis_reachable() -> bool:
    if REDIS_URL:
        return True  # CI asked for Redis: a missing server must fail, not skip
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_url() -> str:
    return REDIS_URL or "redis://127.0.0.1:6379/0"


redis_only = pytest.mark.skipif(not _redis_reachable(), reason="no Redis at 127.0.0.1:6379")
STORES = ["memory", pytest.param("redis", marks=redis_only)]


@contextlib.asynccontextmanager
async def redis_client() -> AsyncIterator[tuple[Redis, str]]:
    url = _redis_url()
    assert urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")
    client = Redis.from_url(url, socket_timeout=5)
    prefix = f"opentrunk-test:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@contextlib.asynccontextmanager
async def make_store(kind: str) -> AsyncIterator[LimitStore]:
    if kind == "memory":
        yield MemoryLimitStore()
        return
    async with redis_client() as (client, prefix):
        yield RedisLimitStore(client, prefix)


def run_with(kind: str, body: Callable[[LimitStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with make_store(kind) as store:
            return await asyncio.wait_for(body(store), timeout=30)

    return asyncio.run(main())


class FakeTime:
    """An explicit clock whose sleep advances it, and records each sleep."""

    def __init__(self, now: float = BASE) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("kind", STORES)
def test_bucket_rejects_at_once_when_empty(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        assert await store.reserve("t", 2, 1, 0, BASE) == 0.0
        assert await store.reserve("t", 2, 1, 0, BASE) is None
        assert await store.reserve("t", 2, 1, 0, BASE + 0.4) is None
        assert await store.reserve("t", 2, 1, 0, BASE + 0.5) == 0.0
        assert await store.reserve("t", 2, 1, 0, BASE + 0.9) is None
        assert await store.reserve("t", 2, 1, 0, BASE + 1.0) == 0.0
        # Another key has its own bucket.
        assert await store.reserve("u", 2, 1, 0, BASE + 1.0) == 0.0

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_burst_allows_that_many_at_once_then_refills_at_the_rate(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        for _ in range(3):
            assert await store.reserve("t", 1, 3, 0, BASE) == 0.0
        assert await store.reserve("t", 1, 3, 0, BASE) is None
        assert await store.reserve("t", 1, 3, 0, BASE + 1) == 0.0
        assert await store.reserve("t", 1, 3, 0, BASE + 1) is None
        # A long idle period refills to the burst, not beyond it.
        later = BASE + 1000
        assert [await store.reserve("t", 1, 3, 0, later) for _ in range(4)] == [0.0] * 3 + [None]

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_queue_hands_out_future_slots_up_to_max_wait(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        delays = [await store.reserve("a", 10, 1, 0.25, BASE) for _ in range(4)]
        assert delays[:3] == pytest.approx([0.0, 0.1, 0.2], abs=1e-6)
        assert delays[3] is None  # 0.3 s would be too long a wait
        # The refused call reserved nothing: at 0.3 s the next slot is free at once.
        assert await store.reserve("a", 10, 1, 0.25, BASE + 0.3) == 0.0

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_odd_rates_stay_exact_over_many_slots(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        # 3 per second for 100 s: exactly 300 slots, each on time, none early.
        granted = 0
        for step in range(300):
            now = BASE + step / 3
            assert await store.reserve("odd", 3, 1, 0, now) == 0.0, step
            assert await store.reserve("odd", 3, 1, 0, now) is None
            granted += 1
        assert granted == 300

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_concurrent_slots_limit_release_and_renew(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        key, lease = "calls", 10.0
        assert await store.acquire_slot(key, "a", 2, BASE, lease)
        assert await store.acquire_slot(key, "b", 2, BASE, lease)
        assert not await store.acquire_slot(key, "c", 2, BASE, lease)
        assert await store.acquire_slot(key, "a", 2, BASE, lease)  # held already: renewed
        assert await store.slots_in_use(key, BASE) == 2
        await store.release_slot(key, "a")
        await store.release_slot(key, "never-held")
        assert await store.acquire_slot(key, "c", 2, BASE + 1, lease)
        assert not await store.renew_slot(key, "a", BASE + 1, lease)
        assert await store.renew_slot(key, "c", BASE + 9, lease)  # c now until BASE + 19
        # b's lease lapses at BASE + 10 (a crashed node's call stops counting).
        assert await store.slots_in_use(key, BASE + 10) == 1
        assert await store.acquire_slot(key, "d", 2, BASE + 10, lease)
        assert not await store.acquire_slot(key, "e", 2, BASE + 10, lease)
        assert await store.slots_in_use(key, BASE + 18.9) == 2
        assert await store.slots_in_use(key, BASE + 19) == 1  # c lapsed, d still held
        await store.release_slot(key, "d")
        assert await store.slots_in_use(key, BASE + 19) == 0

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_invalid_rates_are_refused(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        for rate, burst, wait in [(0, 1, 0), (-1, 1, 0), (1, 0, 0), (1, 1, -0.1)]:
            with pytest.raises(ValueError):
                await store.reserve("x", rate, burst, wait, BASE)

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_admission_trunk_cps_refuses_at_once_with_5180(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        clock = FakeTime()
        admission = CallAdmission(store, clock, clock.sleep)
        limits = CallLimits(trunk_cps=1)
        assert (
            await admission.admit(account_id="A", trunk_id="T", call_id="1", limits=limits) is None
        )
        end = await admission.admit(account_id="A", trunk_id="T", call_id="2", limits=limits)
        assert end is not None and (end.code, end.sip_status) == (5180, 503)
        assert "trunk" in end.reason
        assert clock.sleeps == []  # refused at once, no waiting
        # Another trunk of the same account has its own budget.
        assert (
            await admission.admit(account_id="A", trunk_id="U", call_id="3", limits=limits) is None
        )

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_admission_account_cps_queues_briefly_then_refuses(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        clock = FakeTime()
        admission = CallAdmission(store, clock, clock.sleep)
        limits = CallLimits(account_cps=5, account_queue_wait=0.5)

        async def admit(call_id: str, trunk: str) -> int | None:
            end = await admission.admit(
                account_id="A", trunk_id=trunk, call_id=call_id, limits=limits
            )
            return None if end is None else end.code

        # Calls arriving together: the first passes, the next ones wait 0.2 s each after
        # the one before (the fake sleep moves the clock, as the real one would).
        start = clock.now
        assert await admit("1", "T") is None
        clock.now = start
        assert await admit("2", "U") is None
        clock.now = start
        assert await admit("3", "T") is None
        clock.now = start
        assert await admit("4", "U") == 5180  # would have to wait 0.6 s
        assert clock.sleeps == pytest.approx([0.2, 0.4], abs=1e-6)

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_admission_concurrent_calls_5190_and_release(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        clock = FakeTime()
        admission = CallAdmission(store, clock, clock.sleep, lease=60)
        limits = CallLimits(max_concurrent=2)
        for call_id in ("1", "2"):
            assert (
                await admission.admit(account_id="A", trunk_id="T", call_id=call_id, limits=limits)
                is None
            )
        end = await admission.admit(account_id="A", trunk_id="T", call_id="3", limits=limits)
        assert end is not None and (end.code, end.name, end.sip_status) == (
            5190,
            "concurrent_call_limit_exceeded",
            503,
        )
        assert await admission.active_calls("A") == 2
        assert await admission.active_calls("B") == 0
        await admission.release("A", "1")
        assert (
            await admission.admit(account_id="A", trunk_id="T", call_id="3", limits=limits) is None
        )
        # Renewal keeps a long call counted past its first lease.
        clock.now += 50
        assert await admission.renew("A", "2")
        clock.now += 50
        assert await admission.active_calls("A") == 1  # "3" lapsed, "2" was renewed
        assert not await admission.renew("A", "3")

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_admission_without_limits_admits_everything(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        admission = CallAdmission(store, FakeTime())
        for n in range(50):
            end = await admission.admit(
                account_id="A", trunk_id="T", call_id=str(n), limits=CallLimits()
            )
            assert end is None
        assert await admission.active_calls("A") == 0

    run_with(kind, body)


@pytest.mark.parametrize("kind", STORES)
def test_concurrent_admissions_never_exceed_the_limits(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        clock = FakeTime()
        admission = CallAdmission(store, clock, clock.sleep)
        limits = CallLimits(trunk_cps=100, trunk_burst=30, max_concurrent=12)
        ends = await asyncio.gather(
            *(
                admission.admit(account_id="A", trunk_id="T", call_id=str(n), limits=limits)
                for n in range(60)
            )
        )
        codes = sorted(0 if end is None else end.code for end in ends)
        # 30 pass the trunk bucket; of those 12 get a call slot.
        assert codes == [0] * 12 + [5180] * 30 + [5190] * 18

    run_with(kind, body)


@redis_only
def test_two_edge_nodes_share_redis_counters() -> None:
    async def main() -> None:
        async with redis_client() as (_, prefix):
            url = _redis_url()
            node1, node2 = Redis.from_url(url), Redis.from_url(url)
            try:
                clock = FakeTime()
                a1 = CallAdmission(RedisLimitStore(node1, prefix), clock, clock.sleep)
                a2 = CallAdmission(RedisLimitStore(node2, prefix), clock, clock.sleep)
                limits = CallLimits(trunk_cps=50, trunk_burst=20, max_concurrent=7)
                ends = await asyncio.gather(
                    *(
                        (a1 if n % 2 else a2).admit(
                            account_id="A", trunk_id="T", call_id=f"c{n}", limits=limits
                        )
                        for n in range(40)
                    )
                )
                codes = sorted(0 if end is None else end.code for end in ends)
                assert codes == [0] * 7 + [5180] * 20 + [5190] * 13
                assert await a1.active_calls("A") == await a2.active_calls("A") == 7
                # Keys expire on their own: nothing is left in Redis forever.
                bucket = f"{prefix}cps:trunk:T"
                assert 0 < await node1.pttl(bucket) <= 1000 + 1000
                assert 0 < await node1.pttl(f"{prefix}calls:account:A") <= 3600 * 1000
            finally:
                await node1.aclose()
                await node2.aclose()

    asyncio.run(asyncio.wait_for(main(), timeout=30))


@pytest.mark.parametrize("kind", STORES)
def test_queue_wait_really_sleeps_on_the_real_clock(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        admission = CallAdmission(store)  # wall clock, asyncio.sleep
        limits = CallLimits(account_cps=20, account_queue_wait=0.3)
        started = time.monotonic()
        for n in range(3):
            assert (
                await admission.admit(account_id="A", trunk_id="T", call_id=str(n), limits=limits)
                is None
            )
        # Three calls at 20 per second: the third cannot start before 0.1 s have passed.
        assert time.monotonic() - started >= 0.09

    run_with(kind, body)


def test_bucket_and_limits_validation() -> None:
    for rate, burst, wait in [(0, 1, 0), (1, 0, 0), (1, 1, -1)]:
        with pytest.raises(ValueError):
            Bucket("k", rate, burst, wait)
    with pytest.raises(ValueError):
        asyncio.run(
            CallAdmission(MemoryLimitStore()).admit(
                account_id="A", trunk_id="T", call_id="1", limits=CallLimits(trunk_cps=0)
            )
        )


@pytest.mark.parametrize("kind", STORES)
def test_account_refusal_says_account_and_keeps_the_trunk_slot(kind: str) -> None:
    async def body(store: LimitStore) -> None:
        clock = FakeTime()
        admission = CallAdmission(store, clock, clock.sleep)
        limits = CallLimits(trunk_cps=1, trunk_burst=2, account_cps=1, account_queue_wait=0)
        first = await admission.admit(account_id="A", trunk_id="T", call_id="1", limits=limits)
        assert first is None
        second = await admission.admit(account_id="A", trunk_id="T", call_id="2", limits=limits)
        assert second is not None and second.code == 5180 and "account" in second.reason
        # The refused call used the trunk's second slot: the trunk is now empty too.
        third = await admission.admit(account_id="B", trunk_id="T", call_id="3", limits=limits)
        assert third is not None and "trunk" in third.reason

    run_with(kind, body)
