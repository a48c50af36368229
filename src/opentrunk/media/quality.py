"""Call quality as an ITU-T G.107 E-model rating turned into a MOS estimate (1.0 to 5.0).

R = Ro - Is - Id - Ie,eff + A with the G.107 default values for everything the
relay cannot observe (send/receive loudness, room noise, echo losses), which
fold to Ro - Is = 93.2 and A = 0. What is measured enters as:

- Id: delay impairment. Only the absolute-delay term Idd of G.107 7.2 is
  used (talker echo is assumed cancelled): Idd = 0 for Ta <= 100 ms, else
  Idd = 25 * ((1 + X^6)^(1/6) - 3 * (1 + (X/3)^6)^(1/6) + 2), X = log2(Ta/100).
  Ta (one-way mouth-to-ear delay) = RTT/2 + jitter-buffer delay (2 x the
  measured jitter) + one packetisation interval.
- Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl) (G.107 7.4), Ppl the
  measured loss in percent, BurstR = 1 (random loss), Ie/Bpl per codec from
  ITU-T G.113 Appendix I.

MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6 for 0 < R < 100 (G.107 Annex B),
1.0 below, 4.5 above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CODEC_IMPAIRMENT",
    "CodecImpairment",
    "delay_impairment",
    "mos_from_r",
    "quality_score",
    "r_factor",
]


@dataclass(frozen=True)
class CodecImpairment:
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor


# G.113 Appendix I figures (G.711 with packet-loss concealment).
CODEC_IMPAIRMENT: dict[str, CodecImpairment] = {
    "PCMU": CodecImpairment(0.0, 25.1),
    "PCMA": CodecImpairment(0.0, 25.1),
    "G722": CodecImpairment(0.0, 25.1),
    "G729": CodecImpairment(11.0, 19.0),
    "GSM": CodecImpairment(20.0, 10.0),
    "ILBC": CodecImpairment(11.0, 32.0),
}
# A codec without a G.113 entry (Opus, ...) is rated as G.711 with concealment;
# docs/media.md says so.
DEFAULT_IMPAIRMENT = CODEC_IMPAIRMENT["PCMU"]


def delay_impairment(one_way_ms: float) -> float:
    """G.107 Idd for an absolute one-way delay in milliseconds."""
    if one_way_ms <= 100.0:
        return 0.0
    x = math.log2(one_way_ms / 100.0)
    idd: float = 25.0 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    return idd


def r_factor(codec: str | None, loss_percent: float, one_way_ms: float) -> float:
    imp = CODEC_IMPAIRMENT.get((codec or "").upper(), DEFAULT_IMPAIRMENT)
    ppl = max(0.0, loss_percent)
    ie_eff = imp.ie + (95.0 - imp.ie) * ppl / (ppl + imp.bpl)
    return 93.2 - delay_impairment(one_way_ms) - ie_eff


def mos_from_r(r: float) -> float:
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


def quality_score(
    codec: str | None,
    loss_percent: float | None,
    jitter_ms: float | None,
    rtt_ms: float | None,
    ptime_ms: float = 20.0,
) -> float | None:
    """MOS estimate rounded to 2 places, or None without a measured loss figure.

    A missing RTT leaves the network part of the delay out (documented), a
    missing jitter its buffer part; loss is required because without it
    nothing about the stream was measured.
    """
    if loss_percent is None:
        return None
    delay = ptime_ms + (rtt_ms / 2 if rtt_ms is not None else 0.0)
    delay += 2 * jitter_ms if jitter_ms is not None else 0.0
    return round(mos_from_r(r_factor(codec, loss_percent, delay)), 2)
