"""The control channel between opentrunk and its relay process: framing only.

A frame is a 4-byte big-endian length and a pickled tuple. Pickle is safe here
because both ends are the same program under the same user, joined by a
socketpair nobody else holds; the channel never faces the network.

Requests (parent -> worker): ``(request_id, operation, args, kwargs)``.
Replies (worker -> parent): ``(request_id, ok, value)``, `value` the result or
the `MediaError` raised. Events (worker -> parent): ``(0, True, MediaTimeout)``
(request ids start at 1).

`FrameProtocol` is a plain asyncio protocol rather than a stream reader: the
channel carries three round trips per call on the SIP edge's per-call path, and
a stream reader costs a future per read.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Callable
from typing import Any, cast

__all__ = ["EVENT_ID", "FrameProtocol", "encode"]

EVENT_ID = 0
_LENGTH = struct.Struct("!I")
Message = tuple[Any, ...]


def encode(message: Message) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class FrameProtocol(asyncio.Protocol):
    """Calls `on_message` with each message received; `closed` resolves at the end."""

    def __init__(self, on_message: Callable[[Message], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._buffer = bytearray()
        # Frames queued in this turn of the loop, written together at its end.
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, message: Message) -> bool:
        """Queue one message; False once the channel is closed.

        Messages sent in one turn of the event loop go out in one write, after the turn:
        each write wakes the process at the other end, and on a virtual machine a wake-up
        costs tens of microseconds of the sender's CPU (docs/media.md, "Performance").
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        outgoing = self._outgoing
        if not outgoing:
            self._loop.call_soon(self._flush)
        outgoing.append(encode(message))
        return True

    def _flush(self) -> None:
        outgoing = self._outgoing
        transport = self.transport
        if transport is not None and not transport.is_closing() and outgoing:
            transport.write(b"".join(outgoing) if len(outgoing) > 1 else outgoing[0])
        outgoing.clear()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        size = len(buffer)
        while size - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            end = offset + 4 + length
            if end > size:
                break
            message = pickle.loads(buffer[offset + 4 : end])
            offset = end
            self.on_message(message)
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
