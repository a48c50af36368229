"""Shared pieces of the inbound, mid-call and transfer e2e suites: a live edge with
short origination timeouts and one carrier whose inbound source is 127.0.0.1 (where
every sipp runs), accounts with a number on an inbound trunk, and sipp runners for the
carrier (UAC) and the customer's PBXes (UAS).

Each suite module gets its own edge (module-scoped fixtures): import the fixtures
`inbound_edge` and `inbound_api` into the test module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import (
    Account,
    Api,
    EdgeProcess,
    Sipp,
    SippRun,
    describe,
    sipp_binary,
    unique_number,
    wait_udp,
)

CARRIER_NAME = "inbound-carrier"
# Short origination timeouts, so that failover to a fallback URI is quick.
ORIGINATION_TIMEOUTS = {
    "OPENTRUNK_ORIGINATION_PROVISIONAL_TIMEOUT": "1.0",
    "OPENTRUNK_ORIGINATION_TIMEOUT": "1.5",
}


@pytest.fixture(scope="module")
def inbound_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    sipp_binary()
    with EdgeProcess(tmp_path_factory.mktemp("inbound-edge"), env=ORIGINATION_TIMEOUTS) as process:
        yield process


def inbound_client(edge: EdgeProcess) -> Api:
    """An API client of `edge` whose operator has added the inbound carrier: the one
    whose source is 127.0.0.1. Its own address is irrelevant (no outbound call is
    routed to it); its prefix matches no test number."""
    client = Api(edge.http_port)
    client.carrier(9, "999", name=CARRIER_NAME, inbound_sources=["127.0.0.1/32"])
    return client


@pytest.fixture(scope="module")
def inbound_api(inbound_edge: EdgeProcess) -> Iterator[Api]:
    with inbound_client(inbound_edge) as client:
        yield client


@dataclass
class Inbound:
    """An account with one number on an inbound trunk."""

    account: Account
    number: str  # E.164 digits
    trunk_id: str


def uri(account: Account, text: str, **fields: Any) -> str:
    return str(account.post("Zentrunk/URI/", {"uri": text, **fields})["uri_uuid"])


def setup_inbound(
    api: Api,
    primary: str | None,
    fallback: str | None = None,
    *,
    primary_fields: dict[str, Any] | None = None,
    trunk_status: str = "enabled",
    attach: bool = True,
) -> Inbound:
    account = api.account()
    number = unique_number("1646")
    api.add_number(account, number)
    body: dict[str, Any] = {"trunk_direction": "inbound", "trunk_status": trunk_status}
    if primary is not None:
        body["primary_uri_uuid"] = uri(account, primary, **(primary_fields or {}))
    if fallback is not None:
        body["fallback_uri_uuid"] = uri(account, fallback)
    trunk_id = account.post("Zentrunk/Trunk/", body)["trunk_id"]
    if attach:
        account.post(f"Number/{number}/", {"app_id": trunk_id})
    return Inbound(account, number, trunk_id)


def pbx(workdir: Path, xml: str, name: str) -> Sipp:
    run = Sipp(xml, ["-m", "1", "-timeout", "20s", "-timeout_error"], workdir, name).start()
    wait_udp(run.port)
    return run


def carrier(
    edge: EdgeProcess, workdir: Path, xml: str, number: str, *, called: str | None = None
) -> Sipp:
    args = [
        f"127.0.0.1:{edge.sip_port}",
        "-s",
        called or "+" + number,
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
    ]
    return Sipp(xml, args, workdir, "carrier").start()


def run_all(carrier_run: Sipp, *pbxes: Sipp) -> tuple[SippRun, list[SippRun]]:
    try:
        carrier_result = carrier_run.wait(30)
        pbx_results = [run.wait(15) for run in pbxes]
    finally:
        for run in (carrier_run, *pbxes):
            run.kill()
    return carrier_result, pbx_results


def ok(edge: EdgeProcess, *runs: SippRun) -> None:
    for run in runs:
        assert run.returncode == 0, describe(*runs, edge=edge)


def record_of(setup: Inbound, code: str, source: str) -> dict[str, Any]:
    record = setup.account.call_record(setup.number)
    assert record["hangup_cause_code"] == code, record
    assert record["hangup_source"] == source, record
    assert record["call_direction"] == "inbound", record
    assert record["to_number"] == setup.number
    return record


def answered_by(setup: Inbound, record: dict[str, Any]) -> str | None:
    insights = setup.account.insights(record)
    assert insights["from"]["carrier"] == CARRIER_NAME
    carrier_name: str | None = insights["to"]["carrier"]
    return carrier_name


def received_invite(run: SippRun) -> str:
    """The first INVITE a sipp UAS received, as logged."""
    return "INVITE sip:" + run.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
