"""Test RTP endpoints: a UDP socket pair (RTP, RTCP) on loopback that sends with
injected impairments and records what it receives, with arrival times."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pylibsrtp

from opentrunk.media.rtp import build_rtp

HOST = "127.0.0.1"


@dataclass
class Received:
    rtp: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    rtcp: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, sink: list[tuple[float, bytes, tuple[str, int]]]) -> None:
        self.sink = sink
        self.on_packet: Callable[[bytes, tuple[str, int]], None] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sink.append((time.monotonic(), data, addr))
        if self.on_packet is not None:
            self.on_packet(data, addr)


class RtpPeer:
    """A PBX or carrier media endpoint: RTP on an even port, RTCP on the next."""

    def __init__(self) -> None:
        self.received = Received()
        self.rtp: asyncio.DatagramTransport
        self.rtcp: asyncio.DatagramTransport
        self.rtp_proto = _Proto(self.received.rtp)
        self.rtcp_proto = _Proto(self.received.rtcp)
        self.port = 0
        self.key = os.urandom(30)
        self.sent: list[tuple[float, bytes]] = []  # (send time, packet)

    async def open(self) -> RtpPeer:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            self.rtp, _p = await loop.create_datagram_endpoint(
                lambda: self.rtp_proto, local_addr=(HOST, 0)
            )
            self.port = self.rtp.get_extra_info("sockname")[1]
            if self.port % 2 == 0 and self.port < 65535:
                try:
                    self.rtcp, _q = await loop.create_datagram_endpoint(
                        lambda: self.rtcp_proto, local_addr=(HOST, self.port + 1)
                    )
                    return self
                except OSError:
                    pass
            self.rtp.close()
        raise RuntimeError("no even/odd port pair")

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()

    @property
    def b64key(self) -> str:
        return base64.b64encode(self.key).decode()

    def sdp(
        self,
        *,
        srtp: bool = False,
        direction: str = "sendrecv",
        version: int = 1,
        host: str = HOST,
        port: int | None = None,
    ) -> bytes:
        proto = "RTP/SAVP" if srtp else "RTP/AVP"
        lines = [
            "v=0",
            f"o=peer 1000 {version} IN IP4 {host}",
            "s=-",
            f"c=IN IP4 {host}",
            "t=0 0",
            f"m=audio {self.port if port is None else port} {proto} 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            f"a={direction}",
        ]
        if srtp:
            lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{self.b64key}")
        return ("\r\n".join(lines) + "\r\n").encode()

    def send_to(self, packet: bytes, dest: tuple[str, int]) -> None:
        self.sent.append((time.monotonic(), packet))
        self.rtp.sendto(packet, dest)

    def send_rtcp_to(self, packet: bytes, dest: tuple[str, int]) -> None:
        self.rtcp.sendto(packet, dest)


def srtp_session(key: bytes, inbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND
        if inbound
        else pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
    )
    return pylibsrtp.Session(policy)


def sdp_port(body: bytes) -> int:
    for line in body.decode().split("\r\n"):
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise AssertionError("no audio line")


def sdp_crypto_key(body: bytes) -> bytes:
    for line in body.decode().split("\r\n"):
        if line.startswith("a=crypto:"):
            return base64.b64decode(line.split("inline:")[1].split("|")[0])
    raise AssertionError("no crypto line")


def rfc3550_jitter_ms(arrivals: list[float], timestamps: list[int], rate: int = 8000) -> float:
    """Reference interarrival jitter, written independently of the relay's code."""
    jitter = 0.0
    prev: float | None = None
    for arrival, ts in zip(arrivals, timestamps, strict=True):
        transit = arrival * rate - ts
        if prev is not None:
            jitter += (abs(transit - prev) - jitter) / 16
        prev = transit
    return 1000 * jitter / rate


def voice(seq: int, ts: int, ssrc: int, pt: int = 0) -> bytes:
    return build_rtp(pt, seq, ts, ssrc, bytes([seq & 0xFF]) * 160)
