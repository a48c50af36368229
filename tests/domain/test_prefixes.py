"""Longest-prefix lookup shared by routing and rating."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opentrunk.domain.prefixes import InvalidPrefix, PrefixTable, normalize_prefix


def test_longest_match_and_default() -> None:
    table = PrefixTable({"": "any", "+4": "4", "44": "uk", "4420": "london"})
    assert table.longest_match("+442079460000") == ("4420", "london")
    assert table.longest_match("441134960000") == ("44", "uk")
    assert table.longest_match("+4930123456") == ("4", "4")
    assert table.longest_match("+14155550123") == ("", "any")
    assert len(table) == 4


def test_no_match_without_default() -> None:
    assert PrefixTable({"44": 1}).longest_match("+14155550123") is None
    assert PrefixTable[int]().longest_match("+14155550123") is None


@pytest.mark.parametrize("bad", ["+4 4", "44a", "١٢", "1" * 16, "++44"])
def test_invalid_prefixes(bad: str) -> None:
    with pytest.raises(InvalidPrefix):
        normalize_prefix(bad)


def test_duplicate_prefix_in_two_spellings_is_refused() -> None:
    with pytest.raises(InvalidPrefix):
        PrefixTable([("+44", 1), ("44", 2)])


digits = st.text("0123456789", max_size=15)


@given(st.dictionaries(st.text("0123456789", max_size=6), st.integers()), digits)
def test_matches_a_brute_force_search(entries: dict[str, int], number: str) -> None:
    table = PrefixTable(entries)
    matching = [p for p in entries if number.startswith(p)]
    expected = max(matching, key=len, default=None)
    result = table.longest_match("+" + number)
    if expected is None:
        assert result is None
    else:
        assert result == (expected, entries[expected])
