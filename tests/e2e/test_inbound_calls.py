"""Inbound calls end to end (issue 5): sipp as the carrier (UAC) -> live `opentrunk
serve` -> sipp as the customer's PBXes (UAS, one per origination URI). Each test checks
what each sipp saw and the call record read back through the API.

The edge (`inbound_harness.inbound_edge`) gives up a silent URI after 1 s and one that
only sent 100 after 1.5 s.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from e2e import inbound_scenarios as inbound
from e2e import scenarios
from e2e.harness import (
    Api,
    EdgeProcess,
    SilentPeer,
    assert_digest_answered,
    free_port,
    unique_number,
)
from e2e.inbound_harness import (
    answered_by,
    carrier,
    inbound_api,
    inbound_edge,
    ok,
    pbx,
    received_invite,
    record_of,
    run_all,
    setup_inbound,
)

pytestmark = pytest.mark.sipp

__all__ = ["inbound_api", "inbound_edge"]  # fixtures used by name


# -- delivery ------------------------------------------------------------------------------


def test_delivered_to_primary(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    primary = pbx(workdir, scenarios.carrier_answer(), "primary")
    fallback = pbx(workdir, scenarios.carrier_answer(), "fallback")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}", f"127.0.0.1:{fallback.port}")
    caller = "+442071838750"
    carrier_run, (primary_run, fallback_run) = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_call(caller, hold_ms=1100), setup.number),
        primary,
        fallback,
    )
    ok(inbound_edge, carrier_run, primary_run)
    invite = received_invite(primary_run)
    # Request-URI user: the called number; From: the caller as the carrier sent it.
    assert invite.startswith(f"INVITE sip:+{setup.number}@127.0.0.1:{primary.port} SIP/2.0")
    assert f"<sip:{caller}@" in invite
    assert "Content-Type: application/sdp" in invite
    # The PBX never sees the carrier's dialog: Call-ID and tags are the edge's own.
    assert "CarrierTag" not in invite
    assert "INVITE sip:" not in fallback_run.messages
    record = record_of(setup, "3000", "carrier")
    assert record["from_number"] == caller.lstrip("+")
    assert record["from_country"] == "GB"
    assert record["to_country"] == "US"
    assert record["answer_time"] is not None
    assert record["call_duration"] in (1, 2)
    assert record["trunk_domain"] == f"{setup.trunk_id}.zt.test"
    assert answered_by(setup, record) == f"127.0.0.1:{primary.port}"


def test_uri_forms_sip_user_and_transport(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    primary = pbx(workdir, scenarios.carrier_answer(), "primary")
    text = f"sip:pbx@127.0.0.1:{primary.port};transport=udp"
    setup = setup_inbound(inbound_api, text)
    carrier_run, (primary_run,) = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_call("+14155550100"), setup.number),
        primary,
    )
    ok(inbound_edge, carrier_run, primary_run)
    assert received_invite(primary_run).startswith(f"INVITE sip:+{setup.number}@127.0.0.1:")
    assert answered_by(setup, record_of(setup, "3000", "carrier")) == text


def test_called_number_normalised(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    """The carrier sends the number without "+": it is found in E.164 normal form."""
    primary = pbx(workdir, scenarios.carrier_answer(), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_call("+14155550100")
    carrier_run, (primary_run,) = run_all(
        carrier(inbound_edge, workdir, xml, setup.number, called=setup.number), primary
    )
    ok(inbound_edge, carrier_run, primary_run)
    assert received_invite(primary_run).startswith(f"INVITE sip:+{setup.number}@")
    record_of(setup, "3000", "carrier")


# -- failover ----------------------------------------------------------------------------


def test_primary_silent_fallback_answers(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    silent = SilentPeer()
    try:
        fallback = pbx(workdir, scenarios.carrier_answer(), "fallback")
        setup = setup_inbound(inbound_api, f"127.0.0.1:{silent.port}", f"127.0.0.1:{fallback.port}")
        started = time.monotonic()
        carrier_run, (fallback_run,) = run_all(
            carrier(inbound_edge, workdir, inbound.carrier_call("+14155550100"), setup.number),
            fallback,
        )
        elapsed = time.monotonic() - started
        ok(inbound_edge, carrier_run, fallback_run)
        assert any(p.startswith(b"INVITE ") for p in silent.received())
        # The silent primary is given up after the provisional timeout (1 s here).
        assert elapsed >= 1.0
        record = record_of(setup, "3000", "carrier")
        assert answered_by(setup, record) == f"127.0.0.1:{fallback.port}"
    finally:
        silent.close()


def test_primary_503_fails_over(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    primary = pbx(workdir, scenarios.carrier_refuse(503), "primary")
    fallback = pbx(workdir, scenarios.carrier_answer(), "fallback")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}", f"127.0.0.1:{fallback.port}")
    carrier_run, runs = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_call("+14155550100"), setup.number),
        primary,
        fallback,
    )
    ok(inbound_edge, carrier_run, *runs)
    record = record_of(setup, "3000", "carrier")
    assert answered_by(setup, record) == f"127.0.0.1:{fallback.port}"


def test_primary_486_no_failover(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    primary = pbx(workdir, scenarios.carrier_refuse(486), "primary")
    fallback = pbx(workdir, scenarios.carrier_answer(), "fallback")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}", f"127.0.0.1:{fallback.port}")
    carrier_run, (primary_run, fallback_run) = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_refused("+14155550100", 486), setup.number),
        primary,
        fallback,
    )
    ok(inbound_edge, carrier_run, primary_run)
    assert "INVITE sip:" not in fallback_run.messages
    record = record_of(setup, "4410", "customer")
    assert record["hangup_cause_name"] == "user_busy"
    assert record["answer_time"] is None


def test_primary_refusing_tcp_fails_over_to_udp(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    closed = free_port()  # nothing listens on it: the TCP connection is refused
    fallback = pbx(workdir, scenarios.carrier_answer(), "fallback")
    setup = setup_inbound(
        inbound_api, f"127.0.0.1:{closed};transport=tcp", f"127.0.0.1:{fallback.port}"
    )
    started = time.monotonic()
    carrier_run, (fallback_run,) = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_call("+14155550100"), setup.number),
        fallback,
    )
    ok(inbound_edge, carrier_run, fallback_run)
    record = record_of(setup, "3000", "carrier")
    assert answered_by(setup, record) == f"127.0.0.1:{fallback.port}"
    # A refused connection is failed over at once, not after the 1 s timeout.
    assert time.monotonic() - started < 3.0


# -- customer outcomes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "relayed"),
    [(480, "4350", 480), (488, "4640", 488), (503, "5360", 503)],
)
def test_pbx_refusals_map_to_customer_codes(
    inbound_edge: EdgeProcess,
    inbound_api: Api,
    workdir: Path,
    status: int,
    code: str,
    relayed: int,
) -> None:
    primary = pbx(workdir, scenarios.carrier_refuse(status), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_refused("+14155550100", relayed)
    carrier_run, runs = run_all(carrier(inbound_edge, workdir, xml, setup.number), primary)
    ok(inbound_edge, carrier_run, *runs)
    record_of(setup, code, "customer")


def test_pbx_times_out(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    silent = SilentPeer()
    try:
        setup = setup_inbound(inbound_api, f"127.0.0.1:{silent.port}")
        xml = inbound.carrier_refused("+14155550100", 408)
        carrier_run, _ = run_all(carrier(inbound_edge, workdir, xml, setup.number))
        ok(inbound_edge, carrier_run)
        record = record_of(setup, "4170", "customer")
        assert record["hangup_cause_name"] == "request_timeout_customer"
        # The edge gave up on the silent PBX with a CANCEL... of an INVITE never
        # answered: the INVITE itself was sent (and retransmitted).
        assert any(p.startswith(b"INVITE ") for p in silent.received())
    finally:
        silent.close()


def test_carrier_cancels(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    primary = pbx(workdir, scenarios.carrier_ring_until_cancel(), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    xml = inbound.carrier_cancel("+14155550100")
    carrier_run, runs = run_all(carrier(inbound_edge, workdir, xml, setup.number), primary)
    ok(inbound_edge, carrier_run, *runs)
    record = record_of(setup, "4420", "carrier")
    assert record["hangup_cause_name"] == "carrier_cancelled"


# -- refusals ------------------------------------------------------------------------------


def test_number_not_on_a_trunk(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    setup = setup_inbound(inbound_api, "127.0.0.1:5999", attach=False)
    xml = inbound.carrier_refused("+14155550100", 404)
    carrier_run, _ = run_all(carrier(inbound_edge, workdir, xml, setup.number))
    ok(inbound_edge, carrier_run)
    assert "4080 route_not_found" in carrier_run.messages
    record = record_of(setup, "4080", "zentrunk")
    assert record["trunk_domain"] == ""


def test_disabled_trunk_is_4080(inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path) -> None:
    setup = setup_inbound(inbound_api, "127.0.0.1:5999", trunk_status="disabled")
    xml = inbound.carrier_refused("+14155550100", 404)
    carrier_run, _ = run_all(carrier(inbound_edge, workdir, xml, setup.number))
    ok(inbound_edge, carrier_run)
    record_of(setup, "4080", "zentrunk")


def test_unknown_number_is_404_without_record(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    number = unique_number("1646")  # in nobody's inventory
    xml = inbound.carrier_refused("+14155550100", 404)
    carrier_run, _ = run_all(carrier(inbound_edge, workdir, xml, number))
    ok(inbound_edge, carrier_run)


def test_uri_that_does_not_resolve_is_4320(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    # .invalid never resolves (RFC 6761), so no query leaves the machine for long.
    setup = setup_inbound(inbound_api, "pbx.opentrunk-test.invalid:5060")
    xml = inbound.carrier_refused("+14155550100", 480)
    carrier_run, _ = run_all(carrier(inbound_edge, workdir, xml, setup.number))
    ok(inbound_edge, carrier_run)
    record = record_of(setup, "4320", "zentrunk")
    assert record["hangup_cause_name"] == "uri_invalid"


def test_trunk_without_uri_is_4310(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    setup = setup_inbound(inbound_api, "127.0.0.1:5999")
    # Deleting the URI leaves the trunk without one (the store sets the link to null).
    trunk = setup.account.get(f"Zentrunk/Trunk/{setup.trunk_id}/").json()
    r = inbound_api.http.delete(
        f"/v1/Account/{setup.account.auth_id}/Zentrunk/URI/{trunk['primary_uri_uuid']}/",
        auth=(setup.account.auth_id, setup.account.auth_token),
    )
    assert r.status_code == 204, r.text
    xml = inbound.carrier_refused("+14155550100", 480)
    carrier_run, _ = run_all(carrier(inbound_edge, workdir, xml, setup.number))
    ok(inbound_edge, carrier_run)
    record_of(setup, "4310", "zentrunk")


def test_unknown_source_is_403(inbound_edge: EdgeProcess, inbound_api: Api) -> None:
    """An INVITE that is not for a trunk domain, from an address no carrier lists."""
    setup = setup_inbound(inbound_api, "127.0.0.1:5999")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        invite = (
            f"INVITE sip:+{setup.number}@127.0.0.1:{inbound_edge.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bK-inbound-403;rport\r\n"
            "From: <sip:+14155550100@127.0.0.2>;tag=x1\r\n"
            f"To: <sip:+{setup.number}@127.0.0.1>\r\n"
            "Call-ID: inbound-403@127.0.0.2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            "Contact: <sip:a@127.0.0.2>\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(invite.encode(), ("127.0.0.1", inbound_edge.sip_port))
        statuses = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(s >= 200 for s in statuses):
            data = sock.recv(65536)
            statuses.append(int(data.split(b" ", 2)[1]))
    assert statuses[-1] == 403
    time.sleep(0.5)
    assert setup.account.call_records(setup.number) == []


# -- URI authentication --------------------------------------------------------------------


@pytest.mark.parametrize("challenge", [401, 407])
def test_uri_digest_authentication(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path, challenge: int
) -> None:
    primary = pbx(workdir, inbound.pbx_answer(challenge=challenge), "primary")
    setup = setup_inbound(
        inbound_api,
        f"127.0.0.1:{primary.port}",
        primary_fields={
            "authentication_needed": True,
            "username": "edgeuser",
            "password": "uri-secret-77",
        },
    )
    carrier_run, (primary_run,) = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_call("+14155550100"), setup.number),
        primary,
    )
    ok(inbound_edge, carrier_run, primary_run)
    header = "Authorization" if challenge == 401 else "Proxy-Authorization"
    assert_digest_answered(primary_run, header, "edgeuser", "pbx.test", "uri-secret-77")
    assert "uri-secret-77" not in inbound_edge.output()
    record_of(setup, "3000", "carrier")
