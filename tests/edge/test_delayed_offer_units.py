"""The pure parts of delayed-offer calls (docs/media.md "Delayed offer"): the call's
media passing an INVITE without SDP and anchoring the offer from the far side (on the
embedded relay, SRTP towards the customer of a secure trunk included), the answer that
rejects every stream, the hangup rows, and step 3's check for a secure trunk. The live
calls are in tests/e2e/test_delayed_offer.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from opentrunk.domain.hangup_codes import HangupSource, Side
from opentrunk.edge.media_session import (
    CallMedia,
    answer_refusal,
    missing_answer,
    rejecting_answer,
)
from opentrunk.edge.secure import transport_matches
from opentrunk.media.backend import MediaError, MediaSdpError, PortsExhausted
from opentrunk.media.relay import RelayConfig, RtpRelay
from opentrunk.sip.sdp import parse_sdp

HOST = "127.0.0.1"
SDP = "application/sdp"
# Ports of a range no other test of this module's kind uses (below the ephemeral range).
LOW, HIGH = 23800, 23899


def offer(port: int, proto: str = "RTP/AVP", extra: str = "") -> bytes:
    lines = [
        "v=0",
        "o=carrier 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} {proto} 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        *([extra] if extra else []),
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


KEY = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"


def with_relay(scenario: Callable[[RtpRelay], Awaitable[None]]) -> None:
    async def main() -> None:
        relay = RtpRelay(RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH))
        await relay.start()
        try:
            await scenario(relay)
        finally:
            await relay.close()

    asyncio.run(main())


def test_no_body_passes_and_the_offer_comes_from_the_far_side() -> None:
    async def scenario(relay: RtpRelay) -> None:
        media = CallMedia(relay, "call-1", a_side=Side.CUSTOMER)
        # The INVITE without SDP passes untouched, and allocates nothing yet.
        assert await media.relay(b"", None, from_side=Side.CUSTOMER, kind="offer") == b""
        assert relay.active_calls == 0
        # The carrier's 200 carries the offer: anchored from the carrier's leg ("b").
        out = await media.relay(offer(4000), SDP, from_side=Side.CARRIER, kind="offer")
        sdp = parse_sdp(out)
        assert LOW <= sdp.media[0].port <= HIGH and sdp.media[1].port == 0
        # The PBX's answer in its ACK: anchored from the customer's leg ("a").
        answer = await media.relay(offer(4100), SDP, from_side=Side.CUSTOMER, kind="answer")
        assert LOW <= parse_sdp(answer).media[0].port <= HIGH
        assert parse_sdp(answer).media[0].port != sdp.media[0].port
        assert await media.release() is not None
        assert relay.active_calls == 0

    with_relay(scenario)


def test_a_first_body_that_is_not_sdp_is_still_refused() -> None:
    async def scenario(relay: RtpRelay) -> None:
        media = CallMedia(relay, "call-2", a_side=Side.CUSTOMER)
        multipart = "multipart/mixed;boundary=x"
        with pytest.raises(MediaSdpError):
            await media.relay(b"--x--", multipart, from_side=Side.CUSTOMER, kind="offer")

    with_relay(scenario)


def test_secure_customer_gets_sdes_on_an_offer_from_the_carrier() -> None:
    async def scenario(relay: RtpRelay) -> None:
        secure = frozenset({Side.CUSTOMER})
        media = CallMedia(relay, "call-3", a_side=Side.CUSTOMER, srtp_sides=secure)
        out = await media.relay(offer(4000), SDP, from_side=Side.CARRIER, kind="offer")
        audio = parse_sdp(out).media[0]
        assert audio.proto == "RTP/SAVP" and audio.crypto, out
        # A plain answer from the secure side cannot be anchored ...
        with pytest.raises(MediaSdpError):
            await media.relay(offer(4100), SDP, from_side=Side.CUSTOMER, kind="answer")
        # ... an SDES one can, and the carrier gets plain RTP.
        answer = offer(4100, "RTP/SAVP", KEY)
        plain = await media.relay(answer, SDP, from_side=Side.CUSTOMER, kind="answer")
        assert parse_sdp(plain).media[0].proto == "RTP/AVP" and b"crypto" not in plain
        await media.release()

    with_relay(scenario)


def test_rejecting_answer_rejects_every_stream_of_the_offer() -> None:
    answer = parse_sdp(rejecting_answer(offer(4000)))
    assert [(m.media, m.port, m.proto, m.formats) for m in answer.media] == [
        ("audio", 0, "RTP/AVP", ["0"]),
        ("video", 0, "RTP/AVP", ["96"]),
    ]
    assert rejecting_answer(b"not sdp") == b""


def test_rows_after_answer_end_by_bye() -> None:
    missing = missing_answer()
    assert (missing.code, missing.name, missing.source) == (
        4580, "invalid_sip_packet", HangupSource.ZENTRUNK,
    )  # fmt: skip
    assert missing.sip_status is None
    unanchored = answer_refusal(MediaSdpError("no c= line"))
    assert (unanchored.code, unanchored.sip_status) == (4430, None)
    assert answer_refusal(MediaError("relay gone")).code == 5270
    assert answer_refusal(PortsExhausted()).code == 5010


@pytest.mark.parametrize(
    ("secure", "transport", "body", "admitted"),
    [
        (True, "tls", b"", True),  # the edge offers SDES in its 200
        (True, "udp", b"", False),  # a secure trunk is TLS only
        (False, "udp", b"", True),
        (False, "tls", b"", False),  # TLS on a trunk that is not secure
        (True, "tls", offer(4000), False),  # an early offer must carry SRTP itself
        (True, "tls", offer(4000, "RTP/SAVP", KEY), True),
    ],
)
def test_a_delayed_offer_is_admitted_on_tls_alone(
    secure: bool, transport: str, body: bytes, admitted: bool
) -> None:
    assert transport_matches(secure, transport, body, SDP if body else None) is admitted
