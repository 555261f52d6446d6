"""The model around the real engine: determinism, common random numbers, Little's law, flow
balance, rosters, ring-no-answer, overflow and replay."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acd.actions import CancelOffer, OfferCall, PauseAgent
from sim.distributions import Streams
from sim.model import run_replication
from sim.report import checks, flow_balanced, little_error, result_json
from sim.run import compare, simulate
from sim.scenario import scenario_from_dict, single_queue
from sim.stats import ABANDONED, ANSWERED, REJECTED, VOICEMAIL, estimate, t_quantile_975
from sim.workload import draw_callers

EXAMPLES = Path(__file__).parents[3] / "examples" / "scenarios"


def _small(**kw: Any) -> Any:
    base: dict[str, Any] = {"rate_per_hour": 120, "aht_seconds": 180, "agents": 7}
    base["duration_hours"] = 2.0
    base.update(kw)
    return single_queue(**base)


def test_identical_seeds_give_identical_output() -> None:
    sc = scenario_from_dict(_multi())
    a = result_json(simulate(sc, replications=2))
    b = result_json(simulate(sc, replications=2))
    for doc in (a, b):
        doc.pop("performance")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = result_json(simulate(sc.with_seed(99), replications=2))
    assert c["figures"]["all"]["offered"] != a["figures"]["all"]["offered"]


def test_little_law_and_flow_balance_in_every_run() -> None:
    for sc in (_small(patience_seconds=120), scenario_from_dict(_multi())):
        result = simulate(sc, replications=3)
        c = checks(result)
        assert c["flow_balance"] and c["little_law_holds"], c
        for run in result.runs:
            assert flow_balanced(run)
            assert little_error(run) < 1e-6 * max(1.0, run.wait_total)
            # every caller left the queue (drain): outcomes only answered/abandoned/...
            assert set(np.unique(run.outcome)) <= {ANSWERED, ABANDONED, VOICEMAIL, REJECTED}


def test_common_random_numbers_same_callers_for_every_strategy() -> None:
    a = _small(strategy="longest-idle", patience_seconds=200)
    b = _small(strategy="random", patience_seconds=200)
    ca = draw_callers(a, Streams(a.simulation.seed, 0))
    cb = draw_callers(b, Streams(b.simulation.seed, 0))
    assert np.array_equal(ca.entry, cb.entry)
    assert np.array_equal(ca.handle, cb.handle)
    assert np.array_equal(ca.patience, cb.patience)
    cmp = compare([a, b], replications=3)
    assert [r.scenario.name for r in cmp.results] == [a.name, b.name]
    d = cmp.differences[1]["all"]
    assert d["offered"].mean == 0.0 and d["offered"].low == 0.0
    # work-conserving FCFS with agent-independent handle times: callers fare the same
    assert d["service_level"].mean == pytest.approx(0.0, abs=1e-12)


def test_streams_are_independent_per_purpose() -> None:
    s = Streams(5, 0)
    x = s.rng("handle:a").random(4)
    y = Streams(5, 0).rng("handle:a").random(4)
    z = Streams(5, 0).rng("patience:a").random(4)
    w = Streams(5, 1).rng("handle:a").random(4)
    assert np.array_equal(x, y)
    assert not np.array_equal(x, z) and not np.array_equal(x, w)


def test_no_agents_means_unfinished_or_rejected() -> None:
    sc = _small(group={"shift": {"start_hours": 5, "end_hours": 6}})
    sc = replace(sc, simulation=replace(sc.simulation, drain=False))
    run = run_replication(sc, 0)
    assert (run.outcome[run.measured] != ANSWERED).all()
    assert flow_balanced(run)


def test_breaks_and_shifts_reduce_staffed_time() -> None:
    full = run_replication(_small(), 0)
    sc = _small(
        group={
            "shift": {"start_hours": 1.5, "end_hours": 3},
            "breaks": [{"at_hours": 2, "minutes": 10, "stagger_minutes": 5}],
        },
    )
    run = run_replication(sc, 0)
    # window is [1 h, 3 h): 7 agents for 1.5 h, minus breaks; a break that starts during a call
    # begins when the call ends and still ends on time
    assert full.staffed.sum() == pytest.approx(7 * 2 * 3600)
    assert 7 * (1.5 * 3600 - 600) - 1e-6 <= run.staffed.sum() < 7 * 1.5 * 3600 - 600
    assert (run.busy <= run.staffed + 1e-9).all()


def test_ring_no_answer_reoffers_and_pauses() -> None:
    sc = _small(group={"ring_no_answer": 0.5, "max_misses": 2, "rona_ready_seconds": 30})
    trace: list[tuple[float, Any, list[Any]]] = []
    run = run_replication(sc, 0, trace=trace)
    actions = [a for _, _, acts in trace for a in acts]
    cancels = [a for a in actions if isinstance(a, CancelOffer) and a.reason == "no_answer"]
    offers = [a for a in actions if isinstance(a, OfferCall)]
    pauses = [a for a in actions if isinstance(a, PauseAgent) and a.reason == "rona"]
    assert cancels and pauses
    assert len(offers) > (run.outcome == ANSWERED).sum()
    assert flow_balanced(run)
    assert checks(simulate(sc, replications=1))["little_law_holds"]


def test_answer_delay_counts_in_wait() -> None:
    sc = _small(rate_per_hour=20, group={"answer_seconds": 5})
    run = run_replication(sc, 0)
    ans = run.outcome == ANSWERED
    assert np.allclose(run.wait[ans & ~run.waited], 5.0)


def test_max_wait_overflow_to_voicemail() -> None:
    sc = _small(rate_per_hour=200, agents=5, queue={"max_wait": 30, "overflow": "voicemail"})
    run = run_replication(sc, 0)
    vm = run.outcome == VOICEMAIL
    assert vm.any()
    assert np.all(run.wait[vm] >= 30 - 1e-9)
    assert np.all(run.wait[run.outcome == ANSWERED] <= 30 + 20 + 1e-9)  # a ringing offer may end


def test_wrap_up_counts_as_busy() -> None:
    plain = run_replication(_small(), 0)
    wrapped = run_replication(_small(queue={"wrap_up_seconds": 60}), 0)
    assert wrapped.busy.sum() > plain.busy.sum()


def test_replay_gives_exact_callers(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(
        "at_seconds,handle_seconds,patience_seconds\n0,100,\n10,100,\n20,100,5\n",
        encoding="utf-8",
    )
    raw = _multi()
    raw["arrivals"] = [
        {
            "queue": "en",
            "replay": "c.csv",
            "handle_time": {"distribution": "exponential", "mean_seconds": 60},
        }
    ]
    raw["agent_groups"] = [{"name": "solo", "count": 1, "queues": ["en"], "skills": {"en": 5}}]
    raw["simulation"]["warmup_hours"] = 0
    sc = scenario_from_dict(raw, base=tmp_path)
    run = run_replication(sc, 0)
    assert run.entry.tolist() == [0.0, 10.0, 20.0]
    assert run.outcome.tolist() == [ANSWERED, ANSWERED, ABANDONED]
    # the second caller waits for the first call (100 s) and its 5 s wrap-up
    assert run.wait.tolist() == [0.0, 95.0, 5.0]


def test_replay_from_engine_log_rows(tmp_path: Path) -> None:
    rows = [
        {"at": 100.0, "seq": 1, "kind": "call_queued", "call_id": "x", "queue": "en", "data": {}},
        {"at": 130.0, "seq": 2, "kind": "call_queued", "call_id": "y", "queue": "en", "data": {}},
        {"at": 190.0, "seq": 3, "kind": "call_ended", "call_id": "x", "data": {"talk": 77.0}},
    ]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    raw = _multi()
    raw["arrivals"] = [
        {"queue": "en", "replay": "log.jsonl", "handle_time": {"mean_seconds": 60}},
    ]
    sc = scenario_from_dict(raw, base=tmp_path)
    rp = sc.arrivals[0].replay
    assert rp is not None and rp.at == (0.0, 30.0) and rp.handle == (77.0, None)


def test_per_interval_and_scopes() -> None:
    result = simulate(scenario_from_dict(_multi()), replications=2)
    figs = result.figures
    assert set(figs["queues"]) == {"en", "fr"}
    assert set(figs["skills"]) == {"en", "fr"}
    total = sum(f["offered"].mean for f in figs["intervals"])
    assert total == pytest.approx(figs["all"]["offered"].mean)
    assert figs["queues"]["en"]["offered"].mean + figs["queues"]["fr"]["offered"].mean == (
        pytest.approx(figs["all"]["offered"].mean)
    )
    for f in figs["intervals"]:
        assert 0.0 <= f["occupancy"].mean <= 1.0


def test_estimate_interval() -> None:
    e = estimate([1.0, 2.0, 3.0])
    assert e.mean == 2.0
    assert e.high is not None and e.low is not None
    assert e.high - 2.0 == pytest.approx(t_quantile_975(2) * 1.0 / 3**0.5)
    assert estimate([4.0]).low is None
    assert t_quantile_975(200) == pytest.approx(1.972, abs=1e-3)


def _multi() -> dict[str, Any]:
    return {
        "simulation": {"duration_hours": 2, "warmup_hours": 0.5, "replications": 2, "seed": 4},
        "queues": [
            {"name": "en", "skills": {"en": 3}, "wrap_up_seconds": 5},
            {
                "name": "fr",
                "strategy": "skills-best-match",
                "skills": {"fr": 5},
                "widening": [{"after_seconds": 30, "relax_levels": 2}],
            },
        ],
        "agent_groups": [
            {"name": "en", "count": 4, "queues": ["en"], "skills": {"en": 6, "fr": 3}},
            {
                "name": "bi",
                "count": 3,
                "queues": ["en", "fr"],
                "skills": {"en": 6, "fr": 7},
                "ring_no_answer": 0.05,
                "answer_seconds": {"distribution": "uniform", "low_seconds": 1, "high_seconds": 3},
                "breaks": [{"at_hours": 1, "minutes": 10, "stagger_minutes": 10}],
            },
        ],
        "arrivals": [
            {
                "queue": "en",
                "rate_per_hour": 60,
                "handle_time": {"distribution": "lognormal", "mean_seconds": 200, "cv": 0.7},
                "patience": {"distribution": "exponential", "mean_seconds": 200},
            },
            {
                "queue": "fr",
                "rate_per_hour": 30,
                "handle_time": {"distribution": "exponential", "mean_seconds": 200},
                "patience": {"distribution": "empirical", "values": [30, 60, 600]},
                "ivr_time": 15,
            },
        ],
    }


def test_figures_match_the_engines_own_log_statistics() -> None:
    """The model's accounting agrees with acd.stats folding the engine's log of the same run."""
    import random

    from acd.engine import AcdEngine
    from acd.stats import StatsAccumulator

    sc = _small(
        rate_per_hour=150,
        patience_seconds=120,
        warmup_hours=0.0,
        queue={"wrap_up_seconds": 10, "service_level_seconds": 20},
        group={
            "ring_no_answer": 0.1,
            "answer_seconds": 2,
            "max_misses": 2,
            # logging out at the end closes every agent's last state in the engine's log
            "shift": {"start_hours": 0, "end_hours": 2},
        },
    )
    engines: list[AcdEngine] = []

    def factory(s: Any, rng: random.Random) -> AcdEngine:
        engines.append(AcdEngine(s.acd, rng=rng, now=0.0, record_log=True))
        return engines[-1]

    run = run_replication(sc, 0, engine_factory=factory)
    acc = StatsAccumulator.from_records(engines[0].drain_log(), interval_seconds=1800)
    total = acc.summary()["total"]
    assert total["offered"] == len(run.entry)
    assert total["answered"] == int((run.outcome == ANSWERED).sum())
    assert total["abandoned"] == int((run.outcome == ABANDONED).sum())
    ans = run.outcome == ANSWERED
    assert total["answered_in_sl"] == int((ans & (run.wait <= 20.0)).sum())
    assert total["asa"] == pytest.approx(float(run.wait[ans].mean()), rel=1e-9)
    for j, aid in enumerate(run.agents):
        assert acc.agents[aid].answered == int((run.agent_idx == j).sum())
    # agent time inside the measured window, split by interval on both sides
    horizon = sc.simulation.horizon
    for j, aid in enumerate(run.agents):
        busy = idle = 0.0
        for (bucket, agent), figs in acc.agent_intervals.items():
            if agent == aid and bucket < horizon:
                busy += sum(figs.seconds.get(s, 0.0) for s in ("reserved", "on_call", "wrap_up"))
                idle += figs.seconds.get("idle", 0.0)
        assert run.busy[j] == pytest.approx(busy, abs=1e-6)
        assert run.staffed[j] == pytest.approx(busy + idle, abs=1e-6)
