"""The SIP UDP socket's receive buffer holds a burst that arrives while the event loop is
busy: the datagrams wait in the kernel instead of being dropped (transport/udp.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from transport_helpers import Collector, options, run

from opentrunk.transport.udp import (
    RECEIVE_BUFFER,
    UdpTransport,
    grow_receive_buffer,
    receive_queue,
)

LOOPS = pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
# ~1 KB requests, as many as the default buffer (~200 KiB, ~90 such datagrams as the
# kernel books them) could never hold.
BURST = 2000
PADDING = "X-Padding: " + "p" * 900 + "\r\n"


def least_grant() -> int:
    """What SO_RCVBUF reads at least after asking for RECEIVE_BUFFER: doubled by the
    kernel, and capped at rmem_max unless the process may force it (CAP_NET_ADMIN)."""
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    return 2 * min(cap, RECEIVE_BUFFER)


def test_grow_receive_buffer_reports_what_the_kernel_granted() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        granted = grow_receive_buffer(sock)
        assert granted == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= least_grant()
        assert granted > default


@LOOPS
def test_a_burst_while_the_loop_is_busy_is_not_dropped(use_uvloop: bool) -> None:
    async def main() -> None:
        collector = Collector()
        udp = UdpTransport(collector)
        await udp.start("127.0.0.1", 0)
        port = udp.local_address.port
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # The loop is blocked (as by a long callback or a collection) while the
            # whole burst is sent: nothing reads the socket until it is over.
            for n in range(BURST):
                sender.sendto(
                    options(branch=f"z9hG4bK-burst{n}", call_id=f"burst-{n}@test", extra=PADDING),
                    ("127.0.0.1", port),
                )
            time.sleep(0.05)
            await collector.wait_for(BURST, timeout=10.0)
            assert len(collector.items) == BURST
            assert udp.stats.dropped == 0
        finally:
            sender.close()
            await udp.close()

    run(main(), uvloop=use_uvloop)


@LOOPS
def test_queue_fill_shows_datagrams_the_loop_has_not_read(use_uvloop: bool) -> None:
    async def main() -> tuple[float, float]:
        udp = UdpTransport(Collector())
        await udp.start("127.0.0.1", 0)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            empty = udp.queue_fill()
            for n in range(500):  # the loop is not running: nothing reads them
                sender.sendto(
                    options(branch=f"z9hG4bK-fill{n}", call_id=f"fill-{n}@test", extra=PADDING),
                    ("127.0.0.1", udp.local_address.port),
                )
            time.sleep(0.05)
            return empty, udp.queue_fill()
        finally:
            sender.close()
            await udp.close()

    empty, queued = run(main(), uvloop=use_uvloop)
    assert empty == 0.0
    # 500 datagrams of ~1 KB, booked at ~2.3 KB each against an 8 MiB queue.
    assert 0.05 < queued < 0.5


def test_receive_queue_counts_the_kernels_drops() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as small,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        small.bind(("127.0.0.1", 0))
        for _ in range(200):
            sender.sendto(b"x" * 1000, small.getsockname())
        time.sleep(0.05)
        queue = receive_queue(small)
    assert queue is not None
    waiting, size, drops = queue
    assert 0 < waiting <= size + 2500 and drops > 100
