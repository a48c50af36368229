"""The relay process: an `RtpRelay` alone on its own event loop, driven over a socket.

Started by `RelayProcess` (``python -m opentrunk.media.relay_worker FD``) with one
end of a socketpair. The first frame carries the `RelayConfig`; after that each
request is one `MediaBackend` call, run to completion in arrival order, and
answered on the same channel; RTP timeouts are pushed as events. The end of the
channel (the parent exited or closed it) closes the relay and ends the process.

Why a process: the forwarding path must not wait behind the SIP edge's work.
In the edge's process, every collection of its large heap and every slow
callback stalls all media for as long (docs/media.md, "Performance").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys

import uvloop

from opentrunk.media.backend import MediaError, MediaTimeout
from opentrunk.media.relay import RelayConfig, RtpRelay
from opentrunk.media.relay_control import EVENT_ID, FrameProtocol, Message

__all__ = ["apply_realtime_priority", "main", "serve"]

log = logging.getLogger(__name__)


class _Worker:
    """Runs each request on the relay as it arrives, in order, and replies."""

    def __init__(self) -> None:
        self.relay: RtpRelay | None = None
        self.channel: FrameProtocol | None = None
        self.configured: asyncio.Future[RelayConfig] = asyncio.get_running_loop().create_future()

    def on_message(self, message: Message) -> None:
        relay = self.relay
        if relay is None:
            config = message[0]
            if not isinstance(config, RelayConfig):
                raise TypeError("the first control frame must carry a RelayConfig")
            self.configured.set_result(config)
            return
        request_id, operation, args, kwargs = message
        reply: Message
        try:
            if operation == "offer":
                value: object = relay.offer_nowait(*args, **kwargs)
            elif operation == "answer":
                value = relay.answer_nowait(*args, **kwargs)
            elif operation == "delete":
                value = relay.delete_nowait(*args, **kwargs)
            elif operation == "stats":
                value = relay.stats_nowait(*args, **kwargs)
            else:
                raise MediaError(f"unknown relay operation {operation!r}")
            reply = (request_id, True, value)
        except MediaError as exc:
            reply = (request_id, False, exc)
        except Exception as exc:  # a bug here must fail the call, not the relay
            reply = (request_id, False, MediaError(f"relay process: {exc!r}"))
        assert self.channel is not None
        self.channel.send(reply)

    def on_timeout(self, event: MediaTimeout) -> None:
        if self.channel is not None:
            self.channel.send((EVENT_ID, True, event))


def apply_realtime_priority(priority: int) -> bool:
    """Ask for SCHED_FIFO, as media servers do (rtpengine's --scheduling): a waking relay
    then runs at once instead of waiting out another process's time slice, which is
    what a loaded host otherwise adds to the forwarding latency (docs/media.md). Needs
    root or CAP_SYS_NICE; without it the relay runs on at normal priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        log.warning("relay process: real-time priority %d refused (%s)", priority, exc)
        return False
    log.info("relay process: SCHED_FIFO priority %d", priority)
    return True


async def serve(sock: socket.socket) -> None:
    """Serve one parent over `sock` until it closes the channel."""
    loop = asyncio.get_running_loop()
    worker = _Worker()
    _, channel = await loop.connect_accepted_socket(lambda: FrameProtocol(worker.on_message), sock)
    worker.channel = channel
    await asyncio.wait((worker.configured, channel.closed), return_when=asyncio.FIRST_COMPLETED)
    if not worker.configured.done():
        return  # the parent went away before it said what to run
    config = worker.configured.result()
    if config.realtime_priority:
        apply_realtime_priority(config.realtime_priority)
    relay = RtpRelay(config)
    relay.set_timeout_handler(worker.on_timeout)
    await relay.start()
    worker.relay = relay
    # Everything alive now (modules, the relay) lives as long as the process: keep it
    # out of the collector's scans so that a collection costs only what calls hold.
    gc.collect()
    gc.freeze()
    channel.send((EVENT_ID, True, None))  # ready
    try:
        await channel.closed
    finally:
        await relay.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m opentrunk.media.relay_worker FD", file=sys.stderr)
        return 2
    # Its lifetime is the channel's: Ctrl-C at a terminal, and a service manager's or a
    # shell's SIGTERM to the whole group, reach the relay too, and the parent decides
    # when the relay stops (it frees the ports first; an early exit was taken for a crash
    # and the relay restarted). A parent that is gone closes the channel: the end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    uvloop.run(serve(sock))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
