"""One outbound call, PBX -> edge -> carrier (CALLS.md "Outbound"), from its INVITE to
answer or failure.

`OutboundCall.run` applies the steps in the order of CALLS.md:

1. lockout: a source address locked out for brute force gets 403 at once;
2. trunk by the Request-URI host (none: 404, 4070, or 483/482 as in step 4b; no record,
   as there is no account);
3. trunk or account disabled (403, 4540), inbound-only trunk (403, 4070), transport or
   SRTP not matching the trunk's `secure` flag (403, 4110);
4. authentication (`edge.auth`): a 407 challenge is not an end (no record); a failure is
   403, 4060, counted towards the source's lockout;
4b. hops (`SipEdge.hop_refusal`): Max-Forwards 0 is 483 (4380), an INVITE carrying the
   edge's own Via (a loop) is 482 (4370); the carrier leg's Max-Forwards is the PBX's
   minus one;
5. screening (`domain.policy.screen_outbound`): destination, caller ID, geo, barred;
6. limits (`domain.limits.CallAdmission`): trunk CPS, account CPS queue, concurrency;
7. routing (`domain.routing`) and the carrier attempts, with failover, the carrier's
   digest challenge answered once per attempt, provisional responses relayed;
8. on a 2xx from a carrier: ACK it, answer the PBX 200, and hand both dialogs to the
   `b2bua.CallRegistry` where BYE ends the call.

The call record is opened once the trunk is identified and the call is not just being
challenged, and closed exactly once, whatever the outcome (`_finish`).

Timeouts: a carrier that has not rung (18x) within `carrier_timeout` seconds of the
INVITE is abandoned (CANCEL, or a late 2xx is ACKed and sent BYE) and counts as a
timeout, so the next carrier is tried; one that rang but did not answer within
`ring_timeout` seconds is cancelled and also counts as a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING

from opentrunk.domain.billing import BillingPlan
from opentrunk.domain.hangup_codes import (
    TIMEOUT,
    CallEnd,
    FinalStatus,
    Side,
    customer_cancelled,
    midcall_failure,
    refusal,
)
from opentrunk.domain.limits import CallLimits
from opentrunk.domain.policy import RoutedCall, screen_outbound
from opentrunk.domain.routing import attempts_outcome, should_failover
from opentrunk.edge.auth import Verdict
from opentrunk.edge.b2bua import Call, Leg, hang_up, send_bye
from opentrunk.edge.logs import event, set_call_uuid
from opentrunk.edge.sdp_relay import SdpHop, relay_sdp
from opentrunk.edge.views import AccountView, CallFinish, CallStart, CarrierView, TrunkView
from opentrunk.sip.dialog import Dialog, DialogError, new_tag
from opentrunk.sip.digest import DigestClient, choose_challenge
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.headers import parse_name_addr
from opentrunk.sip.message import Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.sip.uri import SipURI, TelURI
from opentrunk.transport.base import format_host
from opentrunk.transport.dns import LocateError

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.transport.endpoint import IncomingRequest, OutgoingRequest

log = logging.getLogger(__name__)

# The methods CALLS.md accepts (REFER joins once transfers exist). INFO is not listed:
# outside a dialog it is refused 405 like the other unlisted methods; inside an answered
# call it is still relayed between the legs (b2bua.RELAYED_METHODS) for PBXes that send
# DTMF that way.
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"


class Attempted(Enum):
    ANSWERED = "answered"
    CANCELLED = "cancelled"


@dataclass(eq=False)
class _Attempt:
    """One carrier tried: its INVITE (replaced when re-sent with credentials)."""

    carrier: CarrierView
    dest: Address
    invite: Request
    outgoing: OutgoingRequest | None = None
    rang_at: float | None = None
    abandoned: bool = False
    late_answers: set[str] = field(default_factory=set)


def _user_of(uri: object) -> str | None:
    if isinstance(uri, SipURI):
        return uri.user
    if isinstance(uri, TelURI):
        return uri.number
    return None


def _record_digits(text: str | None) -> str:
    """A number as the call record stores it: without "+", at most 32 characters."""
    return (text or "").strip().removeprefix("+")[:32]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OutboundCall:
    """The life of one outbound INVITE until it is answered or fails."""

    def __init__(self, edge: SipEdge, incoming: IncomingRequest) -> None:
        self.edge = edge
        self.incoming = incoming
        self.request = incoming.request
        self.call_uuid = str(uuid.uuid4())
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.initiation_time = _utcnow()
        self.trunk: TrunkView | None = None
        self.account: AccountView | None = None
        self.routed: RoutedCall | None = None
        self.recorded = False
        self.holds_slot = False
        self.finished = False
        self.rate = Decimal(0)
        self.post_dial_delay: float | None = None
        self.cancelled: asyncio.Future[None] = self.loop.create_future()
        incoming.on_cancel = self._on_cancel

    # -- entry ------------------------------------------------------------------------

    async def run(self) -> None:
        set_call_uuid(self.call_uuid)
        try:
            await self._run()
        except Exception:
            log.exception("outbound call failed")
            self._finish(refusal(5260, "internal error while routing", sip_status=500))

    async def _run(self) -> None:
        edge = self.edge
        request = self.request
        source_ip = self.incoming.source.host
        if edge.lockout.is_locked(source_ip):
            self._respond(403)
            return
        uri = request.uri
        host = uri.host_bare.lower() if isinstance(uri, SipURI) else None
        trunk = await edge.config.trunk_for_host(host) if host else None
        if trunk is None:
            hops = edge.hop_refusal(self.incoming)
            if hops is not None:  # no trunk, so no account to record it in
                self._respond(hops)
                return
            event(log, logging.INFO, "trunk not found", host=host, source=source_ip)
            self._respond(404, reason="Trunk Not Found")
            return
        self.trunk = trunk
        account = await edge.config.account(trunk.account_id)
        self.account = account
        if account is None or not account.enabled or not trunk.enabled:
            return self._finish(refusal(4540, "trunk or account disabled"))
        if not trunk.allows_outbound:
            return self._finish(refusal(4070, "inbound-only trunk", sip_status=403))
        tls = self.incoming.source.transport == "tls"
        srtp = b"RTP/SAVP" in request.body
        if trunk.secure != tls or trunk.secure != srtp:
            return self._finish(refusal(4110, "transport or SRTP does not match the trunk"))
        verdict = edge.authenticator.check(trunk, request, source_ip)
        if verdict.verdict is Verdict.CHALLENGE:
            self._respond(407, headers=verdict.challenge)
            return
        if verdict.verdict is Verdict.FORBIDDEN:
            edge.metrics.auth_failed()
            if edge.lockout.failure(source_ip):
                edge.metrics.source_locked_out()
                event(log, logging.WARNING, "source locked out", source=source_ip)
            event(log, logging.INFO, "authentication failed", reason=verdict.reason)
            return self._finish(refusal(4060, verdict.reason))
        edge.lockout.success(source_ip)
        hops = edge.hop_refusal(self.incoming)
        if hops is not None:
            return self._finish(refusal(4380 if hops == 483 else 4370))
        self._open_record()

        pai = request.headers.get("P-Asserted-Identity")
        pai_user = None
        if pai:
            try:
                pai_user = _user_of(parse_name_addr(pai.split(",")[0]).uri)
            except SipParseError:
                pai_user = None
        screened = screen_outbound(
            _user_of(uri) or "", _user_of(request.from_.uri), pai_user, account.policy
        )
        if isinstance(screened, CallEnd):
            return self._finish(screened)
        self.routed = screened

        limits = CallLimits(
            trunk_cps=account.cps,
            trunk_burst=max(1, int(account.cps)),
            account_cps=account.cps,
            account_burst=max(1, int(account.cps)),
            max_concurrent=account.max_calls,
        )
        refused = await edge.admission.admit(
            account_id=str(account.account_id),
            trunk_id=trunk.trunk_id,
            call_id=self.call_uuid,
            limits=limits,
        )
        if refused is not None:
            return self._finish(refused)
        self.holds_slot = account.max_calls is not None
        if self.cancelled.done():
            return self._finish(customer_cancelled())

        plan = (await edge.config.carriers()).plan(screened.destination_e164)
        if isinstance(plan, CallEnd):
            return self._finish(plan)
        results: list[FinalStatus] = []
        for carrier in plan:
            self.rate = carrier.rate
            outcome = await self._attempt(carrier, screened)
            if outcome is Attempted.ANSWERED:
                return
            if outcome is Attempted.CANCELLED:
                return self._finish(customer_cancelled())
            event(log, logging.INFO, "carrier failed", carrier=carrier.name, status=outcome)
            results.append(outcome)
            if not should_failover(outcome):
                break
        if not results:
            return self._finish(refusal(4090, "no usable carrier"))
        self._finish(attempts_outcome(results))

    # -- the PBX side -------------------------------------------------------------------

    def _on_cancel(self) -> None:
        if not self.cancelled.done():
            self.cancelled.set_result(None)

    def _respond(
        self,
        status: int,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if self.incoming.respond(status, reason, headers=headers) is not None:
            self.edge.metrics.response_sent(status)

    def _open_record(self) -> None:
        if self.recorded or self.trunk is None:
            return
        self.recorded = True
        request = self.request
        trunk = self.trunk
        self.edge.recorder.open(
            CallStart(
                call_uuid=self.call_uuid,
                account_id=trunk.account_id,
                trunk_id=trunk.trunk_id,
                from_number=_record_digits(_user_of(request.from_.uri)),
                to_number=_record_digits(_user_of(request.uri)),
                initiation_time=self.initiation_time,
                trunk_domain=trunk.domain,
                transport_protocol=self.incoming.source.transport,
                secure_trunking=trunk.secure,
                srtp=False,
            )
        )
        self.edge.metrics.call_started()

    def _finish(self, end: CallEnd, answer_time: datetime | None = None) -> None:
        """Close the call once: answer the PBX (before answer), close the record, count
        it and give back its concurrent-call slot."""
        if self.finished:
            return
        self.finished = True
        if end.sip_status is not None and not self.incoming.final_sent:
            self._respond(end.sip_status, headers=(("Reason", _reason(end)),))
        if self.trunk is None:
            return
        self._open_record()
        routed = self.routed
        account = self.account
        self.edge.recorder.close(
            self.call_uuid,
            CallFinish(
                end=end,
                end_time=_utcnow(),
                answer_time=answer_time,
                rate=self.rate,
                billing=account.billing if account is not None else BillingPlan(),
                from_number=_record_digits(routed.caller_id) if routed else None,
                to_number=_record_digits(routed.destination_e164) if routed else None,
                from_country=routed.from_country if routed else None,
                to_country=routed.to_country if routed else None,
                post_dial_delay=self.post_dial_delay,
            ),
        )
        self.edge.metrics.call_ended(end)
        event(log, logging.INFO, "call ended", code=end.code, source=end.source.value)
        if self.holds_slot and account is not None:
            self.edge.release_slot(str(account.account_id), self.call_uuid)

    # -- the carrier side ----------------------------------------------------------------

    def _carrier_invite(self, carrier: CarrierView, dest: Address, routed: RoutedCall) -> Request:
        endpoint = self.edge.endpoint
        request = self.request
        edge_host, _ = endpoint.transports[dest.transport].sent_by
        params: dict[str, str | None] = {}
        if dest.transport != "udp":
            params["transport"] = dest.transport
        target = SipURI(carrier.host, routed.destination_e164, carrier.port, params)
        max_forwards = request.max_forwards
        hops = 70 if max_forwards is None else min(70, max_forwards - 1)
        content_type = request.headers.get("Content-Type")
        body = relay_sdp(request.body, content_type, SdpHop(self.call_uuid, "carrier", "offer"))
        headers = [
            ("Max-Forwards", str(hops)),
            ("From", f"<sip:{routed.caller_id}@{format_host(edge_host)}>;tag={new_tag()}"),
            ("To", f"<sip:{routed.destination_e164}@{format_host(carrier.host)}>"),
            ("Call-ID", secrets.token_hex(16)),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{endpoint.contact_uri(None, dest.transport)}>"),
            ("Allow", ALLOW),
        ]
        if content_type and body:
            headers.append(("Content-Type", content_type))
        return Request("INVITE", target, headers, body)

    async def _locate(self, carrier: CarrierView) -> Address | None:
        try:
            targets = await self.edge.locator.locate(
                carrier.host, port=carrier.port, transport=carrier.transport
            )
        except LocateError:
            return None
        for target in targets:
            if target.transport in self.edge.endpoint.transports:
                return Address(target.transport, target.host, target.port)
        return None

    async def _attempt(self, carrier: CarrierView, routed: RoutedCall) -> Attempted | FinalStatus:
        dest = await self._locate(carrier)
        if dest is None:
            return 503
        endpoint = self.edge.endpoint
        attempt = _Attempt(carrier, dest, self._carrier_invite(carrier, dest, routed))
        attempt.outgoing = endpoint.request(
            attempt.invite, dest, on_response=lambda r: self._on_carrier_response(attempt, r)
        )
        no_ring_deadline = self.loop.time() + self.edge.carrier_timeout
        challenged = False
        while True:
            outgoing = attempt.outgoing
            assert outgoing is not None
            if attempt.rang_at is not None:
                deadline = attempt.rang_at + self.edge.ring_timeout
            else:
                deadline = no_ring_deadline
            done, _ = await asyncio.wait(
                (outgoing.final, self.cancelled),
                timeout=max(0.0, deadline - self.loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self.cancelled.done():
                self._abandon(attempt)
                return Attempted.CANCELLED
            if not done:
                self._abandon(attempt)
                return TIMEOUT
            final = outgoing.final.result()
            if 200 <= final.status < 300:
                return self._answered(attempt, final)
            if final.status in (401, 407) and not challenged and carrier.username:
                challenged = True
                retry = self._with_credentials(attempt.invite, final, carrier)
                if retry is not None:
                    attempt.invite = retry
                    attempt.outgoing = endpoint.request(
                        retry, dest, on_response=lambda r: self._on_carrier_response(attempt, r)
                    )
                    continue
            if outgoing.local_failure == "timeout":
                return TIMEOUT
            if final.status < 300:
                return 503
            return final.status

    def _abandon(self, attempt: _Attempt) -> None:
        attempt.abandoned = True
        if attempt.outgoing is not None:
            attempt.outgoing.cancel()

    def _with_credentials(
        self, invite: Request, challenge: Response, carrier: CarrierView
    ) -> Request | None:
        if not carrier.username or not carrier.password:
            return None
        if challenge.status == 407:
            offered, answer_header = "Proxy-Authenticate", "Proxy-Authorization"
        else:
            offered, answer_header = "WWW-Authenticate", "Authorization"
        chosen = choose_challenge(challenge.headers.get_all(offered))
        if chosen is None:
            return None
        try:
            credentials = DigestClient(carrier.username, carrier.password).authorization(
                chosen[0], method="INVITE", uri=str(invite.uri), body=invite.body
            )
        except ValueError:
            return None
        retry = invite.copy()
        retry.headers.remove("Via")
        retry.headers.set("CSeq", f"{invite.cseq.number + 1} INVITE")
        retry.headers.set(answer_header, credentials)
        return retry

    def _on_carrier_response(self, attempt: _Attempt, response: Response) -> None:
        set_call_uuid(self.call_uuid)
        status = response.status
        if attempt.abandoned:
            if 200 <= status < 300:
                self._refuse_late_answer(attempt, response)
            return
        if status <= 100 or status >= 200:
            return
        if attempt.rang_at is None:
            attempt.rang_at = self.loop.time()
        if self.post_dial_delay is None:
            self.post_dial_delay = self.loop.time() - self.started
        if self.incoming.final_sent or self.cancelled.done():
            return
        content_type = response.headers.get("Content-Type")
        body = relay_sdp(response.body, content_type, SdpHop(self.call_uuid, "customer", "answer"))
        headers = (("Content-Type", content_type),) if content_type and body else ()
        contact = self.edge.endpoint.contact_uri(None, self.incoming.source.transport)
        if self.incoming.respond(status, contact=contact, headers=headers, body=body):
            self.edge.metrics.response_sent(status)

    def _refuse_late_answer(self, attempt: _Attempt, response: Response) -> None:
        """A carrier answered after the edge gave up on it: ACK, then BYE, once."""
        tag = response.to.tag or ""
        if tag in attempt.late_answers:
            return
        attempt.late_answers.add(tag)
        try:
            dialog = Dialog.as_uac(attempt.invite, response)
        except (DialogError, SipParseError):
            return
        self.edge.endpoint.send_ack(dialog.create_ack(), attempt.dest)
        send_bye(self.edge.endpoint, Leg(Side.CARRIER, attempt.dest, dialog))

    def _answered(self, attempt: _Attempt, final: Response) -> Attempted | FinalStatus:
        endpoint = self.edge.endpoint
        try:
            carrier_dialog = Dialog.as_uac(attempt.invite, final)
        except (DialogError, SipParseError):
            # No usable Contact: the dialog cannot be held, so treat it as a bad gateway.
            attempt.abandoned = True
            return 502
        endpoint.send_ack(carrier_dialog.create_ack(), attempt.dest)
        carrier_leg = Leg(Side.CARRIER, attempt.dest, carrier_dialog)
        if self.post_dial_delay is None:
            self.post_dial_delay = self.loop.time() - self.started
        content_type = final.headers.get("Content-Type")
        body = relay_sdp(final.body, content_type, SdpHop(self.call_uuid, "customer", "answer"))
        headers = (("Content-Type", content_type),) if content_type and body else ()
        contact = endpoint.contact_uri(None, self.incoming.source.transport)
        answered = None
        if not self.cancelled.done():
            answered = self.incoming.respond(200, contact=contact, headers=headers, body=body)
        if answered is None:
            send_bye(endpoint, carrier_leg)
            return Attempted.CANCELLED
        self.edge.metrics.response_sent(200)
        customer_dialog = Dialog.as_uas(self.request, self.incoming.local_tag, early=False)
        customer_leg = Leg(Side.CUSTOMER, self.incoming.source, customer_dialog)
        answer_time = _utcnow()
        self.edge.recorder.answered(self.call_uuid, answer_time)
        call = Call(
            self.call_uuid,
            customer_leg,
            on_finish=lambda _call, end: self._on_call_finished(end, answer_time),
            carrier=carrier_leg,
            answer_time=answer_time,
            account_id=str(self.account.account_id)
            if self.holds_slot and self.account is not None
            else None,
        )
        registry = self.edge.registry
        registry.add(call)
        registry.add_leg(call, Side.CUSTOMER, customer_dialog)
        registry.add_leg(call, Side.CARRIER, carrier_dialog)

        def ack_timeout() -> None:
            set_call_uuid(self.call_uuid)
            hang_up(endpoint, call, None, midcall_failure(Side.CUSTOMER, TIMEOUT))

        self.incoming.on_ack_timeout = ack_timeout
        event(log, logging.INFO, "call answered", carrier=attempt.carrier.name)
        return Attempted.ANSWERED

    def _on_call_finished(self, end: CallEnd, answer_time: datetime) -> None:
        set_call_uuid(self.call_uuid)
        call = self.edge.registry.calls.get(self.call_uuid)
        if call is not None:
            self.edge.registry.remove(call)
        self._finish(end, answer_time)


def _reason(end: CallEnd) -> str:
    """The RFC 3326 Reason header telling the PBX which hangup code ended its call."""
    return f'SIP;cause={end.sip_status};text="{end.code} {end.name}"'
