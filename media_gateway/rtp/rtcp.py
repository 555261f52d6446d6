"""RTCP codec (RFC 3550 §6.4 SR/RR, §6.5 SDES, §6.6 BYE) and compound packets (§6.1).

Pure: ``parse_compound(data) -> list[RtcpPacket]`` and ``bytes(packet)``. Unknown packet types
(RTPFB/PSFB/APP/XR) are kept as :class:`RtcpUnknown` so a compound still parses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
SDES_CNAME = 1

_COMMON = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IIIIII")  # ssrc, ntp msw, ntp lsw, rtp ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")
NTP_EPOCH_OFFSET = 2208988800
"""Seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    """Source this block is about."""
    fraction_lost: int
    """Lost since the last report, as a fixed-point fraction of 256."""
    cumulative_lost: int
    """Signed 24-bit count of packets lost since the start (may go negative with duplicates)."""
    highest_seq: int
    """Extended highest sequence number received."""
    jitter: int
    """Interarrival jitter in timestamp units."""
    lsr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR received from that source."""
    dlsr: int = 0
    """Delay since that SR, in units of 1/65536 s."""

    def to_bytes(self) -> bytes:
        lost = self.cumulative_lost
        lost = max(-0x800000, min(0x7FFFFF, lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            ((self.fraction_lost & 0xFF) << 24) | lost,
            self.highest_seq & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def parse(cls, data: bytes | memoryview, pos: int) -> ReportBlock:
        ssrc, fl, hs, jit, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = fl & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(
            ssrc=ssrc,
            fraction_lost=fl >> 24,
            cumulative_lost=lost,
            highest_seq=hs,
            jitter=jit,
            lsr=lsr,
            dlsr=dlsr,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    """64-bit NTP timestamp (seconds since 1900 << 32 | fraction)."""
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        body = _SR_INFO.pack(
            self.ssrc,
            self.ntp_timestamp >> 32,
            self.ntp_timestamp & 0xFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        ) + b"".join(r.to_bytes() for r in self.reports)
        return _header(RTCP_SR, len(self.reports), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(r.to_bytes() for r in self.reports)
        return _header(RTCP_RR, len(self.reports), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """One SDES chunk: a source and its items as (type, value) pairs (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    def to_bytes(self) -> bytes:
        out = bytearray()
        for chunk in self.chunks:
            out += struct.pack("!I", chunk.ssrc)
            for kind, value in chunk.items:
                if len(value) > 255:
                    raise ValueError("RTCP SDES item is longer than 255 bytes")
                out += bytes((kind, len(value))) + value
            out += b"\x00"  # end of item list, then pad to a 32-bit boundary
            out += bytes(-len(out) % 4)
        return _header(RTCP_SDES, len(self.chunks), bytes(out))


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """BYE (RFC 3550 §6.6)."""

    sources: tuple[int, ...] = ()
    reason: str = ""

    def to_bytes(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.sources)
        if self.reason:
            raw = self.reason.encode("utf-8")[:255]
            r = bytes((len(raw),)) + raw
            body += r + bytes(-len(r) % 4)
        return _header(RTCP_BYE, len(self.sources), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpUnknown:
    """Any other RTCP packet type, kept whole (``data`` is the full packet incl. header)."""

    packet_type: int
    count: int
    data: bytes

    def to_bytes(self) -> bytes:
        return self.data


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def _header(pt: int, count: int, body: bytes) -> bytes:
    if count > 31:
        raise ValueError("RTCP packet has more than 31 items")
    assert len(body) % 4 == 0, "RTCP body must be 32-bit aligned"
    return _COMMON.pack(0x80 | count, pt, len(body) // 4) + body


def cname_sdes(ssrc: int, cname: str) -> SourceDescription:
    """The SDES every compound must carry (RFC 3550 §6.1)."""
    return SourceDescription(chunks=(SdesChunk(ssrc=ssrc, items=((SDES_CNAME, cname.encode()),)),))


def build_compound(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Concatenate packets into one compound datagram (RFC 3550 §6.1: SR/RR first, then SDES)."""
    return b"".join(p.to_bytes() for p in packets)


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp for a Unix time in seconds."""
    whole = int(seconds)
    frac = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole + NTP_EPOCH_OFFSET) << 32) | frac


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what LSR carries (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram; raise ``ValueError`` naming what is wrong."""
    mv = memoryview(data)
    out: list[RtcpPacket] = []
    pos = 0
    n = len(mv)
    if n < 4:
        raise ValueError("RTCP packet length is less than 4 bytes")
    while pos < n:
        if n - pos < 4:
            raise ValueError("RTCP packet length is less than 4 bytes")
        b0, pt, words = _COMMON.unpack_from(mv, pos)
        if b0 >> 6 != 2:
            raise ValueError(f"RTCP packet has invalid version {b0 >> 6}")
        end = pos + 4 + 4 * words
        if end > n:
            raise ValueError("RTCP packet is truncated")
        body_end = end
        if b0 & 0x20:
            pad = mv[end - 1]
            if pad == 0 or pad > 4 * words:
                raise ValueError("RTCP packet padding length is invalid")
            body_end = end - pad
        count = b0 & 0x1F
        out.append(_parse_one(pt, count, mv, pos + 4, body_end, bytes(mv[pos:end])))
        pos = end
    return out


def _parse_blocks(
    mv: memoryview, pos: int, end: int, count: int, what: str
) -> tuple[ReportBlock, ...]:
    if pos + 24 * count > end:
        raise ValueError(f"RTCP {what} has truncated report blocks")
    return tuple(ReportBlock.parse(mv, pos + 24 * i) for i in range(count))


def _parse_one(pt: int, count: int, mv: memoryview, pos: int, end: int, whole: bytes) -> RtcpPacket:
    if pt == RTCP_SR:
        if end - pos < 24:
            raise ValueError("RTCP sender report is truncated")
        ssrc, msw, lsw, rtp_ts, pc, oc = _SR_INFO.unpack_from(mv, pos)
        return SenderReport(
            ssrc=ssrc,
            ntp_timestamp=(msw << 32) | lsw,
            rtp_timestamp=rtp_ts,
            packet_count=pc,
            octet_count=oc,
            reports=_parse_blocks(mv, pos + 24, end, count, "sender report"),
        )
    if pt == RTCP_RR:
        if end - pos < 4:
            raise ValueError("RTCP receiver report is truncated")
        (ssrc,) = struct.unpack_from("!I", mv, pos)
        return ReceiverReport(
            ssrc=ssrc, reports=_parse_blocks(mv, pos + 4, end, count, "receiver report")
        )
    if pt == RTCP_SDES:
        chunks: list[SdesChunk] = []
        for _ in range(count):
            if end - pos < 4:
                raise ValueError("RTCP SDES source is truncated")
            (ssrc,) = struct.unpack_from("!I", mv, pos)
            pos += 4
            items: list[tuple[int, bytes]] = []
            while True:
                if pos >= end:
                    raise ValueError("RTCP SDES item is truncated")
                kind = mv[pos]
                if kind == 0:
                    pos += 1
                    pos += -pos % 4  # padding to the next 32-bit boundary
                    break
                if pos + 2 > end or pos + 2 + mv[pos + 1] > end:
                    raise ValueError("RTCP SDES item is truncated")
                length = mv[pos + 1]
                items.append((kind, bytes(mv[pos + 2 : pos + 2 + length])))
                pos += 2 + length
            chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
        return SourceDescription(chunks=tuple(chunks))
    if pt == RTCP_BYE:
        if end - pos < 4 * count:
            raise ValueError("RTCP bye has truncated source")
        sources = struct.unpack_from(f"!{count}I", mv, pos) if count else ()
        pos += 4 * count
        reason = ""
        if pos < end:
            length = mv[pos]
            if pos + 1 + length > end:
                raise ValueError("RTCP bye has truncated reason")
            reason = bytes(mv[pos + 1 : pos + 1 + length]).decode("utf-8", "replace")
        return Bye(sources=tuple(sources), reason=reason)
    return RtcpUnknown(packet_type=pt, count=count, data=whole)
