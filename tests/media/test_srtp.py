"""SRTP towards the customer (SDES), plain RTP towards the carrier, through the relay."""

from __future__ import annotations

import asyncio

import pylibsrtp
import pytest

from opentrunk.media.backend import Leg, MediaSdpError
from opentrunk.media.relay import RtpRelay
from opentrunk.media.rtp import build_sr

from .peers import HOST, RtpPeer, sdp_crypto_key, sdp_port, srtp_session, voice
from .test_relay import run, settle

SECURE_A: frozenset[Leg] = frozenset({"a"})


def test_audio_both_ways_with_srtp_customer() -> None:
    async def body(relay: RtpRelay) -> None:
        pbx, carrier = await RtpPeer().open(), await RtpPeer().open()
        to_carrier = await relay.offer("s1", "a", pbx.sdp(srtp=True), srtp_legs=SECURE_A)
        assert b"RTP/AVP" in to_carrier and b"crypto" not in to_carrier
        assert pbx.b64key.encode() not in to_carrier
        to_pbx = await relay.answer("s1", "b", carrier.sdp())
        assert b"RTP/SAVP" in to_pbx and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in to_pbx
        relay_key = sdp_crypto_key(to_pbx)
        assert relay_key != pbx.key
        pbx_dest, carrier_dest = (HOST, sdp_port(to_pbx)), (HOST, sdp_port(to_carrier))

        pbx_tx = srtp_session(pbx.key, inbound=False)
        plain_up = [voice(i, i * 160, 0xA) for i in range(30)]
        for p in plain_up:
            pbx.send_to(pbx_tx.protect(p), pbx_dest)
        await settle(lambda: len(carrier.received.rtp) == 30)
        assert [d for _, d, _ in carrier.received.rtp] == plain_up  # decrypted for the carrier

        plain_down = [voice(i, i * 160, 0xB) for i in range(30)]
        for p in plain_down:
            carrier.send_to(p, carrier_dest)
        await settle(lambda: len(pbx.received.rtp) == 30)
        pbx_rx = srtp_session(relay_key, inbound=True)
        encrypted = [d for _, d, _ in pbx.received.rtp]
        assert all(len(e) == len(p) + 10 for e, p in zip(encrypted, plain_down, strict=True))
        assert [pbx_rx.unprotect(e) for e in encrypted] == plain_down

        # SRTCP: the carrier's plain SR reaches the PBX encrypted and decrypts.
        carrier.send_rtcp_to(build_sr(0xB, 1.7e9, 0, 30, 4800), (HOST, carrier_dest[1] + 1))
        await settle(lambda: len(pbx.received.rtcp) == 1)
        assert pbx_rx.unprotect_rtcp(pbx.received.rtcp[0][1]) == build_sr(0xB, 1.7e9, 0, 30, 4800)

        quality = await relay.stats("s1")
        assert quality is not None and quality.packet_loss == 0.0
        pbx.close(), carrier.close()

    run(body)


def test_tampered_srtp_is_dropped_and_counted() -> None:
    async def body(relay: RtpRelay) -> None:
        pbx, carrier = await RtpPeer().open(), await RtpPeer().open()
        to_carrier = await relay.offer("s2", "a", pbx.sdp(srtp=True), srtp_legs=SECURE_A)
        to_pbx = await relay.answer("s2", "b", carrier.sdp())
        pbx_dest = (HOST, sdp_port(to_pbx))
        tx = srtp_session(pbx.key, inbound=False)
        good = tx.protect(voice(1, 160, 5))
        tampered = bytearray(tx.protect(voice(2, 320, 5)))
        tampered[20] ^= 0x01
        forged = srtp_session(bytes(30), inbound=False).protect(voice(3, 480, 5))  # wrong key
        for packet in (good, bytes(tampered), forged, good):  # the last one is a replay
            pbx.send_to(packet, pbx_dest)
            await asyncio.sleep(0.01)
        await settle(lambda: relay.side("s2", "a").srtp_failures >= 3)
        await asyncio.sleep(0.05)
        assert [d for _, d, _ in carrier.received.rtp] == [voice(1, 160, 5)]
        side = relay.side("s2", "a")
        assert side.srtp_failures == 3
        quality = await relay.stats("s2")
        assert quality is not None
        assert sum(s.srtp_failures for s in quality.streams) == 3
        assert sdp_port(to_carrier) > 0
        pbx.close(), carrier.close()

    run(body)


def test_inbound_call_relay_offers_srtp_to_customer() -> None:
    async def body(relay: RtpRelay) -> None:
        carrier, pbx = await RtpPeer().open(), await RtpPeer().open()
        secure_b: frozenset[Leg] = frozenset({"b"})
        to_pbx = await relay.offer("s3", "a", carrier.sdp(), srtp_legs=secure_b)
        relay_key = sdp_crypto_key(to_pbx)
        to_carrier = await relay.answer("s3", "b", pbx.sdp(srtp=True))
        assert b"crypto" not in to_carrier
        carrier.send_to(voice(7, 1120, 9), (HOST, sdp_port(to_carrier)))
        await settle(lambda: len(pbx.received.rtp) == 1)
        rx = srtp_session(relay_key, inbound=True)
        assert rx.unprotect(pbx.received.rtp[0][1]) == voice(7, 1120, 9)
        with pytest.raises(pylibsrtp.Error):
            srtp_session(pbx.key, inbound=True).unprotect(pbx.received.rtp[0][1])
        pbx.close(), carrier.close()

    run(body)


def test_secure_leg_without_key_is_refused_without_leaking() -> None:
    async def body(relay: RtpRelay) -> None:
        pbx = await RtpPeer().open()
        with pytest.raises(MediaSdpError):
            await relay.offer("s4", "a", pbx.sdp(srtp=False), srtp_legs=SECURE_A)
        assert relay.pool.in_use == 0 and relay.active_calls == 0
        pbx.close()

    run(body)
