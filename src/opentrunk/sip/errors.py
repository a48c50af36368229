"""The one exception type of the SIP message layer.

`SipParseError` is raised for any bytes or text that do not make a valid SIP
message, URI, header field or SDP body. It carries the status code a server
should answer with (when the bad message is a request) and, where one could be
built, a best-effort `partial` request that is good enough to answer from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentrunk.sip.message import Request

__all__ = ["SipParseError"]


class SipParseError(ValueError):
    """A SIP message (or part of one) that cannot be accepted.

    Attributes:
        reason: short human text, fit for a reason phrase or a Warning header.
            Never contains secrets (header values are not echoed).
        status: the response code a server should send for a bad *request*:
            400 by default, 505 for an unsupported SIP version, 416 for an
            unsupported URI scheme, 513 for an oversized message.
        partial: for requests whose start line and top Via could be read, a
            best-effort `Request` (headers kept raw, nothing validated) that
            `make_response` can answer; None when the packet cannot be
            answered (a response, or garbage). Drop responses that raise.
    """

    def __init__(self, reason: str, status: int = 400, partial: Request | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
