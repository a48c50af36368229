"""RTP and RTCP wire formats (RFC 3550): the few header fields the relay reads, and
builders for the packets tests and benchmarks send.

Sans-I/O: functions of bytes. The relay reads RTP headers with one `struct` call and
RTCP sender/receiver reports block by block; nothing here allocates per packet beyond
the tuple it returns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "ReportBlock",
    "RtcpReport",
    "build_rr",
    "build_rtp",
    "build_sr",
    "is_rtcp",
    "ntp_middle32",
    "parse_rtcp",
    "parse_rtp_header",
]

_RTP_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IIIIII")  # ssrc, ntp msw, ntp lsw, rtp ts, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")  # ssrc, lost word, ext seq, jitter, lsr, dlsr
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

RTCP_SR = 200
RTCP_RR = 201


def parse_rtp_header(packet: bytes) -> tuple[int, int, int, int] | None:
    """(payload type, sequence number, timestamp, SSRC) of an RTP version-2 packet, or None."""
    if len(packet) < 12:
        return None
    b0, b1, seq, ts, ssrc = _RTP_HEADER.unpack_from(packet)
    if b0 >> 6 != 2:
        return None
    return b1 & 0x7F, seq, ts, ssrc


def is_rtcp(packet: bytes) -> bool:
    """True for RTCP multiplexed on the RTP port (RFC 5761: packet types 192-223)."""
    return len(packet) >= 2 and 192 <= packet[1] <= 223


def build_rtp(
    payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """An RTP version-2 packet without CSRCs or extensions."""
    b1 = (0x80 if marker else 0) | (payload_type & 0x7F)
    return _RTP_HEADER.pack(0x80, b1, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


@dataclass(frozen=True)
class ReportBlock:
    """One reception report block of an SR or RR (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True)
class RtcpReport:
    """A sender or receiver report: the sender's NTP time (SR only) and its report blocks."""

    packet_type: int
    ssrc: int
    ntp_middle32: int | None
    blocks: tuple[ReportBlock, ...]


def parse_rtcp(packet: bytes) -> list[RtcpReport]:
    """The SR and RR packets of a (compound) RTCP packet; other packet types are skipped.

    A malformed compound packet yields the reports read before the damage.
    """
    out: list[RtcpReport] = []
    offset = 0
    size = len(packet)
    while offset + 8 <= size:
        b0, ptype, length_words = _RTCP_HEADER.unpack_from(packet, offset)
        end = offset + 4 * (length_words + 1)
        if b0 >> 6 != 2 or end > size:
            break
        count = b0 & 0x1F
        if ptype == RTCP_SR and end - offset >= 28:
            ssrc, msw, lsw, _ts, _pc, _oc = _SR_INFO.unpack_from(packet, offset + 4)
            middle = ((msw & 0xFFFF) << 16) | (lsw >> 16)
            blocks = _blocks(packet, offset + 28, end, count)
            out.append(RtcpReport(ptype, ssrc, middle, blocks))
        elif ptype == RTCP_RR:
            (ssrc,) = struct.unpack_from("!I", packet, offset + 4)
            out.append(RtcpReport(ptype, ssrc, None, _blocks(packet, offset + 8, end, count)))
        offset = end
    return out


def _blocks(packet: bytes, start: int, end: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for i in range(count):
        at = start + 24 * i
        if at + 24 > end:
            break
        ssrc, lost_word, ext_seq, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(packet, at)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:  # signed 24-bit (duplicates can make it negative)
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, cumulative, ext_seq, jitter, lsr, dlsr))
    return tuple(blocks)


def ntp_middle32(unix_time: float) -> int:
    """The middle 32 bits of the 64-bit NTP timestamp of `unix_time` (the LSR field)."""
    ntp = unix_time + NTP_EPOCH_OFFSET
    msw = int(ntp)
    lsw = int((ntp - msw) * (1 << 32)) & 0xFFFFFFFF
    return ((msw & 0xFFFF) << 16) | (lsw >> 16)


def _pack_blocks(blocks: tuple[ReportBlock, ...]) -> bytes:
    return b"".join(
        _REPORT_BLOCK.pack(
            b.ssrc,
            (b.fraction_lost << 24) | (b.cumulative_lost & 0xFFFFFF),
            b.highest_seq,
            b.jitter,
            b.lsr,
            b.dlsr,
        )
        for b in blocks
    )


def build_sr(
    ssrc: int,
    unix_time: float,
    rtp_timestamp: int,
    packets: int,
    octets: int,
    blocks: tuple[ReportBlock, ...] = (),
) -> bytes:
    """A sender report carrying `unix_time` as its NTP timestamp."""
    ntp = unix_time + NTP_EPOCH_OFFSET
    msw = int(ntp) & 0xFFFFFFFF
    lsw = int((ntp - int(ntp)) * (1 << 32)) & 0xFFFFFFFF
    body = _SR_INFO.pack(ssrc, msw, lsw, rtp_timestamp & 0xFFFFFFFF, packets, octets)
    body += _pack_blocks(blocks)
    header = _RTCP_HEADER.pack(0x80 | len(blocks), RTCP_SR, (len(body) + 4) // 4 - 1)
    return header + body


def build_rr(ssrc: int, blocks: tuple[ReportBlock, ...]) -> bytes:
    """A receiver report."""
    body = struct.pack("!I", ssrc) + _pack_blocks(blocks)
    return _RTCP_HEADER.pack(0x80 | len(blocks), RTCP_RR, (len(body) + 4) // 4 - 1) + body
