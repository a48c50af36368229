"""Port accounting: 1,000 calls ending every way leave no port bound."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest
import uvloop

from opentrunk.media.backend import MediaError, MediaSdpError, MediaTimeout, PortsExhausted
from opentrunk.media.port_pool import PortPool, parse_port_range
from opentrunk.media.relay import RelayConfig, RtpRelay

from .peers import HOST, RtpPeer, sdp_port, voice

LOW, HIGH = 42000, 42199  # 100 pairs: every pair is reused ~40 times below


def bound_ports(low: int, high: int) -> list[int]:
    """Ports of the range some socket holds (bind test; the relay does not SO_REUSEADDR)."""
    taken = []
    for port in range(low, high + 1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((HOST, port))
        except OSError:
            taken.append(port)
        finally:
            sock.close()
    return taken


def test_parse_port_range() -> None:
    assert parse_port_range("10000-20000") == (10000, 20000)
    for bad in ("10000", "20000-10000", "80-90", "a-b"):
        with pytest.raises(ValueError):
            parse_port_range(bad)


def test_pool_skips_ports_held_by_others_and_exhausts() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((HOST, 42301))  # the RTCP port of the first pair
    try:
        pool = PortPool(HOST, 42300, 42305)  # pairs 42300, 42302, 42304
        first, second = pool.allocate(), pool.allocate()
        assert (first.port, second.port) == (42302, 42304)
        with pytest.raises(PortsExhausted):
            pool.allocate()
        for pair in (first, second):
            pair.rtp_sock.close(), pair.rtcp_sock.close()
            pool.release(pair.port)
        pool.release(first.port)  # twice: harmless
        assert pool.in_use == 0
    finally:
        blocker.close()


def test_thousand_calls_ending_every_way_leak_no_port() -> None:
    async def main() -> dict[str, int]:
        relay = RtpRelay(
            RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH, rtp_timeout=0.05)
        )
        timeouts: list[MediaTimeout] = []
        relay.set_timeout_handler(timeouts.append)
        a, b = await RtpPeer().open(), await RtpPeer().open()
        rng = random.Random(11)
        ends = {"normal": 0, "no_answer": 0, "bad_sdp": 0, "timeout": 0, "exhausted": 0}

        async def one(n: int) -> None:
            call_id = f"call-{n}"
            kind = rng.choice(["normal", "no_answer", "bad_sdp", "timeout"])
            if kind == "bad_sdp":
                with pytest.raises(MediaSdpError):
                    await relay.offer(call_id, "a", b"v=0\r\nm=audio x RTP/AVP 0\r\n")
                ends[kind] += 1
                return
            try:
                to_b = await relay.offer(call_id, "a", a.sdp())
            except PortsExhausted:
                ends["exhausted"] += 1
                return
            if kind == "no_answer":  # the carrier leg failed: the edge deletes the call
                await asyncio.sleep(0)
                await relay.delete(call_id)
            elif kind == "normal":
                await relay.answer(call_id, "b", b.sdp())
                b.send_to(voice(n & 0xFFFF, 0, 1), (HOST, sdp_port(to_b)))
                await asyncio.sleep(0.002)
                await relay.delete(call_id)
            else:
                await relay.answer(call_id, "b", b.sdp())
                fired = relay.check_timeouts(time.monotonic() + 1.0)
                assert any(e.call_id == call_id for e in fired) or any(
                    e.call_id == call_id for e in timeouts
                )
                await relay.delete(call_id)  # what the edge does on the timeout event
            ends[kind] += 1

        for start in range(0, 1000, 20):  # 20 calls at a time
            await asyncio.gather(*(one(n) for n in range(start, start + 20)))
        with pytest.raises(MediaError):
            await relay.answer("call-unknown", "b", b.sdp())
        await relay.close()
        a.close(), b.close()
        await asyncio.sleep(0.05)
        assert relay.pool.in_use == 0 and relay.active_calls == 0
        return ends

    ends = uvloop.run(main())
    assert sum(ends.values()) == 1000
    assert min(ends[k] for k in ("normal", "no_answer", "bad_sdp", "timeout")) > 150
    assert bound_ports(LOW, HIGH) == []


def test_exhausted_range_fails_cleanly() -> None:
    async def main() -> None:
        relay = RtpRelay(RelayConfig(bind_address=HOST, port_min=42400, port_max=42405))
        peer = await RtpPeer().open()
        await relay.offer("one", "a", peer.sdp())  # takes 2 of the 3 pairs
        with pytest.raises(PortsExhausted):
            await relay.offer("two", "a", peer.sdp())
        assert relay.pool.in_use == 2 and relay.active_calls == 1
        await relay.close()
        peer.close()
        await asyncio.sleep(0.05)

    uvloop.run(main())
    assert bound_ports(42400, 42405) == []
