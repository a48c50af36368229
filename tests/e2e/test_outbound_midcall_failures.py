"""Answered outbound calls that the PBX's side breaks mid-call, end to end, and how soon
an ended call is listed by the API.

The PBX is `raw_pbx.RawPbx` (one UDP socket driven by the test, so it can hold back its
ACK for good or answer a relayed re-INVITE with a chosen status); the carrier is sipp.
These tests share an edge of their own started with `OPENTRUNK_SIP_T1=0.05`, so 64*T1
(timer H for the 200's ACK, timer B for a relayed re-INVITE) is 3.2 s instead of 32 s:

- the PBX never ACKs the edge's 200: the 200 is re-sent until 64*T1, then both legs get
  BYE and the record is 5340 server_timeout (customer);
- the PBX answers a re-INVITE the carrier sent through the edge with 408, or never
  answers it (timer B): the carrier gets 408 and then BYE, record 5340 (customer);
- the PBX answers that re-INVITE 481: the carrier gets 481 and then BYE, record 5220
  service_interrupted_by_customer (customer).

After a 408 or 481 (or a timeout) the PBX's dialog is over (RFC 3261 12.2.1.2), so the
edge sends it no BYE; the tests check that none comes.

5230 (the PBX's 5xx/6xx mid-call) is not emitted by the edge: a 5xx or 6xx answer to a
relayed request is passed back and the call goes on (RFC 3261 12.2.1.2 ends a dialog
only on 481 and 408), so there is nothing to test here.

`test_call_is_listed_within_a_second_of_its_bye` runs on the session edge (RFC timers)
and measures, per call, the time from the 200 to the PBX's BYE to the closed record
being listed by `GET /Zentrunk/Call/`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp, describe, sipp_binary, unique_number
from e2e.midcall_failure_scenarios import carrier_reinvites
from e2e.raw_pbx import RawPbx
from e2e.test_outbound_calls import assert_record, carriers
from opentrunk.sip.message import Request

pytestmark = pytest.mark.sipp

T1 = 0.05
T2 = 4.0  # not scaled by OPENTRUNK_SIP_T1
TIMER_H = 64 * T1
# The endpoint checks timer H when a retransmission falls due (intervals double up to
# T2), so the give-up comes between 64*T1 and 64*T1 + T2.
ACK_GIVE_UP = TIMER_H + T2


@pytest.fixture(scope="module")
def fast_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    sipp_binary()
    with EdgeProcess(
        tmp_path_factory.mktemp("fast-edge"), env={"OPENTRUNK_SIP_T1": str(T1)}
    ) as process:
        yield process


@pytest.fixture(scope="module")
def fast_api(fast_edge: EdgeProcess) -> Iterator[Api]:
    with Api(fast_edge.http_port) as client:
        yield client


class Call:
    """One call: its account, destination, sipp carrier and raw PBX."""

    def __init__(self, edge: EdgeProcess, api: Api, workdir: Path, carrier_xml: str) -> None:
        self.edge = edge
        self.account = api.account()
        domain = self.account.trunk(acl=["127.0.0.1/32"])
        self.destination = unique_number()
        (self.carrier,) = carriers(api, workdir, self.destination, carrier_xml)
        self.pbx = RawPbx(edge.sip_port, domain, self.account.caller, self.destination)

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pbx.close()
        self.carrier.kill()

    def carrier_done(self, carrier: Sipp | None = None) -> str:
        """Wait for the carrier's scenario; fail with everything known if it failed."""
        run = (carrier or self.carrier).wait(15)
        assert run.returncode == 0, describe(run, edge=self.edge)
        return run.messages

    def answer_bye(self, timeout: float) -> float:
        """Wait for the edge's BYE, answer it 200; returns when it arrived."""
        bye = self.pbx.wait_request("BYE", timeout)
        self.pbx.respond(bye, 200)
        return self.pbx.received[-1][0]


def no_bye_for_the_pbx(pbx: RawPbx) -> None:
    """Nothing but re-sent requests of the failed transaction reach the PBX."""
    deadline = time.monotonic() + 0.5
    while (left := deadline - time.monotonic()) > 0:
        pbx.receive(left)
    methods = {m.method for _, m in pbx.received if isinstance(m, Request)}
    assert methods <= {"INVITE", "ACK"}, methods


# -- the PBX never ACKs the 200 ------------------------------------------------------------


def test_pbx_never_acks_the_200(fast_edge: EdgeProcess, fast_api: Api, workdir: Path) -> None:
    with Call(fast_edge, fast_api, workdir, scenarios.carrier_answer()) as call:
        call.pbx.invite()
        call.pbx.wait_answer()
        first_200 = call.pbx.received[-1][0]
        bye_at = call.answer_bye(ACK_GIVE_UP + 2)
        # The 200 was re-sent (T1, 2*T1, ... capped at T2) until timer H, then BYE.
        assert len(call.pbx.answers_to_invite()) >= 6, call.pbx.received
        waited = bye_at - first_200
        assert TIMER_H <= waited <= ACK_GIVE_UP + 1.5, waited
        carrier_log = call.carrier_done()
    assert "BYE sip:" in carrier_log
    record = assert_record(call.account, call.destination, "5340", "customer")
    assert record["hangup_cause_name"] == "server_timeout"
    assert record["answer_time"] is not None


# -- the PBX fails a re-INVITE relayed from the carrier -------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "name"),
    [
        (408, "5340", "server_timeout"),
        (481, "5220", "service_interrupted_by_customer"),
    ],
)
def test_pbx_fails_a_relayed_reinvite(
    fast_edge: EdgeProcess, fast_api: Api, workdir: Path, status: int, code: str, name: str
) -> None:
    with Call(fast_edge, fast_api, workdir, carrier_reinvites(status)) as call:
        call.pbx.invite()
        call.pbx.wait_answer()
        call.pbx.ack()
        reinvite = call.pbx.wait_request("INVITE", 5)
        assert b"2353687638" in reinvite.body  # the carrier's new offer, relayed
        call.pbx.respond(reinvite, status)
        carrier_log = call.carrier_done()
        no_bye_for_the_pbx(call.pbx)
    # The carrier saw the PBX's status, then the edge's BYE (sipp checked the order).
    assert f"SIP/2.0 {status} " in carrier_log and "BYE sip:" in carrier_log
    record = assert_record(call.account, call.destination, code, "customer")
    assert record["hangup_cause_name"] == name
    assert record["answer_time"] is not None
    assert len(call.account.call_records(call.destination)) == 1


def test_pbx_never_answers_a_relayed_reinvite(
    fast_edge: EdgeProcess, fast_api: Api, workdir: Path
) -> None:
    with Call(fast_edge, fast_api, workdir, carrier_reinvites(408)) as call:
        call.pbx.invite()
        call.pbx.wait_answer()
        call.pbx.ack()
        reinvite = call.pbx.wait_request("INVITE", 5)
        asked_at = call.pbx.received[-1][0]
        # Silence: the edge re-sends the re-INVITE, gives up at timer B, answers the
        # carrier 408 and sends it BYE; the carrier's scenario cannot end before that.
        carrier_log = call.carrier_done()
        assert time.monotonic() - asked_at >= TIMER_H * 0.9
        no_bye_for_the_pbx(call.pbx)
        resent = [
            m
            for _, m in call.pbx.received
            if isinstance(m, Request) and m.method == "INVITE" and m.call_id == reinvite.call_id
        ]
        assert len(resent) >= 4, resent
    assert "SIP/2.0 408 " in carrier_log and "BYE sip:" in carrier_log
    record = assert_record(call.account, call.destination, "5340", "customer")
    assert record["hangup_cause_name"] == "server_timeout"


# -- records are listed soon after the call ends ----------------------------------------------


def test_call_is_listed_within_a_second_of_its_bye(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    delays = []
    for _ in range(3):
        with Call(edge, api, workdir, scenarios.carrier_answer()) as call:
            call.pbx.invite()
            call.pbx.wait_answer()
            call.pbx.ack()
            time.sleep(0.2)
            call.pbx.bye()
            call.pbx.wait_response("BYE", 5)
            ended = call.pbx.received[-1][0]
            deadline = ended + 5
            while not call.account.call_records(call.destination):
                assert time.monotonic() < deadline, "the call was never listed"
                time.sleep(0.01)
            delays.append(time.monotonic() - ended)
            call.carrier_done()
        assert_record(call.account, call.destination, "3010", "customer")
    print(f"BYE's 200 -> record listed: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
    assert max(delays) < 1.0, delays
