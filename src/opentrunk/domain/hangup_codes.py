"""The public Zentrunk hangup-cause table, as data, and the rules that map every way a
call can end to exactly one row of it.

A call record carries three things about its end: `hangup_cause_code` (four digits),
`hangup_cause_name` and `hangup_source` (who sent the BYE or the final error: `customer`
is the PBX side, `carrier` the network side, `zentrunk` the edge itself). The SIP edge
never invents a code: it asks one of the functions below, which return a `CallEnd` that
also says which SIP status the edge answers the call's originator with (None when the
call ends by BYE, after answer).

Direction words: on an *outbound* call the customer's PBX sends the INVITE and the
carrier answers it; on an *inbound* call a carrier sends the INVITE and the customer's
PBX answers it. `for_carrier_final` is about the first case, `for_customer_final` about
the second. docs/call-rules.md holds the full mapping table with the reasons for each
choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

TIMEOUT: Final = "timeout"
# A final answer to an INVITE: a SIP status, or "timeout" when none came in time
# (Timer B, or the edge's own no-answer timer). A transport error counts as 503, as
# RFC 3261 section 8.1.3.1 says.
FinalStatus = int | Literal["timeout"]


class HangupSource(StrEnum):
    CUSTOMER = "customer"
    CARRIER = "carrier"
    ZENTRUNK = "zentrunk"


class Side(StrEnum):
    """Which leg of the B2BUA something happened on."""

    CUSTOMER = "customer"
    CARRIER = "carrier"

    @property
    def source(self) -> HangupSource:
        return HangupSource(self.value)

    @property
    def other(self) -> Side:
        """The B2BUA's other leg."""
        return Side.CARRIER if self is Side.CUSTOMER else Side.CUSTOMER


@dataclass(frozen=True)
class HangupCause:
    """One row of the public table. `source` is set where the row itself says who ended
    the call (3000 is always the carrier); None where it depends on the call."""

    code: int
    name: str
    source: HangupSource | None
    description: str


_C, _K, _Z = HangupSource.CUSTOMER, HangupSource.CARRIER, HangupSource.ZENTRUNK

# The table of CALLS.md, one row per code, in the table's own order.
TABLE: Final[tuple[HangupCause, ...]] = (
    # Normal
    HangupCause(3000, "normal_hangup", _K, "Call ended by a BYE from the carrier side"),
    HangupCause(3010, "normal_hangup", _C, "Call ended by a BYE from the customer's PBX"),
    HangupCause(3020, "rtp_timeout", _Z, "No RTP received for longer than the media timeout"),
    HangupCause(3030, "insufficient_plivo_credits", _Z, "Account ran out of credit mid-call"),
    HangupCause(3040, "abnormal_hangup_due_to_reinvite", _Z, "A failed re-INVITE ended the call"),
    # Authentication
    HangupCause(4000, "bad_request", None, "The other side answered 400 Bad Request"),
    HangupCause(4010, "unauthorized_by_carrier", _K, "Carrier challenge could not be met"),
    HangupCause(4020, "unauthorized", _C, "Customer's PBX refused the edge (401/403)"),
    HangupCause(4030, "insufficient_plivo_credits", _Z, "Account has no credit for the call"),
    HangupCause(4040, "forbidden", _K, "Carrier answered 403 Forbidden"),
    HangupCause(4050, "blacklisted_for_verification", _Z, "Caller blocked pending verification"),
    HangupCause(4060, "forbidden", _Z, "PBX authentication (IP ACL or digest) failed"),
    # Routing
    HangupCause(4070, "trunk_not_found", _Z, "No usable outbound trunk for the Request-URI"),
    HangupCause(4080, "route_not_found", _Z, "Number not on an enabled inbound trunk"),
    HangupCause(4090, "destination_not_found", None, "No carrier for the prefix, or 404"),
    HangupCause(4100, "prefix_not_supported", _Z, "No rate for the destination's prefix"),
    HangupCause(4110, "secure_trunking_disabled", _Z, "Transport or SRTP does not match trunk"),
    HangupCause(4120, "destination_invalid", None, "Destination is not a valid E.164 number"),
    # Caller ID
    HangupCause(4130, "incorrect_callerid_non_numeric", _Z, "Caller ID is not numeric"),
    HangupCause(4140, "incorrect_callerid_too_short", _Z, "Caller ID has fewer than 6 digits"),
    HangupCause(4190, "unknown_caller_id", _Z, "Caller ID is not one of the account's numbers"),
    HangupCause(4200, "dno_caller_id", _Z, "Caller ID is on the do-not-originate list"),
    # Format and media
    HangupCause(4150, "proxy_authentication_required", _C, "PBX's 407 could not be met"),
    HangupCause(4160, "request_timeout_carrier", _K, "Carrier sent no final answer in time"),
    HangupCause(4170, "request_timeout_customer", _C, "PBX sent no final answer in time"),
    HangupCause(4220, "unsupported_media_type", None, "415 Unsupported Media Type"),
    HangupCause(4230, "unsupported_uri_scheme", None, "416 Unsupported URI Scheme"),
    HangupCause(4270, "session_interval_too_small", None, "422 Session Interval Too Small"),
    # URI and availability
    HangupCause(4310, "uri_not_found", _Z, "Inbound trunk has no origination URI"),
    HangupCause(4320, "uri_invalid", _Z, "Origination URI host does not resolve"),
    HangupCause(4330, "temporary_unavailable", _Z, "The edge is overloaded"),
    HangupCause(4340, "temporary_unavailable", _K, "Carrier answered 480"),
    HangupCause(4350, "temporary_unavailable", _C, "PBX answered 480"),
    HangupCause(4360, "call_does_not_exist", None, "481 Call/Transaction Does Not Exist"),
    HangupCause(4370, "loop_detected", None, "Loop detected (482)"),
    HangupCause(4380, "too_many_hops", None, "Max-Forwards exhausted (483)"),
    # Call state
    HangupCause(4410, "user_busy", None, "Callee busy (486)"),
    HangupCause(4420, "carrier_cancelled", _K, "Carrier cancelled an inbound call"),
    HangupCause(4430, "sdp_not_acceptable_here", _Z, "The edge cannot use the offered SDP"),
    HangupCause(4440, "request_terminated", None, "487 without a CANCEL from the edge"),
    HangupCause(4500, "request_pending", None, "491 Request Pending"),
    HangupCause(4520, "security_agreement_required", None, "494 Security Agreement Required"),
    HangupCause(4540, "forbidden", _Z, "Trunk disabled"),
    HangupCause(4550, "user_cancelled", _C, "PBX cancelled an outbound call"),
    # Restrictions
    HangupCause(4560, "barred_country", _Z, "Destination country not in geo permissions"),
    HangupCause(4570, "barred_number", _Z, "Premium-rate or barred destination prefix"),
    HangupCause(4580, "invalid_sip_packet", _Z, "INVITE could not be used as sent"),
    HangupCause(4590, "domestic_anchored_terms_not_met", _Z, "Domestic anchoring rules unmet"),
    # SDP and codecs
    HangupCause(4610, "ruri_not_acceptable_here", _Z, "Request-URI form not acceptable"),
    HangupCause(4620, "codec_not_acceptable_here", _Z, "No common codec (PCMU/PCMA)"),
    HangupCause(4630, "sdp_not_acceptable_here_by_carrier", _K, "Carrier answered 488"),
    HangupCause(4640, "sdp_not_acceptable_here_by_user", _C, "PBX answered 488"),
    # Server and capacity
    HangupCause(5000, "service_unavailable_no_more_destinations", _Z, "All carriers failed"),
    HangupCause(5010, "port_limit_reached", _Z, "Media relay has no free ports"),
    HangupCause(5020, "not_implemented", _Z, "The edge does not implement the request"),
    HangupCause(5030, "not_implemented_at_carrier", _K, "Carrier answered 501"),
    HangupCause(5040, "not_implemented_at_user", _C, "PBX answered 501"),
    HangupCause(5180, "cps_limit_reached", _Z, "Calls-per-second limit reached"),
    HangupCause(5190, "concurrent_call_limit_exceeded", _Z, "Concurrent-call limit reached"),
    HangupCause(5200, "server_timeout", _Z, "The edge gave up waiting on itself"),
    # Mid-call
    HangupCause(5220, "service_interrupted_by_customer", _C, "PBX answered another 4xx"),
    HangupCause(5230, "service_interrupted_by_customer", _C, "PBX answered another 5xx/6xx"),
    HangupCause(5240, "service_interrupted_by_nomedia", _Z, "Media never started after answer"),
    HangupCause(5250, "internal_error", _Z, "Internal error (also: calls cut by an edge crash)"),
    HangupCause(5260, "internal_error_routing", _Z, "Internal error while routing"),
    HangupCause(5270, "internal_error_media_service", _Z, "Media relay failed"),
    HangupCause(5290, "internal_error_trunk", _Z, "Trunk configuration unusable"),
    HangupCause(5300, "bad_gateway", None, "502 Bad Gateway"),
    HangupCause(5310, "service_interrupted_by_carrier_4xx", _K, "Carrier answered another 4xx"),
    HangupCause(5320, "service_interrupted_by_carrier_5xx_6xx", _K, "Carrier: other 5xx/6xx"),
    HangupCause(5330, "server_timeout", _K, "Carrier answered 504, or timed out mid-call"),
    HangupCause(5340, "server_timeout", _C, "PBX answered 504, or timed out mid-call"),
    HangupCause(5350, "service_unavailable_by_carrier", _K, "Carrier answered 503"),
    HangupCause(5360, "service_unavailable_by_user", _C, "PBX answered 503"),
    # Global
    HangupCause(6000, "busy_everywhere", None, "600 Busy Everywhere"),
    HangupCause(6020, "does_not_exist_anywhere", None, "604 Does Not Exist Anywhere"),
    HangupCause(6030, "alloted_timeout", _Z, "Call reached its maximum duration"),
    HangupCause(6040, "declined_from_carrier", None, "603 Decline"),
    HangupCause(6070, "not_acceptable", None, "606 Not Acceptable"),
)

BY_CODE: Final[Mapping[int, HangupCause]] = MappingProxyType({row.code: row for row in TABLE})


def cause(code: int) -> HangupCause:
    """The table row for a code; KeyError for a code the table does not have."""
    return BY_CODE[code]


@dataclass(frozen=True)
class CallEnd:
    """How one call ended: the table row, who ended it, the SIP status the edge answers the
    call's originator with (None when the call ends by BYE), and a short reason for logs
    and the SIP Reason header (never containing secrets)."""

    code: int
    name: str
    source: HangupSource
    sip_status: int | None
    reason: str

    def __post_init__(self) -> None:
        row = BY_CODE.get(self.code)
        if row is None or row.name != self.name:
            raise ValueError(f"{self.code} {self.name} is not a row of the hangup table")
        if self.sip_status is not None and not 300 <= self.sip_status <= 699:
            raise ValueError(f"a failed call cannot be answered {self.sip_status}")

    @property
    def code_text(self) -> str:
        """The four-digit `hangup_cause_code` as the API shows it."""
        return f"{self.code:04d}"


def _end(code: int, source: HangupSource, sip_status: int | None, reason: str = "") -> CallEnd:
    row = BY_CODE[code]
    return CallEnd(code, row.name, source, sip_status, reason or row.description)


# ---------------------------------------------------------------------------------------
# Refusals: the edge itself declines an INVITE (source zentrunk), with this SIP status.

REFUSAL_STATUS: Final[Mapping[int, int]] = MappingProxyType(
    {
        4000: 400,
        4030: 403,
        4050: 403,
        4060: 403,
        4070: 404,  # trunk not found; an inbound-only trunk is 403 (pass sip_status=403)
        4080: 404,
        4090: 404,
        4100: 404,
        4110: 403,
        4120: 484,
        4130: 403,
        4140: 403,
        4190: 403,
        4200: 403,
        4220: 415,
        4230: 416,
        4270: 422,
        # An inbound trunk that cannot be reached is the operator's customer's problem, not
        # the number's: 480 tells the carrier to try later rather than "no such number".
        4310: 480,
        4320: 480,
        4330: 503,
        4370: 482,
        4380: 483,
        4430: 488,
        4540: 403,
        4560: 403,
        4570: 403,
        4580: 400,
        4590: 403,
        4610: 488,
        4620: 488,
        5000: 503,
        5010: 503,
        5020: 501,
        5180: 503,
        # 503, not 486: the limit is the trunk's, not the callee's, and 486 would make the
        # PBX tell its user the callee is busy.
        5190: 503,
        5200: 504,
        5250: 500,
        5260: 500,
        5270: 500,
        5290: 500,
    }
)


def refusal(code: int, reason: str = "", *, sip_status: int | None = None) -> CallEnd:
    """The edge declines a call before answer with one of its own codes (source zentrunk).

    `sip_status` overrides the default status for the code (CALLS.md answers an
    inbound-only trunk with 403 although its code, 4070, is otherwise a 404).
    """
    if code not in REFUSAL_STATUS:
        raise ValueError(f"{code} is not a code the edge refuses a call with")
    return _end(code, _Z, sip_status or REFUSAL_STATUS[code], reason)


# ---------------------------------------------------------------------------------------
# Final answers to the edge's INVITE, before the call was answered.

# Statuses whose row does not depend on which side answered.
_COMMON_FINAL: Final[Mapping[int, int]] = MappingProxyType(
    {
        400: 4000,
        404: 4090,
        410: 4090,
        415: 4220,
        416: 4230,
        422: 4270,
        481: 4360,
        482: 4370,
        483: 4380,
        484: 4120,
        486: 4410,
        487: 4440,
        491: 4500,
        494: 4520,
        502: 5300,
        600: 6000,
        603: 6040,
        604: 6020,
        606: 6070,
    }
)

_CARRIER_FINAL: Final[Mapping[int, int]] = MappingProxyType(
    {
        **_COMMON_FINAL,
        401: 4010,
        407: 4010,
        403: 4040,
        408: 4160,
        480: 4340,
        488: 4630,
        501: 5030,
        503: 5350,
        504: 5330,
    }
)

_CUSTOMER_FINAL: Final[Mapping[int, int]] = MappingProxyType(
    {
        **_COMMON_FINAL,
        401: 4020,
        403: 4020,
        407: 4150,
        408: 4170,
        480: 4350,
        488: 4640,
        501: 5040,
        503: 5360,
        504: 5340,
    }
)

# A challenge the edge could not meet is not relayed: the originator cannot answer a
# challenge from the other side's realm, so it gets a plain 403. Nor is a redirect: its
# Contact would reveal the other side's topology, and the edge does not follow it.
_NOT_RELAYED: Final[Mapping[int, int]] = MappingProxyType({401: 403, 407: 403})


def _answer_status(status: int) -> int:
    if 300 <= status < 400:
        return 480
    return _NOT_RELAYED.get(status, status)


def _check_final(status: FinalStatus) -> None:
    if status != TIMEOUT and not (isinstance(status, int) and 300 <= status <= 699):
        raise ValueError(f"{status!r} is not a final failure status")


def _final(status: FinalStatus, side: Side, table: Mapping[int, int]) -> CallEnd:
    _check_final(status)
    if status == TIMEOUT:
        code = table[408]
        return _end(code, side.source, 408, f"no final answer from the {side.value} in time")
    assert isinstance(status, int)
    code = table.get(status) or _fallback(status, side)
    return _end(code, side.source, _answer_status(status), f"{side.value} answered {status}")


def _fallback(status: int, side: Side) -> int:
    # Statuses without a row of their own: 3xx (a B2BUA does not follow a carrier's
    # redirect, it would leak topology) and the rarer 4xx count as the side's 4xx
    # interruption; other 5xx/6xx as its 5xx/6xx interruption.
    small = status < 500
    if side is Side.CARRIER:
        return 5310 if small else 5320
    return 5220 if small else 5230


def for_carrier_final(status: FinalStatus) -> CallEnd:
    """Outbound call: the carrier's final failure (or its silence) before answer.

    The edge answers the PBX with the same status, except 401/407 (403), 3xx (480) and a
    timeout (408). Source carrier.
    """
    return _final(status, Side.CARRIER, _CARRIER_FINAL)


def for_customer_final(status: FinalStatus) -> CallEnd:
    """Inbound call: the customer PBX's final failure (or its silence) before answer.

    The edge answers the carrier with the same status, except 401/407 (403), 3xx (480)
    and a timeout (408). Source customer.
    """
    return _final(status, Side.CUSTOMER, _CUSTOMER_FINAL)


# ---------------------------------------------------------------------------------------
# Ends before answer that are not a final response.


def customer_cancelled() -> CallEnd:
    """Outbound call: the PBX sent CANCEL; the edge answers its INVITE 487."""
    return _end(4550, _C, 487)


def carrier_cancelled() -> CallEnd:
    """Inbound call: the carrier sent CANCEL; the edge answers its INVITE 487."""
    return _end(4420, _K, 487)


def no_more_destinations() -> CallEnd:
    """Outbound call: every carrier for the prefix was tried and each failed over."""
    return _end(5000, _Z, 503)


# ---------------------------------------------------------------------------------------
# Ends after answer. The call is torn down with BYE, so there is no SIP status.


def bye_from(side: Side) -> CallEnd:
    """A normal hangup: 3000 when the carrier side sent BYE, 3010 when the PBX did."""
    return _end(3000 if side is Side.CARRIER else 3010, side.source, None)


def midcall_failure(side: Side, status: FinalStatus) -> CallEnd:
    """A mid-call request (re-INVITE, UPDATE, session refresh) that `side` failed in a
    way that ends the call: a timeout or 408/504 is that side's server_timeout (5330 /
    5340); any other 4xx (and 3xx) is 5310 / 5220; 5xx and 6xx are 5320 / 5230."""
    _check_final(status)
    if status in (TIMEOUT, 408, 504):
        code = 5330 if side is Side.CARRIER else 5340
    else:
        assert isinstance(status, int)
        code = _fallback(status, side)
    return _end(code, side.source, None, f"mid-call {status} from the {side.value}")


def reinvite_failed() -> CallEnd:
    """A rejected re-INVITE left the legs unable to agree on media; the edge ends it."""
    return _end(3040, _Z, None)


def rtp_timeout() -> CallEnd:
    """Media flowed, then went silent past the media timeout."""
    return _end(3020, _Z, None)


def no_media() -> CallEnd:
    """The call was answered but no RTP arrived at all within the media start timeout."""
    return _end(5240, _Z, None)


def credit_exhausted() -> CallEnd:
    return _end(3030, _Z, None)


def max_duration_reached() -> CallEnd:
    return _end(6030, _Z, None)


def media_failure() -> CallEnd:
    return _end(5270, _Z, None)


def crash_recovery() -> CallEnd:
    """A call that was up when the edge process died, closed on restart."""
    return _end(5250, _Z, None, "call cut by an edge restart")
