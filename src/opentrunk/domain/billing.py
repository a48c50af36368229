"""Billing maths for call records: durations, billed durations, rates and amounts.

- `call_duration`: whole seconds from answer to end, every started second counted
  (59.2 s is 60 s); 0 for a call that was never answered.
- `bill_duration`: the call duration rounded up to the billing plan's increments. A plan
  is `initial/increment` seconds (default 60/60; "30/6" bills 30 s for any call up to
  30 s, then per 6 s). A call of 0 s bills 0.
- `total_amount = rate_per_minute x bill_duration / 60`, as a Decimal rounded to 5
  places with ROUND_HALF_UP (the API shows amounts as 5-decimal strings); rates are
  Decimals from the start, never floats.
- Rates per minute come from a rate deck keyed by destination prefix, longest match
  wins (one deck per carrier, or one for the account).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

from opentrunk.domain.prefixes import PrefixTable

AMOUNT_PLACES: Final = Decimal("0.00001")
DEFAULT_INCREMENT: Final = 60


@dataclass(frozen=True)
class BillingPlan:
    """How durations are rounded for billing: first `initial` seconds as one block, then
    blocks of `increment` seconds. `initial` None means the same as `increment`."""

    increment: int = DEFAULT_INCREMENT
    initial: int | None = None

    def __post_init__(self) -> None:
        if self.increment < 1:
            raise ValueError("billing increment must be at least 1 second")
        if self.initial is not None and self.initial < 1:
            raise ValueError("initial billing increment must be at least 1 second")

    def bill_duration(self, call_duration: int) -> int:
        if call_duration < 0:
            raise ValueError("a duration cannot be negative")
        if call_duration == 0:
            return 0
        first = self.increment if self.initial is None else self.initial
        if call_duration <= first:
            return first
        rest = call_duration - first
        return first + -(-rest // self.increment) * self.increment


def call_duration(answer_time: datetime | None, end_time: datetime) -> int:
    """Whole seconds from answer to end, rounded up; 0 when never answered."""
    if answer_time is None:
        return 0
    if (answer_time.tzinfo is None) != (end_time.tzinfo is None):
        raise ValueError("answer and end times must both be aware or both naive")
    seconds = (end_time - answer_time).total_seconds()
    if seconds < 0:
        raise ValueError("a call cannot end before it was answered")
    # total_seconds() is a float built from whole microseconds; round to them first so
    # that 60.000000 s is never read as 60.0000000001 and billed a second more.
    return math.ceil(round(seconds, 6))


def parse_rate(value: str | Decimal | int) -> Decimal:
    """A rate per minute as a non-negative Decimal; floats are refused (binary fractions
    would make 0.1 a slightly different price)."""
    if isinstance(value, float):
        raise TypeError("rates must be given as strings or Decimals, not floats")
    try:
        rate = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a rate") from exc
    if not rate.is_finite() or rate < 0:
        raise ValueError(f"{value!r} is not a rate")
    return rate


def format_amount(value: Decimal) -> str:
    """A money figure as the API shows it: 5 decimal places, ROUND_HALF_UP."""
    return str(value.quantize(AMOUNT_PLACES, rounding=ROUND_HALF_UP))


def total_amount(rate_per_minute: Decimal, bill_duration: int) -> Decimal:
    """Rate per minute times billed minutes, rounded to 5 places (ROUND_HALF_UP)."""
    raw = rate_per_minute * Decimal(bill_duration) / Decimal(60)
    return raw.quantize(AMOUNT_PLACES, rounding=ROUND_HALF_UP)


class RateDeck:
    """Rates per minute by destination prefix; the longest matching prefix wins."""

    def __init__(self, rates: Mapping[str, str | Decimal] | Iterable[tuple[str, str | Decimal]]):
        items = rates.items() if isinstance(rates, Mapping) else rates
        self._table = PrefixTable((prefix, parse_rate(rate)) for prefix, rate in items)

    def rate_for(self, destination: str) -> Decimal | None:
        """The rate per minute for an E.164 destination, or None when no prefix matches."""
        match = self._table.longest_match(destination)
        return None if match is None else match[1]


@dataclass(frozen=True)
class CallCharge:
    """The billing fields of a call record."""

    call_duration: int
    bill_duration: int
    total_rate: str
    total_amount: str


def charge_call(
    answer_time: datetime | None,
    end_time: datetime,
    rate_per_minute: Decimal,
    plan: BillingPlan = BillingPlan(),
) -> CallCharge:
    """All billing fields of one call record at once."""
    duration = call_duration(answer_time, end_time)
    billed = plan.bill_duration(duration)
    return CallCharge(
        call_duration=duration,
        bill_duration=billed,
        total_rate=format_amount(rate_per_minute),
        total_amount=format_amount(total_amount(rate_per_minute, billed)),
    )
