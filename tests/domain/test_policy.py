"""Outbound screening: destination, caller ID, geo permissions and barred numbers, each
with its hangup code, in the order CALLS.md gives."""

from __future__ import annotations

import pytest

from opentrunk.domain.hangup_codes import CallEnd
from opentrunk.domain.policy import (
    AccountPolicy,
    GeoPermissions,
    RoutedCall,
    caller_id_user,
    screen_outbound,
)
from opentrunk.domain.prefixes import InvalidPrefix

OWN = "+14155550123"
ACCOUNT = AccountPolicy(numbers=frozenset({OWN, "12125550199"}))


def refused(result: RoutedCall | CallEnd) -> tuple[int, int | None]:
    assert isinstance(result, CallEnd), result
    assert result.source == "zentrunk"
    return result.code, result.sip_status


@pytest.mark.parametrize(
    "destination",
    [
        "+442079460000",
        "442079460000",
        "+44 20 7946 0000",
        "tel:+44-20-7946-0000",
        "sip:+442079460000@1234567890123456.zt.localhost;user=phone",
    ],
)
def test_accepts_every_written_form_of_a_destination(destination: str) -> None:
    result = screen_outbound(destination, OWN, None, ACCOUNT)
    assert result == RoutedCall("+442079460000", OWN, "GB", "US")


@pytest.mark.parametrize("destination", ["", "abc", "+1234", "+99912345678", "sip:bob@host"])
def test_invalid_destination_is_484_4120(destination: str) -> None:
    assert refused(screen_outbound(destination, OWN, None, ACCOUNT)) == (4120, 484)


@pytest.mark.parametrize("caller", ["alice", "+1415555O123", "anonymous", "", None, "1415*55501"])
def test_non_numeric_caller_id_is_4130(caller: str | None) -> None:
    assert refused(screen_outbound("+442079460000", caller, None, ACCOUNT)) == (4130, 403)


@pytest.mark.parametrize("caller", ["1", "+12345", "12-34-5"])
def test_short_caller_id_is_4140(caller: str) -> None:
    assert refused(screen_outbound("+442079460000", caller, None, ACCOUNT)) == (4140, 403)


def test_six_digits_is_long_enough_when_policy_is_off() -> None:
    account = AccountPolicy(caller_id_policy=False)
    result = screen_outbound("+442079460000", "123456", None, account)
    assert result == RoutedCall("+442079460000", "123456", "GB", None)


def test_caller_id_not_in_account_numbers_is_4190() -> None:
    assert refused(screen_outbound("+442079460000", "+14155550124", None, ACCOUNT)) == (4190, 403)


def test_caller_id_in_account_numbers_passes_with_or_without_plus() -> None:
    for caller in ("14155550123", "+1(415)555-0123", "+12125550199"):
        result = screen_outbound("+442079460000", caller, None, ACCOUNT)
        assert isinstance(result, RoutedCall), caller
        assert result.caller_id in (OWN, "+12125550199")


def test_caller_id_policy_off_lets_any_numeric_caller_id_through() -> None:
    account = AccountPolicy(numbers=frozenset({OWN}), caller_id_policy=False)
    result = screen_outbound("+442079460000", "+14155550124", None, account)
    assert isinstance(result, RoutedCall)
    assert result.caller_id == "+14155550124"


def test_p_asserted_identity_wins_over_from() -> None:
    assert caller_id_user("anonymous", "+14155550123") == "+14155550123"
    assert caller_id_user("+14155550123", None) == "+14155550123"
    assert caller_id_user(None, None) == ""
    result = screen_outbound("+442079460000", "anonymous", OWN, ACCOUNT)
    assert isinstance(result, RoutedCall) and result.caller_id == OWN
    # A bad PAI is not rescued by a good From: the PAI is what the network would see.
    assert refused(screen_outbound("+442079460000", OWN, "+14155550124", ACCOUNT))[0] == 4190


def test_geo_permissions() -> None:
    assert GeoPermissions.everywhere().allows("GB")
    assert GeoPermissions.everywhere().allows(None)
    only = GeoPermissions.only(["us", "CA"])
    assert only.allows("US") and only.allows("ca")
    assert not only.allows("GB")
    assert not only.allows(None)  # +800 and the like belong to no country
    assert GeoPermissions.default_for("US") == GeoPermissions.only(["US"])
    assert GeoPermissions.default_for(None) == GeoPermissions.everywhere()
    with pytest.raises(ValueError):
        GeoPermissions.only(["USA"])


def test_barred_country_is_4560() -> None:
    account = AccountPolicy(numbers=ACCOUNT.numbers, geo=GeoPermissions.default_for("US"))
    assert refused(screen_outbound("+442079460000", OWN, None, account)) == (4560, 403)
    assert isinstance(screen_outbound("+12125550199", OWN, None, account), RoutedCall)
    assert refused(screen_outbound("+80012345678", OWN, None, account)) == (4560, 403)


@pytest.mark.parametrize("destination", ["+19005550123", "+33890123456", "+448712345678"])
def test_premium_rate_is_4570(destination: str) -> None:
    assert refused(screen_outbound(destination, OWN, None, ACCOUNT)) == (4570, 403)


def test_premium_rate_bar_can_be_lifted() -> None:
    account = AccountPolicy(numbers=ACCOUNT.numbers, bar_premium_rate=False)
    assert isinstance(screen_outbound("+19005550123", OWN, None, account), RoutedCall)


def test_barred_prefixes_are_4570() -> None:
    account = AccountPolicy(numbers=ACCOUNT.numbers, barred_prefixes=("+4420", "336"))
    assert refused(screen_outbound("+442079460000", OWN, None, account)) == (4570, 403)
    assert refused(screen_outbound("+33612345678", OWN, None, account)) == (4570, 403)
    assert isinstance(screen_outbound("+447400123456", OWN, None, account), RoutedCall)


def test_bad_barred_prefixes_are_configuration_errors() -> None:
    with pytest.raises(InvalidPrefix):
        AccountPolicy(barred_prefixes=("+44x",))
    with pytest.raises(ValueError):
        AccountPolicy(barred_prefixes=("+",))


def test_checks_run_in_the_spec_order() -> None:
    # Everything wrong at once: each fix uncovers the next check, in CALLS.md order.
    account = AccountPolicy(
        numbers=frozenset({OWN}),
        geo=GeoPermissions.only(["FR"]),
        barred_prefixes=("339",),
    )
    steps = [
        ("bogus", "alice", 4120),
        ("+19005550123", "alice", 4130),
        ("+19005550123", "12345", 4140),
        ("+19005550123", "+14155550124", 4190),
        ("+19005550123", OWN, 4560),
        ("+33890123456", OWN, 4570),  # premium in an allowed country
        ("+33912345678", OWN, 4570),  # barred prefix
    ]
    for destination, caller, code in steps:
        assert refused(screen_outbound(destination, caller, None, account))[0] == code
    assert isinstance(screen_outbound("+33123456789", OWN, None, account), RoutedCall)
