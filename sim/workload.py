"""Callers of one replication, drawn up front in numpy (common random numbers).

Each arrival source owns four streams named after it: ``arrivals:NAME``, ``handle:NAME``,
``patience:NAME`` and ``ivr:NAME``. The k-th caller of a source always gets the k-th draw of each,
so two routing strategies run on the same seed see exactly the same callers (arrival instant,
handle time, patience, IVR time), whatever the engine does with them.

Poisson arrivals with a piecewise-constant rate are exact: per interval, a Poisson count of
uniform instants. A caller enters its queue after its IVR time; the model works in queue-entry
order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.distributions import Streams
from sim.scenario import ArrivalSource, Scenario


@dataclass(frozen=True, slots=True)
class Callers:
    """Columns, one row per caller, sorted by queue-entry time."""

    entry: np.ndarray
    """Queue-entry time (arrival + IVR time), seconds."""
    arrival: np.ndarray
    """Arrival time at the system."""
    source: np.ndarray
    """Index of the arrival source (scenario.arrivals)."""
    handle: np.ndarray
    """Handle (talk) time if answered."""
    patience: np.ndarray
    """Time the caller is willing to wait in queue (inf: never abandons)."""
    queue: list[str]
    """Queue each caller joins."""

    def __len__(self) -> int:
        return int(self.entry.size)


def poisson_instants(
    rng: np.random.Generator, rates_per_hour: list[float], width: float, horizon: float
) -> np.ndarray:
    """Sorted instants of a Poisson process with rate ``rates_per_hour[k]`` on the k-th interval
    of ``width`` seconds, cut at ``horizon``."""
    parts = []
    for k, rate in enumerate(rates_per_hour):
        lo = k * width
        if lo >= horizon:
            break
        hi = min(horizon, lo + width)
        lam = rate / 3600.0 * (hi - lo)
        if lam <= 0:
            continue
        n = int(rng.poisson(lam))
        parts.append(np.sort(rng.uniform(lo, hi, n)))
    return np.concatenate(parts) if parts else np.zeros(0)


def _source_instants(src: ArrivalSource, rng: np.random.Generator, horizon: float) -> np.ndarray:
    if src.replay is not None:
        at = np.asarray(src.replay.at, dtype=float)
        return at[at < horizon]
    if src.curve is not None:
        return poisson_instants(
            rng, list(src.curve.rates_per_hour), src.curve.interval_seconds, horizon
        )
    assert src.rate_per_hour is not None
    return poisson_instants(rng, [src.rate_per_hour], horizon, horizon)


def _override(drawn: np.ndarray, recorded: tuple[float | None, ...] | None) -> np.ndarray:
    if recorded is None:
        return drawn
    out = drawn.copy()
    for i, v in enumerate(recorded[: out.size]):
        if v is not None:
            out[i] = v
    return out


def draw_callers(scenario: Scenario, streams: Streams) -> Callers:
    """All callers of one replication."""
    horizon = scenario.simulation.horizon
    entries, arrivals, sources, handles, patiences, queues = [], [], [], [], [], []
    for idx, src in enumerate(scenario.arrivals):
        at = _source_instants(src, streams.rng(f"arrivals:{src.name}"), horizon)
        n = at.size
        handle = src.handle.sample(streams.rng(f"handle:{src.name}"), n)
        patience = src.patience.sample(streams.rng(f"patience:{src.name}"), n)
        ivr = src.ivr.sample(streams.rng(f"ivr:{src.name}"), n)
        q: list[str] = [src.queue] * n
        if src.replay is not None:
            handle = _override(handle, src.replay.handle)
            patience = _override(patience, src.replay.patience)
            q = [r or src.queue for r in src.replay.queue[:n]]
        entries.append(at + ivr)
        arrivals.append(at)
        sources.append(np.full(n, idx, dtype=np.int64))
        handles.append(handle)
        patiences.append(patience)
        queues.extend(q)
    entry = np.concatenate(entries) if entries else np.zeros(0)
    order = np.argsort(entry, kind="stable")
    return Callers(
        entry=entry[order],
        arrival=np.concatenate(arrivals)[order],
        source=np.concatenate(sources)[order],
        handle=np.concatenate(handles)[order],
        patience=np.concatenate(patiences)[order],
        queue=[queues[i] for i in order.tolist()],
    )


def expected_calls(scenario: Scenario) -> float:
    """Mean number of callers per replication (replays count their recorded rows)."""
    horizon = scenario.simulation.horizon
    total = 0.0
    for src in scenario.arrivals:
        if src.replay is not None:
            total += sum(1 for t in src.replay.at if t < horizon)
        elif src.curve is not None:
            w = src.curve.interval_seconds
            for k, r in enumerate(src.curve.rates_per_hour):
                lo = k * w
                if lo >= horizon:
                    break
                total += r / 3600.0 * (min(horizon, lo + w) - lo)
        elif src.rate_per_hour is not None:
            total += src.rate_per_hour / 3600.0 * horizon
    return total if math.isfinite(total) else 0.0
