"""The one place where a session description crosses from one leg of a call to the
other.

Media is not anchored yet (the media relay comes with its own issue): the SDP body is
relayed as it is, so RTP flows directly between the PBX and the carrier. Every offer and
answer the B2BUA passes on goes through `relay_sdp`, so that anchoring can later rewrite
the connection address and ports here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SdpHop:
    """Which call and which way an SDP body travels (what a media relay keys on)."""

    call_uuid: str
    towards: str  # "carrier" or "customer"
    kind: str  # "offer" or "answer"


def relay_sdp(body: bytes, content_type: str | None, hop: SdpHop) -> bytes:
    """The body to send on the other leg. Non-SDP bodies pass untouched."""
    del content_type, hop  # used once media is anchored
    return body
