"""Session timers (RFC 4028) on outbound calls: the PBX's Session-Expires reaches the
carrier, the carrier's answer sets the interval, and when the refresher (the PBX, uac)
never refreshes the edge ends the call on both legs and records the customer's
server_timeout (5340)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, unique_number
from e2e.test_outbound_calls import assert_record, call, carriers, ok

pytestmark = pytest.mark.sipp

SESSION = "Supported: timer\nSession-Expires: 2;refresher=uac\nMin-SE: 1\n"


def test_outbound_session_expires_without_refresh(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    account = api.account()
    domain = account.trunk(acl=["127.0.0.0/8"])
    destination = unique_number()
    # The carrier answers with the negotiated interval (2 s, the PBX refreshes), then
    # waits for the edge's BYE; so does the PBX.
    carrier_xml = scenarios.carrier_answer().replace(
        "Content-Type: application/sdp",
        "Session-Expires: 2;refresher=uac\nRequire: timer\nContent-Type: application/sdp",
        1,
    )
    carrier_xml = carrier_xml.replace(
        '<recv request="BYE"/>', '<recv request="BYE" timeout="8000"/>'
    )
    uas = carriers(api, workdir, destination, carrier_xml)
    pbx_xml = scenarios.pbx_call(domain, account.caller, carrier_hangs_up=True).replace(
        "Content-Type: application/sdp", SESSION + "Content-Type: application/sdp", 1
    )
    started = time.monotonic()
    pbx_run, uas_runs = call(edge, workdir, pbx_xml, "+" + destination, uas)
    ok(pbx_run, uas_runs, edge)
    assert time.monotonic() - started >= 2.0
    # The session-timer headers crossed both ways.
    assert "Session-Expires: 2;refresher=uac" in uas_runs[0].messages.split("INVITE sip:", 1)[1]
    assert "Session-Expires: 2;refresher=uac" in pbx_run.messages
    record = assert_record(account, destination, "5340", "customer")
    assert record["hangup_cause_name"] == "server_timeout"
    assert record["answer_time"] is not None
