"""HTTP load for the API benchmarks: the open-loop generator at a fixed rate
(bench/api_openloop.c, through api_openloop.py) and a wrapper around `wrk` for closed-loop
capacity.

Open loop means each request has an intended send time `t0 + i / rate`, and its latency is
measured from that time, not from when a connection became free: a server that stalls is
charged for the queue it builds (no coordinated omission, which a closed-loop tool such as
wrk suffers from). That is the figure to quote as "p99 at N req/s".
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from api_openloop import OpenLoopResult, open_loop

__all__ = ["OpenLoopResult", "basic_header", "open_loop", "wrk"]


def percentile_ms(latencies_s: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of latencies in seconds, in milliseconds."""
    if not latencies_s:
        return float("nan")
    ordered = sorted(latencies_s)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class WrkResult:
    requests_per_s: float
    latency_ms: dict[str, float]
    non_2xx: int
    raw: str


def _ms(value: str) -> float:
    number = float(re.sub(r"[a-z]+$", "", value))
    if value.endswith("us"):
        return number / 1000
    if value.endswith("ms"):
        return number
    if value.endswith("m"):
        return number * 60_000
    return number * 1000  # seconds


def wrk(
    url: str, authorization: str, connections: int = 32, duration_s: int = 10, threads: int = 1
) -> WrkResult | None:
    """Closed-loop capacity with wrk (Debian package `wrk`); None when wrk is missing."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    done = subprocess.run(
        [
            exe,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--latency",
            "-H",
            f"Authorization: {authorization}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=False,
    )
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    latency = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", out, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return WrkResult(
        requests_per_s=float(rps.group(1)) if rps else 0.0,
        latency_ms={f"p{k}": _ms(v) for k, v in latency.items()},
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        raw=out + done.stderr,
    )


def timed_gets(url: str, authorization: str, count: int) -> list[float]:
    """`count` sequential GETs on one keep-alive connection; their latencies in seconds."""
    import httpx

    latencies: list[float] = []
    with httpx.Client(headers={"Authorization": authorization}, timeout=30) as client:
        for _ in range(count):
            began = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
    return latencies
