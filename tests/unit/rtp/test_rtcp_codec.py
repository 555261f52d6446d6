"""RTCP SR/RR/SDES/BYE compound packets, checked against aiortc's RTCP parser."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpRrPacket, RtcpSdesPacket, RtcpSrPacket

from media_gateway.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpUnknown,
    SenderReport,
    SourceDescription,
    build_compound,
    cname_sdes,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
)

BLOCK = ReportBlock(
    ssrc=0x1111,
    fraction_lost=64,
    cumulative_lost=-3,
    highest_seq=0x0001_0005,
    jitter=37,
    lsr=0xABCD1234,
    dlsr=65536,
)


def test_sr_sdes_bye_compound_round_trip_and_oracle() -> None:
    sr = SenderReport(
        ssrc=0x2222,
        ntp_timestamp=ntp_from_unix(1_700_000_000.5),
        rtp_timestamp=160_000,
        packet_count=1000,
        octet_count=160_000,
        reports=(BLOCK,),
    )
    sdes = cname_sdes(0x2222, "hotline@example")
    bye = Bye(sources=(0x2222,), reason="call ended")
    data = build_compound([sr, sdes, bye])
    assert len(data) % 4 == 0
    parsed = parse_compound(data)
    assert parsed == [sr, sdes, bye]
    assert isinstance(parsed[1], SourceDescription)
    assert parsed[1].chunks[0].cname == "hotline@example"

    oracle = RtcpPacket.parse(data)
    o_sr, o_sdes, o_bye = oracle
    assert isinstance(o_sr, RtcpSrPacket) and o_sr.ssrc == 0x2222
    assert o_sr.sender_info.ntp_timestamp == sr.ntp_timestamp
    assert o_sr.sender_info.packet_count == 1000
    rep = o_sr.reports[0]
    assert (rep.ssrc, rep.fraction_lost, rep.packets_lost) == (0x1111, 64, -3)
    assert (rep.highest_sequence, rep.jitter, rep.lsr, rep.dlsr) == (0x10005, 37, 0xABCD1234, 65536)
    assert isinstance(o_sdes, RtcpSdesPacket)
    assert o_sdes.chunks[0].items == [(1, b"hotline@example")]
    assert isinstance(o_bye, RtcpByePacket) and o_bye.sources == [0x2222]


def test_rr_round_trip_and_parsing_aiortc_bytes() -> None:
    rr = ReceiverReport(ssrc=9, reports=(BLOCK, BLOCK))
    assert parse_compound(rr.to_bytes()) == [rr]
    theirs = bytes(RtcpRrPacket(ssrc=9, reports=[])) + bytes(RtcpByePacket(sources=[9, 10]))
    assert parse_compound(theirs) == [ReceiverReport(ssrc=9), Bye(sources=(9, 10))]
    (o_rr,) = RtcpPacket.parse(rr.to_bytes())
    assert isinstance(o_rr, RtcpRrPacket) and o_rr.reports[1].packets_lost == -3


def test_ntp_helpers() -> None:
    ntp = ntp_from_unix(0.25)
    assert ntp >> 32 == 2208988800 and ntp & 0xFFFFFFFF == 1 << 30
    assert ntp_middle32(ntp) == ((2208988800 & 0xFFFF) << 16) | 0x4000


def test_unknown_packet_types_are_kept() -> None:
    fb = bytes([0x81, 205, 0, 2]) + bytes(8)  # RTPFB generic NACK shape
    parsed = parse_compound(fb + ReceiverReport(ssrc=1).to_bytes())
    assert parsed[0] == RtcpUnknown(packet_type=205, count=1, data=fb)
    assert build_compound(parsed) == fb + ReceiverReport(ssrc=1).to_bytes()


def test_cumulative_lost_clamps_to_24_bits() -> None:
    big = ReportBlock(ssrc=1, fraction_lost=0, cumulative_lost=10**9, highest_seq=0, jitter=0)
    (rr,) = parse_compound(ReceiverReport(ssrc=2, reports=(big,)).to_bytes())
    assert isinstance(rr, ReceiverReport) and rr.reports[0].cumulative_lost == 0x7FFFFF


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc9", "RTCP packet length is less than 4 bytes"),
        (b"\x40\xc9\x00\x01" + bytes(4), "RTCP packet has invalid version 1"),
        (b"\x80\xc9\x00\x05" + bytes(4), "RTCP packet is truncated"),
        (b"\x81\xc9\x00\x01" + bytes(4), "RTCP receiver report has truncated report blocks"),
        (b"\x80\xc8\x00\x01" + bytes(4), "RTCP sender report is truncated"),
        (b"\x80\xc9\x00\x00", "RTCP receiver report is truncated"),
        (b"\x82\xcb\x00\x01" + bytes(4), "RTCP bye has truncated source"),
        (b"\x81\xcb\x00\x02" + bytes(4) + b"\x09abc", "RTCP bye has truncated reason"),
        (b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x09ab", "RTCP SDES item is truncated"),
        (b"\xa0\xc9\x00\x01" + bytes(4), "RTCP packet padding length is invalid"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_compound(data)
    assert str(exc.value) == message


def test_sdes_item_too_long() -> None:
    with pytest.raises(ValueError, match="longer than 255"):
        cname_sdes(1, "x" * 256).to_bytes()
