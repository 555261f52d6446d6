"""In-band DTMF detection (ITU-T Q.24 style) with numpy, batched across calls.

Per block (20 ms, 160 samples at 8 kHz, or 205 samples for classic Goertzel), the powers at the
eight Q.23 frequencies are one matrix product of the whole tick's blocks (one row per call)
against a precomputed cos/sin table, equal to Goertzel's output at those exact frequencies.
Blocks whose two strongest tones could hold the required share of energy (nearly none in
speech) go to a second product: the tones again at +/-1.2 % (so tones up to ~2 % off frequency
keep their power), and their second harmonics, with the leakage of the high tone into the
low tone's harmonic bin (2 x 697 = 1394 Hz is 58 Hz from 1336 Hz) subtracted. A block holds a
key when:

* both the strongest low-group and high-group tones are above ``min_level_dbfs``;
* each beats every other tone of its group by ``dominance_db``;
* twist is within limits: the low tone at most ``normal_twist_db`` above the high tone, the
  high tone at most ``reverse_twist_db`` above the low tone;
* the two tones carry at least ``min_tone_share`` of the block's energy (speech and music spread
  their energy over many frequencies; this also rejects partial blocks at tone edges);
* neither tone has a second harmonic within ``harmonic_db`` of itself (voiced speech does).

:class:`InbandDtmfDetector` then needs ``min_blocks`` consecutive blocks with the same key (40 ms
at 20 ms blocks) and reports each press once; the key is re-armed after ``min_pause_blocks``
blocks without it. With non-overlapping blocks, tones of 60 ms or more are always found, tones
shorter than 30 ms never are, and 30-60 ms ones depend on how they fall on block boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from media_gateway.rtp.dtmf import DtmfDigit

DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
FREQ_STEP = 0.012
STAGE1_MARGIN = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class InbandConfig:
    """Detector thresholds (defaults follow common Q.24 practice)."""

    sample_rate: int = 8000
    block_size: int | None = None
    """Samples per block; None = 20 ms at ``sample_rate``."""
    min_level_dbfs: float = -40.0
    """Minimum peak level of each tone, relative to a full-scale sine."""
    normal_twist_db: float = 8.0
    """How far the low-group tone may exceed the high-group tone."""
    reverse_twist_db: float = 4.0
    """How far the high-group tone may exceed the low-group tone."""
    dominance_db: float = 6.0
    """Each tone over the other tones of its group."""
    min_tone_share: float = 0.8
    """Fraction of the block energy the two tones must hold."""
    harmonic_db: float = 12.0
    """A tone's second harmonic must be at least this far below it."""
    min_blocks: int = 2
    """Consecutive blocks with the same key before it is reported."""
    min_pause_blocks: int = 2
    """Blocks without the key before the same key may be reported again."""


class BlockDetector:
    """Stateless per-block classifier shared by many streams (the batched part)."""

    def __init__(self, config: InbandConfig | None = None) -> None:
        self.config = cfg = config or InbandConfig()
        self.block_size = cfg.block_size or cfg.sample_rate // 50
        n = self.block_size
        tones = np.array(DTMF_LOW + DTMF_HIGH)
        t = np.arange(n)[:, None]

        def basis(freqs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            w = 2 * np.pi * freqs[None, :] / cfg.sample_rate
            return np.concatenate([np.cos(w * t), np.sin(w * t)], axis=1)

        # stage 1 (every block): the 8 nominal tones only
        self._basis = basis(tones)  # [N, 16]
        # stage 2 (candidates): the tones, their second harmonics, and each tone again at
        # -/+ ``FREQ_STEP`` so that a tone off by up to ~2 % (Q.24 allows 1.5 % + 2 Hz) still
        # shows its full power
        self._basis2 = basis(
            np.concatenate([tones, 2 * tones, tones * (1 - FREQ_STEP), tones * (1 + FREQ_STEP)])
        )  # [N, 64]
        self._scale = 2.0 / n
        full = 32767.0 * 10 ** (cfg.min_level_dbfs / 20)
        self._min_power = full * full * n / 2  # energy of a sine of that peak over the block
        self._normal = 10 ** (cfg.normal_twist_db / 10)
        self._reverse = 10 ** (cfg.reverse_twist_db / 10)
        self._dominance = 10 ** (cfg.dominance_db / 10)
        self._harmonic = 10 ** (-cfg.harmonic_db / 10)
        self._keys = np.array([k for row in KEYS for k in row])
        # Leakage of high tone j into the second-harmonic bin of low tone i (2*697 = 1394 Hz sits
        # 58 Hz from 1336 Hz): X(w_h) ~= X(w_j) * D(w_j - w_h) / N for a tone at w_j, with
        # D(d) = sum_n exp(1j*d*n). Subtracting it keeps the harmonic test from rejecting keys
        # with reverse twist.
        w_hi = 2 * np.pi * np.array(DTMF_HIGH) / cfg.sample_rate
        w_h2 = 2 * np.pi * 2 * np.array(DTMF_LOW) / cfg.sample_rate
        nn = np.arange(n)
        d = w_hi[:, None, None] - w_h2[None, :, None]
        self._leak = np.exp(1j * d * nn).sum(axis=2) / n  # [high j, low i]

    def powers(
        self, blocks: npt.NDArray[np.floating] | npt.NDArray[np.integer]
    ) -> npt.NDArray[np.float64]:
        """``[n_calls, 16]`` powers: 8 DTMF tones (best of three nearby bins), 8 second harmonics.

        In units of block energy: a sine filling the block gives its ``sum(x**2)``.
        """
        p, _ = self._fine(np.asarray(blocks, dtype=np.float64))
        return p

    def _coarse(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        y = x @ self._basis
        p = y[:, :8] ** 2
        p += y[:, 8:] ** 2
        p *= self._scale
        return p

    def _fine(
        self, x: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Powers ``[n, 16]`` (best-of-three tones, harmonics) and the raw cos/sin sums."""
        y = x @ self._basis2
        p = y[:, :32] ** 2
        p += y[:, 32:] ** 2
        p *= self._scale
        tones = np.maximum(np.maximum(p[:, 0:8], p[:, 16:24]), p[:, 24:32])
        return np.concatenate([tones, p[:, 8:16]], axis=1), y

    def detect_blocks(
        self, blocks: npt.NDArray[np.floating] | npt.NDArray[np.integer]
    ) -> list[str | None]:
        """The key held in each row of ``blocks`` (``[n_calls, block_size]``), or None."""
        x = np.asarray(blocks, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.block_size:
            raise ValueError(
                f"detect_blocks expects shape (n, {self.block_size}), got {tuple(x.shape)}"
            )
        n = x.shape[0]
        out: list[str | None] = [None] * n
        if n == 0:
            return out
        # stage 1 for every row, at the nominal frequencies with a margin for tones up to 2 %
        # off (which lose up to ~2 dB there); almost all blocks stop here
        c = self._coarse(x)
        lo_c = c[:, :4].max(axis=1)
        hi_c = c[:, 4:].max(axis=1)
        energy = np.einsum("ij,ij->i", x, x)
        cand = np.flatnonzero(
            (lo_c + hi_c >= STAGE1_MARGIN * self.config.min_tone_share * energy)
            & (lo_c >= STAGE1_MARGIN * self._min_power)
            & (hi_c >= STAGE1_MARGIN * self._min_power)
        )
        if cand.size == 0:
            return out
        # stage 2 for candidates: level, share, twist, dominance within each group, harmonics
        p, y = self._fine(x[cand])
        rows = np.arange(cand.size)
        lo_i = np.argmax(p[:, :4], axis=1)
        hi_i = np.argmax(p[:, 4:8], axis=1)
        lo = p[rows, lo_i]
        hi = p[rows, 4 + hi_i]
        lo_other = np.sort(p[:, :4], axis=1)[:, -2]
        hi_other = np.sort(p[:, 4:8], axis=1)[:, -2]
        ok = (lo >= self._min_power) & (hi >= self._min_power)
        ok &= lo + hi >= self.config.min_tone_share * energy[cand]
        ok &= (lo <= hi * self._normal) & (hi <= lo * self._reverse)
        ok &= (lo >= lo_other * self._dominance) & (hi >= hi_other * self._dominance)
        # DFT values X(w) = sum x[n] exp(-j w n) = cos sum - j sin sum
        h2 = (y[rows, 8 + lo_i] - 1j * y[rows, 40 + lo_i]) - (
            y[rows, 4 + hi_i] - 1j * y[rows, 36 + hi_i]
        ) * self._leak[hi_i, lo_i]
        # the leakage model assumes the nominal frequency; never let it add power
        h2_power = np.minimum((h2.real**2 + h2.imag**2) * self._scale, p[rows, 8 + lo_i])
        ok &= h2_power <= lo * self._harmonic
        ok &= p[rows, 12 + hi_i] <= hi * self._harmonic
        keys = self._keys[lo_i * 4 + hi_i]
        for r, key in zip(cand[ok].tolist(), keys[ok].tolist(), strict=True):
            out[r] = key
        return out


class InbandDtmfDetector:
    """One stream's detector: buffers samples into blocks and applies the duration rules.

    ``feed(samples, now)``: ``now`` is the time of the first sample in ``samples``.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        config: InbandConfig | None = None,
        blocks: BlockDetector | None = None,
    ) -> None:
        if blocks is None:
            cfg = config or InbandConfig(sample_rate=sample_rate)
            blocks = BlockDetector(cfg)
        self.blocks = blocks
        self.sample_rate = blocks.config.sample_rate
        self.block_size = blocks.block_size
        self._buf = np.zeros(0, dtype=np.float64)
        self._buf_start = 0.0
        self._run_key: str | None = None
        self._run_len = 0
        self._run_start = 0.0
        self._reported: str | None = None
        self._absent = 0

    def feed(
        self, samples: npt.NDArray[np.int16] | npt.NDArray[np.floating], now: float
    ) -> list[DtmfDigit]:
        """Detect in the samples received so far; returns keys confirmed by this call."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        if self._buf.size == 0:
            self._buf_start = now
            self._buf = x
        else:
            self._buf = np.concatenate([self._buf, x])
        n = self._buf.size // self.block_size
        if n == 0:
            return []
        blocks = self._buf[: n * self.block_size].reshape(n, self.block_size)
        start = self._buf_start
        self._buf = self._buf[n * self.block_size :]
        self._buf_start = start + n * self.block_size / self.sample_rate
        keys = self.blocks.detect_blocks(blocks)
        out: list[DtmfDigit] = []
        step = self.block_size / self.sample_rate
        for i, key in enumerate(keys):
            d = self.step(key, start + i * step)
            if d is not None:
                out.append(d)
        return out

    def step(self, key: str | None, at: float) -> DtmfDigit | None:
        """Advance the duration/once-per-press rules by one classified block starting at ``at``."""
        cfg = self.blocks.config
        if key is not None and key == self._run_key:
            self._run_len += 1
        else:
            self._run_key = key
            self._run_len = 1 if key is not None else 0
            self._run_start = at
        if key is None or key != self._reported:
            self._absent += 1
            if self._absent >= cfg.min_pause_blocks:
                self._reported = None
        else:
            self._absent = 0
        if key is not None and self._run_len >= cfg.min_blocks and key != self._reported:
            self._reported = key
            self._absent = 0
            return DtmfDigit(
                digit=key,
                method="inband",
                at=self._run_start,
                duration_ms=self._run_len * 1000.0 * self.block_size / self.sample_rate,
            )
        return None


def feed_blocks(
    detectors: Sequence[InbandDtmfDetector],
    blocks: npt.NDArray[np.int16] | npt.NDArray[np.floating],
    now: float,
) -> list[list[DtmfDigit]]:
    """One tick for many streams at once: row i of ``blocks`` is stream i's next block.

    All detectors must share one :class:`BlockDetector` and have no partial block buffered
    (feed them only through this function); the classification is one matrix product.
    """
    if not detectors:
        return []
    shared = detectors[0].blocks
    if any(d.blocks is not shared for d in detectors):
        raise ValueError("feed_blocks needs detectors sharing one BlockDetector")
    keys = shared.detect_blocks(blocks)
    out: list[list[DtmfDigit]] = []
    for det, key in zip(detectors, keys, strict=True):
        d = det.step(key, now)
        out.append([d] if d is not None else [])
    return out
