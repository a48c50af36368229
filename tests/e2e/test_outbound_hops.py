"""Max-Forwards and loop detection on outbound calls, end to end (sipp PBX -> live
`opentrunk serve` -> sipp carrier):

- an INVITE with Max-Forwards 0 is refused 483 and recorded 4380 (too_many_hops);
- the carrier leg's Max-Forwards is the PBX's minus one;
- an INVITE carrying one of the edge's own Via addresses is refused 482 and recorded
  4370 (loop_detected);
- a real loop (a carrier configured at the edge's own address) is caught on its second
  pass: the PBX gets 482 and the record 4370;
- an unknown trunk with Max-Forwards 0 gets 483 and leaves no record (no account)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, SilentPeer, unique_number
from e2e.test_outbound_calls import assert_record, call, carriers, ok

pytestmark = pytest.mark.sipp


def with_max_forwards(xml: str, hops: int) -> str:
    """The PBX scenario with its INVITE(s) sent with `hops` Max-Forwards."""
    head, sep, rest = xml.partition("CSeq: 1 INVITE")
    assert sep, "scenario without an INVITE"
    return head + sep + rest.replace("Max-Forwards: 70", f"Max-Forwards: {hops}", 1)


def test_max_forwards_zero_is_483_and_recorded_4380(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    account, domain, destination = api.outbound()
    carrier = SilentPeer()
    try:
        api.carrier(carrier.port, destination)
        xml = with_max_forwards(scenarios.pbx_refused(domain, account.caller, 483), 0)
        ok(*call(edge, workdir, xml, destination, []), edge)
        assert carrier.received() == []  # the carrier was never tried
    finally:
        carrier.close()
    record = assert_record(account, destination, "4380", "zentrunk")
    assert record["hangup_cause_name"] == "too_many_hops"


def test_carrier_leg_max_forwards_is_the_pbx_one_minus_one(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(api, workdir, destination, scenarios.carrier_answer())
    xml = with_max_forwards(scenarios.pbx_call(domain, account.caller), 5)
    pbx_run, uas_runs = call(edge, workdir, xml, destination, uas)
    ok(pbx_run, uas_runs, edge)
    received = (workdir / "carrier0.msg").read_text(errors="replace")
    invite = received[received.index("INVITE sip:") :].split("\n\n", 1)[0]
    assert "Max-Forwards: 4" in invite.splitlines(), invite
    assert_record(account, destination, "3010", "customer")


def test_invite_carrying_the_edge_via_is_482_and_recorded_4370(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    account, domain, destination = api.outbound()
    xml = scenarios.pbx_refused(domain, account.caller, 482)
    ours = f"Via: SIP/2.0/UDP 127.0.0.1:{edge.sip_port};branch=z9hG4bK-been-here-before\n"
    head, sep, rest = xml.partition("From: <sip:")
    xml = head + ours + sep + rest
    ok(*call(edge, workdir, xml, destination, []), edge)
    record = assert_record(account, destination, "4370", "zentrunk")
    assert record["hangup_cause_name"] == "loop_detected"


def test_carrier_pointing_back_at_the_edge_is_a_loop(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    """The operator misconfigures a carrier as the edge itself: the edge's INVITE comes
    back to it, is refused 482 (it carries the edge's own Via), and the call ends 482 /
    4370 instead of circling until Max-Forwards runs out."""
    account, domain, destination = api.outbound()
    carrier_id = api.carrier(edge.sip_port, destination)
    try:
        xml = scenarios.pbx_refused(domain, account.caller, 482)
        ok(*call(edge, workdir, xml, destination, []), edge)
    finally:
        api.remove_carrier(carrier_id)
    record = assert_record(account, destination, "4370", "carrier")
    assert record["hangup_cause_name"] == "loop_detected"
    assert len(account.call_records(destination)) == 1


def test_unknown_trunk_with_max_forwards_zero_is_483_without_a_record(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    account = api.account()
    destination = unique_number()
    xml = with_max_forwards(
        scenarios.pbx_refused("999999999999999998.zt.test", account.caller, 483), 0
    )
    ok(*call(edge, workdir, xml, destination, []), edge)
    assert account.call_records(destination) == []
