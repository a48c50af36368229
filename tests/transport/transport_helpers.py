"""Helpers shared by the transport tests: bounded asyncio runs and canned messages."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from opentrunk.sip.message import Message
from opentrunk.sip.transaction import Address
from opentrunk.transport.base import Transport

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0, *, uvloop: bool = False) -> T:
    """Run a coroutine on a fresh loop (uvloop's, as in production, when asked), failing
    (not hanging) after `timeout` seconds."""
    if uvloop:
        import uvloop as uv

        with asyncio.Runner(loop_factory=uv.new_event_loop) as runner:
            return runner.run(asyncio.wait_for(coro, timeout))
    return asyncio.run(asyncio.wait_for(coro, timeout))


def options(
    *,
    transport: str = "UDP",
    sent_by: str = "127.0.0.1:5099",
    via_params: str = ";rport",
    branch: str = "z9hG4bK-t1",
    method: str = "OPTIONS",
    cseq_method: str | None = None,
    body: bytes = b"",
    call_id: str = "call-1@test",
    extra: str = "",
) -> bytes:
    return (
        f"{method} sip:uas@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch}{via_params}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:uac@127.0.0.1>;tag=f1\r\n"
        f"To: <sip:uas@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Collector:
    """A transport handler that records what it is given and wakes a waiter."""

    def __init__(self) -> None:
        self.items: list[tuple[Message, Address, Transport]] = []
        self.event = asyncio.Event()

    def __call__(self, message: Message, source: Address, transport: Transport) -> None:
        self.items.append((message, source, transport))
        self.event.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async def _wait() -> None:
            while len(self.items) < count:
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(_wait(), timeout)


async def recv_datagram(sock: Any, timeout: float = 3.0) -> tuple[bytes, Any]:
    """Receive one datagram from a non-blocking socket without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recvfrom(sock, 70000), timeout)
