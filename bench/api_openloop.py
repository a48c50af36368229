"""The open-loop load generator (bench/api_openloop.c): compiled on first use with the
machine's C compiler, run as a child process, its `key value` report parsed.

Why not Python: the earlier asyncio + uvloop generator shared the second core with the
server, and its clock was uvloop's `loop.time()`, which libuv keeps in whole milliseconds
and refreshes once per loop iteration, so both its send times and its latencies were
quantised to a millisecond and delayed by its own loop's work. At a fixed 1,500 req/s it
reported a p99 of 17 to 33 ms against a server whose own p99 is a few milliseconds (see
docs/perf-api.md, "Why the tail appeared at a fixed rate").
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cbuild import built

SOURCE = Path(__file__).resolve().parent / "api_openloop.c"
GRACE_S = 15.0  # the generator waits up to 10 s for late answers; a margin on top


@dataclass
class SecondFigures:
    """One second of intended send time: how many were answered and the worst of them."""

    second: int
    count: int
    max_ms: float
    p99_ms: float


@dataclass
class OpenLoopResult:
    offered_rate: float
    sent: int = 0
    answered: int = 0
    errors: int = 0
    unanswered: int = 0
    achieved_rate: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    seconds: list[SecondFigures] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def expected(self) -> int:
        """Requests the schedule called for (sent or not)."""
        return self.answered + self.errors + self.unanswered

    def percentile_ms(self, p: float) -> float:
        key = {50: "p50", 90: "p90", 99: "p99", 99.9: "p999", 100: "max"}[p]
        return self.percentiles_ms.get(key, float("nan"))

    def line(self) -> str:
        other = {k: v for k, v in self.statuses.items() if k != 200}
        return (
            f"offered {self.offered_rate:6.0f} req/s  achieved {self.achieved_rate:6.0f}  "
            f"p50 {self.percentile_ms(50):6.2f} ms  p99 {self.percentile_ms(99):6.2f} ms  "
            f"p99.9 {self.percentile_ms(99.9):6.2f} ms  max {self.percentile_ms(100):6.2f} ms  "
            f"ok {self.ok}/{self.expected}"
            + (f"  other {other}" if other else "")
            + (f"  errors {self.errors}" if self.errors else "")
            + (f"  unanswered {self.unanswered}" if self.unanswered else "")
        )

    def worst_seconds(self, count: int = 3) -> str:
        worst = sorted(self.seconds, key=lambda s: s.max_ms, reverse=True)[:count]
        return ", ".join(f"s{s.second}: max {s.max_ms:.1f} ms" for s in worst)


def generator_path() -> Path:
    """The compiled generator (built on first use, bench/cbuild.py)."""
    return built(SOURCE, "openloop")


def parse_report(text: str, rate: float) -> OpenLoopResult:
    result = OpenLoopResult(offered_rate=rate)
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "second":
            result.seconds.append(
                SecondFigures(int(words[1]), int(words[3]), float(words[5]), float(words[7]))
            )
        elif words[0].startswith("status_"):
            result.statuses[int(words[0][7:])] = int(words[1])
        elif words[0] in ("sent", "answered", "errors", "unanswered"):
            setattr(result, words[0], int(words[1]))
        elif words[0] == "achieved_rate":
            result.achieved_rate = float(words[1])
        elif words[0].endswith("_ms"):
            result.percentiles_ms[words[0][:-3]] = float(words[1])
    return result


def open_loop(
    url: str,
    authorization: str,
    rate: float,
    duration_s: float = 5.0,
    connections: int = 64,
    cpu: int | None = None,
) -> OpenLoopResult:
    """GET `url` at `rate` requests/s for `duration_s`; latency from the intended send time.

    `cpu` pins the generator to that core (the server can be pinned to the other one).
    """
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    command = [
        str(generator_path()),
        parts.hostname or "127.0.0.1",
        str(parts.port or 80),
        target,
        str(rate),
        str(duration_s),
        str(connections),
        f"Authorization: {authorization}",
    ]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + GRACE_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"open-loop generator exited {done.returncode}: {done.stderr}")
    return parse_report(done.stdout, rate)
