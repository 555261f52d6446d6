"""RTP fixed header codec (RFC 3550 §5.1) and sequence-number arithmetic (RFC 3550 §A.1).

Pure: bytes in, bytes out. ``parse``/``to_bytes`` handle CSRC lists, the header extension
(§5.3.1) and padding (§5.1 "P"); ``rewrite_header`` is the relay fast path that only swaps
sequence number, timestamp and SSRC with one ``struct.pack_into``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_HEADER = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_EXT = struct.Struct("!HH")


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). ``padding_size`` counts the padding octets, last one included."""

    payload_type: int = 0
    """PT, 7 bits."""
    sequence_number: int = 0
    """16-bit sequence number."""
    timestamp: int = 0
    """32-bit media timestamp."""
    ssrc: int = 0
    """Synchronisation source."""
    marker: bool = False
    """M bit; for audio the first packet of a talkspurt (RFC 3551 §4.1)."""
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    """Contributing sources, at most 15."""
    extension_profile: int | None = None
    """The 16-bit "defined by profile" field when X is set, else None."""
    extension: bytes = b""
    """Header extension body (a multiple of 4 octets)."""
    padding_size: int = 0
    """Octets of padding after the payload (0 when P is clear)."""
    version: int = RTP_VERSION

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet; raise ``ValueError`` naming what is wrong."""
        n = len(data)
        if n < RTP_HEADER_SIZE:
            raise ValueError(f"RTP packet length is less than {RTP_HEADER_SIZE} bytes")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
        if b0 == 0x80:  # fast path: version 2, no padding, extension or CSRC (nearly all audio)
            return cls(b1 & 0x7F, seq, ts, ssrc, b1 > 0x7F, bytes(data[12:]), [])
        version = b0 >> 6
        if version != RTP_VERSION:
            raise ValueError(f"RTP packet has invalid version {version}")
        cc = b0 & 0x0F
        pos = RTP_HEADER_SIZE
        end = pos + 4 * cc
        if end > n:
            raise ValueError("RTP packet has truncated CSRC")
        csrc = list(struct.unpack_from(f"!{cc}I", data, pos)) if cc else []
        pos = end
        profile: int | None = None
        ext = b""
        if b0 & 0x10:
            if pos + 4 > n:
                raise ValueError("RTP packet has truncated extension profile / length")
            profile, words = _EXT.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * words
            if end > n:
                raise ValueError("RTP packet has truncated extension value")
            ext = bytes(data[pos:end])
            pos = end
        padding = 0
        if b0 & 0x20:
            if n == pos:
                raise ValueError("RTP packet padding length is zero")
            padding = data[n - 1]
            if padding == 0:
                raise ValueError("RTP packet padding length is zero")
            if padding > n - pos:
                raise ValueError("RTP packet padding length is greater than payload length")
        return cls(
            version=version,
            payload_type=b1 & 0x7F,
            marker=bool(b1 & 0x80),
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            csrc=csrc,
            extension_profile=profile,
            extension=ext,
            padding_size=padding,
            payload=bytes(data[pos : n - padding]),
        )

    def to_bytes(self) -> bytes:
        """Serialise; padding octets are zero except the last, which holds the count."""
        if len(self.csrc) > 15:
            raise ValueError("RTP packet has more than 15 CSRC")
        if len(self.extension) % 4:
            raise ValueError("RTP header extension length is not a multiple of 4")
        if not 0 <= self.padding_size <= 255:
            raise ValueError("RTP packet padding length is out of range")
        b0 = (self.version << 6) | len(self.csrc)
        if self.padding_size:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return b"".join(parts)

    __bytes__ = to_bytes


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 §4: on a muxed port, second octet 192..223 is RTCP (PT 64..95 never used for RTP)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def rewrite_header(buf: bytearray | bytes, seq: int, ts: int, ssrc: int) -> bytes:
    """Relay fast path: the same packet with sequence number, timestamp and SSRC replaced.

    Does not validate beyond length; the caller relays what it received.
    """
    if len(buf) < RTP_HEADER_SIZE:
        raise ValueError(f"RTP packet length is less than {RTP_HEADER_SIZE} bytes")
    out = bytearray(buf)
    _SEQ_TS_SSRC.pack_into(out, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    return bytes(out)


def rewrite_header_into(buf: bytearray, seq: int, ts: int, ssrc: int) -> None:
    """In-place variant of :func:`rewrite_header` for a receive buffer the caller owns."""
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def build_header(*, payload_type: int, seq: int, ts: int, ssrc: int, marker: bool = False) -> bytes:
    """The 12-octet fixed header without CSRC/extension/padding (the common sending case)."""
    return _HEADER.pack(
        0x80, (0x80 if marker else 0) | (payload_type & 0x7F), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
    )


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in ``[-32768, 32767]``."""
    d = (a - b) & 0xFFFF
    return d - SEQ_MOD if d >= 0x8000 else d


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` is after ``b`` (RFC 1982 serial arithmetic)."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 32-bit RTP timestamps."""
    d = (a - b) & 0xFFFFFFFF
    return d - TS_MOD if d >= 0x80000000 else d


class ExtendedSeq:
    """Turns 16-bit sequence numbers into a monotone-ish extended counter (cycles << 16 | seq).

    Each value is placed in the cycle that puts it nearest to the highest seen so far, so late
    packets from before a wrap map below it and packets after a wrap map above it.
    """

    __slots__ = ("highest",)

    def __init__(self) -> None:
        self.highest: int | None = None

    def extend(self, seq: int) -> int:
        """Extended value for ``seq``; updates the highest when it is newer."""
        if self.highest is None:
            self.highest = seq
            return seq
        ext = self.highest + seq_diff(seq, self.highest & 0xFFFF)
        if ext > self.highest:
            self.highest = ext
        return ext
