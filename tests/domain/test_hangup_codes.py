"""The hangup-cause table and the functions that map a call's end to one of its rows."""

from __future__ import annotations

import re

import pytest

from opentrunk.domain import hangup_codes as hc
from opentrunk.domain.hangup_codes import TIMEOUT, CallEnd, HangupSource, Side

# The table as CALLS.md prints it, transcribed independently of the module: code -> name.
SPEC_TABLE = {
    3000: "normal_hangup", 3010: "normal_hangup", 3020: "rtp_timeout",
    3030: "insufficient_plivo_credits", 3040: "abnormal_hangup_due_to_reinvite",
    4000: "bad_request", 4010: "unauthorized_by_carrier", 4020: "unauthorized",
    4030: "insufficient_plivo_credits", 4040: "forbidden", 4050: "blacklisted_for_verification",
    4060: "forbidden", 4070: "trunk_not_found", 4080: "route_not_found",
    4090: "destination_not_found", 4100: "prefix_not_supported",
    4110: "secure_trunking_disabled", 4120: "destination_invalid",
    4130: "incorrect_callerid_non_numeric", 4140: "incorrect_callerid_too_short",
    4190: "unknown_caller_id", 4200: "dno_caller_id", 4150: "proxy_authentication_required",
    4160: "request_timeout_carrier", 4170: "request_timeout_customer",
    4220: "unsupported_media_type", 4230: "unsupported_uri_scheme",
    4270: "session_interval_too_small", 4310: "uri_not_found", 4320: "uri_invalid",
    4330: "temporary_unavailable", 4340: "temporary_unavailable", 4350: "temporary_unavailable",
    4360: "call_does_not_exist", 4370: "loop_detected", 4380: "too_many_hops",
    4410: "user_busy", 4420: "carrier_cancelled", 4430: "sdp_not_acceptable_here",
    4440: "request_terminated", 4500: "request_pending", 4520: "security_agreement_required",
    4540: "forbidden", 4550: "user_cancelled", 4560: "barred_country", 4570: "barred_number",
    4580: "invalid_sip_packet", 4590: "domestic_anchored_terms_not_met",
    4610: "ruri_not_acceptable_here", 4620: "codec_not_acceptable_here",
    4630: "sdp_not_acceptable_here_by_carrier", 4640: "sdp_not_acceptable_here_by_user",
    5000: "service_unavailable_no_more_destinations", 5010: "port_limit_reached",
    5020: "not_implemented", 5030: "not_implemented_at_carrier", 5040: "not_implemented_at_user",
    5180: "cps_limit_reached", 5190: "concurrent_call_limit_exceeded", 5200: "server_timeout",
    5220: "service_interrupted_by_customer", 5230: "service_interrupted_by_customer",
    5240: "service_interrupted_by_nomedia", 5250: "internal_error",
    5260: "internal_error_routing", 5270: "internal_error_media_service",
    5290: "internal_error_trunk", 5300: "bad_gateway",
    5310: "service_interrupted_by_carrier_4xx", 5320: "service_interrupted_by_carrier_5xx_6xx",
    5330: "server_timeout", 5340: "server_timeout", 5350: "service_unavailable_by_carrier",
    5360: "service_unavailable_by_user", 6000: "busy_everywhere",
    6020: "does_not_exist_anywhere", 6030: "alloted_timeout", 6040: "declined_from_carrier",
    6070: "not_acceptable",
}  # fmt: skip

FINALS = [*range(300, 700), TIMEOUT]
SIDES = [Side.CUSTOMER, Side.CARRIER]


def all_producible() -> list[CallEnd]:
    """Every CallEnd any mapping function can return, over all of its inputs."""
    ends: list[CallEnd] = []
    ends += [hc.for_carrier_final(s) for s in FINALS]
    ends += [hc.for_customer_final(s) for s in FINALS]
    ends += [hc.midcall_failure(side, s) for side in SIDES for s in FINALS]
    ends += [hc.refusal(code) for code in hc.REFUSAL_STATUS]
    ends += [hc.bye_from(side) for side in SIDES]
    ends += [
        hc.customer_cancelled(),
        hc.carrier_cancelled(),
        hc.no_more_destinations(),
        hc.reinvite_failed(),
        hc.rtp_timeout(),
        hc.no_media(),
        hc.credit_exhausted(),
        hc.max_duration_reached(),
        hc.media_failure(),
        hc.crash_recovery(),
    ]
    return ends


def test_table_is_exactly_the_spec_table() -> None:
    assert {row.code: row.name for row in hc.TABLE} == SPEC_TABLE
    assert len(hc.TABLE) == len(SPEC_TABLE)  # one row per code, no duplicates


@pytest.mark.parametrize("row", hc.TABLE, ids=lambda row: str(row.code))
def test_every_row_is_well_formed(row: hc.HangupCause) -> None:
    assert 1000 <= row.code <= 9999
    assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", row.name)
    assert row.description and len(row.description) <= 80
    assert row.source is None or isinstance(row.source, HangupSource)
    assert hc.cause(row.code) is row
    end = CallEnd(row.code, row.name, HangupSource.ZENTRUNK, None, "")
    assert end.code_text == str(row.code)


def test_lookup_rejects_a_code_not_in_the_table() -> None:
    with pytest.raises(KeyError):
        hc.cause(4999)


def test_every_row_can_be_produced_by_the_edge() -> None:
    produced = {end.code for end in all_producible()}
    assert produced == set(SPEC_TABLE), sorted(set(SPEC_TABLE) - produced)


def test_every_produced_end_is_consistent_with_its_row() -> None:
    for end in all_producible():
        row = hc.cause(end.code)
        assert end.name == row.name
        assert row.source is None or row.source == end.source, end
        assert end.sip_status is None or 400 <= end.sip_status <= 699, end
        assert end.reason


def test_call_end_refuses_a_row_that_does_not_exist() -> None:
    with pytest.raises(ValueError):
        CallEnd(4410, "busy", HangupSource.CARRIER, 486, "")
    with pytest.raises(ValueError):
        CallEnd(4999, "user_busy", HangupSource.CARRIER, 486, "")
    with pytest.raises(ValueError):
        CallEnd(4410, "user_busy", HangupSource.CARRIER, 200, "")


@pytest.mark.parametrize(
    ("status", "code", "answer"),
    [
        (400, 4000, 400),
        (401, 4010, 403),
        (407, 4010, 403),
        (403, 4040, 403),
        (404, 4090, 404),
        (408, 4160, 408),
        (TIMEOUT, 4160, 408),
        (480, 4340, 480),
        (484, 4120, 484),
        (486, 4410, 486),
        (487, 4440, 487),
        (488, 4630, 488),
        (501, 5030, 501),
        (502, 5300, 502),
        (503, 5350, 503),
        (504, 5330, 504),
        (600, 6000, 600),
        (603, 6040, 603),
        (604, 6020, 604),
        (606, 6070, 606),
        (302, 5310, 480),
        (420, 5310, 420),
        (500, 5320, 500),
        (580, 5320, 580),
        (699, 5320, 699),
    ],
)
def test_carrier_final_before_answer(status: hc.FinalStatus, code: int, answer: int) -> None:
    end = hc.for_carrier_final(status)
    assert (end.code, end.source, end.sip_status) == (code, HangupSource.CARRIER, answer)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (486, 4410),
        (408, 4170),
        (TIMEOUT, 4170),
        (480, 4350),
        (488, 4640),
        (503, 5360),
        (504, 5340),
        (501, 5040),
        (401, 4020),
        (403, 4020),
        (407, 4150),
        (404, 4090),
        (600, 6000),
        (603, 6040),
        (421, 5220),
        (500, 5230),
        (699, 5230),
    ],
)
def test_customer_final_before_answer(status: hc.FinalStatus, code: int) -> None:
    end = hc.for_customer_final(status)
    assert (end.code, end.source) == (code, HangupSource.CUSTOMER)


def test_each_final_status_maps_to_one_row_and_a_failure_status() -> None:
    for status in FINALS:
        for mapping in (hc.for_carrier_final, hc.for_customer_final):
            end = mapping(status)
            assert end.sip_status is not None and 400 <= end.sip_status <= 699
            assert end.sip_status not in (401, 407)  # a challenge is never relayed


@pytest.mark.parametrize("bad", [100, 180, 200, 299, 700, 0, "busy"])
def test_final_mappings_refuse_non_failures(bad: object) -> None:
    with pytest.raises(ValueError):
        hc.for_carrier_final(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hc.for_customer_final(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hc.midcall_failure(Side.CARRIER, bad)  # type: ignore[arg-type]


def test_normal_hangups_say_who_sent_bye() -> None:
    carrier, customer = hc.bye_from(Side.CARRIER), hc.bye_from(Side.CUSTOMER)
    assert (carrier.code, carrier.source, carrier.sip_status) == (3000, "carrier", None)
    assert (customer.code, customer.source, customer.sip_status) == (3010, "customer", None)


def test_cancels_and_media_ends() -> None:
    assert (hc.customer_cancelled().code, hc.customer_cancelled().sip_status) == (4550, 487)
    assert hc.customer_cancelled().source == "customer"
    assert (hc.carrier_cancelled().code, hc.carrier_cancelled().source) == (4420, "carrier")
    assert (hc.rtp_timeout().code, hc.rtp_timeout().source) == (3020, "zentrunk")
    assert hc.no_media().code == 5240
    assert hc.reinvite_failed().code == 3040
    assert hc.crash_recovery().code == 5250
    assert hc.max_duration_reached().code == 6030


@pytest.mark.parametrize(
    ("side", "status", "code"),
    [
        (Side.CUSTOMER, 400, 5220),
        (Side.CUSTOMER, 488, 5220),
        (Side.CUSTOMER, 500, 5230),
        (Side.CUSTOMER, 603, 5230),
        (Side.CUSTOMER, TIMEOUT, 5340),
        (Side.CUSTOMER, 408, 5340),
        (Side.CARRIER, 481, 5310),
        (Side.CARRIER, 503, 5320),
        (Side.CARRIER, 606, 5320),
        (Side.CARRIER, TIMEOUT, 5330),
        (Side.CARRIER, 504, 5330),
    ],
)
def test_midcall_failures(side: Side, status: hc.FinalStatus, code: int) -> None:
    end = hc.midcall_failure(side, status)
    assert (end.code, end.source, end.sip_status) == (code, side.source, None)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (4060, 403),
        (4070, 404),
        (4080, 404),
        (4090, 404),
        (4110, 403),
        (4120, 484),
        (4130, 403),
        (4140, 403),
        (4190, 403),
        (4540, 403),
        (4560, 403),
        (4570, 403),
        (4310, 480),
        (4320, 480),
        (4370, 482),
        (4380, 483),
        (5000, 503),
        (5180, 503),
        (5190, 503),
    ],
)
def test_edge_refusals(code: int, status: int) -> None:
    end = hc.refusal(code)
    assert (end.code, end.source, end.sip_status) == (code, "zentrunk", status)


def test_refusal_status_override_and_unknown_refusal() -> None:
    # CALLS.md: an inbound-only trunk is 403 with code 4070.
    assert hc.refusal(4070, sip_status=403).sip_status == 403
    with pytest.raises(ValueError):
        hc.refusal(3000)  # a normal hangup is not a refusal
    with pytest.raises(ValueError):
        hc.refusal(4410)


def test_refusal_reason_defaults_to_the_description_and_can_be_given() -> None:
    assert hc.refusal(4560).reason == hc.cause(4560).description
    assert hc.refusal(4560, "destination country DE").reason == "destination country DE"
