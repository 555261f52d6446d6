"""Figures of one replication (flat numpy rows, Ciw's DataRecord idea) and confidence intervals.

One :class:`RunResult` holds a row per caller and per agent; :func:`run_figures` folds it into the
reported figures per scope (``all``, each queue, each skill, each interval). Definitions
(docs/simulator.md):

* ``offered``: callers entering a queue in the measured window (overflow moves do not count twice;
  a caller is reported under the queue it first entered).
* ``answered`` / ``abandoned`` / ``voicemail`` / ``rejected``: how offered callers left; a caller
  still waiting when the run stops (``drain = false``) is ``unfinished``.
* ``prob_wait``: share of offered callers who were not offered to an agent the instant they
  entered the queue (they found no routable agent): they waited at all.
* ``service_level``: answered within the threshold / offered (abandoned, voicemail and rejected
  callers count in the denominator).
* ``asa_seconds``: mean wait of answered callers, zero waits included (ringing time counts).
* ``mean_wait_seconds``: mean time in queue over all offered callers (Little's law's W).
* ``abandon_rate``: abandoned / offered.
* ``occupancy``: busy time (reserved, talking or in wrap-up) / staffed time (logged in and not on
  a break) of the agents concerned, in the measured window.
* ``occupancy_spread``: standard deviation of the agents' individual occupancies (fairness);
  ``occupancy_range`` is max - min.

The ratios themselves (service level, abandon rate, occupancy) are ``acd.stats``'s, which the
live statistics use too (``acd.stats.DayFold``), so a prediction and a live figure are the same
quantity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acd import stats as definitions

ANSWERED, ABANDONED, VOICEMAIL, REJECTED, UNFINISHED = 0, 1, 2, 3, 4
OUTCOMES = ("answered", "abandoned", "voicemail", "rejected", "unfinished")

FIGURES = (
    "offered",
    "answered",
    "abandoned",
    "voicemail",
    "rejected",
    "prob_wait",
    "service_level",
    "asa_seconds",
    "mean_wait_seconds",
    "abandon_rate",
    "occupancy",
    "occupancy_spread",
    "occupancy_range",
    "mean_queue_length",
)


@dataclass(slots=True)
class RunResult:
    """One replication, as flat rows."""

    replication: int
    window: tuple[float, float]
    """Measured window ``[warmup, horizon)`` in seconds."""
    interval_seconds: float
    queues: list[str]
    agents: list[str]
    # per caller (all callers of the run, measured or not)
    entry: np.ndarray
    queue_idx: np.ndarray
    source: np.ndarray
    outcome: np.ndarray
    wait: np.ndarray
    """Entry to answer / abandonment / leaving; NaN when unfinished."""
    waited: np.ndarray
    """True when the caller was not offered to an agent at the instant it entered."""
    agent_idx: np.ndarray
    """Answering agent index, -1 if not answered."""
    # per agent, measured window
    staffed: np.ndarray
    busy: np.ndarray
    # per agent per interval, measured window (shape agents x intervals)
    staffed_by_interval: np.ndarray
    busy_by_interval: np.ndarray
    queue_area_by_interval: np.ndarray
    """Integral of the number of waiting callers over each interval."""
    # whole run (Little's law check): integral of queue length and sum of queue times
    queue_area_total: float = 0.0
    wait_total: float = 0.0
    end_time: float = 0.0
    events: int = 0
    """Kernel events handled (heap pops and arrivals)."""
    engine_calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> np.ndarray:
        lo, hi = self.window
        return (self.entry >= lo) & (self.entry < hi)

    @property
    def n_intervals(self) -> int:
        return int(self.queue_area_by_interval.size)


def t_quantile_975(df: int) -> float:
    """Two-sided 95 % Student t quantile (table to 30, Cornish-Fisher expansion above)."""
    table = (
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    )  # fmt: skip
    if df < 1:
        return math.nan
    if df <= 30:
        return table[df - 1]
    z = 1.959963984540054
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True, slots=True)
class Estimate:
    """Mean over replications with a 95 % confidence interval (None bounds with one replication
    or when the figure is undefined in some replication)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _clean(self.mean), "ci95": [_clean(self.low), _clean(self.high)]}

    def contains(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high


def _clean(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return float(v)


SHARES = frozenset({"prob_wait", "service_level", "abandon_rate", "occupancy", "occupancy_range"})
"""Figures that are shares in [0, 1] (their intervals are clipped to it)."""


def estimate(
    values: Sequence[float], *, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> Estimate:
    """Mean and t-based 95 % interval of independent replication values (NaNs dropped), the
    interval clipped to ``bounds`` (the figure's possible range)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return Estimate(math.nan, None, None, 0)
    m = float(arr.mean())
    if n < 2:
        return Estimate(m, None, None, n)
    half = t_quantile_975(n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    return Estimate(m, max(bounds[0], m - half), min(bounds[1], m + half), n)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def caller_figures(sel: np.ndarray, r: RunResult, threshold: float) -> dict[str, float]:
    """Caller figures over the callers selected by boolean mask ``sel``."""
    out = r.outcome[sel]
    wait = r.wait[sel]
    offered = int(out.size)
    ans = out == ANSWERED
    answered = int(ans.sum())
    abandoned = int((out == ABANDONED).sum())
    finished = out != UNFINISHED
    return {
        "offered": float(offered),
        "answered": float(answered),
        "abandoned": float(abandoned),
        "voicemail": float((out == VOICEMAIL).sum()),
        "rejected": float((out == REJECTED).sum()),
        "prob_wait": _ratio(float(r.waited[sel].sum()), offered),
        "service_level": _nan(
            definitions.service_level(float((ans & (wait <= threshold)).sum()), offered)
        ),
        "asa_seconds": float(wait[ans].mean()) if answered else math.nan,
        "mean_wait_seconds": float(wait[finished].mean()) if finished.any() else math.nan,
        "abandon_rate": _nan(definitions.abandon_rate(float(abandoned), offered)),
    }


def agent_figures(staffed: np.ndarray, busy: np.ndarray) -> dict[str, float]:
    """Occupancy of a set of agents (pooled) and its spread across them."""
    total = float(staffed.sum())
    mask = staffed > 0
    per = busy[mask] / staffed[mask]
    return {
        "occupancy": _nan(definitions.occupancy(float(busy.sum()), total)),
        "occupancy_spread": float(per.std()) if per.size > 1 else (0.0 if per.size else math.nan),
        "occupancy_range": float(per.max() - per.min()) if per.size else math.nan,
    }


@dataclass(frozen=True, slots=True)
class Scopes:
    """Which callers and agents each reported scope covers."""

    queue_agents: Mapping[str, np.ndarray]
    """Queue name -> boolean mask over agents serving it."""
    skill_agents: Mapping[str, np.ndarray]
    """Skill -> mask over agents having it."""
    source_skills: Sequence[frozenset[str]]
    """Per arrival source: skills its callers require (queue's and its own)."""


def run_figures(r: RunResult, scopes: Scopes, threshold: float) -> dict[str, Any]:
    """All figures of one replication: ``{"all": {...}, "queues": {q: {...}}, "skills": {...},
    "intervals": [{...}, ...]}``."""
    measured = r.measured
    figures: dict[str, Any] = {}
    window = r.window[1] - r.window[0]

    def one(sel: np.ndarray, agents: np.ndarray) -> dict[str, float]:
        f = caller_figures(sel, r, threshold)
        f.update(agent_figures(r.staffed[agents], r.busy[agents]))
        return f

    everyone = np.ones(len(r.agents), dtype=bool)
    figures["all"] = one(measured, everyone)
    lo_k = int(r.window[0] // r.interval_seconds)
    hi_k = math.ceil(r.window[1] / r.interval_seconds)
    figures["all"]["mean_queue_length"] = (
        float(r.queue_area_by_interval[lo_k:hi_k].sum()) / window if window > 0 else math.nan
    )
    figures["queues"] = {}
    for qi, q in enumerate(r.queues):
        f = one(measured & (r.queue_idx == qi), scopes.queue_agents[q])
        figures["queues"][q] = f
    figures["skills"] = {}
    if scopes.source_skills:
        for skill, agents in scopes.skill_agents.items():
            srcs = [i for i, s in enumerate(scopes.source_skills) if skill in s]
            sel = measured & np.isin(r.source, srcs)
            figures["skills"][skill] = one(sel, agents)
    intervals = []
    k_of = (r.entry // r.interval_seconds).astype(np.int64)
    for k in range(lo_k, hi_k):
        sel = measured & (k_of == k)
        f = caller_figures(sel, r, threshold)
        f.update(agent_figures(r.staffed_by_interval[:, k], r.busy_by_interval[:, k]))
        lo = max(r.window[0], k * r.interval_seconds)
        hi = min(r.window[1], (k + 1) * r.interval_seconds)
        f["mean_queue_length"] = float(r.queue_area_by_interval[k]) / (hi - lo)
        f["start_seconds"] = float(k * r.interval_seconds)
        intervals.append(f)
    figures["intervals"] = intervals
    return figures


def combine(per_rep: Sequence[Mapping[str, float]]) -> dict[str, Estimate]:
    """Estimates of each figure over replications."""
    keys = [k for k in per_rep[0] if k != "start_seconds"] if per_rep else []
    return {
        k: estimate(
            [p.get(k, math.nan) for p in per_rep],
            bounds=(0.0, 1.0) if k in SHARES else (0.0, math.inf),
        )
        for k in keys
    }


def paired(
    a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]]
) -> dict[str, Estimate]:
    """Estimates of ``b - a`` per figure, replication by replication (common random numbers make
    the pairs strongly correlated, so these intervals are much tighter than unpaired ones)."""
    keys = [k for k in a[0] if k != "start_seconds"] if a else []
    return {
        k: estimate([y.get(k, math.nan) - x.get(k, math.nan) for x, y in zip(a, b, strict=True)])
        for k in keys
    }
