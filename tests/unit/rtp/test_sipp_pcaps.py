"""Real captures shipped with SIPp (Debian sip-tester): RFC 2833/4733 key presses and G.711 A-law."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from media_gateway.rtp.dtmf import DtmfDigit, DtmfReceiver
from media_gateway.rtp.g711 import alaw_decode
from media_gateway.rtp.inband import InbandDtmfDetector
from media_gateway.rtp.jitter import JitterBuffer
from media_gateway.rtp.packet import RtpPacket
from media_gateway.rtp.stats import ReceiverStats

SIPP = Path("/usr/share/sip-tester")


def udp_payloads(path: Path) -> list[tuple[float, bytes]]:
    """(capture time, UDP payload) of each Ethernet/IPv4/UDP frame in a classic pcap file."""
    data = path.read_bytes()
    endian = "<" if struct.unpack_from("<I", data, 0)[0] == 0xA1B2C3D4 else ">"
    assert struct.unpack_from(endian + "I", data, 20)[0] == 1, "Ethernet link type"
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        out.append((sec + usec / 1e6, frame[14 + ihl + 8 :]))
    return out


@pytest.mark.parametrize(
    ("name", "digit"),
    [(f"dtmf_2833_{d}.pcap", str(d)) for d in range(10)]
    + [("dtmf_2833_pound.pcap", "#"), ("dtmf_2833_star.pcap", "*")],
)
def test_sipp_rfc2833_captures(name: str, digit: str) -> None:
    rx = DtmfReceiver()
    digits: list[DtmfDigit] = []
    for at, payload in udp_payloads(SIPP / name):
        packet = RtpPacket.parse(payload)
        assert packet.payload_type == 101 and packet.to_bytes() == payload
        digits += [e for e in rx.feed(packet, at) if isinstance(e, DtmfDigit)]
    # three end packets (SIPp even repeats their sequence number), one key press, 140 ms
    assert [(d.digit, d.duration_ms) for d in digits] == [(digit, 280.0)]
    assert rx.next_deadline() is None


def test_sipp_g711a_capture_plays_without_loss() -> None:
    captured = udp_payloads(SIPP / "g711a.pcap")
    packets = [(at, RtpPacket.parse(p)) for at, p in captured]
    assert {p.payload_type for _, p in packets} == {8}
    assert {len(p.payload) for _, p in packets} == {240}  # 30 ms packets
    t0 = packets[0][0]
    jb = JitterBuffer(ptime_ms=30)
    stats = ReceiverStats()
    frames = []
    kinds = []
    arrivals = iter(packets)
    pending = next(arrivals, None)
    now = 0.0
    for k in range(len(packets) + 10):
        now = 0.015 + 0.03 * k
        while pending is not None and pending[0] - t0 <= now:
            jb.put(pending[1], pending[0] - t0)
            stats.update(pending[1].sequence_number, pending[1].timestamp, pending[0] - t0)
            pending = next(arrivals, None)
        frame = jb.pop(now)
        if frame is not None:
            kinds.append(frame.kind)
        if frame is not None and frame.kind == "audio":
            assert frame.payload is not None
            frames.append(frame.payload)
    # every packet played in turn; concealment only after the capture ends, then idle
    assert kinds == ["audio"] * len(packets) + ["lost"] * jb.max_conceal
    assert jb.stats.late == 0
    snap = stats.snapshot()
    assert snap.lost == 0 and snap.jitter_ms < 5.0
    audio = alaw_decode(b"".join(frames))
    assert audio.size == 240 * len(packets) and np.abs(audio.astype(np.int32)).max() > 1000
    assert InbandDtmfDetector().feed(audio, 0.0) == []
