"""Placing a new outgoing leg of a call and bridging it: the machinery shared by the
edge's three users of it, an outbound call (PBX -> carrier, `outbound.OutboundCall`), an
inbound call (carrier -> PBX, `inbound.InboundCall`) and a transfer (REFER: the far
party -> a new carrier leg, `refer.Transfer`).

`LegPlacer` tries one `LegTarget` at a time (`place`): it sends the target's INVITE (a
new dialog of the edge's own), waits for the final response within the `AttemptTimers`,
answers one 401/407 with the target's credentials, abandons the attempt (CANCEL) when
the timers run out or the placer is cancelled, and ACKs then BYEs a 2xx that arrives
after it gave up. Provisional responses and the answer go to its user through two
hooks, `on_progress` and `on_answer`; the outcome is `Attempted.ANSWERED`,
`Attempted.CANCELLED` or the final status of the attempt (`TIMEOUT` for a timeout, 503
for a transport failure), which the user maps to failover and codes.

`BridgedCall` is the `LegPlacer` for an incoming INVITE (the "near" side): it relays
provisional responses to it, answers it 200 when the far side answers, puts both
dialogs in a `b2bua.Call`, starts the session timer, and opens and closes the call
record exactly once (`finish`). Its subclasses say how the call is admitted, where it
goes and what its record holds (`call_start`, `call_finish`).

Delayed offer (an incoming INVITE without a body, RFC 3261 13.2.1): the far leg's INVITE
goes without SDP too; the far side's 2xx must carry the offer, which is anchored (the
media backend's `offer` from the far side's leg) and sent to the near side in its 200;
the far leg's ACK is held (`b2bua.HeldAck`) until the near side's ACK brings the answer
(`b2bua.dispatch_in_dialog`). A 2xx without an offer, or with one the backend cannot
anchor, is ACKed (with an answer rejecting every stream when it had an offer) and sent
BYE, and the attempt ends 488. SDP in a provisional response of such a call would be an
offer in an unreliable 18x (the edge does not do 100rel): the 18x is relayed without it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import (
    TIMEOUT,
    CallEnd,
    FinalStatus,
    Side,
    midcall_failure,
    refusal,
)
from opentrunk.domain.limits import CallLimits
from opentrunk.edge.b2bua import (
    Call,
    CallOwner,
    HeldAck,
    Leg,
    ack_far_leg,
    hang_up,
    send_bye,
)
from opentrunk.edge.logs import event, set_call_uuid
from opentrunk.edge.media_session import CallMedia, is_sdp, rejecting_answer, with_quality
from opentrunk.edge.sdp_relay import SdpHop, anchor_sdp, relay_sdp
from opentrunk.media.backend import MediaError
from opentrunk.sip.dialog import Dialog, DialogError
from opentrunk.sip.digest import DigestClient, choose_challenge
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.message import Request, Response
from opentrunk.sip.uri import SipURI, TelURI

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.edge.views import AccountView, CallFinish, CallStart
    from opentrunk.sip.transaction import Address
    from opentrunk.transport.endpoint import IncomingRequest, OutgoingRequest

log = logging.getLogger(__name__)

# The methods CALLS.md accepts. INFO is not listed: outside a dialog it is refused 405
# like the other unlisted methods; inside an answered call it is still relayed between
# the legs (b2bua.RELAYED_METHODS) for PBXes that send DTMF that way.
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, REFER"
# The 2xx headers of the far side's answer that the near side's 200 carries too: session
# timers (RFC 4028) are negotiated end to end.
ANSWER_HEADERS = ("Session-Expires", "Require")


class Attempted(Enum):
    ANSWERED = "answered"
    CANCELLED = "cancelled"
    UNRESOLVED = "unresolved"  # the target is not valid or its host does not resolve


Placed = Attempted | FinalStatus


@dataclass(frozen=True)
class AttemptTimers:
    """How long one attempt may take: with nothing at all received (`silent`), with
    only 100 Trying (`unanswered`), and once the far side rang (`ring`, from the 18x).
    All run from the moment the INVITE (or its re-send with credentials) leaves."""

    silent: float
    unanswered: float
    ring: float


@dataclass(frozen=True)
class LegTarget:
    """One place a leg may go: its INVITE (a new dialog), where it is sent, and the
    credentials for a 401/407 (None: a challenge is the attempt's final answer).
    `label` names it in logs and records (a carrier's name, an origination URI)."""

    label: str
    dest: Address
    invite: Request
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(eq=False)
class Attempt:
    """One target tried: its current INVITE (replaced when re-sent with credentials)."""

    target: LegTarget
    invite: Request
    outgoing: OutgoingRequest | None = None
    provisional_at: float | None = None
    rang_at: float | None = None
    abandoned: bool = False
    late_answers: set[str] = field(default_factory=set)

    @property
    def dest(self) -> Address:
        return self.target.dest


def user_of(uri: object) -> str | None:
    """The user of a sip: URI or the number of a tel: URI."""
    if isinstance(uri, SipURI):
        return uri.user
    if isinstance(uri, TelURI):
        return uri.number
    return None


def record_digits(text: str | None) -> str:
    """A number as the call record stores it: without "+", at most 32 characters."""
    return (text or "").strip().removeprefix("+")[:32]


def utcnow() -> datetime:
    return datetime.now(UTC)


def reason_header(end: CallEnd) -> str:
    """The RFC 3326 Reason telling the near side which hangup code ended its call."""
    return f'SIP;cause={end.sip_status};text="{end.code} {end.name}"'


def offer_in_2xx(invite: Request, final: Response) -> bool:
    """Whether `final` (a 2xx to `invite`) carries an offer: the INVITE had none (RFC 3261
    13.2.1), so its ACK must carry the answer."""
    return not invite.body and is_sdp(final.body, final.headers.get("Content-Type"))


def refusing_ack(edge: SipEdge, invite: Request, final: Response, leg: Leg) -> None:
    """ACK a 2xx the edge will not use (then BYE it): with an answer rejecting every
    stream when the 2xx carried an offer (RFC 3261 13.2.2.4), else without a body."""
    answer = rejecting_answer(final.body) if offer_in_2xx(invite, final) else b""
    ack_far_leg(edge.endpoint, leg, answer)


def with_credentials(
    invite: Request, challenge: Response, username: str, password: str
) -> Request | None:
    """The INVITE again (new transaction, next CSeq) answering a 401/407 `challenge`;
    None when it offers no digest challenge the edge can answer."""
    if challenge.status == 407:
        offered, answer_header = "Proxy-Authenticate", "Proxy-Authorization"
    else:
        offered, answer_header = "WWW-Authenticate", "Authorization"
    chosen = choose_challenge(challenge.headers.get_all(offered))
    if chosen is None:
        return None
    try:
        credentials = DigestClient(username, password).authorization(
            chosen[0], method="INVITE", uri=str(invite.uri), body=invite.body
        )
    except ValueError:
        return None
    retry = invite.copy()
    retry.headers.remove("Via")
    retry.headers.set("CSeq", f"{invite.cseq.number + 1} INVITE")
    retry.headers.set(answer_header, credentials)
    return retry


async def admit_call(
    edge: SipEdge, account: AccountView, trunk_id: str, call_uuid: str
) -> CallEnd | None:
    """The account's limits (`domain.limits.CallAdmission`): trunk CPS, account CPS
    queue, concurrent calls. None: admitted (a slot is held when the account has a
    concurrent-call limit)."""
    limits = CallLimits(
        trunk_cps=account.cps,
        trunk_burst=max(1, int(account.cps)),
        account_cps=account.cps,
        account_burst=max(1, int(account.cps)),
        max_concurrent=account.max_calls,
    )
    return await edge.admission.admit(
        account_id=str(account.account_id), trunk_id=trunk_id, call_id=call_uuid, limits=limits
    )


class LegPlacer:
    """Places a new leg towards the `far_side`, one target at a time (module docstring).
    `cancelled` set: the attempt under way is abandoned and `place` returns CANCELLED."""

    far_side: Side = Side.CARRIER

    def __init__(self, edge: SipEdge, call_uuid: str, timers: AttemptTimers) -> None:
        self.edge = edge
        self.call_uuid = call_uuid
        self.timers = timers
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.post_dial_delay: float | None = None
        # The per-minute rate of the leg being placed (a carrier's; 0 towards a PBX).
        self.rate = Decimal(0)
        self.cancelled: asyncio.Future[None] = self.loop.create_future()
        # The far side's SDP in its 2xx as it sent it (`prepare_answer` may rewrite the
        # response's body for the near side); what the leg's `sdp` keeps.
        self.answer_sdp = b""
        # The near side's INVITE had no offer (module docstring): the far side's 2xx
        # must carry it, and its ACK waits for the near side's answer (`held_ack`).
        self.delayed_offer = False
        self.held_ack: HeldAck | None = None

    # -- hooks for the users ------------------------------------------------------------

    def on_progress(self, attempt: Attempt, response: Response) -> None:
        """A provisional response other than 100 from the far side (18x)."""

    def on_answer(self, attempt: Attempt, final: Response, leg: Leg) -> Placed:
        """The far side answered 2xx; the ACK is sent and `leg` holds its dialog.
        Returns ANSWERED, or another outcome when the answer cannot be used."""
        raise NotImplementedError

    async def prepare_answer(self, final: Response) -> bool:
        """Before `on_answer`: e.g. anchor the answer's SDP (in place). False: the answer
        cannot be used (the far leg gets BYE and the attempt ends 488)."""
        return True

    # -- one attempt ---------------------------------------------------------------------

    def cancel(self) -> None:
        if not self.cancelled.done():
            self.cancelled.set_result(None)

    async def place(self, target: LegTarget) -> Placed:
        endpoint = self.edge.endpoint
        attempt = Attempt(target, target.invite)
        challenged = False
        while True:
            outgoing = attempt.outgoing = endpoint.request(
                attempt.invite, target.dest, on_response=lambda r: self._on_response(attempt, r)
            )
            sent_at = self.loop.time()
            while True:
                deadline = self._deadline(attempt, sent_at)
                done, _ = await asyncio.wait(
                    (outgoing.final, self.cancelled),
                    timeout=max(0.0, deadline - self.loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if self.cancelled.done():
                    self._abandon(attempt)
                    return Attempted.CANCELLED
                if done:
                    break
                if self._deadline(attempt, sent_at) <= self.loop.time():
                    self._abandon(attempt)
                    return TIMEOUT
                # else a provisional response moved the deadline meanwhile
            final = outgoing.final.result()
            # The attempt's callback only matters before the final response, or for a
            # late 2xx once the attempt was abandoned (never the case here). Left set, it
            # would keep this whole call (media, record state) alive for 64*T1 after it
            # ended, through the INVITE client transaction waiting in Accepted;
            # retransmitted 2xx are re-ACKed by the endpoint without it.
            outgoing.on_response = None
            if 200 <= final.status < 300:
                return await self._answered(attempt, final)
            if (
                final.status in (401, 407)
                and not challenged
                and target.username
                and target.password
            ):
                challenged = True
                retry = with_credentials(attempt.invite, final, target.username, target.password)
                if retry is not None:
                    attempt.invite = retry
                    attempt.provisional_at = attempt.rang_at = None
                    continue
            if outgoing.local_failure == "timeout":
                return TIMEOUT
            if outgoing.local_failure is not None:
                return 503  # unreachable: refused connection, failed handshake
            return final.status

    def _deadline(self, attempt: Attempt, sent_at: float) -> float:
        """When the attempt times out, given what the far side has sent so far."""
        timers = self.timers
        if attempt.rang_at is not None:
            return attempt.rang_at + timers.ring
        if attempt.provisional_at is not None:
            return sent_at + timers.unanswered
        return sent_at + min(timers.silent, timers.unanswered)

    def _abandon(self, attempt: Attempt) -> None:
        attempt.abandoned = True
        if attempt.outgoing is not None:
            attempt.outgoing.cancel()

    def _on_response(self, attempt: Attempt, response: Response) -> None:
        set_call_uuid(self.call_uuid)
        status = response.status
        if attempt.abandoned:
            if 200 <= status < 300:
                self._refuse_late_answer(attempt, response)
            return
        if status >= 200:
            return
        now = self.loop.time()
        if attempt.provisional_at is None:
            attempt.provisional_at = now
        if status == 100:
            return
        if attempt.rang_at is None:
            attempt.rang_at = now
        if self.post_dial_delay is None:
            self.post_dial_delay = now - self.started
        if not self.cancelled.done():
            self.on_progress(attempt, response)

    def _refuse_late_answer(self, attempt: Attempt, response: Response) -> None:
        """The far side answered after the edge gave up on it: ACK, then BYE, once."""
        tag = response.to.tag or ""
        if tag in attempt.late_answers:
            return
        attempt.late_answers.add(tag)
        try:
            dialog = Dialog.as_uac(attempt.invite, response)
        except (DialogError, SipParseError):
            return
        leg = Leg(self.far_side, attempt.dest, dialog)
        refusing_ack(self.edge, attempt.invite, response, leg)
        send_bye(self.edge.endpoint, leg)

    async def _answered(self, attempt: Attempt, final: Response) -> Placed:
        try:
            dialog = Dialog.as_uac(attempt.invite, final)
        except (DialogError, SipParseError):
            # No usable Contact: the dialog cannot be held, so treat it as a bad gateway.
            attempt.abandoned = True
            return 502
        if self.post_dial_delay is None:
            self.post_dial_delay = self.loop.time() - self.started
        leg = Leg(self.far_side, attempt.dest, dialog)
        self.answer_sdp = final.body
        usable = await self.prepare_answer(final)
        # The ACK goes only once the answer is prepared, and `on_answer` registers the
        # dialog before anything else can run: a far side may send BYE, re-INVITE or
        # REFER the moment it has its ACK, and while `prepare_answer` waited (the media
        # backend in another process) those would have met no dialog (481).
        if not usable:
            refusing_ack(self.edge, attempt.invite, final, leg)
            send_bye(self.edge.endpoint, leg)
            return 488
        if self.delayed_offer:
            # The 2xx carried the offer: its ACK carries the answer, which the near
            # side's ACK brings (b2bua.dispatch_in_dialog sends it on).
            # The near side: the one whose INVITE this leg answers.
            self.held_ack = HeldAck(self.far_side.other, self.answer_sdp)
        else:
            self.edge.endpoint.send_ack(dialog.create_ack(), attempt.dest)
        return self.on_answer(attempt, final, leg)


class BridgedCall(LegPlacer):
    """A call set up by an incoming INVITE from the `near_side`, bridged to the leg the
    subclass places (`_run`) towards the other side; see the module docstring."""

    near_side: Side = Side.CUSTOMER

    def __init__(self, edge: SipEdge, incoming: IncomingRequest, timers: AttemptTimers) -> None:
        super().__init__(edge, str(uuid.uuid4()), timers)
        self.far_side = self.near_side.other
        self.incoming = incoming
        self.request = incoming.request
        self.initiation_time = utcnow()
        self.recorded = False
        self.finished = False
        # The account holding a concurrent-call slot for this call (None: none held).
        self.slot_account: str | None = None
        # The call's anchored media, set by the subclass once the call is admitted.
        self.media: CallMedia | None = None
        # No body at all: a delayed offer (a body that is not SDP is refused by
        # `CallMedia.relay` before any far leg is tried).
        self.delayed_offer = not self.request.body
        incoming.on_cancel = self.cancel

    # -- what the subclasses say --------------------------------------------------------

    async def _run(self) -> None:
        raise NotImplementedError

    def call_start(self) -> CallStart | None:
        """The record to open; None while no account owns the call (no record)."""
        raise NotImplementedError

    def call_finish(self, end: CallEnd, answer_time: datetime | None) -> CallFinish:
        raise NotImplementedError

    def call_owner(self) -> CallOwner | None:
        """Whose call it is, for a transfer from the customer's leg (None: no REFER)."""
        return None

    # -- entry ---------------------------------------------------------------------------

    async def run(self) -> None:
        set_call_uuid(self.call_uuid)
        try:
            await self._run()
        except Exception:
            log.exception("%s call failed", self.near_side.value)
            self.finish(refusal(5260, "internal error while routing", sip_status=500))

    # -- the near side ------------------------------------------------------------------

    def respond(
        self,
        status: int,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if self.incoming.respond(status, reason, headers=headers) is not None:
            self.edge.metrics.response_sent(status)

    def open_record(self) -> None:
        if self.recorded:
            return
        start = self.call_start()
        if start is None:
            return
        self.recorded = True
        self.edge.recorder.open(start)
        self.edge.metrics.call_started()

    def finish(self, end: CallEnd, answer_time: datetime | None = None) -> None:
        """Close the call once: answer the near side (before answer), close the record,
        count it and give back its concurrent-call slot."""
        if self.finished:
            return
        self.finished = True
        if end.sip_status is not None and not self.incoming.final_sent:
            self.respond(end.sip_status, headers=(("Reason", reason_header(end)),))
        self.open_record()
        if not self.recorded:
            return
        finish = self.call_finish(end, answer_time)
        if self.media is None:
            self.edge.recorder.close(self.call_uuid, finish)
        else:
            # Free the ports first; the record gets the stream figures they held.
            self.edge.spawn(self._close_with_media(self.media, finish))
        self.edge.metrics.call_ended(end)
        event(log, logging.INFO, "call ended", code=end.code, source=end.source.value)
        if self.slot_account is not None:
            self.edge.release_slot(self.slot_account, self.call_uuid)

    async def _close_with_media(self, media: CallMedia, finish: CallFinish) -> None:
        quality = None
        try:
            quality = await media.release()
        finally:
            # Whatever the release did (even a failure nobody foresaw, or the task
            # cancelled at stop), the record is closed, without figures if need be.
            self.edge.recorder.close(self.call_uuid, with_quality(finish, quality))

    async def prepare_answer(self, final: Response) -> bool:
        media = self.media
        content_type = final.headers.get("Content-Type")
        if self.delayed_offer:
            return await self._prepare_offer(final)
        if media is None or not is_sdp(final.body, content_type):
            return True
        hop = SdpHop(self.call_uuid, self.near_side.value, "answer")
        try:
            final.body = await anchor_sdp(media, final.body, content_type, hop)
        except MediaError as exc:
            event(log, logging.WARNING, "answer sdp not anchored", error=type(exc).__name__)
            return False
        return True

    async def _prepare_offer(self, final: Response) -> bool:
        """A delayed offer's 2xx: it must carry the offer, anchored here (in place) from
        the far side's leg for the near side's 200."""
        content_type = final.headers.get("Content-Type")
        if not is_sdp(final.body, content_type):
            event(log, logging.WARNING, "2xx without the offer a delayed-offer INVITE needs")
            return False
        hop = SdpHop(self.call_uuid, self.near_side.value, "offer")
        try:
            final.body = await anchor_sdp(self.media, final.body, content_type, hop)
        except MediaError as exc:
            event(log, logging.WARNING, "offer sdp not anchored", error=type(exc).__name__)
            return False
        return True

    def on_progress(self, attempt: Attempt, response: Response) -> None:
        """Relay the far side's 18x (with its SDP) to the near side."""
        if self.incoming.final_sent:
            return
        content_type = response.headers.get("Content-Type")
        if self.delayed_offer and is_sdp(response.body, content_type):
            # An offer in an unreliable 18x cannot be answered before the 2xx: ring
            # without early media (the same offer comes again in the 2xx).
            response.body = b""
        if self.media is not None and is_sdp(response.body, content_type):
            self.edge.spawn(self._anchored_progress(self.media, response))
            return
        self._relay_progress(response)

    async def _anchored_progress(self, media: CallMedia, response: Response) -> None:
        hop = SdpHop(self.call_uuid, self.near_side.value, "answer")
        content_type = response.headers.get("Content-Type")
        try:
            response.body = await anchor_sdp(media, response.body, content_type, hop)
        except MediaError:
            response.body = b""  # early media cannot be anchored: ring without it
        if not self.incoming.final_sent and not self.cancelled.done():
            self._relay_progress(response)

    def _relay_progress(self, response: Response) -> None:
        content_type = response.headers.get("Content-Type")
        hop = SdpHop(self.call_uuid, self.near_side.value, "answer")
        body = relay_sdp(response.body, content_type, hop)
        headers = (("Content-Type", content_type),) if content_type and body else ()
        contact = self.edge.endpoint.contact_uri(None, self.incoming.source.transport)
        if self.incoming.respond(response.status, contact=contact, headers=headers, body=body):
            self.edge.metrics.response_sent(response.status)

    def on_answer(self, attempt: Attempt, final: Response, leg: Leg) -> Placed:
        """Answer the near side 200 with the far side's SDP and hold both dialogs."""
        endpoint = self.edge.endpoint
        content_type = final.headers.get("Content-Type")
        hop = SdpHop(self.call_uuid, self.near_side.value, "answer")
        body = relay_sdp(final.body, content_type, hop)
        headers: list[tuple[str, str]] = []
        if content_type and body:
            headers.append(("Content-Type", content_type))
        for name in ANSWER_HEADERS:
            value = final.headers.get(name)
            if value:
                headers.append((name, value))
        contact = endpoint.contact_uri(None, self.incoming.source.transport)
        answered = None
        if not self.cancelled.done():
            answered = self.incoming.respond(200, contact=contact, headers=headers, body=body)
        held, self.held_ack = self.held_ack, None
        if answered is None:
            if held is not None:
                ack_far_leg(endpoint, leg, rejecting_answer(held.offer))
            send_bye(endpoint, leg)
            return Attempted.CANCELLED
        self.edge.metrics.response_sent(200)
        near_dialog = Dialog.as_uas(self.request, self.incoming.local_tag, early=False)
        near = Leg(self.near_side, self.incoming.source, near_dialog, self.request.body)
        leg.sdp = self.answer_sdp
        customer, carrier = (near, leg) if self.near_side is Side.CUSTOMER else (leg, near)
        answer_time = utcnow()
        self.edge.recorder.answered(self.call_uuid, answer_time)
        call = Call(
            self.call_uuid,
            customer,
            on_finish=lambda _call, end: self._on_call_finished(end, answer_time),
            carrier=carrier,
            account_id=self.slot_account,
            answer_time=answer_time,
            owner=self.call_owner(),
            media=self.media,
            held_ack=held,
        )
        registry = self.edge.registry
        registry.add(call)
        for side_leg in (customer, carrier):
            assert side_leg.dialog is not None
            registry.add_leg(call, side_leg.side, side_leg.dialog)
        self.edge.session_timers.call_answered(call, self.near_side, final)
        near_side = self.near_side

        def ack_timeout() -> None:
            set_call_uuid(self.call_uuid)
            hang_up(endpoint, call, None, midcall_failure(near_side, TIMEOUT))

        self.incoming.on_ack_timeout = ack_timeout
        event(log, logging.INFO, "call answered", far=attempt.target.label)
        return Attempted.ANSWERED

    def _on_call_finished(self, end: CallEnd, answer_time: datetime) -> None:
        set_call_uuid(self.call_uuid)
        call = self.edge.registry.calls.get(self.call_uuid)
        if call is not None:
            self.edge.registry.remove(call)
        self.edge.session_timers.call_ended(self.call_uuid)
        self.finish(end, answer_time)
