"""Benchmark: GET one trunk with HTTP Basic auth against a live `opentrunk serve`.

Starts the server (one worker) on a fresh data directory (SQLite), or on a fresh throw-away
database of the PostgreSQL server named by --database-url; creates an account, an IP ACL and
an outbound trunk; then, from this separate process:

1. wrk, closed loop (32 connections, 10 s): the capacity and wrk's own latency spread;
2. the open-loop generator (bench/api_load.py) stepping the offered rate up until the server
   falls behind or p99 passes 20 ms: the sustained rate and its p50/p99;
3. the open-loop generator at exactly the target rate (1,500 req/s) for 10 s.

Targets: >= 1,500 req/s sustained, p99 < 20 ms at that rate. Prints figures; asserts nothing.

    .venv/bin/python bench/api_get_trunk.py
    .venv/bin/python bench/api_get_trunk.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import httpx

from api_live import Account, LiveServer, server_on
from api_load import basic_header, find_sustained_rate, open_loop, wrk

TARGET_RATE = 1500.0
TARGET_P99_MS = 20.0


def make_trunk(server: LiveServer, account: Account) -> str:
    base = f"{server.base_url}/v1/Account/{account.auth_id}/Zentrunk"
    with httpx.Client(auth=account.basic, timeout=10) as http:
        acl = http.post(f"{base}/IPAccessControlList/", json={"ip_addresses": ["198.51.100.7"]})
        acl.raise_for_status()
        trunk = http.post(
            f"{base}/Trunk/",
            json={"trunk_direction": "outbound", "ipacl_uuid": acl.json()["ipacl_uuid"]},
        )
        trunk.raise_for_status()
        trunk_id = str(trunk.json()["trunk_id"])
        http.get(f"{base}/Trunk/{trunk_id}/").raise_for_status()
    return trunk_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="", help="PostgreSQL server to use")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds at the target")
    parser.add_argument("--skip-wrk", action="store_true")
    args = parser.parse_args()

    store = "PostgreSQL (fresh database)" if args.database_url else "SQLite (fresh data dir)"
    py = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {py}")
    print(f"store: {store}; one server worker; load average {load_average()}")
    with server_on(args.database_url) as server:
        account = server.create_account("bench")
        trunk_id = make_trunk(server, account)
        url = f"{server.base_url}/v1/Account/{account.auth_id}/Zentrunk/Trunk/{trunk_id}/"
        auth = basic_header(*account.basic)
        print(f"GET {url.replace(server.base_url, '')}")

        if not args.skip_wrk:
            wrk(url, auth, duration_s=2)  # warm-up
            for connections in (4, 32):
                cpu_before, began = server.cpu_seconds(), time.monotonic()
                closed = wrk(url, auth, connections=connections, duration_s=10)
                if closed is None:
                    print("wrk: not installed (apt-get install -y wrk); skipped")
                    break
                cpu = server.cpu_seconds() - cpu_before
                served = closed.requests_per_s * (time.monotonic() - began)
                spread = "  ".join(f"{k} {v:.2f} ms" for k, v in closed.latency_ms.items())
                print(
                    f"wrk closed loop, {connections} connections, 10 s: "
                    f"{closed.requests_per_s:.0f} req/s  {spread}  non-2xx {closed.non_2xx}"
                )
                # CPU per request is the figure least disturbed by other load on the
                # machine: 1000 / it is what one uncontended core could serve.
                print(
                    f"  server CPU {1000 * cpu / served:.2f} ms/request"
                    f" (one free core: ~{served / cpu:.0f} req/s)"
                )

        print(f"open loop, stepping the rate (5 s a step) until p99 > {TARGET_P99_MS} ms:")
        held, _ = find_sustained_rate(url, auth, p99_limit_ms=TARGET_P99_MS)
        if held is None:
            print("sustained: none of the steps held")
        else:
            print(
                f"sustained: {held.achieved_rate:.0f} req/s with p50 {held.percentile_ms(50):.2f}"
                f" ms, p99 {held.percentile_ms(99):.2f} ms"
            )

        open_loop(url, auth, TARGET_RATE, duration_s=1.0)
        at_target = open_loop(url, auth, TARGET_RATE, duration_s=args.duration)
        print(f"at target, {args.duration:.0f} s: {at_target.line()}")
        verdict = (
            at_target.achieved_rate >= 0.97 * TARGET_RATE
            and at_target.percentile_ms(99) < TARGET_P99_MS
            and at_target.ok == at_target.sent
        )
        print(
            f"target >= {TARGET_RATE:.0f} req/s with p99 < {TARGET_P99_MS:.0f} ms: "
            + ("met" if verdict else "MISSED")
        )
    print(f"load average at the end: {load_average()}")


def load_average() -> str:
    """Other work on the machine skews every figure above; print it alongside them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
