"""Inbound calls count against the account's limits like outbound ones: concurrent calls
(a second call while one is up: 503, 5190) and calls per second (503, 5180)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from e2e import inbound_scenarios as inbound
from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp
from e2e.inbound_harness import inbound_api, inbound_edge, ok, pbx, run_all, setup_inbound
from opentrunk.sip.message import Response, parse_message

pytestmark = pytest.mark.sipp

__all__ = ["inbound_api", "inbound_edge"]  # fixtures used by name

CONFIG_CACHE = 1.2  # the edge reads account limits through a one-second cache


def _carrier(edge: EdgeProcess, workdir: Path, xml: str, number: str, name: str) -> Sipp:
    args = [f"127.0.0.1:{edge.sip_port}", "-s", "+" + number, "-m", "1"]
    return Sipp(xml, [*args, "-timeout", "20s", "-timeout_error"], workdir, name).start()


def test_second_inbound_call_over_max_calls_is_5190(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    primary = pbx(workdir, scenarios.carrier_answer(), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    inbound_api.limits(setup.account, max_calls=1)
    time.sleep(CONFIG_CACHE)
    first = _carrier(
        inbound_edge,
        workdir,
        inbound.carrier_call("+14155550100", hold_ms=2500),
        setup.number,
        "c1",
    )
    # The first call is up (answered within ~0.2 s) when the second arrives.
    time.sleep(1.0)
    second = _carrier(
        inbound_edge, workdir, inbound.carrier_refused("+14155550101", 503), setup.number, "c2"
    )
    first_run, (second_run, pbx_run) = run_all(first, second, primary)
    ok(inbound_edge, first_run, second_run, pbx_run)
    assert "5190" in second_run.messages
    codes = sorted(r["hangup_cause_code"] for r in setup.account.call_records(setup.number))
    assert codes == ["3000", "5190"], codes


# The carrier's offer (an INVITE without one is refused 488, docs/edge.md).
_SDP = (
    "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _invite(edge_port: int, local_port: int, number: str, index: int) -> bytes:
    return (
        f"INVITE sip:+{number}@127.0.0.1:{edge_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-cps-{index};rport\r\n"
        f"From: <sip:+1415555010{index}@127.0.0.1>;tag=cps{index}\r\n"
        f"To: <sip:+{number}@127.0.0.1>\r\nCall-ID: cps-{index}-{time.monotonic_ns()}\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:carrier@127.0.0.1:{local_port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(_SDP)}\r\n\r\n{_SDP}"
    ).encode()


def test_inbound_calls_over_cps_are_5180(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    """Two INVITEs back to back with a CPS of 1: the second is refused at once."""
    primary = pbx(workdir, scenarios.carrier_refuse(486), "primary")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{primary.port}")
    inbound_api.limits(setup.account, cps=1)
    time.sleep(CONFIG_CACHE)
    finals: dict[str, Response] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        for index in (1, 2):
            sock.sendto(
                _invite(inbound_edge.sip_port, port, setup.number, index),
                (
                    "127.0.0.1",
                    inbound_edge.sip_port,
                ),
            )
        deadline = time.monotonic() + 5
        while len(finals) < 2 and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                message = parse_message(sock.recv(65536))
            except TimeoutError:
                break
            if isinstance(message, Response) and message.status >= 200:
                finals[message.headers.get("Call-ID") or ""] = message
    primary.wait(10)
    primary.kill()
    statuses = sorted(m.status for m in finals.values())
    assert statuses == [486, 503], statuses
    refused = next(m for m in finals.values() if m.status == 503)
    assert "5180" in (refused.headers.get("Reason") or "")
    codes = sorted(r["hangup_cause_code"] for r in setup.account.call_records(setup.number))
    assert codes == ["4410", "5180"], codes
