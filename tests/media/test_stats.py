"""Reception statistics fed exact packet sequences (sans-I/O)."""

from __future__ import annotations

import random

from opentrunk.media.rtp import (
    ReportBlock,
    build_rr,
    build_sr,
    ntp_middle32,
    parse_rtcp,
    parse_rtp_header,
)
from opentrunk.media.stats import ReceptionStats, RttMeter

from .peers import rfc3550_jitter_ms, voice


def feed(stats: ReceptionStats, seqs: list[int], ssrc: int = 7, start: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        stats.on_rtp(0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc, 172, start + i * 0.02)


def test_nothing_received_is_null() -> None:
    stats = ReceptionStats()
    assert stats.lost is None
    assert stats.loss_percent is None
    assert stats.jitter_ms is None


def test_no_loss_in_order() -> None:
    stats = ReceptionStats()
    feed(stats, list(range(100, 300)))
    assert (stats.expected, stats.lost, stats.packets, stats.bytes) == (200, 0, 200, 200 * 172)
    assert stats.jitter_ms is not None and stats.jitter_ms < 1e-6


def test_random_loss_counted_exactly() -> None:
    rng = random.Random(5)
    sent = list(range(1000))
    kept = [s for s in sent if rng.random() >= 0.05]
    stats = ReceptionStats()
    feed(stats, kept)
    # Loss after the last received packet is invisible to sequence numbers (RFC 3550).
    assert stats.expected == kept[-1] - kept[0] + 1
    assert stats.lost == stats.expected - len(kept)
    assert 3.5 < (stats.loss_percent or 0) < 6.5


def test_wrap_around() -> None:
    stats = ReceptionStats()
    seqs = [(65500 + i) % 65536 for i in range(100) if i not in (40, 41)]  # 2 lost after wrap
    feed(stats, seqs)
    assert stats.expected == 100
    assert stats.lost == 2


def test_reordering_is_not_loss() -> None:
    order = list(range(50))
    order[10], order[11] = order[11], order[10]
    order[20], order[23] = order[23], order[20]
    stats = ReceptionStats()
    feed(stats, order)
    assert stats.expected == 50
    assert stats.lost == 0


def test_reordering_across_wrap() -> None:
    base = [(65530 + i) % 65536 for i in range(20)]
    base[5], base[7] = base[7], base[5]  # 65535 and 1 swapped around the wrap
    stats = ReceptionStats()
    feed(stats, base)
    assert (stats.expected, stats.lost) == (20, 0)


def test_ssrc_change_keeps_totals() -> None:
    stats = ReceptionStats()
    feed(stats, [1, 2, 4], ssrc=1)  # 1 lost
    feed(stats, [5000, 5001, 5003, 5004], ssrc=2, start=1.0)  # 1 lost
    assert stats.expected == 4 + 5
    assert stats.lost == 2


def test_jitter_matches_reference() -> None:
    rng = random.Random(9)
    arrivals = [i * 0.02 + rng.uniform(0, 0.06) for i in range(500)]
    timestamps = [i * 160 for i in range(500)]
    order = sorted(range(500), key=lambda i: arrivals[i])
    stats = ReceptionStats()
    for i in order:
        stats.on_rtp(0, i, timestamps[i], 3, 172, arrivals[i])
    expected = rfc3550_jitter_ms([arrivals[i] for i in order], [timestamps[i] for i in order])
    assert abs((stats.jitter_ms or 0) - expected) < 1e-6
    assert stats.lost == 0  # heavy reordering, nothing lost


def test_telephone_events_do_not_fake_jitter() -> None:
    stats = ReceptionStats()
    stats.jitter_payload_types = frozenset({0})
    for i in range(50):
        stats.on_rtp(0, i, i * 160, 3, 172, i * 0.02)
    # RFC 4733: every packet of an event carries the event's start timestamp.
    for i in range(50, 60):
        stats.on_rtp(101, i, 50 * 160, 3, 16, i * 0.02)
    assert stats.jitter_ms is not None and stats.jitter_ms < 1e-6
    assert stats.packets == 60


def test_rtt_from_lsr_dlsr() -> None:
    meter = RttMeter()
    assert meter.rtt_ms is None
    middle = ntp_middle32(1_700_000_000.25)
    meter.sr_forwarded(middle, at=10.0)
    meter.report_received(0, 0, at=10.2)  # no SR seen yet by the peer: ignored
    meter.report_received(12345, 0, at=10.2)  # unknown SR: ignored
    assert meter.rtt_ms is None
    meter.report_received(middle, int(0.5 * 65536), at=10.62)
    assert abs((meter.rtt_ms or 0) - 120.0) < 0.1


def test_rtcp_round_trip_through_parser() -> None:
    now = 1_700_000_000.5
    sr = build_sr(11, now, 1234, 10, 1600)
    rr = build_rr(22, (ReportBlock(11, 12, 34, 5000, 80, ntp_middle32(now), 6553),))
    reports = parse_rtcp(sr + rr)  # compound
    assert [r.packet_type for r in reports] == [200, 201]
    assert reports[0].ntp_middle32 == ntp_middle32(now)
    block = reports[1].blocks[0]
    assert (block.ssrc, block.fraction_lost, block.cumulative_lost) == (11, 12, 34)
    assert (block.lsr, block.dlsr) == (ntp_middle32(now), 6553)
    assert parse_rtcp(b"\x80\xc8\x00\x50garbage") == []


def test_rtp_header() -> None:
    assert parse_rtp_header(voice(5, 800, 99, pt=8)) == (8, 5, 800, 99)
    assert parse_rtp_header(b"\x00" * 12) is None
    assert parse_rtp_header(b"\x80") is None


def test_late_packets_older_than_the_first_one() -> None:
    stats = ReceptionStats()
    feed(stats, [3, 4, 1, 2, 0, 5, 6, 8])  # 7 lost
    assert (stats.expected, stats.lost) == (9, 1)
    wrapped = ReceptionStats()
    feed(wrapped, [1, 2, 65535, 0, 3])  # first packets arrived before earlier ones
    assert (wrapped.expected, wrapped.lost) == (5, 0)
