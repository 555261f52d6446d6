"""In-band DTMF detection: every generated key found once; speech, music and noise never."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from media_gateway.audio.resample import resample
from media_gateway.audio.tones import dtmf_freqs
from media_gateway.audio.wav import read_wav
from media_gateway.rtp.dtmf import DtmfDigit
from media_gateway.rtp.inband import (
    BlockDetector,
    InbandConfig,
    InbandDtmfDetector,
    feed_blocks,
)

RATE = 8000
KEYS = "0123456789*#ABCD"


def key_signal(
    rng: np.random.Generator,
    key: str,
    seconds: float,
    *,
    dbfs: float,
    twist_db: float,
    rate: int = RATE,
    freq_error: float = 0.01,
) -> npt.NDArray[np.float64]:
    """Low tone at ``dbfs``, high tone ``twist_db`` above it, random phases and frequency error."""
    lo, hi = dtmf_freqs(key)
    t = np.arange(round(seconds * rate)) / rate
    amp = 32767 * 10 ** (dbfs / 20)
    lo *= 1 + rng.uniform(-freq_error, freq_error)
    hi *= 1 + rng.uniform(-freq_error, freq_error)
    return amp * (
        np.sin(2 * np.pi * lo * t + rng.uniform(0, 2 * np.pi))
        + 10 ** (twist_db / 20) * np.sin(2 * np.pi * hi * t + rng.uniform(0, 2 * np.pi))
    )


def run(
    det: InbandDtmfDetector, x: npt.NDArray[np.float64], rng: np.random.Generator
) -> list[DtmfDigit]:
    """Feed in random-sized chunks, as RTP payloads of varying ptime would arrive."""
    out: list[DtmfDigit] = []
    pos = 0
    while pos < x.size:
        n = int(rng.integers(40, 400))
        chunk = np.clip(np.rint(x[pos : pos + n]), -32768, 32767).astype(np.int16)
        out += det.feed(chunk, pos / det.sample_rate)
        pos += n
    return out


def keypad_session(
    rng: np.random.Generator,
    keys: str,
    *,
    snr_db: float = 20.0,
    twist: tuple[float, float] = (-6, 3),
) -> tuple[npt.NDArray[np.float64], list[float]]:
    parts: list[npt.NDArray[np.float64]] = []
    starts: list[float] = []
    pos = round(rng.uniform(0.05, 0.2) * RATE)
    parts.append(np.zeros(pos))
    levels = []
    for k in keys:
        dbfs = rng.uniform(-30, -8)
        sig = key_signal(rng, k, rng.uniform(0.06, 0.12), dbfs=dbfs, twist_db=rng.uniform(*twist))
        levels.append(float(np.mean(sig**2)))
        starts.append(pos / RATE)
        parts += [sig, np.zeros(round(rng.uniform(0.05, 0.15) * RATE))]
        pos += sum(p.size for p in parts[-2:])
    x = np.concatenate(parts)
    noise_power = min(levels) / 10 ** (snr_db / 10)
    return x + rng.normal(0, np.sqrt(noise_power), x.size), starts


@pytest.mark.parametrize("seed", range(6))
def test_all_keys_found_exactly_once_in_noise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = "".join(rng.permutation(list(KEYS))) + "1" * 3 + "55"  # repeats must count too
    x, starts = keypad_session(rng, keys)
    got = run(InbandDtmfDetector(), x, rng)
    assert "".join(d.digit for d in got) == keys
    assert all(d.method == "inband" and d.duration_ms == 40.0 for d in got)
    for d, start in zip(got, starts, strict=True):
        # reported from the first block mostly covered by the tone
        assert start - 0.005 <= d.at <= start + 0.02


def test_16khz_stream() -> None:
    rng = np.random.default_rng(42)
    x = np.concatenate(
        [
            np.concatenate(
                [key_signal(rng, k, 0.08, dbfs=-12, twist_db=0, rate=16000), np.zeros(1200)]
            )
            for k in "159#"
        ]
    )
    got = InbandDtmfDetector(16000).feed(x.astype(np.int16), 0.0)
    assert [d.digit for d in got] == list("159#")


@pytest.mark.parametrize("twist_db", [-11.0, -10.0, 6.5, 8.0])
def test_twist_outside_limits_rejected(twist_db: float) -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            np.concatenate([key_signal(rng, k, 0.1, dbfs=-10, twist_db=twist_db), np.zeros(800)])
            for k in KEYS
        ]
    )
    assert run(InbandDtmfDetector(), x, rng) == []


def test_twist_at_edges_accepted() -> None:
    rng = np.random.default_rng(4)
    for twist in (-7.0, 3.5):  # nominal frequencies: an off-frequency tone loses some level
        x = np.concatenate(
            [
                np.concatenate(
                    [key_signal(rng, k, 0.1, dbfs=-10, twist_db=twist, freq_error=0), np.zeros(800)]
                )
                for k in KEYS
            ]
        )
        assert "".join(d.digit for d in run(InbandDtmfDetector(), x, rng)) == KEYS, twist


def test_short_tones_rejected() -> None:
    rng = np.random.default_rng(5)
    parts = []
    for i in range(200):  # every alignment relative to the 20 ms blocks
        parts += [
            np.zeros(160 + i % 160),
            key_signal(rng, KEYS[i % 16], 0.029, dbfs=-10, twist_db=0),
        ]
    x = np.concatenate(parts)
    x += rng.normal(0, 30, x.size)
    assert run(InbandDtmfDetector(), x, rng) == []


def test_long_press_reported_once_and_quiet_levels_ignored() -> None:
    rng = np.random.default_rng(6)
    x = np.concatenate([key_signal(rng, "7", 2.0, dbfs=-10, twist_db=-2), np.zeros(800)])
    assert [d.digit for d in run(InbandDtmfDetector(), x, rng)] == ["7"]
    quiet = key_signal(rng, "7", 0.2, dbfs=-50, twist_db=0)
    assert InbandDtmfDetector().feed(quiet, 0.0) == []


def test_white_noise_and_random_chords_give_nothing() -> None:
    rng = np.random.default_rng(7)
    det = InbandDtmfDetector()
    assert run(det, rng.normal(0, 3000, RATE * 20), rng) == []
    # "music": chords of 3-4 equal-tempered notes with harmonics, 100-500 ms each
    parts = []
    for _ in range(150):
        n = round(rng.uniform(0.1, 0.5) * RATE)
        t = np.arange(n) / RATE
        chord = np.zeros(n)
        for midi in rng.choice(np.arange(55, 96), size=int(rng.integers(3, 5)), replace=False):
            f = 440.0 * 2 ** ((midi - 69) / 12)
            a = rng.uniform(0.3, 1.0)
            for h, g in ((1, 1.0), (2, 0.5), (3, 0.25)):
                if h * f < RATE / 2:
                    chord += a * g * np.sin(2 * np.pi * h * f * t + rng.uniform(0, 2 * np.pi))
        env = np.minimum(1.0, np.minimum(t / 0.02, (t[-1] - t + 1e-3) / 0.05))
        parts.append(chord * env * 3000)
    assert run(InbandDtmfDetector(), np.concatenate(parts), rng) == []


ESPEAK = shutil.which("espeak-ng")
SENTENCES = {
    "en": "Thank you for calling. Please enter your account number: one, two, three, four, five, "
    "six, seven, eight, nine, zero. Press star to go back, or hash to continue. "
    "Your call is important to us; an agent will be with you shortly.",
    "cmn": "您好，欢迎致电客户服务中心。请输入您的账号：一二三四五六七八九零。"
    "按星号键返回，按井号键确认。您的电话对我们非常重要，请稍候。",
}


def speech(tmp_path: Path, voice: str) -> npt.NDArray[np.int16]:
    assert ESPEAK is not None, "espeak-ng is part of the test environment"
    out = tmp_path / f"{voice}.wav"
    subprocess.run(
        [ESPEAK, "-v", voice, "-s", "150", "-w", str(out), SENTENCES[voice]],
        check=True,
        capture_output=True,
        timeout=60,
    )
    audio = read_wav(out)
    assert audio.seconds > 5
    return resample(audio.samples, audio.rate, RATE)


@pytest.mark.parametrize("voice", ["en", "cmn"])
def test_speech_gives_nothing(tmp_path: Path, voice: str) -> None:
    rng = np.random.default_rng(8)
    x = speech(tmp_path, voice).astype(np.float64)
    for gain in (0.3, 1.0, 2.5):
        assert run(InbandDtmfDetector(), np.clip(x * gain, -32768, 32767), rng) == []
    power = float(np.mean(x**2))
    for snr_db in (20.0, 10.0):
        noisy = x + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), x.size)
        assert run(InbandDtmfDetector(), noisy, rng) == []
    # a key pressed while the prompt plays (loud key over speech) is still found
    keyed = x.copy()
    k = key_signal(rng, "5", 0.1, dbfs=-6, twist_db=0)
    keyed[8000 : 8000 + k.size] = keyed[8000 : 8000 + k.size] * 0.1 + k
    assert [d.digit for d in run(InbandDtmfDetector(), keyed, rng)] == ["5"]


def test_batched_feed_equals_per_stream() -> None:
    rng = np.random.default_rng(9)
    n_calls, n_blocks = 40, 60
    signals = []
    for i in range(n_calls):
        if i % 3 == 0:
            signals.append(rng.normal(0, 2000, n_blocks * 160))
        else:
            x, _ = keypad_session(rng, "".join(rng.choice(list(KEYS), size=4)))
            signals.append(np.pad(x, (0, max(0, n_blocks * 160 - x.size)))[: n_blocks * 160])
    shared = BlockDetector(InbandConfig())
    batched = [InbandDtmfDetector(blocks=shared) for _ in range(n_calls)]
    got: list[list[str]] = [[] for _ in range(n_calls)]
    stacked = np.stack(signals).reshape(n_calls, n_blocks, 160)
    for b in range(n_blocks):
        for i, ds in enumerate(feed_blocks(batched, stacked[:, b, :], b * 0.02)):
            got[i] += [d.digit for d in ds]
    single = [[d.digit for d in InbandDtmfDetector().feed(s, 0.0)] for s in signals]
    assert got == single
    assert sum(len(g) for g in got) > 40


def test_errors() -> None:
    bd = BlockDetector()
    with pytest.raises(
        ValueError, match=re.escape("detect_blocks expects shape (n, 160), got (2, 100)")
    ):
        bd.detect_blocks(np.zeros((2, 100)))
    assert bd.detect_blocks(np.zeros((0, 160))) == []
    assert bd.detect_blocks(np.zeros((1, 160))) == [None]
    other = InbandDtmfDetector()
    with pytest.raises(ValueError, match="sharing one BlockDetector"):
        feed_blocks([InbandDtmfDetector(blocks=bd), other], np.zeros((2, 160)), 0.0)
    assert feed_blocks([], np.zeros((0, 160)), 0.0) == []


def test_205_sample_blocks() -> None:
    rng = np.random.default_rng(10)
    det = InbandDtmfDetector(config=InbandConfig(block_size=205))
    x, _ = keypad_session(rng, "0123456789")
    assert "".join(d.digit for d in run(det, x, rng)) == "0123456789"
