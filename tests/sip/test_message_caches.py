"""What the message layer caches must never go stale: the wire form (reused for
retransmissions), the parsed views kept across header edits, the Via written by
push_via / set_top_via, and the header index kept up to date by add / pop_first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from opentrunk.sip.headers import Headers, Via
from opentrunk.sip.message import Request, Response, make_response, parse_message

INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport,"
    b" SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n"
    b"Via: SIP/2.0/TCP 10.0.0.2:5080;branch=z9hG4bKx\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a1\r\n"
    b"To: <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: c1@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:5070>\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def invite() -> Request:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    return message


def reparsed(message: Request | Response) -> Request | Response:
    return parse_message(message.to_bytes())


def test_wire_form_reused_until_anything_changes() -> None:
    request = invite()
    first = request.to_bytes()
    assert request.to_bytes() is first  # a retransmission: not serialized again
    request.headers.add("Subject", "hi")
    second = request.to_bytes()
    assert b"Subject: hi\r\n" in second and second is not first
    request.body = b"other"
    assert b"Content-Length: 5\r\n" in request.to_bytes()
    assert request.to_bytes().endswith(b"\r\n\r\nother")
    request.uri = "sip:carol@127.0.0.1"
    assert request.to_bytes().startswith(b"INVITE sip:carol@127.0.0.1 SIP/2.0\r\n")
    request.compact()
    assert request.to_bytes() == reparsed(request).to_bytes()
    request.headers = Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKq")])
    assert b"From:" not in request.to_bytes()


def test_response_wire_form_follows_status_and_reason() -> None:
    response = make_response(invite(), 180, to_tag="t1")
    ringing = response.to_bytes()
    response.status, response.reason = 183, "Session Progress"
    assert response.to_bytes().startswith(b"SIP/2.0 183 Session Progress\r\n")
    assert response.to_bytes() != ringing
    response.headers.set("To", "<sip:bob@127.0.0.1>;tag=t2")
    assert b"To: <sip:bob@127.0.0.1>;tag=t2\r\n" in response.to_bytes()
    response.headers.remove("Contact")
    response.headers.pop_first("Via")
    assert response.to_bytes().count(b"Via:") == 2


def test_views_of_other_headers_survive_via_edits_and_stay_right() -> None:
    request = invite()
    from_, to, cseq = request.from_, request.to, request.cseq
    top = request.top_via.copy()
    top.params["received"] = "192.0.2.9"
    request.set_top_via(top)
    # Only the Via view changed; the others are still the objects parsed before.
    assert request.from_ is from_ and request.to is to and request.cseq is cseq
    assert [str(v) for v in request.vias] == [str(v) for v in reparsed(request).vias]
    assert request.top_via.received == "192.0.2.9"
    assert len(request.vias) == 3


def test_set_top_via_on_a_single_element_field_and_push_via() -> None:
    request = invite()
    request.headers.pop_first("Via")
    request.headers.pop_first("Via")
    assert [v.host for v in request.vias] == ["10.0.0.2"]
    via = Via("UDP", "127.0.0.1", 5060, {"branch": "z9hG4bKnew", "rport": None})
    request.push_via(via)
    via.params["branch"] = "z9hG4bKchanged-after"  # our copy must not follow
    assert request.top_via.branch == "z9hG4bKnew"
    assert [str(v) for v in request.vias] == [str(v) for v in reparsed(request).vias]
    stamped = request.top_via.copy()
    stamped.params["rport"] = "5070"
    request.set_top_via(stamped)
    assert request.top_via.rport == 5070
    assert [str(v) for v in request.vias] == [str(v) for v in reparsed(request).vias]


def test_request_built_without_via_gets_its_pushed_via() -> None:
    request = Request("OPTIONS", "sip:bob@127.0.0.1", [("From", "<sip:a@h>;tag=1")])
    request.push_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs")
    assert request.top_via.branch == "z9hG4bKs"
    request.push_via(Via("TCP", "127.0.0.2", 5061, {"branch": "z9hG4bKt"}))
    assert [v.branch for v in request.vias] == ["z9hG4bKt", "z9hG4bKs"]


_names = st.sampled_from(["Via", "v", "Route", "Subject", "Contact", "X-Tag"])
_values = st.sampled_from(
    [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3",
        "<sip:r1@h;lr>",
        "<sip:r2@h;lr>, <sip:r3@h;lr>",
        "text",
    ]
)
_edits = st.lists(
    st.tuples(st.sampled_from(["add", "add_first", "pop_first"]), _names, _values), max_size=12
)


@given(_edits)
def test_index_kept_up_to_date_equals_a_rebuilt_one(edits: list[tuple[str, str, str]]) -> None:
    headers = Headers([("Via", "SIP/2.0/UDP z;branch=z9hG4bK0"), ("Subject", "s")])
    headers._idx()  # an index exists: edits must keep it right
    for op, name, value in edits:
        if op == "add":
            headers.add(name, value)
        elif op == "add_first":
            headers.add(name, value, first=True)
        else:
            headers.pop_first(name)
        kept = {key: list(values) for key, values in headers._idx().items()}
        headers.compact()
        assert kept == headers._idx()


def test_compacted_headers_read_and_edit_like_before() -> None:
    request = invite()
    wire = request.to_bytes()
    request.compact()
    assert request.to_bytes() == wire
    assert request.headers.get("Call-ID") == "c1@127.0.0.1" and len(request.vias) == 3
    request.compact()
    request.headers.add("Subject", "after")
    assert request.headers.pop_first("Via") == "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport"
    request.compact()
    request.headers.set("Max-Forwards", "69")
    request.headers.remove("Contact")
    assert reparsed(request).headers.items() == request.headers.items()
    assert request.headers.copy() == request.headers


def test_validation_memo_remembers_only_short_values() -> None:
    from opentrunk.sip import message

    long_user = "u" * 600
    parse_message(INVITE)
    for n in range(3):
        data = INVITE.replace(
            b"sip:alice@127.0.0.1>;tag=a1", f"sip:{long_user}{n}@h>;tag=a1".encode()
        )
        parse_message(data)
    memo = message._VALID_NAME_ADDR
    assert not any(len(v) > message._REMEMBER_MAX for v in memo.current | memo.previous)
    assert "<sip:alice@127.0.0.1>;tag=a1" in memo.current | memo.previous
