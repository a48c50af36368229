"""Concurrent-call slots of an edge node that dies with calls up, on the real Redis
(OPENTRUNK_TEST_REDIS_URL; skipped without a Redis at 127.0.0.1:6379 outside CI): the
slots stay held (leases last an hour) until the node's restart or `calls recover --node`
gives back exactly that node's share, through the per-node index the store keeps."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from domain.test_limits import FakeTime, redis_client, redis_only
from opentrunk.domain.limits import CallAdmission, CallLimits, MemoryLimitStore, RedisLimitStore

LIMITS = CallLimits(max_concurrent=2)
NODE_A, NODE_B = "edge-a:5060", "edge-b:5060"


def run(body: Callable[[Redis, str], Awaitable[None]]) -> None:
    async def main() -> None:
        async with redis_client() as (client, prefix):
            await body(client, prefix)

    asyncio.run(asyncio.wait_for(main(), timeout=30))


async def _admit(admission: CallAdmission, call_id: str) -> int:
    end = await admission.admit(account_id="A", trunk_id="T", call_id=call_id, limits=LIMITS)
    return 0 if end is None else end.code


@redis_only
def test_a_dead_nodes_slots_are_given_back_by_its_restart() -> None:
    async def body(client: Redis, prefix: str) -> None:
        clock = FakeTime()
        node_a = CallAdmission(RedisLimitStore(client, prefix, node=NODE_A), clock, clock.sleep)
        node_b = CallAdmission(RedisLimitStore(client, prefix, node=NODE_B), clock, clock.sleep)
        assert await _admit(node_a, "call-on-a") == 0
        assert await _admit(node_b, "call-on-b") == 0
        # Node b dies with its call up: nobody releases its slot; the account is full.
        assert await _admit(node_a, "refused") == 5190
        clock.now += 1800  # half a lease later it still counts
        assert await node_a.active_calls("A") == 2

        restarted_b = CallAdmission(
            RedisLimitStore(client, prefix, node=NODE_B), clock, clock.sleep
        )
        assert await restarted_b.release_node(NODE_B) == 1
        assert await restarted_b.release_node(NODE_B) == 0  # the index went with it
        assert await node_a.active_calls("A") == 1
        assert await _admit(restarted_b, "after-restart") == 0
        assert await _admit(node_a, "still-full") == 5190
        # Node a's call was never touched: it ends normally and its index empties.
        await node_a.release("A", "call-on-a")
        assert await client.zcard(f"{prefix}node:{NODE_A}:slots") == 0
        assert await node_a.active_calls("A") == 1

    run(body)


@redis_only
def test_the_node_index_follows_renewals_and_expires_with_the_last_lease() -> None:
    async def body(client: Redis, prefix: str) -> None:
        clock = FakeTime()
        admission = CallAdmission(
            RedisLimitStore(client, prefix, node=NODE_A), clock, clock.sleep, lease=60.0
        )
        index = f"{prefix}node:{NODE_A}:slots"
        assert await _admit(admission, "c1") == 0
        assert 0 < await client.pttl(index) <= 60_000
        first = await client.zscore(index, "calls:account:A\nc1")
        assert first is not None
        clock.now += 30
        assert await admission.renew("A", "c1")
        assert await client.zscore(index, "calls:account:A\nc1") == first + 30_000_000
        # A slot held through acquire_slot (not admit) is indexed too.
        store = RedisLimitStore(client, prefix, node=NODE_A)
        assert await store.acquire_slot("calls:account:B", "c2", 5, clock.now, 60.0)
        assert await client.zcard(index) == 2
        assert await admission.release_node(NODE_A) == 2
        assert await store.slots_in_use("calls:account:B", clock.now) == 0
        assert not await client.exists(index)

    run(body)


@redis_only
def test_a_store_without_a_node_keeps_no_index() -> None:
    async def body(client: Redis, prefix: str) -> None:
        clock = FakeTime()
        admission = CallAdmission(RedisLimitStore(client, prefix), clock, clock.sleep)
        assert await _admit(admission, "c1") == 0
        keys = [key async for key in client.scan_iter(match=prefix + "node:*")]
        assert keys == []
        await admission.release("A", "c1")
        assert await admission.active_calls("A") == 0

    run(body)


@pytest.mark.parametrize("node", [NODE_A, ""])
def test_memory_store_has_no_node_share(node: str) -> None:
    async def body() -> None:
        store = MemoryLimitStore()
        assert await store.acquire_slot("calls:account:A", "c1", 1, 0.0, 60.0)
        assert await store.release_node_slots(node) == 0
        assert await store.slots_in_use("calls:account:A", 0.0) == 1

    asyncio.run(body())


def test_redis_out_of_reach_at_start_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def body() -> int:
        client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        try:
            admission = CallAdmission(RedisLimitStore(client, node=NODE_A))
            return await admission.release_node(NODE_A)
        finally:
            await client.aclose()

    with caplog.at_level(logging.WARNING, logger="opentrunk.domain.limits"):
        assert asyncio.run(body()) == 0
    assert "could not give back the slots" in caplog.text
