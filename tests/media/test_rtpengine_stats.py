"""The rtpengine backend's quality figures (docs/media.md "rtpengine statistics"): what a
real rtpengine reports in `query` mapped onto `StreamQuality`, with the same
impairments as the embedded relay's tests, and null where rtpengine measured nothing.

Tolerances: loss within 1 point of what was dropped, jitter within 25 % of the
injected 20 ms (rtpengine keeps whole milliseconds), the RTT of the slow RTCP path
within 30 ms of its 100 ms, the score equal to the E-model of those figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from e2e.media_traffic import Impairment, Stream, send_stream
from opentrunk.media.backend import CallQuality, StreamQuality
from opentrunk.media.quality import quality_score
from opentrunk.media.rtpengine import PeerReport, RtpengineBackend, peer_report

from .peers import HOST, RtpPeer, sdp_port
from .rtcp_rtpengine_stats import ReportingRtcp
from .rtpengine_daemon import require_rtpengine, rtpengine_daemon

# rtpengine reads /etc/rtpengine/rtpengine.conf unless told not to, and that file
# names fixed CLI and HTTP ports: a second daemon (another test, a benchmark) would
# collide on them.
PRIVATE_DAEMON = ("--config-file=none",)
COUNT = 200


def rtcp_port(body: bytes) -> int:
    for line in body.decode().split("\r\n"):
        if line.startswith("a=rtcp:"):
            return int(line.split(":")[1].split()[0])
    return sdp_port(body) + 1


# -- reading the SSRC section (no daemon) ------------------------------------------------


def test_peer_report_reads_rtpengine_entry() -> None:
    entry = {
        "cumulative loss": 10,
        "average MOS": {
            "MOS": 39,
            "round-trip time": 100700,
            "round-trip time leg": 100371,
            "jitter": 19,
            "packet loss": 3,
            "samples": 4,
        },
        "MOS progression": {
            "interval": 0,
            "entries": [{"jitter": 11, "round-trip time leg": 100200}, {"jitter": 20}],
        },
    }
    # Jitter from the latest report; the round trip is this leg's mean.
    assert peer_report(entry) == PeerReport(rtt_ms=100.371, lost=10, jitter_ms=20.0)
    del entry["MOS progression"]
    assert peer_report(entry) == PeerReport(rtt_ms=100.371, lost=10, jitter_ms=19.0)


def test_peer_report_without_figures_is_none_and_zero_rtt_is_unmeasured() -> None:
    assert peer_report({}) is None  # listed SSRC with no rated report
    assert peer_report({"cumulative loss": 3}) is None
    entry: dict[str, Any] = {
        "cumulative loss": 0xFFFFFE,  # -2 as a signed 24-bit field: duplicates
        "average MOS": {"round-trip time leg": 0, "jitter": 0},
    }
    assert peer_report(entry) == PeerReport(rtt_ms=None, lost=0, jitter_ms=0.0)


# -- a real daemon -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ng_port() -> Iterator[int]:
    binary = require_rtpengine()
    with rtpengine_daemon(binary, 26000, 26199, PRIVATE_DAEMON) as port:
        yield port


def run(ng_port: int, body: Callable[[RtpengineBackend], Awaitable[None]]) -> None:
    async def main() -> None:
        backend = RtpengineBackend(HOST, ng_port)
        await backend.start()
        try:
            await asyncio.wait_for(body(backend), 30)
        finally:
            await backend.close()

    uvloop.run(main())


def by_leg(quality: CallQuality) -> dict[str, StreamQuality]:
    return {s.leg: s for s in quality.streams}


def test_loss_jitter_and_rtt_from_rtcp_reports(ng_port: int) -> None:
    """a -> b: 5 % dropped and pairs swapped; b -> a: 20 ms of jitter; b's RTCP path
    holds its reports 100 ms. Both peers send SRs and true RRs."""
    a_stream = Stream(0x1111, COUNT, Impairment.random_loss(COUNT, 5, seed=21))
    a_stream.impairment.swap_every = 17
    b_stream = Stream(0x2222, COUNT, Impairment.alternating_delay(COUNT, 0.020))
    result: dict[str, CallQuality | None] = {}

    async def body(backend: RtpengineBackend) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        to_b = await backend.offer("s1", "a", a.sdp())
        to_a = await backend.answer("s1", "b", b.sdp())
        a_rtcp = ReportingRtcp(a, 0x1111)
        b_rtcp = ReportingRtcp(b, 0x2222, network_delay=0.1)
        a_rtcp.start((HOST, rtcp_port(to_a)))
        b_rtcp.start((HOST, rtcp_port(to_b)))
        await asyncio.gather(
            send_stream(a, (HOST, sdp_port(to_a)), a_stream),
            send_stream(b, (HOST, sdp_port(to_b)), b_stream),
        )
        await asyncio.sleep(0.6)  # the last reports after the last packets
        a_rtcp.stop()
        b_rtcp.stop()
        # The peers' own view, which rtpengine can only repeat.
        assert b_rtcp.sources[0x1111].lost == len(a_stream.impairment.drop)
        assert a_rtcp.sources[0x2222].jitter_ms == pytest.approx(20.0, rel=0.1)
        result["live"] = await backend.stats("s1")
        result["final"] = await backend.delete("s1")
        a.close()
        b.close()

    run(ng_port, body)
    live, final = result["live"], result["final"]
    assert live is not None and final is not None
    assert by_leg(live)["a"].lost == len(a_stream.impairment.drop)  # mid-call too
    streams = by_leg(final)
    a, b = streams["a"], streams["b"]
    dropped = len(a_stream.impairment.drop)
    assert (a.packets, a.bytes) == (COUNT - dropped, (COUNT - dropped) * 172)
    assert a.lost == dropped and a.expected == COUNT
    assert a.loss_percent == pytest.approx(5.0, abs=1.0)
    assert b.packets == COUNT and b.lost == 0 and b.loss_percent == 0.0
    assert b.jitter_ms == pytest.approx(20.0, rel=0.25)
    assert a.jitter_ms is not None  # measured by a, whatever the machine's timing added
    assert b.rtt_ms is not None and b.rtt_ms == pytest.approx(100.0, abs=30.0)  # <-> b
    assert a.rtt_ms is not None and a.rtt_ms < 30.0  # rtpengine <-> a, loopback
    assert (a.codec, a.media) == ("PCMU", "audio")
    assert final.packet_loss == pytest.approx(100.0 * dropped / (2 * COUNT), abs=0.01)
    assert final.jitter_ms == max(a.jitter_ms, b.jitter_ms)  # the worst stream's
    assert final.rtt_ms == pytest.approx(a.rtt_ms + b.rtt_ms, abs=0.01)
    expected = quality_score("PCMU", final.packet_loss, final.jitter_ms, final.rtt_ms)
    assert expected is not None and final.quality_score == expected
    assert final.quality_score < 4.41  # loss and delay cost something


def test_without_rtcp_only_counters_are_known(ng_port: int) -> None:
    result: dict[str, CallQuality | None] = {}

    async def body(backend: RtpengineBackend) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        to_b = await backend.offer("s2", "a", a.sdp())
        to_a = await backend.answer("s2", "b", b.sdp())
        await asyncio.gather(
            send_stream(a, (HOST, sdp_port(to_a)), Stream(0x33, 30, Impairment())),
            send_stream(b, (HOST, sdp_port(to_b)), Stream(0x44, 20, Impairment())),
        )
        await asyncio.sleep(0.2)
        result["final"] = await backend.delete("s2")
        a.close()
        b.close()

    run(ng_port, body)
    final = result["final"]
    assert final is not None
    streams = by_leg(final)
    assert (streams["a"].packets, streams["b"].packets) == (30, 20)
    for stream in streams.values():
        assert (stream.lost, stream.loss_percent, stream.jitter_ms, stream.rtt_ms) == (
            None,
            None,
            None,
            None,
        )
    assert final.insights() == {
        "rtt": None,
        "jitter": None,
        "packet_loss": None,
        "plivo_quality_score": None,
    }


def test_figures_wait_for_rated_reports(ng_port: int) -> None:
    """At first only b sends sender reports (a answers them but sends none, so b has
    nothing to answer and rtpengine times only a's leg): rtpengine rates no report and
    lists no figures, and none are invented. Once a sends sender reports too, b's
    answers give a's stream its loss and b's leg its round trip."""
    result: dict[str, CallQuality | None] = {}
    a_stream = Stream(0x55, 100, Impairment.random_loss(100, 5, seed=5))

    async def body(backend: RtpengineBackend) -> None:
        a, b = await RtpPeer().open(), await RtpPeer().open()
        to_b = await backend.offer("s3", "a", a.sdp())
        to_a = await backend.answer("s3", "b", b.sdp())
        a_rtcp = ReportingRtcp(a, 0x55)
        b_rtcp = ReportingRtcp(b, 0x66, network_delay=0.05)
        b_rtcp.start((HOST, rtcp_port(to_b)))
        a_rtcp.dest = (HOST, rtcp_port(to_a))  # a answers b's SRs, sends none itself
        await send_stream(a, (HOST, sdp_port(to_a)), a_stream)
        await asyncio.sleep(0.3)
        result["one-sided"] = await backend.stats("s3")
        a_rtcp.start((HOST, rtcp_port(to_a)))
        await send_stream(a, (HOST, sdp_port(to_a)), Stream(0x55, 60, Impairment()), first_seq=1100)
        await asyncio.sleep(1.5)  # rtpengine keeps one rated report a second
        a_rtcp.stop()
        b_rtcp.stop()
        result["both"] = await backend.delete("s3")
        a.close()
        b.close()

    run(ng_port, body)
    one_sided, both = result["one-sided"], result["both"]
    assert one_sided is not None and both is not None
    # With the default --mos=CQ rtpengine rates a report only once it has the round
    # trips of both legs: until then it lists no figures, and neither do we.
    assert by_leg(one_sided)["a"].loss_percent is None
    a = by_leg(both)["a"]
    assert a.lost == len(a_stream.impairment.drop)
    assert a.loss_percent == pytest.approx(100.0 * a.lost / 160, abs=0.01)
    assert by_leg(both)["b"].rtt_ms == pytest.approx(50.0, abs=30.0)
