"""What every SIP transport shares: counters, the handler signature, the abstract transport.

A transport owns sockets for one protocol (`udp`, `tcp` or `tls`), turns received octets into
parsed messages (see `opentrunk.transport.ingress`) and hands each to a handler as
`(message, source, transport)`, where `source` is the packet's real origin. It sends
messages to an `Address` whose host is an IP literal (names are resolved beforehand by
`opentrunk.transport.dns`, never by a socket call that would block the loop).
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass

from opentrunk.sip.message import Message
from opentrunk.sip.transaction import Address

# Called for every message that parsed: (message, real source, transport it came in on).
MessageHandler = Callable[[Message, Address, "Transport"], None]
# Called when a message could not be sent to a destination (refused, reset, unreachable).
SendErrorHandler = Callable[[Address, Exception], None]

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(slots=True)
class TransportStats:
    """Counters kept by a transport; cheap integer increments on the hot path."""

    received: int = 0  # messages (datagrams or framed stream messages) received
    sent: int = 0  # messages handed to the socket
    parse_errors: int = 0  # received messages that did not parse (answered or dropped)
    error_responses: int = 0  # 4xx/5xx sent by the transport itself for unparsable requests
    dropped: int = 0  # received messages dropped (unparsable, unanswerable, no Via)
    oversized: int = 0  # datagrams or stream messages over the size cap
    framing_errors: int = 0  # streams closed because their framing was lost
    handler_errors: int = 0  # exceptions raised by the handler (a bug upstream)
    internal_errors: int = 0  # anything but SipParseError out of the parser (a bug)
    send_errors: int = 0  # sends that failed (ICMP errors failing a destination included)
    icmp_errors: int = 0  # ICMP errors read from a UDP socket's error queue
    connections_opened: int = 0
    connections_closed: int = 0
    connections_refused: int = 0  # incoming connections over the connection cap
    idle_closed: int = 0  # connections closed by the idle timeout
    keepalive_pings: int = 0  # RFC 5626 double-CRLF pings answered

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# ipaddress parsing costs ~10 us a call; peers are few, so remember the answers (bounded).
_IP_CACHE: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}
_IP_CACHE_MAX = 4096


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return _IP_CACHE[host]
    except KeyError:
        pass
    try:
        value: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        value = None
    if len(_IP_CACHE) >= _IP_CACHE_MAX:
        _IP_CACHE.clear()
    _IP_CACHE[host] = value
    return value


def is_ip_literal(host: str) -> bool:
    return _ip(host) is not None


def same_host(sent_by: str, source_ip: str) -> bool:
    """Whether a Via sent-by host names the source IP (textual forms of IPs may differ)."""
    host = sent_by[1:-1] if sent_by.startswith("[") else sent_by
    if host == source_ip:
        return True
    ip = _ip(host)
    return ip is not None and ip == _ip(source_ip)


def format_host(host: str) -> str:
    """A host as written in a Via or URI: IPv6 literals get brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


class Transport(ABC):
    """One listening SIP transport. Subclasses: UdpTransport, StreamTransport (tcp/tls)."""

    name: str
    reliable: bool
    stats: TransportStats

    def __init__(
        self,
        handler: MessageHandler,
        *,
        advertised: tuple[str, int] | None = None,
        on_send_error: SendErrorHandler | None = None,
    ) -> None:
        self.handler = handler
        self.advertised = advertised
        self.on_send_error = on_send_error
        self.stats = TransportStats()

    @property
    @abstractmethod
    def local_address(self) -> Address:
        """The address the listener is bound to (port resolved when 0 was asked for)."""

    @property
    def sent_by(self) -> tuple[str, int]:
        """Host and port to write in Via sent-by and Contact: the advertised address when
        behind NAT, else the bound address."""
        if self.advertised is not None:
            return self.advertised
        local = self.local_address
        return local.host, local.port

    @abstractmethod
    async def start(self, host: str, port: int) -> None:
        """Bind and start receiving; port 0 picks a free port."""

    @abstractmethod
    async def close(self) -> None:
        """Stop receiving and release every socket."""

    @abstractmethod
    def send(self, message: Message | bytes, dest: Address) -> None:
        """Send without waiting. Failures are counted and reported to `on_send_error`."""

    def _send_failed(self, dest: Address, exc: Exception) -> None:
        self.stats.send_errors += 1
        if self.on_send_error is not None:
            self.on_send_error(dest, exc)
