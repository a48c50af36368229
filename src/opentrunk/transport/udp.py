"""SIP over UDP (RFC 3261 section 18): one datagram carries one message.

The receive path is kept lean (no logging, no per-packet allocation beyond the parse): a
datagram over the size cap is counted and dropped unread; everything else goes through
`Ingress`. Sends are fire-and-forget `sendto` calls to an IP literal.

The socket's receive buffer is raised to `RECEIVE_BUFFER` (the kernel's default, ~200 KiB,
holds only ~90 SIP datagrams as the kernel counts them): whenever the event loop is
busy for a moment (a burst of calls, a collection), datagrams queue there, and a full
buffer drops them silently, each loss costing a retransmission 500 ms or more later and,
under load, failed calls (bench/edge_calls.py counted hundreds of drops per 20 s at
200 calls/s with the default). SO_RCVBUFFORCE passes the `net.core.rmem_max` cap when
the process may (CAP_NET_ADMIN); otherwise the cap applies and a warning says so.

ICMP errors (a closed port, an unreachable host) come back through the socket's error
queue (`opentrunk.transport.icmp`) with the destination that failed, and are reported to
`on_send_error` like a refused TCP connection, so the client transactions to that
address fail at once (RFC 3261 8.1.3.1, 17.1.4, 18.4) instead of timing out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from typing import Any, Final

from opentrunk.sip.message import Message
from opentrunk.sip.transaction import Address
from opentrunk.transport.base import MessageHandler, SendErrorHandler, Transport, is_ip_literal
from opentrunk.transport.icmp import ErrorQueue
from opentrunk.transport.ingress import Ingress

# Largest datagram accepted. IP allows 65,507 octets of UDP payload; SIP messages near
# that size are legal, but anything larger than our cap is refused before parsing.
DEFAULT_MAX_DATAGRAM = 65_507
# Receive buffer asked for (bytes; the kernel books twice that, for its own overhead):
# ~3,500 SIP datagrams of 1 KB, a second and more of what 300 calls/s bring.
RECEIVE_BUFFER: Final = 4 << 20

log = logging.getLogger(__name__)


# getsockopt(SOL_SOCKET, SO_MEMINFO) (Linux 4.12+; not named by Python's socket module):
# the socket's memory counters, of which the first two are what waits in its receive
# queue and the queue's size, and the ninth the datagrams it dropped.
_SO_MEMINFO: Final = 55
_MEMINFO = struct.Struct("9I")


def receive_queue(sock: Any) -> tuple[int, int, int] | None:
    """(bytes waiting, receive buffer size, datagrams dropped) of a UDP socket, as the
    kernel books them; None where the kernel cannot say."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
    except (OSError, AttributeError):
        return None
    if len(raw) < _MEMINFO.size:
        return None
    fields = _MEMINFO.unpack(raw)
    return fields[0], fields[1], fields[8]


def grow_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Raise `sock`'s receive buffer to `size` (forced past rmem_max when allowed);
    returns the size the kernel granted (as SO_RCVBUF reads it: doubled)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError as exc:
            log.warning("SIP UDP: receive buffer left at the default (%s)", exc)
    granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if granted // 2 < size:
        log.warning(
            "SIP UDP: receive buffer %d bytes, asked for %d; raise net.core.rmem_max "
            "(sysctl) or give the process CAP_NET_ADMIN, or bursts of traffic may be "
            "dropped",
            granted // 2,
            size,
        )
    return granted


class _UdpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("owner",)

    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        owner = self.owner
        if len(data) > owner.max_datagram:
            owner.stats.received += 1
            owner.stats.oversized += 1
            owner.stats.dropped += 1
            return
        if not data.strip(b"\r\n\x00 "):
            # Keep-alive datagrams (CRLF, NUL, empty) are not messages.
            return
        owner.ingress.process(data, Address("udp", addr[0], addr[1]), owner.reply)

    def error_received(self, exc: Exception) -> None:
        # The exception carries no destination: the error queue has them.
        self.owner.icmp_error(exc)


class UdpTransport(Transport):
    """A UDP listener that also sends (from the same socket, so NATs see one flow)."""

    name = "udp"
    reliable = False

    def __init__(
        self,
        handler: MessageHandler,
        *,
        advertised: tuple[str, int] | None = None,
        on_send_error: SendErrorHandler | None = None,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
    ) -> None:
        super().__init__(handler, advertised=advertised, on_send_error=on_send_error)
        self.max_datagram = max_datagram
        self.ingress = Ingress(self)
        self._socket: asyncio.DatagramTransport | None = None
        self._sock: Any = None  # the transport's socket, for its options and counters
        self._local: Address | None = None
        self._errors: ErrorQueue | None = None

    @property
    def local_address(self) -> Address:
        if self._local is None:
            raise RuntimeError("UDP transport not started")
        return self._local

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._socket = transport
        bound = transport.get_extra_info("sockname")
        self._local = Address("udp", str(bound[0]), int(bound[1]))
        sock = self._sock = transport.get_extra_info("socket")
        if sock is not None:
            grow_receive_buffer(sock)
            self._errors = ErrorQueue.attach(sock.fileno(), sock.family)

    async def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self._sock = None
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def queue_fill(self) -> float:
        """How full the socket's receive queue is (0 to 1): datagrams the edge has not
        read yet. The event loop can keep its timers on time while this grows, so it is
        the other half of the overload signal (edge/overload.py)."""
        queue = None if self._sock is None else receive_queue(self._sock)
        if queue is None or queue[1] == 0:
            return 0.0
        return queue[0] / queue[1]

    def icmp_error(self, exc: Exception) -> None:
        """The socket reported an error: read the queued ICMP errors and fail sends to each
        destination that RFC 3261 18.4 counts as unreachable."""
        queue = self._errors
        if queue is None:
            self.stats.send_errors += 1  # no destination to blame
            return
        for error in queue.drain():
            self.stats.icmp_errors += 1
            if error.delivery_failed:
                reason = OSError(error.errno, os.strerror(error.errno))
                self._send_failed(Address("udp", error.host, error.port), reason)

    def reply(self, data: bytes, dest: Address) -> None:
        self._sendto(data, dest)

    def send(self, message: Message | bytes, dest: Address) -> None:
        if not is_ip_literal(dest.host):
            # A name here would make sendto() resolve it, blocking the loop.
            self._send_failed(dest, ValueError("destination must be an IP literal"))
            return
        data = message if isinstance(message, bytes) else message.to_bytes()
        self._sendto(data, dest)

    def _sendto(self, data: bytes, dest: Address) -> None:
        sock = self._socket
        if sock is None:
            self._send_failed(dest, ConnectionError("UDP transport closed"))
            return
        try:
            sock.sendto(data, (dest.host, dest.port))
        except (OSError, ValueError) as exc:
            self._send_failed(dest, exc)
            return
        self.stats.sent += 1
