"""Benchmark: list call records with two filters over a large table.

Starts a live `opentrunk serve` (SQLite fresh data dir, or a fresh throw-away database on the
PostgreSQL server named by --database-url), creates the measured account and a neighbour
account through the CLI, then seeds call records in bulk through the store's own path
(`opentrunk.services.calls.insert_call_records`, one executemany per batch): --records for
the measured account, a fifth of that for the neighbour. Records end over the last 120
days, so the API's 30-day default window and 90-day horizon both matter.

Then it times sequential requests (one keep-alive connection) of

    GET /v1/Account/{auth_id}/Zentrunk/Call/?to_number=...&call_direction=outbound

for an exact number and for a short prefix, prints p50/p95/max, and prints the database's
plan (SQLite EXPLAIN QUERY PLAN / PostgreSQL EXPLAIN ANALYZE) of the two statements the
route runs, so the index in use is visible. Asserts nothing.

    .venv/bin/python bench/api_list_calls.py
    .venv/bin/python bench/api_list_calls.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine, select, text

from api_live import Account, LiveServer, server_on
from api_load import basic_header, percentile_ms, timed_gets
from opentrunk.services.calls import insert_call_records
from opentrunk.store.db import is_sqlite, make_engine
from opentrunk.store.models import accounts

TO_NUMBERS = 2000  # distinct destinations: ~500 records each per million
Record = dict[str, object]
BATCH = 20_000  # records per executemany (one transaction each)
CAUSES = [(4000, "NORMAL_CLEARING", "customer"), (4010, "END_OF_XML_INSTRUCTIONS", "carrier")]


def call_records_for(account_id: int, count: int, now: datetime, seed: int) -> Iterator[Record]:
    rnd = random.Random(seed)
    horizon_s = 120 * 86400
    for _ in range(count):
        end = now - timedelta(seconds=rnd.randrange(horizon_s))
        duration = rnd.randrange(0, 600)
        code, name, source = rnd.choice(CAUSES)
        yield {
            "call_uuid": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "account_id": account_id,
            "trunk_id": "12345678901234",
            "from_number": f"1415555{rnd.randrange(10000):04d}",
            "to_number": f"1212{rnd.randrange(TO_NUMBERS):07d}",
            "call_direction": "outbound" if rnd.random() < 0.7 else "inbound",
            "call_duration": duration,
            "bill_duration": -(-duration // 60) * 60,
            "initiation_time": end - timedelta(seconds=duration + 5),
            "answer_time": end - timedelta(seconds=duration) if duration else None,
            "end_time": end,
            "hangup_cause_name": name,
            "hangup_cause_code": code,
            "hangup_source": source,
            "total_rate": "0.00500",
            "total_amount": f"{0.005 * -(-duration // 60):.5f}",
            "trunk_domain": "12345678901234.zt.localhost",
            "from_country": "US",
            "to_country": "US",
        }


def account_id_of(engine: Engine, auth_id: str) -> int:
    with engine.connect() as conn:
        query = select(accounts.c.id).where(accounts.c.auth_id == auth_id)
        return int(conn.execute(query).scalar_one())


def seed(engine: Engine, mine: Account, other: Account, records: int) -> None:
    """Bulk-load through the store's own path (services.calls.insert_call_records, an
    executemany per batch), the measured account's records and a fifth as many for a
    neighbour, so the account_id column has to be used to tell them apart."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    began = time.perf_counter()
    total = 0
    plan = ((mine.auth_id, records, 1), (other.auth_id, records // 5, 2))
    for auth_id, count, rnd_seed in plan:
        stream = call_records_for(account_id_of(engine, auth_id), count, now, rnd_seed)
        while batch := list(itertools.islice(stream, BATCH)):
            total += insert_call_records(engine, batch)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    took = time.perf_counter() - began
    print(f"seeded {total:,} call records in {took:.1f} s ({total / took:,.0f} rows/s)")


def print_plan(engine: Engine, account_id: int, to_number: str) -> None:
    """The plan of the two statements services.calls.list_calls runs for this request (the
    count for meta.total_count, then one page), written out with the same conditions."""
    now = datetime.now(UTC).replace(tzinfo=None)
    where = (
        "account_id = :a AND state = 'closed' AND to_number >= :lo AND to_number < :hi"
        " AND call_direction = :d AND end_time >= :horizon AND end_time >= :window"
    )
    params = {
        "a": account_id,
        "lo": to_number,
        "hi": to_number + ":",
        "d": "outbound",
        "horizon": now - timedelta(days=90),
        "window": now - timedelta(days=30),
    }
    statements = {
        "count": f"SELECT count(*) FROM call_records WHERE {where}",
        # services.calls.list_calls reads a page as a deferred join: the keys first.
        "page": "SELECT * FROM call_records WHERE call_uuid IN (SELECT call_uuid FROM"
        f" call_records WHERE {where} ORDER BY end_time DESC, call_uuid DESC LIMIT 20 OFFSET 0)"
        " ORDER BY end_time DESC, call_uuid DESC",
    }
    with engine.connect() as conn:
        for label, sql in statements.items():
            if is_sqlite(engine):
                plan = conn.execute(text("EXPLAIN QUERY PLAN " + sql), params).all()
                lines = [str(r[-1]) for r in plan]
            else:
                plan = conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + sql), params).all()
                lines = [str(r[0]) for r in plan]
            print(f"  plan ({label}):")
            for line in lines:
                print(f"    {line}")


def measure(server: LiveServer, account: Account, to_number: str, requests: int) -> None:
    url = (
        f"{server.base_url}/v1/Account/{account.auth_id}/Zentrunk/Call/"
        f"?to_number={to_number}&call_direction=outbound"
    )
    auth = basic_header(*account.basic)
    first = httpx.get(url, headers={"Authorization": auth}, timeout=60)
    first.raise_for_status()
    total = first.json()["meta"]["total_count"]
    timed_gets(url, auth, 10)  # warm
    lat = timed_gets(url, auth, requests)
    p50, p95, top = (percentile_ms(lat, p) for p in (50, 95, 100))
    print(
        f"to_number={to_number}&call_direction=outbound: total_count {total:,}; "
        f"{requests} requests p50 {p50:.2f} ms  p95 {p95:.2f} ms  max {top:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="", help="PostgreSQL server to use")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    store = "PostgreSQL (fresh database)" if args.database_url else "SQLite (fresh data dir)"
    py = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {py}; store: {store}")
    with server_on(args.database_url) as server:
        mine = server.create_account("bench-calls")
        other = server.create_account("bench-neighbour")
        engine = make_engine(server.store_url)
        try:
            seed(engine, mine, other, args.records)
            account_id = account_id_of(engine, mine.auth_id)
            # A full number (1/2000 of the destinations), a prefix covering 1/20 of them,
            # and a prefix every record matches (the worst case for the count).
            cases = (
                ("12120000042", args.requests),
                ("121200000", args.requests),
                ("1212", max(10, args.requests // 15)),
            )
            for to_number, requests in cases:
                measure(server, mine, to_number, requests)
                print_plan(engine, account_id, to_number)
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
