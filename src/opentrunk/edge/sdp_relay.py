"""The one place where a session description crosses from one leg of a call to the
other.

Media is not anchored yet (the media relay comes with its own issue): the SDP body is
relayed as it is, so RTP flows directly between the PBX and the carrier. Every offer and
answer the B2BUA passes on goes through `relay_sdp`, so that anchoring can later rewrite
the connection address and ports here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import Side

if TYPE_CHECKING:
    from opentrunk.edge.media_session import CallMedia


@dataclass(frozen=True)
class SdpHop:
    """Which call and which way an SDP body travels (what a media relay keys on)."""

    call_uuid: str
    towards: str  # "carrier" or "customer"
    kind: str  # "offer" or "answer"


def relay_sdp(body: bytes, content_type: str | None, hop: SdpHop) -> bytes:
    """The body to send on the other leg when the call's media is not anchored (no
    `CallMedia`), or was anchored already by `anchor_sdp`: it passes untouched."""
    del content_type, hop
    return body


async def anchor_sdp(
    media: CallMedia | None, body: bytes, content_type: str | None, hop: SdpHop
) -> bytes:
    """The body to send on the other leg, rewritten by the call's media backend so that
    both sides send RTP to the edge (docs/media.md "Media anchoring in calls"). Non-SDP
    bodies, and every body of a call without media anchoring, pass untouched. Raises
    `opentrunk.media.MediaError` when the SDP cannot be anchored."""
    if media is None:
        return relay_sdp(body, content_type, hop)
    from_side = Side.CUSTOMER if hop.towards == "carrier" else Side.CARRIER
    if hop.kind == "offer":
        return await media.relay(body, content_type, from_side=from_side, kind="offer")
    return await media.relay(body, content_type, from_side=from_side, kind="answer")
