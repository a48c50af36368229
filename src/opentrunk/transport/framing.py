"""Framing SIP messages on a byte stream (TCP, TLS): RFC 3261 section 18.3.

A stream carries messages back to back; the end of each is the blank line after its
headers plus `Content-Length` octets of body. `StreamFramer` buffers the bytes of one
connection and yields complete messages as they become available, so partial and pipelined
messages are both handled. CRLFs between messages are RFC 5626 keep-alives: they are
skipped, and a double CRLF ("ping") is counted so the connection can answer a single CRLF
("pong"). Framing errors (a bad, negative or conflicting Content-Length, or a message over
the size cap) are raised as `FramingError`; the framing of the stream is then lost and the
connection must be closed, after answering the request if its head can still be parsed.

The framer works on bytes only: it does not parse the message (that is `parse_message`'s
job), it only reads the Content-Length header (long form or compact `l`).
"""

from __future__ import annotations

DEFAULT_MAX_MESSAGE_SIZE = 65_535


class FramingError(Exception):
    """The stream cannot be framed any further; the connection must be closed.

    `head` holds the header block of the offending message when it was complete (so the
    caller can try to answer it), else None. `oversized` tells a size-cap breach apart from
    a syntax error in Content-Length (they are counted separately).
    """

    def __init__(self, reason: str, head: bytes | None = None, *, oversized: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.head = head
        self.oversized = oversized


def content_length_of(head: bytes) -> int | None:
    """The Content-Length declared in a header block, None if absent.

    Raises FramingError on a value that is not a non-negative integer, or on repeated
    Content-Length headers that disagree (RFC 4475 mcl01: framing is undefined).
    """
    found: int | None = None
    # The header block is small; splitting it is cheaper than a regex per line.
    lines = head.split(b"\r\n")
    for index in range(1, len(lines)):
        line = lines[index]
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].strip().lower()
        if name != b"content-length" and name != b"l":
            continue
        value = line[colon + 1 :]
        # A folded Content-Length is legal if odd: gather continuation lines.
        follow = index + 1
        while follow < len(lines) and lines[follow][:1] in (b" ", b"\t"):
            value += b" " + lines[follow]
            follow += 1
        text = value.strip()
        if not text.isdigit():
            raise FramingError(f"bad Content-Length {text[:20]!r}", head)
        number = int(text)
        if found is not None and found != number:
            raise FramingError("conflicting Content-Length headers", head)
        found = number
    return found


class StreamFramer:
    """Cuts one connection's byte stream into whole SIP messages."""

    __slots__ = ("_buffer", "max_message_size", "pings")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self.max_message_size = max_message_size
        # RFC 5626 double-CRLF pings seen since the caller last reset this counter.
        self.pings = 0

    @property
    def buffered(self) -> int:
        """Octets held for an incomplete message (bounded by max_message_size)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received octets; return every message they complete, in order.

        Raises FramingError when the stream can no longer be framed. Memory held between
        calls never exceeds `max_message_size` octets.
        """
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        while True:
            self._skip_keepalives()
            if not buffer:
                break
            end_of_head = buffer.find(b"\r\n\r\n")
            if end_of_head < 0:
                if len(buffer) > self.max_message_size:
                    self._buffer = bytearray()
                    raise FramingError("header block over the size cap", oversized=True)
                break
            head = bytes(buffer[:end_of_head])
            length = content_length_of(head) or 0
            total = end_of_head + 4 + length
            if total > self.max_message_size:
                self._buffer = bytearray()
                raise FramingError("message over the size cap", head, oversized=True)
            if len(buffer) < total:
                break
            messages.append(bytes(buffer[:total]))
            del buffer[:total]
        return messages

    def _skip_keepalives(self) -> None:
        buffer = self._buffer
        skip = 0
        size = len(buffer)
        while skip < size and buffer[skip] in (13, 10):
            skip += 1
        if skip:
            if b"\r\n\r\n" in buffer[:skip]:
                self.pings += 1
            del buffer[:skip]
