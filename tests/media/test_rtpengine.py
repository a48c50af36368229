"""The rtpengine backend against a real rtpengine daemon (userspace forwarding)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from opentrunk.media.backend import Leg, MediaError, MediaTimeout
from opentrunk.media.bencode import BencodeError, decode, encode
from opentrunk.media.rtpengine import RtpengineBackend

from .peers import HOST, RtpPeer, sdp_crypto_key, sdp_port, srtp_session, voice
from .rtpengine_daemon import require_rtpengine, rtpengine_daemon
from .test_relay import settle


def test_bencode_round_trip() -> None:
    value = {"command": "offer", "flags": ["a", "b"], "n": -5, "sdp": "v=0\r\n", "d": {"x": 1}}
    assert encode(value) == b"d7:command5:offer1:dd1:xi1ee5:flagsl1:a1:be1:ni-5e3:sdp5:v=0\r\ne"  # type: ignore[arg-type]
    assert decode(encode(value)) == value  # type: ignore[arg-type]
    for bad in (b"i12", b"l", b"5:abc", b"x", b"d1:ai1e", b"i1ei2e", b"di1ei2ee"):
        with pytest.raises(BencodeError):
            decode(bad)


@pytest.fixture(scope="module")
def ng_port() -> object:
    binary = require_rtpengine()
    with rtpengine_daemon(binary, 44000, 44999) as port:
        yield port


def run(ng_port: int, body: Callable[[RtpengineBackend], Awaitable[None]], **kw: float) -> None:
    async def main() -> None:
        backend = RtpengineBackend(HOST, ng_port, **kw)
        await backend.start()
        try:
            await asyncio.wait_for(body(backend), 30)
        finally:
            await backend.close()

    uvloop.run(main())


def test_audio_both_ways_and_figures(ng_port: int) -> None:
    async def body(backend: RtpengineBackend) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        to_b = await backend.offer("e1", "a", a.sdp())
        to_a = await backend.answer("e1", "b", b.sdp())
        assert f" {a.port} ".encode() not in to_b and f" {b.port} ".encode() not in to_a
        a_dest, b_dest = (HOST, sdp_port(to_a)), (HOST, sdp_port(to_b))
        up = [voice(i, i * 160, 1) for i in range(30)]
        for p in up:
            a.send_to(p, a_dest)
            await asyncio.sleep(0.001)
        await settle(lambda: len(b.received.rtp) == 30)
        assert [d for _, d, _ in b.received.rtp] == up
        down = [voice(i, i * 160, 2) for i in range(10)]
        for p in down:
            b.send_to(p, b_dest)
            await asyncio.sleep(0.001)
        await settle(lambda: len(a.received.rtp) == 10)
        assert [d for _, d, _ in a.received.rtp] == down
        quality = await backend.stats("e1")
        assert quality is not None
        by_leg = {s.leg: s for s in quality.streams}
        assert (by_leg["a"].packets, by_leg["a"].bytes) == (30, 30 * 172)
        assert by_leg["b"].packets == 10
        final = await backend.delete("e1")
        assert final is not None and len(final.streams) == 2
        assert await backend.delete("e1") is None
        with pytest.raises(MediaError):
            await backend.ng.command({"command": "query", "call-id": "e1"})
        a.close(), b.close()

    run(ng_port, body)


def test_srtp_customer_plain_carrier(ng_port: int) -> None:
    async def body(backend: RtpengineBackend) -> None:
        secure: frozenset[Leg] = frozenset({"a"})
        pbx, carrier = await RtpPeer().open(), await RtpPeer().open()
        to_carrier = await backend.offer("e2", "a", pbx.sdp(srtp=True), srtp_legs=secure)
        assert b"RTP/AVP" in to_carrier and b"a=crypto" not in to_carrier
        to_pbx = await backend.answer("e2", "b", carrier.sdp())
        assert b"RTP/SAVP" in to_pbx
        tx = srtp_session(pbx.key, inbound=False)
        pbx.send_to(tx.protect(voice(1, 160, 7)), (HOST, sdp_port(to_pbx)))
        await settle(lambda: len(carrier.received.rtp) == 1)
        assert carrier.received.rtp[0][1] == voice(1, 160, 7)
        carrier.send_to(voice(2, 320, 8), (HOST, sdp_port(to_carrier)))
        await settle(lambda: len(pbx.received.rtp) == 1)
        rx = srtp_session(sdp_crypto_key(to_pbx), inbound=True)
        assert rx.unprotect(pbx.received.rtp[0][1]) == voice(2, 320, 8)
        await backend.delete("e2")
        pbx.close(), carrier.close()

    run(ng_port, body)


def test_silence_reported_as_timeout(ng_port: int) -> None:
    async def body(backend: RtpengineBackend) -> None:
        events: list[MediaTimeout] = []
        backend.set_timeout_handler(events.append)
        a, b = await RtpPeer().open(), await RtpPeer().open()
        await backend.offer("e3", "a", a.sdp())
        to_a = await backend.answer("e3", "b", b.sdp(direction="recvonly"))
        a.send_to(voice(1, 160, 1), (HOST, sdp_port(to_a)))
        assert await backend.check_call("e3", now=time.time() + 0.5) is None
        event = await backend.check_call("e3", now=time.time() + 5)
        # Only a was expected to send (b said recvonly), so a's silence is the timeout.
        assert event is not None and (event.call_id, event.leg) == ("e3", "a")
        assert events == [event]
        await backend.delete("e3")
        a.close(), b.close()

    run(ng_port, body, rtp_timeout=2.0)


def test_call_dropped_by_rtpengine_is_reported(ng_port: int) -> None:
    async def body(backend: RtpengineBackend) -> None:
        events: list[MediaTimeout] = []
        backend.set_timeout_handler(events.append)
        a, b = await RtpPeer().open(), await RtpPeer().open()
        await backend.offer("e4", "a", a.sdp())
        await backend.answer("e4", "b", b.sdp())
        # Gone behind the backend's back (rtpengine's own timeout, a restart...).
        await backend.ng.command({"command": "delete", "call-id": "e4"})
        event = await backend.check_call("e4")
        assert event is not None and event.call_id == "e4" and events == [event]
        assert await backend.check_call("e4") is None  # reported once
        assert await backend.delete("e4") is None  # what the edge does next: no error
        a.close(), b.close()

    run(ng_port, body)
