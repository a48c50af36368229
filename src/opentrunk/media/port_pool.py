"""The relay's UDP port range: RTP on an even port, RTCP on the odd port above it.

Owns which port pairs are in use. A pair is handed out already bound (two
non-blocking sockets), so a port another program holds is skipped rather than
failing a call later. Released pairs go to the back of the queue: a port is
not reused while stray packets of the call that had it may still arrive.
"""

from __future__ import annotations

import socket
from collections import deque

from opentrunk.media.backend import PortsExhausted

__all__ = ["PortPair", "PortPool", "parse_port_range"]


def parse_port_range(text: str) -> tuple[int, int]:
    """``"10000-20000"`` -> (10000, 20000), inclusive bounds."""
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"bad port range {text!r}: expected LOW-HIGH")
    lo, hi = int(low), int(high)
    if not 1024 <= lo < hi <= 65535:
        raise ValueError(f"bad port range {text!r}")
    return lo, hi


class PortPair:
    """A bound RTP/RTCP socket pair; the pool owns the port numbers."""

    __slots__ = ("port", "rtcp_sock", "rtp_sock")

    def __init__(self, port: int, rtp_sock: socket.socket, rtcp_sock: socket.socket) -> None:
        self.port = port
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock


class PortPool:
    def __init__(self, host: str, low: int, high: int) -> None:
        self.host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        first = low + (low & 1)
        self._free: deque[int] = deque(range(first, high, 2))  # RTCP = port + 1 <= high
        self._in_use: set[int] = set()
        self.capacity = len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> PortPair:
        """Bind the next free pair; PortsExhausted when every port is taken."""
        for _ in range(len(self._free)):
            port = self._free.popleft()
            rtp = self._bind(port)
            if rtp is None:
                self._free.append(port)
                continue
            rtcp = self._bind(port + 1)
            if rtcp is None:
                rtp.close()
                self._free.append(port)
                continue
            self._in_use.add(port)
            return PortPair(port, rtp, rtcp)
        raise PortsExhausted(f"no free RTP port pair ({self.in_use} in use)")

    def release(self, port: int) -> None:
        """Return a pair whose sockets are closed; releasing twice is harmless."""
        if port in self._in_use:
            self._in_use.discard(port)
            self._free.append(port)

    def _bind(self, port: int) -> socket.socket | None:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            return None
        return sock
