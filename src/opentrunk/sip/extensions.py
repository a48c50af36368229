"""SIP extensions by option tag (RFC 3261 sections 8.2.2.3, 19.2, 20.32, 20.37): which
ones the edge takes part in, the check of a request's Require header, and the Supported
header a B2BUA leg may pass on.

A B2BUA is the user agent of both legs: an extension in force on one leg binds the
edge, not the far side. So it supports only what it implements end to end, session
timers (`timer`, RFC 4028: the edge refreshes and ends sessions itself,
edge/session_timer.py). Reliable provisional responses (`100rel`, RFC 3262) are not
among them: passing `Supported: 100rel` to a PBX (Asterisk's pjsip endpoints do 100rel
by default) would let it send reliable 18x and wait for a PRACK the edge never sends,
then end the call after 32 s of ringing (RFC 3262 section 3).
"""

from __future__ import annotations

from typing import Final

from opentrunk.sip.message import Request

__all__ = ["SUPPORTED_OPTION_TAGS", "option_tags", "passed_supported", "unsupported_required"]

SUPPORTED_OPTION_TAGS: Final = frozenset({"timer"})
# Requests whose Require is not checked: an ACK cannot be answered and a CANCEL must
# not be refused for it (RFC 3261 section 8.2.2.3).
_UNCHECKED = frozenset({"ACK", "CANCEL"})


def option_tags(values: list[str]) -> list[str]:
    """The option tags of a Require/Supported/Unsupported header's values, in order
    (comma-separated, across repeated headers; empty entries dropped)."""
    return [tag for value in values for tag in (t.strip() for t in value.split(",")) if tag]


def unsupported_required(
    request: Request, supported: frozenset[str] = SUPPORTED_OPTION_TAGS
) -> list[str]:
    """The Require tags of `request` that the edge does not support: answer 420 (Bad
    Extension) listing them in Unsupported when there are any. Tags are compared without
    regard to case."""
    if request.method in _UNCHECKED:
        return []
    values = request.headers.get_all("Require")
    if not values:
        return []
    return [tag for tag in option_tags(values) if tag.lower() not in supported]


def passed_supported(
    request: Request, supported: frozenset[str] = SUPPORTED_OPTION_TAGS
) -> str | None:
    """The Supported header the edge's other leg may carry for `request`: its tags that
    the edge supports end to end, or None when none are left."""
    kept = [
        tag for tag in option_tags(request.headers.get_all("Supported")) if tag.lower() in supported
    ]
    return ", ".join(kept) if kept else None
