"""Carrier selection (longest prefix, priority, weight) and failover rules."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opentrunk.domain.hangup_codes import TIMEOUT, CallEnd, FinalStatus
from opentrunk.domain.prefixes import InvalidPrefix
from opentrunk.domain.routing import (
    CarrierRoute,
    RoutingTable,
    attempts_outcome,
    plan_route,
    should_failover,
    should_try_fallback,
)

UK = "+442079460000"


def ids(result: list[CarrierRoute] | CallEnd) -> list[str]:
    assert isinstance(result, list), result
    return [route.carrier_id for route in result]


def test_longest_prefix_wins_and_shorter_prefixes_are_not_candidates() -> None:
    routes = [
        CarrierRoute("default", ""),
        CarrierRoute("uk", "+44"),
        CarrierRoute("london", "4420"),
        CarrierRoute("mobile", "+447"),
    ]
    assert ids(plan_route(UK, routes)) == ["london"]
    assert ids(plan_route("+447400123456", routes)) == ["mobile"]
    assert ids(plan_route("+441134960000", routes)) == ["uk"]
    assert ids(plan_route("+14155550123", routes)) == ["default"]


def test_no_route_is_4090() -> None:
    result = plan_route("+14155550123", [CarrierRoute("uk", "44")])
    assert isinstance(result, CallEnd)
    assert (result.code, result.sip_status, result.source) == (4090, 404, "zentrunk")
    assert isinstance(plan_route(UK, []), CallEnd)


def test_disabled_routes_are_ignored_even_when_longer() -> None:
    routes = [CarrierRoute("uk", "44"), CarrierRoute("london", "4420", enabled=False)]
    assert ids(plan_route(UK, routes)) == ["uk"]


def test_priority_lower_first() -> None:
    routes = [
        CarrierRoute("c", "44", priority=30),
        CarrierRoute("a", "44", priority=10),
        CarrierRoute("b", "44", priority=20),
    ]
    assert ids(plan_route(UK, routes, random.Random(1))) == ["a", "b", "c"]


def test_zero_weight_goes_last_in_its_priority() -> None:
    routes = [
        CarrierRoute("backup", "44", priority=10, weight=0),
        CarrierRoute("main", "44", priority=10, weight=5),
        CarrierRoute("later", "44", priority=20, weight=5),
    ]
    for seed in range(20):
        assert ids(plan_route(UK, routes, random.Random(seed))) == ["main", "backup", "later"]


def test_weights_share_first_place_in_proportion() -> None:
    routes = [
        CarrierRoute("a", "44", weight=1),
        CarrierRoute("b", "44", weight=3),
        CarrierRoute("c", "44", weight=6),
    ]
    table = RoutingTable(routes)
    rng = random.Random(12345)  # seeded: the same draws every run
    firsts = Counter(ids(table.plan_route(UK, rng))[0] for _ in range(20_000))
    # Expected 2,000 / 6,000 / 12,000; the binomial standard deviation is at most ~70.
    assert abs(firsts["a"] - 2_000) < 400
    assert abs(firsts["b"] - 6_000) < 400
    assert abs(firsts["c"] - 12_000) < 400


def test_default_rng_is_used_when_none_given() -> None:
    routes = [CarrierRoute("a", "44", weight=1), CarrierRoute("b", "44", weight=1)]
    seen = {tuple(ids(plan_route(UK, routes))) for _ in range(200)}
    assert seen == {("a", "b"), ("b", "a")}


route_lists = st.lists(
    st.builds(
        CarrierRoute,
        carrier_id=st.text("abcdefgh", min_size=1, max_size=3),
        prefix=st.sampled_from(["", "4", "44", "442", "4420", "1"]),
        priority=st.integers(0, 3),
        weight=st.integers(0, 5),
    ),
    max_size=12,
)


@given(route_lists, st.integers(0, 2**32))
def test_plan_is_an_ordered_permutation_of_the_longest_prefix_routes(
    routes: list[CarrierRoute], seed: int
) -> None:
    result = plan_route(UK, routes, random.Random(seed))
    matching = [r for r in routes if UK[1:].startswith(r.prefix)]
    if not matching:
        assert isinstance(result, CallEnd) and result.code == 4090
        return
    assert isinstance(result, list)
    longest = max(len(r.prefix) for r in matching)
    candidates = [r for r in matching if len(r.prefix) == longest]
    assert Counter(map(id, result)) == Counter(map(id, candidates))
    priorities = [r.priority for r in result]
    assert priorities == sorted(priorities)
    for priority in set(priorities):
        weights = [r.weight for r in result if r.priority == priority]
        zeros = weights.count(0)
        assert weights[len(weights) - zeros :] == [0] * zeros  # zero weights last


def test_route_validation() -> None:
    with pytest.raises(InvalidPrefix):
        CarrierRoute("x", "+4a")
    with pytest.raises(ValueError):
        CarrierRoute("x", "44", weight=-1)
    with pytest.raises(ValueError):
        CarrierRoute("x", "44", priority=-1)
    assert CarrierRoute("x", "+44").prefix == "44"


@pytest.mark.parametrize(
    ("status", "failover"),
    [
        (TIMEOUT, True),
        (408, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
        (606, True),
        (699, True),
        (302, True),
        (600, False),
        (603, False),
        (604, False),
        (404, False),
        (486, False),
        (403, False),
        (480, False),
        (484, False),
        (487, False),
        (488, False),
    ],
)
def test_should_failover(status: FinalStatus, failover: bool) -> None:
    assert should_failover(status) is failover


def test_should_failover_exhaustively_matches_the_rule() -> None:
    for status in range(300, 700):
        expected = status not in (404, 486, 600, 603, 604) and (
            status == 408 or status < 400 or status >= 500
        )
        assert should_failover(status) is expected, status


@pytest.mark.parametrize(
    ("status", "fallback"),
    [
        (TIMEOUT, True),
        (408, True),
        (500, True),
        (503, True),
        (604, True),
        (606, True),
        (486, False),
        (600, False),
        (603, False),
        (404, False),
        (480, False),
        (302, False),
    ],
)
def test_should_try_fallback(status: FinalStatus, fallback: bool) -> None:
    assert should_try_fallback(status) is fallback


@pytest.mark.parametrize("bad", [100, 200, 700, "later"])
def test_failover_rules_refuse_non_failures(bad: object) -> None:
    with pytest.raises(ValueError):
        should_failover(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        should_try_fallback(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("results", "code", "status"),
    [
        ([503, TIMEOUT], 5000, 503),
        ([408, 500, 606], 5000, 503),
        ([503], 5350, 503),
        ([TIMEOUT], 4160, 408),
        ([486], 4410, 486),
        ([503, 486], 4410, 486),
        ([TIMEOUT, 404], 4090, 404),
        ([500, 603], 6040, 603),
        ([408, 488], 4630, 488),
    ],
)
def test_attempts_outcome(results: list[FinalStatus], code: int, status: int) -> None:
    end = attempts_outcome(results)
    assert (end.code, end.sip_status) == (code, status)


def test_attempts_outcome_refuses_impossible_histories() -> None:
    with pytest.raises(ValueError):
        attempts_outcome([])
    with pytest.raises(ValueError):
        attempts_outcome([486, 503])  # 486 ends the call: no second attempt
