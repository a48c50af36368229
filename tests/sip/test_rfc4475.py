"""Every RFC 4475 torture message, with the handling INDEX.tsv expects.

Valid messages must parse, expose their structure and round-trip
(parse(serialize(parse(x))) == parse(x)); invalid requests must raise
SipParseError with the status to answer and a `partial` to answer from;
invalid responses must raise (the caller drops them). Where RFC 4475 allows
either rejecting or tolerating, the choice we made is asserted and named.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from opentrunk.sip.message import (
    Message,
    Request,
    Response,
    SipParseError,
    check_uri_scheme,
    make_response,
    parse_message,
)
from opentrunk.sip.uri import AbsoluteURI, SipURI, parse_uri

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"


def load(tag: str) -> bytes:
    return (DATA / f"{tag}.dat").read_bytes()


def index_rows() -> list[list[str]]:
    with (DATA / "INDEX.tsv").open("rb") as fh:
        text = fh.read().decode("utf-8")
    return [row for row in csv.reader(text.splitlines(), delimiter="\t") if row]


def all_views(msg: Message) -> None:
    """Touch every structured view: none may fail on an accepted message."""
    assert msg.call_id
    assert msg.cseq.number >= 0
    assert msg.from_.uri is not None
    assert msg.to.uri is not None
    assert msg.vias and msg.top_via is msg.vias[0]
    msg.contacts  # noqa: B018
    msg.routes  # noqa: B018
    msg.record_routes  # noqa: B018
    msg.max_forwards  # noqa: B018
    if isinstance(msg, Request):
        assert msg.uri is not None


def assert_round_trip(msg: Message) -> None:
    again = parse_message(msg.to_bytes())
    assert type(again) is type(msg)
    if isinstance(msg, Request):
        assert isinstance(again, Request)
        assert again.method == msg.method
        assert str(again.uri) == str(msg.uri)
        assert again.uri == msg.uri
    else:
        assert isinstance(msg, Response) and isinstance(again, Response)
        assert (again.status, again.reason) == (msg.status, msg.reason)
    strip_cl = [(k, v) for k, v in msg.headers.items() if k.lower() not in ("content-length", "l")]
    again_cl = [
        (k, v) for k, v in again.headers.items() if k.lower() not in ("content-length", "l")
    ]
    assert again_cl == strip_cl
    assert again.body == msg.body
    assert again.vias == msg.vias
    assert again.from_ == msg.from_
    assert again.to == msg.to
    assert again.contacts == msg.contacts
    assert again.cseq == msg.cseq
    # And serializing again is a fixed point.
    assert again.to_bytes() == msg.to_bytes()


# --- every file is covered ------------------------------------------------------

VALID = {
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    # Syntactically valid; what to answer is an application decision (asserted below).
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    # Tolerated where RFC 4475 allows it.
    "lwsstart",
    "trws",
    "baddate",
}

# Requests rejected by the parser: tag -> status.
REJECTED_REQUESTS = {
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "escruri": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,  # RFC 4475 prefers 501 for the unknown method; 400 is acceptable
    "insuf": 400,
    "multi01": 400,
    "mcl01": 400,
}
REJECTED_RESPONSES = {"scalarlg", "bigcode"}


def test_every_index_entry_has_an_expectation() -> None:
    tags = [row[0] for row in index_rows()]
    assert len(tags) == 49
    covered = VALID | set(REJECTED_REQUESTS) | REJECTED_RESPONSES
    assert set(tags) == covered
    assert not VALID & set(REJECTED_REQUESTS)
    for tag in tags:
        assert (DATA / f"{tag}.dat").is_file()


@pytest.mark.parametrize("tag", sorted(VALID))
def test_valid_message_parses_and_round_trips(tag: str) -> None:
    msg = parse_message(load(tag))
    all_views(msg)
    assert_round_trip(msg)


@pytest.mark.parametrize(("tag", "status"), sorted(REJECTED_REQUESTS.items()))
def test_invalid_request_is_rejected_with_status(tag: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(tag))
    err = info.value
    assert err.status == status
    assert err.reason
    # Every one of these has a readable start line and top Via: it can be answered.
    assert err.partial is not None
    answer = make_response(err.partial, err.status)
    wire = answer.to_bytes()
    # The answer copies the bad request's headers verbatim (it may itself be
    # unparseable, e.g. quotbal's To): check the wire form, not a re-parse.
    assert wire.startswith(f"SIP/2.0 {status} ".encode())
    for via in err.partial.headers.get_raw("via"):
        assert f"\r\nVia: {via}\r\n".encode() in wire


@pytest.mark.parametrize("tag", sorted(REJECTED_RESPONSES))
def test_invalid_response_is_rejected(tag: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(tag))
    assert info.value.partial is None


# --- what the specific messages must yield --------------------------------------


def test_wsinv_whitespace_and_folding() -> None:
    msg = parse_message(load("wsinv"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.tag == "98asjd8"
    assert msg.from_.display == 'J Rosenberg \\"'
    assert msg.max_forwards == 68
    assert msg.cseq.number == 9 and msg.cseq.method == "INVITE"
    assert [v.transport for v in msg.vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in msg.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert msg.vias[1].host == "spindle.example.com"
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.headers.get("Subject") == ""
    (contact,) = msg.contacts
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    (route,) = msg.routes
    assert isinstance(route.uri, SipURI)
    assert route.uri.lr
    assert route.uri.params["unknownwith"] == "value"
    assert len(msg.body) == 150


def test_intmeth_extension_method_and_odd_uri() -> None:
    msg = parse_message(load("intmeth"))
    assert isinstance(msg, Request)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(msg.uri, SipURI)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.uri.host == "example.com"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert_round_trip(msg)


def test_esc01_escaped_and_unescaped_compare_equal() -> None:
    msg = parse_message(load("esc01"))
    assert isinstance(msg, Request) and isinstance(msg.uri, SipURI)
    assert msg.uri.user == "sips%3Auser%40example.com"
    assert msg.to.uri == parse_uri("sip:user@example.com")
    assert msg.from_.uri == parse_uri("sip:I have spaces@example.net".replace(" ", "%20"))
    (contact,) = msg.contacts
    assert contact.uri == parse_uri("sip:caller@host5.example.net;lr;name=value%2541")
    assert contact.uri != parse_uri("sip:caller@host5.example.net;lr;name=valueA")


def test_escnull_keeps_escaped_nul() -> None:
    msg = parse_message(load("escnull"))
    assert isinstance(msg.to.uri, SipURI)
    assert msg.to.uri.user == "null-%00-null"
    assert [str(c.uri) for c in msg.contacts] == [
        "sip:%00@host5.example.com",
        "sip:%00%00@host5.example.com",
    ]
    assert msg.contacts[0].uri != msg.contacts[1].uri


def test_esc02_percent_signs_that_are_not_escapes() -> None:
    msg = parse_message(load("esc02"))
    assert isinstance(msg, Request)
    assert msg.method == "RE%47IST%45R"
    assert msg.method != "REGISTER"
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert [c.uri.host for c in msg.contacts if isinstance(c.uri, SipURI)] == [
        "host1.example.com",
        "host3.example.com",
    ]
    assert msg.to.display == "%Z%45"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_without_space() -> None:
    msg = parse_message(load("lwsdisp"))
    assert msg.from_.display == "caller"
    assert msg.from_.tag == "323"


def test_longreq_long_values_and_34_vias() -> None:
    msg = parse_message(load("longreq"))
    assert len(msg.vias) == 34
    assert msg.to.display is not None and len(msg.to.display) > 90
    assert msg.max_forwards == 70


def test_dblreq_octets_past_content_length_ignored() -> None:
    data = load("dblreq")
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_semicolon_in_user_part() -> None:
    msg = parse_message(load("semiuri"))
    assert isinstance(msg, Request) and isinstance(msg.uri, SipURI)
    assert msg.uri.user == "user;par=u%40example.net"
    assert msg.uri.host == "example.com"
    assert msg.uri.params == {}
    assert len(msg.headers.get_all("Accept")) == 6


def test_transports_unknown_transport_parses() -> None:
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body_framed_by_content_length() -> None:
    data = load("mpart01")
    msg = parse_message(data)
    assert msg.content_type == "multipart/mixed"
    assert int(msg.headers.get("Content-Length") or "-1") == len(msg.body)
    assert data.endswith(msg.body)
    assert b"\x00" in msg.body
    assert msg.to_bytes() == data


def test_unreason_utf8_reason_phrase() -> None:
    msg = parse_message(load("unreason"))
    assert isinstance(msg, Response)
    assert msg.status == 200
    assert msg.reason.startswith("= 2**3 * 5**2 но")
    assert msg.to_bytes().split(b"\r\n", 1)[0] == load("unreason").split(b"\r\n", 1)[0]


def test_noreason_empty_reason_phrase() -> None:
    msg = parse_message(load("noreason"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (100, "")
    assert msg.to_bytes().startswith(b"SIP/2.0 100 \r\n")


def test_lwsstart_and_trws_are_tolerated() -> None:
    # Choice: accept extra SP in the request line (RFC 4475 3.1.2.9/3.1.2.10 allow it).
    msg = parse_message(load("lwsstart"))
    assert isinstance(msg, Request)
    assert str(msg.uri) == "sip:user@example.com"
    assert msg.to_bytes().startswith(b"INVITE sip:user@example.com SIP/2.0\r\n")
    msg = parse_message(load("trws"))
    assert isinstance(msg, Request)
    assert msg.to_bytes().startswith(b"OPTIONS sip:remote-target@example.com SIP/2.0\r\n")


def test_baddate_is_ignored() -> None:
    # We never use Date, so the non-GMT zone is kept as an opaque value (RFC 4475 3.1.2.12).
    msg = parse_message(load("baddate"))
    assert "EST" in (msg.headers.get("Date") or "")


def test_badbranch_parses_and_is_not_an_rfc3261_branch() -> None:
    # Choice: accept; the transaction layer sees the bare magic cookie and uses RFC 2543
    # matching (RFC 4475 3.2.1 allows that or a stateless 400).
    msg = parse_message(load("badbranch"))
    assert msg.top_via.branch == "z9hG4bK"
    assert not msg.top_via.rfc3261_branch


def test_unknown_schemes_parse_as_absolute_uris() -> None:
    msg = parse_message(load("unkscm"))
    assert isinstance(msg, Request)
    assert isinstance(msg.uri, AbsoluteURI)
    assert msg.uri.scheme == "nobodyKnowsThisScheme"
    # The element answers 416 from this; never routes on To.
    assert str(msg.uri) == "nobodyKnowsThisScheme:totallyopaquecontent"
    msg = parse_message(load("novelsc"))
    assert isinstance(msg, Request) and isinstance(msg.uri, AbsoluteURI)
    assert msg.uri.scheme == "soap.beep"
    with pytest.raises(SipParseError) as info:
        check_uri_scheme(msg)
    assert info.value.status == 416 and info.value.partial is msg
    msg = parse_message(load("unksm2"))
    assert isinstance(msg, Request)
    check_uri_scheme(msg)  # a sip: Request-URI; the odd schemes are in To/From/Contact
    assert isinstance(msg.to.uri, AbsoluteURI) and msg.to.uri.scheme == "isbn"
    assert isinstance(msg.from_.uri, AbsoluteURI) and msg.from_.uri.scheme == "http"
    assert isinstance(msg.contacts[0].uri, AbsoluteURI)


def test_bext01_option_tags_readable() -> None:
    msg = parse_message(load("bext01"))
    assert msg.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]


def test_invut_and_sdp01_content_negotiation_inputs() -> None:
    msg = parse_message(load("invut"))
    assert msg.content_type == "application/unknownformat"
    msg = parse_message(load("sdp01"))
    assert msg.content_type == "application/sdp"
    assert msg.headers.get_all("Accept") == ["text/nobodyKnowsThis"]


def test_regaut01_unknown_auth_scheme_kept_verbatim() -> None:
    data = load("regaut01")
    msg = parse_message(data)
    value = msg.headers.get("Authorization")
    assert value is not None and value.startswith("NoOneKnowsThisScheme")
    assert f"Authorization: {value}".encode() in msg.to_bytes()


def test_bcast_second_via_is_broadcast() -> None:
    msg = parse_message(load("bcast"))
    assert isinstance(msg, Response)
    assert msg.vias[1].host == "255.255.255.255"


def test_zeromf_max_forwards_zero() -> None:
    assert parse_message(load("zeromf")).max_forwards == 0


def test_cparam01_bare_contact_param_is_a_header_param() -> None:
    (contact,) = parse_message(load("cparam01")).contacts
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.params == {}
    assert contact.params == {"unknownparam": None}


def test_cparam02_bracketed_contact_param_is_a_uri_param() -> None:
    (contact,) = parse_message(load("cparam02")).contacts
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.params == {"unknownparam": None}
    assert contact.params == {}


def test_regescrt_contact_keeps_escaped_route_header() -> None:
    (contact,) = parse_message(load("regescrt")).contacts
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_inv2543_old_syntax_accepted() -> None:
    msg = parse_message(load("inv2543"))
    assert msg.top_via.branch is None
    assert msg.max_forwards is None
    assert msg.from_.tag is None
    rr = msg.record_routes[0].uri
    assert isinstance(rr, SipURI) and rr.maddr == "ss1.example.com"
    assert len(msg.body) > 0  # no Content-Length: the rest of the datagram


def test_specific_rejection_reasons() -> None:
    reasons = {}
    for tag in ("multi01", "mcl01", "ncl", "clerr", "insuf", "escruri", "scalar02", "badvers"):
        with pytest.raises(SipParseError) as info:
            parse_message(load(tag))
        reasons[tag] = info.value.reason
    assert "conflicting" in reasons["multi01"]
    assert "Content-Length" in reasons["mcl01"]
    assert "negative" in reasons["ncl"]
    assert "Content-Length" in reasons["clerr"]
    assert "missing" in reasons["insuf"]
    assert "Request-URI" in reasons["escruri"]
    assert "CSeq" in reasons["scalar02"]
    assert "version" in reasons["badvers"]


def test_stream_framing_of_bad_content_lengths() -> None:
    from opentrunk.sip.message import find_message_end

    # clerr: on a stream, Content-Length 9999 means "wait for more octets".
    assert find_message_end(load("clerr")) is None
    # ncl, mcl01: framing is lost; the caller closes the connection.
    for tag in ("ncl", "mcl01"):
        with pytest.raises(SipParseError):
            find_message_end(load(tag))
    # dblreq on a stream is two messages.
    data = load("dblreq")
    first = find_message_end(data)
    assert first is not None
    assert parse_message(data[:first]).method == "REGISTER"  # type: ignore[union-attr]
    rest = data[first:]
    assert rest.startswith(b"\r\nINVITE") or rest.startswith(b"INVITE")
