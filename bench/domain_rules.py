"""Throughput of the per-call domain rules the SIP edge runs on every INVITE: outbound
screening, carrier selection, rating, and call admission (in memory and in Redis).

Prints calls per second for each; run with `.venv/bin/python bench/domain_rules.py`.
Redis figures need a Redis at OPENTRUNK_TEST_REDIS_URL or 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import uvloop
from redis.asyncio import Redis

from opentrunk.domain.billing import RateDeck
from opentrunk.domain.limits import CallAdmission, CallLimits, MemoryLimitStore, RedisLimitStore
from opentrunk.domain.policy import AccountPolicy, GeoPermissions, screen_outbound
from opentrunk.domain.routing import CarrierRoute, RoutingTable

UNLIMITED = CallLimits(
    trunk_cps=1e9, trunk_burst=10**6, account_cps=1e9, account_burst=10**6, max_concurrent=10**9
)


def report(label: str, count: int, elapsed: float) -> None:
    print(f"{label:<52} {count / elapsed:>10,.0f} /s  ({elapsed * 1e6 / count:8.1f} us each)")


def per_second(label: str, count: int, fn: Callable[[int], object]) -> None:
    started = time.perf_counter()
    for n in range(count):
        fn(n)
    report(label, count, time.perf_counter() - started)


def sync_rules() -> None:
    account = AccountPolicy(
        numbers=frozenset(f"+1415555{n:04d}" for n in range(10_000)),
        geo=GeoPermissions.only(["US", "GB", "FR"]),
        barred_prefixes=("1900", "4487", "33899"),
    )

    def screen(n: int) -> object:
        return screen_outbound(
            f"+1212555{n % 10_000:04d}", f"+1415555{n % 10_000:04d}", None, account
        )

    # First pass: every number new (parsed by libphonenumber); second: served from cache.
    per_second("screen_outbound, 10k distinct numbers", 10_000, screen)
    per_second("screen_outbound, repeated numbers", 50_000, screen)

    routes = [
        CarrierRoute(f"c{p}-{k}", str(p), priority=k % 3, weight=1 + k)
        for p in range(10, 100)
        for k in range(4)
    ]
    table = RoutingTable(routes)
    rng = random.Random(1)
    per_second(
        "plan_route, 360 routes, 4 carriers per prefix",
        50_000,
        lambda n: table.plan_route("+442079460000", rng),
    )
    deck = RateDeck((str(100_000 + n), Decimal("0.01")) for n in range(100_000))
    per_second(
        "RateDeck.rate_for, 100k prefixes", 200_000, lambda n: deck.rate_for("+1234567890123")
    )


async def admit_sequentially(label: str, admission: CallAdmission, count: int) -> None:
    started = time.perf_counter()
    for n in range(count):
        await admission.admit(account_id="A", trunk_id="T", call_id=f"s{n}", limits=UNLIMITED)
    report(label, count, time.perf_counter() - started)


async def admit_concurrently(label: str, admission: CallAdmission, count: int) -> None:
    async def worker(first: int) -> None:
        for n in range(first, count, 50):
            await admission.admit(account_id="A", trunk_id="T", call_id=f"c{n}", limits=UNLIMITED)

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(50)))
    report(label, count, time.perf_counter() - started)


async def async_rules() -> None:
    await admit_sequentially(
        "admit (3 checks), memory store", CallAdmission(MemoryLimitStore()), 50_000
    )
    url = os.environ.get("OPENTRUNK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = Redis.from_url(url, max_connections=64)
    prefix = f"opentrunk-bench:{uuid.uuid4().hex}:"
    try:
        await client.ping()
    except OSError as exc:
        print(f"redis: not reachable at {url} ({exc}); skipped")
        await client.aclose()
        return
    try:
        admission = CallAdmission(RedisLimitStore(client, prefix))
        await admit_sequentially("admit (3 checks), Redis, one at a time", admission, 5_000)
        await admit_concurrently("admit (3 checks), Redis, 50 in flight", admission, 10_000)
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    print(f"machine: {os.cpu_count()} cores; one process, uvloop for the async part")
    sync_rules()
    uvloop.run(async_rules())
