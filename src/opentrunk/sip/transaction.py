"""The SIP transaction layer (RFC 3261 section 17, with RFC 6026), sans-I/O.

`TransactionLayer` owns every client and server transaction of one SIP endpoint: their
state machines, their timers, and the matching of incoming messages to them. It does no
I/O and never reads a clock. A driver feeds it

* ``receive(message, source, now)``: a parsed request or response and where it came from;
* ``send_request(request, dest, now)`` / ``send_response(txn, response, now)`` /
  ``cancel(txn, now)``: what the transaction user (TU: dialog layer, B2BUA) wants sent;
* ``tick(now)``: time passing (call it at ``next_deadline()``);
* ``transport_error(txn_or_address, now)``: a send that failed;

and each call returns a list of actions for it to carry out, in order:

* `SendMessage` (message, destination address): put it on the wire;
* `RequestReceived`: a new request for the TU (with its server transaction; None for
  an ACK that matches none, i.e. the ACK of a 2xx, which belongs to the dialog layer;
  for a CANCEL, `cancels` is the INVITE server transaction it cancels, or None: answer
  481);
* `ResponseReceived`: a response for a client transaction (transaction None for a stray
  response, e.g. a 2xx retransmitted after the transaction ended, so the TU can re-ACK);
* `TransactionTimeout` (timer B, F or H fired), `TransportFailed`, and
  `TransactionTerminated` when a transaction leaves the table.

Choices, per the RFCs:

* 100 Trying: an INVITE server transaction sends it when the TU has not answered within
  ``TimerConfig.trying_delay`` (200 ms, RFC 3261 17.2.1); 0 sends it at once. A
  retransmitted INVITE before any response also gets an immediate 100.
* RFC 6026: a 2xx moves INVITE transactions to "Accepted" (timers L/M, 64*T1). The
  server side then absorbs retransmitted INVITEs, forwards the TU's 2xx retransmissions,
  and passes matching ACKs up; the client side passes every further 2xx up (forked or
  retransmitted) and never ACKs a 2xx: both are the dialog layer's job.
* The ACK of a non-2xx final response is built and retransmitted by the client
  transaction (17.1.1.3); the server transaction absorbs it (Completed -> Confirmed).
* A non-INVITE server transaction whose TU never answers is dropped after 64*T1 (the
  client has given up by then): no RFC timer covers that case, and without it a silent
  TU would leak transactions.
* Matching (17.1.3, 17.2.3): client by (top Via branch, CSeq method); server by (branch,
  sent-by, method with ACK as INVITE) for RFC 3261 branches, and by (Request-URI, From
  tag, Call-ID, CSeq number, top Via, method) for RFC 2543 ones. The ACK's To tag is not
  compared in the RFC 2543 case (a retransmitted ACK carries the same one).
* Responses go back to the packet's real source (`response_destination`): the source
  port when rport was asked for or the transport is reliable, else the Via's sent-by
  port (18.2.2 with RFC 3581). Stamping ``received``/``rport`` on the top Via (18.2.1)
  is the transport's job (`opentrunk.transport.via.stamp_top_via`), done before a
  request is fed in, so that `make_response` copies them.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.headers import Headers, Via
from opentrunk.sip.ids import random_hex
from opentrunk.sip.message import Request, Response, make_response
from opentrunk.sip.timers import DEFAULT_TIMERS, TimerConfig

__all__ = [
    "MAGIC_COOKIE",
    "Action",
    "Address",
    "ClientTransaction",
    "RequestReceived",
    "ResponseReceived",
    "SendMessage",
    "ServerTransaction",
    "State",
    "Transaction",
    "TransactionLayer",
    "TransactionStateError",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailed",
    "build_ack",
    "build_cancel",
    "new_branch",
    "response_destination",
]

MAGIC_COOKIE = "z9hG4bK"
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss", "sctp"})
_DEFAULT_PORT = {"tls": 5061, "wss": 443, "ws": 80}


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie and 96 random bits."""
    return MAGIC_COOKIE + random_hex(12)


class Address(NamedTuple):
    """Where a message came from or goes to: transport ('udp'/'tcp'/'tls'), host, port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport.lower() in RELIABLE_TRANSPORTS


class State(Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class TransactionStateError(ValueError):
    """The TU asked for something the transaction's state does not allow."""


# A transaction that only waits out its timers (Completed, Confirmed, Accepted) keeps its
# messages for matching and re-sending, for up to 64*T1. After this long, their parsed
# views are dropped (`Message.compact`): the TU has used them by then, and thousands of
# waiting transactions would otherwise hold most of the process's objects.
COMPACT_AFTER = 2.0

# Timer slots: each transaction has at most one retransmit timer (A/E/G), one timer
# that ends a state (B/D/F/K/H/I/J/L/M) and, for INVITE servers, the 100 Trying timer.
_RETX, _END, _TRYING = 0, 1, 2
# Below this many timer entries the heap is never pruned of stale ones.
_PRUNE_MIN = 1024


class Transaction:
    """What client and server transactions share. `user_data` is the TU's to use."""

    __slots__ = (
        "__weakref__",
        "_end_at",
        "_end_name",
        "_retx_at",
        "_retx_interval",
        "_trying_at",
        "is_invite",
        "key",
        "last_response",
        "reliable",
        "request",
        "state",
        "user_data",
    )

    def __init__(self, key: tuple[object, ...], request: Request, reliable: bool) -> None:
        self.key = key
        self.request = request
        self.is_invite = request.method == "INVITE"
        self.reliable = reliable
        self.state = State.TERMINATED
        self.last_response: Response | None = None
        self.user_data: object = None
        self._retx_at: float | None = None
        self._retx_interval = 0.0
        self._end_at: float | None = None
        self._end_name = ""
        self._trying_at: float | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def branch(self) -> str | None:
        return self.request.top_via.branch

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"<{kind} {self.request.method} {self.state.value} {self.key[0]!s}>"


class ClientTransaction(Transaction):
    """A request we sent and its responses. `dest` is where the request goes."""

    __slots__ = ("ack", "cancel_pending", "cancel_transaction", "dest")

    def __init__(self, key: tuple[object, ...], request: Request, dest: Address) -> None:
        super().__init__(key, request, dest.reliable)
        self.dest = dest
        self.ack: Request | None = None
        self.cancel_pending = False
        self.cancel_transaction: ClientTransaction | None = None


class ServerTransaction(Transaction):
    """A request we received. Responses go to `response_dest` (RFC 3261 18.2.2)."""

    __slots__ = ("response_dest", "source")

    def __init__(
        self, key: tuple[object, ...], request: Request, source: Address, response_dest: Address
    ) -> None:
        super().__init__(key, request, source.reliable)
        self.source = source
        self.response_dest = response_dest


# --- actions ---------------------------------------------------------------------------


@dataclass(slots=True)
class SendMessage:
    """Put `message` on the wire to `dest` (for `transaction`, if any)."""

    message: Request | Response
    dest: Address
    transaction: Transaction | None = None


@dataclass(slots=True)
class RequestReceived:
    """A request for the TU. See the module docstring for None transactions and CANCEL."""

    request: Request
    source: Address
    transaction: ServerTransaction | None
    cancels: ServerTransaction | None = None


@dataclass(slots=True)
class ResponseReceived:
    """A response for the TU; `transaction` is None for a stray response."""

    response: Response
    source: Address
    transaction: ClientTransaction | None


@dataclass(slots=True)
class TransactionTimeout:
    """Timer B or F (no final response) or H (no ACK for our final) fired."""

    transaction: Transaction
    timer: str


@dataclass(slots=True)
class TransportFailed:
    """A send for this transaction failed; it is terminated (RFC 3261 17.1.4, 17.2.4)."""

    transaction: Transaction


@dataclass(slots=True)
class TransactionTerminated:
    transaction: Transaction


Action = (
    SendMessage
    | RequestReceived
    | ResponseReceived
    | TransactionTimeout
    | TransportFailed
    | TransactionTerminated
)


# --- building ACK and CANCEL -----------------------------------------------------------


def _copy_common(request: Request, method: str, to_value: str) -> Headers:
    """Headers shared by ACK (17.1.1.3) and CANCEL (9.1): top Via, From, To, Call-ID,
    CSeq with the new method, Route, Max-Forwards."""
    src = request.headers
    out = Headers()
    out.add("Via", str(request.top_via))
    out.add("Max-Forwards", "70")
    for name in ("From",):
        value = src.get(name)
        if value is not None:
            out.add(name, value)
    out.add("To", to_value)
    out.add("Call-ID", request.call_id)
    out.add("CSeq", f"{request.cseq.number} {method}")
    for route in src.get_all("Route"):
        out.add("Route", route)
    return out


def build_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final `response` to INVITE `request` (RFC 3261 17.1.1.3)."""
    to_value = response.headers.get("To") or request.headers.get("To") or ""
    return Request("ACK", request.uri, _copy_common(request, "ACK", to_value))


def build_cancel(request: Request) -> Request:
    """The CANCEL for INVITE `request` (RFC 3261 9.1): same branch, CSeq number, To."""
    return Request(
        "CANCEL", request.uri, _copy_common(request, "CANCEL", request.headers.get("To") or "")
    )


# --- matching --------------------------------------------------------------------------


def _sent_by_port(via: Via) -> int:
    if via.port is not None:
        return via.port
    return _DEFAULT_PORT.get(via.transport.lower(), 5060)


def _server_key(request: Request, method: str) -> tuple[object, ...]:
    """The key of the server transaction `request` belongs to (RFC 3261 17.2.3)."""
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), _sent_by_port(via), method)
    # RFC 2543 peers: no usable branch, match on the request's identity instead.
    return (
        "rfc2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        str(via),
        method,
    )


def _server_method(method: str) -> str:
    return "INVITE" if method == "ACK" else method


def response_destination(via: Via, source: Address) -> Address:
    """Where responses go for a request with top Via `via` that came from `source`.

    Always the packet's real source IP (never a name or maddr from the message): over a
    reliable transport the source itself (the same connection); over UDP the source
    port when the client asked for rport (RFC 3581), else the Via's sent-by port
    (RFC 3261 18.2.2).
    """
    if source.reliable:
        return source
    if via.wants_rport:
        return source
    return Address(source.transport, source.host, _sent_by_port(via))


# --- the layer -------------------------------------------------------------------------


class TransactionLayer:
    """All transactions of one endpoint, their timers and message matching.

    Not thread-safe; drive it from one event loop. `len(layer)` is the number of live
    transactions.
    """

    def __init__(self, timers: TimerConfig = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._clients: dict[tuple[object, ...], ClientTransaction] = {}
        self._servers: dict[tuple[object, ...], ServerTransaction] = {}
        # (deadline, sequence, transaction, slot); entries go stale when the
        # transaction's deadline for that slot changes, and are skipped then.
        self._heap: list[tuple[float, int, Transaction, int]] = []
        self._prune_at = _PRUNE_MIN  # heap size that triggers dropping stale entries
        self._seq = itertools.count()
        # (when, transaction) in time order: transactions whose messages to compact.
        self._waiting: deque[tuple[float, Transaction]] = deque()

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    # ---- lookups

    def client_transaction(self, branch: str, method: str) -> ClientTransaction | None:
        return self._clients.get((branch, method))

    def find_cancelled(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a received CANCEL refers to (RFC 3261 9.2)."""
        try:
            txn = self._servers.get(_server_key(cancel, "INVITE"))
        except SipParseError:
            return None
        return None if txn is None or txn.terminated else txn

    # ---- timers

    def _schedule(self, txn: Transaction, slot: int, delay: float, now: float) -> None:
        at = now + delay
        if slot == _RETX:
            txn._retx_at = at
        elif slot == _END:
            txn._end_at = at
        else:
            txn._trying_at = at
        if len(self._heap) > self._prune_at:
            self._prune()
        heapq.heappush(self._heap, (at, next(self._seq), txn, slot))

    def _prune(self) -> None:
        """Drop stale timer entries (a timer stopped or replaced, a transaction ended):
        each holds its transaction, messages included, until its deadline, up to 64*T1
        after the transaction is gone. Rebuilt when the heap has doubled since the last
        rebuild, so the cost stays amortized O(1) per timer."""
        heap = self._heap  # changed in place: tick() may be iterating over it
        live = self._live
        heap[:] = [entry for entry in heap if live(entry[2], entry[3], entry[0])]
        heapq.heapify(heap)
        self._prune_at = max(_PRUNE_MIN, 2 * len(heap))

    def next_deadline(self) -> float | None:
        """When `tick` next has work to do, or None when no timer is running."""
        heap = self._heap
        while heap:
            at, _, txn, slot = heap[0]
            if self._live(txn, slot, at):
                return at
            heapq.heappop(heap)
        return None

    @staticmethod
    def _live(txn: Transaction, slot: int, at: float) -> bool:
        if txn.state is State.TERMINATED:
            return False
        if slot == _RETX:
            return txn._retx_at == at
        if slot == _END:
            return txn._end_at == at
        return txn._trying_at == at

    def tick(self, now: float) -> list[Action]:
        """Fire every timer due at `now`."""
        out: list[Action] = []
        if self._waiting:
            self._compact_due(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, txn, slot = heapq.heappop(heap)
            if not self._live(txn, slot, at):
                continue
            if slot == _RETX:
                txn._retx_at = None
                self._on_retransmit(txn, now, out)
            elif slot == _END:
                txn._end_at = None
                self._on_end_timer(txn, out)
            else:
                txn._trying_at = None
                assert isinstance(txn, ServerTransaction)
                if txn.last_response is None and txn.state is State.PROCEEDING:
                    self._respond(txn, make_response(txn.request, 100), out)
        return out

    def _on_retransmit(self, txn: Transaction, now: float, out: list[Action]) -> None:
        t = self.timers
        if isinstance(txn, ClientTransaction):
            if txn.is_invite:  # timer A, only in Calling
                if txn.state is not State.CALLING:
                    return
                interval = 2 * txn._retx_interval
            elif txn.state is State.TRYING:  # timer E
                interval = t.e(txn._retx_interval)
            elif txn.state is State.PROCEEDING:
                interval = t.t2
            else:
                return
            out.append(SendMessage(txn.request, txn.dest, txn))
        else:
            # Timer G: the INVITE server retransmits its non-2xx final until the ACK.
            if txn.state is not State.COMPLETED or txn.last_response is None:
                return
            assert isinstance(txn, ServerTransaction)
            interval = t.g(txn._retx_interval)
            out.append(SendMessage(txn.last_response, txn.response_dest, txn))
        txn._retx_interval = interval
        self._schedule(txn, _RETX, interval, now)

    def _on_end_timer(self, txn: Transaction, out: list[Action]) -> None:
        name = txn._end_name
        if name in ("B", "F", "H"):
            out.append(TransactionTimeout(txn, name))
        self._terminate(txn, out)

    def _end_state(
        self, txn: Transaction, name: str, delay: float, now: float, out: list[Action]
    ) -> None:
        """Start the timer that ends this state; a zero timer ends it at once."""
        txn._retx_at = None
        txn._end_name = name
        if delay <= 0:
            self._terminate(txn, out)
        else:
            self._schedule(txn, _END, delay, now)
            self._waiting.append((now + COMPACT_AFTER, txn))

    def _compact_due(self, now: float) -> None:
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            txn = waiting.popleft()[1]
            if txn.state is State.TERMINATED:
                continue
            txn.request.compact()
            if txn.last_response is not None:
                txn.last_response.compact()
            if isinstance(txn, ClientTransaction) and txn.ack is not None:
                txn.ack.compact()

    def _terminate(self, txn: Transaction, out: list[Action]) -> None:
        if txn.state is State.TERMINATED:
            return
        txn.state = State.TERMINATED
        txn._retx_at = txn._end_at = txn._trying_at = None
        if isinstance(txn, ClientTransaction):
            if self._clients.get(txn.key) is txn:
                del self._clients[txn.key]
        elif self._servers.get(txn.key) is txn:
            del self._servers[txn.key]
        out.append(TransactionTerminated(txn))

    # ---- client side

    def send_request(
        self, request: Request, dest: Address, now: float
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a client transaction for `request` and send it to `dest`.

        The top Via must be ours; a missing branch is filled with `new_branch()`. ACK is
        not sent through a transaction (send the ACK of a 2xx directly).
        """
        if request.method == "ACK":
            raise ValueError("ACK is not sent in a client transaction")
        via = request.top_via
        branch = via.branch
        if branch is None:
            via = via.copy()
            via.params["branch"] = branch = new_branch()
            request.set_top_via(via)
        elif not branch.startswith(MAGIC_COOKIE):
            raise ValueError("client transactions need an RFC 3261 branch (z9hG4bK...)")
        key = (branch, request.method)
        if key in self._clients:
            raise ValueError("a client transaction with this branch and method exists")
        txn = ClientTransaction(key, request, dest)
        self._clients[key] = txn
        out: list[Action] = [SendMessage(request, dest, txn)]
        t = self.timers
        if txn.is_invite:
            txn.state = State.CALLING
            txn._end_name = "B"
            self._schedule(txn, _END, t.b(), now)
            if not txn.reliable:
                txn._retx_interval = t.a()
                self._schedule(txn, _RETX, t.a(), now)
        else:
            txn.state = State.TRYING
            txn._end_name = "F"
            self._schedule(txn, _END, t.f(), now)
            if not txn.reliable:
                txn._retx_interval = t.t1
                self._schedule(txn, _RETX, t.t1, now)
        return txn, out

    def cancel(
        self, txn: ClientTransaction, now: float
    ) -> tuple[ClientTransaction | None, list[Action]]:
        """Cancel INVITE client transaction `txn` (RFC 3261 9.1).

        In Proceeding the CANCEL goes out now; in Calling it is held until the first
        provisional response (a CANCEL must not overtake the INVITE). Once a final
        response arrived there is nothing to cancel: (None, []).
        """
        if not txn.is_invite:
            raise ValueError("only INVITE transactions can be cancelled")
        if txn.cancel_transaction is not None:
            return txn.cancel_transaction, []
        if txn.state is State.CALLING:
            txn.cancel_pending = True
            return None, []
        if txn.state is not State.PROCEEDING:
            return None, []
        cancel_txn, out = self.send_request(build_cancel(txn.request), txn.dest, now)
        txn.cancel_transaction = cancel_txn
        txn.cancel_pending = False
        return cancel_txn, out

    def _client_response(
        self, txn: ClientTransaction, response: Response, source: Address, now: float
    ) -> list[Action]:
        out: list[Action] = []
        status = response.status
        state = txn.state
        t = self.timers
        if txn.is_invite:
            if state in (State.CALLING, State.PROCEEDING):
                txn.last_response = response
                out.append(ResponseReceived(response, source, txn))
                if status < 200:
                    if state is State.CALLING:
                        txn.state = State.PROCEEDING
                        txn._retx_at = txn._end_at = None  # A and B stop
                        if txn.cancel_pending:
                            out += self.cancel(txn, now)[1]
                elif status < 300:
                    txn.state = State.ACCEPTED
                    txn.cancel_pending = False
                    self._end_state(txn, "M", t.m(), now, out)
                else:
                    txn.state = State.COMPLETED
                    txn.cancel_pending = False
                    txn.ack = build_ack(txn.request, response)
                    out.append(SendMessage(txn.ack, txn.dest, txn))
                    self._end_state(txn, "D", t.d(txn.reliable), now, out)
            elif state is State.ACCEPTED:
                if 200 <= status < 300:
                    out.append(ResponseReceived(response, source, txn))
            elif state is State.COMPLETED and status >= 300 and txn.ack is not None:
                out.append(SendMessage(txn.ack, txn.dest, txn))
            return out
        if state in (State.TRYING, State.PROCEEDING):
            txn.last_response = response
            out.append(ResponseReceived(response, source, txn))
            if status < 200:
                txn.state = State.PROCEEDING
            else:
                txn.state = State.COMPLETED
                self._end_state(txn, "K", t.k(txn.reliable), now, out)
        return out

    # ---- server side

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> list[Action]:
        """Send the TU's `response` through server transaction `txn`."""
        out: list[Action] = []
        status = response.status
        state = txn.state
        t = self.timers
        if status < 100 or status > 699:
            raise ValueError(f"invalid status {status}")
        if txn.is_invite:
            if state is State.PROCEEDING:
                self._respond(txn, response, out)
                txn._trying_at = None
                if 200 <= status < 300:
                    txn.state = State.ACCEPTED
                    self._end_state(txn, "L", t.l(), now, out)
                elif status >= 300:
                    txn.state = State.COMPLETED
                    txn._end_name = "H"
                    self._schedule(txn, _END, t.h(), now)
                    self._waiting.append((now + COMPACT_AFTER, txn))
                    if not txn.reliable:
                        txn._retx_interval = t.t1
                        self._schedule(txn, _RETX, t.t1, now)
                return out
            if state is State.ACCEPTED and 200 <= status < 300:
                self._respond(txn, response, out)  # the TU retransmitting its 2xx
                return out
        elif state in (State.TRYING, State.PROCEEDING):
            self._respond(txn, response, out)
            if status < 200:
                txn.state = State.PROCEEDING
            else:
                txn.state = State.COMPLETED
                self._end_state(txn, "J", t.j(txn.reliable), now, out)
            return out
        raise TransactionStateError(
            f"cannot send {status} in {txn.method} server transaction state {state.value}"
        )

    def _respond(self, txn: ServerTransaction, response: Response, out: list[Action]) -> None:
        txn.last_response = response
        out.append(SendMessage(response, txn.response_dest, txn))

    def _server_request(self, request: Request, source: Address, now: float) -> list[Action]:
        method = request.method
        key = _server_key(request, _server_method(method))
        txn = self._servers.get(key)
        out: list[Action] = []
        if method == "ACK":
            if txn is None or not txn.is_invite:
                out.append(RequestReceived(request, source, None))
            elif txn.state is State.COMPLETED:
                txn.state = State.CONFIRMED
                self._end_state(txn, "I", self.timers.i(txn.reliable), now, out)
            elif txn.state is State.ACCEPTED:
                out.append(RequestReceived(request, source, txn))
            # Confirmed: a retransmitted ACK, absorbed.
            return out
        if txn is not None:
            # A retransmission: answer with the last response, per state.
            state = txn.state
            if txn.is_invite:
                if state is State.PROCEEDING:
                    if txn.last_response is None:
                        self._respond(txn, make_response(txn.request, 100), out)
                        txn._trying_at = None
                    else:
                        out.append(SendMessage(txn.last_response, txn.response_dest, txn))
                elif state is State.COMPLETED and txn.last_response is not None:
                    out.append(SendMessage(txn.last_response, txn.response_dest, txn))
            elif state in (State.PROCEEDING, State.COMPLETED) and txn.last_response is not None:
                out.append(SendMessage(txn.last_response, txn.response_dest, txn))
            return out
        txn = ServerTransaction(key, request, source, response_destination(request.top_via, source))
        self._servers[key] = txn
        t = self.timers
        cancels = None
        if txn.is_invite:
            txn.state = State.PROCEEDING
            out.append(RequestReceived(request, source, txn))
            if t.trying_delay <= 0:
                self._respond(txn, make_response(request, 100), out)
            else:
                self._schedule(txn, _TRYING, t.trying_delay, now)
            return out
        txn.state = State.TRYING
        txn._end_name = "TU"  # guard against a TU that never answers (module docstring)
        self._schedule(txn, _END, t.timeout, now)
        if method == "CANCEL":
            cancels = self.find_cancelled(request)
        out.append(RequestReceived(request, source, txn, cancels))
        return out

    # ---- input

    def receive(self, message: Request | Response, source: Address, now: float) -> list[Action]:
        """Feed one parsed message from `source`. Malformed key headers: dropped."""
        if self._waiting:
            self._compact_due(now)
        try:
            if isinstance(message, Response):
                via = message.top_via
                branch = via.branch
                txn = None
                if branch is not None:
                    txn = self._clients.get((branch, message.cseq.method))
                if txn is None:
                    return [ResponseReceived(message, source, None)]
                return self._client_response(txn, message, source, now)
            return self._server_request(message, source, now)
        except SipParseError:
            return []

    def transport_error(self, target: Transaction | Address, now: float) -> list[Action]:
        """A send failed: for one transaction, or every transaction using `target`."""
        out: list[Action] = []
        if isinstance(target, Transaction):
            victims: list[Transaction] = [target]
        else:
            victims = [t for t in self._clients.values() if t.dest == target]
            victims += [t for t in self._servers.values() if t.response_dest == target]
        for txn in victims:
            if not txn.terminated:
                out.append(TransportFailed(txn))
                self._terminate(txn, out)
        return out
