"""Scenario files: the examples load, every mistake is named by its key."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from sim.scenario import ScenarioError, load_scenario, scenario_from_dict

EXAMPLES = sorted(Path(__file__).parents[3].joinpath("examples", "scenarios").glob("*.toml"))

BASE: dict[str, Any] = {
    "simulation": {"duration_hours": 1, "replications": 2, "seed": 3},
    "queues": [{"name": "sales", "strategy": "longest-idle", "wrap_up_seconds": 5}],
    "agent_groups": [{"name": "t1", "count": 3, "queues": ["sales"], "skills": {"fr": 5}}],
    "arrivals": [
        {
            "queue": "sales",
            "rate_per_hour": 60,
            "handle_time": {"distribution": "exponential", "mean_seconds": 120},
        }
    ],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    node: Any = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.arrivals and sc.groups and sc.acd.queues
    assert len(sc.acd.agents) == sum(g.count for g in sc.groups)


def test_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"single_queue", "multi_skill", "day_curve"} <= names


def test_base_builds_engine_config() -> None:
    sc = scenario_from_dict(BASE)
    assert sc.acd.queues["sales"].wrap_up_seconds == 5
    assert sorted(sc.acd.agents) == ["t1-001", "t1-002", "t1-003"]
    agent = sc.acd.agents["t1-002"]
    assert agent.skills == {"fr": 5}
    assert "sales" in agent.queues and agent.groups == ("t1",)
    assert sc.simulation.horizon == 3600.0
    assert sc.arrivals[0].patience.kind == "never"
    assert math.isinf(sc.arrivals[0].patience.expected)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("simulation.duration_hours", -1, r"^simulation\.duration_hours: expected a number > 0"),
        ("simulation.duration_hours", _DELETE, r"^simulation\.duration_hours: is required"),
        ("simulation.replications", 0, r"^simulation\.replications: expected an integer >= 1"),
        ("simulation.colour", "red", r"^simulation\.colour: unknown key"),
        ("queues.0.name", _DELETE, r"^queues\[0\]\.name"),
        ("queues.0.max_wait", -5, r"^queues\[0\]\.max_wait: expected seconds > 0, got -5"),
        ("queues.0.strategy", "fastest", r"^queues\[0\]\.strategy: unknown strategy 'fastest'"),
        ("agent_groups.0.count", 0, r"^agent_groups\[0\]\.count: expected an integer >= 1"),
        ("agent_groups.0.queues", ["nope"], r"^agent_groups\[0\]\.queues: unknown queue 'nope'"),
        (
            "agent_groups.0.skills",
            {"fr": 12},
            r"^agent_groups\[0\]\.skills\.fr: expected a skill level 1-10, got 12",
        ),
        ("agent_groups.0.ring_no_answer", 1.5, r"^agent_groups\[0\]\.ring_no_answer: expected a"),
        ("arrivals.0.queue", "support", r"^arrivals\[0\]\.queue: expected one of \['sales'\]"),
        ("arrivals.0.handle_time", _DELETE, r"^arrivals\[0\]\.handle_time: is required"),
        (
            "arrivals.0.handle_time",
            {"distribution": "exponential", "mean_seconds": -3},
            r"^arrivals\[0\]\.handle_time\.mean_seconds: expected seconds > 0, got -3",
        ),
        (
            "arrivals.0.handle_time",
            {"distribution": "gamma", "mean_seconds": 3},
            r"^arrivals\[0\]\.handle_time\.distribution: expected one of",
        ),
        (
            "arrivals.0.patience",
            {"distribution": "lognormal"},
            r"^arrivals\[0\]\.patience\.mean_seconds: required for lognormal",
        ),
        ("arrivals.0.rate_per_hour", _DELETE, r"^arrivals\[0\]: give exactly one of"),
        ("arrivals.0.curve", {"rates_per_hour": []}, r"^arrivals\[0\]: give exactly one of"),
    ],
)
def test_errors_name_the_key(path: str, value: Any, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario_from_dict(_with(path, value))


def test_curve_errors_name_the_key() -> None:
    raw = _with("arrivals.0.rate_per_hour", _DELETE)
    raw["arrivals"][0]["curve"] = {"interval_minutes": 30, "rates_per_hour": [10, -1]}
    with pytest.raises(ScenarioError, match=r"^arrivals\[0\]\.curve\.rates_per_hour\[1\]"):
        scenario_from_dict(raw)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[simulation]\nduration_hours = 'x'\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"bad\.toml:2: simulation\.duration_hours"):
        load_scenario(p)
    p.write_text("[simulation\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(p)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_replay_csv(tmp_path: Path) -> None:
    (tmp_path / "calls.csv").write_text(
        "at_seconds,handle_seconds,patience_seconds\n10,100,\n20,,30\n5000,50,\n",
        encoding="utf-8",
    )
    raw = _with("arrivals.0.rate_per_hour", _DELETE)
    raw["arrivals"][0]["replay"] = "calls.csv"
    sc = scenario_from_dict(raw, base=tmp_path)
    replay = sc.arrivals[0].replay
    assert replay is not None
    assert replay.at == (10.0, 20.0, 5000.0)
    assert replay.handle == (100.0, None, 50.0)
    assert replay.patience == (None, 30.0, None)


def test_replay_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "calls.csv").write_text("at_seconds\n10\nsoon\n", encoding="utf-8")
    raw = _with("arrivals.0.rate_per_hour", _DELETE)
    raw["arrivals"][0]["replay"] = "calls.csv"
    with pytest.raises(ScenarioError, match=r"arrivals\[0\]\.replay \(calls\.csv line 3\)"):
        scenario_from_dict(raw, base=tmp_path)
