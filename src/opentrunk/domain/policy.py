"""Outbound call screening: the number and policy checks of CALLS.md "Outbound" steps 5
and 6, in that order, on an INVITE whose trunk and caller are already authenticated.

1. destination is a valid E.164 number (`tel:`, `sip:` and visual separators allowed)
   -> else 484, 4120;
2. caller ID (the P-Asserted-Identity user when present, else the From user) is numeric
   -> else 4130; has at least 6 digits -> else 4140; with the account's caller-id policy
   on (the default), is one of the account's numbers -> else 4190;
3. the destination's country is allowed by the account's geo permissions -> else 4560;
4. the destination is not premium-rate (libphonenumber's metadata) and starts with no
   barred prefix -> else 4570.

The result is a `RoutedCall` ready for limits and routing, or the `CallEnd` refusal.

Geo permissions default (`GeoPermissions.default_for`): an account with a country may
call that country only, which keeps a stolen PBX password from running up international
fraud on day one; an account without a country may call everywhere, because there is no
home country to restrict it to. Destinations that belong to no country (+800, +882...)
pass only an account allowed everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from opentrunk.domain.hangup_codes import CallEnd, refusal
from opentrunk.domain.numbers import InvalidNumber, country_of, is_premium_rate, normalize_e164
from opentrunk.domain.prefixes import normalize_prefix

MIN_CALLER_ID_DIGITS: Final = 6
# RFC 3966 visual separators, which a numeric user part may carry.
_VISUAL_SEPARATORS: Final = re.compile(r"[-.()]")


def _iso2(country: str) -> str:
    code = country.strip().upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise ValueError(f"{country!r} is not an ISO 3166 alpha-2 country code")
    return code


@dataclass(frozen=True)
class GeoPermissions:
    """The destination countries an account may call: a set of ISO 3166 alpha-2 codes,
    or every country when `countries` is None."""

    countries: frozenset[str] | None = None

    @classmethod
    def everywhere(cls) -> GeoPermissions:
        return cls(None)

    @classmethod
    def only(cls, countries: Iterable[str]) -> GeoPermissions:
        return cls(frozenset(_iso2(c) for c in countries))

    @classmethod
    def default_for(cls, account_country: str | None) -> GeoPermissions:
        """The account's own country when it has one, else everywhere (see module doc)."""
        return cls.everywhere() if not account_country else cls.only([account_country])

    def allows(self, country: str | None) -> bool:
        if self.countries is None:
            return True
        return country is not None and country.upper() in self.countries


@dataclass(frozen=True)
class AccountPolicy:
    """What the screening needs to know about the calling account."""

    numbers: frozenset[str] = frozenset()  # the account's numbers, E.164 with or without +
    caller_id_policy: bool = True
    geo: GeoPermissions = field(default_factory=GeoPermissions.everywhere)
    barred_prefixes: tuple[str, ...] = ()  # operator's and account's, E.164 prefixes
    bar_premium_rate: bool = True
    # Normal forms computed once, so a call does not rebuild them.
    number_digits: frozenset[str] = field(init=False, repr=False, compare=False)
    barred_digits: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validated here so that a bad prefix is a configuration error, not a refusal.
        barred = tuple(normalize_prefix(prefix) for prefix in self.barred_prefixes)
        if "" in barred:
            raise ValueError("an empty barred prefix would bar every number")
        object.__setattr__(self, "barred_digits", barred)
        object.__setattr__(self, "number_digits", frozenset(_digits_of(n) for n in self.numbers))


@dataclass(frozen=True)
class RoutedCall:
    """An outbound call that passed screening, in normal form."""

    destination_e164: str  # "+digits"
    caller_id: str  # "+digits" when a valid E.164 number, else the digits as sent
    to_country: str | None
    from_country: str | None


def caller_id_user(from_user: str | None, pai_user: str | None) -> str:
    """The user part that carries the caller ID: P-Asserted-Identity wins over From, as it
    is the identity the PBX asserts for the network (From may say "anonymous")."""
    return (pai_user if pai_user else from_user) or ""


def _caller_digits(user: str) -> str | None:
    digits = _VISUAL_SEPARATORS.sub("", user.strip()).removeprefix("+")
    return digits if digits.isascii() and digits.isdigit() else None


def _digits_of(number: str) -> str:
    return number.strip().removeprefix("+")


# libphonenumber costs ~75-140 us per parse on this kind of machine and a call needs
# three or four; destinations and (even more) caller IDs repeat, so the facts about a
# number are cached. They depend only on the number and the library's metadata.
_NUMBER_CACHE: Final = 65_536


@dataclass(frozen=True)
class _Destination:
    e164: str | None  # None: not a valid E.164 number
    country: str | None
    premium: bool


@lru_cache(maxsize=_NUMBER_CACHE)
def _destination(text: str) -> _Destination:
    try:
        e164 = normalize_e164(text)
    except InvalidNumber:
        return _Destination(None, None, False)
    return _Destination(e164, country_of(e164), is_premium_rate(e164))


@lru_cache(maxsize=_NUMBER_CACHE)
def _caller(digits: str) -> tuple[str, str | None]:
    """The caller ID to record ("+digits" when valid E.164, else the digits) and its
    country."""
    try:
        e164 = normalize_e164(digits)
    except InvalidNumber:
        return digits, None
    return e164, country_of(e164)


def screen_outbound(
    destination: str,
    from_user: str | None,
    pai_user: str | None,
    account: AccountPolicy,
) -> RoutedCall | CallEnd:
    """Run the checks in the order of the module docstring; first failure wins."""
    target = _destination(destination)
    if target.e164 is None:
        return refusal(4120, "destination is not a valid E.164 number")

    digits = _caller_digits(caller_id_user(from_user, pai_user))
    if digits is None:
        return refusal(4130)
    if len(digits) < MIN_CALLER_ID_DIGITS:
        return refusal(4140)
    if account.caller_id_policy and digits not in account.number_digits:
        return refusal(4190)

    if not account.geo.allows(target.country):
        return refusal(4560, f"destination country {target.country or 'none'} is not allowed")
    if account.bar_premium_rate and target.premium:
        return refusal(4570, "premium-rate destination")
    if target.e164[1:].startswith(account.barred_digits):
        return refusal(4570, "destination prefix is barred")

    caller_id, from_country = _caller(digits)
    return RoutedCall(target.e164, caller_id, target.country, from_country)
