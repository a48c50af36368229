"""Option tags (RFC 3261 8.2.2.3): the Require check and the Supported header a leg
passes on (`sip.extensions`)."""

from __future__ import annotations

from opentrunk.sip.extensions import option_tags, passed_supported, unsupported_required
from opentrunk.sip.message import Request


def request(method: str, *headers: tuple[str, str]) -> Request:
    return Request(
        method,
        "sip:+14155550100@example.com",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ext"),
            ("From", "<sip:a@example.com>;tag=1"),
            ("To", "<sip:b@example.com>"),
            ("Call-ID", "ext"),
            ("CSeq", f"1 {method}"),
            *headers,
        ],
    )


def test_option_tags_across_repeated_headers() -> None:
    assert option_tags(["100rel, timer", " replaces ,,", ""]) == ["100rel", "timer", "replaces"]
    assert option_tags([]) == []


def test_unknown_required_tags_are_listed_in_order() -> None:
    invite = request("INVITE", ("Require", "100rel, Timer"), ("Require", "precondition"))
    assert unsupported_required(invite) == ["100rel", "precondition"]
    assert unsupported_required(request("INVITE", ("Require", "timer"))) == []
    assert unsupported_required(request("INVITE")) == []
    # Proxy-Require is for proxies; the edge answers as a user agent.
    assert unsupported_required(request("OPTIONS", ("Proxy-Require", "foo"))) == []


def test_ack_and_cancel_are_never_refused_for_require() -> None:
    for method in ("ACK", "CANCEL"):
        assert unsupported_required(request(method, ("Require", "100rel"))) == []
    assert unsupported_required(request("BYE", ("Require", "100rel"))) == ["100rel"]


def test_only_end_to_end_extensions_cross_the_legs() -> None:
    carrier = request("INVITE", ("Supported", "100rel, timer"), ("Supported", "replaces, path"))
    assert passed_supported(carrier) == "timer"
    assert passed_supported(request("INVITE", ("Supported", "100rel"))) is None
    assert passed_supported(request("INVITE")) is None
