"""The receive path shared by every transport: octets -> parsed message -> handler.

`Ingress.process` is called once per datagram or framed stream message. It parses, counts,
stamps the top Via of requests (received/rport), and hands the message to the handler.
Malformed input never raises from here: an invalid request that can still be answered
(`SipParseError.partial`) gets the error status with a Warning (399) saying what was wrong;
anything else is dropped and counted. A handler that raises is a bug upstream: it is logged
(with the message's Call-ID only, never its content) and counted, and receiving goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.headers import Via
from opentrunk.sip.message import Request, make_response, parse_message
from opentrunk.sip.transaction import Address
from opentrunk.transport.base import Transport, format_host
from opentrunk.transport.via import response_address, stamp_top_via

log = logging.getLogger(__name__)

# Sends raw octets back the way a message came: the UDP socket to an address, or the
# connection the message arrived on.
Reply = Callable[[bytes, Address], None]


def _warning_text(reason: str) -> str:
    # A Warning's text is a quoted-string: keep it printable and free of quotes.
    cleaned = "".join(ch if ch.isprintable() and ch not in '"\\' else " " for ch in reason)
    return cleaned[:120]


class Ingress:
    """Parses received octets for one transport and dispatches them."""

    __slots__ = ("transport",)

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def process(self, data: bytes, source: Address, reply: Reply) -> bool:
        """Handle one message's octets. Returns False when the message was rejected."""
        transport = self.transport
        stats = transport.stats
        stats.received += 1
        try:
            message = parse_message(data)
            if isinstance(message, Request) and stamp_top_via(message, source) is None:
                raise SipParseError("missing Via header")
        except SipParseError as exc:
            stats.parse_errors += 1
            self._answer_error(exc, source, reply)
            return False
        except Exception:  # a parser bug must not take the transport down
            stats.internal_errors += 1
            stats.dropped += 1
            log.exception("parser raised a non-SipParseError on %d octets", len(data))
            return False
        try:
            transport.handler(message, source, transport)
        except Exception:
            stats.handler_errors += 1
            log.exception("SIP handler failed (Call-ID %s)", message.headers.get("Call-ID"))
        return True

    def reject_head(
        self, head: bytes, source: Address, reply: Reply, status: int, reason: str
    ) -> None:
        """Answer a stream message that could not be framed (bad Content-Length, too big),
        from its header block alone, if the head identifies a request well enough."""
        stats = self.transport.stats
        stats.received += 1
        stats.parse_errors += 1
        try:
            parse_message(head + b"\r\n\r\n")
        except SipParseError as exc:
            self._answer_error(SipParseError(reason, status, exc.partial), source, reply)
            return
        except Exception:
            stats.dropped += 1
            return
        # The head parsed on its own (the parser tolerated what framing refused): answer
        # from a re-parse of the head without any body-related header.
        self._answer_error(SipParseError(reason, status, _head_request(head)), source, reply)

    def _answer_error(self, exc: SipParseError, source: Address, reply: Reply) -> None:
        stats = self.transport.stats
        request = exc.partial
        if request is None or request.method == "ACK":
            # Responses and garbage are dropped; an ACK is never answered.
            stats.dropped += 1
            return
        try:
            if request.headers.get("Via") is None:
                stats.dropped += 1
                return
            try:
                top_via: Via | None = stamp_top_via(request, source)
            except SipParseError:
                # A Via too broken to read (RFC 4475 badinv01): answer the packet's source
                # address and port, copying the Via as it came.
                top_via = None
            response = make_response(request, exc.status, _warning_text(exc.reason)[:80])
            host, port = self.transport.sent_by
            response.headers.add(
                "Warning", f'399 {format_host(host)}:{port} "{_warning_text(exc.reason)}"'
            )
            data = response.to_bytes()
        except Exception:
            # The partial request was too broken to answer after all.
            stats.dropped += 1
            return
        stats.error_responses += 1
        reply(data, response_address(top_via, source))


def _head_request(head: bytes) -> Request | None:
    lines = [
        line
        for line in head.split(b"\r\n")
        if line.split(b":", 1)[0].strip().lower() not in (b"content-length", b"l")
    ]
    try:
        message = parse_message(b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n")
    except SipParseError as exc:
        return exc.partial
    return message if isinstance(message, Request) else None
