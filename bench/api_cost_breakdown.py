"""Benchmark: where the CPU of one `GET /Zentrunk/Trunk/{id}/` goes, in-process.

Drives the real FastAPI app (opentrunk.api.app.create_app on a fresh SQLite store) by
calling it as an ASGI callable, with no sockets and no HTTP parsing, and times pieces of the
request path with time.process_time, which counts only this process's own CPU: the figures
hold even when other work shares the machine, unlike req/s. Prints microseconds per call:

- the whole route (auth from cache, dependency solving, the store read, JSON);
- an unknown path (middleware, routing over every route, the 404 error body);
- the store read alone: services.trunks.read_trunk (what the route awaits: inline on the
  event loop with SQLite), services.trunks.get_trunk (the synchronous form, on a pooled
  connection), and the same row read with the bare sqlite3 driver.

    .venv/bin/python bench/api_cost_breakdown.py
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentrunk.api.app import create_app
from opentrunk.config import Settings
from opentrunk.services import trunks
from opentrunk.services.accounts import account_id_of, create_account
from opentrunk.services.ipacls import create_ipacl
from opentrunk.store.store import Store

ROUNDS = 3000


def per_call_us(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    for _ in range(200):
        fn()
    began = time.process_time()
    for _ in range(rounds):
        fn()
    return 1e6 * (time.process_time() - began) / rounds


async def per_request_us(app: Any, path: str, authorization: str) -> tuple[float, int]:
    headers = [(b"host", b"bench"), (b"authorization", authorization.encode())]
    statuses: list[int] = []

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)

    for _ in range(200):
        await one()
    began = time.process_time()
    for _ in range(ROUNDS):
        await one()
    return 1e6 * (time.process_time() - began) / ROUNDS, statuses[-1]


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="opentrunk-cost-")
    settings = Settings(data_dir=data_dir, api_rate_limit=0)
    store = Store.open(settings)
    created = create_account(store, "bench")
    auth_id, token = created["auth_id"], created["auth_token"]
    account_id = account_id_of(store, auth_id)
    acl = create_ipacl(store, account_id, ["198.51.100.7"], None)
    trunk_id = trunks.create_trunk(
        store, account_id, {"trunk_direction": "outbound", "ipacl_uuid": acl}
    )
    app = create_app(settings, store)
    authorization = "Basic " + base64.b64encode(f"{auth_id}:{token}".encode()).decode()
    path = f"/v1/Account/{auth_id}/Zentrunk/Trunk/{trunk_id}/"

    route_us, status = asyncio.run(per_request_us(app, path, authorization))
    print(f"GET one trunk through the ASGI app (status {status}): {route_us:7.1f} us CPU")
    miss_us, status = asyncio.run(per_request_us(app, "/no/such/path/", authorization))
    print(f"unknown path, middleware + routing (status {status}): {miss_us:7.1f} us CPU")
    loop = asyncio.new_event_loop()
    svc_us = per_call_us(
        lambda: loop.run_until_complete(trunks.read_trunk(store, account_id, trunk_id))
    )
    print(f"services.trunks.read_trunk alone (with a loop turn): {svc_us:7.1f} us CPU")
    sync_us = per_call_us(lambda: trunks.get_trunk(store, account_id, trunk_id))
    print(f"services.trunks.get_trunk (pooled connection):     {sync_us:7.1f} us CPU")
    loop.close()
    raw = sqlite3.connect(Path(data_dir) / "opentrunk.db")
    sql = "SELECT * FROM trunks WHERE trunk_id = ? AND account_id = ?"
    raw_us = per_call_us(lambda: raw.execute(sql, (trunk_id, account_id)).fetchone())
    print(f"the same row with the bare sqlite3 driver:         {raw_us:7.1f} us CPU")
    print(
        f"=> the route {route_us:.0f} us of which the store read {svc_us:.0f} us;"
        f" one core's ceiling ~{1e6 / route_us:.0f} req/s before HTTP parsing"
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(load average {load} on {os.cpu_count()} cores while measuring)")
    store.close()
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
