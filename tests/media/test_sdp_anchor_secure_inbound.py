"""What counts as an SRTP answer on a leg that must speak SRTP (a secure trunk's PBX,
docs/inbound-routing.md "Secure trunks"): RTP/SAVP(F) with a usable SDES key (pure)."""

from __future__ import annotations

import base64

import pytest

from opentrunk.media.backend import MediaSdpError
from opentrunk.media.sdp_anchor import parse, read_peer_media

KEY = base64.b64encode(bytes(range(30))).decode()


def answer(proto: str, crypto: bool) -> bytes:
    lines = [
        "v=0",
        "o=pbx 1 1 IN IP4 192.0.2.20",
        "s=-",
        "c=IN IP4 192.0.2.20",
        "t=0 0",
        f"m=audio 40000 {proto} 0",
        "a=rtpmap:0 PCMU/8000",
    ]
    if crypto:
        lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize("proto", ["RTP/SAVP", "RTP/SAVPF"])
def test_srtp_answer_with_key_is_taken(proto: str) -> None:
    (peer,) = read_peer_media(parse(answer(proto, crypto=True)), want_srtp=True)
    assert peer is not None and peer.sdes_key == bytes(range(30)) and peer.sdes_tag == 1


@pytest.mark.parametrize(
    ("proto", "crypto"),
    [("RTP/AVP", False), ("RTP/AVP", True), ("RTP/SAVP", False)],
)
def test_plain_or_keyless_answer_is_refused_on_an_srtp_leg(proto: str, crypto: bool) -> None:
    # RTP/AVP with a key line is still plain RTP (RFC 4568 applies to SAVP).
    with pytest.raises(MediaSdpError):
        read_peer_media(parse(answer(proto, crypto)), want_srtp=True)


def test_plain_answer_is_fine_on_a_plain_leg() -> None:
    (peer,) = read_peer_media(parse(answer("RTP/AVP", crypto=False)), want_srtp=False)
    assert peer is not None and peer.sdes_key is None
