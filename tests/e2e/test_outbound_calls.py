"""Outbound calls end to end: sipp as the PBX -> live `opentrunk serve` -> sipp as the
carrier, each test checking what the PBX saw and the call record read back through the
API. Every test has its own account, trunk and destination number; its carriers are
routed by that whole number as prefix, so no other test's carrier can take its calls."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from e2e import scenarios
from e2e.harness import (
    Account,
    Api,
    EdgeProcess,
    SilentPeer,
    Sipp,
    SippRun,
    assert_digest_answered,
    carrier_args,
    describe,
    pbx_args,
    sipp_group,
    unique_number,
    wait_udp,
)

pytestmark = pytest.mark.sipp


def carriers(api: Api, workdir: Path, destination: str, *xmls: str, **fields: Any) -> list[Sipp]:
    """Start one sipp UAS per scenario, registered as carriers for `destination` with
    priorities 10, 20, ... in the given order."""
    runs = []
    for index, xml in enumerate(xmls):
        run = Sipp(xml, carrier_args(), workdir, f"carrier{index}").start()
        runs.append(run)
        wait_udp(run.port)
        api.carrier(run.port, destination, priority=10 * (index + 1), **fields)
    return runs


def call(
    edge: EdgeProcess,
    workdir: Path,
    xml: str,
    destination: str,
    uas: list[Sipp],
    **pbx: Any,
) -> tuple[SippRun, list[SippRun]]:
    """Run the PBX scenario to `destination`, then collect the carriers."""
    pbx_sipp = Sipp(xml, pbx_args(edge, destination, **pbx), workdir, "pbx").start()
    with sipp_group(pbx_sipp, *uas):
        pbx_run = pbx_sipp.wait(30)
        uas_runs = [run.wait(10) for run in uas]
    return pbx_run, uas_runs


def ok(pbx_run: SippRun, uas_runs: list[SippRun], edge: EdgeProcess) -> None:
    for run in [pbx_run, *uas_runs]:
        assert run.returncode == 0, describe(pbx_run, *uas_runs, edge=edge)


def assert_record(account: Account, destination: str, code: str, source: str) -> dict[str, Any]:
    record = account.call_record(destination)
    assert record["hangup_cause_code"] == code, record
    assert record["hangup_source"] == source, record
    assert record["end_time"] is not None
    return record


# -- complete calls ------------------------------------------------------------------------


def test_ip_acl_call_is_carried_and_recorded(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(acl=["127.0.0.0/8"])
    destination = unique_number()
    uas = carriers(api, workdir, destination, scenarios.carrier_answer(), rate="0.01200")
    xml = scenarios.pbx_call(domain, account.caller, hold_ms=1200)
    ok(*call(edge, workdir, xml, "+" + destination, uas), edge)
    record = assert_record(account, destination, "3010", "customer")
    assert record["hangup_cause_name"] == "normal_hangup"
    assert record["call_direction"] == "outbound"
    assert record["from_number"] == account.caller
    assert record["to_number"] == destination
    assert record["to_country"] == "US"
    assert record["from_country"] == "US"
    assert record["trunk_domain"] == domain
    assert record["transport_protocol"] == "udp"
    assert record["answer_time"] is not None
    assert record["call_duration"] in (1, 2)
    assert record["bill_duration"] == 60
    assert record["total_rate"] == "0.01200"
    assert record["total_amount"] == "0.01200"
    assert account.insights(record)["post_dial_delay"] is not None


def test_digest_call(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(username="pbxdigest1", password="Corr3ct!horse")
    destination = unique_number()
    uas = carriers(api, workdir, destination, scenarios.carrier_answer(early_media=True))
    xml = scenarios.pbx_call(domain, account.caller, auth=True)
    run = call(
        edge, workdir, xml, destination, uas, username="pbxdigest1", password="Corr3ct!horse"
    )
    ok(*run, edge)
    # The carrier's 183 with SDP reached the PBX.
    assert "183 Session Progress" in run[0].messages
    assert_record(account, destination, "3010", "customer")


def test_carrier_hangs_up(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(api, workdir, destination, scenarios.carrier_answer(hangs_up_after_ms=500))
    xml = scenarios.pbx_call(domain, account.caller, carrier_hangs_up=True)
    ok(*call(edge, workdir, xml, destination, uas), edge)
    record = assert_record(account, destination, "3000", "carrier")
    assert record["hangup_cause_name"] == "normal_hangup"


def test_carrier_digest_challenge_is_answered(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(
        api,
        workdir,
        destination,
        scenarios.carrier_answer(challenge=True),
        username="opentrunk",
        password="carrier-pw-42",
    )
    xml = scenarios.pbx_call(domain, account.caller)
    pbx_run, uas_runs = call(edge, workdir, xml, destination, uas)
    ok(pbx_run, uas_runs, edge)
    # The retried INVITE carries a digest answer that is right for the carrier's password.
    assert_digest_answered(
        uas_runs[0], "Proxy-Authorization", "opentrunk", "carrier.test", "carrier-pw-42"
    )
    assert_record(account, destination, "3010", "customer")


def test_first_carrier_silent_second_answers(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    silent = SilentPeer()
    try:
        api.carrier(silent.port, destination, priority=5)
        uas = carriers(api, workdir, destination, scenarios.carrier_answer())
        xml = scenarios.pbx_call(domain, account.caller)
        ok(*call(edge, workdir, xml, destination, uas), edge)
        assert any(p.startswith(b"INVITE ") for p in silent.received())
    finally:
        silent.close()
    assert_record(account, destination, "3010", "customer")


# -- calls that end before answer ------------------------------------------------------------


def test_pbx_cancels_before_answer(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(api, workdir, destination, scenarios.carrier_ring_until_cancel())
    xml = scenarios.pbx_cancel(domain, account.caller)
    ok(*call(edge, workdir, xml, destination, uas), edge)
    record = assert_record(account, destination, "4550", "customer")
    assert record["answer_time"] is None
    assert record["call_duration"] == 0
    assert record["total_amount"] == "0.00000"


def test_carrier_busy_does_not_fail_over(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    second = SilentPeer()
    try:
        uas = carriers(api, workdir, destination, scenarios.carrier_refuse(486, ring=True))
        api.carrier(second.port, destination, priority=50)
        xml = scenarios.pbx_refused(domain, account.caller, 486)
        ok(*call(edge, workdir, xml, destination, uas), edge)
        time.sleep(0.3)
        assert second.received() == []
    finally:
        second.close()
    assert_record(account, destination, "4410", "carrier")


def test_carrier_timeout(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    silent = SilentPeer()
    try:
        api.carrier(silent.port, destination)
        xml = scenarios.pbx_refused(domain, account.caller, 408)
        ok(*call(edge, workdir, xml, destination, []), edge)
    finally:
        silent.close()
    assert_record(account, destination, "4160", "carrier")


def test_all_carriers_failing(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(
        api, workdir, destination, scenarios.carrier_refuse(503), scenarios.carrier_refuse(500)
    )
    xml = scenarios.pbx_refused(domain, account.caller, 503)
    ok(*call(edge, workdir, xml, destination, uas), edge)
    assert_record(account, destination, "5000", "zentrunk")


# -- refusals by the edge --------------------------------------------------------------------


def refused(
    edge: EdgeProcess,
    workdir: Path,
    domain: str,
    caller: str,
    destination: str,
    status: int,
    **pbx: Any,
) -> None:
    xml = scenarios.pbx_refused(domain, caller, status, auth="username" in pbx)
    ok(*call(edge, workdir, xml, destination, [], **pbx), edge)


def test_wrong_password(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(username="pbxdigest2", password="Corr3ct!horse")
    destination = unique_number()
    refused(
        edge,
        workdir,
        domain,
        account.caller,
        destination,
        403,
        username="pbxdigest2",
        password="wrong-password",
    )
    assert_record(account, destination, "4060", "zentrunk")


def test_source_not_in_acl(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(acl=["192.0.2.0/24", "2001:db8::/32"])
    destination = unique_number()
    refused(edge, workdir, domain, account.caller, destination, 403)
    assert_record(account, destination, "4060", "zentrunk")


def test_unknown_trunk(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    destination = unique_number()
    refused(edge, workdir, "999999999999999999.zt.test", account.caller, destination, 404)
    assert account.call_records(destination) == []


def test_disabled_trunk(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(acl=["127.0.0.1/32"], trunk_status="disabled")
    destination = unique_number()
    refused(edge, workdir, domain, account.caller, destination, 403)
    assert_record(account, destination, "4540", "zentrunk")


def test_trunk_change_applies_to_next_call(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(acl=["127.0.0.1/32"], trunk_status="disabled")
    trunk_id = domain.split(".")[0]
    first = unique_number()
    refused(edge, workdir, domain, account.caller, first, 403)
    account.post(f"Zentrunk/Trunk/{trunk_id}/", {"trunk_status": "enabled"})
    second = unique_number()
    # Enabled now, and no carrier for `second`: routing refuses it (404, 4090).
    refused(edge, workdir, domain, account.caller, second, 404)
    assert_record(account, first, "4540", "zentrunk")
    assert_record(account, second, "4090", "zentrunk")


def test_invalid_destination(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    domain = account.trunk(acl=["127.0.0.1/32"])
    refused(edge, workdir, domain, account.caller, "12345", 484)
    assert_record(account, "12345", "4120", "zentrunk")


@pytest.mark.parametrize(
    ("caller", "code"),
    [("anonymous", "4130"), ("12345", "4140"), ("14155550100", "4190")],
)
def test_caller_id_rules(
    edge: EdgeProcess, api: Api, workdir: Path, caller: str, code: str
) -> None:
    account, domain, destination = api.outbound()
    refused(edge, workdir, domain, caller, destination, 403)
    assert_record(account, destination, code, "zentrunk")


def test_caller_id_policy_off_allows_any_number(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account(caller_id_policy=False)
    domain = account.trunk(acl=["127.0.0.1/32"])
    destination = unique_number()
    refused(edge, workdir, domain, "14155550100", destination, 404)  # past screening
    assert_record(account, destination, "4090", "zentrunk")


def test_barred_country(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account(countries="GB")
    domain = account.trunk(acl=["127.0.0.1/32"])
    destination = unique_number()
    refused(edge, workdir, domain, account.caller, destination, 403)
    assert_record(account, destination, "4560", "zentrunk")


def test_barred_prefix(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    destination = unique_number()
    account = api.account(barred_prefixes=[destination[:6]])
    domain = account.trunk(acl=["127.0.0.1/32"])
    refused(edge, workdir, domain, account.caller, destination, 403)
    assert_record(account, destination, "4570", "zentrunk")


# -- limits ----------------------------------------------------------------------------------


def test_cps_over_trunk_limit(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account(cps=1)
    domain = account.trunk(acl=["127.0.0.1/32"])
    destination = unique_number()
    # No carrier: an admitted call ends 404 (4090); the others are over the CPS limit.
    xml = scenarios.pbx_refused(domain, account.caller, 503, also=(404,))
    ok(*call(edge, workdir, xml, destination, [], calls=4, rate=50), edge)
    deadline = time.monotonic() + 5
    while len(account.call_records(destination)) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    codes = sorted(r["hangup_cause_code"] for r in account.call_records(destination))
    assert codes == ["4090", "5180", "5180", "5180"], codes


def test_concurrency_over_account_limit(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account(max_calls=1, cps=50)
    domain = account.trunk(acl=["127.0.0.1/32"])
    first, second = unique_number(), unique_number()
    uas = carriers(api, workdir, first, scenarios.carrier_answer())
    up = Sipp(
        scenarios.pbx_call(domain, account.caller, hold_ms=2500),
        pbx_args(edge, first),
        workdir,
        "pbx-up",
    ).start()
    with sipp_group(up, *uas):
        time.sleep(1.0)
        xml = scenarios.pbx_refused(domain, account.caller, 503)
        over = call(edge, workdir, xml, second, [])
        up_run = up.wait(20)
        uas_runs = [u.wait(10) for u in uas]
    ok(over[0], [], edge)
    ok(up_run, uas_runs, edge)
    assert_record(account, second, "5190", "zentrunk")
    assert_record(account, first, "3010", "customer")
    # The slot came back: the next call is admitted (and refused later, by routing).
    third = unique_number()
    refused(edge, workdir, domain, account.caller, third, 404)
    assert_record(account, third, "4090", "zentrunk")
