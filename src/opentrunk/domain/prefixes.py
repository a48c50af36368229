"""Longest-prefix matching of E.164 numbers, shared by carrier routing and rating.

Prefixes are written as E.164 digits with or without the `+` (`+44`, `447`); the empty
prefix matches every number and acts as the default entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")


class InvalidPrefix(ValueError):
    """A prefix that is not (part of) an E.164 number."""


def normalize_prefix(prefix: str) -> str:
    """The prefix as bare digits; raises InvalidPrefix for anything else."""
    digits = prefix.strip().removeprefix("+")
    if len(digits) > 15 or (digits and not (digits.isascii() and digits.isdigit())):
        raise InvalidPrefix(f"{prefix!r} is not an E.164 prefix")
    return digits


class PrefixTable(Generic[V]):
    """A map from prefixes to values, looked up by the longest prefix of a number.

    Lookup costs at most 16 dictionary probes (E.164 has at most 15 digits), whatever the
    size of the table, so a rate deck of 100k prefixes is as fast as one of ten.
    """

    def __init__(self, entries: Mapping[str, V] | Iterable[tuple[str, V]] = ()) -> None:
        self._entries: dict[str, V] = {}
        items = entries.items() if isinstance(entries, Mapping) else entries
        for prefix, value in items:
            key = normalize_prefix(prefix)
            if key in self._entries:
                raise InvalidPrefix(f"prefix {prefix!r} is listed twice")
            self._entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)

    def longest_match(self, number: str) -> tuple[str, V] | None:
        """The longest prefix of `number` in the table and its value, or None."""
        digits = number.strip().removeprefix("+")
        for end in range(min(len(digits), 15), -1, -1):
            key = digits[:end]
            if key in self._entries:
                return key, self._entries[key]
        return None
