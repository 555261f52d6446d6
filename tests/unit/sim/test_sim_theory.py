"""Long single-queue runs agree with Erlang C (no abandonment) and Erlang A (exponential
patience): each theoretical figure lies inside the simulation's own 95 % confidence interval.

Ciw's way of validating a simulator (STYLE.md §1): many replications, compared with the formulas
in ``sim.erlang``. The real ACD engine routes every call. Loads run from moderate to heavy
(occupancy above 95 %), with and without abandonment.
"""

from __future__ import annotations

import pytest

from sim.erlang import figures
from sim.run import simulate
from sim.scenario import single_queue

FIELDS = {
    "prob_wait": "prob_wait",
    "service_level": "service_level",
    "asa_seconds": "asa_seconds",
    "abandon_rate": "abandon_prob",
    "occupancy": "occupancy",
    "mean_wait_seconds": "mean_wait_seconds",
}


def _check(
    rate: float, aht: float, agents: int, patience: float | None, hours: float, warmup: float
) -> None:
    sc = single_queue(
        rate_per_hour=rate,
        aht_seconds=aht,
        agents=agents,
        patience_seconds=patience,
        duration_hours=hours,
        warmup_hours=warmup,
        replications=10,
        seed=1,
    )
    result = simulate(sc)
    theory = figures(
        rate_per_hour=rate,
        aht_seconds=aht,
        agents=agents,
        patience_seconds=patience,
        target_seconds=20.0,
    )
    sim = result.figures["all"]
    misses = []
    for ours, theirs in FIELDS.items():
        value = getattr(theory, theirs)
        est = sim[ours]
        if patience is None and ours == "abandon_rate":
            assert est.mean == 0.0
            continue
        if not est.contains(value):
            misses.append(f"{ours}: theory {value:.4f}, sim {est.mean:.4f} [{est.low}, {est.high}]")
    assert not misses, misses


@pytest.mark.parametrize(
    ("rate", "aht", "agents", "hours"),
    [
        (200, 180, 14, 20),  # 71 % occupancy, the textbook case
        (200, 180, 11, 40),  # 91 %
    ],
)
def test_agrees_with_erlang_c(rate: float, aht: float, agents: int, hours: float) -> None:
    _check(rate, aht, agents, None, hours, 2)


@pytest.mark.slow
def test_agrees_with_erlang_c_under_heavy_load() -> None:
    """Occupancy 96 %: long relaxation, hence a long run."""
    _check(960, 180, 50, None, 12, 2)


@pytest.mark.parametrize(
    ("rate", "aht", "agents", "patience", "hours"),
    [
        (200, 180, 14, 300, 16),  # light: 1.4 % abandon
        (600, 180, 30, 120, 8),  # 92 % occupancy, 8 % abandon
    ],
)
def test_agrees_with_erlang_a(
    rate: float, aht: float, agents: int, patience: float, hours: float
) -> None:
    _check(rate, aht, agents, patience, hours, 2)


@pytest.mark.slow
def test_agrees_with_erlang_a_in_overload() -> None:
    """Offered load above the agents (A = 12, n = 10): occupancy 96 %, held by abandonment."""
    _check(240, 180, 10, 300, 20, 2)
