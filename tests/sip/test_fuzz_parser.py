"""Hypothesis mutations of real SIP messages: only SipParseError may ever escape.

Seeds are the valid RFC 4475 messages plus a typical trunk INVITE. Mutations:
byte flips, cuts, insertions of SIP-significant octets, header-line
duplication and deletion. When a mutant is accepted, every structured view of
it must work and its serialization must parse back to the same message.
Example counts are bounded so the whole module runs in seconds; for a longer,
randomized hunt set OPENTRUNK_FUZZ_EXAMPLES (e.g. 20000).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentrunk.sip.grammar import NAME_ADDR_LIST_RE, NAME_ADDR_RE, REQUEST_URI_RE, VIA_LIST_RE
from opentrunk.sip.headers import parse_name_addr, parse_name_addrs, parse_vias
from opentrunk.sip.message import (
    Request,
    SipParseError,
    find_message_end,
    make_response,
    parse_message,
)
from opentrunk.sip.sdp import parse_sdp
from opentrunk.sip.uri import SipURI, parse_uri

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
SEED_TAGS = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "semiuri",
    "transports",
    "unreason",
    "noreason",
    "cparam01",
    "cparam02",
    "regescrt",
    "inv2543",
    "bcast",
]
TRUNK_INVITE = (
    b"INVITE sip:+14155550123@trunk.example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:+14155550100@pbx.example.net>;tag=1928301774\r\n'
    b"To: <sip:+14155550123@trunk.example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pbx.example.net\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@198.51.100.7:5060;transport=udp>\r\n"
    b"Record-Route: <sip:proxy.example.net;lr>, <sip:[2001:db8::1]:5070;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 62\r\n"
    b"\r\n"
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)
SEEDS = [(DATA / f"{tag}.dat").read_bytes() for tag in SEED_TAGS] + [TRUNK_INVITE]
SPECIAL = [b"\r\n", b" ", b"\t", b":", b";", b",", b'"', b"\\", b"<", b">", b"@", b"%", b"=",
           b"\x00", b"\xff", b"\r\n ", b"[", b"]", b"?", b"/", b"0", b"-"]  # fmt: skip

FUZZ = settings(
    max_examples=int(os.environ.get("OPENTRUNK_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize="OPENTRUNK_FUZZ_EXAMPLES" not in os.environ,  # CI: fixed examples
)


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "dup", "drop", "truncate"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            end = min(len(data), pos + draw(st.integers(1, 16)))
            del data[pos:end]
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(SPECIAL))
        elif kind == "truncate":
            del data[pos:]
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "dup":
                lines.insert(i, lines[i])
            else:
                del lines[i]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def check_accepted(data: bytes) -> None:
    msg = parse_message(data)
    msg.call_id  # noqa: B018
    msg.cseq  # noqa: B018
    msg.from_.tag  # noqa: B018
    msg.to.tag  # noqa: B018
    msg.vias  # noqa: B018
    msg.contacts  # noqa: B018
    msg.max_forwards  # noqa: B018
    if isinstance(msg, Request):
        str(msg.uri)
        make_response(msg, 400).to_bytes()
    again = parse_message(msg.to_bytes())
    assert type(again) is type(msg)
    assert again.headers.get_all("via") == msg.headers.get_all("via")
    assert again.vias == msg.vias
    assert again.from_ == msg.from_ and again.to == msg.to
    assert again.cseq == msg.cseq
    assert again.body == msg.body


@FUZZ
@given(mutants())
def test_mutated_messages_raise_only_sip_parse_error(data: bytes) -> None:
    try:
        check_accepted(data)
    except SipParseError as err:
        assert 400 <= err.status < 600
        if err.partial is not None:
            make_response(err.partial, err.status).to_bytes()
    # Lazily parsed headers may be malformed in an accepted message: they raise
    # SipParseError on access, never anything else.
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    for view in ("routes", "record_routes", "content_type", "expires"):
        with contextlib.suppress(SipParseError):
            getattr(msg, view)


@FUZZ
@given(mutants())
def test_stream_framing_raises_only_sip_parse_error(data: bytes) -> None:
    try:
        end = find_message_end(data)
    except SipParseError:
        return
    if end is not None:
        assert 0 < end <= len(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(list('sip:tel@[]%;=?&.-_+ 0aZ<>"/:')), max_size=40))
def test_uri_parser_raises_only_sip_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    assert parse_uri(str(uri)) == uri


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200), st.sampled_from(SEEDS[-1:]))
def test_sdp_parser_raises_only_sip_parse_error(noise: bytes, seed: bytes) -> None:
    body = seed.split(b"\r\n\r\n", 1)[1]
    for candidate in (noise, body[: len(noise) % (len(body) + 1)] + noise):
        try:
            sdp = parse_sdp(candidate)
        except SipParseError:
            continue
        for m in sdp.media:
            try:
                m.rtpmaps  # noqa: B018
                m.crypto  # noqa: B018
            except SipParseError:
                pass
        parse_sdp(sdp.to_bytes())


# --- the eager syntax checks agree with the lazy object parsers -------------------

NAME_ADDR_SEEDS = [
    '"Alice \\"x\\"" <sip:+1415@pbx.example.net:5060;transport=tcp?h=v>;tag=19;q=0.3',
    "Bob Smith<sips:[2001:db8::1]:5061>",
    "sip:a@b;tag=x",
    '<tel:+1-555;p=1>;x="y"',
    "<urn:a:b>",
    "tok <http://x/y>",
]
VIA_SEED = "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK7;rport;received=[::1], SIP / 2.0 / TCP h"
URI_SEEDS = ["sip:+1415@trunk.example.com:5060;user=phone", "sips:u:p@[::1];lr", "tel:+1;x=2"]
EDIT_CHARS = [*'"\\<>;:,=@?&[]% \t/', "sip:", "tel:", "a", "1", ".", "-"]


@st.composite
def edited(draw: st.DrawFn, seeds: list[str]) -> str:
    chars = list(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["del", "ins", "set"]))
        if op == "ins":
            chars.insert(i, draw(st.sampled_from(EDIT_CHARS)))
        elif chars:
            j = min(i, len(chars) - 1)
            if op == "del":
                del chars[j]
            else:
                chars[j] = draw(st.sampled_from(EDIT_CHARS))
    return "".join(chars)


def accepts(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except SipParseError:
        return False
    return True


def test_syntax_checks_agree_on_surrounding_whitespace() -> None:
    for pad in (" ", "\t", " \t "):
        via = f"{pad}SIP/2.0/UDP h;branch=z9hG4bKx{pad}"
        assert VIA_LIST_RE.fullmatch(via) is not None
        assert parse_vias([via])[0].branch == "z9hG4bKx"
        na = f"{pad}<sip:a@b>;tag=1{pad}"
        assert NAME_ADDR_RE.fullmatch(na) is not None
        assert parse_name_addr(na).tag == "1"


@settings(max_examples=600, deadline=None, derandomize=True)
@given(edited(NAME_ADDR_SEEDS), edited([VIA_SEED]), edited(URI_SEEDS))
def test_syntax_checks_agree_with_object_parsers(na: str, via: str, uri: str) -> None:
    assert (NAME_ADDR_RE.fullmatch(na) is not None) == accepts(parse_name_addr, na)
    assert (NAME_ADDR_LIST_RE.fullmatch(na) is not None) == accepts(
        lambda t: parse_name_addrs([t]), na
    )
    assert (VIA_LIST_RE.fullmatch(via) is not None) == accepts(lambda t: parse_vias([t]), via)

    def request_uri(text: str) -> None:
        parsed = parse_uri(text)
        if isinstance(parsed, SipURI) and parsed.headers:
            raise SipParseError("headers")

    assert (REQUEST_URI_RE.fullmatch(uri) is not None) == accepts(request_uri, uri)
