"""Golden output: fixed scenarios and seeds whose results are pinned bit for bit.

The pinned file (``golden_figures.json``) was computed before the simulator's performance work;
every optimisation of ``sim/``, ``acd/engine.py`` or ``routing/`` must leave it unchanged. Per
scenario it holds the JSON figures of ``sim run`` (without the timing; the per-interval rows as a
digest), a digest of every engine step of replication 0 (event in, actions out) and a digest of
every replication's raw columns (outcome, exact waits, agent of each caller, staffed and busy time per
agent and interval, queue area, event counts).

Regenerate (only when the *model* changes on purpose, never for a speed-up)::

    HOTLINE_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/sim/test_sim_golden.py
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from sim.model import run_replication
from sim.report import result_json
from sim.run import simulate
from sim.scenario import Scenario, load_scenario, scenario_from_dict
from sim.stats import RunResult

HERE = Path(__file__).parent
GOLDEN = HERE / "golden_figures.json"
EXAMPLES = Path(__file__).parents[3] / "examples" / "scenarios"


def _strategy_scenario(strategy: str) -> Scenario:
    """One strategy through the engine's less common paths: two queues with overflow between
    them and to voicemail, max wait, announcements, ring-no-answer with RONA pauses, answer
    delays, breaks, a shift change, skills with widening, impatient callers."""
    return scenario_from_dict(
        {
            "simulation": {
                "duration_hours": 2.0,
                "warmup_hours": 0.25,
                "replications": 2,
                "seed": 2024,
                "interval_minutes": 15,
            },
            "queues": [
                {
                    "name": "main",
                    "strategy": strategy,
                    "skills": {"en": 3},
                    "groups": ["a"],
                    "widening": [{"after_seconds": 40, "relax_levels": 2, "add_groups": ["b"]}],
                    "ring_timeout": 12,
                    "wrap_up_seconds": 5,
                    "max_wait": 120,
                    "overflow": "queue:spill",
                    "announce_every": 45,
                    "weights": {"idle": 1.0, "skill": 0.5},
                },
                {
                    "name": "spill",
                    "strategy": strategy,
                    "groups": ["b"],
                    "ring_timeout": 10,
                    "max_wait": 150,
                    "overflow": "voicemail",
                    "max_len": 6,
                },
            ],
            "agent_groups": [
                {
                    "name": "a",
                    "count": 6,
                    "queues": {"main": {"penalty": 0}},
                    "skills": {"en": 5},
                    "ring_no_answer": 0.15,
                    "answer_seconds": {
                        "distribution": "uniform",
                        "low_seconds": 0.5,
                        "high_seconds": 3,
                    },
                    "max_misses": 2,
                    "rona_ready_seconds": 30,
                    "no_answer_delay_seconds": 3,
                    "breaks": [{"at_hours": 1, "minutes": 10, "stagger_minutes": 4}],
                },
                {
                    "name": "b",
                    "count": 4,
                    "queues": ["spill"],
                    "skills": {"en": 2, "fr": 6},
                    "answer_seconds": 1,
                    "wrap_up_seconds": 8,
                    "shift": {"start_hours": 0.5, "end_hours": 1.75},
                },
                {
                    "name": "c",
                    "count": 2,
                    "queues": {"main": {"penalty": 1}, "spill": {"penalty": 0}},
                    "skills": {"en": 4},
                    "priority": 1,
                },
            ],
            "arrivals": [
                {
                    "queue": "main",
                    "rate_per_hour": 230,
                    "handle_time": {"distribution": "lognormal", "mean_seconds": 170, "cv": 0.9},
                    "patience": {"distribution": "exponential", "mean_seconds": 400},
                    "ivr_time": {"distribution": "uniform", "low_seconds": 2, "high_seconds": 9},
                },
                {
                    "queue": "main",
                    "name": "vip",
                    "rate_per_hour": 25,
                    "priority": 2,
                    "skills": {"en": 4},
                    "handle_time": {"distribution": "exponential", "mean_seconds": 120},
                },
                {
                    "queue": "spill",
                    "rate_per_hour": 30,
                    "handle_time": {"distribution": "constant", "mean_seconds": 90},
                    "patience": {"distribution": "exponential", "mean_seconds": 300},
                },
            ],
        },
        name=f"strategy-{strategy}",
    )


def _bench_scenarios() -> list[Scenario]:
    from bench.sim import multi_scenario, single_scenario, sized

    out = []
    for sc in (single_scenario(), multi_scenario()):
        sc = sized(sc, 6000)
        out.append(replace(sc, simulation=replace(sc.simulation, replications=2)))
    return out


STRATEGIES = [
    "fewest-calls",
    "least-talk-time",
    "linear",
    "longest-idle",
    "random",
    "ring-all",
    "ring-progressively",
    "round-robin",
    "skills-best-match",
    "weighted",
    "weighted-random",
]


def scenarios() -> dict[str, Scenario]:
    out: dict[str, Scenario] = {}
    for path in sorted(EXAMPLES.glob("*.toml")):
        sc = load_scenario(path)
        out[f"example:{path.stem}"] = replace(sc, simulation=replace(sc.simulation, replications=2))
    for sc in _bench_scenarios():
        out[f"bench:{sc.name}"] = sc
    for s in STRATEGIES:
        out[f"strategy:{s}"] = _strategy_scenario(s)
    return out


def _run_digest(run: RunResult) -> str:
    h = hashlib.sha256()
    for arr in (
        run.outcome,
        run.wait,
        run.waited,
        run.agent_idx,
        run.staffed,
        run.busy,
        run.staffed_by_interval,
        run.busy_by_interval,
        run.queue_area_by_interval,
    ):
        a = np.ascontiguousarray(arr)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(repr((run.queue_area_total, run.wait_total, run.end_time)).encode())
    return h.hexdigest()


def _trace_digest(sc: Scenario) -> str:
    """Every engine step of replication 0 (event in, actions out): the decisions, in order and
    time, not only their sums."""
    trace: list[tuple[float, Any, list[object]]] = []
    run_replication(sc, 0, trace=trace)
    h = hashlib.sha256()
    for at, ev, actions in trace:
        step = (
            at,
            type(ev).__name__,
            tuple(ev),
            [(type(a).__name__, tuple(cast(tuple[Any, ...], a))) for a in actions],
        )
        h.update(repr(step).encode())
    return h.hexdigest()


ROOT = HERE.parents[2]


def _portable(value: Any) -> Any:
    """Scenario file paths relative to the repository, so any clone compares equal."""
    if isinstance(value, dict):
        return {
            k: (
                os.path.relpath(v, ROOT)
                if k == "source" and isinstance(v, str) and os.path.isabs(v)
                else _portable(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_portable(v) for v in value]
    return value


def compute(sc: Scenario) -> dict[str, Any]:
    result = simulate(sc)
    doc = result_json(result)
    perf = doc.pop("performance")
    intervals = doc["figures"].pop("intervals")
    return {
        "figures": _portable(json.loads(json.dumps(doc, sort_keys=True))),
        "intervals": hashlib.sha256(json.dumps(intervals, sort_keys=True).encode()).hexdigest(),
        "runs": [_run_digest(r) for r in result.runs],
        "trace": _trace_digest(sc),
        "events": perf["events"],
        "engine_calls": perf["engine_calls"],
    }


@functools.cache
def _load() -> dict[str, Any]:
    if os.environ.get("HOTLINE_REGEN_GOLDEN"):
        doc = {name: compute(sc) for name, sc in scenarios().items()}
        GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return dict(json.loads(GOLDEN.read_text()))


@pytest.mark.parametrize("name", list(scenarios()))
def test_golden_output(name: str) -> None:
    pinned = _load()[name]
    got = compute(scenarios()[name])
    assert got["runs"] == pinned["runs"], f"{name}: raw results differ"
    assert got["trace"] == pinned["trace"], f"{name}: engine steps differ"
    assert json.dumps(got["figures"], sort_keys=True) == json.dumps(
        pinned["figures"], sort_keys=True
    ), f"{name}: figures differ"
    assert got["intervals"] == pinned["intervals"], f"{name}: per-interval figures differ"
    assert (got["events"], got["engine_calls"]) == (pinned["events"], pinned["engine_calls"])
