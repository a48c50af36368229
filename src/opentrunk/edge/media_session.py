"""One call's media as the B2BUA sees it: the bridge between the edge's legs (customer,
carrier) and the media backend's legs ("a" sent the initial INVITE, "b" received it).

`CallMedia` is created when a call is admitted and lives until its record is closed:

- `relay(body, content_type, from_side, kind)` passes one SDP offer or answer through
  the backend (`MediaBackend.offer/answer`) and returns the body for the other leg;
  bodies that are not SDP pass untouched. The first offer says which legs speak SRTP
  (the customer's, on a secure trunk). The same offer sent again (carrier failover) is
  answered from a cache, so every carrier gets the very same relay ports;
- `release()` frees the call's ports once, whatever ended it, and returns the final
  figures (`CallQuality`), which `with_quality` copies into the record's `CallFinish`.

Failures map to hangup codes (`media_refusal`): no free ports 5010, SDP that cannot be
anchored 4430 (488), anything else 5270. A first INVITE with a body that is not SDP
cannot be anchored either: 4430 (488) before any far leg is tried.

Delayed offer (RFC 3261 13.2.1): a first INVITE without a body passes untouched; the
offer then comes in the far side's 2xx (`relay(..., kind="offer")` from the far side)
and the answer in the near side's ACK (`relay(..., kind="answer")`), both carried by
`edge.bridge` and `edge.b2bua`. After answer, the rows for a broken exchange are
`answer_refusal` (an answer the backend cannot anchor) and `missing_answer` (an ACK
without one); `rejecting_answer` is the valid answer the edge puts in an ACK it must
send when it has no usable one (13.2.2.4: answer, then BYE).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from opentrunk.domain.hangup_codes import CallEnd, Side, refusal
from opentrunk.media.backend import (
    CallQuality,
    Leg,
    MediaBackend,
    MediaError,
    MediaSdpError,
    PortsExhausted,
)
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.sdp import parse_sdp

if TYPE_CHECKING:
    from opentrunk.edge.metrics import EdgeMetrics
    from opentrunk.edge.views import CallFinish

__all__ = [
    "CallMedia",
    "answer_refusal",
    "is_sdp",
    "media_refusal",
    "missing_answer",
    "rejecting_answer",
    "with_quality",
]

log = logging.getLogger(__name__)

SdpKind = Literal["offer", "answer"]
# How long a release may take before the record is closed without figures (rtpengine
# over a slow control link must not hold a record open).
RELEASE_TIMEOUT = 5.0


def is_sdp(body: bytes, content_type: str | None) -> bool:
    if not body:
        return False
    return (content_type or "").split(";")[0].strip().lower() == "application/sdp"


def media_refusal(exc: MediaError) -> CallEnd:
    """The hangup row for a media failure before answer."""
    if isinstance(exc, PortsExhausted):
        return refusal(5010, "no free media ports")
    if isinstance(exc, MediaSdpError):
        return refusal(4430, "SDP cannot be anchored")
    return refusal(5270, "media service failed")


def answer_refusal(exc: MediaError) -> CallEnd:
    """The row for a delayed-offer call whose answer (in the near side's ACK) the
    backend cannot anchor: the row `media_refusal` gives before answer (4430 for SDP
    that cannot be anchored, 5270 for a failing backend), ended by BYE (no status)."""
    return replace(media_refusal(exc), sip_status=None)


def missing_answer() -> CallEnd:
    """A delayed-offer call whose near side ACKed the edge's offer without an answer
    (RFC 3261 13.2.2.4 says it must carry one): 4580 invalid_sip_packet, the table's row
    for a message the edge cannot use as it was sent, ended by BYE (no status)."""
    return replace(refusal(4580, "ACK without the SDP answer to the 2xx's offer"), sip_status=None)


def rejecting_answer(offer: bytes) -> bytes:
    """An answer that rejects every stream of `offer` (port 0, RFC 3264 6), for an ACK
    the edge must send without a usable answer of its own before it hangs up; empty
    when the offer cannot even be read."""
    try:
        sdp = parse_sdp(offer)
    except SipParseError:
        return b""
    lines = [
        "v=0",
        f"o=opentrunk {secrets.randbelow(2**31)} 1 IN IP4 0.0.0.0",
        "s=-",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
    ]
    # A rejected stream keeps its media type, transport and one of its formats.
    lines += [f"m={m.media} 0 {m.proto} {m.formats[0] if m.formats else '0'}" for m in sdp.media]
    return ("\r\n".join(lines) + "\r\n").encode()


class CallMedia:
    """See the module docstring."""

    def __init__(
        self,
        backend: MediaBackend,
        call_uuid: str,
        *,
        a_side: Side,
        srtp_sides: frozenset[Side] = frozenset(),
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.backend = backend
        self.call_uuid = call_uuid
        self.a_side = a_side
        self.srtp_legs: frozenset[Leg] = frozenset(self.leg_of(side) for side in srtp_sides)
        self.metrics = metrics
        self.anchored = False
        self._last_offer: tuple[Leg, bytes, bytes] | None = None
        self._released: asyncio.Future[CallQuality | None] | None = None

    @property
    def srtp(self) -> bool:
        """Whether one of the call's legs speaks SRTP."""
        return bool(self.srtp_legs)

    def leg_of(self, side: Side) -> Leg:
        return "a" if side is self.a_side else "b"

    async def relay(
        self, body: bytes, content_type: str | None, *, from_side: Side, kind: SdpKind
    ) -> bytes:
        """The body to send on the other leg (MediaError when it cannot be anchored)."""
        if not is_sdp(body, content_type):
            if kind == "offer" and not self.anchored and body:
                # A first INVITE whose body is not SDP (e.g. multipart) may hide an
                # offer the relay cannot read; one without any body is a delayed offer
                # and passes (module docstring).
                raise MediaSdpError("an INVITE whose body is not SDP cannot be anchored")
            return body
        if self._released is not None:
            raise MediaError("the call's media was already released")
        leg = self.leg_of(from_side)
        if kind == "offer":
            last = self._last_offer
            if last is not None and last[0] == leg and last[1] == body:
                return last[2]
            out = await self.backend.offer(self.call_uuid, leg, body, srtp_legs=self.srtp_legs)
            self._last_offer = (leg, body, out)
        else:
            out = await self.backend.answer(self.call_uuid, leg, body)
            self._last_offer = None
        self.anchored = True
        return out

    async def release(self) -> CallQuality | None:
        """Free the call's media (once; later calls get the same figures)."""
        if self._released is not None:
            return await asyncio.shield(self._released)
        released = self._released = asyncio.get_running_loop().create_future()
        quality: CallQuality | None = None
        try:
            quality = await asyncio.wait_for(self.backend.delete(self.call_uuid), RELEASE_TIMEOUT)
        except (MediaError, TimeoutError, OSError) as exc:
            log.warning("media release failed: %s", type(exc).__name__)
        except Exception:
            log.exception("media release failed")
        finally:
            # Every waiter (the record, an on-net call's second record) gets an answer,
            # even when the release failed or was cancelled.
            if not released.done():
                released.set_result(quality)
        if quality is not None and self.metrics is not None:
            self.metrics.media_released(
                sum(s.srtp_failures for s in quality.streams),
                sum(s.foreign_dropped for s in quality.streams),
            )
        return quality


def with_quality(finish: CallFinish, quality: CallQuality | None) -> CallFinish:
    """`finish` with the media figures of Insights (None stays None: not measured)."""
    if quality is None:
        return finish
    return replace(
        finish,
        rtt=quality.rtt_ms,
        jitter=quality.jitter_ms,
        packet_loss=quality.packet_loss,
        quality_score=quality.quality_score,
    )
