"""rtpengine as the media backend, driven over its ng control protocol.

Owns the ng client (bencoded dictionaries over UDP, each request prefixed by a
unique cookie that rtpengine echoes; a retransmission reuses the cookie, which
rtpengine answers from its cache, so retries are safe) and the mapping of the
`MediaBackend` interface onto ng commands:

- legs are rtpengine tags "a" and "b"; an offer from leg X is `offer` with
  from-tag X, its answer is `answer` with from-tag X and to-tag Y;
- SRTP towards a leg is asked for with transport-protocol RTP/SAVP (SDES,
  AES_CM_128_HMAC_SHA1_80 only, no DTLS), plain towards the other with RTP/AVP;
  ICE is removed, origin and connection lines are replaced, RTCP is
  demultiplexed;
- figures come from `query` (`_quality`, docs/media.md "rtpengine statistics"):
  packets and bytes per stream from rtpengine's own counters; loss, jitter and
  round trip from its per-SSRC section, which holds what each peer's RTCP
  receiver reports said and the round trip rtpengine timed between a sender
  report it forwarded and the report block answering it. A figure rtpengine
  did not report (no RTCP from that peer) is None;
- the RTP timeout is ours, like the embedded relay's: a watchdog polls `query`
  and compares each stream's "last packet" with the configured timeout, so the
  edge sees the same `MediaTimeout` events whichever backend runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from opentrunk.media.backend import (
    CallQuality,
    Leg,
    MediaError,
    MediaTimeout,
    StreamQuality,
    TimeoutHandler,
    other_leg,
)
from opentrunk.media.bencode import BencodeError, Value, decode, encode
from opentrunk.media.sdp_anchor import PeerMedia, parse, read_peer_media

__all__ = ["NgClient", "PeerReport", "RtpengineBackend", "peer_report"]

log = logging.getLogger(__name__)

# Seconds `close` waits for the timeout watchdog to end once cancelled.
CLOSE_WAIT = 2.0

# The SDES suites rtpengine 10.5 knows besides AES_CM_128_HMAC_SHA1_80.
_OTHER_SDES_SUITES = (
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
)


class _NgProtocol(asyncio.DatagramProtocol):
    def __init__(self, pending: dict[bytes, asyncio.Future[dict[str, Value]]]) -> None:
        self.pending = pending

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cookie, _, body = data.partition(b" ")
        future = self.pending.get(cookie)
        if future is None or future.done():
            return
        try:
            reply = decode(body)
        except BencodeError as exc:
            future.set_exception(MediaError(f"bad ng reply: {exc}"))
            return
        if not isinstance(reply, dict):
            future.set_exception(MediaError("ng reply is not a dictionary"))
            return
        future.set_result(reply)


class NgClient:
    """Request/response over rtpengine's ng UDP port."""

    def __init__(self, host: str, port: int, *, timeout: float = 1.0, attempts: int = 3) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.attempts = attempts
        self._pending: dict[bytes, asyncio.Future[dict[str, Value]]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._prefix = os.urandom(4).hex()
        self._counter = 0

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _NgProtocol(self._pending), remote_addr=self.address
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def command(self, request: dict[str, Value]) -> dict[str, Value]:
        if self._transport is None:
            await self.connect()
        assert self._transport is not None
        command = str(request.get("command", ""))
        self._counter += 1
        cookie = f"{self._prefix}{self._counter:x}".encode()
        future: asyncio.Future[dict[str, Value]] = asyncio.get_running_loop().create_future()
        self._pending[cookie] = future
        packet = cookie + b" " + encode(request)
        try:
            for _ in range(self.attempts):
                self._transport.sendto(packet)
                # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races the reply (CPython gh-86296), and a watchdog
                # cancelled that way never stopped, hanging the edge's shutdown.
                done, _ = await asyncio.wait((future,), timeout=self.timeout)
                if done:
                    reply = future.result()
                    break
            else:
                raise MediaError(f"rtpengine did not answer {command}")
        finally:
            self._pending.pop(cookie, None)
        if reply.get("result") == "error":
            reason = str(reply.get("error-reason", "error"))
            raise MediaError(f"rtpengine: {reason}")
        return reply


@dataclass
class _Call:
    srtp_legs: frozenset[Leg]
    offerer: Leg = "a"
    media: dict[str, list[PeerMedia | None]] = field(default_factory=dict)
    negotiated_at: float = 0.0
    timed_out: bool = False


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


StreamPair = tuple[dict[str, Any] | None, dict[str, Any] | None]


def _stream_pairs(reply: dict[str, Any]) -> dict[tuple[Leg, int], StreamPair]:
    """(leg, m= index) -> (RTP stream, RTCP stream) as `query` lists them per tag.

    A tag's stream is what rtpengine receives from that leg's peer (its counters,
    its "last packet", the SSRC the peer sends with).
    """
    out: dict[tuple[Leg, int], StreamPair] = {}
    for tag, monologue in _as_dict(reply.get("tags")).items():
        if tag not in ("a", "b"):
            continue
        leg: Leg = "a" if tag == "a" else "b"
        for medium in _as_list(_as_dict(monologue).get("medias")):
            medium = _as_dict(medium)
            index = int(_number(medium.get("index")) or 1) - 1
            rtp: dict[str, Any] | None = None
            rtcp: dict[str, Any] | None = None
            for stream in _as_list(medium.get("streams")):
                stream = _as_dict(stream)
                flags = _as_list(stream.get("flags"))
                if "RTP" in flags and rtp is None:
                    rtp = stream
                elif "RTCP" in flags and rtcp is None:
                    rtcp = stream
            out[(leg, index)] = (rtp, rtcp)
    return out


def _medium_type(reply: dict[str, Any], leg: Leg, index: int) -> str | None:
    for medium in _as_list(_as_dict(_as_dict(reply.get("tags")).get(leg)).get("medias")):
        medium = _as_dict(medium)
        if int(_number(medium.get("index")) or 1) - 1 == index:
            kind = medium.get("type")
            return kind if isinstance(kind, str) else None
    return None


@dataclass(frozen=True)
class PeerReport:
    """What one leg's peer reported in its RTCP receiver reports, as rtpengine keeps it.

    `lost` and `jitter_ms` are about the stream that peer receives (the other leg's,
    relayed by rtpengine); `rtt_ms` is the round trip between rtpengine and that peer.
    """

    rtt_ms: float | None
    lost: int | None
    jitter_ms: float | None


def _signed24(value: float) -> int:
    """RFC 3550's cumulative loss is a signed 24-bit field that rtpengine prints
    unsigned; duplicates can make it negative, which counts here as no loss."""
    lost = int(value) & 0xFFFFFF
    return 0 if lost & 0x800000 else lost


def peer_report(entry: dict[str, Any]) -> PeerReport | None:
    """Read one SSRC entry of `query`; None when it holds no report.

    rtpengine lists a reporting SSRC with "cumulative loss" (from the last report
    block), "average MOS" (means over the reports it rated) and "MOS progression"
    (up to about ten of the reports, oldest first). Taken from them:

    - the round trip of this leg alone: the mean "round-trip time leg" (µs;
      "round-trip time" adds the other leg's, which `CallQuality` does itself).
      0 is rtpengine's "no sender report matched": not measured;
    - jitter (whole ms) from the latest report listed: RFC 3550 jitter is already
      a running estimate, and a mean over the call would drag in its warm-up from
      zero (the first reports of a 20 ms stream say 10 ms);
    - the cumulative loss.
    """
    average = _as_dict(entry.get("average MOS"))
    if not average:
        return None
    rtt_us = _number(average.get("round-trip time leg"))
    cumulative = _number(entry.get("cumulative loss"))
    progression = _as_list(_as_dict(entry.get("MOS progression")).get("entries"))
    latest = _as_dict(progression[-1]) if progression else {}
    jitter = _number(latest.get("jitter"))
    if jitter is None:
        jitter = _number(average.get("jitter"))
    return PeerReport(
        rtt_ms=rtt_us / 1000.0 if rtt_us else None,
        lost=None if cumulative is None else _signed24(cumulative),
        jitter_ms=jitter,
    )


def _peer_reports(
    reply: dict[str, Any], pairs: dict[tuple[Leg, int], StreamPair]
) -> dict[tuple[Leg, int], PeerReport]:
    """(leg, m= index) -> that leg's peer's reports, found by the SSRC the peer sends
    its RTCP with (RFC 3550: the same as its RTP's, which is the fallback)."""
    section = _as_dict(reply.get("SSRC"))
    out: dict[tuple[Leg, int], PeerReport] = {}
    for key, (rtp, rtcp) in pairs.items():
        for stream in (rtcp, rtp):
            ssrc = _number(_as_dict(stream).get("SSRC"))
            if ssrc is None:
                continue
            report = peer_report(_as_dict(section.get(str(int(ssrc)))))
            if report is not None:
                out[key] = report
                break
    return out


class RtpengineBackend:
    """`MediaBackend` over an rtpengine the operator runs (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        rtp_timeout: float = 60.0,
        timeout_check_interval: float = 1.0,
        ng_timeout: float = 1.0,
    ) -> None:
        self.ng = NgClient(host, port, timeout=ng_timeout)
        self.rtp_timeout = rtp_timeout
        self.timeout_check_interval = timeout_check_interval
        self._calls: dict[str, _Call] = {}
        self._handler: TimeoutHandler | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ng.connect()
        await self.ng.command({"command": "ping"})
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="rtpengine-timeouts")

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            # Bounded: a stop must never wait on rtpengine (or on a lost cancellation).
            await asyncio.wait((self._watchdog,), timeout=CLOSE_WAIT)
            self._watchdog = None
        for call_id in list(self._calls):
            with contextlib.suppress(MediaError):
                await self.delete(call_id)
        self.ng.close()

    def set_timeout_handler(self, handler: TimeoutHandler | None) -> None:
        self._handler = handler

    @staticmethod
    def _flags(to_leg: Leg, call: _Call) -> dict[str, Value]:
        flags: dict[str, Value] = {
            "replace": ["origin", "session-connection"],
            "ICE": "remove",
            "rtcp-mux": ["demux"],
            "transport-protocol": "RTP/SAVP" if to_leg in call.srtp_legs else "RTP/AVP",
        }
        if to_leg in call.srtp_legs:
            # Left alone, rtpengine offers twelve SDES suites (NULL ciphers among them)
            # and a DTLS fingerprint; the edge offers SDES AES_CM_128_HMAC_SHA1_80 only,
            # like the embedded relay. 10.5 has no "only-<suite>", hence the exclusions.
            flags["SDES"] = [f"no-{suite}" for suite in _OTHER_SDES_SUITES]
            flags["DTLS"] = "off"
        return flags

    async def offer(
        self,
        call_id: str,
        from_leg: Leg,
        sdp: bytes,
        *,
        srtp_legs: frozenset[Leg] = frozenset(),
    ) -> bytes:
        call = self._calls.get(call_id) or _Call(srtp_legs)
        peers = read_peer_media(parse(sdp), want_srtp=from_leg in call.srtp_legs)
        to_leg = other_leg(from_leg)
        request: dict[str, Value] = {
            "command": "offer",
            "call-id": call_id,
            "from-tag": from_leg,
            "sdp": sdp.decode("utf-8", "surrogateescape"),
            **self._flags(to_leg, call),
        }
        if to_leg in call.media:
            request["to-tag"] = to_leg
        reply = await self.ng.command(request)
        self._calls[call_id] = call
        call.offerer = from_leg
        call.media[from_leg] = peers
        call.negotiated_at = time.time()
        return self._sdp(reply)

    async def answer(self, call_id: str, from_leg: Leg, sdp: bytes) -> bytes:
        call = self._calls.get(call_id)
        if call is None:
            raise MediaError("answer for a call the backend does not know")
        peers = read_peer_media(parse(sdp), want_srtp=from_leg in call.srtp_legs)
        to_leg = other_leg(from_leg)
        reply = await self.ng.command(
            {
                "command": "answer",
                "call-id": call_id,
                "from-tag": call.offerer,
                "to-tag": from_leg,
                "sdp": sdp.decode("utf-8", "surrogateescape"),
                **self._flags(to_leg, call),
            }
        )
        call.media[from_leg] = peers
        call.negotiated_at = time.time()
        return self._sdp(reply)

    @staticmethod
    def _sdp(reply: dict[str, Value]) -> bytes:
        body = reply.get("sdp")
        if not isinstance(body, str):
            raise MediaError("rtpengine reply without SDP")
        return body.encode("utf-8", "surrogateescape")

    async def delete(self, call_id: str) -> CallQuality | None:
        call = self._calls.pop(call_id, None)
        if call is None:
            return None
        quality: CallQuality | None = None
        try:
            quality = self._quality(call_id, call, await self.ng.command(self._query(call_id)))
            await self.ng.command({"command": "delete", "call-id": call_id})
        except MediaError as exc:
            # Already gone on rtpengine's side: nothing left to free or measure.
            if "unknown call" not in str(exc).lower():
                raise
        return quality

    async def stats(self, call_id: str) -> CallQuality | None:
        call = self._calls.get(call_id)
        if call is None:
            return None
        return self._quality(call_id, call, await self.ng.command(self._query(call_id)))

    @staticmethod
    def _query(call_id: str) -> dict[str, Value]:
        return {"command": "query", "call-id": call_id}

    # -- figures ---------------------------------------------------------------

    @staticmethod
    def _rtp_streams(reply: dict[str, Any]) -> list[tuple[Leg, int, dict[str, Any]]]:
        """(leg, m= index, the RTP stream dict) for every medium of both tags."""
        return [
            (leg, index, pair[0])
            for (leg, index), pair in _stream_pairs(reply).items()
            if pair[0] is not None
        ]

    def _quality(self, call_id: str, call: _Call, reply: dict[str, Any]) -> CallQuality:
        pairs = _stream_pairs(reply)
        reports = _peer_reports(reply, pairs)
        streams: list[StreamQuality] = []
        for (leg, index), (rtp, _rtcp) in pairs.items():
            if rtp is None:
                continue
            counters = _as_dict(rtp.get("stats"))
            peers = call.media.get(leg, [])
            pm = peers[index] if 0 <= index < len(peers) else None
            packets = int(_number(counters.get("packets")) or 0)
            own = reports.get((leg, index))
            # What arrived from this leg's peer is reported on by the other leg's peer,
            # which received it through rtpengine.
            far = reports.get((other_leg(leg), index))
            lost = far.lost if far is not None else None
            expected = packets + (lost or 0)
            loss_percent = None
            if lost is not None and expected > 0:
                loss_percent = round(100.0 * lost / expected, 3)
            streams.append(
                StreamQuality(
                    leg=leg,
                    index=index,
                    media=pm.media if pm else str(_medium_type(reply, leg, index) or "audio"),
                    codec=pm.codec if pm else None,
                    packets=packets,
                    bytes=int(_number(counters.get("bytes")) or 0),
                    expected=expected,
                    lost=lost,
                    loss_percent=loss_percent,
                    jitter_ms=far.jitter_ms if far is not None else None,
                    rtt_ms=own.rtt_ms if own is not None else None,
                    srtp_failures=int(_number(counters.get("errors")) or 0),
                )
            )
        return CallQuality(call_id, tuple(streams))

    # -- RTP timeout ----------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.timeout_check_interval)
            for call_id in list(self._calls):
                try:
                    await self.check_call(call_id)
                except MediaError as exc:
                    log.warning("rtpengine query failed call_id=%s: %s", call_id, exc)

    async def check_call(self, call_id: str, now: float | None = None) -> MediaTimeout | None:
        """Query one call and report it if a stream that should carry media is silent."""
        call = self._calls.get(call_id)
        if call is None or call.timed_out or len(call.media) < 2:
            return None
        now = time.time() if now is None else now
        try:
            reply = await self.ng.command(self._query(call_id))
        except MediaError as exc:
            if "unknown call" not in str(exc).lower():
                raise
            # rtpengine dropped the call itself (its own timeout, or a restart): the
            # media is gone, which for the edge is the same as a timeout.
            call.timed_out = True
            lost = MediaTimeout(call_id, call.offerer, 0, now - call.negotiated_at)
            self._emit(lost)
            return lost
        for leg, index, stream in self._rtp_streams(reply):
            peers = call.media.get(leg, [])
            pm = peers[index] if 0 <= index < len(peers) else None
            if pm is None or not pm.sends:
                continue
            last = _number(stream.get("last packet")) or 0.0
            silent = now - max(last, call.negotiated_at)
            if silent >= self.rtp_timeout:
                call.timed_out = True
                event = MediaTimeout(call_id, leg, index, silent)
                self._emit(event)
                return event
        return None

    def _emit(self, event: MediaTimeout) -> None:
        if self._handler is None:
            return
        try:
            self._handler(event)
        except Exception:
            log.exception("rtp timeout handler failed call_id=%s", event.call_id)
