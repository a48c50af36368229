"""Transfers (REFER, RFC 3515) from the customer's leg of an answered call: the far party
is transferred blind to a number, over a new carrier leg placed under every outbound
rule, and bridged to it in place of the transferor (CALLS.md "Mid-call", issue 5 item 8).

`handle_refer` takes a REFER that arrived inside a call (`b2bua.dispatch_in_dialog`):

- only from the customer's leg of a call that has an owner (`b2bua.CallOwner`), else 403;
- `Refer-To` (exactly one) must be `sip:+E164@{the call's own trunk domain}`: missing or
  malformed, or a user that is not an E.164 number, is 400; any other domain or address
  (another trunk, a private address, a tel: URI, a Replaces header asking for an attended
  transfer) is 403; a transfer already under way is 491; a call whose customer leg
  speaks SRTP (a secure trunk) cannot be transferred to a plain-RTP carrier leg: 403;
- otherwise 202, a NOTIFY `SIP/2.0 100 Trying`, and a `Transfer` runs.

`Transfer` is the third user of `bridge.LegPlacer`. It opens its own call record
(outbound, in the owner's account and trunk; the caller ID is the customer's own number
that was on the original call: the caller ID of an outbound call, the called number of
an inbound one), then screens (`screen_outbound`), admits (`outbound.admit_call`) and
routes (`outbound.dial_carriers`) exactly like an outbound call. The offer is the far
party's last session description; `Referred-By` (RFC 3892) is carried when present.
Progress goes to the transferor as NOTIFY with message/sipfrag: 180 once ringing, then
200 or the failure's status (final, `Subscription-State: terminated`).

On answer the new leg takes the customer's place in the `b2bua.Call` (so BYE from it is
3010, from the far party 3000), the far party gets a re-INVITE with the new leg's
session description, and the transferor gets NOTIFY 200 then BYE. Both records stay
open until the bridged call ends: the original one (the far party's leg) and the
transfer's (the new leg), each billed for its own leg. On failure the original call
goes on untouched and the transfer's record is closed with the outbound code of the
failure. A transferor that hangs up while its transfer is being placed (RFC 5589 lets
it) releases only its own leg; if the transfer then fails, the far party gets BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import (
    CallEnd,
    Side,
    bye_from,
    customer_cancelled,
    media_failure,
    refusal,
)
from opentrunk.domain.numbers import InvalidNumber, normalize_e164
from opentrunk.domain.policy import RoutedCall, screen_outbound
from opentrunk.edge.b2bua import Call, CallOwner, Leg, hang_up, send_bye
from opentrunk.edge.bridge import (
    Attempt,
    Attempted,
    LegPlacer,
    Placed,
    admit_call,
    record_digits,
    utcnow,
)
from opentrunk.edge.logs import event, set_call_uuid
from opentrunk.edge.media_session import is_sdp, media_refusal
from opentrunk.edge.outbound import (
    carrier_call_finish,
    carrier_invite,
    carrier_timers,
    dial_carriers,
)
from opentrunk.edge.sdp_relay import SdpHop, anchor_sdp, relay_sdp
from opentrunk.edge.views import AccountView, CallStart, CarrierView
from opentrunk.media.backend import MediaError
from opentrunk.sip.dialog import DialogError, DialogState
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.headers import parse_name_addr
from opentrunk.sip.message import Request, Response
from opentrunk.sip.reasons import reason_phrase
from opentrunk.sip.transaction import Address
from opentrunk.sip.uri import SipURI

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.transport.endpoint import IncomingRequest, OutgoingRequest

log = logging.getLogger(__name__)

# How long the implicit subscription of a REFER lasts while the transfer is placed
# (RFC 3515 2.4.6: NOTIFYs carry it; the final one terminates it).
SUBSCRIPTION_EXPIRES = 60
# How long the edge waits for the transferor's answer to the final NOTIFY before it
# sends BYE (so the NOTIFY 200 arrives first).
NOTIFY_WAIT = 2.0


def refer_target(refer_to: list[str], trunk_domain: str) -> str | int:
    """The E.164 number ("+digits") a REFER's Refer-To values name at `trunk_domain`,
    or the status refusing it: 400 (missing, several, malformed, not a number), 403
    (anything not at the trunk's own domain, or an attended transfer)."""
    if len(refer_to) != 1 or not refer_to[0].strip():
        return 400
    try:
        uri = parse_name_addr(refer_to[0]).uri
    except SipParseError:
        return 400
    if not isinstance(uri, SipURI) or uri.secure:
        return 403
    if uri.headers:  # ?Replaces=...: an attended transfer, which the edge does not do
        return 403
    if uri.host_bare.lower().rstrip(".") != trunk_domain.lower():
        return 403
    if not uri.user:
        return 400
    try:
        return normalize_e164(uri.user.split(";", 1)[0])
    except InvalidNumber:
        return 400


async def handle_refer(edge: SipEdge, call: Call, side: Side, incoming: IncomingRequest) -> None:
    """Answer a REFER inside `call` from `side` and run the transfer it asks for."""
    request = incoming.request
    owner = call.owner
    if side is not Side.CUSTOMER or owner is None:
        incoming.respond(403, "Transfer Not Allowed")
        return
    if call.ended:
        incoming.respond(481)
        return
    if call.transferring:
        incoming.respond(491)
        return
    if call.media is not None and call.media.srtp:
        # The relay speaks SRTP to the customer's leg of a secure trunk's call; the new
        # leg goes to a carrier, which gets plain RTP only, so it cannot take that part.
        incoming.respond(403, "Transfer Of An SRTP Call Not Supported")
        return
    target = refer_target(request.headers.get_all("Refer-To"), owner.trunk_domain)
    if isinstance(target, int):
        event(log, logging.INFO, "transfer refused", status=target)
        incoming.respond(target)
        return
    contact = edge.endpoint.contact_uri(None, incoming.source.transport)
    incoming.respond(202, contact=contact)
    transfer = Transfer(edge, call, owner, target, request)
    await transfer.run()


class Transfer(LegPlacer):
    """One transfer of `call`'s far party to `target` (see the module docstring)."""

    far_side = Side.CARRIER

    def __init__(
        self, edge: SipEdge, call: Call, owner: CallOwner, target: str, refer: Request
    ) -> None:
        super().__init__(edge, str(uuid.uuid4()), carrier_timers(edge))
        self.call = call
        self.owner = owner
        self.target = target
        self.referred_by = refer.headers.get("Referred-By")
        self.event = f"refer;id={refer.cseq.number}"
        self.transferor = call.customer
        self.initiation_time = utcnow()
        self.account: AccountView | None = None
        self.routed: RoutedCall | None = None
        self.slot_account: str | None = None
        self.recorded = False
        self.finished = False
        self.rang = False
        self.previous_finish = call.on_finish
        self.offer = b""  # the far party's SDP as the new leg gets it (anchored)

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> None:
        call = self.call
        set_call_uuid(self.call_uuid)
        event(log, logging.INFO, "transfer", call=call.call_uuid)
        call.transferring = True
        previous = self.previous_finish

        def original_finished(ended: Call, end: CallEnd) -> None:
            self.cancel()  # the original call ended while the transfer was placed
            previous(ended, end)

        call.on_finish = original_finished
        self.notify(100, "Trying", final=False)
        try:
            outcome: Placed | CallEnd = await self._run()
        except Exception:
            log.exception("transfer failed")
            outcome = refusal(5260, "internal error while routing", sip_status=500)
        finally:
            call.transferring = False
        if outcome is Attempted.ANSWERED:
            return
        if not call.ended:
            call.on_finish = previous
        if outcome is Attempted.CANCELLED:
            outcome = customer_cancelled()
        assert isinstance(outcome, CallEnd)
        self.failed(outcome)

    async def _run(self) -> Placed | CallEnd:
        edge = self.edge
        owner = self.owner
        account = await edge.config.account(owner.account_id)
        self.account = account
        self.open_record()
        trunk = await edge.config.trunk_for_host(owner.trunk_domain)
        if account is None or not account.enabled or trunk is None or not trunk.enabled:
            return refusal(4540, "trunk or account disabled")
        screened = screen_outbound(self.target, owner.number, None, account.policy)
        if isinstance(screened, CallEnd):
            return screened
        self.routed = screened
        refused = await admit_call(edge, account, owner.trunk_id, self.call_uuid)
        if refused is not None:
            return refused
        if account.max_calls is not None:
            self.slot_account = str(account.account_id)
        if self.cancelled.done():
            return Attempted.CANCELLED
        # The new leg is offered the far party's last SDP through the call's media
        # session: it gets the relay's port of the customer's side (the transferor's,
        # which it replaces), and the far party keeps sending to the same relay port.
        far = self.call.carrier
        offer = far.sdp if far is not None else b""
        hop = SdpHop(self.call.call_uuid, "customer", "offer")
        try:
            self.offer = await anchor_sdp(self.call.media, offer, "application/sdp", hop)
        except MediaError as exc:
            return media_refusal(exc)
        return await dial_carriers(self, screened, self._carrier_invite)

    def _carrier_invite(self, carrier: CarrierView, dest: Address) -> Request:
        assert self.routed is not None
        offer = self.offer
        headers: tuple[tuple[str, str], ...] = ()
        if self.referred_by:
            headers = (("Referred-By", self.referred_by),)
        return carrier_invite(
            self.edge,
            self.call_uuid,
            carrier,
            dest,
            self.routed,
            max_forwards=None,
            offer=offer,
            content_type="application/sdp" if offer else None,
            headers=headers,
        )

    # -- progress and answer ---------------------------------------------------------------

    async def prepare_answer(self, final: Response) -> bool:
        """The new leg's answer through the call's media (the relay re-latches the
        customer's side on it); the body becomes the far party's re-offer."""
        content_type = final.headers.get("Content-Type")
        if not is_sdp(final.body, content_type) or self.call.ended:
            return True
        hop = SdpHop(self.call.call_uuid, "carrier", "answer")
        try:
            final.body = await anchor_sdp(self.call.media, final.body, content_type, hop)
        except MediaError as exc:
            event(log, logging.WARNING, "transfer answer not anchored", error=type(exc).__name__)
            return False
        return True

    def on_progress(self, attempt: Attempt, response: Response) -> None:
        if not self.rang and response.status in (180, 183):
            self.rang = True
            self.notify(180, "Ringing", final=False)

    def on_answer(self, attempt: Attempt, final: Response, leg: Leg) -> Placed:
        call = self.call
        endpoint = self.edge.endpoint
        registry = self.edge.registry
        if call.ended or self.cancelled.done() or leg.dialog is None:
            send_bye(endpoint, leg)
            return Attempted.CANCELLED
        answer_time = utcnow()
        self.edge.recorder.answered(self.call_uuid, answer_time)
        # The new leg plays the customer's part from now on.
        leg.side = Side.CUSTOMER
        leg.sdp = self.answer_sdp
        transferor = call.customer
        if transferor.dialog is not None:
            registry.remove_leg(transferor.dialog)
            # Until its BYE is out, the transferor's requests (its own BYE) find a call
            # of its own that ends nothing else.
            registry.add_leg(_released(transferor), Side.CUSTOMER, transferor.dialog)
        call.customer = leg
        registry.add_leg(call, Side.CUSTOMER, leg.dialog)
        self.edge.session_timers.call_ended(call.call_uuid)
        previous = self.previous_finish

        def bridge_finished(ended: Call, end: CallEnd) -> None:
            previous(ended, end)
            self.finish(end, answer_time)

        call.on_finish = bridge_finished
        self._spawn(self._release_transferor(transferor))
        self._spawn(self._reoffer_far_party(final))
        event(log, logging.INFO, "transfer answered", far=attempt.target.label)
        return Attempted.ANSWERED

    async def _release_transferor(self, transferor: Leg) -> None:
        """NOTIFY 200 to the transferor, then (its answer in, or after NOTIFY_WAIT) BYE."""
        outgoing = self.notify(200, "OK", final=True)
        if outgoing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(outgoing.final), NOTIFY_WAIT)
        if _alive(transferor):
            send_bye(self.edge.endpoint, transferor)
        if transferor.dialog is not None:
            self.edge.registry.remove_leg(transferor.dialog)

    async def _reoffer_far_party(self, answer: Response) -> None:
        """Point the far party's media at the new leg: a re-INVITE with its SDP (as
        anchored by `prepare_answer`: the relay's address, the new leg's codecs)."""
        call = self.call
        far = call.carrier
        if far is None or far.dialog is None or not answer.body:
            return
        content_type = answer.headers.get("Content-Type") or "application/sdp"
        body = relay_sdp(answer.body, content_type, SdpHop(call.call_uuid, "carrier", "offer"))
        try:
            reinvite = far.dialog.create_request(
                "INVITE",
                body=body,
                headers=(
                    ("Contact", f"<{self.edge.endpoint.contact_uri(None, far.dest.transport)}>"),
                    ("Content-Type", content_type),
                ),
            )
        except DialogError:
            return
        outgoing = self.edge.endpoint.request(reinvite, far.dest)
        try:
            result = await asyncio.wait_for(asyncio.shield(outgoing.final), 32.0)
        except TimeoutError:
            hang_up(self.edge.endpoint, call, None, bye_from(Side.CARRIER))
            return
        far.dialog.on_response(reinvite, result)
        if 200 <= result.status < 300:
            self.edge.endpoint.send_ack(far.dialog.create_ack(), far.dest)
            if result.body:
                far.sdp = result.body
                await self._far_party_answered(result)
        else:
            event(
                log, logging.WARNING, "far party refused the transfer's media", status=result.status
            )

    async def _far_party_answered(self, result: Response) -> None:
        """The far party's answer to the re-offer goes to the call's media (it may have
        moved its media); the new leg already has its answer, so nothing is sent on."""
        call = self.call
        hop = SdpHop(call.call_uuid, "customer", "answer")
        try:
            await anchor_sdp(call.media, result.body, result.headers.get("Content-Type"), hop)
        except MediaError:
            hang_up(self.edge.endpoint, call, None, media_failure())

    # -- NOTIFY ------------------------------------------------------------------------

    def notify(self, status: int, reason: str, *, final: bool) -> OutgoingRequest | None:
        """A NOTIFY with `SIP/2.0 status reason` as message/sipfrag to the transferor."""
        leg = self.transferor
        if not _alive(leg):
            return None
        assert leg.dialog is not None
        state = (
            "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_EXPIRES}"
        )
        endpoint = self.edge.endpoint
        try:
            request = leg.dialog.create_request(
                "NOTIFY",
                body=f"SIP/2.0 {status} {reason}\r\n".encode(),
                headers=(
                    ("Event", self.event),
                    ("Subscription-State", state),
                    ("Contact", f"<{endpoint.contact_uri(None, leg.dest.transport)}>"),
                    ("Content-Type", "message/sipfrag;version=2.0"),
                ),
            )
        except DialogError:
            return None
        return endpoint.request(request, leg.dest)

    # -- the end -----------------------------------------------------------------------

    def failed(self, end: CallEnd) -> None:
        """The transfer did not happen: tell the transferor, close the transfer's record;
        the original call goes on (unless its customer left meanwhile)."""
        status = end.sip_status or 503
        self.notify(status, reason_phrase(status), final=True)
        event(log, logging.INFO, "transfer failed", code=end.code, status=status)
        self.finish(end)
        call = self.call
        if not call.ended and not _alive(self.transferor) and call.customer is self.transferor:
            set_call_uuid(call.call_uuid)
            hang_up(self.edge.endpoint, call, Side.CUSTOMER, bye_from(Side.CUSTOMER))

    def open_record(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        owner = self.owner
        self.edge.recorder.open(
            CallStart(
                call_uuid=self.call_uuid,
                account_id=owner.account_id,
                trunk_id=owner.trunk_id,
                from_number=record_digits(owner.number),
                to_number=record_digits(self.target),
                initiation_time=self.initiation_time,
                trunk_domain=owner.trunk_domain,
                transport_protocol=self.transferor.dest.transport,
            )
        )
        self.edge.metrics.call_started()

    def finish(self, end: CallEnd, answer_time: datetime | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        set_call_uuid(self.call_uuid)
        self.open_record()
        self.edge.recorder.close(
            self.call_uuid,
            carrier_call_finish(self, end, answer_time, self.account, self.routed),
        )
        self.edge.metrics.call_ended(end)
        if self.slot_account is not None:
            self.edge.release_slot(self.slot_account, self.call_uuid)

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(work)
        self.call.tasks.add(task)
        task.add_done_callback(self.call.tasks.discard)


def _alive(leg: Leg) -> bool:
    return leg.dialog is not None and leg.dialog.state is not DialogState.TERMINATED


def _released(transferor: Leg) -> Call:
    """A call of the transferor's leg alone, once it is transferred: its BYE is answered
    and ends nothing."""
    return Call("transferred", transferor, on_finish=lambda _call, _end: None)
