"""WAV files as int16 numpy arrays: PCM16 read/write (stdlib ``wave``), G.711 WAV read.

``wave`` only reads format 1 (PCM), so reading parses the RIFF chunks itself and also accepts
format 6 (A-law) and 7 (μ-law), 8-bit, as telephony recorders write them; format 0xFFFE
(WAVE_FORMAT_EXTENSIBLE) with a PCM sub-format is read too. Multi-channel files are mixed down.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media_gateway.rtp.g711 import alaw_decode, ulaw_decode

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True, slots=True)
class Audio:
    """Mono samples and their rate."""

    samples: npt.NDArray[np.int16]
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


def read_wav(source: str | Path | bytes) -> Audio:
    """Read a WAV file (path or bytes) to mono int16; raise ``ValueError`` if unsupported."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise ValueError("WAV fmt chunk is truncated")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body, 0)
            if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("WAV data chunk before fmt chunk")
            return _decode(body, *fmt)
        pos += 8 + size + (size & 1)
    raise ValueError("WAV file has no data chunk")


def _decode(body: bytes, tag: int, channels: int, rate: int, bits: int) -> Audio:
    if channels < 1:
        raise ValueError("WAV file has no channels")
    if tag == WAVE_FORMAT_PCM and bits == 16:
        raw = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
    elif tag == WAVE_FORMAT_PCM and bits == 8:
        raw = ((np.frombuffer(body, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif tag == WAVE_FORMAT_MULAW and bits == 8:
        raw = ulaw_decode(body)
    elif tag == WAVE_FORMAT_ALAW and bits == 8:
        raw = alaw_decode(body)
    else:
        raise ValueError(f"unsupported WAV format {tag} with {bits} bits per sample")
    if channels > 1:
        frames = raw[: raw.size // channels * channels].reshape(-1, channels)
        raw = np.rint(frames.mean(axis=1)).astype(np.int16)
    return Audio(samples=raw, rate=rate)


def wav_bytes(samples: npt.NDArray[np.int16], rate: int = 8000) -> bytes:
    """A mono PCM16 WAV file as bytes."""
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError("wav_bytes expects a 1-D int16 array")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, samples: npt.NDArray[np.int16], rate: int = 8000) -> None:
    """Write a mono PCM16 WAV file."""
    Path(path).write_bytes(wav_bytes(samples, rate))


def g711_wav_bytes(codes: bytes, *, alaw: bool, rate: int = 8000) -> bytes:
    """A mono G.711 WAV (format 6 A-law / 7 μ-law) holding ``codes`` as-is (e.g. a recording)."""
    tag = WAVE_FORMAT_ALAW if alaw else WAVE_FORMAT_MULAW
    fmt = struct.pack("<HHIIHHH", tag, 1, rate, rate, 1, 8, 0)
    pad = b"\x00" if len(codes) & 1 else b""
    fact = struct.pack("<4sII", b"fact", 4, len(codes))
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + fact
    chunks += b"data" + struct.pack("<I", len(codes)) + codes + pad
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
