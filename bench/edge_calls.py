"""Benchmark: complete outbound calls through one `opentrunk serve` process.

sipp as the PBX drives calls (INVITE, 407 digest challenge, INVITE with credentials,
180, 200, ACK, a short hold, BYE) through the edge to a sipp UAS as the carrier; call
records go to SQLite. Prints, for each rate tried: calls attempted, succeeded, failed,
the failure ratio, the call-setup time p50/p99 as the PBX sees it (first INVITE -> 200:
the 407 round and the carrier's 100 ms between 180 and 200 included) from sipp's per-call
response-time trace, the CPU each process used (edge, sipp PBX, sipp carrier; 100% = one
core; a process's children included) and, when calls failed, where in the scenario they
failed (sipp's per-message timeout/unexpected counts). With --memory, the edge's RSS per
concurrent call with N calls up.

    .venv/bin/python bench/edge_calls.py --rates 100,200,300 --duration 60
    .venv/bin/python bench/edge_calls.py --rates 150 --duration 30        # latency
    .venv/bin/python bench/edge_calls.py --memory 2000

sipp runs without per-message tracing (-trace_msg costs it more CPU than the edge's
parse); `--work DIR` keeps the scenario files, sipp's screens and error logs there;
`--probe` runs the edge under bench/edge_probe.py and adds its event-loop lag and
garbage-collection figures to each rate's line.
The edge's own settings are the defaults (SQLite under a temporary data dir, uvloop, a
carrier timeout of 5 s rather than the e2e harness's 1.5 s).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from e2e import harness, scenarios
from e2e.harness import Api, EdgeProcess, Sipp, pbx_args, sipp_binary, unique_number, wait_udp

USER, PASSWORD = "benchpbx", "Bench!pw1"
TICKS = os.sysconf("SC_CLK_TCK")


class BenchSipp(Sipp):
    """A sipp without -trace_msg (which would make sipp, not the edge, the bottleneck),
    dumping its final screen and unexpected messages for the failure breakdown."""

    def start(self) -> BenchSipp:
        path = self.workdir / f"{self.name}.xml"
        path.write_text(self.scenario)
        argv = [
            sipp_binary(),
            "-sf",
            str(path),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-nostdin",
            "-trace_screen",
            "-screen_file",
            str(self.workdir / f"{self.name}.screen"),
            "-trace_err",
            "-error_file",
            str(self.workdir / f"{self.name}.errors"),
            *self.args,
            *self._auth_uri(),
        ]
        self.process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return self


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int, task: int | None = None) -> float | None:
    """User + system CPU time of a process (or of one of its threads, `task`) so far
    (None once it is gone)."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float | None:
    """`cpu_seconds` of a process plus its children's (a media relay worker process, with
    OPENTRUNK_MEDIA_BACKEND=relay-process: the edge's work all the same)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return own
    return own + sum(cpu_seconds(int(child)) or 0.0 for child in children)


class CpuMeter:
    """Samples the CPU time of some processes every 0.2 s until stopped (a process that
    exits keeps its last sample). The first process is the edge: its RSS is followed,
    and its main thread (the event loop, which all SIP work shares) is sampled on its
    own as "edge-loop": the edge's ceiling is that thread reaching 100% of a core."""

    def __init__(self, pids: dict[str, int]) -> None:
        edge = next(iter(pids.values()))
        self.sources: dict[str, Callable[[], float | None]] = {
            name: functools.partial(tree_cpu_seconds, pid) for name, pid in pids.items()
        }
        self.sources["edge-loop"] = functools.partial(cpu_seconds, edge, edge)
        self.first = {name: read() or 0.0 for name, read in self.sources.items()}
        self.last = dict(self.first)
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.edge = edge
        self.peak_rss = rss_kib(edge)  # KiB, while sampling
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, read in self.sources.items():
                value = read()
                if value is not None:
                    self.last[name] = max(self.last[name], value)
            with contextlib.suppress(OSError):
                self.peak_rss = max(self.peak_rss, rss_kib(self.edge))
            self.elapsed = time.monotonic() - self.started

    def used(self, name: str) -> float:
        """CPU seconds `name` used between start and the last sample."""
        return self.last[name] - self.first[name]

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        wall = max(self.elapsed, 1e-6)
        return ", ".join(
            f"{name} {100 * (self.last[name] - self.first[name]) / wall:.0f}%"
            for name in self.sources
        )


def setup(api: Api, carrier_port: int) -> tuple[str, str, str]:
    account = api.account(cps=10_000, caller_id_policy=False)
    domain = account.trunk(username=USER, password=PASSWORD)
    destination = unique_number()
    api.carrier(carrier_port, destination, rate="0.01000")
    return domain, account.caller, destination


def run_rate(edge: EdgeProcess, work: Path, rate: float, duration: float, hold_ms: int) -> None:
    assert edge.process is not None
    api = Api(edge.http_port)
    calls = int(rate * duration)
    carrier = BenchSipp(
        scenarios.carrier_answer(),
        ["-m", str(calls), "-timeout", f"{int(duration + 60)}s"],
        work,
        f"carrier-{rate:g}",
    ).start()
    wait_udp(carrier.port)
    domain, caller, destination = setup(api, carrier.port)
    xml = scenarios.pbx_call(domain, caller, auth=True, hold_ms=hold_ms)
    args = pbx_args(
        edge,
        destination,
        calls=calls,
        rate=rate,
        username=USER,
        password=PASSWORD,
        timeout=duration + 60,
    )
    args = [a for a in args if a != "-timeout_error"]
    args += [
        # Enough simultaneous calls for setup + hold at this rate, with headroom.
        "-l",
        str(int(rate * 30) + 100),
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-recv_timeout",
        "10000",
    ]
    for stale in work.glob(f"pbx-{rate:g}_[0-9]*_rtt.csv"):
        stale.unlink()  # from an earlier run in a kept --work directory
    pbx = BenchSipp(xml, args, work, f"pbx-{rate:g}").start()
    assert pbx.process is not None and carrier.process is not None
    meter = CpuMeter(
        {"edge": edge.process.pid, "sipp-pbx": pbx.process.pid, "sipp-carrier": carrier.process.pid}
    )
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    wall_start = time.time()
    result = pbx.wait(duration + 90)
    elapsed = time.monotonic() - started
    cpu = meter.stop()
    load_after = os.getloadavg()[0]
    carrier.kill()
    out = result.output
    ok = _counter(out, "Successful call")
    failed = _counter(out, "Failed call")
    rtts = _rtts(work, f"pbx-{rate:g}")
    p50 = statistics.median(rtts) if rtts else float("nan")
    p99 = sorted(rtts)[max(0, int(len(rtts) * 0.99) - 1)] if rtts else float("nan")
    ratio = failed / max(1, ok + failed)
    per_call = 1000 * meter.used("edge") / max(1, ok + failed)
    loop_per_call = 1000 * meter.used("edge-loop") / max(1, ok + failed)
    print(
        f"rate {rate:6.1f}/s x {duration:.0f}s: {ok + failed} calls in {elapsed:.1f}s, "
        f"{ok} ok, {failed} failed ({ratio:.3%}); setup p50 {p50:.1f} ms p99 {p99:.1f} ms; "
        f"CPU {cpu}, edge {per_call:.2f} ms per call ({loop_per_call:.2f} in its event loop); "
        f"edge RSS peak {meter.peak_rss // 1024} MiB; "
        f"load {load_before:.2f} -> {load_after:.2f}",
        flush=True,
    )
    if failed:
        print(_failures(work, f"pbx-{rate:g}"), flush=True)
    probe = os.environ.get("OPENTRUNK_PROBE_FILE")
    if probe:
        print(_probe_summary(Path(probe), wall_start), flush=True)
    api.close()


def _probe_summary(path: Path, since: float) -> str:
    """Event-loop lag and garbage-collection figures (bench/edge_probe.py) since `since`."""
    lags: list[float] = []
    gc_ms = [0.0, 0.0, 0.0]
    freed = [0, 0, 0]
    runs = [0, 0, 0]
    longest = 0.0
    objects = calls = frozen = 0
    types = ""
    for line in path.read_text().splitlines():
        if line.startswith("# types "):
            types = line  # the last snapshot (OPENTRUNK_PROBE_TYPES=1)
            continue
        stamp, *fields = line.split()
        if float(stamp) - 1.0 < since:
            continue  # (a line covers the second before its stamp)
        values = dict(field.split("=", 1) for field in fields)
        lags.append(float(values["lag_ms"]))
        for i, ms in enumerate(values["gc_ms"].split(",")):
            gc_ms[i] += float(ms)
        for i, count in enumerate(values.get("gc_freed", "0,0,0").split(",")):
            freed[i] += int(count)
        for i, count in enumerate(values.get("gc_runs", "0,0,0").split(",")):
            runs[i] += int(count)
        longest = max(longest, float(values["gc_max_ms"]))
        objects = int(values["objects"])
        frozen = int(values.get("frozen", 0))
        calls = int(values.get("calls", 0))
    if not lags:
        return "    probe: no samples"
    seconds = len(lags)
    return (
        f"    probe: loop lag p50 {statistics.median(lags):.0f} ms, max {max(lags):.0f} ms; "
        f"GC runs per second {'/'.join(f'{n / seconds:.1f}' for n in runs)}, "
        f"ms per second gen0 {gc_ms[0] / seconds:.0f}, gen1 {gc_ms[1] / seconds:.0f}, "
        f"gen2 {gc_ms[2] / seconds:.0f}, longest {longest:.0f} ms; cyclic garbage found per "
        f"second {'/'.join(f'{n / seconds:.0f}' for n in freed)}; "
        f"{objects} tracked objects ({frozen} of them frozen) and {calls} call objects "
        "at the end" + (f"\n    probe: {types[2:]}" if types else "")
    )


def _counter(output: str, name: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith(name):
            return int(line.split("|")[2].split()[0])
    return 0


def _failures(work: Path, name: str) -> str:
    """sipp's last scenario screen (messages, retransmissions, timeouts, unexpected
    messages per step) and the final statuses of unexpected responses, indented."""
    lines: list[str] = []
    screen = work / f"{name}.screen"
    if screen.exists():
        text = screen.read_text(errors="replace")
        table = text.rsplit("Messages  Retrans   Timeout   Unexpected-Msg", 1)
        if len(table) == 2:
            for line in table[1].splitlines()[1:]:
                if not line.strip() or line.startswith(("Last Error", "-")):
                    break
                lines.append("    " + line.rstrip())
    errors = work / f"{name}.errors"
    if errors.exists():
        counts: dict[str, int] = {}
        for line in errors.read_text(errors="replace").splitlines():
            if line.startswith("Reason: SIP;cause="):
                counts[line] = counts.get(line, 0) + 1
        for line, count in sorted(counts.items(), key=lambda item: -item[1]):
            lines.append(f"    {count} x {line}")
    return "\n".join(lines) or "    (no sipp screen file)"


def _rtts(work: Path, name: str) -> list[float]:
    values: list[float] = []
    for path in work.glob(f"{name}_[0-9]*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    values.append(float(parts[1]))
                except ValueError:
                    continue
    return values


def run_memory(edge: EdgeProcess, work: Path, concurrent: int, rate: float) -> None:
    """Ramp up to `concurrent` held calls at `rate` calls/s (a rate the edge sustains,
    so that every call is up), then compare the edge's RSS with its idle RSS."""
    assert edge.process is not None
    api = Api(edge.http_port)
    hold_ms = int(concurrent / rate * 1000) + 45_000
    carrier = BenchSipp(scenarios.carrier_answer(), ["-m", str(concurrent)], work, "carrier-mem")
    carrier.start()
    wait_udp(carrier.port)
    domain, caller, destination = setup(api, carrier.port)
    time.sleep(1.0)
    before = rss_kib(edge.process.pid)
    xml = scenarios.pbx_call(domain, caller, auth=True, hold_ms=hold_ms)
    args = [
        a
        for a in pbx_args(
            edge,
            destination,
            calls=concurrent,
            rate=rate,
            username=USER,
            password=PASSWORD,
            timeout=hold_ms / 1000 + 60,
        )
        if a != "-timeout_error"
    ]
    args += ["-l", str(concurrent + 10)]
    pbx = BenchSipp(xml, args, work, "pbx-mem").start()
    deadline = time.monotonic() + concurrent / rate + 40
    peak_active = 0.0
    peak_rss = before
    while time.monotonic() < deadline:
        time.sleep(0.5)
        text = api.metrics_text()
        for line in text.splitlines():
            if line.startswith("opentrunk_active_calls "):
                peak_active = max(peak_active, float(line.split()[1]))
        peak_rss = max(peak_rss, rss_kib(edge.process.pid))
        if peak_active >= concurrent:
            time.sleep(1.0)
            peak_rss = max(peak_rss, rss_kib(edge.process.pid))
            break
    per_call = (peak_rss - before) / max(1.0, peak_active)
    print(
        f"memory: RSS {before} KiB idle, {peak_rss} KiB with {peak_active:.0f} calls up: "
        f"{per_call:.1f} KiB per concurrent call",
        flush=True,
    )
    pbx.kill()
    carrier.kill()
    api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,200,300", help="calls/s to try, in order")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--memory", type=int, default=0, help="measure with N calls up")
    parser.add_argument("--memory-rate", type=float, default=100.0, help="ramp-up calls/s")
    parser.add_argument("--work", type=Path, default=None, help="keep sipp's files here")
    parser.add_argument(
        "--probe", action="store_true", help="record loop lag and GC pauses (edge_probe.py)"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if options.work is not None:
            options.work.mkdir(parents=True, exist_ok=True)
            work = options.work
        if options.probe:
            launcher = work / "opentrunk-probe"
            launcher.write_text(
                f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).with_name("edge_probe.py")}"'
                ' "$@"\n'
            )
            launcher.chmod(0o755)
            harness.OPENTRUNK = str(launcher)
            os.environ["OPENTRUNK_PROBE_FILE"] = str(work / "probe.txt")
        # The harness shortens the carrier timeout to 1.5 s for quick tests; a benchmark
        # of the edge as deployed keeps the default (5 s, docs/edge.md).
        edge = EdgeProcess(
            work / "data",
            env={"OPENTRUNK_LOG_LEVEL": "warning", "OPENTRUNK_CARRIER_TIMEOUT": "5"},
        )
        edge.start()
        try:
            if options.memory:
                run_memory(edge, work, options.memory, options.memory_rate)
            else:
                for rate in (float(r) for r in options.rates.split(",")):
                    run_rate(edge, work, rate, options.duration, options.hold_ms)
        finally:
            edge.stop()


if __name__ == "__main__":
    main()
