"""Both directions of one customer (issue 5 item 9): a call from the account's PBX (its
outbound trunk) to one of its own numbers (on its inbound trunk) is delivered on-net,
straight to the inbound trunk's PBX: two records (outbound and inbound), nothing sent to
a carrier, no loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, SilentPeer, Sipp, pbx_args, sipp_group
from e2e.inbound_harness import (
    inbound_api,
    inbound_edge,
    ok,
    pbx,
    received_invite,
    setup_inbound,
)

pytestmark = pytest.mark.sipp

__all__ = ["inbound_api", "inbound_edge"]  # fixtures used by name


def test_call_to_own_number_is_delivered_on_net(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    called_pbx = pbx(workdir, scenarios.carrier_answer(), "called")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{called_pbx.port}")
    account = setup.account
    domain = account.trunk(acl=["127.0.0.0/8"])
    # A carrier that would take the number if the call went off-net: it must get nothing.
    carrier = SilentPeer()
    inbound_api.carrier(carrier.port, setup.number)
    calling = Sipp(
        scenarios.pbx_call(domain, account.caller, hold_ms=600),
        pbx_args(inbound_edge, "+" + setup.number),
        workdir,
        "calling",
    ).start()
    try:
        with sipp_group(calling, called_pbx):
            calling_run = calling.wait(20)
            called_run = called_pbx.wait(10)
        assert carrier.received() == []
    finally:
        carrier.close()
    ok(inbound_edge, calling_run, called_run)
    invite = received_invite(called_run)
    assert invite.startswith(f"INVITE sip:+{setup.number}@127.0.0.1:{called_pbx.port} ")
    assert f"<sip:+{account.caller}@" in invite
    records = {r["call_direction"]: r for r in account.call_records(setup.number)}
    assert sorted(records) == ["inbound", "outbound"], records
    outbound, inbound = records["outbound"], records["inbound"]
    # Each record from its own side: the calling PBX hung up.
    assert (outbound["hangup_cause_code"], outbound["hangup_source"]) == ("3010", "customer")
    assert (inbound["hangup_cause_code"], inbound["hangup_source"]) == ("3000", "carrier")
    assert inbound["from_number"] == account.caller
    assert inbound["trunk_domain"] == f"{setup.trunk_id}.zt.test"
    assert outbound["trunk_domain"] == domain
    assert outbound["answer_time"] is not None and inbound["answer_time"] is not None
    assert outbound["total_amount"] in ("0", "0.00000")
    insights = account.insights(inbound)
    assert insights["from"]["carrier"] == "on-net"
    assert insights["to"]["carrier"] == f"127.0.0.1:{called_pbx.port}"


def test_own_number_not_on_a_trunk_is_refused_on_net(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    setup = setup_inbound(inbound_api, "127.0.0.1:5999", attach=False)
    account = setup.account
    domain = account.trunk(acl=["127.0.0.0/8"])
    carrier = SilentPeer()
    inbound_api.carrier(carrier.port, setup.number)
    calling = Sipp(
        scenarios.pbx_refused(domain, account.caller, 404),
        pbx_args(inbound_edge, "+" + setup.number),
        workdir,
        "calling",
    ).start()
    try:
        with sipp_group(calling):
            calling_run = calling.wait(20)
        assert carrier.received() == []
    finally:
        carrier.close()
    ok(inbound_edge, calling_run)
    records = {r["call_direction"]: r for r in account.call_records(setup.number)}
    assert records["inbound"]["hangup_cause_code"] == "4080", records
    assert records["outbound"]["hangup_source"] == "carrier", records
