"""Benchmark: complete outbound calls through one `opentrunk serve` process.

sipp as the PBX drives calls (INVITE, 407 digest challenge, INVITE with credentials,
180, 200, ACK, a short hold, BYE) through the edge to a sipp UAS as the carrier; call
records go to SQLite. Prints, for each rate tried: calls attempted, succeeded, failed,
the failure ratio, and the call-setup time (INVITE with credentials -> 200) p50/p99 from
sipp's per-call response-time trace; with --memory, the edge's RSS per concurrent call
with N calls up.

    .venv/bin/python bench/edge_calls.py --rates 100,200,300 --duration 60
    .venv/bin/python bench/edge_calls.py --rates 150 --duration 30        # latency
    .venv/bin/python bench/edge_calls.py --memory 2000

The edge's own settings are the defaults (SQLite under a temporary data dir, uvloop).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp, pbx_args, unique_number, wait_udp

USER, PASSWORD = "benchpbx", "Bench!pw1"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def setup(api: Api, carrier_port: int) -> tuple[str, str, str]:
    account = api.account(cps=10_000, caller_id_policy=False)
    domain = account.trunk(username=USER, password=PASSWORD)
    destination = unique_number()
    api.carrier(carrier_port, destination, rate="0.01000")
    return domain, account.caller, destination


def run_rate(edge: EdgeProcess, work: Path, rate: float, duration: float, hold_ms: int) -> None:
    api = Api(edge.http_port)
    calls = int(rate * duration)
    carrier = Sipp(
        scenarios.carrier_answer(),
        ["-m", str(calls), "-timeout", f"{int(duration + 60)}s", "-bg"][:4],
        work,
        f"carrier-{rate}",
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
        "-l",
        str(int(rate * 30) + 100),
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-recv_timeout",
        "10000",
    ]
    pbx = Sipp(xml, args, work, f"pbx-{rate}").start()
    started = time.monotonic()
    result = pbx.wait(duration + 90)
    elapsed = time.monotonic() - started
    carrier.kill()
    out = result.output
    ok = _counter(out, "Successful call")
    failed = _counter(out, "Failed call")
    rtts = _rtts(work, f"pbx-{rate}")
    p50 = statistics.median(rtts) if rtts else float("nan")
    p99 = sorted(rtts)[int(len(rtts) * 0.99) - 1] if rtts else float("nan")
    ratio = failed / max(1, ok + failed)
    print(
        f"rate {rate:6.1f}/s x {duration:.0f}s: {ok + failed} calls in {elapsed:.1f}s, "
        f"{ok} ok, {failed} failed ({ratio:.3%}); setup p50 {p50:.1f} ms p99 {p99:.1f} ms",
        flush=True,
    )
    api.close()


def _counter(output: str, name: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith(name):
            return int(line.split("|")[2].split()[0])
    return 0


def _rtts(work: Path, name: str) -> list[float]:
    values: list[float] = []
    for path in work.glob(f"{name}*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    values.append(float(parts[1]))
                except ValueError:
                    continue
    return values


def run_memory(edge: EdgeProcess, work: Path, concurrent: int) -> None:
    assert edge.process is not None
    api = Api(edge.http_port)
    rate = 200.0
    hold_ms = int(concurrent / rate * 1000) + 15_000
    carrier = Sipp(scenarios.carrier_answer(), ["-m", str(concurrent)], work, "carrier-mem")
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
    pbx = Sipp(xml, args, work, "pbx-mem").start()
    deadline = time.monotonic() + concurrent / rate + 10
    peak_active = 0.0
    peak_rss = before
    while time.monotonic() < deadline:
        time.sleep(0.5)
        text = api.http.get("/metrics").text
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
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        edge = EdgeProcess(work / "data", env={"OPENTRUNK_LOG_LEVEL": "warning"})
        edge.start()
        try:
            if options.memory:
                run_memory(edge, work, options.memory)
            else:
                for rate in (float(r) for r in options.rates.split(",")):
                    run_rate(edge, work, rate, options.duration, options.hold_ms)
        finally:
            edge.stop()


if __name__ == "__main__":
    main()
