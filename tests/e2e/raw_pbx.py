"""A PBX made of one UDP socket, for the tests that need to do what sipp will not do on
cue: hold back an ACK for good, answer a relayed re-INVITE with a chosen status, or
time the moment a response arrives.

Messages are written by hand (the PBX's side of RFC 3261) and what arrives is read with
the project's parser. Every receive has a deadline, so no test can hang on it.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable

from opentrunk.sip.message import Request, Response, make_response, parse_message

SDP = (
    "v=0\r\no=rawpbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


class RawPbx:
    """One outbound call from a hand-driven PBX to the edge at 127.0.0.1:`edge_port`."""

    def __init__(self, edge_port: int, domain: str, caller: str, destination: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.edge = ("127.0.0.1", edge_port)
        self.domain = domain
        self.caller = caller
        self.destination = destination
        self.call_id = secrets.token_hex(12) + "@rawpbx"
        self.from_tag = secrets.token_hex(6)
        self.invite_branch = "z9hG4bK" + secrets.token_hex(8)
        self.cseq = 1
        self.answer: Response | None = None
        # Every message received, with the monotonic time it arrived.
        self.received: list[tuple[float, Request | Response]] = []

    def close(self) -> None:
        self.sock.close()

    # -- sending ---------------------------------------------------------------------

    def _send(self, text: str, body: str = "") -> None:
        data = text.replace("\n", "\r\n") + f"Content-Length: {len(body)}\r\n\r\n" + body
        self.sock.sendto(data.encode(), self.edge)

    def _via(self, branch: str | None = None) -> str:
        branch = branch or "z9hG4bK" + secrets.token_hex(8)
        return f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\n"

    def invite(self) -> None:
        self._send(
            f"INVITE sip:+{self.destination}@{self.domain} SIP/2.0\n"
            + self._via(self.invite_branch)
            + f"From: <sip:+{self.caller}@127.0.0.1>;tag={self.from_tag}\n"
            f"To: <sip:+{self.destination}@{self.domain}>\n"
            f"Call-ID: {self.call_id}\nCSeq: 1 INVITE\n"
            f"Contact: <sip:pbx@127.0.0.1:{self.port}>\nMax-Forwards: 70\n"
            "Content-Type: application/sdp\n",
            SDP,
        )

    def _in_dialog(self, method: str, cseq: int) -> None:
        assert self.answer is not None, "no 200 yet"
        contact = self.answer.contacts[0].uri
        to = self.answer.headers.get("To")
        self._send(
            f"{method} {contact} SIP/2.0\n"
            + self._via()
            + f"From: <sip:+{self.caller}@127.0.0.1>;tag={self.from_tag}\n"
            f"To: {to}\nCall-ID: {self.call_id}\nCSeq: {cseq} {method}\nMax-Forwards: 70\n"
        )

    def ack(self) -> None:
        self._in_dialog("ACK", 1)

    def bye(self) -> None:
        self.cseq += 1
        self._in_dialog("BYE", self.cseq)

    def respond(self, request: Request, status: int) -> None:
        """Answer a request the edge sent us (a relayed re-INVITE, a BYE)."""
        response = make_response(request, status, to_tag=request.to.tag or None)
        self.sock.sendto(response.to_bytes(), self.edge)

    # -- receiving -------------------------------------------------------------------

    def receive(self, timeout: float) -> Request | Response | None:
        """The next message within `timeout` seconds, or None."""
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        message = parse_message(data)
        self.received.append((time.monotonic(), message))
        return message

    def wait_for(
        self, wanted: Callable[[Request | Response], bool], timeout: float
    ) -> Request | Response:
        """Receive until a message satisfies `wanted` (others are kept in `received`)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and wanted(message):
                return message
        seen = [m.start_line() for _, m in self.received]
        raise AssertionError(f"nothing wanted within {timeout} s; received {seen}")

    def wait_answer(self, timeout: float = 5.0) -> Response:
        """Wait for the 200 to the INVITE (provisional responses pass by)."""
        answer = self.wait_for(lambda m: isinstance(m, Response) and m.status >= 200, timeout)
        assert isinstance(answer, Response)
        assert answer.status == 200, answer.start_line()
        self.answer = answer
        return answer

    def wait_request(self, method: str, timeout: float) -> Request:
        request = self.wait_for(lambda m: isinstance(m, Request) and m.method == method, timeout)
        assert isinstance(request, Request)
        return request

    def wait_response(self, method: str, timeout: float) -> Response:
        response = self.wait_for(
            lambda m: isinstance(m, Response) and m.cseq.method == method and m.status >= 200,
            timeout,
        )
        assert isinstance(response, Response)
        return response

    def answers_to_invite(self) -> list[tuple[float, Response]]:
        """Every 2xx to our INVITE received so far (the first and its retransmissions)."""
        return [
            (at, m)
            for at, m in self.received
            if isinstance(m, Response) and m.cseq.method == "INVITE" and m.status == 200
        ]
