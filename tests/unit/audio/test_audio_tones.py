"""Generated tones: frequencies, cadences, DTMF that our own detector reads, music without DTMF."""

from __future__ import annotations

import numpy as np
import pytest

from media_gateway.audio import tones
from media_gateway.rtp.inband import InbandDtmfDetector


def peak_freqs(x: np.ndarray, rate: int = 8000, count: int = 2) -> list[float]:
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return sorted(float(freqs[i]) for i in np.argsort(spec)[-count:])


def on_mask(x: np.ndarray, rate: int = 8000) -> np.ndarray:
    """Per 50 ms window: is the tone on?"""
    w = rate // 20
    blocks = x[: x.size // w * w].reshape(-1, w).astype(np.float64)
    return np.sqrt(np.mean(blocks**2, axis=1)) > 100


def test_silence_and_tone() -> None:
    assert tones.silence(0.5).tolist() == [0] * 4000
    t = tones.tone((440.0, 480.0), 1.0)
    assert t.dtype == np.int16 and t.size == 8000
    assert peak_freqs(t) == [440.0, 480.0]
    single = tones.tone((1000.0,), 1.0, dbfs=-6.0)
    assert np.max(np.abs(single)) == pytest.approx(32767 * 10 ** (-6 / 20), rel=0.01)
    ramped = tones.tone((1000.0,), 0.1, ramp_ms=10)
    assert ramped[0] == 0 and abs(int(ramped[40])) < abs(int(np.max(ramped)))


@pytest.mark.parametrize(
    ("region", "freqs", "on_s", "period_s"),
    [("us", [440.0, 480.0], 2.0, 6.0), ("eu", [425.0], 1.0, 5.0), ("cn", [450.0], 1.0, 5.0)],
)
def test_ringback_cadence(region: str, freqs: list[float], on_s: float, period_s: float) -> None:
    x = tones.ringback(12.0, region)
    assert x.size == 96000
    mask = on_mask(x)
    per = round(period_s * 20)
    on = round(on_s * 20)
    assert mask[1 : on - 1].all() and not mask[on + 1 : per - 1].any()
    assert np.array_equal(mask[:per], mask[per : 2 * per])
    assert peak_freqs(x[: int(on_s * 8000)], count=len(freqs)) == freqs


def test_busy_and_uk_double_ring() -> None:
    busy = on_mask(tones.busy(2.0, "us"))
    assert busy[1:9].all() and not busy[11:19].any()  # 0.5 s on, 0.5 s off
    assert peak_freqs(tones.busy(0.5, "us")) == [480.0, 620.0]
    uk = on_mask(tones.ringback(3.0, "uk"))
    assert uk[1:7].all() and not uk[9:11].any() and uk[13:19].all() and not uk[21:59].any()
    with pytest.raises(ValueError, match="unknown tone 'ringback_mars'"):
        tones.ringback(1.0, "mars")


def test_dtmf_tones_detected_by_our_detector() -> None:
    assert tones.dtmf_freqs("5") == (770.0, 1336.0)
    with pytest.raises(ValueError, match="not a DTMF digit: 'x'"):
        tones.dtmf_freqs("x")
    x = tones.dtmf_sequence("0123456789*#ABCD", on=0.08, off=0.06)
    got = InbandDtmfDetector().feed(x, 0.0)
    assert "".join(d.digit for d in got) == "0123456789*#ABCD"
    assert peak_freqs(tones.dtmf_tone("#", 1.0)) == [941.0, 1477.0]


def test_beep_and_music_on_hold() -> None:
    b = tones.beep()
    assert b.size == 4000 and peak_freqs(b, count=1) == [1000.0]
    moh = tones.music_on_hold(16.0)
    assert moh.dtype == np.int16 and moh.size == 128000
    assert 2000 < np.max(np.abs(moh)) <= 32767 * 10 ** (-20 / 20) + 1
    assert np.array_equal(moh[:64000], moh[64000:])  # an 8 s loop
    assert InbandDtmfDetector().feed(moh, 0.0) == []  # never mistaken for a key press
    assert tones.music_on_hold(0.0).size == 0
