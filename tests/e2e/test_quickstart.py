"""The README's walk-through (examples/quickstart.sh) works as written: a fresh SQLite store,
an account, a credential and a trunk made through the API, a carrier through the CLI, one
digest-authenticated call from sipp through the edge to sipp's UAS, and its call record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from e2e.harness import free_port, sipp_binary

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_places_a_call_and_reads_its_record(tmp_path: Path) -> None:
    sipp_binary()  # skips (or fails under CI) without sipp
    env = dict(
        os.environ,
        BIN=str(Path(sys.executable).parent),
        DATA=str(tmp_path / "data"),
        HTTP_PORT=str(free_port()),
        SIP_PORT=str(free_port()),
        CARRIER_PORT=str(free_port()),
        PBX_PORT=str(free_port()),
    )
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "quickstart.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "call completed" in done.stdout
    listing = json.loads(done.stdout.strip().splitlines()[-1])
    assert listing["meta"]["total_count"] == 1
    record = listing["objects"][0]
    assert record["to_number"] == "14155550123"
    assert record["from_number"] == "14155550100"
    assert record["hangup_cause_code"] == "3010"
    assert record["hangup_source"] == "customer"
    assert record["call_duration"] >= 2
    assert record["total_rate"] == "0.01200"
