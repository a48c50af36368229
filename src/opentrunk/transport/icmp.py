"""ICMP errors for an unconnected UDP socket, with their destination (Linux).

An unconnected UDP socket learns of an ICMP error only as a bare errno (asyncio's
`error_received`), without saying which destination failed. With IP_RECVERR /
IPV6_RECVERR set, Linux also queues every error on the socket's error queue: reading it
with MSG_ERRQUEUE gives the original destination as the message's address and a
`sock_extended_err` telling the ICMP type and code. RFC 3261 18.4 decides which errors
are a failure to deliver: destination unreachable (host, network, port, protocol...) and
parameter problem are; source quench, time exceeded and "packet too big" (path MTU
discovery) are not.

    queue = ErrorQueue.attach(fileno, family)       # None where unsupported
    for error in queue.drain():                     # on error_received
        if error.delivery_failed: report(error.host, error.port)

The queue must be drained whenever the socket reports an error: a non-empty error queue
keeps the socket readable-with-error for the event loop.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from dataclasses import dataclass

# <linux/in.h>, <linux/in6.h>, <linux/errqueue.h>; Python 3.11 does not export them.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
# struct sock_extended_err: ee_errno u32, ee_origin u8, ee_type u8, ee_code u8, ee_pad u8,
# ee_info u32, ee_data u32 (the offender's sockaddr follows; not needed).
_EXTENDED_ERR = struct.Struct("=IBBBBII")

ICMP_DEST_UNREACH, ICMP_PARAMETERPROB, ICMP_FRAG_NEEDED = 3, 12, 4
ICMPV6_DEST_UNREACH, ICMPV6_PARAMPROB = 1, 4

# At most this many queued errors are read per drain (the kernel bounds the queue by the
# socket's receive buffer; a flood of ICMP must not hold the loop).
MAX_DRAIN = 256


@dataclass(frozen=True, slots=True)
class IcmpError:
    """One queued error: where the failed datagram was going, and why."""

    host: str
    port: int
    errno: int
    icmp_type: int
    icmp_code: int
    ipv6: bool

    @property
    def delivery_failed(self) -> bool:
        """Whether RFC 3261 18.4 counts this as a failure to send to (host, port)."""
        if self.ipv6:
            return self.icmp_type in (ICMPV6_DEST_UNREACH, ICMPV6_PARAMPROB)
        if self.icmp_type == ICMP_DEST_UNREACH:
            return self.icmp_code != ICMP_FRAG_NEEDED  # path MTU discovery, not a failure
        return self.icmp_type == ICMP_PARAMETERPROB


class ErrorQueue:
    """Reads a UDP socket's error queue through a duplicate of its descriptor (the event
    loop's transport owns the socket; uvloop's does not expose recvmsg)."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def attach(cls, fileno: int, family: int) -> ErrorQueue | None:
        """Turn on error queueing for the socket `fileno`; None if the platform lacks it."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            sock = socket.fromfd(fileno, family, socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
                # IPv4-mapped destinations on a dual-stack socket report through IPv4.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        except OSError:
            sock.close()
            return None
        return cls(sock)

    def drain(self) -> list[IcmpError]:
        """Every ICMP error queued right now (other queued errors are read and dropped)."""
        out: list[IcmpError] = []
        for _ in range(MAX_DRAIN):
            try:
                _, ancillary, _, address = self._sock.recvmsg(
                    0, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            for level, kind, data in ancillary:
                if (level, kind) not in (
                    (socket.IPPROTO_IP, IP_RECVERR),
                    (socket.IPPROTO_IPV6, IPV6_RECVERR),
                ):
                    continue
                if len(data) < _EXTENDED_ERR.size or not isinstance(address, tuple):
                    continue
                errno, origin, icmp_type, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
                if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                    continue  # a local error: the send call itself reported it
                out.append(
                    IcmpError(
                        _unmapped(str(address[0])),
                        int(address[1]),
                        errno,
                        icmp_type,
                        code,
                        origin == SO_EE_ORIGIN_ICMP6,
                    )
                )
        return out

    def close(self) -> None:
        self._sock.close()


def _unmapped(host: str) -> str:
    """An IPv4-mapped IPv6 address as the IPv4 address it was sent to; scope ids dropped."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host.split("%", 1)[0]
