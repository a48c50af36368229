"""Mid-call requests on inbound calls, end to end: re-INVITE and UPDATE relayed leg to
leg with their SDP in both directions, session timers (RFC 4028) ending a call whose
refreshes stop, and OPTIONS keep-alives with their per-source rate limit."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from e2e import inbound_scenarios as inbound
from e2e.harness import Api, EdgeProcess
from e2e.inbound_harness import (
    carrier,
    inbound_api,
    inbound_edge,
    ok,
    pbx,
    record_of,
    run_all,
    setup_inbound,
)

pytestmark = pytest.mark.sipp

__all__ = ["inbound_api", "inbound_edge"]  # fixtures used by name


def requests_received(messages: str, method: str) -> list[str]:
    """The `method` requests a sipp received, each as logged (headers and body)."""
    found = []
    for chunk in messages.split("message received")[1:]:
        text = chunk.split("\n", 1)[1] if "\n" in chunk else ""
        if text.lstrip().startswith(f"{method} sip:"):
            found.append(text)
    return found


def test_reinvite_and_update_from_the_carrier(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    primary = pbx(workdir, inbound.pbx_answer(reinvite=True, update=True), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_call("+14155550100", reinvite=True, update=True)
    carrier_run, (pbx_run,) = run_all(carrier(inbound_edge, workdir, xml, setup.number), primary)
    ok(inbound_edge, carrier_run, pbx_run)
    # The new offer (PCMA only, version 2353687638) reached the PBX in a re-INVITE sent
    # to the Contact of its 200 (the message log keeps the last few messages only)...
    reinvites = [r for r in requests_received(pbx_run.messages, "INVITE") if "2353687638" in r]
    assert len(reinvites) == 1, pbx_run.messages
    assert reinvites[0].lstrip().startswith("INVITE sip:carrier@127.0.0.1:")
    assert "m=audio 0" not in reinvites[0] and "RTP/AVP 8 101" in reinvites[0]
    updates = requests_received(pbx_run.messages, "UPDATE")
    assert len(updates) == 1 and "2353687638" in updates[0]
    # ... and the PBX's answers came back to the carrier with SDP.
    assert carrier_run.messages.count("o=pbx") >= 3
    record_of(setup, "3000", "carrier")


def test_reinvite_from_the_pbx(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    primary = pbx(workdir, inbound.pbx_answer(sends_reinvite=True), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_call("+14155550100", expect_reinvite_from_pbx=True)
    carrier_run, (pbx_run,) = run_all(carrier(inbound_edge, workdir, xml, setup.number), primary)
    ok(inbound_edge, carrier_run, pbx_run)
    reinvites = requests_received(carrier_run.messages, "INVITE")
    assert len(reinvites) == 1 and "o=pbx" in reinvites[0]
    # The carrier sees the edge's dialog, never the PBX's own tags.
    assert "SIPpTag01" not in reinvites[0]
    record_of(setup, "3000", "carrier")


def test_session_expires_without_refresh(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    """The PBX answers with Session-Expires 2, refresher the carrier (uac), which never
    refreshes: after 2 s the edge ends the call with BYE on both legs and records it as
    the carrier's server timeout."""
    primary = pbx(workdir, inbound.pbx_answer(session_expires="2;refresher=uac"), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_call("+14155550100", session_expires=2, expect_bye=True)
    started = time.monotonic()
    carrier_run, (pbx_run,) = run_all(carrier(inbound_edge, workdir, xml, setup.number), primary)
    ok(inbound_edge, carrier_run, pbx_run)
    assert time.monotonic() - started >= 2.0
    # The session-timer headers crossed the legs both ways.
    pbx_invite = requests_received(pbx_run.messages, "INVITE")[0]
    assert "Session-Expires: 2" in pbx_invite
    assert "Session-Expires: 2;refresher=uac" in carrier_run.messages
    record = record_of(setup, "5330", "carrier")
    assert record["hangup_cause_name"] == "server_timeout"
    assert record["answer_time"] is not None


def test_session_refreshed_by_reinvite_stays_up(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    """A refresh (re-INVITE) within the interval keeps the call: the carrier hangs up
    itself 2.7 s after answer, with a 2 s session refreshed at 1.2 s (without the
    refresh the edge would have ended it at 2 s with 5330)."""
    primary = pbx(
        workdir, inbound.pbx_answer(session_expires="2;refresher=uac", reinvite=True), "primary"
    )
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_call(
        "+14155550100", session_expires=2, reinvite=True, reinvite_after_ms=1200, hold_ms=1500
    )
    carrier_run, (pbx_run,) = run_all(carrier(inbound_edge, workdir, xml, setup.number), primary)
    ok(inbound_edge, carrier_run, pbx_run)
    record_of(setup, "3000", "carrier")


def test_options_answered_and_rate_limited(inbound_edge: EdgeProcess) -> None:
    statuses: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.3", 0))
        sock.settimeout(2)
        port = sock.getsockname()[1]
        for index in range(30):
            options = (
                f"OPTIONS sip:127.0.0.1:{inbound_edge.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.3:{port};branch=z9hG4bK-opt-{index};rport\r\n"
                "From: <sip:probe@127.0.0.3>;tag=o1\r\nTo: <sip:127.0.0.1>\r\n"
                f"Call-ID: options-{index}@127.0.0.3\r\nCSeq: {index + 1} OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(options.encode(), ("127.0.0.1", inbound_edge.sip_port))
        for _ in range(30):
            data = sock.recv(65536)
            statuses.append(int(data.split(b" ", 2)[1]))
    # The default limit is 10 per second with a burst of 10: the first ones are 200.
    assert statuses.count(200) >= 10
    assert statuses.count(503) >= 15
    assert set(statuses) <= {200, 503}
