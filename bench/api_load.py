"""HTTP load for the API benchmarks: an open-loop generator at a fixed rate (asyncio +
uvloop, raw keep-alive connections) and a wrapper around `wrk` for closed-loop capacity.

Open loop means each request has an intended send time `t0 + i / rate`, and its latency is
measured from that time, not from when a connection became free: a server that stalls is
charged for the queue it builds (no coordinated omission, which a closed-loop tool such as
wrk suffers from). That is the figure to quote as "p99 at N req/s".
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def percentile_ms(latencies_s: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of latencies in seconds, in milliseconds."""
    if not latencies_s:
        return float("nan")
    ordered = sorted(latencies_s)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


@dataclass
class LoadResult:
    offered_rate: float
    sent: int
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile_ms(self.latencies_s, p)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def line(self) -> str:
        other = {k: v for k, v in self.statuses.items() if k != 200}
        return (
            f"offered {self.offered_rate:7.0f} req/s  achieved {self.achieved_rate:7.0f} req/s  "
            f"p50 {self.percentile_ms(50):7.2f} ms  p99 {self.percentile_ms(99):7.2f} ms  "
            f"max {self.percentile_ms(100):7.2f} ms  ok {self.ok}/{self.sent}"
            + (f"  other {dict(other)}" if other else "")
            + (f"  errors {self.errors}" if self.errors else "")
        )


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _request_bytes(url: str, authorization: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    raw = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {authorization}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    return host, port, raw


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if match:
        await reader.readexactly(int(match.group(1)))
    return status


async def _open_loop(
    url: str, authorization: str, rate: float, duration_s: float, connections: int
) -> LoadResult:
    host, port, raw = _request_bytes(url, authorization)
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(host, port))
    total = int(rate * duration_s)
    result = LoadResult(offered_rate=rate, sent=total)
    start = loop.time() + 0.05

    async def one(intended: float) -> None:
        reader, writer = await idle.get()
        try:
            writer.write(raw)
            status = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            writer.close()
            idle.put_nowait(await asyncio.open_connection(host, port))
            return
        result.latencies_s.append(loop.time() - intended)
        result.statuses[status] += 1
        idle.put_nowait((reader, writer))

    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        # A server that fell far behind would keep us here for its whole backlog; what is
        # still queued after this grace period is counted as not answered.
        await asyncio.wait(tasks, timeout=duration_s + 10)
    result.elapsed_s = loop.time() - start
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()
    return result


def open_loop(
    url: str,
    authorization: str,
    rate: float,
    duration_s: float = 5.0,
    connections: int = 64,
) -> LoadResult:
    """Send GET `url` at `rate` requests/s for `duration_s`; latency from intended send time."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a project dependency
        runner = asyncio.run
    return runner(_open_loop(url, authorization, rate, duration_s, connections))


def find_sustained_rate(
    url: str,
    authorization: str,
    *,
    start: float = 500,
    step: float = 250,
    ceiling: float = 10_000,
    p99_limit_ms: float = 20.0,
    step_s: float = 5.0,
) -> tuple[LoadResult | None, list[LoadResult]]:
    """Raise the offered rate step by step until the server falls behind (achieved < 97% of
    offered, any non-200, or p99 over the limit); return the last step that held, and all."""
    held: LoadResult | None = None
    steps: list[LoadResult] = []
    rate = start
    while rate <= ceiling:
        open_loop(url, authorization, rate, duration_s=1.0)  # warm connections and caches
        res = open_loop(url, authorization, rate, duration_s=step_s)
        steps.append(res)
        print("  " + res.line(), flush=True)
        if (
            res.achieved_rate < 0.97 * rate
            or res.ok != res.sent
            or res.percentile_ms(99) > p99_limit_ms
        ):
            break
        held = res
        rate += step
    return held, steps


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
