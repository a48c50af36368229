"""Transfers (REFER, RFC 3515) end to end: a raw-socket PBX places an outbound call
through the live edge to a sipp carrier (the far party), then transfers it to another
number of the carrier network (a second sipp carrier routed by that number). Each test
checks what the transferor, the far party and the transfer target saw, and the call
records read back through the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import inbound_scenarios as inbound
from e2e import scenarios
from e2e.harness import (
    SIP_DOMAIN,
    Account,
    Api,
    EdgeProcess,
    Sipp,
    SippRun,
    describe,
    unique_number,
)
from e2e.inbound_harness import carrier, inbound_api, inbound_edge, ok, run_all, setup_inbound
from e2e.refer_peers import TARGET_SDP_MARK, AnsweringPbx, TransferringPbx, far_party
from e2e.test_outbound_calls import carriers

pytestmark = pytest.mark.sipp

__all__ = ["inbound_api", "inbound_edge"]  # fixtures used by name


def _answered_call(
    edge: EdgeProcess, api: Api, workdir: Path, far_xml: str
) -> tuple[Account, str, TransferringPbx, list[Sipp]]:
    """An account with an IP-authenticated trunk and an answered call from its PBX to a
    far party (sipp carrier routed by the destination number)."""
    account = api.account()
    domain = account.trunk(acl=["127.0.0.0/8"])
    destination = unique_number()
    far = carriers(api, workdir, destination, far_xml)
    pbx = TransferringPbx(edge.sip_port, domain, account.caller, destination)
    pbx.invite()
    pbx.wait_answer(5.0)
    pbx.ack()
    return account, destination, pbx, far


def _wait(edge: EdgeProcess, *runs: Sipp) -> list[SippRun]:
    results = []
    try:
        results = [run.wait(15) for run in runs]
    finally:
        for run in runs:
            run.kill()
    for result in results:
        assert result.returncode == 0, describe(*results, edge=edge)
    return results


def test_transfer_bridges_far_party_to_target(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, destination, pbx, far = _answered_call(edge, api, workdir, far_party(1000))
    target = unique_number()
    target_xml = scenarios.carrier_answer().replace("o=carrier", TARGET_SDP_MARK)
    (target_sipp,) = carriers(api, workdir, target, target_xml, rate="0.02000")
    domain = f"{pbx.domain}"
    try:
        answer = pbx.refer(f"sip:+{target}@{domain}", referred_by=f"sip:+{account.caller}@{domain}")
        assert answer.status == 202
        seen = pbx.follow_transfer(10.0, until_bye=True)
    finally:
        pbx.close()
    far_run, target_run = _wait(edge, *far, target_sipp)
    # NOTIFY sipfrags: 100 first, the target's ringing, then 200 ending the subscription.
    assert seen.sipfrags[0] == "SIP/2.0 100 Trying", seen
    assert seen.sipfrags[-1] == "SIP/2.0 200 OK", seen
    assert "SIP/2.0 180 Ringing" in seen.sipfrags
    assert all(n.headers.get("Event", "").startswith("refer") for n in seen.notifies)
    assert all("message/sipfrag" in (n.headers.get("Content-Type") or "") for n in seen.notifies)
    assert seen.terminated and seen.bye
    # The target's INVITE: the customer's own number as caller ID, Referred-By carried,
    # and the far party's SDP as the offer.
    target_invite = target_run.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert f"sip:+{target}@127.0.0.1:{target_sipp.port}" in "INVITE sip:" + target_invite
    assert f"From: <sip:+{account.caller}@" in target_invite
    assert f"Referred-By: <sip:+{account.caller}@{domain}>" in target_invite
    assert "o=carrier" in target_run.messages
    # The far party was moved to the target's media by a re-INVITE with the target's SDP.
    assert TARGET_SDP_MARK in far_run.messages
    # Two records: the original call (the far party hung up: 3000) and the transfer leg.
    original = account.call_record(destination)
    assert original["hangup_cause_code"] == "3000", original
    assert original["answer_time"] is not None
    transfer = account.call_record(target)
    assert transfer["call_uuid"] != original["call_uuid"]
    assert transfer["call_direction"] == "outbound"
    assert transfer["from_number"] == account.caller
    assert transfer["to_number"] == target
    assert transfer["trunk_domain"] == domain
    assert transfer["answer_time"] is not None
    assert transfer["hangup_cause_code"] == "3000", transfer
    assert transfer["total_rate"] == "0.02000"


def test_transfer_to_busy_target_keeps_the_call(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, destination, pbx, far = _answered_call(edge, api, workdir, scenarios.carrier_answer())
    target = unique_number()
    (target_sipp,) = carriers(api, workdir, target, scenarios.carrier_refuse(486, ring=True))
    try:
        answer = pbx.refer(f"sip:+{target}@{pbx.domain}")
        assert answer.status == 202
        seen = pbx.follow_transfer(10.0, until_bye=False)
        assert seen.sipfrags[0] == "SIP/2.0 100 Trying", seen
        assert seen.sipfrags[-1].startswith("SIP/2.0 486"), seen
        assert not seen.bye
        # The original call goes on and ends normally from the PBX.
        pbx.bye()
        assert pbx.wait_response("BYE", 5.0).status == 200
    finally:
        pbx.close()
    _wait(edge, *far, target_sipp)
    original = account.call_record(destination)
    assert original["hangup_cause_code"] == "3010", original
    assert original["hangup_source"] == "customer"
    transfer = account.call_record(target)
    assert transfer["answer_time"] is None
    assert transfer["hangup_source"] == "carrier", transfer
    assert transfer["hangup_cause_name"] == "user_busy", transfer


def test_refused_transfers(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    """Refer-To at another domain or a private address: 403; missing or not a number:
    400; the call is unharmed and ends normally."""
    account, destination, pbx, far = _answered_call(edge, api, workdir, scenarios.carrier_answer())
    other_trunk = account.trunk(acl=["127.0.0.0/8"])
    try:
        assert pbx.refer("sip:+14155550100@example.com").status == 403
        assert pbx.refer("sip:+14155550100@10.1.2.3").status == 403
        assert pbx.refer(f"sip:+14155550100@{other_trunk}").status == 403
        assert pbx.refer(f"sip:+14155550100@{SIP_DOMAIN}").status == 403
        assert pbx.refer("tel:+14155550100").status == 403
        assert pbx.refer(None).status == 400
        assert pbx.refer(f"sip:alice@{pbx.domain}").status == 400
        pbx.bye()
        assert pbx.wait_response("BYE", 5.0).status == 200
    finally:
        pbx.close()
    _wait(edge, *far)
    original = account.call_record(destination)
    assert original["hangup_cause_code"] == "3010", original
    # No transfer leg was placed: the account has the one record.
    assert len(account.call_records(destination)) == 1


def test_transfer_from_the_pbx_of_an_inbound_call(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    """The PBX that answered an inbound call transfers the caller to a number of the
    carrier network; the new leg's caller ID is the customer's own (called) number."""
    pbx = AnsweringPbx(inbound_edge.sip_port)
    target_sipp: Sipp | None = None
    try:
        setup = setup_inbound(inbound_api, f"127.0.0.1:{pbx.port}")
        target = unique_number()
        target_xml = scenarios.carrier_answer().replace("o=carrier", TARGET_SDP_MARK)
        (target_sipp,) = carriers(inbound_api, workdir, target, target_xml)
        xml = inbound.carrier_call("+14155550100", expect_reinvite_from_pbx=True, hold_ms=800)
        caller = carrier(inbound_edge, workdir, xml, setup.number)
        pbx.answer_call(5.0)
        domain = f"{setup.trunk_id}.{SIP_DOMAIN}"
        assert pbx.refer(f"sip:+{target}@{domain}").status == 202
        seen = pbx.follow_transfer(10.0, until_bye=True)
    finally:
        pbx.close()
    assert target_sipp is not None
    caller_run, (target_run,) = run_all(caller, target_sipp)
    ok(inbound_edge, caller_run, target_run)
    assert seen.sipfrags[0] == "SIP/2.0 100 Trying" and seen.sipfrags[-1] == "SIP/2.0 200 OK"
    assert f"From: <sip:+{setup.number}@" in target_run.messages
    # The caller (the far party) was moved to the target by a re-INVITE.
    assert TARGET_SDP_MARK in caller_run.messages
    original = setup.account.call_record(setup.number)
    assert original["call_direction"] == "inbound"
    assert original["hangup_cause_code"] == "3000", original
    transfer = setup.account.call_record(target)
    assert transfer["call_direction"] == "outbound"
    assert transfer["from_number"] == setup.number
    assert transfer["trunk_domain"] == domain
    assert transfer["answer_time"] is not None
