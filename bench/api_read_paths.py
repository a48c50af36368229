"""Benchmark: CPU per one-trunk read along each path the API could take to the store.

In-process, no HTTP: a fresh SQLite store (or a throw-away schema on the PostgreSQL server
named by --database-url) with one trunk, then microseconds of this process's CPU
(time.process_time, so other load on the machine matters less) per read for:

- the bare driver (sqlite3 / psycopg, autocommit), the floor;
- services.trunks.get_trunk, the synchronous form (a pooled connection);
- services.trunks.read_trunk, what the GET route awaits (SQLite: inline on the loop;
  PostgreSQL: psycopg async connections of the loop), one at a time and 32 at once;
- get_trunk through Starlette's threadpool (run_in_threadpool), 32 at once: the path the
  route took before, kept for comparison.

    .venv/bin/python bench/api_read_paths.py
    .venv/bin/python bench/api_read_paths.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from opentrunk.config import Settings
from opentrunk.services import trunks
from opentrunk.services.accounts import account_id_of, create_account
from opentrunk.services.ipacls import create_ipacl
from opentrunk.store.db import make_engine
from opentrunk.store.store import Store

ROUNDS = 2000
CONCURRENT = 32


@contextmanager
def fresh_store(database_url: str) -> Iterator[Store]:
    data_dir = tempfile.mkdtemp(prefix="opentrunk-reads-")
    try:
        with _store_in(data_dir, database_url) as store:
            yield store
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def _store_in(data_dir: str, database_url: str) -> Iterator[Store]:
    if not database_url:
        store = Store.open(Settings(data_dir=data_dir))
        try:
            yield store
        finally:
            store.close()
        return
    schema = "bench_" + uuid.uuid4().hex[:12]
    admin = make_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        store = Store.open(Settings(data_dir=data_dir, database_url=database_url), schema=schema)
        try:
            yield store
        finally:
            store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def cpu_us(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    for _ in range(100):
        fn()
    began = time.process_time()
    for _ in range(rounds):
        fn()
    return 1e6 * (time.process_time() - began) / rounds


def cpu_us_async(make: Callable[[], Awaitable[Any]], concurrent: int) -> float:
    async def run() -> float:
        for _ in range(50):
            await make()
        batches = max(1, ROUNDS // concurrent)
        began = time.process_time()
        for _ in range(batches):
            await asyncio.gather(*(make() for _ in range(concurrent)))
        return 1e6 * (time.process_time() - began) / (batches * concurrent)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="", help="PostgreSQL server to use")
    args = parser.parse_args()
    with fresh_store(args.database_url) as store:
        created = create_account(store, "bench")
        account_id = account_id_of(store, created["auth_id"])
        acl = create_ipacl(store, account_id, ["198.51.100.7"], None)
        trunk_id = trunks.create_trunk(
            store, account_id, {"trunk_direction": "outbound", "ipacl_uuid": acl}
        )
        print(f"store: {store.engine.dialect.name}; CPU of this process per read")
        raw = store.engine.raw_connection()
        driver: Any = raw.driver_connection
        if store.engine.dialect.name == "sqlite":
            sql = "SELECT * FROM trunks WHERE trunk_id = ? AND account_id = ?"
        else:
            driver.autocommit = True
            sql = "SELECT * FROM trunks WHERE trunk_id = %s AND account_id = %s"
        cursor = driver.cursor()

        def bare() -> Any:
            cursor.execute(sql, (trunk_id, account_id))
            return cursor.fetchone()

        print(f"  bare driver:                                {cpu_us(bare):7.1f} us")
        cursor.close()
        if store.engine.dialect.name != "sqlite":
            driver.autocommit = False
        raw.close()
        sync_us = cpu_us(lambda: trunks.get_trunk(store, account_id, trunk_id))
        print(f"  get_trunk (sync, pooled connection):        {sync_us:7.1f} us")
        for n in (1, CONCURRENT):
            us = cpu_us_async(lambda: trunks.read_trunk(store, account_id, trunk_id), n)
            print(f"  read_trunk (the route's path), {n:2d} at once:  {us:7.1f} us")
        pooled = cpu_us_async(
            lambda: run_in_threadpool(trunks.get_trunk, store, account_id, trunk_id), CONCURRENT
        )
        print(f"  get_trunk in Starlette's threadpool, {CONCURRENT} at once: {pooled:7.1f} us")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(load average {load} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
