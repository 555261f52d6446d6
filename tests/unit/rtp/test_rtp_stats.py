"""Receiver statistics (RFC 3550 A.1 probation and wrap, A.3 loss, A.8 jitter)."""

from __future__ import annotations

import random

import pytest

from media_gateway.rtp.stats import ReceiverStats


def feed(stats: ReceiverStats, seqs: list[int], *, jitter: float = 0.0, seed: int = 1) -> None:
    rng = random.Random(seed)
    for i, s in enumerate(seqs):
        stats.update(s & 0xFFFF, (i * 160) & 0xFFFFFFFF, i * 0.02 + rng.uniform(0, jitter))


def test_probation_then_clean_stream() -> None:
    st = ReceiverStats()
    assert st.update(100, 0, 0.0) is False  # first packet of a new source: on probation
    assert st.update(101, 160, 0.02) is True
    for i in range(2, 50):
        assert st.update(100 + i, 160 * i, 0.02 * i)
    snap = st.snapshot()
    assert (snap.expected, snap.received, snap.lost, snap.fraction_lost) == (49, 49, 0, 0)
    assert snap.highest_seq == 149 and snap.jitter == pytest.approx(0.0, abs=1e-6)


def test_probation_restarts_on_out_of_order() -> None:
    st = ReceiverStats()
    assert not st.update(10, 0, 0.0)
    assert not st.update(500, 0, 0.02)  # not in sequence: probation starts over
    assert st.update(501, 160, 0.04)
    assert st.expected == 1 and st.received == 1


def test_loss_fraction_and_wrap() -> None:
    st = ReceiverStats()
    seqs = [65500 + i for i in range(100) if i % 10 != 5]  # 10 % loss, crosses 65535 -> 0
    feed(st, seqs)
    snap = st.snapshot()
    assert snap.highest_seq == 65500 + 99
    assert snap.expected == 99  # the first packet is the probation one
    assert snap.lost == 10
    assert snap.fraction_lost == (10 << 8) // 99
    # next interval without loss reports fraction 0 but keeps the cumulative count
    for i in range(100, 150):
        st.update((65500 + i) & 0xFFFF, i * 160, i * 0.02)
    snap2 = st.snapshot()
    assert snap2.fraction_lost == 0 and snap2.lost == 10
    block = st.report_block(0x55)
    assert block.cumulative_lost == 10 and block.highest_seq == 65500 + 149


def test_duplicates_make_lost_negative() -> None:
    st = ReceiverStats()
    feed(st, [1, 2, 3, 3, 3, 4])
    assert st.lost == -2


def test_large_jump_needs_two_sequential_packets() -> None:
    st = ReceiverStats()
    feed(st, list(range(1, 20)))
    assert not st.update(40000, 0, 1.0)
    assert st.update(40001, 160, 1.02)  # restart at the new sequence space
    assert st.received == 1 and st.expected == 1


def test_jitter_estimate_for_uniform_delay_noise() -> None:
    st = ReceiverStats()
    feed(st, list(range(2000)), jitter=0.010)
    # |D| of two independent U(0, 10 ms) delays has mean 10/3 ms
    assert st.jitter_ms == pytest.approx(10 / 3, rel=0.25)
    assert st.jitter == pytest.approx(st.jitter_ms * 8, rel=1e-9)
