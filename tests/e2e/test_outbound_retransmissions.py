"""Retransmissions that must do no harm, end to end: sipp is the PBX, the carrier is a
raw UDP socket driven by the test (sipp answers repeated messages itself, so it cannot
play a carrier that repeats them on purpose).

The carrier answers 200 and, after the edge's ACK, sends the same 200 again: the edge
ACKs it again (RFC 3261 13.2.2.4) and the PBX sees a single answered call. The carrier
then hangs up with BYE, sends that BYE again (a retransmission: answered 200 again by
the transaction, not 481), then a new BYE (481: the dialog is gone), then its 200 to the
INVITE once more, late: ACKed at most, never relayed. The PBX gets exactly one BYE and
the call exactly one record, 3000 from the carrier."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp, describe, pbx_args
from e2e.test_outbound_calls import assert_record
from opentrunk.sip.message import Request, Response, parse_message

pytestmark = pytest.mark.sipp


class RawCarrier:
    """A UDP carrier scripted step by step; every wait is bounded."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.edge: tuple[str, int] | None = None

    def receive(self, timeout: float = 5.0) -> Request | Response:
        self.sock.settimeout(timeout)
        data, self.edge = self.sock.recvfrom(65536)
        return parse_message(data)

    def expect_request(self, method: str, timeout: float = 5.0) -> Request:
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.05, deadline - time.monotonic()))
            if isinstance(message, Request) and message.method == method:
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method}")

    def expect_response(self, cseq_method: str, timeout: float = 3.0) -> Response:
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.05, deadline - time.monotonic()))
            if isinstance(message, Response) and message.cseq.method == cseq_method:
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no response to {cseq_method}")

    def send(self, data: bytes) -> None:
        assert self.edge is not None
        self.sock.sendto(data, self.edge)

    def close(self) -> None:
        self.sock.close()


SDP = (
    b"v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def ok_to(invite: Request, tag: str, port: int) -> bytes:
    vias = "".join(f"Via: {v}\r\n" for v in invite.headers.get_all("Via"))
    return (
        f"SIP/2.0 200 OK\r\n{vias}"
        f"From: {invite.headers.get('From')}\r\n"
        f"To: {invite.headers.get('To')};tag={tag}\r\n"
        f"Call-ID: {invite.headers.get('Call-ID')}\r\n"
        f"CSeq: {invite.headers.get('CSeq')}\r\n"
        f"Contact: <sip:carrier@127.0.0.1:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def bye_from_carrier(invite: Request, tag: str, port: int, cseq: int, branch: str) -> bytes:
    contact = invite.headers.get("Contact") or ""
    target = contact.strip().lstrip("<").split(">")[0]
    return (
        f"BYE {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {invite.headers.get('To')};tag={tag}\r\n"
        f"To: {invite.headers.get('From')}\r\n"
        f"Call-ID: {invite.headers.get('Call-ID')}\r\n"
        f"CSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def script(carrier: RawCarrier, seen: dict[str, object]) -> None:
    invite = carrier.expect_request("INVITE")
    answer = ok_to(invite, "raw-carrier-1", carrier.port)
    carrier.send(answer)
    carrier.expect_request("ACK")
    carrier.send(answer)  # the same 200 again
    seen["re_ack"] = carrier.expect_request("ACK", 2.0).cseq.number
    time.sleep(0.3)
    bye = bye_from_carrier(invite, "raw-carrier-1", carrier.port, 1, "raw-bye-1")
    carrier.send(bye)
    seen["bye"] = carrier.expect_response("BYE").status
    carrier.send(bye)  # a retransmission of that BYE
    seen["bye_again"] = carrier.expect_response("BYE").status
    carrier.send(bye_from_carrier(invite, "raw-carrier-1", carrier.port, 2, "raw-bye-2"))
    seen["new_bye"] = carrier.expect_response("BYE").status
    carrier.send(answer)  # late: the call is over
    seen["done"] = True


def test_repeated_200_and_bye_do_no_harm(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account, domain, destination = api.outbound()
    carrier = RawCarrier()
    seen: dict[str, object] = {}
    worker = threading.Thread(target=script, args=(carrier, seen), daemon=True)
    try:
        api.carrier(carrier.port, destination)
        worker.start()
        xml = scenarios.pbx_call(domain, account.caller, carrier_hangs_up=True)
        pbx = Sipp(xml, pbx_args(edge, destination), workdir, "pbx").start()
        try:
            run = pbx.wait(20)
        finally:
            pbx.kill()
        worker.join(10)
    finally:
        carrier.close()
    assert run.returncode == 0, describe(run, edge=edge)
    assert seen.get("done") is True, seen
    assert seen["re_ack"] == 1
    assert (seen["bye"], seen["bye_again"], seen["new_bye"]) == (200, 200, 481)
    received = (workdir / "pbx.msg").read_text(errors="replace")
    assert received.count("\nBYE sip:") == 1
    assert len(account.call_records(destination)) == 1
    assert_record(account, destination, "3000", "carrier")
    assert edge.alive()
