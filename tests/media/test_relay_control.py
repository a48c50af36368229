"""The relay's control channel framing (`relay_control.FrameProtocol`): messages sent in
one turn of the event loop leave in one write, in order, and still decode one by one."""

from __future__ import annotations

import asyncio
from typing import Any

from opentrunk.media.relay_control import FrameProtocol, Message


class RecordingTransport:
    """Stands in for the socketpair transport: keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def test_one_write_per_turn_and_frames_decode_in_order() -> None:
    async def main() -> tuple[list[bytes], list[Message]]:
        sender = FrameProtocol(lambda _m: None)
        transport = RecordingTransport()
        sender.connection_made(transport)  # type: ignore[arg-type]
        for n in range(3):
            assert sender.send((n, "offer", ("call", "a", b"v=0\r\n"), {}))
        assert transport.writes == []  # not before the turn ends
        await asyncio.sleep(0)
        sender.send((3, "delete", ("call",), {}))
        await asyncio.sleep(0)
        received: list[Message] = []
        receiver = FrameProtocol(received.append)
        for chunk in transport.writes:
            # Split mid-frame as a stream may: the receiver reassembles.
            receiver.data_received(chunk[:5])
            receiver.data_received(chunk[5:])
        return transport.writes, received

    writes, received = asyncio.run(main())
    assert len(writes) == 2
    assert [m[0] for m in received] == [0, 1, 2, 3]
    first: Any = received[0]
    assert first[2] == ("call", "a", b"v=0\r\n")
