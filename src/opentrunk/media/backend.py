"""The media interface the SIP edge calls, whichever backend anchors the media.

Owns `MediaBackend` (the protocol both the embedded relay and the rtpengine
client implement), the legs' names, the errors the edge maps to hangup codes,
the timeout event and the quality figures (`CallQuality`, per stream
`StreamQuality`) that feed the call record's Insights.

Legs: "a" is the side that sent the initial INVITE (the customer's PBX on an
outbound call), "b" the side it was sent to (the carrier). Either side may
send a later offer (re-INVITE/UPDATE); `from_leg` says who sent each SDP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from opentrunk.media.quality import quality_score

__all__ = [
    "CallQuality",
    "Leg",
    "MediaBackend",
    "MediaError",
    "MediaSdpError",
    "MediaTimeout",
    "PortsExhausted",
    "StreamQuality",
    "TimeoutHandler",
    "other_leg",
]

Leg = Literal["a", "b"]


def other_leg(leg: Leg) -> Leg:
    return "b" if leg == "a" else "a"


class MediaError(Exception):
    """The media service failed (edge: 5270 internal_error_media_service)."""


class PortsExhausted(MediaError):
    """No free port pair in the relay's range (edge: 5010 port_limit_reached)."""


class MediaSdpError(MediaError):
    """The SDP cannot be anchored, e.g. no usable SDES key on an SRTP leg (edge: 488)."""


@dataclass(frozen=True)
class MediaTimeout:
    """A stream that should carry media has been silent for `silent_for` seconds."""

    call_id: str
    leg: Leg  # whose peer stopped sending
    index: int  # m= line
    silent_for: float


TimeoutHandler = Callable[[MediaTimeout], None]


@dataclass(frozen=True)
class StreamQuality:
    """What the relay received from one leg's peer on one m= line.

    `rtt_ms` is the round trip between the relay and that leg's peer. Every
    figure the backend could not measure is None.
    """

    leg: Leg
    index: int
    media: str
    codec: str | None
    packets: int
    bytes: int
    expected: int
    lost: int | None
    loss_percent: float | None
    jitter_ms: float | None
    rtt_ms: float | None
    srtp_failures: int = 0
    foreign_dropped: int = 0


@dataclass(frozen=True)
class CallQuality:
    """A call's media figures; the call-level properties are what Insights shows."""

    call_id: str
    streams: tuple[StreamQuality, ...]

    @property
    def packet_loss(self) -> float | None:
        """Percent of the packets expected on every stream that never arrived."""
        measured = [s for s in self.streams if s.lost is not None and s.expected > 0]
        if not measured:
            return None
        expected = sum(s.expected for s in measured)
        return round(100.0 * sum(s.lost or 0 for s in measured) / expected, 3)

    @property
    def jitter_ms(self) -> float | None:
        """The worst stream's interarrival jitter."""
        values = [s.jitter_ms for s in self.streams if s.jitter_ms is not None]
        return round(max(values), 3) if values else None

    @property
    def rtt_ms(self) -> float | None:
        """End-to-end round trip: the relay's round trip to each leg's peer, added.

        With RTCP from one leg only, the figure covers that leg alone.
        """
        per_leg: dict[str, float] = {}
        for s in self.streams:
            if s.rtt_ms is not None:
                per_leg[s.leg] = max(per_leg.get(s.leg, 0.0), s.rtt_ms)
        return round(sum(per_leg.values()), 3) if per_leg else None

    @property
    def codec(self) -> str | None:
        for s in self.streams:
            if s.media == "audio" and s.codec:
                return s.codec
        return None

    @property
    def quality_score(self) -> float | None:
        return quality_score(self.codec, self.packet_loss, self.jitter_ms, self.rtt_ms)

    def insights(self) -> dict[str, float | None]:
        """The media fields of the Insights resource (ms, percent, MOS)."""
        return {
            "rtt": self.rtt_ms,
            "jitter": self.jitter_ms,
            "packet_loss": self.packet_loss,
            "plivo_quality_score": self.quality_score,
        }


class MediaBackend(Protocol):
    """What the edge calls to anchor a call's media.

    Every SDP the edge forwards from one leg to the other goes through
    `offer` (an offer from `from_leg`) or `answer` (the answer from
    `from_leg`), and the edge forwards the returned body instead. `delete`
    frees everything of the call and returns its final figures; it is safe to
    call twice and for unknown calls.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def offer(
        self,
        call_id: str,
        from_leg: Leg,
        sdp: bytes,
        *,
        srtp_legs: frozenset[Leg] = frozenset(),
    ) -> bytes: ...

    async def answer(self, call_id: str, from_leg: Leg, sdp: bytes) -> bytes: ...

    async def delete(self, call_id: str) -> CallQuality | None: ...

    async def stats(self, call_id: str) -> CallQuality | None: ...

    def set_timeout_handler(self, handler: TimeoutHandler | None) -> None: ...
