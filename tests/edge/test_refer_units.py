"""Unit tests of the transfer and on-net rules: which Refer-To a REFER may name
(`refer.refer_target`) and how an on-net call's end reads on its inbound record
(`onnet.mirrored`). The live flows are in tests/e2e/test_refer_calls.py and
test_inbound_onnet.py."""

from __future__ import annotations

import pytest

from opentrunk.domain.hangup_codes import Side, bye_from, refusal
from opentrunk.edge.onnet import mirrored
from opentrunk.edge.refer import refer_target

DOMAIN = "abc123.zt.test"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([f"<sip:+14155550100@{DOMAIN}>"], "+14155550100"),
        ([f"sip:+14155550100@{DOMAIN}"], "+14155550100"),
        ([f"<sip:14155550100@{DOMAIN.upper()}:5060>"], "+14155550100"),
        ([f'"Bob" <sip:+442071838750@{DOMAIN}>'], "+442071838750"),
        ([], 400),
        ([""], 400),
        ([f"<sip:+14155550100@{DOMAIN}>", f"<sip:+14155550101@{DOMAIN}>"], 400),
        (["<sip:+14155550100@"], 400),
        ([f"<sip:alice@{DOMAIN}>"], 400),
        ([f"<sip:{DOMAIN}>"], 400),
        (["<sip:+14155550100@example.com>"], 403),
        (["<sip:+14155550100@10.0.0.1>"], 403),
        (["<sip:+14155550100@[2001:db8::1]>"], 403),
        (["<sip:+14155550100@zt.test>"], 403),
        (["<tel:+14155550100>"], 403),
        ([f"<sips:+14155550100@{DOMAIN}>"], 403),
        ([f"<sip:+14155550100@{DOMAIN}?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>"], 403),
    ],
)
def test_refer_target(values: list[str], expected: str | int) -> None:
    assert refer_target(values, DOMAIN) == expected


def test_mirrored_swaps_the_sides_of_a_bye_only() -> None:
    assert mirrored(bye_from(Side.CUSTOMER)) == bye_from(Side.CARRIER)
    assert mirrored(bye_from(Side.CARRIER)) == bye_from(Side.CUSTOMER)
    other = refusal(5190)
    assert mirrored(other) is other
