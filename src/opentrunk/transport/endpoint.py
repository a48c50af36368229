"""`SipEndpoint`: the driver joining the sans-I/O transaction layer to sockets and time.

The endpoint owns the transports (UDP, TCP, TLS listeners), one `TransactionLayer` and the
timer that ticks it. Received messages go into the layer; the layer's actions are carried
out here (`SendMessage` -> a transport; `RequestReceived` -> the request handler;
`ResponseReceived` -> the waiting client request; timeouts and transport failures ->
synthesized 408/503 final responses, RFC 3261 8.1.3.1). Time is the event loop's
monotonic clock; the endpoint sleeps with one `call_at` handle until the earlier of the
layer's `next_deadline()` and the next 2xx retransmission (kept in a heap of its own):
no timer handle per transaction or per 2xx.

What a user agent or the B2BUA does with it::

    endpoint = SipEndpoint(handler=on_request, advertised="203.0.113.5")
    await endpoint.listen("udp", "0.0.0.0", 5060)
    await endpoint.listen("tcp", "0.0.0.0", 5060)

    # UAC: the endpoint adds our Via (fresh branch, rport) when the request has none.
    outgoing = endpoint.request(invite, Address("udp", "192.0.2.10", 5060),
                                on_response=lambda r: ...)   # every response
    final = await outgoing.final                             # first final response
    endpoint.send_ack(dialog.create_ack(), dest)             # ACK of a 2xx (re-sent if
                                                             # the 2xx is retransmitted)
    outgoing.cancel()                                        # CANCEL per RFC 3261 9.1

    # UAS: the handler gets an `IncomingRequest` and answers through it.
    def on_request(incoming: IncomingRequest) -> None:
        incoming.respond(180)
        incoming.respond(200, contact=endpoint.contact_uri("bob", "udp"), body=sdp)

Handled here so that every user gets them right: CANCEL (200 to the CANCEL, 487 to the
INVITE if still unanswered, `IncomingRequest.cancelled`; 481 when nothing matches), the
To tag of responses (one per incoming request), 2xx retransmission for INVITE over UDP
until the ACK arrives (RFC 3261 13.3.1.4, the TU's job since RFC 6026), re-sending our ACK
when a 2xx is retransmitted to us (13.2.2.4), and responses on a stream whose connection
is gone (re-connect to the source IP at the Via sent-by port, 18.2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentrunk.config import split_host_port
from opentrunk.sip.dialog import dialog_response, new_tag
from opentrunk.sip.headers import NameAddr, Via
from opentrunk.sip.message import Message, Request, Response, make_response
from opentrunk.sip.timers import DEFAULT_TIMERS, TimerConfig
from opentrunk.sip.transaction import (
    Action,
    Address,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    ServerTransaction,
    TransactionLayer,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    new_branch,
)
from opentrunk.sip.uri import URI, SipURI
from opentrunk.transport.base import (
    DEFAULT_PORTS,
    Transport,
    TransportStats,
    format_host,
    is_ip_literal,
)
from opentrunk.transport.tcp import StreamTransport
from opentrunk.transport.udp import UdpTransport
from opentrunk.transport.via import reconnect_address

log = logging.getLogger(__name__)

RequestHandler = Callable[["IncomingRequest"], Awaitable[None] | None]
ResponseCallback = Callable[[Response], None]


def literal_address(uri: URI, default_transport: str = "udp") -> Address:
    """The Address of a SIP URI whose host is an IP literal (no DNS needed): transport
    from `;transport=` (TLS for sips), port from the URI or the transport's default.
    Raises ValueError for a name (resolve those with `opentrunk.transport.dns`)."""
    if not isinstance(uri, SipURI):
        raise ValueError(f"not a SIP URI: {uri}")
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    if not is_ip_literal(host):
        raise ValueError(f"{uri.host} is not an IP address")
    transport = (uri.transport or ("tls" if uri.secure else default_transport)).lower()
    return Address(transport, host, uri.port or DEFAULT_PORTS.get(transport, 5060))


class IncomingRequest:
    """A request received by the endpoint, with the means to answer it.

    `transaction` is None for an ACK of a 2xx (it belongs to the dialog, not to a
    transaction) and for a request that arrived with no server transaction. Responses
    carry one To tag per request (`local_tag`) unless the request already had one.
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        request: Request,
        source: Address,
        transaction: ServerTransaction | None,
    ) -> None:
        self.endpoint = endpoint
        self.request = request
        self.source = source
        self.transaction = transaction
        self.cancelled = False
        # Called when a CANCEL for this INVITE arrives (after the 487 went out).
        self.on_cancel: Callable[[], None] | None = None
        # Called when no ACK arrived for our 2xx within 64*T1 (the dialog should end).
        self.on_ack_timeout: Callable[[], None] | None = None
        self._local_tag: str | None = None
        self.final_sent = False

    @property
    def local_tag(self) -> str:
        """Our To tag in responses: the request's own To tag when it has one (a request
        inside a dialog), else a new one, the same for every response to this request.
        Made on first use (an ACK or a request answered without a tag never needs it)."""
        tag = self._local_tag
        if tag is None:
            tag = self._local_tag = self.request.to.tag or new_tag()
        return tag

    @property
    def method(self) -> str:
        return self.request.method

    def respond(
        self,
        status: int | Response,
        reason: str | None = None,
        *,
        contact: str | NameAddr | URI | None = None,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> Response | None:
        """Send a response through the server transaction; returns it (None when the
        transaction is gone or already answered finally, e.g. after a CANCEL)."""
        if isinstance(status, Response):
            response = status
        else:
            response = dialog_response(
                self.request,
                status,
                to_tag=self.local_tag,
                contact=contact,
                reason=reason,
                headers=headers,
                body=body,
            )
        return self.endpoint.send_response(self, response)


@dataclass(eq=False)
class OutgoingRequest:
    """A request we sent in a client transaction, and its responses.

    `final` resolves with the first final response. A timeout or transport failure
    resolves it with a locally made 408 or 503 (RFC 3261 8.1.3.1) and sets
    `local_failure` to "timeout" or "transport".
    """

    endpoint: SipEndpoint
    request: Request
    dest: Address
    transaction: ClientTransaction
    final: asyncio.Future[Response]
    on_response: ResponseCallback | None = None
    local_failure: str | None = None

    def cancel(self) -> None:
        """CANCEL the INVITE (sent now, or once a provisional response arrives)."""
        self.endpoint.cancel(self)


@dataclass(eq=False, slots=True)
class _Retransmission:
    """A 2xx to an INVITE re-sent over UDP until its ACK arrives (13.3.1.4)."""

    key: tuple[str, int, str]
    incoming: IncomingRequest
    response: Response
    dest: Address
    interval: float
    give_up_at: float
    due: float


class SipEndpoint:
    """Transports + transaction layer + clock: see the module docstring."""

    def __init__(
        self,
        handler: RequestHandler | None = None,
        *,
        timers: TimerConfig = DEFAULT_TIMERS,
        advertised: str | None = None,
        user_agent: str | None = "opentrunk",
    ) -> None:
        self.handler = handler
        self.timers = timers
        self.layer = TransactionLayer(timers)
        self.advertised = advertised
        self.user_agent = user_agent
        self.transports: dict[str, Transport] = {}
        # Optional hook for responses that match no transaction (after our re-ACK logic).
        self.on_stray_response: Callable[[Response, Address], None] | None = None
        # Test hooks: return True to drop a message (simulated packet loss).
        self.drop_outgoing: Callable[[Message, Address], bool] | None = None
        self.drop_incoming: Callable[[Message, Address], bool] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._retransmissions: dict[tuple[str, int, str], _Retransmission] = {}
        # (due, sequence, retransmission): run by the same timer as the layer's; an
        # entry is stale once its retransmission was ACKed or moved to a later time.
        self._retransmit_at: list[tuple[float, int, _Retransmission]] = []
        self._retransmit_seq = itertools.count()
        # ACKs we sent for 2xx: (Call-ID, CSeq number, To tag) -> (ACK, dest, expiry).
        self._acks: dict[tuple[str, int, str], tuple[Request, Address, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Exceptions caught while carrying out the layer's actions (bugs, never input).
        self.internal_errors = 0

    # -- lifecycle -------------------------------------------------------------

    def _advertised_for(self, transport: Transport, port: int) -> tuple[str, int] | None:
        if not self.advertised:
            return None
        host, adv_port = split_host_port(self.advertised, 0)
        return host, adv_port or port

    async def listen(
        self,
        transport: str,
        host: str,
        port: int,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        **options: Any,
    ) -> Transport:
        """Start a listener ('udp', 'tcp' or 'tls'); port 0 picks a free one.

        `options` go to the transport (e.g. idle_timeout, max_message_size). One listener
        per transport name; requests we send over that transport leave from it.
        """
        self._loop = asyncio.get_running_loop()
        if transport in self.transports:
            raise ValueError(f"already listening on {transport}")
        sink: Transport
        if transport == "udp":
            sink = UdpTransport(self._on_message, on_send_error=self._on_send_error, **options)
        elif transport in ("tcp", "tls"):
            sink = StreamTransport(
                self._on_message,
                name=transport,
                server_ssl=server_ssl,
                client_ssl=client_ssl,
                on_send_error=self._on_send_error,
                **options,
            )
        else:
            raise ValueError(f"unknown transport {transport!r}")
        await sink.start(host, port)
        sink.advertised = self._advertised_for(sink, sink.local_address.port)
        self.transports[transport] = sink
        return sink

    async def close(self) -> None:
        """Stop timers, retransmissions and every transport."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._retransmissions.clear()
        self._retransmit_at.clear()
        for task in list(self._tasks):
            task.cancel()
        for transport in self.transports.values():
            await transport.close()
        self.transports.clear()

    @property
    def stats(self) -> TransportStats:
        """Counters summed over every transport."""
        total = TransportStats()
        for transport in self.transports.values():
            for name, value in transport.stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total

    # -- addresses ---------------------------------------------------------------

    def local_address(self, transport: str = "udp") -> Address:
        return self.transports[transport].local_address

    def via_for(self, transport: str) -> Via:
        """A new top Via for a request leaving over `transport`: our sent-by (the
        advertised address if set), a fresh branch, and rport (RFC 3581)."""
        host, port = self.transports[transport].sent_by
        return Via(
            transport.upper(), format_host(host), port, {"branch": new_branch(), "rport": None}
        )

    def contact_uri(self, user: str | None = None, transport: str = "udp") -> SipURI:
        """Our Contact URI on `transport` (the advertised address if set)."""
        host, port = self.transports[transport].sent_by
        params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
        scheme = "sips" if transport == "tls" else "sip"
        return SipURI(format_host(host), user, port, params, scheme=scheme)

    # -- timers --------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _arm(self) -> None:
        """(Re)schedule the one timer for the next deadline (the layer's or a 2xx
        retransmission's), if that moved earlier."""
        if self._closed or self._loop is None:
            return
        deadline = self.layer.next_deadline()
        if self._retransmit_at:
            due = self._next_retransmission()
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None:
            # The time is kept here: uvloop's call_at returns a plain Handle (no when())
            # for a deadline already past.
            if self._timer_at <= deadline:
                return
            timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._now()
        self._perform(self.layer.tick(now))
        if self._retransmit_at:
            self._retransmit_due(now)
        self._arm()

    # -- receiving -------------------------------------------------------------------

    def _on_message(self, message: Message, source: Address, transport: Transport) -> None:
        assert isinstance(message, (Request, Response))
        if self.drop_incoming is not None and self.drop_incoming(message, source):
            return
        self._perform(self.layer.receive(message, source, self._now()))
        self._arm()

    def _on_send_error(self, dest: Address, exc: Exception) -> None:
        # Called from inside a transport's send; feed the layer on the next loop turn so
        # the layer is never re-entered while it is handing out actions.
        if self._loop is None or self._closed:
            return

        def report() -> None:
            self._perform(self.layer.transport_error(dest, self._now()))
            self._arm()

        self._loop.call_soon(report)

    # -- carrying out actions ---------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                if isinstance(action, SendMessage):
                    self._transmit(action.message, action.dest)
                elif isinstance(action, RequestReceived):
                    self._request_received(action)
                elif isinstance(action, ResponseReceived):
                    self._response_received(action)
                elif isinstance(action, TransactionTimeout | TransportFailed):
                    self._transaction_failed(action)
                elif isinstance(action, TransactionTerminated):
                    self._transaction_terminated(action.transaction)
            except Exception:
                self.internal_errors += 1
                log.exception("SIP endpoint failed to carry out %s", type(action).__name__)

    def _transmit(self, message: Message, dest: Address) -> None:
        transport = self.transports.get(dest.transport)
        if transport is None:
            self._on_send_error(dest, ConnectionError(f"no {dest.transport} transport"))
            return
        if (
            isinstance(message, Response)
            and isinstance(transport, StreamTransport)
            and not transport.has_connection(dest)
        ):
            # The request's connection is gone: RFC 3261 18.2.2, source IP + sent-by port.
            with contextlib.suppress(Exception):
                dest = reconnect_address(message.top_via, dest)
        if self.drop_outgoing is not None and self.drop_outgoing(message, dest):
            return
        transport.send(message, dest)

    def _request_received(self, action: RequestReceived) -> None:
        request = action.request
        txn = action.transaction
        if request.method == "ACK":
            self._ack_received(request)
        elif request.method == "CANCEL" and txn is not None:
            self._cancel_received(request, txn, action.cancels)
            return
        incoming = IncomingRequest(self, request, action.source, txn)
        if txn is not None and request.method != "ACK":
            # (An ACK of our 2xx comes with the INVITE's transaction: that one keeps
            # the INVITE's IncomingRequest, not the ACK's.)
            txn.user_data = incoming
        if self.handler is None:
            if txn is not None:
                incoming.respond(501)
            return
        result = self.handler(incoming)
        if inspect.isawaitable(result):
            self._spawn(result)

    def _cancel_received(
        self, cancel: Request, txn: ServerTransaction, invite_txn: ServerTransaction | None
    ) -> None:
        now = self._now()
        if invite_txn is None:
            self._perform(self.layer.send_response(txn, make_response(cancel, 481), now))
            return
        self._perform(self.layer.send_response(txn, make_response(cancel, 200), now))
        incoming = invite_txn.user_data
        if isinstance(incoming, IncomingRequest) and not incoming.final_sent:
            incoming.cancelled = True
            on_cancel = incoming.on_cancel  # the 487 (a final response) unsets it
            incoming.respond(487)
            if on_cancel is not None:
                on_cancel()

    def _ack_received(self, ack: Request) -> None:
        try:
            key = (ack.call_id, ack.cseq.number, ack.to.tag or "")
        except Exception:
            return
        retransmission = self._retransmissions.pop(key, None)
        if retransmission is not None:
            # ACKed: the 2xx can no longer time out (and the callback holds the call).
            retransmission.incoming.on_ack_timeout = None

    def _response_received(self, action: ResponseReceived) -> None:
        response = action.response
        txn = action.transaction
        outgoing = txn.user_data if txn is not None else None
        if isinstance(outgoing, OutgoingRequest):
            # Responses are not kept here: the transaction holds the last one, and the
            # provisional ones would otherwise live as long as the transaction (64*T1).
            if outgoing.on_response is not None:
                outgoing.on_response(response)
            if response.status >= 200 and not outgoing.final.done():
                outgoing.final.set_result(response)
            elif 200 <= response.status < 300:
                self._resend_ack(response)
            return
        if 200 <= response.status < 300:
            self._resend_ack(response)
        if self.on_stray_response is not None:
            self.on_stray_response(response, action.source)

    def _resend_ack(self, response: Response) -> None:
        """A 2xx retransmitted to us: our ACK was lost; send it again (13.2.2.4)."""
        try:
            key = (response.call_id, response.cseq.number, response.to.tag or "")
        except Exception:
            return
        cached = self._acks.get(key)
        if cached is not None:
            self._transmit(cached[0], cached[1])

    def _transaction_failed(self, action: TransactionTimeout | TransportFailed) -> None:
        txn = action.transaction
        outgoing = txn.user_data
        if isinstance(outgoing, OutgoingRequest) and not outgoing.final.done():
            timeout = isinstance(action, TransactionTimeout)
            outgoing.local_failure = "timeout" if timeout else "transport"
            outgoing.final.set_result(make_response(outgoing.request, 408 if timeout else 503))

    def _transaction_terminated(self, txn: Any) -> None:
        outgoing = txn.user_data
        if isinstance(outgoing, OutgoingRequest) and not outgoing.final.done():
            outgoing.local_failure = "terminated"
            outgoing.final.set_result(make_response(outgoing.request, 408))
        # Nothing reaches the TU through this transaction any more. Unlink it from its
        # request object and the TU's callbacks: they refer to each other (and the
        # callbacks to the whole call), and such cycles wait for the garbage collector's
        # full passes instead of being freed now (docs/performance.md).
        if isinstance(outgoing, OutgoingRequest):
            outgoing.on_response = None
        elif isinstance(outgoing, IncomingRequest):
            outgoing.on_cancel = None
        txn.user_data = None

    # -- sending (TU API) -------------------------------------------------------------

    def _prepare(self, request: Request, dest: Address) -> None:
        if dest.transport not in self.transports:
            raise ValueError(f"no {dest.transport} transport to send from")
        if request.headers.get("Via") is None:
            request.push_via(self.via_for(dest.transport))
        if request.headers.get("Max-Forwards") is None:
            request.headers.add("Max-Forwards", "70")
        if self.user_agent and request.headers.get("User-Agent") is None:
            request.headers.add("User-Agent", self.user_agent)

    def request(
        self,
        request: Request,
        dest: Address,
        *,
        on_response: ResponseCallback | None = None,
    ) -> OutgoingRequest:
        """Send `request` to `dest` (an IP address) in a new client transaction."""
        if self._loop is None:
            raise RuntimeError("the endpoint has no listener yet")
        self._prepare(request, dest)
        txn, actions = self.layer.send_request(request, dest, self._now())
        outgoing = OutgoingRequest(
            self, request, dest, txn, self._loop.create_future(), on_response
        )
        txn.user_data = outgoing
        self._perform(actions)
        self._arm()
        return outgoing

    async def send_request(
        self,
        request: Request,
        dest: Address,
        *,
        on_response: ResponseCallback | None = None,
    ) -> Response:
        """Send `request` and wait for its final response (a local 408/503 on failure)."""
        return await self.request(request, dest, on_response=on_response).final

    def cancel(self, outgoing: OutgoingRequest) -> None:
        _, actions = self.layer.cancel(outgoing.transaction, self._now())
        self._perform(actions)
        self._arm()

    def send_ack(self, ack: Request, dest: Address) -> None:
        """Send the ACK of a 2xx (outside any transaction) and remember it for 64*T1 so a
        retransmitted 2xx gets it again."""
        if ack.method != "ACK":
            raise ValueError("send_ack sends ACKs")
        self._prepare(ack, dest)
        now = self._now()
        key = (ack.call_id, ack.cseq.number, ack.to.tag or "")
        acks = self._acks
        # Every entry lives the same 64*T1, so insertion order is expiry order: drop
        # expired ones from the front (a scan of the whole table per ACK was O(calls)).
        acks.pop(key, None)
        acks[key] = (ack, dest, now + self.timers.timeout)
        while acks:
            oldest = next(iter(acks))
            if acks[oldest][2] >= now:
                break
            del acks[oldest]
        self._transmit(ack, dest)
        # Kept only to be re-sent: drop its parsed views (rebuilt if ever read again).
        ack.compact()

    def send_stateless(self, message: Message, dest: Address) -> None:
        """Send a message outside any transaction (a Via is added to a request)."""
        if isinstance(message, Request):
            self._prepare(message, dest)
        self._transmit(message, dest)

    def send_response(self, incoming: IncomingRequest, response: Response) -> Response | None:
        txn = incoming.transaction
        if txn is None:
            return None
        if incoming.final_sent and not (
            incoming.method == "INVITE" and 200 <= response.status < 300
        ):
            return None
        if self.user_agent and response.headers.get("Server") is None:
            response.headers.add("Server", self.user_agent)
        try:
            actions = self.layer.send_response(txn, response, self._now())
        except TransactionStateError:
            return None
        if response.status >= 200:
            incoming.final_sent = True
            # A CANCEL after the final response is answered without it (and it holds
            # the call's state); the transaction, which waits out its timers for up to
            # 64*T1, no longer needs the request object either.
            incoming.on_cancel = None
            txn.user_data = None
        self._perform(actions)
        self._arm()
        if incoming.method == "INVITE" and 200 <= response.status < 300 and not txn.reliable:
            self._retransmit_2xx(incoming, response, txn.response_dest)
        return response

    def _retransmit_2xx(self, incoming: IncomingRequest, response: Response, dest: Address) -> None:
        key = (response.call_id, response.cseq.number, response.to.tag or "")
        if key in self._retransmissions:
            return
        t1 = self.timers.t1
        now = self._now()
        retransmission = _Retransmission(
            key, incoming, response, dest, t1, now + self.timers.timeout, now + t1
        )
        self._retransmissions[key] = retransmission
        heapq.heappush(
            self._retransmit_at, (retransmission.due, next(self._retransmit_seq), retransmission)
        )
        self._arm()

    def _next_retransmission(self) -> float | None:
        heap = self._retransmit_at
        while heap:
            due, _, retransmission = heap[0]
            if (
                self._retransmissions.get(retransmission.key) is retransmission
                and retransmission.due == due
            ):
                return due
            heapq.heappop(heap)
        return None

    def _retransmit_due(self, now: float) -> None:
        """Re-send the 2xx whose time came (T1, 2*T1, ... capped at T2); give up after
        64*T1 without an ACK (`on_ack_timeout`)."""
        heap = self._retransmit_at
        while (due := self._next_retransmission()) is not None and due <= now:
            retransmission = heapq.heappop(heap)[2]
            if now >= retransmission.give_up_at:
                del self._retransmissions[retransmission.key]
                incoming = retransmission.incoming
                on_ack_timeout, incoming.on_ack_timeout = incoming.on_ack_timeout, None
                if on_ack_timeout is not None:
                    try:
                        on_ack_timeout()
                    except Exception:
                        self.internal_errors += 1
                        log.exception("on_ack_timeout failed")
                continue
            try:
                self._transmit(retransmission.response, retransmission.dest)
            except Exception:
                self.internal_errors += 1
                log.exception("2xx retransmission failed")
            retransmission.interval = min(2 * retransmission.interval, self.timers.t2)
            retransmission.due = now + retransmission.interval
            heapq.heappush(heap, (retransmission.due, next(self._retransmit_seq), retransmission))

    def _spawn(self, awaitable: Awaitable[None]) -> None:
        assert self._loop is not None

        async def guarded() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("SIP request handler failed")

        task = self._loop.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
