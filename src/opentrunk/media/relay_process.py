"""`RelayProcess`: the embedded relay run in a child process (`relay_worker`).

The same `MediaBackend` as `RtpRelay`, but every call is a request over a
socketpair to a child process that owns the ports and forwards the packets on
its own event loop, so that nothing the SIP edge does (its collections, its
slow callbacks) delays media, and the relay can be given a core or a scheduling
priority of its own (the pid is `RelayProcess.pid`). Like rtpengine, but built
from the same relay code and without its own configuration.

If the child dies, the calls it carried lose their media and every request fails
with `MediaError` (the edge ends those calls with 5270) until a new child is up: one
is started at once, and again with a growing pause while starting fails.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import subprocess
import sys
from typing import Any

from opentrunk.media.backend import (
    CallQuality,
    Leg,
    MediaError,
    MediaTimeout,
    TimeoutHandler,
)
from opentrunk.media.relay import RelayConfig
from opentrunk.media.relay_control import EVENT_ID, FrameProtocol, Message

__all__ = ["RelayProcess"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0
_START_TIMEOUT = 30.0  # imports on a loaded machine; never hang the edge's start


class RelayProcess:
    """`MediaBackend` over a relay child process (see the module docstring)."""

    def __init__(self, config: RelayConfig | None = None) -> None:
        self.config = config or RelayConfig()
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: FrameProtocol | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._handler: TimeoutHandler | None = None
        self._ready: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()
        self._stopping = False  # close() was called: an exit is expected
        self._respawn: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        self._stopping = False
        async with self._starting:
            if self._channel is None:
                await self._spawn()

    async def _spawn(self) -> None:
        await self._reap()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "opentrunk.media.relay_worker", str(child.fileno())],
                pass_fds=(child.fileno(),),
            )
        finally:
            child.close()
        loop = asyncio.get_running_loop()
        _, channel = await loop.connect_accepted_socket(
            lambda: FrameProtocol(self._on_message), parent
        )
        self._ready = loop.create_future()
        channel.closed.add_done_callback(self._on_closed)
        try:
            if not channel.send((self.config,)):
                raise MediaError("the relay process closed its channel")
            await asyncio.wait_for(self._ready, _START_TIMEOUT)
            # Requests go only to a child that said it is ready: until then it reads
            # its configuration, and a request in its place would be refused.
            self._channel = channel
        except (MediaError, TimeoutError) as exc:
            if channel.transport is not None:
                channel.transport.close()
            await self._reap()
            raise MediaError(f"the relay process did not start: {exc!r}") from exc

    def _on_message(self, message: Message) -> None:
        request_id, ok, value = message
        if request_id == EVENT_ID:
            self._on_event(value)
            return
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _on_closed(self, closed: asyncio.Future[None]) -> None:
        channel = self._channel
        if channel is not None and channel.closed is not closed:
            return  # an earlier child's channel; a new one serves already
        ready = self._ready
        was_serving = (
            ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.exception() is None
        )
        self._channel = None
        self._fail_all(MediaError("the relay process exited"))
        respawning = self._respawn is not None and not self._respawn.done()
        if was_serving and not self._stopping and not respawning:
            log.error("relay process exited unexpectedly: starting a new one")
            self._respawn = asyncio.get_running_loop().create_task(self._start_again())

    async def _start_again(self) -> None:
        pause = 0.0
        while not self._stopping:
            await asyncio.sleep(pause)
            try:
                await self.start()
                return
            except MediaError as exc:
                pause = min(max(pause * 2, 0.5), 10.0)
                log.error("relay process restart failed (%s): retrying in %.1f s", exc, pause)

    def _on_event(self, value: object) -> None:
        if value is None:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            return
        if isinstance(value, MediaTimeout) and self._handler is not None:
            try:
                self._handler(value)
            except Exception:
                log.exception("rtp timeout handler failed call_id=%s", value.call_id)

    def _fail_all(self, error: MediaError) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _request(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        channel = self._channel
        if channel is None:
            raise MediaError("the relay process is not running")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if not channel.send((request_id, operation, args, kwargs)):
            self._pending.pop(request_id, None)
            raise MediaError("the relay process is not running")
        return await future

    async def close(self) -> None:
        self._stopping = True
        if self._respawn is not None and not self._respawn.done():
            self._respawn.cancel()
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            channel.transport.close()  # the worker sees the end, frees every port, exits
            await channel.closed
        await self._reap()

    async def _reap(self) -> None:
        """Wait for the child to exit (it does once its channel is closed); kill it late."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_TIMEOUT
        while proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if proc.poll() is None:
            log.warning("relay process %d did not stop: killed", proc.pid)
            proc.kill()
            await loop.run_in_executor(None, proc.wait)

    def set_timeout_handler(self, handler: TimeoutHandler | None) -> None:
        self._handler = handler

    async def offer(
        self,
        call_id: str,
        from_leg: Leg,
        sdp: bytes,
        *,
        srtp_legs: frozenset[Leg] = frozenset(),
    ) -> bytes:
        body: bytes = await self._request("offer", call_id, from_leg, sdp, srtp_legs=srtp_legs)
        return body

    async def answer(self, call_id: str, from_leg: Leg, sdp: bytes) -> bytes:
        body: bytes = await self._request("answer", call_id, from_leg, sdp)
        return body

    async def delete(self, call_id: str) -> CallQuality | None:
        quality: CallQuality | None = await self._request("delete", call_id)
        return quality

    async def stats(self, call_id: str) -> CallQuality | None:
        quality: CallQuality | None = await self._request("stats", call_id)
        return quality
