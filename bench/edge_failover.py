"""Benchmark: inbound calls whose primary origination URI is dead, at a steady rate.

sipp as the carrier sends inbound calls (INVITE, 180, 200, ACK, short hold, BYE) to one
`opentrunk serve` process; the number's trunk has a primary URI on a UDP socket that
never answers (a PBX that is down) and a fallback URI on a sipp UAS that answers. For
each origination timeout setting, prints: calls attempted, succeeded, failed, how many
INVITEs reached the fallback, and the call-setup time (carrier INVITE -> 200) p50/p99;
then the same with the primary alive (the baseline), and the extra setup time failover
costs (p50 with failover - p50 baseline).

    .venv/bin/python bench/edge_failover.py --rate 100 --duration 20
    .venv/bin/python bench/edge_failover.py --rate 100 --duration 20 --timeouts default,1

"default" runs the edge with its default settings (a silent URI is given up after
`origination_provisional_timeout`, 2 s); a number T runs it with
OPENTRUNK_ORIGINATION_TIMEOUT=T (the silent limit is then min(2, T)).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from e2e import inbound_scenarios, scenarios
from e2e.harness import Account, Api, EdgeProcess, Sipp, unique_number, wait_udp


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


def _answered_records(account: Account, number: str) -> int:
    """Calls to `number` answered and ended normally (3000), from the call records."""
    deadline = time.monotonic() + 10
    count = -1
    while time.monotonic() < deadline:
        r = account.get("Zentrunk/Call/", to_number=number, hangup_cause_code=3000, limit=1)
        latest = int(r.json()["meta"]["total_count"])
        if latest == count:
            break
        count = latest
        time.sleep(1.0)
    return count


def _setup(api: Api, primary: str, fallback: str | None) -> tuple[Account, str]:
    account = api.account(cps=10_000)  # the bench measures failover, not the CPS limit
    number = unique_number("1646")
    api._admin("POST", "numbers/", {"number": "+" + number, "auth_id": account.auth_id})
    body = {
        "trunk_direction": "inbound",
        "primary_uri_uuid": account.post("Zentrunk/URI/", {"uri": primary})["uri_uuid"],
    }
    if fallback is not None:
        body["fallback_uri_uuid"] = account.post("Zentrunk/URI/", {"uri": fallback})["uri_uuid"]
    trunk_id = account.post("Zentrunk/Trunk/", body)["trunk_id"]
    account.post(f"Number/{number}/", {"app_id": trunk_id})
    return account, number


def run(label: str, env: dict[str, str], rate: float, duration: float, dead: bool) -> float:
    work = Path(tempfile.mkdtemp(prefix="edge-failover-"))
    edge = EdgeProcess(work / "data", env=env)
    edge.start()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    calls = int(rate * duration)
    try:
        api = Api(edge.http_port)
        api._admin(
            "POST",
            "carriers/",
            {
                "name": "bench-carrier",
                "address": "127.0.0.1:9",
                "prefix": "999",
                "inbound_sources": ["127.0.0.1/32"],
            },
        )
        answering = Sipp(
            scenarios.carrier_answer(),
            ["-m", str(calls), "-timeout", f"{int(duration + 60)}s"],
            work,
            "pbx",
        ).start()
        wait_udp(answering.port)
        if dead:
            primary = f"127.0.0.1:{silent.getsockname()[1]}"
            account, number = _setup(api, primary, f"127.0.0.1:{answering.port}")
        else:
            account, number = _setup(api, f"127.0.0.1:{answering.port}", None)
        args = [
            f"127.0.0.1:{edge.sip_port}",
            "-s",
            "+" + number,
            "-m",
            str(calls),
            "-r",
            str(rate),
            "-l",
            str(int(rate * 10) + 100),
            "-timeout",
            f"{int(duration + 60)}s",
            "-trace_rtt",
            "-rtt_freq",
            "1",
            "-recv_timeout",
            "15000",
        ]
        carrier = Sipp(inbound_scenarios.carrier_call("+14155550100", hold_ms=300), args, work, "c")
        carrier.start()
        started = time.monotonic()
        result = carrier.wait(duration + 90)
        elapsed = time.monotonic() - started
        answering.kill()
        ok = _counter(result.output, "Successful call")
        failed = _counter(result.output, "Failed call")
        reached = _answered_records(account, number)
        rtts = _rtts(work, "c")
        p50 = statistics.median(rtts) if rtts else float("nan")
        p99 = sorted(rtts)[max(0, int(len(rtts) * 0.99) - 1)] if rtts else float("nan")
        print(
            f"{label}: {ok + failed} calls at {rate:.0f}/s in {elapsed:.1f}s, {ok} ok, "
            f"{failed} failed, {reached} answered by the live URI (records 3000); "
            f"setup p50 {p50:.1f} ms p99 {p99:.1f} ms",
            flush=True,
        )
        api.close()
        return p50
    finally:
        silent.close()
        edge.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--timeouts", default="default,1")
    options = parser.parse_args()
    baseline = run("primary alive (baseline)", {}, options.rate, options.duration, dead=False)
    for timeout in options.timeouts.split(","):
        env = {} if timeout == "default" else {"OPENTRUNK_ORIGINATION_TIMEOUT": timeout}
        label = f"primary dead, timeout {timeout}"
        p50 = run(label, env, options.rate, options.duration, dead=True)
        print(f"  failover cost at timeout {timeout}: +{p50 - baseline:.0f} ms (p50)", flush=True)


if __name__ == "__main__":
    main()
