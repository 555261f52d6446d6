"""Statistics: hand-computed figures, rebuild after restart, interval split."""

from __future__ import annotations

import json
import random

import pytest

from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    CallAbandoned,
    CallArrived,
    CallEnded,
    OfferAnswered,
    Tick,
)
from acd.model import LogRecord
from acd.stats import StatsAccumulator


def run_day() -> list[LogRecord]:
    """Five calls in queue q (SL 20 s, short abandon 5 s), one agent with 10 s wrap-up."""
    cfg = AcdConfig.from_dict(
        {
            "queues": {
                "q": {
                    "skills": {"fr": 3},
                    "wrap_up_seconds": 10,
                    "max_wait": 100,
                    "overflow": "voicemail",
                },
            },
            "agents": {"a1": {"queues": ["q"], "skills": {"fr": 5}}},
        }
    )
    e = AcdEngine(cfg, rng=random.Random(0), now=0.0)
    log: list[LogRecord] = []

    def h(ev):
        acts = e.handle(ev)
        log.extend(e.drain_log())
        return acts

    h(AgentLoggedIn(at=0, agent_id="a1"))
    h(CallArrived(at=0, call_id="c1", queue="q"))  # answered after 5 s (in SL)
    h(OfferAnswered(at=5, call_id="c1", agent_id="a1"))
    h(CallArrived(at=6, call_id="c2", queue="q"))  # waits; abandons at 9 (short)
    h(CallArrived(at=7, call_id="c3", queue="q"))  # answered at 65+... (out of SL)
    h(CallArrived(at=8, call_id="c4", queue="q"))  # abandons at 20 (in SL, not short)
    h(CallAbandoned(at=9, call_id="c2"))
    h(CallAbandoned(at=20, call_id="c4"))
    h(CallEnded(at=45, call_id="c1"))  # talk 40, wrap to 55
    h(Tick(at=55))  # a1 idle -> offered c3
    h(OfferAnswered(at=57, call_id="c3", agent_id="a1"))  # waited 50
    h(CallArrived(at=60, call_id="c5", queue="q"))  # rung 3 times unanswered, voicemail at 160
    h(CallEnded(at=77, call_id="c3"))  # talk 20
    h(Tick(at=200))
    return log


def test_hand_computed_figures() -> None:
    log = run_day()
    s = StatsAccumulator.from_records(log, interval_seconds=3600)
    q = s.queues["q"].as_dict()
    assert q["offered"] == 5 and q["finished"] == 5
    assert q["answered"] == 2
    assert q["abandoned"] == 2
    assert q["short_abandoned"] == 1
    assert q["abandoned_in_sl"] == 2
    assert q["answered_in_sl"] == 1
    assert q["sl_offered"] == pytest.approx(1 / 5)
    assert q["sl_answered"] == pytest.approx(1 / 2)
    assert q["sl_excl_short"] == pytest.approx(1 / 4)
    assert q["sl_abandon_neutral"] == pytest.approx(1 / 3)
    assert q["sl_abandon_positive"] == pytest.approx(3 / 5)
    assert q["asa"] == pytest.approx((5 + 50) / 2)
    assert q["abandon_rate"] == pytest.approx(2 / 5)
    assert q["abandon_rate_excl_short"] == pytest.approx(1 / 4)
    assert q["avg_talk"] == pytest.approx(30)
    assert s.skills["fr"].offered == 5  # per skill (queue requirement)
    a = s.agent_figures("a1", now=200).as_dict()
    assert (a["answered"], a["offers"], a["no_answer"]) == (2, 5, 3)
    assert a["talk"] == pytest.approx(60)
    # reserved 0-5, 55-57 and three 20 s rings for c5 (87, 112, 137; 5 s no-answer delay between),
    # on call 5-45 and 57-77, wrap-up 45-55 and 77-87, paused (rona) from 157
    assert a["seconds"] == pytest.approx(
        {"reserved": 67, "on_call": 60, "wrap_up": 20, "idle": 10, "paused": 43}
    )
    assert a["occupancy"] == pytest.approx(147 / 157)


def test_voicemail_counted() -> None:
    s = StatsAccumulator.from_records(run_day())
    assert s.total.voicemail == 1  # c5 at max wait


def test_rebuild_after_restart_equals_live_and_survives_json() -> None:
    log = run_day()
    live = StatsAccumulator(interval_seconds=30)
    for r in log:
        live.apply(r)
    stored = [json.loads(json.dumps(r.to_dict())) for r in log]  # the store round trip
    rebuilt = StatsAccumulator.from_records(
        (LogRecord.from_dict(d) for d in stored), interval_seconds=30
    )
    assert rebuilt.summary(now=200) == live.summary(now=200)
    # restart in the middle: fold the first half, then the rest, same result
    half = StatsAccumulator.from_records(log[: len(log) // 2], interval_seconds=30)
    for r in log[len(log) // 2 :]:
        half.apply(r)
    assert half.summary(now=200) == live.summary(now=200)


def test_intervals_split_agent_time_and_bucket_calls_by_join_time() -> None:
    s = StatsAccumulator.from_records(run_day(), interval_seconds=30)
    assert s.intervals[(0.0, "q")].offered == 4  # c1..c4 joined in [0, 30)
    assert s.intervals[(60.0, "q")].offered == 1
    on_call = {
        b: f.seconds.get("on_call", 0.0) for (b, a), f in s.agent_intervals.items() if a == "a1"
    }
    assert on_call[0.0] == pytest.approx(25) and on_call[30.0] == pytest.approx(18)
    assert on_call[60.0] == pytest.approx(17)  # 57-77 split 3 + 17
    assert sum(on_call.values()) == pytest.approx(60)
    assert "0|q" in s.summary()["intervals"]
    with pytest.raises(ValueError):
        StatsAccumulator(interval_seconds=0)
