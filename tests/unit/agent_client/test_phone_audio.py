"""The terminal agent's audio: what ``--play`` sends and what ``--record`` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent_client.phone import SAMPLES, AudioSource, Recorder
from media_gateway.audio.tones import tone
from media_gateway.audio.wav import read_wav, write_wav


def _hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(spectrum.argmax() * 8000 / x.size)


def test_a_tone_loops_seamlessly_in_20_ms_frames() -> None:
    source = AudioSource.parse("tone:440")
    frames = np.concatenate([source.frame() for _ in range(100)])  # 2 s from a 1 s loop
    assert frames.size == 100 * SAMPLES
    assert abs(_hz(frames) - 440) < 2
    assert np.array_equal(frames[:8000], frames[8000:])


def test_a_wav_file_at_another_rate_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "voice.wav"
    write_wav(path, tone([1000.0], 0.5, rate=16000), rate=16000)
    source = AudioSource.parse(str(path))
    assert source.samples.size == 4000
    assert abs(_hz(source.samples) - 1000) < 5


@pytest.mark.parametrize("spec", ["tone:abc", "tone:5", "/nonexistent.wav"])
def test_a_bad_play_spec_says_why(spec: str) -> None:
    with pytest.raises(ValueError, match="--play"):
        AudioSource.parse(spec)


def test_the_recording_places_frames_by_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "heard.wav"
    rec = Recorder(path)
    frame = np.full(SAMPLES, 1000, dtype=np.int16)
    rec.add(7, 4_294_967_136, frame)  # the timestamp wraps
    rec.add(7, 160 * 2 - 160, frame)  # one frame lost in between: silence
    rec.end_call()
    rec.add(9, 5000, frame)  # the next call follows
    rec.end_call()
    audio = read_wav(path)
    assert audio.samples.size == 4 * SAMPLES
    assert (audio.samples[:SAMPLES] == 1000).all()
    assert (audio.samples[SAMPLES : 2 * SAMPLES] == 0).all()
    assert (audio.samples[2 * SAMPLES :] == 1000).all()
