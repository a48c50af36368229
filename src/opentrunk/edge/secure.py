"""Secure trunking (CALLS.md "Outbound" step 3): does a call's signalling transport and
media offer match its trunk's `secure` flag, and which legs then speak SRTP.

A `secure` trunk carries calls only over TLS with SRTP in the offer (every active RTP
line `RTP/SAVP` or `RTP/SAVPF` with an `a=crypto` line); a trunk that is not secure
refuses TLS and SRTP offers alike. Either mismatch is 4110 secure_trunking_disabled.
SRTP stops at the edge: towards the customer with SDES keys, plain RTP towards
carriers, so the media relay is told which leg is the secure one (`srtp_legs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from opentrunk.media.backend import Leg
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.sdp import parse_sdp

__all__ = ["OfferSecurity", "customer_srtp_legs", "offer_security", "transport_matches"]

_SECURE_PROTOS = frozenset({"RTP/SAVP", "RTP/SAVPF"})


@dataclass(frozen=True)
class OfferSecurity:
    """What an SDP offer says about SRTP: `srtp` when any active RTP line asks for it,
    `complete` when every active RTP line does and carries an SDES key."""

    srtp: bool
    complete: bool


_PLAIN = OfferSecurity(srtp=False, complete=False)


def _is_sdp(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/sdp"


def offer_security(body: bytes, content_type: str | None) -> OfferSecurity:
    """Read the SRTP intent of an offer; no SDP (or unreadable SDP) offers no SRTP."""
    if not body or not _is_sdp(content_type):
        return _PLAIN
    # Most offers are plain RTP: without a SAVP profile no line can ask for SRTP nor be
    # complete, so the parse (the relay parses the offer again anyway) is skipped.
    if b"SAVP" not in body.upper():
        return _PLAIN
    try:
        sdp = parse_sdp(body)
    except SipParseError:
        return _PLAIN
    active = [m for m in sdp.media if m.port != 0 and m.proto.upper().startswith("RTP/")]
    secure = [m for m in active if m.proto.upper() in _SECURE_PROTOS]
    keyed = [m for m in secure if m.get_attributes("crypto")]
    return OfferSecurity(srtp=bool(secure), complete=bool(active) and len(keyed) == len(active))


def transport_matches(
    trunk_secure: bool, transport: str, body: bytes, content_type: str | None
) -> bool:
    """False when the call must be refused with 4110 (see the module docstring). An
    INVITE without a body (a delayed offer) has no SRTP to show: on a secure trunk TLS
    is enough, as the edge itself offers SDES towards the PBX in its 200 and the PBX's
    answer in the ACK must take it (else the call ends 4430)."""
    tls = transport.lower() == "tls"
    if not body:
        return tls == trunk_secure
    security = offer_security(body, content_type)
    if trunk_secure:
        return tls and security.complete
    return not tls and not security.srtp


def customer_srtp_legs(trunk_secure: bool, customer_leg: Leg) -> frozenset[Leg]:
    """The media legs that speak SRTP: the customer's leg on a secure trunk, else none."""
    return frozenset({customer_leg}) if trunk_secure else frozenset()
