"""Insights of calls anchored by rtpengine (`OPENTRUNK_MEDIA_BACKEND=rtpengine`): the
impairments of `test_media_calls.py` injected through a live `opentrunk serve` that
drives a private rtpengine, read back through the API (docs/media.md "rtpengine
statistics").

rtpengine learns loss and jitter from the peers' RTCP receiver reports and times each
leg's round trip itself, so the test's PBX and carrier send sender reports and true
receiver reports (`media.rtcp_rtpengine_stats.ReportingRtcp`), as real ones do.

Tolerances, as for the embedded relay: loss within 1 point of what was dropped, jitter
within 25 % of the 20 ms injected, RTT within 30 ms of the 100 ms RTCP-path delay; the
score is the E-model of the figures Insights shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import pytest
import uvloop

from e2e.harness import Api, EdgeProcess
from e2e.media_peers import close_all, hang_up
from e2e.media_traffic import Impairment, Stream, send_stream
from e2e.test_media_calls import HOST, Setup, assert_anchored, insights, open_call, rtcp_port
from media.peers import RtpPeer, sdp_port
from media.rtcp_rtpengine_stats import ReportingRtcp
from media.rtpengine_daemon import require_rtpengine, rtpengine_daemon
from opentrunk.media.quality import quality_score

pytestmark = pytest.mark.sipp

# rtpengine's range, below the kernel's ephemeral range (no test socket can sit in it).
LOW, HIGH = 26200, 26399
COUNT = 200


@pytest.fixture(scope="module")
def engine_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    binary = require_rtpengine()
    with contextlib.ExitStack() as stack:
        # --config-file=none: the system config names fixed CLI/HTTP ports that any
        # other rtpengine on the machine may hold.
        ng_port = stack.enter_context(rtpengine_daemon(binary, LOW, HIGH, ("--config-file=none",)))
        yield stack.enter_context(
            EdgeProcess(
                tmp_path_factory.mktemp("rtpengine-edge"),
                env={
                    "OPENTRUNK_MEDIA_BACKEND": "rtpengine",
                    "OPENTRUNK_RTPENGINE_NG": f"{HOST}:{ng_port}",
                },
            )
        )


@pytest.fixture(scope="module")
def engine_api(engine_edge: EdgeProcess) -> Iterator[Api]:
    with Api(engine_edge.http_port) as client:
        yield client


async def carry(
    edge: EdgeProcess,
    setup: Setup,
    a_stream: Stream,
    b_stream: Stream,
    *,
    rtcp: bool = True,
    b_rtcp_delay: float = 0.0,
) -> dict[int, float]:
    """One call PBX (a) -> carrier (b) with both streams, RTCP if asked, then BYE.
    Returns the jitter (ms) each peer measured on the stream it received, by SSRC."""
    a, b = await RtpPeer().open(), await RtpPeer().open()
    pbx, carrier, offer, answer = await open_call(edge, setup, a, b)
    assert_anchored(offer, answer, a, b, (LOW, HIGH))
    reporters = [ReportingRtcp(a, a_stream.ssrc), ReportingRtcp(b, b_stream.ssrc, b_rtcp_delay)]
    if rtcp:
        reporters[0].start((HOST, rtcp_port(answer)))
        reporters[1].start((HOST, rtcp_port(offer)))
    await asyncio.gather(
        send_stream(a, (HOST, sdp_port(answer)), a_stream),
        send_stream(b, (HOST, sdp_port(offer)), b_stream),
    )
    await asyncio.sleep(0.6)  # the last reports after the last packets
    for reporter in reporters:
        reporter.stop()
    if rtcp:
        assert min(r.answered for r in reporters) > 3
    assert len(b.received.rtp) == COUNT - len(a_stream.impairment.drop)
    assert len(a.received.rtp) == COUNT - len(b_stream.impairment.drop)
    await hang_up(pbx, carrier)
    close_all(a, b, pbx, carrier)
    return {ssrc: source.jitter_ms for r in reporters for ssrc, source in r.sources.items()}


def run(scenario: Callable[[], Awaitable[object]], timeout: float = 60.0) -> None:
    """On uvloop: its timers keep the injected 20 ms jitter at 20 ms on a busy machine,
    where the default loop's late callbacks shrink it to 14 ms at the receiver."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout)

    uvloop.run(bounded())


def assert_score_from_figures(view: dict[str, object]) -> None:
    expected = quality_score("PCMU", view["packet_loss"], view["jitter"], view["rtt"])  # type: ignore[arg-type]
    assert expected is not None
    assert view["plivo_quality_score"] == pytest.approx(expected, abs=0.02)


def test_loss_reordering_and_rtcp_delay_through_rtpengine(
    engine_edge: EdgeProcess, engine_api: Api
) -> None:
    setup = Setup(engine_api)
    a_stream = Stream(0x1111, COUNT, Impairment.random_loss(COUNT, 5, seed=11))
    a_stream.impairment.swap_every = 17
    b_stream = Stream(0x2222, COUNT, Impairment.random_loss(COUNT, 5, seed=12))
    b_stream.impairment.swap_every = 23

    run(lambda: carry(engine_edge, setup, a_stream, b_stream, b_rtcp_delay=0.1))
    record, view = insights(setup.account, setup.destination)
    assert record["hangup_cause_code"] == "3010"
    assert record["srtp"] is False and record["transport_protocol"] == "udp"
    dropped = len(a_stream.impairment.drop) + len(b_stream.impairment.drop)
    injected = 100.0 * dropped / (2 * COUNT)
    assert view["packet_loss"] == pytest.approx(injected, abs=1.0), (view, injected)
    assert view["rtt"] == pytest.approx(100.0, abs=30.0), view
    assert view["jitter"] is not None and view["jitter"] >= 0
    assert_score_from_figures(view)
    assert 1.0 <= view["plivo_quality_score"] < 4.41


def test_jitter_through_rtpengine(engine_edge: EdgeProcess, engine_api: Api) -> None:
    setup = Setup(engine_api)
    a_stream = Stream(0x3333, COUNT, Impairment.alternating_delay(COUNT, 0.020))
    b_stream = Stream(0x4444, COUNT, Impairment())

    measured: dict[int, float] = {}

    async def call() -> None:
        measured.update(await carry(engine_edge, setup, a_stream, b_stream))

    run(call)
    _record, view = insights(setup.account, setup.destination)
    # rtpengine repeats the receiver's own RFC 3550 figure (whole ms, from its latest
    # report), and that figure is the injected jitter.
    assert view["jitter"] == pytest.approx(measured[a_stream.ssrc], abs=1.0), (view, measured)
    assert view["jitter"] == pytest.approx(20.0, rel=0.25), (view, measured)
    assert view["packet_loss"] == pytest.approx(0.0, abs=0.5), view
    # Both legs on loopback without added delay: measured, and small.
    assert view["rtt"] is not None and 0 < view["rtt"] < 30.0, view
    assert_score_from_figures(view)


def test_no_rtcp_means_no_figures_through_rtpengine(
    engine_edge: EdgeProcess, engine_api: Api
) -> None:
    """Without RTCP rtpengine counts packets but measures neither loss, jitter nor RTT:
    Insights shows null for each and for the score, nothing estimated."""
    setup = Setup(engine_api)
    a_stream = Stream(0x5555, COUNT, Impairment.random_loss(COUNT, 5, seed=13))
    b_stream = Stream(0x6666, COUNT, Impairment())

    run(lambda: carry(engine_edge, setup, a_stream, b_stream, rtcp=False))
    record, view = insights(setup.account, setup.destination)
    assert record["hangup_cause_code"] == "3010"
    assert (view["packet_loss"], view["jitter"], view["rtt"]) == (None, None, None), view
    assert view["plivo_quality_score"] is None
