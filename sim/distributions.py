"""Random variates for the simulator: distributions, batched samplers, named streams.

Common random numbers: every purpose (arrivals of one source, its handle times, its patience,
IVR time, ring-no-answer draws, ...) has its own numpy ``Generator`` derived from the scenario
seed, the replication number and the purpose's name (``numpy.random.SeedSequence`` with a
``spawn_key``). Two strategies run on the same seed therefore see the same callers with the same
handle times and the same patience, whatever order the engines make them wait in.

Variates are drawn in numpy batches and handed out one by one from a Python list; a sampler never
draws from another purpose's stream.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_BATCH = 4096


class DistributionError(ValueError):
    """A distribution spec that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Distribution:
    """A positive random variable.

    ``kind`` is one of ``exponential`` (``mean``), ``lognormal`` (``mean`` and ``cv`` = sd/mean),
    ``constant`` (``mean``), ``uniform`` (``low``, ``high``), ``empirical`` (``values``: drawn with
    equal weights), ``never`` (infinite: a caller who never abandons).
    """

    kind: str
    mean: float = 0.0
    cv: float = 1.0
    low: float = 0.0
    high: float = 0.0
    values: tuple[float, ...] = ()

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws."""
        k = self.kind
        if k == "exponential":
            return rng.exponential(self.mean, size)
        if k == "lognormal":
            sigma2 = math.log1p(self.cv * self.cv)
            mu = math.log(self.mean) - sigma2 / 2.0
            return rng.lognormal(mu, math.sqrt(sigma2), size)
        if k == "constant":
            return np.full(size, self.mean)
        if k == "uniform":
            return rng.uniform(self.low, self.high, size)
        if k == "empirical":
            return rng.choice(np.asarray(self.values, dtype=float), size)
        if k == "never":
            return np.full(size, math.inf)
        raise DistributionError(f"unknown distribution {k!r}")

    @property
    def expected(self) -> float:
        """The distribution's mean."""
        if self.kind in ("exponential", "lognormal", "constant"):
            return self.mean
        if self.kind == "uniform":
            return (self.low + self.high) / 2.0
        if self.kind == "empirical":
            return float(np.mean(self.values))
        return math.inf

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for reports)."""
        out: dict[str, Any] = {"distribution": self.kind}
        if self.kind in ("exponential", "lognormal", "constant"):
            out["mean_seconds"] = self.mean
        if self.kind == "lognormal":
            out["cv"] = self.cv
        if self.kind == "uniform":
            out["low_seconds"], out["high_seconds"] = self.low, self.high
        if self.kind == "empirical":
            out["values"] = len(self.values)
        return out


DISTRIBUTIONS = ("exponential", "lognormal", "constant", "uniform", "empirical", "never")


def _positive(value: Any, key: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DistributionError(f"{key}: expected a number of seconds, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        what = ">= 0" if allow_zero else "> 0"
        raise DistributionError(f"{key}: expected seconds {what}, got {value!r}")
    return v


def parse_distribution(spec: Any, key: str, *, allow_zero: bool = False) -> Distribution:
    """Build a :class:`Distribution` from a scenario table, naming ``key`` in every error.

    ``spec`` is a table such as ``{distribution = "lognormal", mean_seconds = 240, cv = 0.8}``,
    ``{distribution = "empirical", values = [12, 30, 45]}`` or a bare number (constant).
    """
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Distribution("constant", mean=_positive(spec, key, allow_zero=allow_zero))
    if not isinstance(spec, Mapping):
        raise DistributionError(f"{key}: expected a table with 'distribution', got {spec!r}")
    known = {"distribution", "mean_seconds", "cv", "low_seconds", "high_seconds", "values"}
    for name in spec:
        if name not in known:
            raise DistributionError(f"{key}.{name}: unknown key (expected one of {sorted(known)})")
    kind = spec.get("distribution", "exponential")
    if kind not in DISTRIBUTIONS:
        raise DistributionError(
            f"{key}.distribution: expected one of {', '.join(DISTRIBUTIONS)}, got {kind!r}"
        )
    if kind in ("exponential", "lognormal", "constant"):
        if "mean_seconds" not in spec:
            raise DistributionError(f"{key}.mean_seconds: required for {kind}")
        mean = _positive(
            spec["mean_seconds"],
            f"{key}.mean_seconds",
            allow_zero=allow_zero and kind == "constant",
        )
        cv = 1.0
        if kind == "lognormal":
            cv = _positive(spec.get("cv", 1.0), f"{key}.cv")
        return Distribution(kind, mean=mean, cv=cv)
    if kind == "uniform":
        low = _positive(spec.get("low_seconds"), f"{key}.low_seconds", allow_zero=True)
        high = _positive(spec.get("high_seconds"), f"{key}.high_seconds")
        if high <= low:
            raise DistributionError(
                f"{key}.high_seconds: expected > low_seconds ({low}), got {high}"
            )
        return Distribution("uniform", low=low, high=high)
    if kind == "empirical":
        values = spec.get("values")
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise DistributionError(f"{key}.values: expected a non-empty list of seconds")
        return Distribution(
            "empirical",
            values=tuple(
                _positive(v, f"{key}.values[{i}]", allow_zero=True) for i, v in enumerate(values)
            ),
        )
    return Distribution("never", mean=math.inf)


def stream_key(purpose: str) -> int:
    """A stable 32-bit key for a purpose name (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(purpose.encode(), digest_size=4).digest(), "big")


class Streams:
    """Independent, reproducible generators, one per purpose name, for one replication."""

    def __init__(self, seed: int, replication: int) -> None:
        self.seed = seed
        self.replication = replication
        self._cache: dict[str, np.random.Generator] = {}

    def rng(self, purpose: str) -> np.random.Generator:
        """The generator for ``purpose`` (same seed, replication and name: same numbers)."""
        gen = self._cache.get(purpose)
        if gen is None:
            ss = np.random.SeedSequence(
                entropy=self.seed, spawn_key=(self.replication, stream_key(purpose))
            )
            gen = np.random.Generator(np.random.PCG64(ss))
            self._cache[purpose] = gen
        return gen

    def sampler(self, purpose: str, dist: Distribution) -> Sampler:
        return Sampler(dist, self.rng(purpose))


class Sampler:
    """Hands out draws one at a time from numpy batches."""

    __slots__ = ("_buf", "_dist", "_rng")

    def __init__(self, dist: Distribution, rng: np.random.Generator) -> None:
        self._dist = dist
        self._rng = rng
        self._buf: list[float] = []

    def next(self) -> float:
        buf = self._buf
        if not buf:
            buf.extend(reversed(self._dist.sample(self._rng, _BATCH).tolist()))
        return buf.pop()

    def take(self, size: int) -> np.ndarray:
        """``size`` draws at once (used for pre-drawn per-caller attributes)."""
        return self._dist.sample(self._rng, size)


class Uniforms:
    """Uniform(0, 1) draws one at a time, batched (ring-no-answer decisions)."""

    __slots__ = ("_buf", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []

    def next(self) -> float:
        buf = self._buf
        if not buf:
            buf.extend(self._rng.random(_BATCH).tolist())
        return buf.pop()
