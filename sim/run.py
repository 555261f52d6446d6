"""Replications and comparisons: the simulator's public entry points.

result = simulate(load_scenario("examples/scenarios/single_queue.toml"))
result.figures["all"]["service_level"].mean, result.figures["all"]["service_level"].low
cmp = compare([scenario_a, scenario_b])      # same seed: the same callers through both
cmp.differences[1]["all"]["service_level"]   # paired estimate of B - A
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.model import EngineFactory, default_engine, run_replication
from sim.scenario import Scenario
from sim.stats import Estimate, RunResult, Scopes, combine, paired, run_figures

Progress = Callable[[int, int], None]
"""``progress(done, total)`` called after each replication."""


def scopes_of(scenario: Scenario) -> Scopes:
    """Agents per queue (direct members and members of the queue's workgroups or widening
    groups), agents per skill, and the skills each arrival source's callers require."""
    acd = scenario.acd
    agents = [aid for g in scenario.groups for aid in g.agent_ids()]
    queue_agents: dict[str, np.ndarray] = {}
    for q, qc in acd.queues.items():
        groups = set(qc.groups) | {g for step in qc.widening for g in step.add_groups}
        queue_agents[q] = np.asarray(
            [q in acd.agents[a].queues or bool(groups & set(acd.agents[a].groups)) for a in agents],
            dtype=bool,
        )
    skills = sorted({s for a in agents for s in acd.agents[a].skills})
    skill_agents = {
        s: np.asarray([s in acd.agents[a].skills for a in agents], dtype=bool) for s in skills
    }
    source_skills = [
        frozenset(src.skills) | frozenset(acd.queues[src.queue].skills) for src in scenario.arrivals
    ]
    return Scopes(queue_agents=queue_agents, skill_agents=skill_agents, source_skills=source_skills)


@dataclass(slots=True)
class SimulationResult:
    """Every replication of one scenario, its figures and their estimates."""

    scenario: Scenario
    runs: list[RunResult]
    per_replication: list[dict[str, Any]]
    """``run_figures`` of each replication."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Estimates: ``{"all": {fig: Estimate}, "queues": {q: {...}}, "skills": {...},
    "intervals": [{...}]}``."""
    elapsed_seconds: float = 0.0

    @property
    def calls(self) -> int:
        return sum(len(r.entry) for r in self.runs)


def estimates(per_rep: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fold per-replication figures into estimates with confidence intervals."""
    first = per_rep[0]
    out: dict[str, Any] = {"all": combine([p["all"] for p in per_rep])}
    for scope in ("queues", "skills"):
        out[scope] = {k: combine([p[scope][k] for p in per_rep]) for k in first[scope]}
    n_int = min(len(p["intervals"]) for p in per_rep)
    out["intervals"] = []
    for k in range(n_int):
        est = combine([p["intervals"][k] for p in per_rep])
        est["start_seconds"] = Estimate(first["intervals"][k]["start_seconds"], None, None, 1)
        out["intervals"].append(est)
    return out


def simulate(
    scenario: Scenario,
    *,
    replications: int | None = None,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine,
) -> SimulationResult:
    """Run ``replications`` (default: the scenario's) independent replications."""
    reps = replications if replications is not None else scenario.simulation.replications
    scopes = scopes_of(scenario)
    threshold = scenario.simulation.service_level_seconds
    runs: list[RunResult] = []
    per_rep: list[dict[str, Any]] = []
    started = time.perf_counter()
    for r in range(reps):
        run = run_replication(scenario, r, engine_factory=engine_factory)
        runs.append(run)
        per_rep.append(run_figures(run, scopes, threshold))
        if progress is not None:
            progress(r + 1, reps)
    result = SimulationResult(scenario=scenario, runs=runs, per_replication=per_rep)
    result.figures = estimates(per_rep)
    result.elapsed_seconds = time.perf_counter() - started
    return result


@dataclass(slots=True)
class Comparison:
    """Several scenarios on the same seed and replications (common random numbers)."""

    results: list[SimulationResult]
    differences: list[dict[str, Any]]
    """``differences[k]``: paired estimates of scenario k minus scenario 0 (``{}`` for k = 0):
    ``{"all": {fig: Estimate}, "queues": {q: {...}}}`` for queues both have."""


def compare(
    scenarios: Sequence[Scenario],
    *,
    replications: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Run every scenario on the same seed and number of replications (the first scenario's
    unless given) and estimate each one's differences from the first, replication by
    replication."""
    if len(scenarios) < 2:
        raise ValueError("compare needs at least two scenarios")
    base = scenarios[0].simulation
    reps = replications if replications is not None else base.replications
    s = seed if seed is not None else base.seed
    total = reps * len(scenarios)
    results = []
    for k, sc in enumerate(scenarios):

        def step(done: int, _total: int, k: int = k) -> None:
            if progress is not None:
                progress(k * reps + done, total)

        results.append(simulate(sc.with_seed(s), replications=reps, progress=step))
    a = results[0].per_replication
    diffs: list[dict[str, Any]] = [{}]
    for res in results[1:]:
        b = res.per_replication
        d: dict[str, Any] = {"all": paired([x["all"] for x in a], [y["all"] for y in b])}
        d["queues"] = {
            q: paired([x["queues"][q] for x in a], [y["queues"][q] for y in b])
            for q in a[0]["queues"]
            if q in b[0]["queues"]
        }
        diffs.append(d)
    return Comparison(results=results, differences=diffs)
