"""Phone numbers: the E.164 normal form used everywhere (API, store, edge) and each
number's country, both from libphonenumber's metadata."""

from __future__ import annotations

import re

import phonenumbers

# Visual separators RFC 3966 allows inside a telephone-subscriber, plus the ones people type.
_VISUAL = re.compile(r"[\s\-.()/]")


class InvalidNumber(ValueError):
    """The text is not a valid E.164 number."""


def normalize_e164(text: str) -> str:
    """Return the number as `+` and digits, or raise InvalidNumber.

    Accepts an optional leading `+`, visual separators, and the `tel:` / `sip:` forms
    (`tel:+1-415-555-0123`, `sip:+14155550123@host;user=phone`).
    """
    raw = text.strip()
    lowered = raw.lower()
    if lowered.startswith("tel:"):
        raw = raw[4:].split(";", 1)[0]
    elif lowered.startswith(("sip:", "sips:")):
        raw = raw.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
    digits = _VISUAL.sub("", raw)
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise InvalidNumber(f"{text!r} is not an E.164 number")
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{text!r} is not an E.164 number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"{text!r} is not a valid number for any country")
    return "+" + digits


def is_e164(text: str) -> bool:
    try:
        normalize_e164(text)
    except InvalidNumber:
        return False
    return True


def country_of(number: str) -> str | None:
    """ISO 3166 alpha-2 country of an E.164 number, or None when unknown."""
    try:
        parsed = phonenumbers.parse("+" + number.lstrip("+"), None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return None if region in (None, "ZZ", "001") else region


def number_type(number: str) -> str:
    """A coarse type as the Number API shows it: local, mobile, tollfree, premium, other."""
    try:
        parsed = phonenumbers.parse("+" + number.lstrip("+"), None)
    except phonenumbers.NumberParseException:
        return "other"
    kind = phonenumbers.number_type(parsed)
    names = {
        phonenumbers.PhoneNumberType.FIXED_LINE: "local",
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: "local",
        phonenumbers.PhoneNumberType.MOBILE: "mobile",
        phonenumbers.PhoneNumberType.TOLL_FREE: "tollfree",
        phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium",
    }
    return names.get(kind, "other")


def is_premium_rate(number: str) -> bool:
    return number_type(number) == "premium"
