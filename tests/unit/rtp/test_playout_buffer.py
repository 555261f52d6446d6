"""Adaptive playout buffer: one lost packet = one concealed frame, never a stall."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.rtp.jitter import JitterBuffer, PlayoutFrame
from media_gateway.rtp.packet import RtpPacket


def packet(seq: int, *, ts: int | None = None, ssrc: int = 1, marker: bool = False) -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence_number=seq & 0xFFFF,
        timestamp=(seq * 160 if ts is None else ts) & 0xFFFFFFFF,
        ssrc=ssrc,
        marker=marker,
        payload=seq.to_bytes(4, "big"),
    )


def simulate(
    jb: JitterBuffer,
    arrivals: list[tuple[float, RtpPacket]],
    *,
    pops: int,
    pop_phase: float = 0.0101,
) -> list[tuple[float, PlayoutFrame | None]]:
    """Interleave arrivals with pops every 20 ms, in time order."""
    events: list[tuple[float, int, RtpPacket | None]] = [(t, 0, p) for t, p in arrivals]
    events += [(pop_phase + 0.02 * k, 1, None) for k in range(pops)]
    events.sort(key=lambda e: (e[0], e[1]))
    out: list[tuple[float, PlayoutFrame | None]] = []
    for t, kind, p in events:
        if kind == 0:
            assert p is not None
            jb.put(p, t)
        else:
            out.append((t, jb.pop(t)))
    return out


def test_one_lost_packet_costs_one_frame_not_a_stall() -> None:
    """aiortc's JitterBuffer stalls 300 ms here and keeps 280 ms of extra latency afterwards."""
    jb = JitterBuffer()
    arrival = {s: 0.005 + (s - 1) * 0.02 for s in range(1, 31) if s != 7}
    out = simulate(jb, [(t, packet(s)) for s, t in arrival.items()], pops=32)
    frames = [(t, f) for t, f in out if f is not None]
    # output starts once the target delay has passed and then continues every 20 ms
    assert frames[0][0] - arrival[1] == pytest.approx(0.0451)
    times = [t for t, _ in frames[:30]]
    assert all(b - a == pytest.approx(0.02) for a, b in itertools.pairwise(times))
    kinds = [f.kind for _, f in frames[:30]]
    assert kinds.count("lost") == 1 and kinds[6] == "lost"
    assert [f.sequence_number for _, f in frames[:30] if f.kind == "audio"] == [
        s for s in range(1, 31) if s != 7
    ]
    assert frames[6][1].timestamp == 7 * 160
    latencies = {
        round(t - arrival[f.sequence_number], 6)
        for t, f in frames[:30]
        if f.kind == "audio" and f.sequence_number
    }
    assert latencies == {0.0451}  # constant: target 40 ms + the pop grid's phase
    assert jb.target_ms == 40.0
    assert (jb.stats.lost, jb.stats.late, jb.stats.stretched, jb.stats.played) == (1, 0, 0, 29)


def test_reordering_and_duplicates() -> None:
    jb = JitterBuffer()
    order = [1, 3, 2, 4, 6, 5, 5, 7, 8, 8, 10, 9]
    arrivals = [(0.02 * i, packet(s)) for i, s in enumerate(order)]
    out = simulate(jb, arrivals, pops=16)
    played = [f.sequence_number for _, f in out if f is not None and f.kind == "audio"]
    assert played == list(range(1, 11))
    assert jb.stats.duplicate == 2


def test_sequence_and_timestamp_wrap() -> None:
    jb = JitterBuffer()
    base_ts = 2**32 - 5 * 160
    arrivals = [(0.02 * i, packet(65530 + i, ts=base_ts + 160 * i)) for i in range(20)]
    out = simulate(jb, arrivals, pops=22)
    played = [f.sequence_number for _, f in out if f is not None and f.kind == "audio"]
    assert played == [(65530 + i) & 0xFFFF for i in range(20)]
    assert jb.stats.lost == 0


def test_late_packet_is_dropped_and_delay_grows() -> None:
    jb = JitterBuffer()
    arrivals = [(0.02 * (s - 1), packet(s)) for s in range(1, 60) if s != 10]
    arrivals.append((0.02 * 9 + 0.08, packet(10)))  # 80 ms late: its slot has been concealed
    out = simulate(jb, arrivals, pops=60)
    assert jb.stats.late == 1
    # the 80 ms outlier widens the transit spread: target = 80 + one frame, reached by stretching
    assert jb.target_ms == 100.0
    kinds = [f.kind for _, f in out if f is not None]
    assert kinds.count("lost") == 1 and kinds.count("stretch") == 3
    played = [f.sequence_number for _, f in out if f is not None and f.kind == "audio"]
    assert played == [s for s in range(1, 60) if s != 10][: len(played)]
    assert len(played) >= 50


def test_delay_adapts_to_jitter_and_stays_bounded() -> None:
    rng = random.Random(5)
    jb = JitterBuffer()
    arrivals = [(0.02 * s + rng.uniform(0.0, 0.07), packet(s)) for s in range(1, 500)]
    out = simulate(jb, arrivals, pops=505)
    assert 80.0 <= jb.target_ms <= 100.0
    frames = [f for _, f in out[100:490] if f is not None]
    lost = sum(f.kind == "lost" for f in frames)
    assert lost <= 2, lost  # after the first 2 s, late arrivals are rare
    huge = JitterBuffer(max_delay_ms=120.0)
    arrivals = [(0.02 * s + rng.uniform(0.0, 0.5), packet(s)) for s in range(1, 200)]
    simulate(huge, arrivals, pops=210)
    assert huge.target_ms == 120.0


def test_latency_comes_back_down_after_a_burst() -> None:
    jb = JitterBuffer()
    # a 200 ms network stall releases 10 packets at once, then steady 20 ms arrivals
    arrivals = [(0.0, packet(s)) for s in range(1, 11)]
    arrivals += [(0.02 * (s - 10), packet(s)) for s in range(11, 500)]
    simulate(jb, arrivals, pops=500)
    assert jb.stats.dropped_for_latency >= 1
    assert jb.buffered_ms <= jb.target_ms + 20.0
    assert jb.stats.lost == 0


def test_ssrc_change_reanchors() -> None:
    jb = JitterBuffer()
    arrivals = [(0.02 * i, packet(i)) for i in range(1, 11)]
    arrivals += [
        (0.2 + 0.02 * i, packet(5000 + i, ts=999_999 + 160 * i, ssrc=2)) for i in range(10)
    ]
    out = simulate(jb, arrivals, pops=25)
    played = [f.sequence_number for _, f in out if f is not None and f.kind == "audio"]
    # frames of the old source still buffered are flushed; the new one plays after the target delay
    assert played == list(range(1, 8)) + list(range(5000, 5010))
    assert jb.stats.resets == 1


def test_silence_suppression_goes_idle_then_resumes_with_marker() -> None:
    jb = JitterBuffer()
    first = [(0.02 * i, packet(i)) for i in range(1, 11)]
    # 1 s without packets (DTX), then a new talkspurt: ts jumps by 1 s, marker set
    second = [(1.2 + 0.02 * i, packet(11 + i, ts=(60 + i) * 160, marker=i == 0)) for i in range(10)]
    out = simulate(jb, first + second, pops=80)
    kinds = [f.kind if f is not None else None for t, f in out if t < 1.2]
    assert kinds.count("lost") == jb.max_conceal  # then idle, not a second of concealment
    resumed = [t for t, f in out if f is not None and f.kind == "audio" and f.sequence_number == 11]
    assert resumed and resumed[0] - 1.22 < 0.061
    played = [f.sequence_number for _, f in out if f is not None and f.kind == "audio"]
    assert played == list(range(1, 21))


def test_timestamp_jump_without_marker_resets() -> None:
    jb = JitterBuffer()
    arrivals = [(0.02 * i, packet(i)) for i in range(1, 6)]
    arrivals += [(0.1 + 0.02 * i, packet(6 + i, ts=10_000_000 + 160 * i)) for i in range(10)]
    out = simulate(jb, arrivals, pops=20)
    played = [f.sequence_number for _, f in out if f is not None and f.kind == "audio"]
    # frames still buffered from before the jump are flushed; the new timeline plays at once
    assert played[:2] == [1, 2] and played[2:] == list(range(6, 6 + len(played) - 2))
    assert len(played) >= 10
    assert jb.stats.resets == 1


def test_idle_buffer_and_validation() -> None:
    jb = JitterBuffer()
    assert jb.pop(0.0) is None and jb.buffered_ms == 0.0
    with pytest.raises(
        ValueError,
        match=re.escape(
            "jitter buffer delays must satisfy 0 < min <= initial <= max, got 50, 40, 200"
        ),
    ):
        JitterBuffer(min_delay_ms=50, initial_delay_ms=40, max_delay_ms=200)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.3),
    jitter=st.floats(0.0, 0.1),
    start_seq=st.integers(0, 0xFFFF),
)
def test_never_stalls_never_repeats(seed: int, loss: float, jitter: float, start_seq: int) -> None:
    rng = random.Random(seed)
    jb = JitterBuffer()
    n = 150
    arrivals = [
        (0.02 * i + rng.uniform(0, jitter), packet(start_seq + i, ts=(start_seq + i) * 160))
        for i in range(n)
        if i in (0, n - 1) or rng.random() >= loss
    ]
    out = simulate(jb, arrivals, pops=n + 15)
    started = next(i for i, (_, f) in enumerate(out) if f is not None)
    # once playing, every pop yields a frame until the stream has ended
    end_of_stream = max(t for t, _ in arrivals)
    for t, f in out[started:]:
        if t < end_of_stream:
            assert f is not None
    played = [f.timestamp for _, f in out if f is not None and f.kind == "audio"]
    assert len(played) == len(set(played))
    ordered = [(ts - played[0]) % 2**32 for ts in played]
    assert ordered == sorted(ordered)
    assert 20.0 <= jb.target_ms <= 200.0
