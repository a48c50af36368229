"""SIP peers for media tests against a live `opentrunk serve`: a PBX (UDP or TLS) and a
carrier (UDP), written by hand on asyncio sockets so that their SDP points at the test's
own RTP sockets (`tests/media/peers.RtpPeer`) and the test decides when each of them
speaks. Messages are parsed with the project's parser; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import Callable
from typing import Protocol

from opentrunk.sip.message import (
    Request,
    Response,
    find_message_end,
    make_response,
    parse_message,
)

Message = Request | Response
HOST = "127.0.0.1"


class SipSocket:
    """One SIP transport towards the edge: a UDP socket or a TLS connection."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.transport_name = "udp"
        self.local_port = 0
        self.remote: tuple[str, int] = (HOST, 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @classmethod
    async def udp(cls, remote: tuple[str, int], port: int = 0) -> SipSocket:
        self = cls()
        self.remote = remote
        loop = asyncio.get_running_loop()

        sock = self

        class _Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if data.strip():
                    sock.queue.put_nowait(parse_message(data))

        self._udp, _ = await loop.create_datagram_endpoint(_Proto, local_addr=(HOST, port))
        self.local_port = int(self._udp.get_extra_info("sockname")[1])
        return self

    @classmethod
    async def tls(cls, remote: tuple[str, int], cafile: str) -> SipSocket:
        self = cls()
        self.remote = remote
        self.transport_name = "tls"
        context = ssl.create_default_context(cafile=cafile)
        reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(remote[0], remote[1], ssl=context, server_hostname=HOST),
            5,
        )
        self.local_port = int(self._writer.get_extra_info("sockname")[1])
        self._reader_task = asyncio.create_task(self.read_stream(reader))
        return self

    async def read_stream(self, reader: asyncio.StreamReader) -> None:
        """Queue every SIP message framed off a stream connection, until it closes."""
        buffer = b""
        while chunk := await reader.read(65536):
            buffer += chunk
            while True:
                buffer = buffer.lstrip(b"\r\n")
                end = find_message_end(buffer)
                if end is None or end > len(buffer):
                    break
                self.queue.put_nowait(parse_message(buffer[:end]))
                buffer = buffer[end:]

    def send(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, self.remote)
        else:
            assert self._writer is not None
            self._writer.write(data)

    async def recv(self, timeout: float) -> Message | None:
        try:
            return await asyncio.wait_for(self.queue.get(), max(0.001, timeout))
        except TimeoutError:
            return None

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()


class Peer:
    """What the PBX and the carrier share: receiving with deadlines, answering requests."""

    def __init__(self, sock: SipSocket) -> None:
        self.sock = sock
        self.received: list[Message] = []
        self.held: list[Message] = []  # received while waiting for something else

    def close(self) -> None:
        self.sock.close()

    async def wait_for(self, wanted: Callable[[Message], bool], timeout: float) -> Message:
        for message in self.held:
            if wanted(message):
                self.held.remove(message)
                return message
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            message = await self.sock.recv(left)
            if message is None:
                break
            self.received.append(message)
            if wanted(message):
                return message
            self.held.append(message)
        seen = [m.start_line() for m in self.received]
        raise AssertionError(f"nothing wanted within {timeout} s; received {seen}")

    async def wait_request(self, method: str, timeout: float) -> Request:
        found = await self.wait_for(
            lambda m: isinstance(m, Request) and m.method == method, timeout
        )
        assert isinstance(found, Request)
        return found

    def respond(
        self,
        request: Request,
        status: int,
        *,
        to_tag: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> None:
        extra = list(headers)
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, to_tag=to_tag, headers=extra, body=body)
        self.sock.send(response.to_bytes())


def _text(lines: list[str], body: bytes = b"") -> bytes:
    head = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Pbx(Peer):
    """The customer's PBX placing one outbound call through the edge."""

    def __init__(self, sock: SipSocket, domain: str, caller: str, destination: str) -> None:
        super().__init__(sock)
        self.domain = domain
        self.caller = caller
        self.destination = destination
        self.call_id = secrets.token_hex(10) + "@media-pbx"
        self.tag = secrets.token_hex(5)
        self.cseq = 1
        self.answer: Response | None = None
        self.remote_tag = ""
        self.target = ""
        self.invite_at = 0.0

    def _via(self) -> str:
        proto = self.sock.transport_name.upper()
        branch = "z9hG4bK" + secrets.token_hex(8)
        return f"Via: SIP/2.0/{proto} {HOST}:{self.sock.local_port};branch={branch};rport"

    def _contact(self) -> str:
        param = ";transport=tls" if self.sock.transport_name == "tls" else ""
        return f"Contact: <sip:pbx@{HOST}:{self.sock.local_port}{param}>"

    async def call(self, sdp: bytes, timeout: float = 8.0) -> Response:
        """INVITE with `sdp`; returns the final response (ACKed when 2xx)."""
        final = await self.invite(sdp, timeout)
        if final.status < 300:
            self.sock.send(self._in_dialog("ACK", 1))
        return final

    async def invite(self, sdp: bytes | None, timeout: float = 8.0) -> Response:
        """INVITE with `sdp` (None: a delayed offer, no body); returns the final response.
        A non-2xx final is ACKed here (the transaction's ACK); a 2xx is left to the
        caller to ACK (with the answer, for a delayed offer)."""
        uri = f"sip:+{self.destination}@{self.domain}"
        self.invite_at = asyncio.get_running_loop().time()
        lines = [
            f"INVITE {uri} SIP/2.0",
            self._via(),
            f"From: <sip:+{self.caller}@{HOST}>;tag={self.tag}",
            f"To: <{uri}>",
            f"Call-ID: {self.call_id}",
            "CSeq: 1 INVITE",
            self._contact(),
            "Max-Forwards: 70",
        ]
        if sdp is not None:
            lines.append("Content-Type: application/sdp")
        self.sock.send(_text(lines, sdp or b""))
        final = await self.wait_for(
            lambda m: isinstance(m, Response) and m.cseq.method == "INVITE" and m.status >= 200,
            timeout,
        )
        assert isinstance(final, Response)
        if final.status < 300:
            self.answer = final
            self.remote_tag = final.to.tag or ""
            self.target = str(final.contacts[0].uri)
        else:
            to = final.headers.get("To")
            self.sock.send(
                _text(
                    [
                        f"ACK {uri} SIP/2.0",
                        final.headers.get("Via") or self._via(),
                        f"From: <sip:+{self.caller}@{HOST}>;tag={self.tag}",
                        f"To: {to}",
                        f"Call-ID: {self.call_id}",
                        "CSeq: 1 ACK",
                        "Max-Forwards: 70",
                    ]
                )
            )
        return final

    def _in_dialog(self, method: str, cseq: int, body: bytes = b"") -> bytes:
        lines = [
            f"{method} {self.target} SIP/2.0",
            self._via(),
            f"From: <sip:+{self.caller}@{HOST}>;tag={self.tag}",
            f"To: <sip:+{self.destination}@{self.domain}>;tag={self.remote_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
        ]
        if method in ("INVITE", "UPDATE"):
            lines.append(self._contact())
        if body:
            lines.append("Content-Type: application/sdp")
        return _text(lines, body)

    async def reinvite(self, sdp: bytes, timeout: float = 8.0) -> Response:
        self.cseq += 1
        cseq = self.cseq
        self.sock.send(self._in_dialog("INVITE", cseq, sdp))
        final = await self.wait_for(
            lambda m: (
                isinstance(m, Response)
                and m.cseq.method == "INVITE"
                and m.cseq.number == cseq
                and m.status >= 200
            ),
            timeout,
        )
        assert isinstance(final, Response)
        if final.status < 300:
            self.sock.send(self._in_dialog("ACK", cseq))
        return final

    async def refer(self, refer_to: str, timeout: float = 5.0) -> Response:
        """REFER inside the call (a blind transfer); returns the edge's answer."""
        self.cseq += 1
        cseq = self.cseq
        text = self._in_dialog("REFER", cseq).decode()
        head, _, rest = text.partition("Content-Length:")
        self.sock.send(
            f"{head}Refer-To: <{refer_to}>\r\n{self._contact()}\r\n".encode()
            + b"Content-Length:"
            + rest.encode()
        )
        final = await self.wait_for(
            lambda m: isinstance(m, Response) and m.cseq.method == "REFER" and m.status >= 200,
            timeout,
        )
        assert isinstance(final, Response)
        return final

    async def follow_transfer(self, timeout: float) -> list[str]:
        """Answer the edge's NOTIFYs (200) until its BYE (answered too); returns the
        sipfrag status lines in order."""
        frags: list[str] = []
        while True:
            request = await self.wait_for(
                lambda m: isinstance(m, Request) and m.method in ("NOTIFY", "BYE"), timeout
            )
            assert isinstance(request, Request)
            self.respond(request, 200)
            if request.method == "BYE":
                return frags
            frags.append(request.body.decode().strip())

    async def bye(self, timeout: float = 5.0) -> Response:
        self.cseq += 1
        cseq = self.cseq
        self.sock.send(self._in_dialog("BYE", cseq))
        final = await self.wait_for(
            lambda m: isinstance(m, Response) and m.cseq.method == "BYE" and m.status >= 200,
            timeout,
        )
        assert isinstance(final, Response)
        return final


class Carrier(Peer):
    """A carrier answering the edge's INVITEs on one UDP port."""

    def __init__(self, sock: SipSocket) -> None:
        super().__init__(sock)
        self.tag = secrets.token_hex(5)
        self.invite: Request | None = None
        self.edge_contact = ""
        self.cseq = 100

    @property
    def port(self) -> int:
        return self.sock.local_port

    async def answer(
        self,
        sdp_for: Callable[[bytes], bytes],
        *,
        ring_delay: float = 0.0,
        timeout: float = 8.0,
    ) -> Request:
        """Take the next INVITE: 180 after `ring_delay`, then 200 with `sdp_for(offer)`."""
        invite = await self.wait_request("INVITE", timeout)
        self.invite = invite
        # Answer where the edge sends from (its Via sent-by on loopback).
        self.sock.remote = (HOST, invite.top_via.port or 5060)
        self.edge_contact = str(invite.contacts[0].uri)
        contact = (("Contact", f"<sip:carrier@{HOST}:{self.port}>"),)
        if ring_delay:
            await asyncio.sleep(ring_delay)
        self.respond(invite, 180, to_tag=self.tag, headers=contact)
        self.respond(invite, 200, to_tag=self.tag, headers=contact, body=sdp_for(invite.body))
        await self.wait_request("ACK", timeout)
        return invite

    async def answer_reinvite(self, sdp: bytes, timeout: float = 5.0) -> Request:
        request = await self.wait_request("INVITE", timeout)
        contact = (("Contact", f"<sip:carrier@{HOST}:{self.port}>"),)
        self.respond(request, 200, headers=contact, body=sdp)
        await self.wait_request("ACK", timeout)
        return request

    async def bye(self, timeout: float = 5.0) -> Response:
        """Hang up from the carrier's side; returns the edge's answer."""
        self.sock.send(carrier_bye(self))
        final = await self.wait_for(
            lambda m: isinstance(m, Response) and m.cseq.method == "BYE" and m.status >= 200,
            timeout,
        )
        assert isinstance(final, Response)
        return final

    async def take_bye(self, timeout: float) -> Request:
        bye = await self.wait_request("BYE", timeout)
        self.respond(bye, 200)
        return bye


def carrier_bye(carrier: Carrier) -> bytes:
    """The BYE a carrier sends inside the dialog the edge's INVITE created."""
    invite = carrier.invite
    assert invite is not None
    carrier.cseq += 1
    branch = "z9hG4bK" + secrets.token_hex(8)
    return _text(
        [
            f"BYE {carrier.edge_contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {HOST}:{carrier.port};branch={branch};rport",
            f"From: {invite.headers.get('To')};tag={carrier.tag}",
            f"To: {invite.headers.get('From')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {carrier.cseq} BYE",
            "Max-Forwards: 70",
        ]
    )


async def hang_up(pbx: Pbx, carrier: Carrier) -> None:
    """The PBX's BYE, answered 200 through the edge; the carrier takes the edge's BYE."""
    assert (await pbx.bye()).status == 200
    await carrier.take_bye(5)


class Closable(Protocol):
    def close(self) -> None: ...


def close_all(*things: Closable) -> None:
    """Close the test's peers and RTP sockets at the end of a call."""
    for thing in things:
        thing.close()
