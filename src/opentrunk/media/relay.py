"""The embedded RTP relay: the default `MediaBackend`.

Owns the calls it anchors: per call, per m= line, one `RelaySide` per leg,
each with its own RTP/RTCP port pair from the `PortPool`. A packet arriving on
leg X's port comes from X's peer; it is measured on X's side and sent out of
the other leg's port to the other leg's peer. Symmetric RTP: a side sends to
the address its peer's packets really come from (latched on the first packet
after each SDP from that peer), falling back to the SDP address before that;
packets from any other address are dropped and counted.

SRTP (SDES, AES_CM_128_HMAC_SHA1_80) is done per side with pylibsrtp: a side
whose leg is secure decrypts what its peer sends (a packet failing
authentication or replay checks is dropped and counted) and encrypts what is
sent to it. Measurement happens on the plain packet.

A watchdog task reports streams silent past the RTP timeout to the timeout
handler once per call; streams whose sender said (in its SDP) it will not send
are on hold and never time out.

Cost: each socket is a plain event-loop reader (no asyncio transport), so a
packet costs one `recvfrom`, one header unpack, the statistics update and one
`sendto`, and a call's four sockets are opened and closed without coroutines
(bench/media_relay.py, bench/media_session.py). The relay runs in the edge's
process (backend "relay") or alone in a child process (backend
"relay-process", `relay_process.RelayProcess`), where the edge's work cannot
delay its packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from dataclasses import dataclass

import pylibsrtp

from opentrunk.media.backend import (
    CallQuality,
    Leg,
    MediaError,
    MediaTimeout,
    StreamQuality,
    TimeoutHandler,
    other_leg,
)
from opentrunk.media.port_pool import PortPair, PortPool
from opentrunk.media.rtp import RTCP_SR, parse_rtcp
from opentrunk.media.sdp_anchor import PeerMedia, anchor_sdp, parse, read_peer_media
from opentrunk.media.stats import ReceptionStats, RttMeter

__all__ = ["RelayConfig", "RelaySide", "RtpRelay"]

log = logging.getLogger(__name__)
_unpack_rtp = struct.Struct("!BBHII").unpack_from
_monotonic = time.monotonic
# Larger than any RTP/RTCP datagram over an Ethernet path (jumbo frames included);
# a longer one would be truncated, which no media peer sends.
_DATAGRAM_MAX = 9216
Address = tuple[str, int]


@dataclass(frozen=True)
class RelayConfig:
    bind_address: str = "127.0.0.1"
    advertised_address: str = ""  # what SDP shows; empty: the bind address
    port_min: int = 10000
    port_max: int = 20000
    rtp_timeout: float = 60.0
    timeout_check_interval: float = 1.0
    # SCHED_FIFO priority (1-99) the relay process asks for; 0 keeps normal scheduling.
    # Only the relay in its own process applies it (never the whole serve process).
    realtime_priority: int = 0

    @property
    def sdp_address(self) -> str:
        return self.advertised_address or self.bind_address


class RelaySide:
    """One leg of one stream: the relay's ports facing that leg's peer.

    Its two sockets are read by `on_rtp_readable`/`on_rtcp_readable`, registered
    with the event loop as plain readers: one `recvfrom` per wake-up, one
    `sendto` straight on the peer side's socket, no transport or protocol objects
    and no buffering between them (a datagram the kernel will not take is dropped
    and counted, as a router would).
    """

    __slots__ = (
        "active_since",
        "foreign",
        "index",
        "leg",
        "local_sdes",
        "no_destination",
        "pair",
        "peer",
        "peer_media",
        "rtcp_latched",
        "rtcp_sock",
        "rtp_latched",
        "rtp_sock",
        "rtt",
        "send_errors",
        "srtp_failures",
        "srtp_rx",
        "srtp_tx",
        "stats",
    )

    def __init__(self, leg: Leg, index: int, pair: PortPair) -> None:
        self.leg: Leg = leg
        self.index = index
        self.pair = pair
        self.rtp_sock = pair.rtp_sock
        self.rtcp_sock = pair.rtcp_sock
        self.peer: RelaySide = self
        self.peer_media: PeerMedia | None = None
        self.rtp_latched: Address | None = None
        self.rtcp_latched: Address | None = None
        self.stats = ReceptionStats()
        self.rtt = RttMeter()
        self.srtp_rx: pylibsrtp.Session | None = None
        self.srtp_tx: pylibsrtp.Session | None = None
        self.local_sdes: tuple[int, bytes] | None = None
        self.srtp_failures = 0
        self.foreign = 0
        self.no_destination = 0
        self.send_errors = 0
        self.active_since: float | None = None

    @property
    def port(self) -> int:
        return self.pair.port

    def rtp_destination(self) -> Address | None:
        if self.rtp_latched is not None:
            return self.rtp_latched
        pm = self.peer_media
        if pm is None or pm.host is None:
            return None
        return (pm.host, pm.rtp_port)

    def rtcp_destination(self) -> Address | None:
        if self.rtcp_latched is not None:
            return self.rtcp_latched
        pm = self.peer_media
        if pm is None or pm.host is None:
            return None
        return (pm.host, pm.rtcp_port)

    def quality(self) -> StreamQuality:
        pm = self.peer_media
        st = self.stats
        return StreamQuality(
            leg=self.leg,
            index=self.index,
            media=pm.media if pm else "audio",
            codec=pm.codec if pm else None,
            packets=st.packets,
            bytes=st.bytes,
            expected=st.expected,
            lost=st.lost,
            loss_percent=st.loss_percent,
            jitter_ms=st.jitter_ms,
            rtt_ms=self.rtt.rtt_ms,
            srtp_failures=self.srtp_failures,
            foreign_dropped=self.foreign,
        )

    # -- the forwarding path: called by the event loop, once per readable socket --

    def on_rtp_readable(self) -> None:
        try:
            data, addr = self.rtp_sock.recvfrom(_DATAGRAM_MAX)
        except OSError:  # nothing queued after all, or an error the next read reports
            return
        latched = self.rtp_latched
        if latched is not None and addr != latched:
            self.foreign += 1
            return
        rx = self.srtp_rx
        if rx is not None:
            try:
                data = rx.unprotect(data)
            except pylibsrtp.Error:
                self.srtp_failures += 1
                return
        if len(data) < 12 or data[0] >> 6 != 2:
            self.foreign += 1
            return
        if latched is None:
            self.rtp_latched = addr
        _b0, b1, seq, ts, ssrc = _unpack_rtp(data)
        self.stats.on_rtp(b1 & 0x7F, seq, ts, ssrc, len(data), _monotonic())
        peer = self.peer
        dest = peer.rtp_latched or peer.rtp_destination()
        if dest is None:
            self.no_destination += 1
            return
        tx = peer.srtp_tx
        if tx is not None:
            data = tx.protect(data)
        try:
            peer.rtp_sock.sendto(data, dest)
        except OSError:
            self.send_errors += 1

    def on_rtcp_readable(self) -> None:
        try:
            data, addr = self.rtcp_sock.recvfrom(_DATAGRAM_MAX)
        except OSError:
            return
        latched = self.rtcp_latched
        if latched is not None and addr != latched:
            self.foreign += 1
            return
        rx = self.srtp_rx
        if rx is not None:
            try:
                data = rx.unprotect_rtcp(data)
            except pylibsrtp.Error:
                self.srtp_failures += 1
                return
        if latched is None:
            self.rtcp_latched = addr
        now = _monotonic()
        peer = self.peer
        for report in parse_rtcp(data):
            if report.packet_type == RTCP_SR and report.ntp_middle32 is not None:
                peer.rtt.sr_forwarded(report.ntp_middle32, now)
            for block in report.blocks:
                self.rtt.report_received(block.lsr, block.dlsr, now)
        dest = peer.rtcp_destination()
        if dest is None:
            return
        tx = peer.srtp_tx
        if tx is not None:
            data = tx.protect_rtcp(data)
        try:
            peer.rtcp_sock.sendto(data, dest)
        except OSError:
            self.send_errors += 1


class _RelayCall:
    __slots__ = ("call_id", "last_offer_from", "srtp_legs", "streams", "timed_out")

    def __init__(self, call_id: str, srtp_legs: frozenset[Leg]) -> None:
        self.call_id = call_id
        self.srtp_legs = srtp_legs
        self.streams: list[dict[str, RelaySide]] = []
        self.timed_out = False
        self.last_offer_from: Leg | None = None

    def sides(self) -> list[RelaySide]:
        return [s for stream in self.streams for s in stream.values()]


def _srtp_session(key: bytes, inbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND
        if inbound
        else pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    # Re-INVITEs may replay; libsrtp's replay window still rejects real replays.
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


class RtpRelay:
    """The embedded relay (see the module docstring)."""

    def __init__(self, config: RelayConfig | None = None) -> None:
        self.config = config or RelayConfig()
        self.pool = PortPool(self.config.bind_address, self.config.port_min, self.config.port_max)
        self._calls: dict[str, _RelayCall] = {}
        self._handler: TimeoutHandler | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="rtp-timeout-watchdog")

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for call_id in list(self._calls):
            await self.delete(call_id)

    def set_timeout_handler(self, handler: TimeoutHandler | None) -> None:
        self._handler = handler

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # -- offer / answer ---------------------------------------------------------

    async def offer(
        self,
        call_id: str,
        from_leg: Leg,
        sdp: bytes,
        *,
        srtp_legs: frozenset[Leg] = frozenset(),
    ) -> bytes:
        return self.offer_nowait(call_id, from_leg, sdp, srtp_legs=srtp_legs)

    async def answer(self, call_id: str, from_leg: Leg, sdp: bytes) -> bytes:
        return self.answer_nowait(call_id, from_leg, sdp)

    # The relay never waits on anything: the *_nowait forms are the same calls for a
    # caller that is not a coroutine (the relay process's control channel).

    def offer_nowait(
        self,
        call_id: str,
        from_leg: Leg,
        sdp: bytes,
        *,
        srtp_legs: frozenset[Leg] = frozenset(),
    ) -> bytes:
        call = self._calls.get(call_id)
        created = call is None
        if call is None:
            call = _RelayCall(call_id, srtp_legs)
        try:
            body = self._negotiate(call, from_leg, sdp)
        except BaseException:
            if created:
                self._free(call)
            raise
        if created:
            self._calls[call_id] = call
        call.last_offer_from = from_leg
        return body

    def answer_nowait(self, call_id: str, from_leg: Leg, sdp: bytes) -> bytes:
        call = self._calls.get(call_id)
        if call is None:
            raise MediaError("answer for a call the relay does not know")
        return self._negotiate(call, from_leg, sdp)

    def _negotiate(self, call: _RelayCall, from_leg: Leg, body: bytes) -> bytes:
        to_leg = other_leg(from_leg)
        session = parse(body)
        peers = read_peer_media(session, want_srtp=from_leg in call.srtp_legs)
        ports: list[int | None] = []
        sdes: list[tuple[int, bytes] | None] = []
        now = time.monotonic()
        for index, pm in enumerate(peers):
            if index >= len(call.streams):
                call.streams.append(self._open_stream(index))
            stream = call.streams[index]
            side, facing = stream[from_leg], stream[to_leg]
            self._apply_peer_media(side, pm)
            # Media moves or starts: silence is counted from now on.
            side.active_since = now
            facing.active_since = now
            if pm is None:
                ports.append(None)
                sdes.append(None)
                continue
            ports.append(facing.port)
            if to_leg in call.srtp_legs:
                tag = pm.sdes_tag if pm.sdes_tag is not None else 1
                if facing.local_sdes is None:
                    facing.local_sdes = (tag, os.urandom(30))
                    facing.srtp_tx = _srtp_session(facing.local_sdes[1], inbound=False)
                elif facing.local_sdes[0] != tag:
                    facing.local_sdes = (tag, facing.local_sdes[1])
                sdes.append(facing.local_sdes)
            else:
                sdes.append(None)
        return anchor_sdp(session, address=self.config.sdp_address, ports=ports, sdes=sdes)

    @staticmethod
    def _apply_peer_media(side: RelaySide, pm: PeerMedia | None) -> None:
        old = side.peer_media
        side.peer_media = pm
        if pm is None:
            return
        if old is None or (old.host, old.rtp_port) != (pm.host, pm.rtp_port):
            # The peer moved its media (re-INVITE/UPDATE): latch afresh.
            side.rtp_latched = None
            side.rtcp_latched = None
        if pm.media_payload_types:
            side.stats.jitter_payload_types = pm.media_payload_types
        side.stats.clock_rate = pm.clock_rate
        if pm.sdes_key is not None and (old is None or old.sdes_key != pm.sdes_key):
            side.srtp_rx = _srtp_session(pm.sdes_key, inbound=True)

    def _open_stream(self, index: int) -> dict[str, RelaySide]:
        """Two sides, each with a freshly bound port pair read by the loop directly.

        Synchronous and free of asyncio transports: opening and closing a call's four
        sockets is on the SIP edge's per-call path (bench/media_session.py).
        """
        add_reader = self._event_loop().add_reader
        stream: dict[str, RelaySide] = {}
        try:
            legs: tuple[Leg, Leg] = ("a", "b")
            for leg in legs:
                side = RelaySide(leg, index, self.pool.allocate())
                stream[leg] = side
                add_reader(side.rtp_sock, side.on_rtp_readable)
                add_reader(side.rtcp_sock, side.on_rtcp_readable)
        except BaseException:
            for side in stream.values():
                self._close_side(side)
            raise
        stream["a"].peer = stream["b"]
        stream["b"].peer = stream["a"]
        return stream

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # -- teardown and figures -------------------------------------------------

    async def delete(self, call_id: str) -> CallQuality | None:
        return self.delete_nowait(call_id)

    def delete_nowait(self, call_id: str) -> CallQuality | None:
        call = self._calls.pop(call_id, None)
        if call is None:
            return None
        quality = self._quality(call)
        self._free(call)
        return quality

    def _free(self, call: _RelayCall) -> None:
        for side in call.sides():
            self._close_side(side)
            # The two sides of a stream point at each other: unlinked, reference
            # counting frees them (and their sockets, stats, peer media) now instead
            # of leaving ~20 objects per call to the cyclic collector's next pass.
            del side.peer
        call.streams.clear()

    def _close_side(self, side: RelaySide) -> None:
        loop = self._loop
        for sock in (side.rtp_sock, side.rtcp_sock):
            if sock.fileno() < 0:
                continue  # closed already
            if loop is not None:
                loop.remove_reader(sock)
            sock.close()
        self.pool.release(side.port)

    async def stats(self, call_id: str) -> CallQuality | None:
        return self.stats_nowait(call_id)

    def stats_nowait(self, call_id: str) -> CallQuality | None:
        call = self._calls.get(call_id)
        return None if call is None else self._quality(call)

    @staticmethod
    def _quality(call: _RelayCall) -> CallQuality:
        return CallQuality(call.call_id, tuple(s.quality() for s in call.sides()))

    def side(self, call_id: str, leg: Leg, index: int = 0) -> RelaySide:
        """A call's side (for tests and diagnostics)."""
        return self._calls[call_id].streams[index][leg]

    # -- RTP timeout ----------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.timeout_check_interval)
            self.check_timeouts(time.monotonic())

    def check_timeouts(self, now: float) -> list[MediaTimeout]:
        """Report every call with a stream silent past the timeout (once per call)."""
        limit = self.config.rtp_timeout
        fired: list[MediaTimeout] = []
        for call in list(self._calls.values()):
            if call.timed_out:
                continue
            for side in call.sides():
                pm = side.peer_media
                # Only a stream negotiated on both legs, whose sender says it sends.
                if pm is None or not pm.sends or side.peer.peer_media is None:
                    continue
                since = side.active_since or now
                last = side.stats.last_arrival
                reference = since if last is None or last < since else last
                silent = now - reference
                if silent >= limit:
                    call.timed_out = True
                    event = MediaTimeout(call.call_id, side.leg, side.index, silent)
                    fired.append(event)
                    self._report(event)
                    break
        return fired

    def _report(self, event: MediaTimeout) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            log.exception("rtp timeout handler failed call_id=%s", event.call_id)
