"""RTP fixed header codec, checked against aiortc's parser as an oracle."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtpPacket as AiortcPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.rtp.packet import (
    ExtendedSeq,
    RtpPacket,
    build_header,
    is_rtcp,
    rewrite_header,
    rewrite_header_into,
    seq_diff,
    seq_newer,
    ts_diff,
)

# a PCMU packet: V=2, M=1, PT=0, seq 4660, ts 0x01020304, ssrc 0xDEADBEEF, 160 bytes of 0xFF
PCMU = bytes.fromhex("8080123401020304deadbeef") + b"\xff" * 160


def test_parse_plain_packet() -> None:
    p = RtpPacket.parse(PCMU)
    assert (p.version, p.marker, p.payload_type) == (2, True, 0)
    assert (p.sequence_number, p.timestamp, p.ssrc) == (0x1234, 0x01020304, 0xDEADBEEF)
    assert p.payload == b"\xff" * 160 and p.csrc == [] and p.extension_profile is None
    assert p.to_bytes() == PCMU == bytes(p)


def test_csrc_extension_padding_round_trip() -> None:
    p = RtpPacket(
        payload_type=101,
        sequence_number=65535,
        timestamp=2**32 - 1,
        ssrc=7,
        marker=False,
        payload=b"\x05\x0a\x00\xa0",
        csrc=[1, 2, 3],
        extension_profile=0xBEDE,
        extension=b"\x10\xaa\x00\x00",
        padding_size=4,
    )
    data = p.to_bytes()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert len(data) == 12 + 12 + 4 + 4 + 4 + 4
    assert data[-4:] == b"\x00\x00\x00\x04"
    assert RtpPacket.parse(data) == p
    oracle = AiortcPacket.parse(data)
    assert oracle.csrc == [1, 2, 3] and oracle.padding_size == 4
    assert oracle.payload == p.payload and oracle.sequence_number == 65535


@settings(max_examples=200, deadline=None)
@given(
    pt=st.integers(0, 127),
    marker=st.booleans(),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    payload=st.binary(max_size=200),
    padding=st.integers(0, 16),
)
def test_matches_aiortc_oracle(
    pt: int,
    marker: bool,
    seq: int,
    ts: int,
    ssrc: int,
    csrc: list[int],
    payload: bytes,
    padding: int,
) -> None:
    ours = RtpPacket(
        payload_type=pt,
        marker=marker,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        csrc=csrc,
        payload=payload,
        padding_size=padding,
    )
    data = ours.to_bytes()
    theirs = AiortcPacket.parse(data)
    assert (theirs.payload_type, bool(theirs.marker), theirs.sequence_number) == (pt, marker, seq)
    assert (theirs.timestamp, theirs.ssrc, theirs.csrc) == (ts, ssrc, csrc)
    assert theirs.payload == payload and theirs.padding_size == padding
    assert RtpPacket.parse(data) == ours
    if not padding:
        assert theirs.serialize() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "RTP packet length is less than 12 bytes"),
        (b"\x40" + bytes(11), "RTP packet has invalid version 1"),
        (b"\x82" + bytes(11) + bytes(4), "RTP packet has truncated CSRC"),
        (b"\x90" + bytes(11) + b"\xbe", "RTP packet has truncated extension profile / length"),
        (
            b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),
            "RTP packet has truncated extension value",
        ),
        (b"\xa0" + bytes(11), "RTP packet padding length is zero"),
        (b"\xa0" + bytes(11) + b"\x00\x00", "RTP packet padding length is zero"),
        (
            b"\xa0" + bytes(11) + b"\x00\x05",
            "RTP packet padding length is greater than payload length",
        ),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        RtpPacket.parse(data)
    assert str(exc.value) == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_value_error(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except ValueError:
        return
    assert RtpPacket.parse(p.to_bytes()) == p


def test_to_bytes_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="more than 15 CSRC"):
        RtpPacket(csrc=list(range(16))).to_bytes()
    with pytest.raises(ValueError, match="not a multiple of 4"):
        RtpPacket(extension_profile=1, extension=b"abc").to_bytes()


def test_rewrite_header_swaps_only_seq_ts_ssrc() -> None:
    out = rewrite_header(PCMU, 1, 2**32 + 5, 0xCAFE)
    p = RtpPacket.parse(out)
    assert (p.sequence_number, p.timestamp, p.ssrc) == (1, 5, 0xCAFE)
    assert p.marker and p.payload == b"\xff" * 160 and len(out) == len(PCMU)
    buf = bytearray(PCMU)
    rewrite_header_into(buf, 70000, 9, 10)
    assert struct.unpack_from("!HII", buf, 2) == (70000 & 0xFFFF, 9, 10)
    with pytest.raises(ValueError, match="less than 12 bytes"):
        rewrite_header(b"\x80\x00", 1, 2, 3)


def test_build_header_and_rtcp_demux() -> None:
    hdr = build_header(payload_type=8, seq=65536 + 3, ts=160, ssrc=42, marker=True)
    p = RtpPacket.parse(hdr)
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.marker) == (
        8,
        3,
        160,
        42,
        True,
    )
    assert not is_rtcp(PCMU)
    assert is_rtcp(b"\x80\xc8\x00\x06") and is_rtcp(b"\x81\xc9")
    assert not is_rtcp(b"\x80")


def test_sequence_arithmetic_wraps() -> None:
    assert seq_diff(1, 65535) == 2
    assert seq_diff(65535, 1) == -2
    assert seq_newer(0, 65535) and not seq_newer(65535, 0)
    assert seq_diff(5, 5) == 0
    assert ts_diff(10, 2**32 - 10) == 20
    assert ts_diff(2**32 - 10, 10) == -20


def test_extended_seq_across_wrap_and_reorder() -> None:
    ext = ExtendedSeq()
    got = [ext.extend(s) for s in (65533, 65534, 0, 65535, 1, 2)]
    assert got == [65533, 65534, 65536, 65535, 65537, 65538]
    assert ext.highest == 65538
