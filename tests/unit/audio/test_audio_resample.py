"""Resampling: pass band kept, what would alias removed, espeak rates handled."""

from __future__ import annotations

import numpy as np
import pytest

from media_gateway.audio.resample import resample


def sine(freq: float, rate: int, seconds: float = 1.0, amp: float = 10000.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def level(x: np.ndarray) -> float:
    core = x[200:-200].astype(np.float64)
    return float(np.sqrt(np.mean(core**2)) * np.sqrt(2))


@pytest.mark.parametrize("rate_in", [16000, 22050, 44100, 48000])
def test_passband_and_stopband(rate_in: int) -> None:
    for f in (300.0, 1000.0, 3000.0):
        y = resample(sine(f, rate_in), rate_in, 8000)
        assert y.dtype == np.int16 and y.size == 8000
        assert level(y) == pytest.approx(10000.0, rel=0.02), f
        # the frequency is where it should be
        spec = np.abs(np.fft.rfft(y.astype(np.float64)))
        assert abs(np.argmax(spec) - f) <= 1
    for f in (4400.0, 5000.0, 7000.0):  # would fold to 3600, 3000, 1000 Hz without the filter
        if f < rate_in / 2:
            y = resample(sine(f, rate_in), rate_in, 8000)
            assert level(y) < 10000.0 * 10 ** (-60 / 20), (rate_in, f)


def test_upsampling_and_identity() -> None:
    x = sine(1000.0, 8000).astype(np.int16)
    y = resample(x, 8000, 16000)
    assert y.size == 16000 and level(y) == pytest.approx(10000.0, rel=0.02)
    assert np.array_equal(resample(x, 8000, 8000), x)
    assert resample(np.zeros(0, dtype=np.int16), 16000, 8000).size == 0


def test_errors() -> None:
    with pytest.raises(ValueError, match="sample rates must be positive, got 0 -> 8000"):
        resample(np.zeros(4), 0, 8000)
    with pytest.raises(ValueError, match=r"expects a 1-D signal, got shape \(2, 2\)"):
        resample(np.zeros((2, 2)), 16000, 8000)
