"""Two edge nodes on one PostgreSQL database and one Redis, end to end (real
`opentrunk serve` processes, sipp as PBX and carriers): each node has a call up, node b
is SIGKILLed and restarted under the same node id. Its restart closes its own record
(5250) and gives back its concurrent-call slot, and leaves node a's live call alone
(record open, slot held). Then node a dies for good and `opentrunk calls recover --node`
closes its record and frees its slot.

Needs PostgreSQL (OPENTRUNK_TEST_DATABASE_URL) and Redis (OPENTRUNK_TEST_REDIS_URL): a
node id only matters with several nodes on one database. Skipped without them, except
under CI.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import Engine, text

from e2e import scenarios
from e2e.harness import (
    OPENTRUNK,
    Account,
    Api,
    EdgeProcess,
    Sipp,
    carrier_args,
    pbx_args,
    sipp_binary,
    unique_number,
    wait_udp,
)
from opentrunk.store.db import make_engine
from opentrunk.store.migrate import upgrade

pytestmark = pytest.mark.sipp

PG_URL = os.environ.get("OPENTRUNK_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("OPENTRUNK_TEST_REDIS_URL", "")
if not (PG_URL and REDIS_URL) and not os.environ.get("CI"):
    pytest.skip(
        "needs OPENTRUNK_TEST_DATABASE_URL and OPENTRUNK_TEST_REDIS_URL", allow_module_level=True
    )
# The edge's own Redis key prefix (domain/limits.py RedisLimitStore).
PREFIX = "opentrunk:limits:"


@dataclass
class Cluster:
    """What the nodes share: a fresh PostgreSQL schema, Redis, a data directory (the
    secret key every node needs to read the others' secrets)."""

    database_url: str
    engine: Engine
    data_dir: Path
    redis: Redis

    def env(self, node: str) -> dict[str, str]:
        return {
            "OPENTRUNK_DATABASE_URL": self.database_url,
            "OPENTRUNK_REDIS_URL": REDIS_URL,
            "OPENTRUNK_NODE_ID": node,
        }

    def node(self, node: str) -> EdgeProcess:
        edge = EdgeProcess(self.data_dir, env=self.env(node))
        edge.start()
        return edge

    def record(self, destination: str) -> dict[str, object]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM call_records WHERE to_number = :n"), {"n": destination}
            ).one()
        return dict(row._mapping)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    sipp_binary()
    schema = "t_" + uuid.uuid4().hex[:16]
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    redis = Redis.from_url(REDIS_URL)
    try:
        upgrade(engine)
        # Account ids far from those of other runs sharing this Redis (keys name them).
        with engine.begin() as conn:
            start = random.randrange(10**8, 2 * 10**9)
            conn.execute(text(f"ALTER SEQUENCE accounts_id_seq RESTART WITH {start}"))
        yield Cluster(url, engine, tmp_path / "shared-data", redis)
    finally:
        redis.close()
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def long_pbx_call(domain: str, caller: str) -> str:
    """A PBX call that stays up (waiting for a BYE) for a minute, not the usual 10 s:
    long enough for a node to be killed and restarted meanwhile."""
    xml = scenarios.pbx_call(domain, caller, carrier_hangs_up=True)
    assert 'timeout="10000"' in xml
    return xml.replace('timeout="10000"', 'timeout="60000"')


def wait_open(cluster: Cluster, destination: str, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            row = cluster.record(destination)
            if row["state"] == "open" and row["answer_time"] is not None:
                return row
        except Exception:  # not written yet
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"no answered open record to {destination}")
        time.sleep(0.05)


def start_call(
    edge: EdgeProcess, api: Api, account: Account, domain: str, work: Path, sipps: list[Sipp]
) -> str:
    """A call through `edge` that its carrier answers and nobody ends; its sipps are
    added to `sipps` (killed by the test)."""
    work.mkdir()
    destination = unique_number()
    # Both sipps outlive the test's restarts (their usual global timeout is 15 s).
    carrier = Sipp(scenarios.carrier_answer(), carrier_args(timeout=120), work, "carrier")
    sipps.append(carrier.start())
    wait_udp(carrier.port)
    api.carrier(carrier.port, destination)
    pbx = Sipp(
        long_pbx_call(domain, account.caller), pbx_args(edge, destination, timeout=120), work, "pbx"
    )
    sipps.append(pbx.start())
    return destination


def account_id(cluster: Cluster, auth_id: str) -> int:
    with cluster.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT id FROM accounts WHERE auth_id = :a"), {"a": auth_id}
            ).scalar_one()
        )


def assert_recovered(row: dict[str, object], node: str) -> None:
    assert row["state"] == "closed" and row["node"] == node, row
    assert (row["hangup_cause_code"], row["hangup_source"]) == (5250, "zentrunk"), row
    assert row["call_duration"] == 0 and row["total_amount"] == "0.00000", row


def test_restart_of_one_node_leaves_the_other_nodes_calls(cluster: Cluster, workdir: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    node_a, node_b = f"a-{tag}", f"b-{tag}"
    edge_a = cluster.node(node_a)
    edge_b = cluster.node(node_b)
    sipps: list[Sipp] = []
    try:
        api = Api(edge_a.http_port)
        account = api.account(max_calls=2)
        domain = account.trunk(acl=["127.0.0.1/32"])
        calls_key = f"{PREFIX}calls:account:{account_id(cluster, account.auth_id)}"
        on_a = start_call(edge_a, api, account, domain, workdir / "a", sipps)
        on_b = start_call(edge_b, api, account, domain, workdir / "b", sipps)
        assert wait_open(cluster, on_a)["node"] == node_a
        assert wait_open(cluster, on_b)["node"] == node_b
        assert cluster.redis.zcard(calls_key) == 2

        edge_b.kill()  # SIGKILL: no BYE, no record closed, no slot given back
        assert cluster.record(on_b)["state"] == "open"
        assert cluster.redis.zcard(calls_key) == 2
        restarted_b = cluster.node(node_b)
        try:
            assert_recovered(cluster.record(on_b), node_b)
            # Node a's call is still up: its record open, its slot held.
            row_a = cluster.record(on_a)
            assert row_a["state"] == "open" and row_a["end_time"] is None, row_a
            assert cluster.redis.zcard(calls_key) == 1
            assert "closed call records left open by a previous run" in restarted_b.output()
        finally:
            restarted_b.stop()
        api.close()

        edge_a.kill()  # gone for good
        result = subprocess.run(
            [OPENTRUNK, "calls", "recover", "--node", node_a, "--json"],
            env={**os.environ, **cluster.env(node_a)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(result.stdout) == {
            "node": node_a,
            "records_closed": 1,
            "slots_released": 1,
        }
        assert_recovered(cluster.record(on_a), node_a)
        assert cluster.redis.zcard(calls_key) == 0
        assert not cluster.redis.exists(f"{PREFIX}node:{node_a}:slots")
    finally:
        for run in sipps:
            run.kill()
        edge_a.kill()
        edge_b.kill()
