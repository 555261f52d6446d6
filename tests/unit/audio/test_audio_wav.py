"""WAV read/write: PCM16 at 8/16 kHz, G.711 (format 6/7), 8-bit, stereo mixdown, errors."""

from __future__ import annotations

import struct
import wave
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from media_gateway.audio.wav import g711_wav_bytes, read_wav, wav_bytes, write_wav
from media_gateway.rtp import g711


@pytest.mark.parametrize("rate", [8000, 16000])
def test_pcm16_round_trip(tmp_path: Path, rate: int) -> None:
    x = np.random.default_rng(1).integers(-32768, 32768, rate // 2, dtype=np.int16)
    path = tmp_path / "a.wav"
    write_wav(path, x, rate)
    audio = read_wav(path)
    assert audio.rate == rate and np.array_equal(audio.samples, x)
    assert audio.seconds == 0.5
    with wave.open(str(path)) as w:  # the stdlib agrees on what we wrote
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, rate)
        assert w.readframes(4) == x[:4].tobytes()


@pytest.mark.parametrize("alaw", [False, True])
def test_g711_wav(alaw: bool) -> None:
    x = (np.sin(np.arange(800) / 5) * 12000).astype(np.int16)
    codes = (g711.alaw_encode(x) if alaw else g711.ulaw_encode(x)).tobytes()
    data = g711_wav_bytes(codes + codes[:1], alaw=alaw)  # odd length: the chunk gets a pad byte
    audio = read_wav(data)
    stored = codes + codes[:1]
    expected = g711.alaw_decode(stored) if alaw else g711.ulaw_decode(stored)
    assert audio.rate == 8000 and np.array_equal(audio.samples, expected)
    assert int.from_bytes(data[20:22], "little") == (6 if alaw else 7)


def _riff(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    chunks = (
        b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + extra
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_stereo_8bit_and_extensible() -> None:
    stereo = np.array([[1000, 3000], [-1000, -3000]], dtype="<i2").tobytes()
    audio = read_wav(
        _riff(struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16), stereo, b"LIST\x02\x00\x00\x00ab")
    )
    assert audio.samples.tolist() == [2000, -2000]
    u8 = read_wav(_riff(struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8), bytes([128, 255, 0])))
    assert u8.samples.tolist() == [0, 127 << 8, -32768]
    ext = (
        struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4)
        + struct.pack("<H", 1)
        + bytes(14)
    )
    assert read_wav(_riff(ext, b"\x01\x00\x02\x00")).samples.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFX\x00\x00\x00\x00WAVE", "not a RIFF/WAVE file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "WAV file has no data chunk"),
        (_riff(b"\x01\x00", b""), "WAV fmt chunk is truncated"),
        (b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00", "WAV data chunk before fmt chunk"),
        (
            _riff(struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32), bytes(8)),
            "unsupported WAV format 3 with 32 bits per sample",
        ),
        (_riff(struct.pack("<HHIIHH", 1, 0, 8000, 0, 0, 16), bytes(8)), "WAV file has no channels"),
    ],
)
def test_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        read_wav(data)
    assert str(exc.value) == message


def test_write_rejects_non_int16() -> None:
    with pytest.raises(ValueError, match="1-D int16"):
        wav_bytes(np.zeros(4))  # type: ignore[arg-type]
    with wave.open(BytesIO(wav_bytes(np.zeros(3, dtype=np.int16), 16000))) as w:
        assert w.getnframes() == 3
