"""The live statistics' fold (``acd.stats.DayFold``): hand-computed figures from a scripted
engine log, interval attribution, restarts, day carry-over, and agreement with the simulator's
figures on the same run."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReady,
    CallAbandoned,
    CallArrived,
    CallEnded,
    Event,
    OfferAnswered,
    Tick,
)
from acd.model import LogRecord
from acd.stats import DayFold, service_level

QUARTER = [k * 900.0 for k in range(5)]  # four 15-minute intervals from 0


class Driver:
    """A real engine on a scripted clock: every deadline before an event is ticked first."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.engine = AcdEngine(AcdConfig.from_dict(table), rng=random.Random(0), now=0.0)
        self.log: list[LogRecord] = []

    def __call__(self, ev: Event) -> None:
        self.until(ev.at)
        self.engine.handle(ev)
        self.log.extend(self.engine.drain_log())

    def until(self, t: float) -> None:
        while (d := self.engine.next_deadline()) is not None and d <= t:
            self.engine.handle(Tick(at=d))
            self.log.extend(self.engine.drain_log())


def scripted_day() -> list[LogRecord]:
    """One agent (wrap-up 10 s) and queue q (target 20 s, short abandon 5 s); see the test."""
    h = Driver(
        {
            "queues": {
                "q": {"wrap_up_seconds": 10, "service_level_seconds": 20},
            },
            "agents": {"a1": {"queues": ["q"]}},
        }
    )
    h(AgentLoggedIn(at=0, agent_id="a1"))
    h(CallArrived(at=0, call_id="c1", queue="q"))  # rings a1 at once
    h(OfferAnswered(at=5, call_id="c1", agent_id="a1"))  # waited 5: within target
    h(CallArrived(at=6, call_id="c2", queue="q"))
    h(CallArrived(at=7, call_id="c3", queue="q"))
    h(CallArrived(at=8, call_id="c4", queue="q"))
    h(CallAbandoned(at=9, call_id="c2"))  # waited 3: a short abandon
    h(CallAbandoned(at=30, call_id="c4"))  # waited 22
    h(CallEnded(at=45, call_id="c1"))  # talk 40, wrap-up to 55, then c3 rings
    h(OfferAnswered(at=57, call_id="c3", agent_id="a1"))  # waited 50
    h(CallEnded(at=77, call_id="c3"))  # talk 20, wrap-up to 87
    h(AgentPaused(at=100, agent_id="a1", reason="lunch"))
    h(AgentReady(at=400, agent_id="a1"))
    h(CallArrived(at=890, call_id="c5", queue="q"))  # rings across the 900 s boundary
    h(OfferAnswered(at=909, call_id="c5", agent_id="a1"))  # waited 19: within
    h(CallEnded(at=1000, call_id="c5"))  # talk 91, wrap-up to 1010
    h(CallArrived(at=1200, call_id="c6", queue="q"))  # rings out at 1220 (missed)
    h.until(1229)  # rung again at 1225 after the 5 s no-answer delay
    h(OfferAnswered(at=1230, call_id="c6", agent_id="a1"))  # waited 30
    h(CallEnded(at=1300, call_id="c6"))  # talk 70, wrap-up to 1310
    h(AgentLoggedOut(at=1400, agent_id="a1"))
    return h.log


def folded(records: list[LogRecord], bounds: list[float] = QUARTER) -> DayFold:
    fold = DayFold(bounds)
    for r in records:
        fold.apply(r)
    return fold


def test_hand_computed_queue_figures_per_interval() -> None:
    fold = folded(scripted_day())
    first = fold.call_counts("q", 0)  # c1..c5 entered before 900 s
    assert (first.offered, first.answered, first.abandoned, first.short_abandoned) == (5, 3, 2, 1)
    assert first.answered_within_target == 2  # c1 (5 s) and c5 (19 s)
    assert first.service_level == pytest.approx(2 / 5)
    assert first.abandon_rate == pytest.approx(2 / 5)
    assert first.asa == pytest.approx((5 + 50 + 19) / 3)
    assert first.longest_wait_answered == pytest.approx(50)
    assert first.handled == 3
    assert first.aht == pytest.approx(((40 + 10) + (20 + 10) + (91 + 10)) / 3)
    assert first.unfinished == 0
    second = fold.call_counts("q", 1)
    assert (second.offered, second.answered, second.answered_within_target) == (1, 1, 0)
    assert second.asa == pytest.approx(30)
    assert second.aht == pytest.approx(70 + 10)
    assert fold.call_counts("q", 2).offered == 0
    day = fold.call_counts()
    assert (day.offered, day.answered, day.abandoned) == (6, 4, 2)
    assert day.service_level == pytest.approx(2 / 6)


def test_hand_computed_agent_time_split_at_the_boundary() -> None:
    fold = folded(scripted_day())
    end = 3600.0
    first = fold.agent_time(["a1"], 0, now=end)
    # ringing 0-5, 55-57, 890-900; talking 5-45, 57-77; wrap-up 45-55, 77-87; idle 87-100,
    # 400-890; paused 100-400
    assert first.seconds == pytest.approx(
        {"reserved": 17, "on_call": 60, "wrap_up": 20, "idle": 503, "paused": 300}
    )
    assert first.pauses == pytest.approx({"lunch": 300})
    assert first.occupancy == pytest.approx(97 / 600)
    assert (first.offers, first.answered, first.missed) == (3, 2, 0)  # c5 answered at 909
    second = fold.agent_time(["a1"], 1, now=end)
    # ringing 900-909, 1200-1220, 1225-1230; talking 909-1000, 1230-1300; wrap-up 1000-1010,
    # 1300-1310; idle 1010-1200, 1220-1225, 1310-1400; logged out from 1400
    assert second.seconds == pytest.approx(
        {"reserved": 34, "on_call": 161, "wrap_up": 20, "idle": 285}
    )
    assert second.staffed == pytest.approx(500)
    day = fold.agent_time(["a1"], now=end)
    assert (day.offers, day.answered, day.missed, day.rejected) == (5, 4, 1, 0)
    assert day.occupancy == pytest.approx((51 + 221 + 40) / 1100)
    assert fold.agent_time(["someone-else"], now=end).staffed == 0


def test_the_current_state_counts_up_to_now_and_no_further_than_the_day() -> None:
    log = [r for r in scripted_day() if r.at < 450]  # a1 ready since 400
    fold = folded(log)
    assert fold.agent_time(["a1"], now=500).seconds["idle"] == pytest.approx(13 + 100)
    assert fold.agent_time(["a1"], now=10_000).seconds["idle"] == pytest.approx(13 + 3200)
    rows = fold.by_interval(queue="q", agents=["a1"], now=1000)
    assert [round(t.seconds.get("idle", 0.0)) for _, t in rows] == [13 + 500, 100, 0, 0]
    assert [c.offered for c, _ in rows] == [4, 0, 0, 0]


def test_a_call_waiting_counts_as_offered_and_unfinished() -> None:
    log = [r for r in scripted_day() if r.at < 895]  # c5 is ringing
    c = folded(log).call_counts("q", 0)
    assert (c.offered, c.answered, c.unfinished) == (5, 2, 1)
    assert c.service_level == pytest.approx(1 / 5)  # the simulator's denominator: offered


def overflow_day() -> list[LogRecord]:
    h = Driver(
        {
            "queues": {
                "first": {"max_wait": 30, "overflow": "queue:second"},
                "second": {"max_len": 1, "overflow": "voicemail"},
                "closed": {"when_no_agents": "refuse"},
            },
            "agents": {"a1": {"queues": ["second"]}},
        }
    )
    h(AgentLoggedIn(at=0, agent_id="a1"))
    h(CallArrived(at=0, call_id="busy", queue="second"))
    h(OfferAnswered(at=1, call_id="busy", agent_id="a1"))
    h(CallArrived(at=10, call_id="moved", queue="first"))  # overflows at 40, waits in second
    h(CallArrived(at=50, call_id="full", queue="second"))  # second is full: voicemail
    h(CallArrived(at=60, call_id="nobody", queue="closed"))  # refused: no agents
    h(CallEnded(at=100, call_id="busy"))
    h(OfferAnswered(at=101, call_id="moved", agent_id="a1"))
    h(CallEnded(at=150, call_id="moved"))
    return h.log


def test_an_overflowed_call_counts_once_under_the_queue_it_entered_first() -> None:
    fold = folded(overflow_day())
    first = fold.call_counts("first")
    assert (first.offered, first.answered) == (1, 1)
    assert first.asa == pytest.approx(101 - 10)  # waited from its first entry
    second = fold.call_counts("second")
    assert (second.offered, second.answered, second.voicemail) == (2, 1, 1)
    closed = fold.call_counts("closed")
    assert (closed.offered, closed.rejected, closed.service_level) == (1, 1, 0.0)
    assert fold.queues() == {"first", "second", "closed"}


def test_records_before_the_day_set_states_and_calls_under_way_belong_to_their_day() -> None:
    log = scripted_day()
    fold = folded(log, [1000.0, 1900.0])  # a day starting while c5 talks (it entered before)
    c = fold.call_counts()
    assert (c.offered, c.answered) == (1, 1)  # only c6
    t = fold.agent_time(["a1"], now=1900)
    assert t.seconds["wrap_up"] == pytest.approx(20)  # 1000-1010 and 1300-1310
    assert t.answered == 1 and t.missed == 1


def test_the_next_day_carries_the_agents_states_over() -> None:
    log = [r for r in scripted_day() if r.at < 450]  # a1 ready since 400
    today = DayFold([0.0, 300.0])
    tomorrow: DayFold | None = None
    for r in log:
        if r.at >= today.end and tomorrow is None:
            tomorrow = DayFold.following(today, [300.0, 600.0])
        for fold in (today, tomorrow):
            if fold is not None:
                fold.apply(r)
    assert tomorrow is not None
    # paused from 100 (lunch) until 400, then ready
    assert tomorrow.agent_time(["a1"], now=600).pauses == pytest.approx({"lunch": 100})
    assert tomorrow.agent_time(["a1"], now=600).seconds["idle"] == pytest.approx(200)
    assert today.agent_time(["a1"], now=600).staffed + 200 == pytest.approx(300)


def test_a_new_engine_run_logs_the_old_runs_agents_out() -> None:
    log = [r for r in scripted_day() if r.at < 450]  # a1 ready since 400; then a restart
    restarted = AcdEngine(
        AcdConfig.from_dict({"queues": {"q": {}}, "agents": {"a1": {"queues": ["q"]}}}),
        rng=random.Random(0),
        now=1000.0,
    )
    restarted.handle(AgentLoggedIn(at=1000, agent_id="a1"))
    fold = folded(log + restarted.drain_log())
    assert fold.restarts == 1
    t = fold.agent_time(["a1"], now=1100)
    assert t.seconds["idle"] == pytest.approx(13 + 0 + 100)  # not 400-1000: the process was down


def test_a_call_lost_to_a_restart_stays_offered_and_unfinished() -> None:
    log = [r for r in scripted_day() if r.at < 895]  # c5 rings, then the process dies
    second = AcdEngine(
        AcdConfig.from_dict({"queues": {"q": {}}, "agents": {"a1": {"queues": ["q"]}}}),
        rng=random.Random(0),
        now=1000.0,
    )
    second.handle(AgentLoggedIn(at=1000, agent_id="a1"))
    second.handle(CallArrived(at=1000, call_id="c5", queue="q"))  # an id seen before: new call
    fold = folded(log + second.drain_log())
    assert fold.call_counts("q", 0).unfinished == 1
    assert fold.call_counts("q", 1).offered == 1


def test_boundaries_are_checked() -> None:
    with pytest.raises(ValueError):
        DayFold([0.0])
    with pytest.raises(ValueError):
        DayFold([0.0, 900.0, 900.0])


def test_the_definitions_are_the_simulators() -> None:
    """The simulator's figures (sim.stats.run_figures) and the live fold of the same engine's log
    agree, per queue and per interval: offered, outcomes, service level, abandon rate, ASA and
    occupancy (with overflow, a full queue, breaks and ring-no-answer in the run)."""
    from sim.model import run_replication
    from sim.run import scopes_of
    from sim.scenario import scenario_from_dict
    from sim.stats import run_figures

    sc = scenario_from_dict(
        {
            "simulation": {
                "duration_hours": 2,
                "replications": 1,
                "seed": 7,
                "interval_minutes": 15,
                "service_level_seconds": 20,
            },
            "queues": [
                {
                    "name": "en",
                    "skills": {"en": 3},
                    "wrap_up_seconds": 5,
                    "service_level_seconds": 20,
                    "max_wait": 120,
                    "overflow": "queue:fr",
                },
                {
                    "name": "fr",
                    "skills": {"fr": 5},
                    "service_level_seconds": 20,
                    "max_len": 3,
                    "max_wait": 300,
                    "overflow": "voicemail",
                },
            ],
            "agent_groups": [
                {"name": "en", "count": 3, "queues": ["en"], "skills": {"en": 6, "fr": 3}},
                {
                    "name": "bi",
                    "count": 2,
                    "queues": ["en", "fr"],
                    "skills": {"en": 6, "fr": 7},
                    "ring_no_answer": 0.1,
                    "answer_seconds": {
                        "distribution": "uniform",
                        "low_seconds": 1,
                        "high_seconds": 3,
                    },
                    "breaks": [{"at_hours": 1, "minutes": 10, "stagger_minutes": 10}],
                },
            ],
            "arrivals": [
                {
                    "queue": "en",
                    "rate_per_hour": 70,
                    "handle_time": {"distribution": "exponential", "mean_seconds": 200},
                    "patience": {"distribution": "exponential", "mean_seconds": 150},
                },
                {
                    "queue": "fr",
                    "rate_per_hour": 30,
                    "handle_time": {"distribution": "exponential", "mean_seconds": 200},
                    "patience": {"distribution": "exponential", "mean_seconds": 200},
                },
            ],
        }
    )
    engines: list[AcdEngine] = []

    def factory(s: Any, rng: random.Random) -> AcdEngine:
        engines.append(AcdEngine(s.acd, rng=rng, now=0.0, record_log=True))
        return engines[-1]

    run = run_replication(sc, 0, engine_factory=factory)
    scopes = scopes_of(sc)
    sim = run_figures(run, scopes, sc.simulation.service_level_seconds)
    horizon = sc.simulation.horizon
    fold = folded(engines[0].drain_log(), [k * 900.0 for k in range(int(horizon // 900) + 1)])

    def same(expected: float, got: float | None) -> bool:
        if got is None:
            return math.isnan(expected)
        return got == pytest.approx(expected, rel=1e-9, abs=1e-9)

    def check(where: str, f: dict[str, float], calls: Any, agents: Any) -> None:
        pairs = {
            "offered": calls.offered,
            "answered": calls.answered,
            "abandoned": calls.abandoned,
            "voicemail": calls.voicemail,
            "rejected": calls.rejected,
            "service_level": calls.service_level,
            "abandon_rate": calls.abandon_rate,
            "asa_seconds": calls.asa,
            "occupancy": agents.occupancy,
        }
        bad = {k: (f[k], v) for k, v in pairs.items() if not same(f[k], v)}
        assert not bad, f"{where}: sim vs live {bad}"

    assert sim["queues"]["fr"]["voicemail"] > 0 and sim["queues"]["en"]["abandoned"] > 0
    for q in run.queues:
        members = [a for a, m in zip(run.agents, scopes.queue_agents[q], strict=True) if m]
        check(q, sim["queues"][q], fold.call_counts(q), fold.agent_time(members, now=horizon))
    check("all", sim["all"], fold.call_counts(), fold.agent_time(now=horizon))
    rows = fold.by_interval(now=horizon)
    assert len(rows) == len(sim["intervals"]) == 8
    for k, (f, (calls, agents)) in enumerate(zip(sim["intervals"], rows, strict=True)):
        check(f"interval {k}", f, calls, agents)


def test_the_simulator_uses_the_shared_ratios() -> None:
    import numpy as np

    from sim.stats import caller_figures

    class R:
        outcome = np.asarray([0, 0, 1, 3], dtype=np.int8)
        wait = np.asarray([5.0, 30.0, 10.0, 0.0])
        waited = np.asarray([False, True, True, True])

    figs = caller_figures(np.ones(4, dtype=bool), R(), 20.0)  # type: ignore[arg-type]
    assert figs["service_level"] == service_level(1, 4) == 0.25
