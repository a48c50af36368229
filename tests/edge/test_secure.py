"""What an SDP offer says about SRTP (edge/secure.py), plain offers included (skipped
without a parse)."""

from __future__ import annotations

import pytest

from opentrunk.edge.secure import OfferSecurity, offer_security, transport_matches

_KEY = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyBpc3NldCBpbmRleA"


def _offer(*lines: str) -> bytes:
    head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    return (head + "".join(line + "\r\n" for line in lines)).encode()


PLAIN = _offer("m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")
KEYED = _offer("m=audio 4000 RTP/SAVP 0", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {_KEY}")
UNKEYED = _offer("m=audio 4000 RTP/SAVP 0")
LOWER_KEYED = _offer("m=audio 4000 rtp/savpf 0", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {_KEY}")
HALF = _offer(
    "m=audio 4000 RTP/SAVP 0",
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {_KEY}",
    "m=audio 4002 RTP/AVP 0",
)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (PLAIN, "application/sdp", OfferSecurity(srtp=False, complete=False)),
        (KEYED, "application/sdp", OfferSecurity(srtp=True, complete=True)),
        (KEYED, "Application/SDP; charset=x", OfferSecurity(srtp=True, complete=True)),
        (KEYED, "text/plain", OfferSecurity(srtp=False, complete=False)),
        (UNKEYED, "application/sdp", OfferSecurity(srtp=True, complete=False)),
        (LOWER_KEYED, "application/sdp", OfferSecurity(srtp=True, complete=True)),
        (HALF, "application/sdp", OfferSecurity(srtp=True, complete=False)),
        (b"", "application/sdp", OfferSecurity(srtp=False, complete=False)),
        (b"RTP/SAVP not sdp", "application/sdp", OfferSecurity(srtp=False, complete=False)),
    ],
)
def test_offer_security(body: bytes, content_type: str, expected: OfferSecurity) -> None:
    assert offer_security(body, content_type) == expected


@pytest.mark.parametrize(
    ("secure", "transport", "body", "matches"),
    [
        (False, "udp", PLAIN, True),
        (False, "tls", PLAIN, False),
        (False, "udp", KEYED, False),
        (True, "tls", KEYED, True),
        (True, "tls", PLAIN, False),
        (True, "tls", UNKEYED, False),
        (True, "udp", KEYED, False),
    ],
)
def test_transport_matches(secure: bool, transport: str, body: bytes, matches: bool) -> None:
    assert transport_matches(secure, transport, body, "application/sdp") is matches
