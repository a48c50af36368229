"""SDP rewriting towards the other leg (pure)."""

from __future__ import annotations

import base64

import pytest

from opentrunk.media.backend import MediaSdpError
from opentrunk.media.sdp_anchor import anchor_sdp, parse, read_peer_media

KEY = base64.b64encode(bytes(range(30))).decode()
CUSTOMER = (
    "v=0\r\n"
    "o=pbx 4711 2 IN IP4 192.168.1.20\r\n"
    "s=call\r\n"
    "c=IN IP4 192.168.1.20\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=ice-ufrag:abcd\r\n"
    "m=audio 40000 RTP/SAVP 8 0 101\r\n"
    "c=IN IP4 192.168.1.20\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=rtcp:40001 IN IP4 192.168.1.20\r\n"
    "a=rtcp-mux\r\n"
    "a=candidate:1 1 UDP 2130706431 192.168.1.20 40000 typ host\r\n"
    "a=ice-pwd:secretsecretsecret\r\n"
    "a=fingerprint:sha-256 AB:CD\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n"
    f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31\r\n"
    "a=sendrecv\r\n"
    "m=video 0 RTP/AVP 96\r\n"
)


def test_read_peer_media() -> None:
    peers = read_peer_media(parse(CUSTOMER.encode()), want_srtp=True)
    audio = peers[0]
    assert audio is not None and peers[1] is None
    assert (audio.host, audio.rtp_port, audio.rtcp_port) == ("192.168.1.20", 40000, 40001)
    assert (audio.codec, audio.clock_rate, audio.direction) == ("PCMA", 8000, "sendrecv")
    assert audio.media_payload_types == frozenset({8, 0})
    assert audio.sdes_tag == 2 and audio.sdes_key == bytes(range(30))
    assert "secret" not in repr(audio) and "AAEC" not in repr(audio)


def test_rewrite_towards_plain_carrier_hides_the_customer() -> None:
    session = parse(CUSTOMER.encode())
    body = anchor_sdp(session, address="203.0.113.9", ports=[20000, None], sdes=[None, None])
    text = body.decode()
    for hidden in (
        "192.168.1.20",
        "candidate",
        "ice-",
        "fingerprint",
        "crypto",
        "BUNDLE",
        "rtcp-mux",
        "setup:",
        KEY,
    ):
        assert hidden not in text, hidden
    assert "o=pbx 4711 2 IN IP4 203.0.113.9" in text
    assert "m=audio 20000 RTP/AVP 8 0 101" in text
    assert "a=rtcp:20001" in text
    assert "m=video 0 RTP/AVP 96" in text
    assert "a=rtpmap:101 telephone-event/8000" in text  # DTMF stays offered


def test_rewrite_towards_srtp_customer_adds_relay_key() -> None:
    carrier = CUSTOMER.replace("RTP/SAVP", "RTP/AVP")
    key = bytes(30 * [7])
    text = anchor_sdp(
        parse(carrier.encode()), address="::1", ports=[20002, None], sdes=[(2, key), None]
    ).decode()
    assert "c=IN IP6 ::1" in text
    assert "m=audio 20002 RTP/SAVP 8 0 101" in text
    assert f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}" in text
    assert text.count("a=crypto") == 1


def test_srtp_leg_without_usable_key_is_refused() -> None:
    plain = CUSTOMER.replace("inline:" + KEY + "|2^31", "inline:" + KEY + "|2^20|1:4")
    with pytest.raises(MediaSdpError):
        read_peer_media(parse(plain.encode()), want_srtp=True)
    assert read_peer_media(parse(plain.encode()), want_srtp=False)[0] is not None
    with pytest.raises(MediaSdpError):
        parse(b"not sdp")


def test_hold_address_means_no_destination() -> None:
    held = CUSTOMER.replace("c=IN IP4 192.168.1.20", "c=IN IP4 0.0.0.0")
    audio = read_peer_media(parse(held.encode()), want_srtp=False)[0]
    assert audio is not None and audio.host is None and not audio.sends
