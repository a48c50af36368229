"""E-model quality score and the call-level Insights figures."""

from __future__ import annotations

from opentrunk.media.backend import CallQuality, StreamQuality
from opentrunk.media.quality import delay_impairment, mos_from_r, quality_score, r_factor


def stream(leg: str, lost: int | None, expected: int, jitter: float | None, rtt: float | None):
    return StreamQuality(
        leg=leg,  # type: ignore[arg-type]
        index=0,
        media="audio",
        codec="PCMU",
        packets=expected - (lost or 0),
        bytes=0,
        expected=expected,
        lost=lost,
        loss_percent=None if lost is None else 100 * lost / expected,
        jitter_ms=jitter,
        rtt_ms=rtt,
    )


def test_perfect_g711_scores_about_4_4() -> None:
    assert abs(r_factor("PCMU", 0.0, 20.0) - 93.2) < 1e-9
    assert 4.38 < mos_from_r(93.2) < 4.45
    assert quality_score("PCMU", 0.0, 0.0, 0.0) == round(mos_from_r(93.2), 2)


def test_score_falls_with_loss_and_delay() -> None:
    clean = quality_score("PCMU", 0.0, 5.0, 40.0) or 0
    lossy = quality_score("PCMU", 5.0, 5.0, 40.0) or 0
    late = quality_score("PCMU", 0.0, 5.0, 600.0) or 0
    assert clean > lossy > 1.0
    assert clean > late > 1.0
    # G.107: Ie,eff for G.711 (Bpl 25.1) at 5 % random loss is 95*5/30.1 = 15.8.
    assert abs(r_factor("PCMA", 5.0, 20.0) - (93.2 - 95 * 5 / 30.1)) < 1e-9
    assert delay_impairment(100.0) == 0.0
    assert delay_impairment(400.0) > delay_impairment(200.0) > 0
    assert 1.0 <= (quality_score("G729", 60.0, 80.0, 2000.0) or 0) <= 5.0


def test_unmeasured_is_null() -> None:
    assert quality_score("PCMU", None, 3.0, 50.0) is None
    call = CallQuality("c", (stream("a", None, 0, None, None), stream("b", None, 0, None, None)))
    assert call.insights() == {
        "rtt": None,
        "jitter": None,
        "packet_loss": None,
        "plivo_quality_score": None,
    }


def test_call_figures_combine_streams() -> None:
    call = CallQuality("c", (stream("a", 10, 1000, 4.0, 30.0), stream("b", 30, 1000, 9.0, 70.0)))
    insights = call.insights()
    assert insights["packet_loss"] == 2.0  # 40 of 2000
    assert insights["jitter"] == 9.0  # the worst stream
    assert insights["rtt"] == 100.0  # relay<->a plus relay<->b
    assert insights["plivo_quality_score"] == quality_score("PCMU", 2.0, 9.0, 100.0)
