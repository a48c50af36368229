"""`NgClient` (rtpengine's ng control protocol) against a fake rtpengine on a UDP socket:
a cancellation that arrives with the reply is not lost, and `RtpengineBackend.close`
ends a watchdog that is waiting on rtpengine, within its bound."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from opentrunk.media.bencode import decode, encode
from opentrunk.media.rtpengine import CLOSE_WAIT, NgClient, RtpengineBackend

HOST = "127.0.0.1"


class FakeRtpengine:
    """Receives ng requests and answers `pong` to each, when told to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])

    async def next_request(
        self, timeout: float = 2.0
    ) -> tuple[bytes, dict[str, object], tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            cookie, _, body = data.partition(b" ")
            request = decode(body)
            assert isinstance(request, dict)
            return cookie, request, source
        raise AssertionError("no ng request")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_a_cancellation_with_the_reply_is_not_lost(use_uvloop: bool) -> None:
    async def main() -> bool:
        fake = FakeRtpengine()
        client = NgClient(HOST, fake.port, timeout=5.0)
        await client.connect()
        try:
            task = asyncio.create_task(client.command({"command": "ping"}))
            cookie, _, _ = await fake.next_request()
            # The reply and the cancel in the same turn of the loop: the task must end
            # cancelled (asyncio.wait_for on Python 3.11 returned the reply instead).
            client._pending[cookie].set_result({"result": "pong"})
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return True
            return False
        finally:
            client.close()
            fake.close()

    if use_uvloop:
        import uvloop

        assert uvloop.run(main()) is True
    else:
        assert asyncio.run(main()) is True


def test_close_ends_a_watchdog_waiting_on_rtpengine() -> None:
    async def main() -> float:
        fake = FakeRtpengine()
        backend = RtpengineBackend(HOST, fake.port)
        start = asyncio.create_task(backend.start())
        cookie, request, source = await fake.next_request()
        assert request["command"] == "ping"
        fake.sock.sendto(cookie + b" " + encode({"result": "pong"}), source)
        await start
        # A watchdog stuck waiting on an rtpengine that no longer answers.
        hung = asyncio.create_task(backend.ng.command({"command": "query", "call-id": "x"}))
        backend._watchdog = hung
        await fake.next_request()
        began = time.monotonic()
        await backend.close()
        fake.close()
        return time.monotonic() - began

    assert asyncio.run(main()) <= CLOSE_WAIT + 0.5
