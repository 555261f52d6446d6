"""What-if (sim/whatif.py): the current and the proposed routing on the same callers give
exactly the figures ``hotline sim run`` gives for each on the same seeds; recorded traffic
becomes a replay with the callers' own skills, priority, talk times and patience."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from acd.config import AcdConfig
from sim import whatif
from sim.cli import main as sim_cli
from sim.scenario import ScenarioError

SCENARIO = """
[simulation]
duration_hours = 1
warmup_hours = 0.25
replications = 2
seed = 11
service_level_seconds = 20
interval_minutes = 15

[[queues]]
name = "sales"
{sales}

[[queues]]
name = "back"
strategy = "linear"

[[agent_groups]]
name = "seniors"
count = 2
queues = ["sales", "back"]
skills = {{ en = 8 }}
answer_seconds = 2

[[agent_groups]]
name = "juniors"
count = 3
queues = ["sales"]
skills = {{ en = 3 }}
ring_no_answer = 0.1

[[arrivals]]
name = "callers"
queue = "sales"
rate_per_hour = 70
handle_time = {{ distribution = "exponential", mean_seconds = 150 }}
patience = {{ distribution = "exponential", mean_seconds = 90 }}

[[arrivals]]
name = "back-office"
queue = "back"
rate_per_hour = 10
handle_time = 200
"""

SERVICE = """
[acd.queues.sales]
strategy = "{strategy}"
skills = {{ en = 3 }}
ring_timeout = 15
wrap_up_seconds = 5

[acd.agents.ann]
skills = {{ en = 9 }}
queues = ["sales"]

[acd.agents.ben]
skills = {{ en = 4 }}
queues = ["sales"]

[acd.agents.cy]
skills = {{ en = 6 }}
queues = ["sales"]
"""

WORKLOAD = """
[simulation]
duration_hours = 2
replications = 3
seed = 4

[[arrivals]]
queue = "sales"
rate_per_hour = 50
handle_time = { distribution = "lognormal", mean_seconds = 160, cv = 0.8 }
patience = { distribution = "exponential", mean_seconds = 120 }
"""


def prop_sl_below(doc: dict[str, Any]) -> bool:
    """Two agents instead of five for sales: a lower service level."""
    sl = [doc[side]["figures"]["queues"]["sales"]["service_level"]["mean"] for side in
          ("current", "proposed")]  # fmt: skip
    return bool(sl[1] < sl[0])


def _cli(tmp_path: Path, name: str, args: list[str]) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    assert sim_cli(["sim", "run", *args, "--json", str(out), "--quiet"]) == 0
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_a_scenario_gives_the_figures_of_sim_run_on_the_same_seed(tmp_path: Path) -> None:
    current = {"queues": {"sales": {"strategy": "longest-idle", "ring_timeout": 12}}}
    proposed = {
        "queues": {
            "sales": {
                "strategy": "weighted",
                "weights": {"skill": 2, "idle": 1},
                "skills": {"en": 5},  # the juniors no longer serve sales
                "ring_timeout": 12,
            }
        }
    }
    text = SCENARIO.format(sales="")
    doc = whatif.run(
        {"current": current, "proposed": proposed, "scenario": text, "seed": 5, "replications": 3}
    )
    # The same scenario with each side's queue settings written in, through the command.
    files = {
        "current": 'strategy = "longest-idle"\nring_timeout = 12',
        "proposed": 'strategy = "weighted"\nweights = { skill = 2, idle = 1 }\n'
        "skills = { en = 5 }\nring_timeout = 12",
    }
    for side, sales in files.items():
        path = tmp_path / f"{side}.toml"
        path.write_text(SCENARIO.format(sales=sales))
        cli = _cli(tmp_path, side, [str(path), "--seed", "5", "--replications", "3"])
        assert doc[side]["figures"] == cli["figures"], side
        assert doc[side]["calls"] == cli["performance"]["calls"]
    assert doc["replications"] == 3 and doc["seed"] == 5
    assert doc["same_callers"] is True
    assert prop_sl_below(doc)
    sl = doc["differences"]["all"]["service_level"]
    cur = doc["current"]["figures"]["all"]["service_level"]["mean"]
    prop = doc["proposed"]["figures"]["all"]["service_level"]["mean"]
    assert sl["mean"] == pytest.approx(prop - cur)
    assert "'sales'" in doc["notes"][0]  # the queue the configuration's settings replaced


def test_a_workload_runs_the_configurations_own_agents_as_sim_run_does(tmp_path: Path) -> None:
    tables = {
        side: tomllib.loads(SERVICE.format(strategy=s))["acd"]
        for side, s in (("current", "longest-idle"), ("proposed", "skills-best-match"))
    }
    doc = whatif.run({**tables, "scenario": tomllib.loads(WORKLOAD)})
    workload = tmp_path / "calls.toml"
    workload.write_text(WORKLOAD)
    for side, strategy in (("current", "longest-idle"), ("proposed", "skills-best-match")):
        service = tmp_path / f"{side}-site.toml"
        service.write_text(SERVICE.format(strategy=strategy))
        cli = _cli(tmp_path, side, [str(service), "--workload", str(workload)])
        assert doc[side]["figures"] == cli["figures"], side
    assert doc["seed"] == 4 and doc["replications"] == 3  # the workload's own


def test_shipped_examples_by_name_and_what_an_inline_scenario_may_not_do() -> None:
    assert "single_queue" in whatif.examples()
    raw, base = whatif.scenario_document("single_queue")
    assert raw["queues"][0]["name"] == "sales" and base == whatif.EXAMPLES_DIR
    with pytest.raises(ScenarioError, match="no shipped example 'nope'"):
        whatif.scenario_document("nope")
    with pytest.raises(ScenarioError) as info:
        whatif.scenario_document('[simulation]\nduration_hours = 1\n[[arrivals]]\nqueue = "sales"'
                                 '\nreplay = "/etc/passwd"\nhandle_time = 100\n')  # fmt: skip
    assert info.value.path == "arrivals[0].replay"
    with pytest.raises(ScenarioError) as info:
        whatif.scenario_document("[simulation]\nduration_hours = = 1\n")
    assert info.value.line == 2 and "not valid TOML" in info.value.reason


def test_a_scenario_mistake_names_its_key_and_the_side() -> None:
    current: dict[str, Any] = {"queues": {"sales": {}}}
    proposed: dict[str, Any] = {"queues": {"other": {}}}
    workload = tomllib.loads(WORKLOAD)
    with pytest.raises(ScenarioError) as info:
        whatif.prepare({"current": current, "proposed": proposed, "scenario": workload})
    assert info.value.path == "arrivals[0].queue"
    assert "with the proposed routing" in info.value.reason
    bad = {**workload, "simulation": {"duration_hours": -1}}
    with pytest.raises(ScenarioError) as info:
        whatif.prepare({"current": current, "proposed": current, "scenario": bad})
    assert info.value.path == "simulation.duration_hours"


T0 = 1_780_000_000.0


def _row(at: float, kind: str, **kw: Any) -> dict[str, Any]:
    return {"at": T0 + at, "seq": 0, "kind": kind, "data": kw.pop("data", {}), **kw}


def test_recorded_traffic_is_replayed_with_its_skills_priority_talk_and_patience() -> None:
    acd = AcdConfig.from_dict(
        {
            "queues": {"sales": {"skills": {"en": 3}, "priority": 2}},
            "agents": {"ann": {"queues": ["sales"]}, "ben": {"queues": ["sales"]}},
        }
    )
    q = {"queue": "sales"}
    usual = {"priority": 2, "skills": {"en": 3}}  # the queue's own priority and skill
    french = {"en": 3, "fr": 5}
    rows = [
        _row(-50, "call_queued", call_id="old", **q, data=usual),
        _row(10, "agent_state", agent_id="ann", data={"state": "idle"}),
        _row(20, "call_queued", call_id="c1", **q, data=usual),
        _row(25, "call_answered", call_id="c1", agent_id="ann", **q, data={"waited": 5}),
        _row(125, "call_ended", call_id="c1", agent_id="ann", **q, data={"talk": 100}),
        _row(30, "call_queued", call_id="c2", **q, data={"priority": 7, "skills": french}),
        _row(70, "call_abandoned", call_id="c2", **q, data={"waited": 40}),
        _row(40, "call_queued", call_id="c3", **q, data={**usual, "kind": "voicemail"}),
        _row(50, "call_refused", call_id="c4", **q, data=usual),
    ]
    hist = whatif.history_workload(rows, start=T0, end=T0 + 3600, acd=acd)
    assert hist["calls"] == 3 and hist["abandoned"] == 1  # not the old one, not the message
    assert hist["agents"] == ["ann"]  # ben never logged in
    by_skills = {tuple(sorted(s["skills"])): s for s in hist["sources"]}
    own, fr = by_skills[()], by_skills[("fr",)]
    assert own["at"] == [20.0, 50.0] and own["handle"] == [100.0, None]
    assert own["patience"] == [None, None] and own["priority"] == 0
    assert own["handle_values"] == [100.0]
    assert fr["skills"] == {"fr": 5} and fr["priority"] == 5
    assert fr["patience"] == [40.0]

    table = {"queues": {"sales": {"skills": {"en": 3}, "priority": 2}},
             "agents": {"ann": {"queues": ["sales"], "skills": {"en": 5, "fr": 6}},
                        "ben": {"queues": ["sales"]}}}  # fmt: skip
    doc = whatif.run(
        {"current": table, "proposed": table, "history": hist, "replications": 2, "seed": 3}
    )
    assert doc["current"]["figures"] == doc["proposed"]["figures"]
    assert doc["current"]["figures"]["all"]["offered"]["mean"] == 3
    assert doc["current"]["calls"] == 2 * 3  # replications x callers
    gone = {"queues": {"other": {}}, "agents": {"ann": {"queues": ["other"]}}}
    with pytest.raises(ScenarioError, match="which the proposed routing does not have"):
        whatif.prepare({"current": table, "proposed": gone, "history": hist})


def test_a_queue_no_simulated_agent_can_serve_is_pointed_out() -> None:
    current = {"queues": {"sales": {"skills": {"sales": 3}}}}  # the example's agents lack it
    proposed = {"queues": {"sales": {"skills": {"sales": 3}, "widening": [
        {"after_seconds": 30, "relax_levels": 3}]}}}  # fmt: skip
    prepared = whatif.prepare(
        {"current": current, "proposed": proposed, "scenario": "single_queue"}
    )
    assert prepared.notes[1:] == (
        "with the current routing, no simulated agent of queue 'sales' has the skills it "
        "requires (sales 3)",
    )
    assert prepared.seed == 42 and prepared.replications == 10  # the example's own
