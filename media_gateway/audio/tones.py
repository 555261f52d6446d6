"""Generated call-progress tones and prompts as int16 numpy arrays (8 kHz by default).

Frequencies and cadences: ITU-T E.180 Supplement 2 (national tones); DTMF: ITU-T Q.23.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

RATE = 8000
DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")

# name -> (frequencies, (on, off, on, off, ...) seconds); a single "on" with no "off" is continuous
CADENCES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "ringback_us": ((440.0, 480.0), (2.0, 4.0)),
    "ringback_uk": ((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
    "ringback_eu": ((425.0,), (1.0, 4.0)),
    "ringback_cn": ((450.0,), (1.0, 4.0)),
    "busy_us": ((480.0, 620.0), (0.5, 0.5)),
    "busy_eu": ((425.0,), (0.5, 0.5)),
    "busy_cn": ((450.0,), (0.35, 0.35)),
    "dial_us": ((350.0, 440.0), (1.0,)),
    "dial_eu": ((425.0,), (1.0,)),
    "dial_cn": ((450.0,), (1.0,)),
}


def _level(dbfs: float) -> float:
    return float(32767.0 * 10.0 ** (dbfs / 20.0))


def _to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> npt.NDArray[np.int16]:
    """Zeros for ``seconds``."""
    return np.zeros(round(seconds * rate), dtype=np.int16)


def tone(
    freqs: Sequence[float],
    seconds: float,
    *,
    rate: int = RATE,
    dbfs: float = -12.0,
    phase: float = 0.0,
    ramp_ms: float = 0.0,
) -> npt.NDArray[np.int16]:
    """Sum of sines, each at ``dbfs`` peak (relative to full scale), optional raised-cosine ramps."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    x = np.zeros(n)
    for f in freqs:
        x += np.sin(2 * np.pi * f * t + phase)
    x *= _level(dbfs)
    r = min(round(ramp_ms * rate / 1000), n // 2)
    if r > 0:
        w = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
        x[:r] *= w
        x[n - r :] *= w[::-1]
    return _to_int16(x)


def dtmf_freqs(digit: str) -> tuple[float, float]:
    """(low, high) frequencies of a DTMF key (Q.23)."""
    for row, keys in enumerate(DTMF_KEYS):
        col = keys.find(digit.upper()) if len(digit) == 1 else -1
        if col >= 0:
            return DTMF_LOW[row], DTMF_HIGH[col]
    raise ValueError(f"not a DTMF digit: {digit!r}")


def dtmf_tone(
    digit: str,
    seconds: float = 0.1,
    *,
    rate: int = RATE,
    dbfs: float = -10.0,
    twist_db: float = 0.0,
) -> npt.NDArray[np.int16]:
    """One key: low tone at ``dbfs``, high tone at ``dbfs + twist_db``."""
    lo, hi = dtmf_freqs(digit)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    x = _level(dbfs) * np.sin(2 * np.pi * lo * t) + _level(dbfs + twist_db) * np.sin(
        2 * np.pi * hi * t
    )
    return _to_int16(x)


def dtmf_sequence(
    digits: str, *, on: float = 0.1, off: float = 0.1, rate: int = RATE, dbfs: float = -10.0
) -> npt.NDArray[np.int16]:
    """Keys with ``off`` seconds of silence after each."""
    parts: list[npt.NDArray[np.int16]] = []
    for d in digits:
        parts.append(dtmf_tone(d, on, rate=rate, dbfs=dbfs))
        parts.append(silence(off, rate))
    return np.concatenate(parts) if parts else silence(0, rate)


def cadence(
    name: str, seconds: float, *, rate: int = RATE, dbfs: float = -15.0
) -> npt.NDArray[np.int16]:
    """A named call-progress tone (see :data:`CADENCES`) for ``seconds``."""
    try:
        freqs, pattern = CADENCES[name]
    except KeyError:
        raise ValueError(f"unknown tone {name!r}; known: {', '.join(sorted(CADENCES))}") from None
    period = sum(pattern)
    n = round(seconds * rate)
    one = np.concatenate(
        [
            tone(freqs, d, rate=rate, dbfs=dbfs, ramp_ms=5.0) if i % 2 == 0 else silence(d, rate)
            for i, d in enumerate(pattern)
        ]
    )
    reps = int(np.ceil(seconds / period)) if period > 0 else 1
    return np.tile(one, max(reps, 1))[:n]


def ringback(seconds: float, region: str = "us", *, rate: int = RATE) -> npt.NDArray[np.int16]:
    """Ringback for a region (``us``, ``uk``, ``eu``, ``cn``)."""
    return cadence(f"ringback_{region}", seconds, rate=rate)


def busy(seconds: float, region: str = "us", *, rate: int = RATE) -> npt.NDArray[np.int16]:
    """Busy tone for a region (``us``, ``eu``, ``cn``)."""
    return cadence(f"busy_{region}", seconds, rate=rate)


def beep(seconds: float = 0.5, *, freq: float = 1000.0, rate: int = RATE) -> npt.NDArray[np.int16]:
    """The "record after the tone" beep for voicemail."""
    return tone((freq,), seconds, rate=rate, dbfs=-10.0, ramp_ms=10.0)


_CHORDS = ((0, 4, 7), (-3, 0, 4), (-7, -3, 0), (-5, -1, 2))
"""I - vi - IV - V in semitones from the root (a common, pleasant progression)."""


def music_on_hold(
    seconds: float, *, rate: int = RATE, root_hz: float = 261.63, chord_s: float = 2.0
) -> npt.NDArray[np.int16]:
    """A soft loop of triads (I-vi-IV-V) with gentle harmonics and fades, at about -20 dBFS."""
    n = round(seconds * rate)
    per = round(chord_s * rate)
    t = np.arange(per) / rate
    env = np.minimum(1.0, np.minimum(t / 0.15, (chord_s - t) / 0.4))
    env = np.clip(env, 0.0, 1.0) * np.exp(-t / (chord_s * 1.5))
    blocks = []
    for semis in _CHORDS:
        x = np.zeros(per)
        for s in semis:
            f = root_hz * 2.0 ** (s / 12.0)
            x += np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
        blocks.append(x * env)
    loop = np.concatenate(blocks)
    loop *= _level(-20.0) / max(float(np.max(np.abs(loop))), 1e-9)
    reps = -(-n // loop.size) if n else 0
    return _to_int16(np.tile(loop, max(reps, 1))[:n])
