"""SIP over TCP and TLS (RFC 3261 section 18): framed streams with connection reuse.

`StreamTransport` listens for connections and opens them on demand. Connections are kept in
a table keyed by the peer's (IP, port, name): a response goes back on the connection its
request came in on (the request's source address is that connection's key), and a request
to a peer reuses an open connection to that address. Every connection is under the key
with name "" (any connection to that IP:port, RFC 3261 section 18); an outgoing TLS
connection opened for a `NamedAddress` is also under that name, the one its certificate
was verified for. A request to a name uses only a connection verified for that name:
another name on the same IP:port (two PBXes behind one address, a changed DNS answer)
gets its own connection and its own check (RFC 5922 section 7). Each connection frames
its byte stream with `StreamFramer` (partial and pipelined messages, RFC 5626 CRLF
keep-alives answered with a CRLF pong), and is closed when:
- it has been idle longer than `idle_timeout` (checked by one sweeper task, not a timer
  per connection);
- its framing is lost (bad/negative/conflicting Content-Length, message over
  `max_message_size`), after answering the offending request when its head allows;
- the peer stops reading and our unsent data passes `max_write_buffer`.
Incoming connections over `max_connections` are refused (closed at once) and counted.
TLS is the same class with `ssl` contexts (see `opentrunk.transport.tls`): an outgoing
connection sends the destination's name as SNI and checks the certificate against it, or
against the IP address when the destination is a plain `Address`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine
from typing import Any, cast

from opentrunk.sip.message import Message
from opentrunk.sip.transaction import Address
from opentrunk.transport.base import (
    MessageHandler,
    SendErrorHandler,
    Transport,
    is_ip_literal,
)
from opentrunk.transport.framing import DEFAULT_MAX_MESSAGE_SIZE, FramingError, StreamFramer
from opentrunk.transport.ingress import Ingress
from opentrunk.transport.tls import client_context, identity_error, server_name_of

# (IP, port, the name the peer's certificate was verified for; "" for any connection).
PeerKey = tuple[str, int, str]


def key_of(dest: Address) -> PeerKey:
    return (dest.host, dest.port, server_name_of(dest))


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, incoming or outgoing."""

    def __init__(self, owner: StreamTransport, *, incoming: bool) -> None:
        self.owner = owner
        self.incoming = incoming
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = None
        self.last_activity = 0.0
        self.closing = False
        # Table keys this connection is registered under (peer address, dialled name).
        self.keys: list[PeerKey] = []
        self.counted = False  # opened and not yet counted as closed

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        owner = self.owner
        stream = self.transport = cast(asyncio.Transport, transport)
        self.last_activity = owner.loop_time()
        peername = stream.get_extra_info("peername")
        self.peer = Address(owner.name, str(peername[0]), int(peername[1]))
        if self.incoming and len(owner.connections) >= owner.max_connections:
            owner.stats.connections_refused += 1
            self.closing = True
            stream.abort()
            return
        owner.stats.connections_opened += 1
        self.counted = True
        if self.incoming:
            # (An outgoing one is registered once its peer's identity is checked.)
            owner.register(self, (self.peer.host, self.peer.port, ""))

    def data_received(self, data: bytes) -> None:
        if self.closing or self.peer is None:
            return
        owner = self.owner
        self.last_activity = owner.loop_time()
        try:
            frames = self.framer.feed(data)
        except FramingError as exc:
            self._framing_lost(exc)
            return
        for frame in frames:
            owner.ingress.process(frame, self.peer, self.reply)
            if self.closing:
                return
        if self.framer.pings:
            owner.stats.keepalive_pings += self.framer.pings
            self.framer.pings = 0
            self.write(b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.counted:
            self.owner.stats.connections_closed += 1
            self.counted = False
        self._unregister()

    def _unregister(self) -> None:
        connections = self.owner.connections
        for key in self.keys:
            if connections.get(key) is self:
                del connections[key]
        self.keys.clear()

    # -- sending ---------------------------------------------------------------

    def reply(self, data: bytes, dest: Address) -> None:
        """Ingress's reply path: whatever the address, answer on this connection."""
        self.write(data)

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return False
        transport.write(data)
        self.last_activity = self.owner.loop_time()
        self.owner.stats.sent += 1
        if transport.get_write_buffer_size() > self.owner.max_write_buffer:
            # The peer is not reading: drop it rather than buffer without bound.
            self.owner.stats.send_errors += 1
            self.abort()
            return False
        return True

    def close(self) -> None:
        """Close after flushing what was written."""
        if self.transport is not None and not self.closing:
            self.closing = True
            self._unregister()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closing = True
            self._unregister()
            self.transport.abort()

    def _framing_lost(self, exc: FramingError) -> None:
        stats = self.owner.stats
        stats.framing_errors += 1
        if exc.oversized:
            stats.oversized += 1
        if exc.head is not None and self.peer is not None:
            status = 513 if exc.oversized else 400
            self.owner.ingress.reject_head(exc.head, self.peer, self.reply, status, exc.reason)
        self.close()


class StreamTransport(Transport):
    """A TCP (or, with ssl contexts, TLS) listener plus its table of connections."""

    reliable = True

    def __init__(
        self,
        handler: MessageHandler,
        *,
        name: str = "tcp",
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        advertised: tuple[str, int] | None = None,
        on_send_error: SendErrorHandler | None = None,
        idle_timeout: float = 300.0,
        connect_timeout: float = 5.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_write_buffer: int = 1 << 20,
        max_connections: int = 4096,
    ) -> None:
        super().__init__(handler, advertised=advertised, on_send_error=on_send_error)
        if name not in ("tcp", "tls"):
            raise ValueError(f"stream transport name must be tcp or tls, not {name!r}")
        if name == "tls" and client_ssl is None:
            client_ssl = client_context()
        self.name = name
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self.max_write_buffer = max_write_buffer
        self.max_connections = max_connections
        self.ingress = Ingress(self)
        self.connections: dict[PeerKey, StreamConnection] = {}
        self._pending: dict[PeerKey, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._local: Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def local_address(self) -> Address:
        if self._local is None:
            raise RuntimeError(f"{self.name.upper()} transport not started")
        return self._local

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self, host: str, port: int) -> None:
        if self.name == "tls" and self.server_ssl is None:
            raise ValueError("a TLS listener needs a server ssl context")
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: StreamConnection(self, incoming=True),
            host,
            port,
            ssl=self.server_ssl,
            reuse_address=True,
        )
        bound = self._server.sockets[0].getsockname()
        self._local = Address(self.name, str(bound[0]), int(bound[1]))
        self._spawn(self._sweep_idle())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.abort()
        self.connections.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def register(self, connection: StreamConnection, key: PeerKey) -> None:
        self.connections[key] = connection
        connection.keys.append(key)

    def has_connection(self, dest: Address) -> bool:
        connection = self.connections.get(key_of(dest))
        return connection is not None and not connection.closing

    def send(self, message: Message | bytes, dest: Address) -> None:
        data = message if isinstance(message, bytes) else message.to_bytes()
        key = key_of(dest)
        connection = self.connections.get(key)
        if connection is not None and not connection.closing:
            if not connection.write(data):
                self._send_failed(dest, ConnectionError("connection closed while sending"))
            return
        pending = self._pending.get(key)
        if pending is not None:
            pending.append(data)
            return
        if not is_ip_literal(dest.host):
            self._send_failed(dest, ValueError("destination must be an IP literal"))
            return
        if self._loop is None:
            self._send_failed(dest, ConnectionError(f"{self.name} transport not started"))
            return
        self._pending[key] = [data]
        self._spawn(self._connect(dest))

    async def _connect(self, dest: Address) -> None:
        assert self._loop is not None
        key = key_of(dest)
        ssl_context = self.client_ssl if self.name == "tls" else None
        # SNI: the SIP domain when the destination came from a name (Python sends none
        # for an IP). The identity the certificate must carry is checked once connected.
        server_hostname = (key[2] or dest.host) if ssl_context else None
        try:
            _, protocol = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: StreamConnection(self, incoming=False),
                    dest.host,
                    dest.port,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self._fail_pending(key, dest, exc)
            return
        if ssl_context is not None and protocol.transport is not None:
            peercert = protocol.transport.get_extra_info("peercert") or {}
            refused = identity_error(peercert, key[2], dest.host)
            if refused is not None:
                protocol.abort()
                self._fail_pending(key, dest, ssl.SSLCertVerificationError(refused))
                return
        # Register under the peer's address, and under the address and name we dialled
        # (the name this connection's certificate was verified for).
        if not protocol.closing and protocol.peer is not None:
            self.register(protocol, (protocol.peer.host, protocol.peer.port, ""))
            if key not in self.connections:
                self.register(protocol, key)
        for data in self._pending.pop(key, ()):
            if not protocol.write(data):
                self._send_failed(dest, ConnectionError("connection closed while sending"))

    def _fail_pending(self, key: PeerKey, dest: Address, exc: Exception) -> None:
        for _ in self._pending.pop(key, ()):
            self._send_failed(dest, exc)

    async def _sweep_idle(self) -> None:
        interval = max(0.02, min(self.idle_timeout / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            deadline = self.loop_time() - self.idle_timeout
            for connection in list(self.connections.values()):
                if connection.last_activity < deadline and not connection.closing:
                    self.stats.idle_closed += 1
                    connection.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
