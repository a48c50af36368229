"""The SIP message model: Headers, parsing rules, serialization, make_response, framing."""

from __future__ import annotations

import pytest

from opentrunk.sip.headers import CSeq, Headers, NameAddr, Via, parse_name_addr, parse_via
from opentrunk.sip.message import (
    Request,
    Response,
    SipParseError,
    find_message_end,
    make_response,
    parse_message,
    strip_keepalives,
)
from opentrunk.sip.uri import SipURI

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


def invite(extra: str = "", body: bytes = SDP, cl: str | None = None) -> bytes:
    length = str(len(body)) if cl is None else cl
    head = (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@example.net>;tag=111\r\n'
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: call-1@192.0.2.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        f"{extra}"
        f"Content-Length: {length}\r\n"
        "\r\n"
    )
    return head.encode() + body


# --- Headers ---------------------------------------------------------------------


def test_headers_case_insensitive_and_compact_forms() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("CALL-ID", "x"), ("Via", "SIP/2.0/UDP b"), ("m", "*")])
    assert h.get("via") == "SIP/2.0/UDP a"
    assert h.get_all("VIA") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.get("i") == "x"
    assert h.get("Call-Id") == "x"
    assert "contact" in h and "m" in h
    assert "Route" not in h
    assert h.get("Route") is None
    assert h.get("Route", "dflt") == "dflt"
    assert h.items() == [
        ("v", "SIP/2.0/UDP a"),
        ("CALL-ID", "x"),
        ("Via", "SIP/2.0/UDP b"),
        ("m", "*"),
    ]


def test_get_all_splits_list_headers_respecting_quotes_and_brackets() -> None:
    h = Headers(
        [
            ("Contact", '"Doe, John" <sip:a@x;p=1,2>;q=0.5, <sip:b@y>'),
            ("Allow", "INVITE,ACK , BYE"),
            ("Supported", "timer"),
            ("Subject", "hello, world"),
            ("Authorization", 'Digest username="a", realm="b"'),
        ]
    )
    assert h.get_all("Contact") == ['"Doe, John" <sip:a@x;p=1,2>;q=0.5', "<sip:b@y>"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("k") == ["timer"]
    # Not list headers: kept whole.
    assert h.get_all("Subject") == ["hello, world"]
    assert h.get_all("Authorization") == ['Digest username="a", realm="b"']
    h.add("Allow", "a,,b")
    with pytest.raises(SipParseError):
        h.get_all("Allow")


def test_headers_set_add_remove_keep_order() -> None:
    h = Headers([("To", "a"), ("Via", "v1"), ("From", "f"), ("Via", "v2"), ("CSeq", "1 X")])
    h.set("via", "v3")
    assert h.items() == [("To", "a"), ("Via", "v3"), ("From", "f"), ("CSeq", "1 X")]
    h.add("Via", "v0", first=True)
    h.add("Via", "v9")
    assert h.get_all("Via") == ["v0", "v3", "v9"]
    h.add("Route", "<sip:r>", first=True)
    assert h.items()[0] == ("Route", "<sip:r>")
    h.remove("VIA")
    assert "Via" not in h
    assert h.get_all("via") == []
    h.set("X-Custom", ["1", "2"])
    assert h.get_all("x-custom") == ["1", "2"]
    h.remove("nothing-here")


def test_headers_copy_is_independent_and_equality() -> None:
    h = Headers([("Via", "v1"), ("To", "t")])
    c = h.copy()
    assert c == h
    c.set("To", "other")
    assert h.get("To") == "t"
    assert c != h


def test_pop_first_takes_one_element_of_a_list_field() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c")])
    assert h.pop_first("Via") == "SIP/2.0/UDP a"
    assert h.get_all("Via") == ["SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert h.pop_first("v") == "SIP/2.0/UDP b"
    assert h.pop_first("v") == "SIP/2.0/UDP c"
    assert h.pop_first("v") is None


# --- parsing -----------------------------------------------------------------------


def test_parse_invite_structure() -> None:
    msg = parse_message(invite())
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert isinstance(msg.uri, SipURI) and msg.uri.user == "bob"
    assert msg.version == "SIP/2.0"
    assert msg.call_id == "call-1@192.0.2.1"
    assert msg.cseq == CSeq(1, "INVITE")
    assert msg.from_.tag == "111" and msg.from_.display == "Alice"
    assert msg.to.tag is None
    assert msg.top_via.branch == "z9hG4bKabc"
    assert msg.top_via.wants_rport and msg.top_via.rport is None
    assert msg.top_via.port == 5060
    assert msg.max_forwards == 70
    assert msg.content_type == "application/sdp"
    assert msg.body == SDP
    assert [str(c.uri) for c in msg.contacts] == ["sip:alice@192.0.2.1:5060"]
    assert msg.routes == [] and msg.record_routes == []


def test_leading_crlf_and_lf_only_messages() -> None:
    assert isinstance(parse_message(b"\r\n\r\n" + invite()), Request)
    lf = invite(body=b"").replace(b"\r\n", b"\n")
    msg = parse_message(lf)
    assert isinstance(msg, Request) and msg.call_id == "call-1@192.0.2.1"
    body = b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n"
    lf = invite(body=body).replace(b"\r\n", b"\n")
    msg = parse_message(lf)
    assert msg.body == body and msg.content_type == "application/sdp"


def test_folded_header_values_are_unfolded() -> None:
    msg = parse_message(invite(extra="Subject: first\r\n  second\r\n\tthird\r\n"))
    assert msg.headers.get("Subject") == "first second third"


def test_missing_content_length_means_rest_of_datagram() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_message(data).body == SDP


def test_content_length_rules() -> None:
    assert parse_message(invite(cl="0010")).body == SDP[:10]
    with pytest.raises(SipParseError, match="larger"):
        parse_message(invite(cl="9999"))
    with pytest.raises(SipParseError, match="negative"):
        parse_message(invite(cl="-1"))
    with pytest.raises(SipParseError):
        parse_message(invite(cl="ten"))
    with pytest.raises(SipParseError, match="conflicting"):
        parse_message(invite(extra="l: 3\r\n"))
    # The same value twice is not a conflict.
    assert parse_message(invite(extra=f"l: {len(SDP)}\r\n")).body == SDP


def test_duplicate_single_headers() -> None:
    with pytest.raises(SipParseError, match="conflicting Call-ID"):
        parse_message(invite(extra="i: other\r\n"))
    with pytest.raises(SipParseError, match="conflicting Max-Forwards"):
        parse_message(invite(extra="Max-Forwards: 69\r\n"))
    msg = parse_message(invite(extra="Call-ID: call-1@192.0.2.1\r\n"))
    assert msg.call_id == "call-1@192.0.2.1"


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", 505),
        (b"CSeq: 1 INVITE", b"CSeq: 1 BYE", 400),
        (b"CSeq: 1 INVITE", b"CSeq: 2147483648 INVITE", 400),
        (b"CSeq: 1 INVITE", b"CSeq: x INVITE", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: seventy", 400),
        (b"sip:bob@example.com SIP", b"<sip:bob@example.com> SIP", 400),
        (b"sip:bob@example.com SIP", b"sip:bob@example.com;a b SIP", 400),
        (b"sip:bob@example.com SIP", b"sip:bob@example.com?Subject=x SIP", 400),
        (b"sip:bob@example.com SIP", b"sip:bob@exa_mple.com SIP", 400),
        (b"branch=z9hG4bKabc;rport", b"branch=z9hG4bKabc;;rport", 400),
        (b"To: <sip:bob@example.com>", b'To: "Bob <sip:bob@example.com>', 400),
        (b"To: <sip:bob@example.com>", b"To: Bob, Jr <sip:bob@example.com>", 400),
        (b"Contact: <sip:alice@192.0.2.1:5060>", b"Contact: sip:a@b?x=y", 400),
        (b"Call-ID: call-1@192.0.2.1\r\n", b"", 400),
        (b"INVITE sip", b"INV\x01TE sip", 400),
        (b"Max-Forwards: 70", b"Max Forwards: 70", 400),
        (b"Max-Forwards: 70", b"no colon here", 400),
    ],
)
def test_invalid_requests(old: bytes, new: bytes, status: int) -> None:
    data = invite()
    assert old in data
    with pytest.raises(SipParseError) as info:
        parse_message(data.replace(old, new, 1))
    assert info.value.status == status
    assert info.value.partial is not None


def test_partial_is_none_without_a_usable_via() -> None:
    data = invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    no_via = b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Via"))
    with pytest.raises(SipParseError) as info:
        parse_message(no_via)
    assert info.value.partial is None
    with pytest.raises(SipParseError) as info:
        parse_message(b"garbage")
    assert info.value.partial is None
    with pytest.raises(SipParseError):
        parse_message(b"")


def test_responses() -> None:
    raw = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;received=192.0.2.9;rport=5070\r\n"
        b"From: <sip:alice@example.net>;tag=111\r\n"
        b"To: <sip:bob@example.com>;tag=222\r\n"
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert msg.top_via.received == "192.0.2.9" and msg.top_via.rport == 5070
    assert msg.to.tag == "222"
    assert msg.to_bytes() == raw
    for bad in (b"SIP/2.0 18 Ringing", b"SIP/2.0 800 X", b"SIP/2.0 abc X", b"SIP/1.0 180 X"):
        with pytest.raises(SipParseError) as info:
            parse_message(raw.replace(b"SIP/2.0 180 Ringing", bad))
        assert info.value.partial is None


# --- derived views stay correct -------------------------------------------------------


def test_properties_follow_header_changes() -> None:
    msg = parse_message(invite())
    first = msg.top_via
    assert msg.top_via is first  # cached
    msg.headers.set("Via", "SIP/2.0/TCP 198.51.100.1;branch=z9hG4bKnew")
    assert msg.top_via.transport == "TCP"
    assert msg.top_via.branch == "z9hG4bKnew"
    msg.headers.set("To", "<sip:carol@example.com>;tag=9")
    assert msg.to.tag == "9"
    msg.headers.set("CSeq", "7 INVITE")
    assert msg.cseq.number == 7
    msg.headers.remove("Max-Forwards")
    assert msg.max_forwards is None


def test_via_editing_helpers() -> None:
    msg = parse_message(invite())
    msg.push_via(Via("TCP", "proxy.example.com", 5061, {"branch": "z9hG4bKp1"}))
    assert [v.host for v in msg.vias] == ["proxy.example.com", "192.0.2.1"]
    top = msg.top_via.copy()
    top.params["received"] = "203.0.113.5"
    msg.set_top_via(top)
    assert msg.top_via.received == "203.0.113.5"
    popped = msg.pop_via()
    assert popped is not None and popped.host == "proxy.example.com"
    assert msg.top_via.host == "192.0.2.1"
    again = parse_message(msg.to_bytes())
    assert again.vias == msg.vias


# --- building and serializing ----------------------------------------------------------


def test_build_request_and_serialize() -> None:
    req = Request(
        "OPTIONS",
        "sip:carrier.example.com",
        headers=[
            ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"),
            ("From", "<sip:ping@127.0.0.1>;tag=1"),
            ("To", "<sip:carrier.example.com>"),
            ("Call-ID", "opt-1"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ],
    )
    wire = req.to_bytes()
    assert wire.startswith(b"OPTIONS sip:carrier.example.com SIP/2.0\r\n")
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    again = parse_message(wire)
    assert isinstance(again, Request) and again.cseq == CSeq(1, "OPTIONS")
    req.body = b"hello"
    req.headers.set("Content-Type", "text/plain")
    assert parse_message(req.to_bytes()).body == b"hello"


def test_content_length_recomputed_in_place() -> None:
    msg = parse_message(invite())
    msg.body = b"v=0\r\n"
    wire = msg.to_bytes()
    assert b"Content-Length: 5\r\n" in wire
    assert wire.count(b"Content-Length") == 1
    assert parse_message(wire).body == b"v=0\r\n"


def test_make_response_rfc3261_8_2_6() -> None:
    req = parse_message(
        invite(extra="Timestamp: 54\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\n")
    )
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="abc")
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.to.tag == "abc"
    assert resp.from_ == req.from_
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert "Timestamp" not in resp.headers
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag is None
    assert trying.headers.get("Timestamp") == "54"
    custom = make_response(req, 486, "Busy Now", headers=[("Retry-After", "30")])
    assert custom.reason == "Busy Now"
    assert custom.headers.get("Retry-After") == "30"
    assert make_response(req, 499).reason == "Client Error"
    # An existing To tag is never replaced.
    tagged = make_response(resp_request_with_tag(), 200, to_tag="new")
    assert tagged.to.tag == "old"
    wire = parse_message(resp.to_bytes())
    assert isinstance(wire, Response) and wire.to.tag == "abc"


def resp_request_with_tag() -> Request:
    msg = parse_message(invite().replace(b"To: <sip:bob@example.com>", b"To: <sip:b@x>;tag=old"))
    assert isinstance(msg, Request)
    return msg


# --- stream framing ----------------------------------------------------------------------


def test_find_message_end() -> None:
    one = invite()
    two = invite(body=b"")
    buf = one + two
    n = find_message_end(buf)
    assert n == len(one)
    assert parse_message(buf[:n]).body == SDP
    assert find_message_end(buf[n:]) == len(two)
    assert find_message_end(one[:-1]) is None
    assert find_message_end(one[:50]) is None
    assert find_message_end(b"\r\n\r\n" + two) == 4 + len(two)
    assert strip_keepalives(b"\r\n\r\nINVITE") == 4
    assert strip_keepalives(b"\r\n\r\n") == 4
    folded = invite().replace(b"Content-Length:", b"Content-Length:\r\n ")
    assert find_message_end(folded) == len(folded)
    compact = invite().replace(b"Content-Length:", b"l :")
    assert find_message_end(compact) == len(compact)


def test_find_message_end_errors() -> None:
    with pytest.raises(SipParseError, match="negative"):
        find_message_end(invite(cl="-999"))
    with pytest.raises(SipParseError, match="conflicting"):
        find_message_end(invite(extra="l: 5\r\n"))
    with pytest.raises(SipParseError) as info:
        find_message_end(b"INVITE sip:x SIP/2.0\r\nVia: " + b"a" * 70000)
    assert info.value.status == 513
    # Without a Content-Length a stream message has no body.
    no_cl = invite(body=b"").replace(b"Content-Length: 0\r\n", b"")
    assert find_message_end(no_cl + b"NEXT") == len(no_cl)


# --- header value classes ------------------------------------------------------------------


def test_via_parse_and_str() -> None:
    via = parse_via("SIP / 2.0 / UDP [2001:db8::1] : 5070 ; branch = z9hG4bKx ; rport")
    assert via.host == "[2001:db8::1]" and via.port == 5070
    assert via.transport == "UDP" and via.branch == "z9hG4bKx" and via.wants_rport
    assert str(via) == "SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKx;rport"
    assert parse_via(str(via)) == via
    assert parse_via("SIP/2.0/TLS h;BRANCH=z9hG4bKy").branch == "z9hG4bKy"
    for bad in ("SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP host;;", "SIP/2.0/UDP h:99999"):
        with pytest.raises(SipParseError):
            parse_via(bad)


def test_name_addr_forms() -> None:
    na = parse_name_addr('"A \\"B\\"" <sip:a@x;transport=tcp>;tag=1;expires=60')
    assert na.display == 'A "B"'
    assert na.tag == "1" and na.expires == 60
    assert str(na) == '"A \\"B\\"" <sip:a@x;transport=tcp>;tag=1;expires=60'
    bare = parse_name_addr("sip:a@x;tag=2")
    assert bare.tag == "2" and isinstance(bare.uri, SipURI) and bare.uri.params == {}
    assert str(bare) == "<sip:a@x>;tag=2"
    star = parse_name_addr("*")
    assert star.wildcard and str(star) == "*"
    na.tag = "new"
    assert na.tag == "new"
    assert parse_name_addr(str(na)) == na
    assert NameAddr(SipURI("h"), "Joe Bloggs").__str__() == "Joe Bloggs <sip:h>"
    assert str(NameAddr(SipURI("h"), "Joe, B")) == '"Joe, B" <sip:h>'


def test_bare_cr_or_lf_inside_a_header_is_rejected() -> None:
    for bad in (b"Subject: a\rInjected: b\r\n", b"Subject: a\nInjected: b\r\n"):
        with pytest.raises(SipParseError) as info:
            parse_message(invite(extra=bad.decode()))
        assert info.value.status == 400
    # LF-only messages, folded with LF, are still read.
    lf = invite(body=b"", extra="Subject: a\r\n b\r\n").replace(b"\r\n", b"\n")
    msg = parse_message(lf)
    assert msg.headers.get("Subject") == "a b"


def test_name_addr_copy_is_deep() -> None:
    for text in ("<sip:a@x;lr>;tag=1", "<tel:+123;x=1>", "<urn:service:sos>;p", "*"):
        na = parse_name_addr(text)
        dup = na.copy()
        assert dup == na
        dup.params["new"] = "1"
        assert "new" not in na.params
        if isinstance(dup.uri, SipURI):
            dup.uri.params["extra"] = None
            assert isinstance(na.uri, SipURI) and "extra" not in na.uri.params


def test_headers_refuse_injected_lines_and_bad_names() -> None:
    h = Headers()
    with pytest.raises(ValueError):
        h.add("Subject", "hi\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(ValueError):
        h.set("Subject", ["ok", "bad\n"])
    with pytest.raises(ValueError):
        Headers([("Bad Name", "x")])
    with pytest.raises(ValueError):
        h.add("", "x")
    assert len(h) == 0


def test_make_response_never_copies_a_value_with_a_lone_cr_or_lf() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(invite(body=b"").replace(b"<sip:bob@example.com>", b"<sip:bob@x>\nX: y"))
    partial = info.value.partial
    assert partial is not None
    wire = make_response(partial, info.value.status).to_bytes()
    assert b"X: y" not in wire
    assert b"\nTo:" not in wire
    assert b"\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n" in wire


def test_start_line_with_cr_or_lf_is_not_serialized() -> None:
    resp = Response(200, "OK\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(ValueError):
        resp.to_bytes()
