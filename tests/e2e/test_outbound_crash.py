"""Calls that are up when the edge process goes away, end to end (issue 4: "never lost:
a call that was up when the process died is closed on the next start").

Each test runs its own `opentrunk serve` (the session edge must stay up for the others),
with sipp as the PBX and as the carrier:

- SIGKILL with one call up and one still ringing: nothing can be sent, but both records
  were already in the database (open, the answered one with its answer time); the next
  start on the same store closes them with 5250 internal_error, source zentrunk,
  durations and charge 0 (edge/records.py: the edge did not see the calls end), and the
  API lists them;
- SIGTERM with the same two calls: the edge sends BYE on both legs of the answered call
  before it exits and closes its record with 5250 (source zentrunk), billed up to the
  shutdown (docs/edge.md, "Shutdown"); the ringing call gets no answer from the
  stopping edge (a known gap) but its record is not lost: the next start closes it.

Each edge start costs seconds, so each test puts both calls on one edge.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e import scenarios
from e2e.harness import (
    Account,
    Api,
    EdgeProcess,
    Sipp,
    describe,
    pbx_args,
    sipp_binary,
    sipp_group,
)
from e2e.test_outbound_calls import carriers

pytestmark = pytest.mark.sipp


@pytest.fixture
def own_edge(tmp_path: Path) -> Iterator[EdgeProcess]:
    """An edge of this test's own, on a data directory a restart can reuse."""
    sipp_binary()
    process = EdgeProcess(tmp_path / "edge-data")
    process.start()
    try:
        yield process
    finally:
        process.kill()


def db_row(edge: EdgeProcess, destination: str) -> dict[str, Any] | None:
    """The call record to `destination` as the store holds it right now (open or not)."""
    with sqlite3.connect(edge.data_dir / "opentrunk.db", timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT * FROM call_records WHERE to_number = ?", (destination,)
        ).fetchone()
    return dict(row) if row is not None else None


def wait_db(edge: EdgeProcess, destination: str, *, answered: bool, timeout: float = 5.0) -> None:
    """Wait until the open record is in the database (with an answer time if `answered`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db_row(edge, destination)
        up = row is not None and (not answered or row["answer_time"] is not None)
        if row is not None and row["state"] == "open" and up:
            return
        time.sleep(0.05)
    raise AssertionError(f"no open record to {destination}: {db_row(edge, destination)}")


def restarted(edge: EdgeProcess) -> EdgeProcess:
    """A new `opentrunk serve` on the same data directory (fresh ports)."""
    again = EdgeProcess(edge.data_dir)
    again.start()
    return again


@dataclass
class LiveCall:
    account: Account
    destination: str
    pbx: Sipp
    carrier: Sipp
    answered: bool


def start_call(edge: EdgeProcess, api: Api, workdir: Path, *, answered: bool) -> LiveCall:
    """A call through `edge`, answered by its carrier or left ringing; sipp files in a
    directory of its own."""
    workdir = workdir / ("answered" if answered else "ringing")
    workdir.mkdir()
    account, domain, destination = api.outbound()
    xml = scenarios.carrier_answer() if answered else scenarios.carrier_ring_until_cancel()
    (carrier,) = carriers(api, workdir, destination, xml, rate="0.01200")
    # The PBX waits (up to 10 s) for the BYE that only a clean shutdown sends.
    pbx_xml = scenarios.pbx_call(domain, account.caller, carrier_hangs_up=True)
    pbx = Sipp(pbx_xml, pbx_args(edge, destination), workdir, "pbx").start()
    wait_db(edge, destination, answered=answered)
    return LiveCall(account, destination, pbx, carrier, answered)


def assert_recovered(again: EdgeProcess, call: LiveCall) -> None:
    """The record as the restarted edge's API lists it: closed by crash recovery."""
    call.account.api = Api(again.http_port)
    try:
        record = call.account.call_record(call.destination)
        assert record["hangup_cause_code"] == "5250", record
        assert record["hangup_cause_name"] == "internal_error"
        assert record["hangup_source"] == "zentrunk"
        assert record["end_time"] is not None
        assert record["call_duration"] == 0
        assert record["bill_duration"] == 0
        assert float(record["total_amount"]) == 0
        assert (record["answer_time"] is not None) is call.answered
        assert record["trunk_domain"] and record["from_number"] == call.account.caller
        assert len(call.account.call_records(call.destination)) == 1
    finally:
        call.account.api.close()


def test_sigkill_then_restart_closes_the_record_5250(own_edge: EdgeProcess, workdir: Path) -> None:
    api = Api(own_edge.http_port)
    calls = [start_call(own_edge, api, workdir, answered=up) for up in (True, False)]
    with sipp_group(*(c.pbx for c in calls), *(c.carrier for c in calls)):
        time.sleep(0.3)  # the calls are up (or ringing) for a moment, then the crash
        own_edge.kill()
        assert own_edge.process is not None and own_edge.process.returncode == -9
    api.close()
    # Nothing closed them: the dead process could not.
    for call in calls:
        row = db_row(own_edge, call.destination)
        assert row is not None and row["state"] == "open" and row["end_time"] is None, row

    again = restarted(own_edge)
    try:
        for call in calls:
            assert_recovered(again, call)
            assert db_row(again, call.destination)["state"] == "closed"  # type: ignore[index]
        assert "closed call records left open by a previous run" in again.output()
    finally:
        again.stop()


def test_sigterm_with_a_call_up_sends_bye_both_ways_and_closes_5250(
    own_edge: EdgeProcess, workdir: Path
) -> None:
    api = Api(own_edge.http_port)
    up, ringing = (start_call(own_edge, api, workdir, answered=a) for a in (True, False))
    with sipp_group(up.pbx, up.carrier, ringing.pbx, ringing.carrier):
        time.sleep(1.2)  # a call of about a second, so its billed length is not 0
        started = time.monotonic()
        returncode = own_edge.stop(timeout=10)
        stopping = time.monotonic() - started
        # Both legs got the edge's BYE and answered it: each sipp ends its scenario.
        pbx_run = up.pbx.wait(10)
        carrier_run = up.carrier.wait(10)
    api.close()
    for run in (pbx_run, carrier_run):
        assert run.returncode == 0, describe(pbx_run, carrier_run, edge=own_edge)
    assert "BYE sip:" in pbx_run.messages and "BYE sip:" in carrier_run.messages
    assert returncode == 0, own_edge.output()
    assert stopping < 5, f"the edge took {stopping:.1f} s to stop"
    # The answered call was closed by the stopping process itself, before it exited.
    row = db_row(own_edge, up.destination)
    assert row is not None and row["state"] == "closed", row
    assert db_row(own_edge, ringing.destination)["state"] == "open"  # type: ignore[index]

    again = restarted(own_edge)
    try:
        up.account.api = Api(again.http_port)
        record = up.account.call_record(up.destination)
        up.account.api.close()
        assert record["hangup_cause_code"] == "5250", record
        assert record["hangup_cause_name"] == "internal_error"
        assert record["hangup_source"] == "zentrunk"
        assert record["answer_time"] is not None
        # The edge saw this call end: it is billed for its length (60 s increment).
        assert record["call_duration"] in (1, 2, 3), record
        assert record["bill_duration"] == 60
        assert record["total_amount"] == "0.01200"
        assert_recovered(again, ringing)
    finally:
        again.stop()
