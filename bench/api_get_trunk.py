"""Benchmark: GET one trunk with HTTP Basic auth against a live `opentrunk serve`.

Starts the server (one worker) on a fresh data directory (SQLite), or on a fresh throw-away
database of the PostgreSQL server named by --database-url; creates an account, an IP ACL and
an outbound trunk; then, from separate processes:

1. wrk, closed loop (4 and 32 connections, 10 s): capacity, and the server's CPU per request;
2. the open-loop generator (bench/api_openloop.c: C, epoll, a timer per intended send time,
   latency from the intended send time) at fixed rates, 30 s each by default.

Each configuration runs with the SIP edge on (`opentrunk serve`, the default) and off
(`serve --no-edge`, an API-only worker), unless --edge says which.

Target (issue 2): >= 1,500 req/s with p99 < 20 ms at that rate. Prints figures, the load
average before and after each run, and the server's CPU per request (on PostgreSQL, the
database backends' CPU too); asserts nothing.

--priority runs the server and the generators in their own session with a raised
scheduling weight (autogroup nice -10, root only): on a machine that other work shares,
that measures what the server does when it gets its core, as on a quiet machine. Say so
when quoting such figures.

    .venv/bin/python bench/api_get_trunk.py
    .venv/bin/python bench/api_get_trunk.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/api_get_trunk.py --priority --edge off --rates 1500 --duration 10
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import httpx

from api_live import Account, LiveServer, server_on
from api_load import basic_header, open_loop, wrk

TARGET_RATE = 1500.0
TARGET_P99_MS = 20.0
PRIORITY_NICE = -10


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


def load_average() -> str:
    """Other work on the machine skews every figure; print it alongside them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread has spent ready to run but waiting for a core
    (/proc schedstat `run_delay`): the share of a latency tail that other work on the
    machine, not the server, caused."""
    fields = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(fields[1]) / 1e9


def database_backends(server: LiveServer) -> list[int]:
    """PostgreSQL: the pids of the server's backends for this database (same machine)."""
    if not server.database_url:
        return []
    import psycopg

    plain = server.database_url.replace("+psycopg", "")
    name = plain.rsplit("/", 1)[1]
    with psycopg.connect(plain, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def backends_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            continue
    return total


def run_configuration(args: argparse.Namespace, edge: bool) -> None:
    label = "SIP edge on (opentrunk serve)" if edge else "SIP edge off (opentrunk serve --no-edge)"
    print(f"\n== {label}; load average {load_average()}", flush=True)
    with server_on(args.database_url, serve_args=() if edge else ("--no-edge",)) as server:
        account = server.create_account("bench")
        trunk_id = make_trunk(server, account)
        url = f"{server.base_url}/v1/Account/{account.auth_id}/Zentrunk/Trunk/{trunk_id}/"
        auth = basic_header(*account.basic)
        print(f"GET {url.replace(server.base_url, '')}")
        if not args.skip_wrk:
            closed_loop(server, url, auth)
        open_loop(url, auth, 1000, duration_s=2.0)  # warm connections, caches, the backends
        backends = database_backends(server)
        for rate in args.rates:
            before = load_average()
            assert server.process is not None
            pid = server.process.pid
            cpu0, db0, wait0 = server.cpu_seconds(), backends_cpu(backends), runqueue_wait_s(pid)
            began = time.monotonic()
            result = open_loop(url, auth, rate, duration_s=args.duration)
            cpu, db = server.cpu_seconds() - cpu0, backends_cpu(backends) - db0
            waited = (runqueue_wait_s(pid) - wait0) / (time.monotonic() - began)
            answered = max(1, result.answered)
            costs = f"server CPU {1000 * cpu / answered:.3f} ms/request"
            if backends:
                costs += f", PostgreSQL backends {1000 * db / answered:.3f} ms/request"
            print(f"open loop {args.duration:.0f} s: {result.line()}")
            print(f"  {costs}; worst seconds {result.worst_seconds()}")
            print(f"  server ready but waiting for a core: {1000 * waited:.0f} ms per second")
            print(f"  load average before {before}, after {load_average()}", flush=True)
            if rate == TARGET_RATE:
                met = (
                    result.achieved_rate >= 0.97 * TARGET_RATE
                    and result.percentile_ms(99) < TARGET_P99_MS
                    and result.ok == result.expected
                )
                print(
                    f"  target >= {TARGET_RATE:.0f} req/s with p99 < {TARGET_P99_MS:.0f} ms: "
                    + ("met" if met else "MISSED")
                )


def closed_loop(server: LiveServer, url: str, auth: str) -> None:
    if wrk(url, auth, duration_s=2) is None:  # warm-up
        print("wrk: not installed (apt-get install -y wrk); closed loop skipped")
        return
    for connections in (4, 32):
        cpu_before, began = server.cpu_seconds(), time.monotonic()
        closed = wrk(url, auth, connections=connections, duration_s=10)
        assert closed is not None
        cpu = server.cpu_seconds() - cpu_before
        served = closed.requests_per_s * (time.monotonic() - began)
        spread = "  ".join(f"{k} {v:.2f} ms" for k, v in closed.latency_ms.items())
        print(
            f"wrk closed loop, {connections} connections, 10 s: "
            f"{closed.requests_per_s:.0f} req/s  {spread}  non-2xx {closed.non_2xx}"
        )
        # CPU per request is the figure least disturbed by other load on the machine:
        # 1000 / it is what one uncontended core could serve.
        print(
            f"  server CPU {1000 * cpu / served:.3f} ms/request"
            f" (one free core: ~{served / cpu:.0f} req/s)"
        )


def raise_priority() -> None:
    """Re-run in a new session (its own scheduler autogroup) weighted like nice -10."""
    if os.getsid(0) != os.getpid():
        os.execvp("setsid", ["setsid", "--wait", sys.executable, *sys.argv])
    Path("/proc/self/autogroup").write_text(str(PRIORITY_NICE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="", help="PostgreSQL server to use")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds at each rate")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[1000.0, 1500.0, 1750.0],
        help="comma-separated offered rates (req/s)",
    )
    parser.add_argument("--edge", choices=("on", "off", "both"), default="both")
    parser.add_argument("--skip-wrk", action="store_true")
    parser.add_argument("--priority", action="store_true", help="see the module docstring")
    args = parser.parse_args()
    if args.priority:
        raise_priority()

    store = "PostgreSQL (fresh database)" if args.database_url else "SQLite (fresh data dir)"
    py = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {py}")
    print(f"store: {store}; one server worker; load average {load_average()}")
    if args.priority:
        print(f"priority: own session, autogroup nice {PRIORITY_NICE} (server and generators)")
    for edge in {"on": (True,), "off": (False,), "both": (False, True)}[args.edge]:
        run_configuration(args, edge)
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
