"""One inbound call, carrier -> edge -> customer PBX (CALLS.md "Inbound", issue 5), from
the carrier's INVITE to answer or failure.

`InboundCall.run`:

1. carrier by source address: the packet's source must be in one of the carriers'
   inbound sources (`carriers add --inbound-source CIDR`); else 403, no record (there is
   no account to give it to);
2. number: the called number (Request-URI user, else To user) in E.164 normal form must
   be one of the operator's numbers (else 404, no record); the number must be attached
   to an enabled inbound trunk of an enabled account (else 404, 4080, with a record in
   the number's account);
3. URIs: the trunk's primary origination URI, then its fallback (`should_try_fallback`:
   timeout, unreachable, 408, 5xx, 6xx other than 600/603). No URI: 4310; a URI that is
   not valid or does not resolve: 4320 (and the fallback is tried);
4. each attempt is a new dialog towards the PBX (own Call-ID, tags, Via, Contact);
   Request-URI `sip:+E164@host[:port]`, From the caller as the carrier sent it; a 401/407
   is answered once with the URI's username and password when it has
   `authentication_needed`; 180/183 (SDP) are relayed to the carrier;
5. on a 2xx: ACK the PBX, 200 to the carrier, both dialogs to `b2bua.CallRegistry` (BYE,
   re-INVITE, UPDATE and session timers are handled there and in `midcall`);
6. otherwise the PBX's answer maps to a customer-side code (`for_customer_final`); the
   carrier's CANCEL ends the call with 4420.

Timeouts per attempt (settings): a PBX that sends nothing at all within
`origination_provisional_timeout` (2 s), or sends only 100 Trying and neither rings nor
answers within `origination_timeout` (5 s), counts as a timeout (fallback; alone 4170);
once it rang (18x) it has `ring_timeout` to answer. A transport failure (TCP refused,
TLS handshake failure) counts as unreachable at once. ICMP errors on UDP are not seen
by the edge's unconnected socket, so a closed UDP port is a timeout.

The record (`call_direction` inbound) says who sent the call and which URI answered:
Insights `from.carrier` is the carrier's name, `to.carrier` the origination URI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import (
    TIMEOUT,
    CallEnd,
    FinalStatus,
    Side,
    carrier_cancelled,
    for_customer_final,
    midcall_failure,
    refusal,
)
from opentrunk.domain.numbers import InvalidNumber, country_of, normalize_e164
from opentrunk.domain.routing import should_try_fallback
from opentrunk.edge.b2bua import Call, Leg, hang_up, send_bye
from opentrunk.edge.logs import event, set_call_uuid
from opentrunk.edge.origination import BadOriginationUri, locate_target, parse_origination_uri
from opentrunk.edge.sdp_relay import SdpHop, relay_sdp
from opentrunk.edge.views import CallFinish, CallStart, CarrierView, InboundRoute
from opentrunk.edge.views import OriginationUriView as UriView
from opentrunk.sip.dialog import Dialog, DialogError, new_tag
from opentrunk.sip.digest import DigestClient, choose_challenge
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.message import Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.sip.uri import SipURI, TelURI
from opentrunk.transport.base import format_host

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.transport.endpoint import IncomingRequest, OutgoingRequest

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, REFER"
# Headers of the carrier's INVITE that the PBX's INVITE carries too (session timers,
# RFC 4028, and what the caller's side supports); the rest stays on the carrier leg.
PASSED_HEADERS = ("Session-Expires", "Min-SE", "Supported", "P-Asserted-Identity")


class Attempted(Enum):
    ANSWERED = "answered"
    CANCELLED = "cancelled"
    UNRESOLVED = "unresolved"  # the URI is not valid or its host does not resolve


@dataclass(eq=False)
class _Attempt:
    """One origination URI tried: its INVITE (replaced when re-sent with credentials)."""

    uri: UriView
    dest: Address
    invite: Request
    outgoing: OutgoingRequest | None = None
    provisional_at: float | None = None
    rang_at: float | None = None
    abandoned: bool = False
    late_answers: set[str] = field(default_factory=set)


def user_of(uri: object) -> str | None:
    if isinstance(uri, SipURI):
        return uri.user
    if isinstance(uri, TelURI):
        return uri.number
    return None


def called_number(request: Request) -> str | None:
    """The called number in E.164 normal form ("+digits"): the Request-URI user, else
    the To user; None when neither is a valid number."""
    candidates = [user_of(request.uri)]
    with contextlib.suppress(SipParseError):
        candidates.append(user_of(request.to.uri))
    for user in candidates:
        if not user:
            continue
        try:
            return normalize_e164(user.split(";", 1)[0])
        except InvalidNumber:
            continue
    return None


def _digits(text: str | None) -> str:
    return (text or "").strip().removeprefix("+")[:32]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def reason_header(end: CallEnd) -> str:
    """RFC 3326 Reason telling the carrier which hangup code ended its call."""
    return f'SIP;cause={end.sip_status};text="{end.code} {end.name}"'


class InboundCall:
    """The life of one inbound INVITE until it is answered or fails."""

    def __init__(self, edge: SipEdge, incoming: IncomingRequest) -> None:
        self.edge = edge
        self.incoming = incoming
        self.request = incoming.request
        self.call_uuid = str(uuid.uuid4())
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.initiation_time = _utcnow()
        self.carrier: CarrierView | None = None
        self.route: InboundRoute | None = None
        self.called: str | None = None
        self.caller = user_of(self.request.from_.uri) or ""
        self.recorded = False
        self.finished = False
        self.last_uri: str | None = None
        self.post_dial_delay: float | None = None
        self.cancelled: asyncio.Future[None] = self.loop.create_future()
        incoming.on_cancel = self._on_cancel

    # -- entry ------------------------------------------------------------------------

    async def run(self) -> None:
        set_call_uuid(self.call_uuid)
        try:
            await self._run()
        except Exception:
            log.exception("inbound call failed")
            self._finish(refusal(5260, "internal error while routing", sip_status=500))

    async def _run(self) -> None:
        edge = self.edge
        source_ip = self.incoming.source.host
        carrier = (await edge.config.carriers()).for_source(source_ip)
        if carrier is None:
            event(log, logging.INFO, "INVITE from an unknown source", source=source_ip)
            self._respond(403)
            return
        self.carrier = carrier
        self.called = called_number(self.request)
        route = await edge.config.inbound_route(_digits(self.called)) if self.called else None
        if route is None:
            event(log, logging.INFO, "inbound call to an unknown number", number=self.called)
            self._respond(404, headers=(("Reason", reason_header(refusal(4080))),))
            return
        self.route = route
        self._open_record()
        if not route.deliverable:
            return self._finish(refusal(4080, "number not on an enabled inbound trunk"))
        uris = route.uris
        if not uris:
            return self._finish(refusal(4310, "inbound trunk has no origination URI"))
        if self.cancelled.done():
            return self._finish(carrier_cancelled())
        outcome: Attempted | FinalStatus = TIMEOUT
        for uri in uris:
            self.last_uri = uri.uri
            outcome = await self._attempt(uri)
            if outcome is Attempted.ANSWERED:
                return
            if outcome is Attempted.CANCELLED:
                return self._finish(carrier_cancelled())
            event(log, logging.INFO, "origination uri failed", uri=uri.uri, status=outcome)
            if outcome is not Attempted.UNRESOLVED:
                assert not isinstance(outcome, Attempted)
                if not should_try_fallback(outcome):
                    break
        if outcome is Attempted.UNRESOLVED:
            return self._finish(refusal(4320, "origination uri does not resolve"))
        assert not isinstance(outcome, Attempted)
        self._finish(for_customer_final(outcome))

    # -- the carrier side ---------------------------------------------------------------

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
        route = self.route
        if self.recorded or route is None:
            return
        self.recorded = True
        called = _digits(self.called)
        caller = _digits(self.caller)
        self.edge.recorder.open(
            CallStart(
                call_uuid=self.call_uuid,
                account_id=route.account_id,
                trunk_id=route.trunk_id,
                from_number=caller,
                to_number=called,
                initiation_time=self.initiation_time,
                call_direction="inbound",
                trunk_domain=route.trunk_domain,
                from_country=country_of(caller) if caller.isdigit() else None,
                to_country=country_of(called),
                transport_protocol=self.incoming.source.transport,
            )
        )
        self.edge.metrics.call_started()

    def _finish(self, end: CallEnd, answer_time: datetime | None = None) -> None:
        """Close the call once: answer the carrier (before answer), close the record."""
        if self.finished:
            return
        self.finished = True
        if end.sip_status is not None and not self.incoming.final_sent:
            self._respond(end.sip_status, headers=(("Reason", reason_header(end)),))
        if self.route is None:
            return
        self._open_record()
        self.edge.recorder.close(
            self.call_uuid,
            CallFinish(
                end=end,
                end_time=_utcnow(),
                answer_time=answer_time,
                post_dial_delay=self.post_dial_delay,
                from_carrier=self.carrier.name if self.carrier is not None else None,
                to_carrier=self.last_uri,
            ),
        )
        self.edge.metrics.call_ended(end)
        event(log, logging.INFO, "call ended", code=end.code, source=end.source.value)

    # -- the PBX side ------------------------------------------------------------------

    def _pbx_invite(self, host: str, dest: Address, port: int | None, explicit: bool) -> Request:
        endpoint = self.edge.endpoint
        request = self.request
        called = self.called or ""
        edge_host, _ = endpoint.transports[dest.transport].sent_by
        params: dict[str, str | None] = {}
        if explicit and dest.transport != "udp":
            params["transport"] = dest.transport
        target = SipURI(format_host(host), called, port, params)
        max_forwards = request.max_forwards
        hops = 70 if max_forwards is None else min(70, max_forwards - 1)
        content_type = request.headers.get("Content-Type")
        body = relay_sdp(request.body, content_type, SdpHop(self.call_uuid, "customer", "offer"))
        caller = self.caller or "anonymous"
        headers = [
            ("Max-Forwards", str(hops)),
            ("From", f"<sip:{caller}@{format_host(edge_host)}>;tag={new_tag()}"),
            ("To", f"<sip:{called}@{format_host(host)}>"),
            ("Call-ID", secrets.token_hex(16)),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{endpoint.contact_uri(None, dest.transport)}>"),
            ("Allow", ALLOW),
        ]
        for name in PASSED_HEADERS:
            for value in request.headers.get_all(name):
                headers.append((name, value))
        if content_type and body:
            headers.append(("Content-Type", content_type))
        return Request("INVITE", target, headers, body)

    async def _attempt(self, uri: UriView) -> Attempted | FinalStatus:
        try:
            target = parse_origination_uri(uri.uri)
        except BadOriginationUri:
            log.error("origination uri is not valid", extra={"fields": {"uri": uri.uri_uuid}})
            return Attempted.UNRESOLVED
        endpoint = self.edge.endpoint
        dest = await locate_target(self.edge.locator, target, endpoint.transports)
        if dest is None:
            return Attempted.UNRESOLVED
        invite = self._pbx_invite(target.host, dest, target.port, target.transport is not None)
        attempt = _Attempt(uri, dest, invite)
        attempt.outgoing = endpoint.request(
            invite, dest, on_response=lambda r: self._on_pbx_response(attempt, r)
        )
        edge = self.edge
        start = self.loop.time()
        silent_deadline = start + min(
            edge.origination_provisional_timeout, edge.origination_timeout
        )
        answer_deadline = start + edge.origination_timeout
        challenged = False
        while True:
            outgoing = attempt.outgoing
            assert outgoing is not None
            deadline = self._deadline(attempt, silent_deadline, answer_deadline)
            done, _ = await asyncio.wait(
                (outgoing.final, self.cancelled),
                timeout=max(0.0, deadline - self.loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self.cancelled.done():
                self._abandon(attempt)
                return Attempted.CANCELLED
            if not done:
                if self._deadline(attempt, silent_deadline, answer_deadline) > self.loop.time():
                    continue  # a provisional response moved the deadline meanwhile
                self._abandon(attempt)
                return TIMEOUT
            final = outgoing.final.result()
            if 200 <= final.status < 300:
                return self._answered(attempt, final)
            if final.status in (401, 407) and not challenged and uri.authentication_needed:
                challenged = True
                retry = self._with_credentials(attempt.invite, final, uri)
                if retry is not None:
                    attempt.invite = retry
                    attempt.provisional_at = attempt.rang_at = None
                    attempt.outgoing = endpoint.request(
                        retry, dest, on_response=lambda r: self._on_pbx_response(attempt, r)
                    )
                    start = self.loop.time()
                    silent_deadline = start + min(
                        edge.origination_provisional_timeout, edge.origination_timeout
                    )
                    answer_deadline = start + edge.origination_timeout
                    continue
            if outgoing.local_failure == "timeout":
                return TIMEOUT
            if outgoing.local_failure is not None:
                return 503  # unreachable: refused connection, failed handshake
            return final.status

    def _deadline(self, attempt: _Attempt, silent: float, unanswered: float) -> float:
        """When the attempt times out, given what the PBX has sent so far."""
        if attempt.rang_at is not None:
            return attempt.rang_at + self.edge.ring_timeout
        if attempt.provisional_at is not None:
            return unanswered
        return silent

    def _abandon(self, attempt: _Attempt) -> None:
        attempt.abandoned = True
        if attempt.outgoing is not None:
            attempt.outgoing.cancel()

    def _with_credentials(
        self, invite: Request, challenge: Response, uri: UriView
    ) -> Request | None:
        if not uri.username or not uri.password:
            return None
        if challenge.status == 407:
            offered, answer_header = "Proxy-Authenticate", "Proxy-Authorization"
        else:
            offered, answer_header = "WWW-Authenticate", "Authorization"
        chosen = choose_challenge(challenge.headers.get_all(offered))
        if chosen is None:
            return None
        try:
            credentials = DigestClient(uri.username, uri.password).authorization(
                chosen[0], method="INVITE", uri=str(invite.uri), body=invite.body
            )
        except ValueError:
            return None
        retry = invite.copy()
        retry.headers.remove("Via")
        retry.headers.set("CSeq", f"{invite.cseq.number + 1} INVITE")
        retry.headers.set(answer_header, credentials)
        return retry

    def _on_pbx_response(self, attempt: _Attempt, response: Response) -> None:
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
        if self.incoming.final_sent or self.cancelled.done():
            return
        content_type = response.headers.get("Content-Type")
        body = relay_sdp(response.body, content_type, SdpHop(self.call_uuid, "carrier", "answer"))
        headers = (("Content-Type", content_type),) if content_type and body else ()
        contact = self.edge.endpoint.contact_uri(None, self.incoming.source.transport)
        if self.incoming.respond(status, contact=contact, headers=headers, body=body):
            self.edge.metrics.response_sent(status)

    def _refuse_late_answer(self, attempt: _Attempt, response: Response) -> None:
        """The PBX answered after the edge gave up on it: ACK, then BYE, once."""
        tag = response.to.tag or ""
        if tag in attempt.late_answers:
            return
        attempt.late_answers.add(tag)
        try:
            dialog = Dialog.as_uac(attempt.invite, response)
        except (DialogError, SipParseError):
            return
        self.edge.endpoint.send_ack(dialog.create_ack(), attempt.dest)
        send_bye(self.edge.endpoint, Leg(Side.CUSTOMER, attempt.dest, dialog))

    def _answered(self, attempt: _Attempt, final: Response) -> Attempted | FinalStatus:
        endpoint = self.edge.endpoint
        try:
            pbx_dialog = Dialog.as_uac(attempt.invite, final)
        except (DialogError, SipParseError):
            attempt.abandoned = True
            return 502
        endpoint.send_ack(pbx_dialog.create_ack(), attempt.dest)
        customer_leg = Leg(Side.CUSTOMER, attempt.dest, pbx_dialog)
        if self.post_dial_delay is None:
            self.post_dial_delay = self.loop.time() - self.started
        content_type = final.headers.get("Content-Type")
        body = relay_sdp(final.body, content_type, SdpHop(self.call_uuid, "carrier", "answer"))
        headers: list[tuple[str, str]] = []
        if content_type and body:
            headers.append(("Content-Type", content_type))
        for name in ("Session-Expires", "Require"):
            value = final.headers.get(name)
            if value:
                headers.append((name, value))
        contact = endpoint.contact_uri(None, self.incoming.source.transport)
        answered = None
        if not self.cancelled.done():
            answered = self.incoming.respond(200, contact=contact, headers=headers, body=body)
        if answered is None:
            send_bye(endpoint, customer_leg)
            return Attempted.CANCELLED
        self.edge.metrics.response_sent(200)
        carrier_dialog = Dialog.as_uas(self.request, self.incoming.local_tag, early=False)
        carrier_leg = Leg(Side.CARRIER, self.incoming.source, carrier_dialog)
        answer_time = _utcnow()
        self.edge.recorder.answered(self.call_uuid, answer_time)
        call = Call(
            self.call_uuid,
            customer_leg,
            on_finish=lambda _call, end: self._on_call_finished(end, answer_time),
            carrier=carrier_leg,
            answer_time=answer_time,
        )
        registry = self.edge.registry
        registry.add(call)
        registry.add_leg(call, Side.CUSTOMER, pbx_dialog)
        registry.add_leg(call, Side.CARRIER, carrier_dialog)
        self.edge.session_timers.call_answered(call, Side.CARRIER, final)

        def ack_timeout() -> None:
            set_call_uuid(self.call_uuid)
            hang_up(endpoint, call, None, midcall_failure(Side.CARRIER, TIMEOUT))

        self.incoming.on_ack_timeout = ack_timeout
        event(log, logging.INFO, "call answered", uri=attempt.uri.uri)
        return Attempted.ANSWERED

    def _on_call_finished(self, end: CallEnd, answer_time: datetime) -> None:
        set_call_uuid(self.call_uuid)
        call = self.edge.registry.calls.get(self.call_uuid)
        if call is not None:
            self.edge.registry.remove(call)
        self.edge.session_timers.call_ended(self.call_uuid)
        self._finish(end, answer_time)
