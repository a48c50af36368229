"""The B2BUA's call state: a call is two legs, each its own dialog, and the registry that
finds a call from any in-dialog request.

`Call` holds what the edge knows about one call once it is routed: its customer leg
(the PBX's dialog) and carrier leg (ours towards the carrier), when it was answered, and
how to finish it exactly once (`finish`: the call record is closed, the concurrent-call
slot released, metrics counted). `CallRegistry` maps each leg's dialog id (Call-ID and
both tags, as `Dialog.id_of_request` sees an incoming request) to its call and side.

In-dialog requests (`dispatch_in_dialog`): BYE from either leg is answered 200 and sent
on to the other leg, and the call ends with 3000 (carrier) or 3010 (customer); a second
BYE finds no dialog and gets 481, which harms nothing. re-INVITE, UPDATE and INFO are
relayed to the other leg (SDP through `sdp_relay.relay_sdp`) and the other leg's final
status comes back. REFER goes to the registry's `on_refer` (edge/refer.py); while a
transfer is being placed, a BYE from the customer's leg ends only that leg. ACKs of the
edge's own 2xx end here (the endpoint has already stopped retransmitting), except after
a delayed offer (`HeldAck`: an INVITE without SDP, the call's first or a re-INVITE):
the near side's ACK carries the answer to the offer the far side put in its 2xx; it is
anchored and sent on in the far leg's ACK, which the edge held back until then. A call
that ends first (no ACK within 64*T1, a BYE, a broken answer) still ACKs the far leg,
with an answer rejecting every stream, before its BYE (RFC 3261 13.2.2.4). Requests
travel to the address each side is known by: the PBX's packet source (NAT-safe; names in
its Contact are never followed) and the carrier's configured address, so neither side
learns the other's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import (
    TIMEOUT,
    CallEnd,
    Side,
    bye_from,
    media_failure,
    midcall_failure,
)
from opentrunk.edge.logs import call_context
from opentrunk.edge.media_session import (
    answer_refusal,
    is_sdp,
    missing_answer,
    rejecting_answer,
)
from opentrunk.edge.sdp_relay import SdpHop, anchor_sdp
from opentrunk.edge.session_timer import session_timer_headers
from opentrunk.media.backend import MediaError
from opentrunk.sip.dialog import Dialog, DialogError, DialogId
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.transaction import Address

if TYPE_CHECKING:
    from opentrunk.edge.media_session import CallMedia
    from opentrunk.sip.message import Response
    from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint

log = logging.getLogger(__name__)

# Requests relayed from one leg to the other inside a dialog.
RELAYED_METHODS = frozenset({"INVITE", "UPDATE", "INFO"})
# How long the edge waits for the other leg's answer to a relayed request.
RELAY_TIMEOUT = 32.0


@dataclass(eq=False)
class Leg:
    """One side of a call: its dialog (None until it exists) and where requests go."""

    side: Side
    dest: Address
    dialog: Dialog | None = None
    sdp: bytes = b""  # the last session description this leg's peer sent (a transfer's offer)


@dataclass(eq=False)
class HeldAck:
    """The far leg's ACK of a delayed-offer call (RFC 3261 13.2.1): the far side's 2xx
    carried the offer, so its ACK must carry the answer, which only the `near` side's
    ACK brings. `offer` is the far side's offer as it sent it (for a rejecting answer);
    `answering` is set once the near side's ACK is being anchored."""

    near: Side
    offer: bytes
    answering: bool = False


@dataclass(frozen=True)
class CallOwner:
    """Whose call it is, as a transfer (REFER) from the customer's leg needs it: the
    account and trunk (a Refer-To must name the trunk's domain) and the customer's own
    number on the call (the caller ID of the transfer leg), E.164 with "+"."""

    account_id: int
    trunk_id: str
    trunk_domain: str
    number: str


@dataclass(eq=False)
class Call:
    """A call that passed admission. `on_finish(call, end)` runs once."""

    call_uuid: str
    customer: Leg
    on_finish: Callable[[Call, CallEnd], None]
    carrier: Leg | None = None
    account_id: str | None = None  # set when the call holds a concurrent-call slot
    answer_time: datetime | None = None
    owner: CallOwner | None = None  # None: the customer's leg cannot transfer (REFER)
    transferring: bool = False  # a REFER's new leg is being placed
    media: CallMedia | None = None  # the call's anchored media (None: not anchored)
    held_ack: HeldAck | None = None  # a delayed offer's far ACK, until the answer comes
    ended: bool = False
    end: CallEnd | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def leg(self, side: Side) -> Leg | None:
        return self.customer if side is Side.CUSTOMER else self.carrier

    def other(self, side: Side) -> Leg | None:
        return self.carrier if side is Side.CUSTOMER else self.customer

    def finish(self, end: CallEnd) -> bool:
        """End the call with `end` unless it already ended; True the first time."""
        if self.ended:
            return False
        self.ended = True
        self.end = end
        self.on_finish(self, end)
        return True


class CallRegistry:
    """Live calls by call_uuid and by the dialog id of each of their legs."""

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self._legs: dict[DialogId, tuple[Call, Side]] = {}
        # Told of every relayed request's final answer: (call, sender side, method,
        # answer). The session timers (edge/session_timer.py) count refreshes by it.
        self.on_relayed: Callable[[Call, Side, str, Response], None] | None = None
        # Handles a REFER inside a call (edge/refer.py); None: REFER gets 501.
        self.on_refer: Callable[[Call, Side, IncomingRequest], Awaitable[None]] | None = None

    def add(self, call: Call) -> None:
        self.calls[call.call_uuid] = call

    def add_leg(self, call: Call, side: Side, dialog: Dialog) -> None:
        self._legs[dialog.id] = (call, side)

    def find(self, dialog_id: DialogId) -> tuple[Call, Side] | None:
        return self._legs.get(dialog_id)

    def remove_leg(self, dialog: Dialog) -> None:
        self._legs.pop(dialog.id, None)

    def remove(self, call: Call) -> None:
        self.calls.pop(call.call_uuid, None)
        for leg in (call.customer, call.carrier):
            if leg is not None and leg.dialog is not None:
                self._legs.pop(leg.dialog.id, None)

    def __len__(self) -> int:
        return len(self.calls)


def send_bye(endpoint: SipEndpoint, leg: Leg | None) -> None:
    """BYE on a confirmed leg, fire and forget (its answer changes nothing)."""
    if leg is None or leg.dialog is None:
        return
    try:
        bye = leg.dialog.create_request("BYE")
        leg.dialog.terminate()
        endpoint.request(bye, leg.dest)
    except (DialogError, ValueError, SipParseError):
        log.warning("could not send BYE on the %s leg", leg.side.value)


def ack_far_leg(
    endpoint: SipEndpoint, leg: Leg, answer: bytes, content_type: str = "application/sdp"
) -> None:
    """The ACK of the far side's 2xx, with `answer` (the SDP answer to its offer) as body."""
    if leg.dialog is None:
        return
    headers = (("Content-Type", content_type),) if answer else ()
    try:
        ack = leg.dialog.create_ack(body=answer, headers=headers)
    except (DialogError, ValueError, SipParseError):
        log.warning("could not ACK the %s leg", leg.side.value)
        return
    endpoint.send_ack(ack, leg.dest)


def release_held_ack(
    endpoint: SipEndpoint, call: Call, answer: bytes | None = None, content_type: str = ""
) -> None:
    """Send a delayed-offer call's held far ACK once: with `answer`, or (None) with an
    answer rejecting every stream of the far side's offer, as the call is ending."""
    held, call.held_ack = call.held_ack, None
    if held is None:
        return
    far = call.other(held.near)
    if far is None:
        return
    if answer is None:
        ack_far_leg(endpoint, far, rejecting_answer(held.offer))
    else:
        ack_far_leg(endpoint, far, answer, content_type or "application/sdp")


def hang_up(endpoint: SipEndpoint, call: Call, by: Side | None, end: CallEnd) -> None:
    """End an answered call: BYE to every leg other than `by` (None: both legs). A far
    leg still waiting for its ACK (delayed offer) gets it first."""
    if not call.finish(end):
        return
    release_held_ack(endpoint, call)
    for side in (Side.CUSTOMER, Side.CARRIER):
        if side is not by:
            send_bye(endpoint, call.leg(side))
        else:
            leg = call.leg(side)
            if leg is not None and leg.dialog is not None:
                leg.dialog.terminate()


def dispatch_in_dialog(
    endpoint: SipEndpoint, registry: CallRegistry, incoming: IncomingRequest
) -> Awaitable[None] | None:
    """Handle a request carrying a To tag (see the module docstring). ACK, BYE and the
    refusals are done here and now; only a request that waits for the other leg (a
    relayed re-INVITE, UPDATE or INFO, a REFER) returns the coroutine that does it.
    Every call sees two or three of the former, and a task for each (the endpoint runs
    what a handler returns in one) was most of their cost."""
    request = incoming.request
    method = request.method
    found = registry.find(Dialog.id_of_request(request))
    if found is None:
        if method != "ACK":
            incoming.respond(481)
        return None
    call, side = found
    if method == "ACK":
        held = call.held_ack
        if held is None or side is not held.near or held.answering:
            return None
        held.answering = True  # a retransmitted ACK must not answer twice
        with call_context(call.call_uuid):
            return _answer_held_offer(endpoint, call, held, incoming)
    # Run in the endpoint's receive callback (not a task of its own): lines logged while
    # handling the request carry its call, and only while it is handled.
    with call_context(call.call_uuid):
        return _dispatch(endpoint, registry, incoming, call, side)


def _dispatch(
    endpoint: SipEndpoint,
    registry: CallRegistry,
    incoming: IncomingRequest,
    call: Call,
    side: Side,
) -> Awaitable[None] | None:
    request = incoming.request
    method = request.method
    leg = call.leg(side)
    if leg is None or leg.dialog is None or not leg.dialog.on_request(request):
        incoming.respond(500, headers=(("Retry-After", "1"),))
        return None
    if method == "BYE":
        incoming.respond(200)
        if side is Side.CUSTOMER and call.transferring:
            # The transferor may leave once its REFER is accepted (RFC 5589 6.1): only
            # its leg ends; the transfer goes on (edge/refer.py).
            leg.dialog.terminate()
            return None
        hang_up(endpoint, call, side, bye_from(side))
        return None
    if method == "OPTIONS":
        incoming.respond(200)
        return None
    if method in RELAYED_METHODS:
        return _relay(endpoint, call, side, incoming, registry)
    if method == "REFER" and registry.on_refer is not None:
        return registry.on_refer(call, side, incoming)
    incoming.respond(501)
    return None


async def _answer_held_offer(
    endpoint: SipEndpoint, call: Call, held: HeldAck, incoming: IncomingRequest
) -> None:
    """The near side's ACK of a delayed-offer call: anchor its answer and send it on in
    the far leg's ACK; without a usable answer the call ends, BYE both ways (the far leg
    is ACKed with a rejecting answer first, `hang_up`)."""
    ack = incoming.request
    content_type = ack.headers.get("Content-Type")
    if not is_sdp(ack.body, content_type):
        log.warning("ACK without the answer to the edge's offer")
        hang_up(endpoint, call, None, missing_answer())
        return
    far = call.other(held.near)
    towards = far.side.value if far is not None else "carrier"
    try:
        answer = await anchor_sdp(
            call.media, ack.body, content_type, SdpHop(call.call_uuid, towards, "answer")
        )
    except MediaError as exc:
        log.warning("answer in the ACK not anchored: %s", type(exc).__name__)
        hang_up(endpoint, call, None, answer_refusal(exc))
        return
    if call.held_ack is not held:
        return  # the call ended meanwhile; its far leg was ACKed then
    near = call.leg(held.near)
    if near is not None:
        near.sdp = ack.body
    release_held_ack(endpoint, call, answer, content_type or "")


async def _relay(
    endpoint: SipEndpoint,
    call: Call,
    side: Side,
    incoming: IncomingRequest,
    registry: CallRegistry | None = None,
) -> None:
    """Pass an in-dialog request to the other leg and its final answer back. An answer
    of 481 or 408 (or none at all) means the other leg's dialog is gone (RFC 3261
    12.2.1.2): the call is ended with that side's mid-call failure."""
    request = incoming.request
    other = call.other(side)
    if other is None or other.dialog is None or call.ended:
        incoming.respond(481)
        return
    towards = "carrier" if side is Side.CUSTOMER else "customer"
    headers: list[tuple[str, str]] = []
    content_type = request.headers.get("Content-Type")
    if content_type:
        headers.append(("Content-Type", content_type))
    # Session-timer negotiation (RFC 4028) is end to end: its headers cross the legs.
    headers += session_timer_headers(request)
    try:
        body = await anchor_sdp(
            call.media, request.body, content_type, SdpHop(call.call_uuid, towards, "offer")
        )
    except MediaError:
        incoming.respond(488)
        return
    try:
        relayed = other.dialog.create_request(request.method, body=body, headers=headers)
    except DialogError:
        incoming.respond(481)
        return
    if request.body:
        leg = call.leg(side)
        if leg is not None:
            leg.sdp = request.body
    outgoing = endpoint.request(relayed, other.dest)
    try:
        answer = await asyncio.wait_for(asyncio.shield(outgoing.final), RELAY_TIMEOUT)
    except TimeoutError:
        incoming.respond(408)
        hang_up(endpoint, call, None, midcall_failure(other.side, TIMEOUT))
        return
    other.dialog.on_response(relayed, answer)
    if registry is not None and registry.on_relayed is not None:
        registry.on_relayed(call, side, request.method, answer)
    answer_type = answer.headers.get("Content-Type")
    kind = "answer"
    if request.method == "INVITE" and 200 <= answer.status < 300:
        if not relayed.body and is_sdp(answer.body, answer_type):
            # A re-INVITE without SDP (delayed offer, e.g. a session refresh): the
            # other side's 2xx carries the offer, the sender's ACK the answer, which
            # the other leg's ACK waits for (`_answer_held_offer`).
            kind = "offer"
            call.held_ack = HeldAck(side, answer.body)
        else:
            endpoint.send_ack(other.dialog.create_ack(), other.dest)
    if 200 <= answer.status < 300 and answer.body:
        other.sdp = answer.body
    try:
        back = await anchor_sdp(
            call.media, answer.body, answer_type, SdpHop(call.call_uuid, side.value, kind)
        )
    except MediaError:
        # The relay cannot follow the other leg's new media: the call cannot go on.
        # The sender's offer is refused (488, not a 2xx without its answer) and both
        # legs get BYE (5270).
        hang_up(endpoint, call, None, media_failure())
        incoming.respond(488)
        return
    extra = (("Content-Type", answer_type),) if answer_type and back else ()
    contact = endpoint.contact_uri(None, incoming.source.transport)
    status = answer.status if answer.status < 700 else 500
    for name in ("Session-Expires", "Require"):
        value = answer.headers.get(name)
        if value and 200 <= status < 300:
            extra = (*extra, (name, value))
    incoming.respond(status, contact=contact, headers=extra, body=back)
    if call.held_ack is not None and call.held_ack.near is side:

        def ack_timeout() -> None:
            # The sender never ACKed the 2xx carrying the offer (64*T1).
            hang_up(endpoint, call, None, midcall_failure(side, TIMEOUT))

        incoming.on_ack_timeout = ack_timeout
    if answer.status in (408, 481):
        hang_up(endpoint, call, None, midcall_failure(other.side, answer.status))


def utcnow() -> datetime:
    return datetime.now(UTC)
