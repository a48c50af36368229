"""Carrier selection and failover for outbound calls, and the primary/fallback rule for
inbound ones (CALLS.md "Outbound" step 8 and "Inbound" step 3).

Selection (`plan_route`): among the enabled routes, only those with the LONGEST prefix
that matches the destination are candidates (an operator who wants failover from a
specific prefix to a generic carrier lists that carrier on the specific prefix too, with
a larger priority number). Candidates are ordered by priority, lower first; within one
priority by weight, as a weighted random order (each next carrier is drawn with
probability weight / sum of the weights still undrawn, as DNS SRV does, RFC 2782);
weight 0 carriers come after all weighted ones of their priority, in listed order.
No candidate: 4090.

Inbound (`should_try_fallback`): the fallback URI is tried after a timeout, 408, any 5xx
and any 6xx except 600 and 603, exactly the list of CALLS.md; 3xx and 4xx end the call.

Failover (`should_failover`): try the next carrier on a timeout (no final answer; a
transport error counts as 503), 408, any 5xx, any 3xx (a B2BUA does not follow a
carrier's redirect), and any 6xx except 600, 603 and 604. Never on 404, 486, 600, 603,
604, which are answers about the callee, nor on any other 4xx: those are answers about
this request (bad caller ID, SDP, credentials) that the next carrier would most likely
give as well, and retrying them multiplies post-dial delay.

The call's end when attempts stop (`attempts_outcome`): the last carrier's answer when
it was one that does not fail over; when every carrier failed over, 5000
(no_more_destinations) if more than one carrier was tried, else that one carrier's own
answer (its 503 is 5350, its silence 4160), which says more than "no more destinations".
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from opentrunk.domain.hangup_codes import (
    TIMEOUT,
    CallEnd,
    FinalStatus,
    for_carrier_final,
    no_more_destinations,
    refusal,
)
from opentrunk.domain.prefixes import PrefixTable, normalize_prefix

# Answers about the callee itself: no other carrier would reach a different callee.
_CALLEE_FINAL: Final = frozenset({404, 486, 600, 603, 604})
# For inbound calls, CALLS.md lists the callee's own answers as 486, 600 and 603 only.
_INBOUND_CALLEE_FINAL: Final = frozenset({486, 600, 603})


@dataclass(frozen=True)
class CarrierRoute:
    """One carrier's entry for one prefix ("" is the default route)."""

    carrier_id: str
    prefix: str = ""
    priority: int = 10
    weight: int = 1
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        if self.priority < 0:
            raise ValueError("priority must be 0 or more")
        if self.weight < 0:
            raise ValueError("weight must be 0 or more")


def _weighted_order(group: Sequence[CarrierRoute], rng: random.Random) -> list[CarrierRoute]:
    weighted = [route for route in group if route.weight > 0]
    ordered: list[CarrierRoute] = []
    while weighted:
        total = sum(route.weight for route in weighted)
        point = rng.random() * total
        # Walk the cumulative weights; float rounding can leave `point` at the very end,
        # in which case the last one is the one drawn.
        index = len(weighted) - 1
        for position, route in enumerate(weighted):
            point -= route.weight
            if point < 0:
                index = position
                break
        ordered.append(weighted.pop(index))
    ordered.extend(route for route in group if route.weight == 0)
    return ordered


class RoutingTable:
    """The operator's carrier routes, indexed by prefix once."""

    def __init__(self, routes: Iterable[CarrierRoute]) -> None:
        by_prefix: dict[str, list[CarrierRoute]] = {}
        for route in routes:
            if route.enabled:
                by_prefix.setdefault(route.prefix, []).append(route)
        self._table = PrefixTable(by_prefix)

    def plan_route(
        self, destination_e164: str, rng: random.Random | None = None
    ) -> list[CarrierRoute] | CallEnd:
        """The carriers to try, in order, or the 4090 refusal when no prefix matches."""
        match = self._table.longest_match(destination_e164)
        if match is None:
            return refusal(4090, "no carrier route for the destination")
        rng = rng or _SYSTEM_RANDOM
        ordered: list[CarrierRoute] = []
        candidates = match[1]
        for priority in sorted({route.priority for route in candidates}):
            group = [route for route in candidates if route.priority == priority]
            ordered.extend(_weighted_order(group, rng))
        return ordered


_SYSTEM_RANDOM: Final = random.SystemRandom()


def plan_route(
    destination_e164: str, routes: Iterable[CarrierRoute], rng: random.Random | None = None
) -> list[CarrierRoute] | CallEnd:
    """One-off form of `RoutingTable(routes).plan_route(...)`."""
    return RoutingTable(routes).plan_route(destination_e164, rng)


def _check(status: FinalStatus) -> None:
    if status != TIMEOUT and not (isinstance(status, int) and 300 <= status <= 699):
        raise ValueError(f"{status!r} is not a final failure status")


def should_failover(status: FinalStatus) -> bool:
    """Outbound: does this carrier answer (or its silence) mean "try the next carrier"?"""
    _check(status)
    if status == TIMEOUT:
        return True
    assert isinstance(status, int)
    if status in _CALLEE_FINAL:
        return False
    return status == 408 or status < 400 or status >= 500


def should_try_fallback(status: FinalStatus) -> bool:
    """Inbound: does the PBX's answer on the primary URI mean "try the fallback URI"?"""
    _check(status)
    if status == TIMEOUT:
        return True
    assert isinstance(status, int)
    if status in _INBOUND_CALLEE_FINAL:
        return False
    return status == 408 or status >= 500


def attempts_outcome(results: Sequence[FinalStatus]) -> CallEnd:
    """How an outbound call ended, given each tried carrier's final failure in order."""
    if not results:
        raise ValueError("no carrier was tried")
    if not all(should_failover(status) for status in results[:-1]):
        raise ValueError("attempts continued after an answer that does not fail over")
    last = results[-1]
    if should_failover(last) and len(results) > 1:
        return no_more_destinations()
    return for_carrier_final(last)
