"""Properties of every simulated run, over random small scenarios (hypothesis):

* flow balance: every caller ends with exactly one outcome, and (draining) none is left waiting;
* Little's law as a sample-path identity: the integral of the queue length equals the sum of
  the callers' times in queue;
* agents are never busy longer than staffed; shares stay in [0, 1];
* the same seed gives the same run, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.model import run_replication
from sim.report import flow_balanced, little_error
from sim.run import scopes_of
from sim.scenario import Scenario, scenario_from_dict
from sim.stats import ANSWERED, UNFINISHED, run_figures

STRATEGIES = ["longest-idle", "fewest-calls", "round-robin", "random", "ring-all", "linear",
              "weighted", "skills-best-match", "least-talk-time"]  # fmt: skip


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    queue: dict[str, Any] = {
        "name": "q",
        "strategy": draw(st.sampled_from(STRATEGIES)),
        "ring_timeout": draw(st.sampled_from([5, 15])),
        "wrap_up_seconds": draw(st.sampled_from([0, 10])),
    }
    if draw(st.booleans()):
        queue["max_wait"] = draw(st.sampled_from([30, 90]))
        queue["overflow"] = "voicemail"
    if draw(st.booleans()):
        queue["max_len"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        queue["announce_every"] = 20
    group: dict[str, Any] = {
        "name": "g",
        "count": draw(st.integers(1, 5)),
        "queues": ["q"],
        "ring_no_answer": draw(st.sampled_from([0.0, 0.0, 0.3])),
        "answer_seconds": draw(st.sampled_from([0, 0, 2, 30])),
        "max_misses": draw(st.sampled_from([0, 2])),
    }
    if draw(st.booleans()):
        group["breaks"] = [{"at_hours": 0.3, "minutes": 5, "stagger_minutes": 1}]
    if draw(st.booleans()):
        group["shift"] = {"start_hours": 0.1, "end_hours": 0.6}
    arrival: dict[str, Any] = {
        "queue": "q",
        "rate_per_hour": draw(st.sampled_from([20, 60, 150])),
        "handle_time": {
            "distribution": draw(st.sampled_from(["exponential", "lognormal"])),
            "mean_seconds": draw(st.sampled_from([30, 120])),
        },
    }
    if draw(st.booleans()):
        arrival["patience"] = {"distribution": "exponential", "mean_seconds": 60}
    return scenario_from_dict(
        {
            "simulation": {
                "duration_hours": 0.5,
                "warmup_hours": draw(st.sampled_from([0.0, 0.1])),
                "replications": 1,
                "seed": draw(st.integers(0, 2**16)),
                "interval_minutes": 10,
                "max_drain_hours": 1,
            },
            "queues": [queue],
            "agent_groups": [group],
            "arrivals": [arrival],
        }
    )


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios())
def test_every_run_balances_and_obeys_little(sc: Scenario) -> None:
    run = run_replication(sc, 0)
    assert flow_balanced(run)
    assert little_error(run) <= 1e-6 * max(1.0, run.queue_area_total)
    # draining, callers only stay unfinished when no agent will ever take them: the shift is
    # over, or the agents never answer before the ring timeout
    if (run.outcome == UNFINISHED).any():
        g = sc.groups[0]
        never_answers = g.answer.expected >= sc.acd.queues["q"].ring_timeout
        assert math.isfinite(g.shift_end) or never_answers
    assert (run.busy <= run.staffed + 1e-6).all()
    assert (run.wait[run.outcome != UNFINISHED] >= 0).all()
    figs = run_figures(run, scopes_of(sc), sc.simulation.service_level_seconds)
    for f in [figs["all"], *figs["intervals"]]:
        for name in ("prob_wait", "service_level", "abandon_rate", "occupancy"):
            v = f[name]
            assert v != v or 0.0 <= v <= 1.0 + 1e-12, (name, v)
        if f["offered"] > 0:
            assert f["service_level"] <= f["answered"] / f["offered"] + 1e-12


@settings(
    max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios())
def test_same_seed_same_run(sc: Scenario) -> None:
    a = run_replication(sc, 0)
    b = run_replication(sc, 0)
    assert np.array_equal(a.outcome, b.outcome)
    assert np.array_equal(a.wait, b.wait, equal_nan=True)
    assert np.array_equal(a.agent_idx, b.agent_idx)
    assert np.array_equal(a.busy, b.busy)
    answered = a.outcome == ANSWERED
    assert np.array_equal(a.agent_idx[answered] >= 0, np.ones(int(answered.sum()), dtype=bool))
