"""Peers for the transfer (REFER) suite: a raw-socket PBX that places an outbound call
and then transfers it (REFER, the NOTIFYs it answers, the edge's BYE), and the sipp
scenario of a far party that takes the transfer's re-INVITE and hangs up later."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from e2e.raw_pbx import SDP, RawPbx
from e2e.scenarios import CARRIER_SDP, hang_up
from e2e.sipp_xml import recv_capturing, response, wrap
from opentrunk.sip.message import Request, Response, make_response

# What the transfer target's SDP says about itself (the far party's re-INVITE carries it).
TARGET_SDP_MARK = "o=target"


@dataclass
class TransferSeen:
    """What the transferor received after its REFER: the NOTIFY sipfrags in order,
    whether the last one ended the subscription, and whether the edge sent BYE."""

    sipfrags: list[str] = field(default_factory=list)
    notifies: list[Request] = field(default_factory=list)
    terminated: bool = False
    bye: bool = False


class TransferringPbx(RawPbx):
    """A `RawPbx` that can send REFER inside its answered call (as the caller)."""

    def dialog(self) -> tuple[str, str, str]:
        """(Request-URI, From, To) of the PBX's requests inside the call."""
        assert self.answer is not None, "no 200 yet"
        return (
            str(self.answer.contacts[0].uri),
            f"<sip:+{self.caller}@127.0.0.1>;tag={self.from_tag}",
            self.answer.headers.get("To") or "",
        )

    def refer(self, refer_to: str | None, *, referred_by: str | None = None) -> Response:
        """Send a REFER (Refer-To left out when None) and return the edge's answer."""
        target, local, remote = self.dialog()
        self.cseq += 1
        extra = ""
        if refer_to is not None:
            extra += f"Refer-To: <{refer_to}>\n"
        if referred_by is not None:
            extra += f"Referred-By: <{referred_by}>\n"
        self._send(
            f"REFER {target} SIP/2.0\n"
            + self._via()
            + f"From: {local}\nTo: {remote}\nCall-ID: {self.call_id}\n"
            f"CSeq: {self.cseq} REFER\nContact: <sip:pbx@127.0.0.1:{self.port}>\n"
            f"Max-Forwards: 70\n{extra}"
        )
        return self.wait_response("REFER", 5.0)

    def follow_transfer(self, timeout: float, *, until_bye: bool) -> TransferSeen:
        """Answer 200 to every NOTIFY (and to the BYE) until the subscription is
        terminated and, with `until_bye`, the edge's BYE arrived."""
        seen = TransferSeen()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if seen.terminated and (seen.bye or not until_bye):
                return seen
            message = self.receive(left)
            if not isinstance(message, Request):
                continue
            if message.method == "NOTIFY":
                self.respond(message, 200)
                if message.cseq.number not in {n.cseq.number for n in seen.notifies}:
                    seen.notifies.append(message)
                    seen.sipfrags.append(message.body.decode().strip())
                    state = message.headers.get("Subscription-State") or ""
                    seen.terminated = state.startswith("terminated")
            elif message.method == "BYE":
                self.respond(message, 200)
                seen.bye = True
        raise AssertionError(f"transfer not followed to its end within {timeout} s: {seen}")


def far_party(hangs_up_after_ms: int) -> str:
    """A carrier that answers the original call, takes the transfer's re-INVITE (200
    with its SDP), then hangs up itself after `hangs_up_after_ms`."""
    xml = '<recv request="INVITE" rrs="true"/>\n' + response("180 Ringing")
    xml += '<pause milliseconds="100"/>\n'
    xml += response("200 OK", sdp=CARRIER_SDP, retrans=True) + '<recv request="ACK"/>\n'
    xml += recv_capturing('request="INVITE" timeout="10000"', edge_side="From:", our_side="To:")
    xml += response("200 OK", tag=None, sdp=CARRIER_SDP.replace("2353687637", "2353687638"))
    xml += f'<recv request="ACK"/>\n<pause milliseconds="{hangs_up_after_ms}"/>\n'
    # The re-INVITE came in the established dialog: its To carries our tag already.
    xml += hang_up("edge_side", "our_side", tag=None)
    xml += '<pause milliseconds="300"/>\n'
    return wrap("far party", xml)


class AnsweringPbx(TransferringPbx):
    """The PBX of an inbound call (UAS): answers the edge's INVITE, then may transfer
    the caller with REFER like `TransferringPbx`."""

    def __init__(self, edge_port: int) -> None:
        super().__init__(edge_port, "unused", "unused", "unused")
        self.invite: Request | None = None
        self.local_tag = secrets.token_hex(6)
        self.cseq = 100

    def answer_call(self, timeout: float) -> Request:
        invite = self.wait_request("INVITE", timeout)
        self.invite = invite
        self.call_id = invite.headers.get("Call-ID") or ""
        response = make_response(
            invite,
            200,
            to_tag=self.local_tag,
            headers=(
                ("Contact", f"<sip:pbx@127.0.0.1:{self.port}>"),
                ("Content-Type", "application/sdp"),
            ),
            body=SDP.encode(),
        )
        self.sock.sendto(response.to_bytes(), self.edge)
        self.wait_request("ACK", timeout)
        return invite

    def dialog(self) -> tuple[str, str, str]:
        invite = self.invite
        assert invite is not None, "no INVITE answered yet"
        return (
            str(invite.contacts[0].uri),
            f"{invite.headers.get('To')};tag={self.local_tag}",
            invite.headers.get("From") or "",
        )
