"""On-net calls (issue 5 item 9): an outbound call from a PBX to one of the operator's
own numbers is delivered inbound directly, to the PBX of the inbound trunk the number is
attached to, and never sent to a carrier (where it would only come back in, or loop).

`outbound.OutboundCall` screens and admits the call as usual, then finds the number with
`EdgeConfig.inbound_route`; when the number is in the inventory the call goes on-net:
`OnNetRecord` keeps the inbound side's own call record (`call_direction` inbound, in the
number's account and inbound trunk; Insights `from.carrier` is "on-net", `to.carrier`
the origination URI), the inbound rules apply (4080 when not on an enabled inbound
trunk, the called account's CPS and concurrent calls, 4310/4320, primary then fallback
URI), and the PBX leg is placed by `inbound.deliver_to_pbx` with the outbound call as
its placer, so the calling PBX hears the called PBX's ringing and answer directly.

Secure trunks (CALLS.md "Media", issue 6): the called PBX is reached the way a
carrier's call to its trunk would reach it. A number on a `secure` inbound trunk gets
its INVITE over TLS (the name in its origination URI verified, RFC 5922) with an SDES
SRTP offer, whatever the calling trunk is; a plain-RTP answer ends the call 4640 and an
edge without a TLS listener refuses it 4110. `called_trunk_secure` reads the flag
before the media is anchored, `on_net_srtp_sides` says which of the call's two media
legs speak SRTP (the calling PBX's when its own trunk is secure, the called PBX's when
its trunk is), and the inbound record says TLS and SRTP as an inbound call's would.

Two records, each from its own point of view: the outbound one (rate 0: no carrier
carried it) ends like an outbound call whose "carrier" is the called PBX (its failure
status through `attempts_outcome`); the inbound one ends like an inbound call whose
"carrier" is the calling PBX. So a BYE from the calling PBX is 3010 on the outbound
record and 3000 on the inbound one, and the reverse for the called PBX.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import CallEnd, Side, bye_from, refusal
from opentrunk.domain.numbers import country_of
from opentrunk.edge.bridge import record_digits, utcnow
from opentrunk.edge.logs import event
from opentrunk.edge.media_session import with_quality
from opentrunk.edge.views import CallFinish, CallStart, InboundRoute

if TYPE_CHECKING:
    from opentrunk.edge.server import SipEdge
    from opentrunk.media.backend import CallQuality

log = logging.getLogger(__name__)

FROM_CARRIER = "on-net"  # Insights `from.carrier` of the inbound record


async def called_trunk_secure(edge: SipEdge, route: InboundRoute) -> bool:
    """Whether the number's inbound trunk is `secure` (TLS and SRTP to its PBX)."""
    if route.trunk_id is None:
        return False
    trunk = await edge.config.trunk(route.trunk_id)
    return trunk is not None and trunk.secure


def on_net_srtp_sides(calling_secure: bool, called_secure: bool) -> frozenset[Side]:
    """The sides of an on-net call whose media is SRTP. The outbound call's own terms
    apply: the calling PBX is its customer side, the called PBX its far (carrier) side."""
    sides: set[Side] = set()
    if calling_secure:
        sides.add(Side.CUSTOMER)
    if called_secure:
        sides.add(Side.CARRIER)
    return frozenset(sides)


def secure_refusal(edge: SipEdge, called_secure: bool) -> CallEnd | None:
    """4110 when the called trunk is secure and the edge has no TLS listener to reach
    its PBX with (as for a carrier's call to that trunk); else None."""
    if called_secure and "tls" not in edge.endpoint.transports:
        return refusal(4110, "secure trunk but the edge has no TLS")
    return None


def mirrored(end: CallEnd) -> CallEnd:
    """The end of a bridged on-net call as the inbound record sees it: the calling PBX
    plays the carrier's part there, the called PBX the customer's."""
    if end.code == bye_from(Side.CUSTOMER).code:
        return bye_from(Side.CARRIER)
    if end.code == bye_from(Side.CARRIER).code:
        return bye_from(Side.CUSTOMER)
    return end


class OnNetRecord:
    """The inbound record of an on-net call, opened once and closed once."""

    def __init__(
        self,
        edge: SipEdge,
        route: InboundRoute,
        caller: str,
        called: str,
        transport: str,
        *,
        secure: bool = False,
    ) -> None:
        self.edge = edge
        self.route = route
        self.call_uuid = str(uuid.uuid4())
        self.caller = caller
        self.called = called
        self.transport = transport
        self.last_uri: str | None = None
        self.slot_account: str | None = None
        self.finished = False
        self.post_dial_delay: float | None = None  # seconds, as the placer measured it
        caller_digits, called_digits = record_digits(caller), record_digits(called)
        edge.recorder.open(
            CallStart(
                call_uuid=self.call_uuid,
                account_id=route.account_id,
                trunk_id=route.trunk_id,
                from_number=caller_digits,
                to_number=called_digits,
                initiation_time=utcnow(),
                call_direction="inbound",
                trunk_domain=route.trunk_domain,
                from_country=country_of(caller_digits) if caller_digits.isdigit() else None,
                to_country=country_of(called_digits),
                # A secure trunk's PBX is reached over TLS with SRTP (or not at all), as
                # the inbound record of a carrier's call says.
                transport_protocol="tls" if secure else transport,
                secure_trunking=secure,
                srtp=secure,
            )
        )
        edge.metrics.call_started()
        event(log, logging.INFO, "on-net call", inbound=self.call_uuid)

    def tried(self, uri: str) -> None:
        self.last_uri = uri

    def answered(self, answer_time: datetime) -> None:
        self.edge.recorder.answered(self.call_uuid, answer_time)

    def finish(
        self,
        end: CallEnd,
        answer_time: datetime | None = None,
        quality: CallQuality | None = None,
    ) -> None:
        """Close the inbound record; `quality`: the call's media figures (one relay
        session carries both PBXes, so both records show the same Insights)."""
        if self.finished:
            return
        self.finished = True
        delay = self.post_dial_delay
        finish = CallFinish(
            end=end,
            end_time=utcnow(),
            answer_time=answer_time,
            post_dial_delay=None if delay is None else delay * 1000,  # ms
            from_carrier=FROM_CARRIER,
            to_carrier=self.last_uri,
        )
        self.edge.recorder.close(self.call_uuid, with_quality(finish, quality))
        self.edge.metrics.call_ended(end)
        if self.slot_account is not None:
            self.edge.release_slot(self.slot_account, self.call_uuid)
