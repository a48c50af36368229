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
TLS handshake failure, an ICMP destination-unreachable for a UDP request, read from the
socket's error queue by `transport.icmp`) counts as unreachable at once.

Secure trunks (CALLS.md "Media", issue 6 item 4): a call to a number on a `secure`
trunk goes to the PBX over TLS only (the URI's transport is overridden, its host and
port kept; the edge's outbound TLS settings verify the PBX's certificate) with an SDES
SRTP offer from the media relay (RTP/SAVP, `a=crypto` AES_CM_128_HMAC_SHA1_80), while
the carrier's leg stays plain RTP. A PBX that answers without SRTP gets ACK and BYE and
the call ends 4640 (488 to the carrier), like a PBX that answers 488 itself; an edge
without a TLS listener cannot deliver such a call at all: 4110.

Delayed offer (a carrier's INVITE without SDP): the PBX's INVITE has none either, its
200 carries the offer (SRTP with an SDES key on a secure trunk, else ACK, BYE, 4640),
and the carrier's ACK the answer (`edge.bridge`, docs/media.md "Delayed offer").

The record (`call_direction` inbound) says who sent the call and which URI answered:
Insights `from.carrier` is the carrier's name, `to.carrier` the origination URI. The
machinery of the PBX leg (attempts, credentials, late answers, the bridge into a
`b2bua.Call`) is `edge.bridge`'s.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import (
    TIMEOUT,
    CallEnd,
    Side,
    carrier_cancelled,
    for_customer_final,
    refusal,
)
from opentrunk.domain.numbers import InvalidNumber, country_of, normalize_e164
from opentrunk.domain.routing import should_try_fallback
from opentrunk.edge.b2bua import CallOwner
from opentrunk.edge.bridge import (
    ALLOW,
    Attempted,
    AttemptTimers,
    BridgedCall,
    LegPlacer,
    LegTarget,
    Placed,
    admit_call,
    reason_header,
    record_digits,
    user_of,
    utcnow,
)
from opentrunk.edge.logs import event
from opentrunk.edge.media_session import CallMedia, media_refusal
from opentrunk.edge.origination import (
    BadOriginationUri,
    OriginationTarget,
    locate_target,
    parse_origination_uri,
)
from opentrunk.edge.sdp_relay import SdpHop, anchor_sdp, relay_sdp
from opentrunk.edge.session_timer import session_timer_headers
from opentrunk.edge.views import CallFinish, CallStart, CarrierView, InboundRoute
from opentrunk.edge.views import OriginationUriView as UriView
from opentrunk.media.backend import MediaError
from opentrunk.sip.dialog import new_tag
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.message import Request
from opentrunk.sip.transaction import Address
from opentrunk.sip.uri import SipURI
from opentrunk.transport.base import format_host

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.transport.endpoint import IncomingRequest

log = logging.getLogger(__name__)

__all__ = [
    "InboundCall",
    "called_number",
    "deliver_to_pbx",
    "delivery_target",
    "pbx_invite",
    "user_of",
]

# Headers of the carrier's INVITE that the PBX's INVITE carries too, besides the
# session-timer ones (`session_timer_headers`); the rest stays on the carrier leg.
PASSED_HEADERS = ("P-Asserted-Identity",)


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


def origination_timers(edge: SipEdge) -> AttemptTimers:
    """A PBX has `origination_provisional_timeout` to say anything, then
    `origination_timeout` to ring or answer, then `ring_timeout` once it rang."""
    return AttemptTimers(
        edge.origination_provisional_timeout, edge.origination_timeout, edge.ring_timeout
    )


def pbx_invite(
    edge: SipEdge,
    call_uuid: str,
    request: Request,
    called: str,
    caller: str,
    target: OriginationTarget,
    dest: Address,
    *,
    offer: bytes,
) -> Request:
    """The INVITE of a PBX leg (a new dialog of the edge's own): Request-URI
    `sip:+E164@host[:port]` with the called number, From the caller as given, the
    `offer` (the SDP of `request`, the call's incoming INVITE, as anchored for the PBX)
    and the request's session-timer headers and `PASSED_HEADERS`."""
    endpoint = edge.endpoint
    edge_host, _ = endpoint.transports[dest.transport].sent_by
    params: dict[str, str | None] = {}
    if target.transport is not None and dest.transport != "udp":
        params["transport"] = dest.transport
    uri = SipURI(format_host(target.host), called, target.port, params)
    max_forwards = request.max_forwards
    hops = 70 if max_forwards is None else min(70, max_forwards - 1)
    content_type = request.headers.get("Content-Type")
    body = relay_sdp(offer, content_type, SdpHop(call_uuid, "customer", "offer"))
    headers = [
        ("Max-Forwards", str(hops)),
        ("From", f"<sip:{caller or 'anonymous'}@{format_host(edge_host)}>;tag={new_tag()}"),
        ("To", f"<sip:{called}@{format_host(target.host)}>"),
        ("Call-ID", secrets.token_hex(16)),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<{endpoint.contact_uri(None, dest.transport)}>"),
        ("Allow", ALLOW),
    ]
    headers += session_timer_headers(request)
    for name in PASSED_HEADERS:
        for value in request.headers.get_all(name):
            headers.append((name, value))
    if content_type and body:
        headers.append(("Content-Type", content_type))
    return Request("INVITE", uri, headers, body)


def delivery_target(target: OriginationTarget, *, secure: bool) -> OriginationTarget:
    """Where a PBX leg goes: a secure trunk's PBX over TLS whatever the URI's transport
    parameter says (its host and port are kept: a port is the customer's to choose)."""
    return replace(target, transport="tls") if secure else target


async def _attempt(
    placer: LegPlacer,
    uri: UriView,
    invite_for: Callable[[OriginationTarget, Address], Request],
    secure: bool,
) -> Placed:
    try:
        target = delivery_target(parse_origination_uri(uri.uri), secure=secure)
    except BadOriginationUri:
        log.error("origination uri is not valid", extra={"fields": {"uri": uri.uri_uuid}})
        return Attempted.UNRESOLVED
    edge = placer.edge
    dest = await locate_target(edge.locator, target, edge.endpoint.transports)
    if dest is None:
        return Attempted.UNRESOLVED
    credentials = (uri.username, uri.password) if uri.authentication_needed else (None, None)
    return await placer.place(LegTarget(uri.uri, dest, invite_for(target, dest), *credentials))


async def deliver_to_pbx(
    placer: LegPlacer,
    route: InboundRoute,
    invite_for: Callable[[OriginationTarget, Address], Request],
    tried: Callable[[str], None],
    *,
    secure: bool = False,
) -> Attempted | CallEnd:
    """Deliver a call to the route's PBX: the primary origination URI, then the fallback
    (`should_try_fallback`), each told to `tried` before it is; over TLS only when
    `secure` (`delivery_target`). Returns ANSWERED (the placer's `on_answer` took it),
    CANCELLED, or the customer-side end (4310 no URI, 4320 not resolved, else
    `for_customer_final` of the last answer)."""
    uris = route.uris
    if not uris:
        return refusal(4310, "inbound trunk has no origination URI")
    if placer.cancelled.done():
        return Attempted.CANCELLED
    outcome: Placed = TIMEOUT
    for uri in uris:
        tried(uri.uri)
        outcome = await _attempt(placer, uri, invite_for, secure)
        if outcome is Attempted.ANSWERED or outcome is Attempted.CANCELLED:
            return outcome
        event(log, logging.INFO, "origination uri failed", uri=uri.uri, status=outcome)
        if outcome is not Attempted.UNRESOLVED:
            assert not isinstance(outcome, Attempted)
            if not should_try_fallback(outcome):
                break
    if outcome is Attempted.UNRESOLVED:
        return refusal(4320, "origination uri does not resolve")
    assert not isinstance(outcome, Attempted)
    return for_customer_final(outcome)


class InboundCall(BridgedCall):
    """The life of one inbound INVITE until it is answered or fails."""

    near_side = Side.CARRIER

    def __init__(self, edge: SipEdge, incoming: IncomingRequest) -> None:
        super().__init__(edge, incoming, origination_timers(edge))
        self.carrier: CarrierView | None = None
        self.route: InboundRoute | None = None
        self.called: str | None = None
        self.caller = user_of(self.request.from_.uri) or ""
        self.last_uri: str | None = None
        self.offer = self.request.body  # the offer the PBX gets (anchored when admitted)
        self.secure = False  # the trunk's `secure` flag: TLS and SRTP towards the PBX

    async def _run(self) -> None:
        edge = self.edge
        source_ip = self.incoming.source.host
        carrier = (await edge.config.carriers()).for_source(source_ip)
        if carrier is None:
            event(log, logging.INFO, "INVITE from an unknown source", source=source_ip)
            self.respond(403)
            return
        self.carrier = carrier
        self.called = called_number(self.request)
        route = await edge.config.inbound_route(record_digits(self.called)) if self.called else None
        if route is None:
            event(log, logging.INFO, "inbound call to an unknown number", number=self.called)
            self.respond(404, headers=(("Reason", reason_header(refusal(4080))),))
            return
        self.route = route
        if route.trunk_id is not None:
            trunk = await edge.config.trunk(route.trunk_id)
            self.secure = trunk is not None and trunk.secure
        self.open_record()
        if not route.deliverable:
            return self.finish(refusal(4080, "number not on an enabled inbound trunk"))
        if self.secure and "tls" not in edge.endpoint.transports:
            # No TLS listener (no certificate configured): the PBX cannot be reached the
            # only way its trunk allows.
            return self.finish(refusal(4110, "secure trunk but the edge has no TLS"))
        # Inbound calls count against the account's CPS and concurrent calls like
        # outbound ones (503 to the carrier, 5180 / 5190).
        account = await edge.config.account(route.account_id)
        if account is not None and route.trunk_id is not None:
            refused = await admit_call(edge, account, route.trunk_id, self.call_uuid)
            if refused is not None:
                return self.finish(refused)
            if account.max_calls is not None:
                self.slot_account = str(account.account_id)
        if self.cancelled.done():
            return self.finish(carrier_cancelled())
        # The carrier is media leg "a" (it sent the INVITE), the PBX "b": plain RTP
        # towards the carrier, SRTP towards the PBX of a secure trunk.
        self.media = CallMedia(
            edge.media,
            self.call_uuid,
            a_side=Side.CARRIER,
            srtp_sides=frozenset({Side.CUSTOMER}) if self.secure else frozenset(),
            metrics=edge.metrics,
        )
        content_type = self.request.headers.get("Content-Type")
        hop = SdpHop(self.call_uuid, "customer", "offer")
        try:
            self.offer = await anchor_sdp(self.media, self.request.body, content_type, hop)
        except MediaError as exc:
            return self.finish(media_refusal(exc))
        outcome = await deliver_to_pbx(
            self, route, self._pbx_invite, self._tried, secure=self.secure
        )
        if outcome is Attempted.ANSWERED:
            return
        if outcome is Attempted.CANCELLED:
            return self.finish(carrier_cancelled())
        assert isinstance(outcome, CallEnd)
        self.finish(outcome)

    def _tried(self, uri: str) -> None:
        self.last_uri = uri

    def _pbx_invite(self, target: OriginationTarget, dest: Address) -> Request:
        return pbx_invite(
            self.edge,
            self.call_uuid,
            self.request,
            self.called or "",
            self.caller,
            target,
            dest,
            offer=self.offer,
        )

    # -- the record ------------------------------------------------------------------

    def call_start(self) -> CallStart | None:
        route = self.route
        if route is None:
            return None
        called = record_digits(self.called)
        caller = record_digits(self.caller)
        return CallStart(
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
            # A secure trunk's call reaches the customer over TLS with SRTP (or not at
            # all); otherwise the transport the carrier used.
            transport_protocol="tls" if self.secure else self.incoming.source.transport,
            secure_trunking=self.secure,
            srtp=self.secure,
        )

    def call_finish(self, end: CallEnd, answer_time: datetime | None) -> CallFinish:
        delay = self.post_dial_delay
        return CallFinish(
            end=end,
            end_time=utcnow(),
            answer_time=answer_time,
            post_dial_delay=None if delay is None else delay * 1000,  # ms, as Insights
            from_carrier=self.carrier.name if self.carrier is not None else None,
            to_carrier=self.last_uri,
        )

    def call_owner(self) -> CallOwner | None:
        route = self.route
        if route is None or route.trunk_id is None or not self.called:
            return None
        return CallOwner(route.account_id, route.trunk_id, route.trunk_domain, self.called)
