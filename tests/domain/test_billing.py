"""Billing maths: durations, rounding to the billing increment, rates and amounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opentrunk.domain.billing import (
    BillingPlan,
    RateDeck,
    call_duration,
    charge_call,
    format_amount,
    parse_rate,
    total_amount,
)
from opentrunk.domain.prefixes import InvalidPrefix

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "seconds"),
    [
        (timedelta(0), 0),
        (timedelta(microseconds=1), 1),
        (timedelta(seconds=59, milliseconds=200), 60),
        (timedelta(seconds=60), 60),
        (timedelta(seconds=60, microseconds=1), 61),
        (timedelta(hours=2, seconds=3), 7203),
    ],
)
def test_call_duration_counts_every_started_second(elapsed: timedelta, seconds: int) -> None:
    assert call_duration(T0, T0 + elapsed) == seconds


def test_unanswered_call_lasts_zero_seconds() -> None:
    assert call_duration(None, T0) == 0


def test_call_duration_refuses_impossible_times() -> None:
    with pytest.raises(ValueError):
        call_duration(T0, T0 - timedelta(seconds=1))
    with pytest.raises(ValueError):
        call_duration(T0, T0.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("plan", "duration", "billed"),
    [
        (BillingPlan(), 0, 0),
        (BillingPlan(), 1, 60),
        (BillingPlan(), 60, 60),
        (BillingPlan(), 61, 120),
        (BillingPlan(increment=1), 61, 61),
        (BillingPlan(increment=6, initial=30), 1, 30),
        (BillingPlan(increment=6, initial=30), 30, 30),
        (BillingPlan(increment=6, initial=30), 31, 36),
        (BillingPlan(increment=6, initial=30), 37, 42),
        (BillingPlan(increment=60, initial=1), 1, 1),
        (BillingPlan(increment=60, initial=1), 2, 61),
    ],
)
def test_bill_duration_rounds_up_to_increments(
    plan: BillingPlan, duration: int, billed: int
) -> None:
    assert plan.bill_duration(duration) == billed


def test_plan_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        BillingPlan(increment=0)
    with pytest.raises(ValueError):
        BillingPlan(initial=0)
    with pytest.raises(ValueError):
        BillingPlan().bill_duration(-1)


plans = st.builds(
    BillingPlan,
    increment=st.integers(1, 600),
    initial=st.none() | st.integers(1, 600),
)


@given(plans, st.integers(1, 10**6))
def test_bill_duration_properties(plan: BillingPlan, duration: int) -> None:
    billed = plan.bill_duration(duration)
    first = plan.initial or plan.increment
    # Never bills less than the call, and never a whole increment more than needed.
    assert billed >= duration
    assert billed >= first
    if duration > first:
        assert (billed - first) % plan.increment == 0
        assert billed - duration < plan.increment
    else:
        assert billed == first


@given(plans, st.integers(0, 10**5))
def test_bill_duration_is_monotonic(plan: BillingPlan, duration: int) -> None:
    assert plan.bill_duration(duration) <= plan.bill_duration(duration + 1)


@pytest.mark.parametrize(
    ("rate", "billed", "amount"),
    [
        ("0.0050", 60, "0.00500"),
        ("0.0050", 120, "0.01000"),
        ("0.0085", 36, "0.00510"),
        # 0.00001 x 30 / 60 = 0.000005: exactly half a unit of the 5th place rounds up.
        ("0.00001", 30, "0.00001"),
        ("0.00001", 29, "0.00000"),
        ("0.012345", 60, "0.01235"),  # ROUND_HALF_UP, where banker's rounding gives 0.01234
        ("1", 0, "0.00000"),
    ],
)
def test_total_amount(rate: str, billed: int, amount: str) -> None:
    assert format_amount(total_amount(Decimal(rate), billed)) == amount


@given(
    st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**5),
)
def test_total_amount_is_the_exact_product_rounded_half_up(rate: Decimal, billed: int) -> None:
    amount = total_amount(rate, billed)
    # Independent half-up rounding of the exact product, in integer units of 0.00001:
    # rate has 6 places, so rate * billed * 10^6 is an integer and the product is exact.
    numerator = int(rate * 10**6) * billed  # exact amount = numerator / (60 * 10^6)
    units_times_2 = 2 * numerator * 10**5 // (60 * 10**6)  # floor(2 * exact / 0.00001)
    expected_units = (units_times_2 + 1) // 2  # floor(exact / 0.00001 + 1/2)
    assert amount.as_tuple().exponent == -5
    assert amount == Decimal(expected_units).scaleb(-5)


def test_amounts_are_five_decimal_strings() -> None:
    assert format_amount(Decimal("3")) == "3.00000"
    assert format_amount(Decimal("0.123456")) == "0.12346"


@pytest.mark.parametrize("bad", ["-0.1", "abc", "NaN", "Infinity"])
def test_parse_rate_refuses_bad_rates(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_parse_rate_refuses_floats() -> None:
    with pytest.raises(TypeError):
        parse_rate(0.1)  # type: ignore[arg-type]


def test_rate_deck_longest_prefix_wins() -> None:
    deck = RateDeck({"": "0.05", "+1": "0.01", "1415": "0.008", "+44": "0.02", "447": "0.09"})
    assert deck.rate_for("+14155550123") == Decimal("0.008")
    assert deck.rate_for("+12125550123") == Decimal("0.01")
    assert deck.rate_for("+447700900123") == Decimal("0.09")
    assert deck.rate_for("+442079460000") == Decimal("0.02")
    assert deck.rate_for("+33123456789") == Decimal("0.05")


def test_rate_deck_without_default_has_no_rate_for_others() -> None:
    deck = RateDeck([("1", "0.01")])
    assert deck.rate_for("+33123456789") is None


def test_rate_deck_refuses_bad_prefixes() -> None:
    with pytest.raises(InvalidPrefix):
        RateDeck({"1a": "0.01"})
    with pytest.raises(InvalidPrefix):
        RateDeck([("+1", "0.01"), ("1", "0.02")])  # same prefix twice


def test_charge_call_fills_the_record_fields() -> None:
    charge = charge_call(T0, T0 + timedelta(seconds=61, milliseconds=5), Decimal("0.0085"))
    assert charge.call_duration == 62
    assert charge.bill_duration == 120
    assert charge.total_rate == "0.00850"
    assert charge.total_amount == "0.01700"


def test_charge_unanswered_call_is_free() -> None:
    charge = charge_call(None, T0, Decimal("0.5"), BillingPlan(increment=6, initial=30))
    assert (charge.call_duration, charge.bill_duration, charge.total_amount) == (0, 0, "0.00000")
