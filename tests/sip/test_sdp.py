"""SDP (RFC 4566) parsing, serialization and the rewrite helpers a B2BUA uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.message import parse_message
from opentrunk.sip.sdp import PCMA, PCMU, Connection, parse_sdp

OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 198.51.100.7\r\n"
    b"s=Call\r\n"
    b"i=A call\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"b=AS:64\r\n"
    b"t=0 0\r\n"
    b"a=group:BUNDLE a\r\n"
    b"m=audio 49170 RTP/SAVP 0 8 101\r\n"
    b"c=IN IP4 198.51.100.8\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
    b"inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32 KDR=1\r\n"
    b"a=x-unknown:keep me\r\n"
    b"a=sendonly\r\n"
    b"m=video 0 RTP/AVP 31\r\n"
)


def test_parse_structure() -> None:
    sdp = parse_sdp(OFFER)
    assert sdp.version == 0
    assert sdp.origin.username == "alice"
    assert sdp.origin.session_version == 2890844527
    assert sdp.origin.address == "198.51.100.7"
    assert sdp.session_name == "Call"
    assert sdp.connection == Connection("IN", "IP4", "198.51.100.7")
    assert sdp.attributes == [("group", "BUNDLE a")]
    audio, video = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 49170, "RTP/SAVP")
    assert audio.formats == ["0", "8", "101"]
    assert audio.payload_types == [PCMU, PCMA, 101]
    assert audio.codec_names == ["PCMU", "PCMA", "telephone-event"]
    assert audio.telephone_event == 101
    assert audio.fmtp == {"101": "0-16"}
    assert audio.rtpmaps[8].clock_rate == 8000
    assert audio.connection is not None and audio.connection.address == "198.51.100.8"
    assert audio.direction == "sendonly"
    assert sdp.media_direction(audio) == "sendonly"
    assert sdp.media_direction(video) == "sendrecv"
    assert audio.get_attribute("x-unknown") == "keep me"
    (crypto,) = audio.crypto
    assert crypto.tag == 1 and crypto.suite == "AES_CM_128_HMAC_SHA1_80"
    assert crypto.inline_key == "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
    assert crypto.session_params == ["KDR=1"]
    assert "PS1uQ" not in repr(crypto)  # key material stays out of logs
    assert video.port == 0
    assert sdp.media_connection(video) == sdp.connection


def test_round_trip_is_exact_for_ordered_input() -> None:
    assert parse_sdp(OFFER).to_bytes() == OFFER
    assert parse_sdp(OFFER.decode()).to_bytes() == OFFER


def test_lf_line_ends_and_static_payloads_without_rtpmap() -> None:
    sdp = parse_sdp(b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 8 0\n")
    (audio,) = sdp.media
    assert audio.codec_names == ["PCMA", "PCMU"]
    assert audio.telephone_event is None
    assert sdp.to_bytes().endswith(b"m=audio 5004 RTP/AVP 8 0\r\n")


def test_rewrite_address_and_port() -> None:
    sdp = parse_sdp(OFFER)
    sdp.rewrite_address("203.0.113.10")
    sdp.media[0].port = 30000
    out = parse_sdp(sdp.to_bytes())
    assert out.connection is not None and out.connection.address == "203.0.113.10"
    assert out.media[0].connection is not None
    assert out.media[0].connection.address == "203.0.113.10"
    assert out.origin.address == "203.0.113.10"
    assert out.media[0].port == 30000
    sdp.rewrite_address("2001:db8::5", origin=False)
    assert sdp.connection is not None and sdp.connection.addrtype == "IP6"
    assert sdp.origin.address == "203.0.113.10"
    assert b"c=IN IP6 2001:db8::5\r\n" in sdp.to_bytes()


def test_rewrite_adds_session_connection_when_media_lacks_one() -> None:
    sdp = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n")
    sdp.rewrite_address("192.0.2.50")
    assert b"c=IN IP4 192.0.2.50\r\nt=0 0\r\n" in sdp.to_bytes()


def test_direction_setter_and_keep_formats() -> None:
    sdp = parse_sdp(OFFER)
    audio = sdp.media[0]
    audio.direction = "inactive"
    assert audio.get_attributes("sendonly") == []
    assert audio.direction == "inactive"
    with pytest.raises(ValueError):
        audio.direction = "sideways"
    audio.keep_formats(["8", "101", "99"])
    assert audio.formats == ["8", "101"]
    assert set(audio.rtpmaps) == {8, 101}
    assert b"a=rtpmap:0 " not in sdp.to_bytes()
    assert b"m=audio 49170 RTP/SAVP 8 101\r\n" in sdp.to_bytes()


def test_sdp_of_rfc4475_messages() -> None:
    data = (Path(__file__).resolve().parent.parent / "data" / "rfc4475" / "wsinv.dat").read_bytes()
    sdp = parse_sdp(parse_message(data).body)
    assert [m.media for m in sdp.media] == ["audio", "video"]
    assert sdp.media[1].rtpmaps[31].encoding == "LPC"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"o=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=x\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nbogus\r\n",
    ],
)
def test_bad_sdp(body: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_sdp(body)


def test_bad_rtpmap_raises_on_access() -> None:
    sdp = parse_sdp(
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x\r\n"
    )
    with pytest.raises(SipParseError):
        sdp.media[0].rtpmaps  # noqa: B018
