"""A PBX on TCP reaches a UDP carrier through the edge: the B2BUA's legs use their own
transports (CALLS.md: each leg is its own dialog), 180 and 200 cross from the UDP leg to
the TCP one, the BYE from the PBX ends both, and the record says tcp."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess
from e2e.test_outbound_calls import assert_record, call, carriers, ok

pytestmark = pytest.mark.sipp


def test_tcp_pbx_to_udp_carrier(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(api, workdir, destination, scenarios.carrier_answer())
    xml = scenarios.pbx_call(domain, account.caller)
    pbx_run, uas_runs = call(edge, workdir, xml, destination, uas, transport="t1")
    ok(pbx_run, uas_runs, edge)
    pbx_log = (workdir / "pbx.msg").read_text(errors="replace")
    carrier_log = (workdir / "carrier0.msg").read_text(errors="replace")
    assert "TCP message received" in pbx_log and "180 Ringing" in pbx_log
    assert "UDP message received" in carrier_log and "TCP message" not in carrier_log
    record = assert_record(account, destination, "3010", "customer")
    assert record["transport_protocol"] == "tcp"
