"""One outbound call, PBX -> edge -> carrier (CALLS.md "Outbound"), from its INVITE to
answer or failure.

`OutboundCall.run` applies the steps in the order of CALLS.md:

1. lockout: a source address locked out for brute force gets 403 at once;
2. trunk by the Request-URI host (none: 404, 4070, or 483/482 as in step 4b; no record,
   as there is no account);
3. trunk or account disabled (403, 4540), inbound-only trunk (403, 4070), transport or
   SRTP not matching the trunk's `secure` flag (403, 4110; an INVITE without SDP, a
   delayed offer, is checked for TLS alone: `secure.transport_matches`);
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
challenged, and closed exactly once, whatever the outcome (`BridgedCall.finish`).
The machinery of the carrier leg (attempts, credentials, timeouts, late answers, the
bridge into a `b2bua.Call`) is `edge.bridge`'s; `admit_call`, `carrier_invite` and
`dial_carriers` are shared with transfers (`edge.refer`).

Timeouts: a carrier that has not rung (18x) within `carrier_timeout` seconds of the
INVITE is abandoned (CANCEL, or a late 2xx is ACKed and sent BYE) and counts as a
timeout, so the next carrier is tried; one that rang but did not answer within
`ring_timeout` seconds is cancelled and also counts as a timeout.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from opentrunk.domain.billing import BillingPlan
from opentrunk.domain.hangup_codes import (
    CallEnd,
    FinalStatus,
    Side,
    carrier_cancelled,
    customer_cancelled,
    refusal,
)
from opentrunk.domain.policy import RoutedCall, screen_outbound
from opentrunk.domain.routing import attempts_outcome, should_failover
from opentrunk.edge.auth import Verdict
from opentrunk.edge.b2bua import CallOwner, Leg
from opentrunk.edge.bridge import (
    ALLOW,
    Attempt,
    Attempted,
    AttemptTimers,
    BridgedCall,
    LegPlacer,
    LegTarget,
    Placed,
    admit_call,
    record_digits,
    user_of,
    utcnow,
)
from opentrunk.edge.inbound import deliver_to_pbx, origination_timers, pbx_invite
from opentrunk.edge.logs import event
from opentrunk.edge.media_session import CallMedia, media_refusal
from opentrunk.edge.onnet import (
    OnNetRecord,
    called_trunk_secure,
    mirrored,
    on_net_srtp_sides,
    secure_refusal,
)
from opentrunk.edge.origination import OriginationTarget
from opentrunk.edge.sdp_relay import SdpHop, anchor_sdp, relay_sdp
from opentrunk.edge.secure import transport_matches
from opentrunk.edge.session_timer import session_timer_headers
from opentrunk.edge.views import (
    AccountView,
    CallFinish,
    CallStart,
    CarrierView,
    InboundRoute,
    TrunkView,
)
from opentrunk.media.backend import MediaError
from opentrunk.sip.dialog import new_tag
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.headers import parse_name_addr
from opentrunk.sip.message import Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.sip.uri import SipURI
from opentrunk.transport.base import format_host, is_ip_literal
from opentrunk.transport.dns import LocateError, ServerTarget

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.transport.endpoint import IncomingRequest

log = logging.getLogger(__name__)

__all__ = [
    "ALLOW",
    "OutboundCall",
    "admit_call",
    "carrier_invite",
    "dial_carriers",
    "take_invite",
]


def carrier_timers(edge: SipEdge) -> AttemptTimers:
    """A carrier has `carrier_timeout` to ring (100 Trying does not count) and then
    `ring_timeout` to answer."""
    return AttemptTimers(edge.carrier_timeout, edge.carrier_timeout, edge.ring_timeout)


def carrier_invite(
    edge: SipEdge,
    call_uuid: str,
    carrier: CarrierView,
    dest: Address,
    routed: RoutedCall,
    *,
    max_forwards: int | None,
    offer: bytes,
    content_type: str | None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Request:
    """The INVITE of a carrier leg: a new dialog of the edge's own, Request-URI
    `sip:+E164@carrier`, From the caller ID, SDP relayed towards the carrier."""
    endpoint = edge.endpoint
    edge_host, _ = endpoint.transports[dest.transport].sent_by
    params: dict[str, str | None] = {}
    if dest.transport != "udp":
        params["transport"] = dest.transport
    target = SipURI(carrier.host, routed.destination_e164, carrier.port, params)
    hops = 70 if max_forwards is None else min(70, max_forwards - 1)
    body = relay_sdp(offer, content_type, SdpHop(call_uuid, "carrier", "offer"))
    fields = [
        ("Max-Forwards", str(hops)),
        ("From", f"<sip:{routed.caller_id}@{format_host(edge_host)}>;tag={new_tag()}"),
        ("To", f"<sip:{routed.destination_e164}@{format_host(carrier.host)}>"),
        ("Call-ID", secrets.token_hex(16)),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<{endpoint.contact_uri(None, dest.transport)}>"),
        ("Allow", ALLOW),
        *headers,
    ]
    if content_type and body:
        fields.append(("Content-Type", content_type))
    return Request("INVITE", target, fields, body)


# What the locator answered for carriers configured by IP address: it does no DNS for
# them, so its answer never changes and is kept (bounded: cleared when full).
_LITERAL_TARGETS: dict[tuple[str, int | None, str | None], list[ServerTarget]] = {}
_LITERAL_TARGETS_MAX = 1024


async def _locate(edge: SipEdge, carrier: CarrierView) -> Address | None:
    key = (carrier.host, carrier.port, carrier.transport)
    targets = _LITERAL_TARGETS.get(key)
    if targets is None:
        try:
            targets = await edge.locator.locate(
                carrier.host, port=carrier.port, transport=carrier.transport
            )
        except LocateError:
            return None
        if is_ip_literal(carrier.host):
            if len(_LITERAL_TARGETS) >= _LITERAL_TARGETS_MAX:
                _LITERAL_TARGETS.clear()
            _LITERAL_TARGETS[key] = targets
    for target in targets:
        if target.transport in edge.endpoint.transports:
            # Over TLS to a name, the address carries it: the carrier's certificate is
            # verified against the configured name (RFC 5922), not the resolved IP.
            return target.address()
    return None


async def dial_carriers(
    placer: LegPlacer,
    routed: RoutedCall,
    invite_for: Callable[[CarrierView, Address], Request],
) -> Attempted | CallEnd:
    """Route a screened, admitted call through the operator's carriers (longest prefix,
    priority, weight), one attempt each, with failover per `should_failover`. Returns
    ANSWERED (the placer's `on_answer` took the call), CANCELLED, or how it ended."""
    edge = placer.edge
    plan = (await edge.config.carriers()).plan(routed.destination_e164)
    if isinstance(plan, CallEnd):
        return plan
    results: list[FinalStatus] = []
    for carrier in plan:
        placer.rate = carrier.rate
        dest = await _locate(edge, carrier)
        if dest is None:
            outcome: Placed = 503
        else:
            target = LegTarget(
                carrier.name,
                dest,
                invite_for(carrier, dest),
                carrier.username,
                carrier.password,
            )
            outcome = await placer.place(target)
        if outcome is Attempted.ANSWERED or outcome is Attempted.CANCELLED:
            return outcome
        assert not isinstance(outcome, Attempted)
        event(log, logging.INFO, "carrier failed", carrier=carrier.name, status=outcome)
        results.append(outcome)
        if not should_failover(outcome):
            break
    if not results:
        return refusal(4090, "no usable carrier")
    return attempts_outcome(results)


def carrier_call_finish(
    placer: LegPlacer,
    end: CallEnd,
    answer_time: datetime | None,
    account: AccountView | None,
    routed: RoutedCall | None,
) -> CallFinish:
    """How a call placed towards carriers (an outbound call, a transfer leg) closes its
    record: the carrier's rate, the account's billing, the screened numbers."""
    delay = placer.post_dial_delay
    return CallFinish(
        end=end,
        end_time=utcnow(),
        answer_time=answer_time,
        rate=placer.rate,
        billing=account.billing if account is not None else BillingPlan(),
        from_number=record_digits(routed.caller_id) if routed else None,
        to_number=record_digits(routed.destination_e164) if routed else None,
        from_country=routed.from_country if routed else None,
        to_country=routed.to_country if routed else None,
        post_dial_delay=None if delay is None else delay * 1000,
    )


def take_invite(edge: SipEdge, incoming: IncomingRequest) -> Awaitable[None] | None:
    """Start an outbound call for an INVITE to a trunk domain. Most calls are digest
    authenticated, so their first INVITE only gets a 407 challenge: when the trunk and
    account are cached and that is the answer (no credentials yet, steps 1 to 3 pass),
    it is sent here and now, without creating a call or a task for it. Anything else
    (a record to write, a load to wait for) goes the whole way, `OutboundCall.run`."""
    request = incoming.request
    source_ip = incoming.source.host
    uri = request.uri
    if (
        isinstance(uri, SipURI)
        and "Proxy-Authorization" not in request.headers
        and not edge.lockout.is_locked(source_ip)
    ):
        config = edge.config
        trunk = config.cached_trunk_for_host(uri.host_bare)
        if (
            isinstance(trunk, TrunkView)
            and trunk.credential is not None
            and trunk.enabled
            and trunk.allows_outbound
            and not (trunk.acl and trunk.acl_allows(source_ip))
        ):
            account = config.cached_account(trunk.account_id)
            if (
                isinstance(account, AccountView)
                and account.enabled
                and transport_matches(
                    trunk.secure,
                    incoming.source.transport,
                    request.body,
                    request.headers.get("Content-Type"),
                )
            ):
                verdict = edge.authenticator.check(trunk, request, source_ip)
                if verdict.verdict is Verdict.CHALLENGE:
                    if incoming.respond(407, headers=verdict.challenge) is not None:
                        edge.metrics.response_sent(407)
                    return None
    return OutboundCall(edge, incoming).run()


class OutboundCall(BridgedCall):
    """The life of one outbound INVITE until it is answered or fails."""

    near_side = Side.CUSTOMER

    def __init__(self, edge: SipEdge, incoming: IncomingRequest) -> None:
        super().__init__(edge, incoming, carrier_timers(edge))
        self.trunk: TrunkView | None = None
        self.account: AccountView | None = None
        self.routed: RoutedCall | None = None
        self.on_net: OnNetRecord | None = None  # the inbound record of an on-net call
        self.offer = self.request.body  # the offer the carriers get (anchored when admitted)

    async def _run(self) -> None:
        edge = self.edge
        request = self.request
        source_ip = self.incoming.source.host
        if edge.lockout.is_locked(source_ip):
            self.respond(403)
            return
        uri = request.uri
        host = uri.host_bare.lower() if isinstance(uri, SipURI) else None
        trunk = await edge.config.trunk_for_host(host) if host else None
        if trunk is None:
            hops = edge.hop_refusal(self.incoming)
            if hops is not None:  # no trunk, so no account to record it in
                self.respond(hops)
                return
            event(log, logging.INFO, "trunk not found", host=host, source=source_ip)
            self.respond(404, reason="Trunk Not Found")
            return
        self.trunk = trunk
        account = await edge.config.account(trunk.account_id)
        self.account = account
        if account is None or not account.enabled or not trunk.enabled:
            return self.finish(refusal(4540, "trunk or account disabled"))
        if not trunk.allows_outbound:
            return self.finish(refusal(4070, "inbound-only trunk", sip_status=403))
        content_type = request.headers.get("Content-Type")
        transport = self.incoming.source.transport
        if not transport_matches(trunk.secure, transport, request.body, content_type):
            return self.finish(refusal(4110, "transport or SRTP does not match the trunk"))
        verdict = edge.authenticator.check(trunk, request, source_ip)
        if verdict.verdict is Verdict.CHALLENGE:
            self.respond(407, headers=verdict.challenge)
            return
        if verdict.verdict is Verdict.FORBIDDEN:
            edge.metrics.auth_failed()
            if edge.lockout.failure(source_ip):
                edge.metrics.source_locked_out()
                event(log, logging.WARNING, "source locked out", source=source_ip)
            event(log, logging.INFO, "authentication failed", reason=verdict.reason)
            return self.finish(refusal(4060, verdict.reason))
        edge.lockout.success(source_ip)
        hops = edge.hop_refusal(self.incoming)
        if hops is not None:
            return self.finish(refusal(4380 if hops == 483 else 4370))
        self.open_record()

        pai = request.headers.get("P-Asserted-Identity")
        pai_user = None
        if pai:
            try:
                pai_user = user_of(parse_name_addr(pai.split(",")[0]).uri)
            except SipParseError:
                pai_user = None
        screened = screen_outbound(
            user_of(uri) or "", user_of(request.from_.uri), pai_user, account.policy
        )
        if isinstance(screened, CallEnd):
            return self.finish(screened)
        self.routed = screened

        refused = await admit_call(edge, account, trunk.trunk_id, self.call_uuid)
        if refused is not None:
            return self.finish(refused)
        if account.max_calls is not None:
            self.slot_account = str(account.account_id)
        if self.cancelled.done():
            return self.finish(customer_cancelled())
        # One of the operator's own numbers is delivered on-net; its PBX gets SRTP (and
        # TLS) when its inbound trunk is secure, so that is known before the offer is
        # anchored.
        route = await edge.config.inbound_route(record_digits(screened.destination_e164))
        called_secure = route is not None and await called_trunk_secure(edge, route)
        self.media = CallMedia(
            edge.media,
            self.call_uuid,
            a_side=Side.CUSTOMER,
            srtp_sides=on_net_srtp_sides(trunk.secure, called_secure),
            metrics=edge.metrics,
        )
        try:
            self.offer = await anchor_sdp(
                self.media, request.body, content_type, SdpHop(self.call_uuid, "carrier", "offer")
            )
        except MediaError as exc:
            return self.finish(media_refusal(exc))

        if route is not None:  # one of the operator's numbers: delivered on-net
            return await self._on_net(route, screened, called_secure)
        outcome = await dial_carriers(self, screened, self._carrier_invite)
        if outcome is Attempted.ANSWERED:
            return
        if outcome is Attempted.CANCELLED:
            return self.finish(customer_cancelled())
        assert isinstance(outcome, CallEnd)
        self.finish(outcome)

    def _carrier_invite(self, carrier: CarrierView, dest: Address) -> Request:
        assert self.routed is not None
        request = self.request
        return carrier_invite(
            self.edge,
            self.call_uuid,
            carrier,
            dest,
            self.routed,
            max_forwards=request.max_forwards,
            offer=self.offer,
            content_type=request.headers.get("Content-Type"),
            headers=session_timer_headers(request),
        )

    # -- on-net (edge/onnet.py) -------------------------------------------------------

    async def _on_net(self, route: InboundRoute, routed: RoutedCall, secure: bool) -> None:
        edge = self.edge
        on_net = OnNetRecord(
            edge,
            route,
            routed.caller_id,
            routed.destination_e164,
            self.incoming.source.transport,
            secure=secure,
        )
        self.on_net = on_net
        self.timers = origination_timers(edge)
        end: Attempted | CallEnd | None = None
        if not route.deliverable:
            end = refusal(4080, "number not on an enabled inbound trunk")
        elif (refused := secure_refusal(edge, secure)) is not None:
            end = refused
        else:
            account = await edge.config.account(route.account_id)
            if account is not None and route.trunk_id is not None:
                end = await admit_call(edge, account, route.trunk_id, on_net.call_uuid)
                if end is None and account.max_calls is not None:
                    on_net.slot_account = str(account.account_id)
        if end is None:
            end = await deliver_to_pbx(
                self, route, self._on_net_invite, on_net.tried, secure=secure
            )
        on_net.post_dial_delay = self.post_dial_delay
        if end is Attempted.ANSWERED:
            return
        if end is Attempted.CANCELLED:
            on_net.finish(carrier_cancelled())
            return self.finish(customer_cancelled())
        assert isinstance(end, CallEnd)
        on_net.finish(end)
        self.finish(attempts_outcome([end.sip_status or 503]))

    def _on_net_invite(self, target: OriginationTarget, dest: Address) -> Request:
        assert self.routed is not None
        routed = self.routed
        return pbx_invite(
            self.edge,
            self.call_uuid,
            self.request,
            routed.destination_e164,
            routed.caller_id,
            target,
            dest,
            offer=self.offer,
        )

    def on_answer(self, attempt: Attempt, final: Response, leg: Leg) -> Placed:
        placed = super().on_answer(attempt, final, leg)
        call = self.edge.registry.calls.get(self.call_uuid)
        if placed is Attempted.ANSWERED and self.on_net is not None and call is not None:
            assert call.answer_time is not None
            self.on_net.answered(call.answer_time)
        return placed

    def _on_call_finished(self, end: CallEnd, answer_time: datetime) -> None:
        super()._on_call_finished(end, answer_time)
        on_net, media = self.on_net, self.media
        if on_net is None:
            return
        if media is None:
            on_net.finish(mirrored(end), answer_time)
            return

        async def close_with_media(on_net: OnNetRecord, media: CallMedia) -> None:
            # The release `finish` started; this gets the same figures, once freed.
            on_net.finish(mirrored(end), answer_time, await media.release())

        self.edge.spawn(close_with_media(on_net, media))

    # -- the record ------------------------------------------------------------------

    def call_start(self) -> CallStart | None:
        trunk = self.trunk
        if trunk is None:
            return None
        request = self.request
        return CallStart(
            call_uuid=self.call_uuid,
            account_id=trunk.account_id,
            trunk_id=trunk.trunk_id,
            from_number=record_digits(user_of(request.from_.uri)),
            to_number=record_digits(user_of(request.uri)),
            initiation_time=self.initiation_time,
            trunk_domain=trunk.domain,
            transport_protocol=self.incoming.source.transport,
            secure_trunking=trunk.secure,
            # A secure trunk's calls are admitted only with SRTP towards the customer.
            srtp=trunk.secure,
        )

    def call_finish(self, end: CallEnd, answer_time: datetime | None) -> CallFinish:
        return carrier_call_finish(self, end, answer_time, self.account, self.routed)

    def call_owner(self) -> CallOwner | None:
        trunk, routed = self.trunk, self.routed
        if trunk is None or routed is None or not routed.caller_id.startswith("+"):
            return None
        return CallOwner(trunk.account_id, trunk.trunk_id, trunk.domain, routed.caller_id)
