"""Hand-worked scenarios for the ACD engine, including the peers' bug reports."""

from __future__ import annotations

import random
from typing import Any

import pytest

from acd.actions import (
    AnnouncePosition,
    BridgeCall,
    CancelOffer,
    OfferCall,
    Overflow,
    PauseAgent,
    RefuseAnswer,
    RejectCall,
    SendToVoicemail,
)
from acd.config import AcdConfig
from acd.engine import AcdEngine, _Probe
from acd.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReady,
    CallAbandoned,
    CallArrived,
    CallEnded,
    ConfigChanged,
    ConfigRolledBack,
    OfferAnswered,
    OfferFailed,
    OfferRejected,
    OfferTimedOut,
    Tick,
    WrapUpDone,
)
from acd.model import AgentState, AgentStatus, CallState
from routing.strategy import RoutingMemory


class Drive:
    """A tiny driver: one engine, a clock we move by hand."""

    def __init__(self, queues: dict[str, Any], agents: dict[str, Any], **top: Any) -> None:
        self.cfg = AcdConfig.from_dict({"queues": queues, "agents": agents, **top})
        self.e = AcdEngine(self.cfg, rng=random.Random(3), now=0.0)
        self.t = 0.0

    def at(self, t: float) -> Drive:
        self.t = t
        return self

    def __call__(self, event_cls: type, **kw: Any) -> list[Any]:
        return self.e.handle(event_cls(at=self.t, **kw))

    def login(self, *agents: str) -> list[Any]:
        out = []
        for a in agents:
            out += self(AgentLoggedIn, agent_id=a)
        return out

    def arrive(self, call_id: str, queue: str, **kw: Any) -> list[Any]:
        return self(CallArrived, call_id=call_id, queue=queue, **kw)

    def tick(self, t: float) -> list[Any]:
        self.t = t
        return self.e.handle(Tick(at=t))


def offers(actions: list[Any]) -> list[tuple[str, str]]:
    return [(a.call_id, a.agent_id) for a in actions if isinstance(a, OfferCall)]


def of(actions: list[Any], cls: type) -> list[Any]:
    return [a for a in actions if isinstance(a, cls)]


# --- the peers' bug reports ------------------------------------------------------------------------


def test_ring_all_second_answer_is_refused_and_others_cancelled() -> None:
    """asterisk#176, FS PR #2530, Twilio 2019: one ring-all call answered by two agents."""
    d = Drive({"q": {"strategy": "ring-all"}}, {x: {"queues": ["q"]} for x in ("a1", "a2", "a3")})
    d.login("a1", "a2", "a3")
    acts = d.at(1).arrive("c1", "q")
    assert sorted(offers(acts)) == [("c1", "a1"), ("c1", "a2"), ("c1", "a3")]
    acts = d.at(2)(OfferAnswered, call_id="c1", agent_id="a2")
    assert of(acts, BridgeCall) == [BridgeCall(call_id="c1", agent_id="a2", queue="q")]
    cancels = {(a.agent_id, a.reason) for a in of(acts, CancelOffer)}
    assert cancels == {("a1", "answered_elsewhere"), ("a3", "answered_elsewhere")}
    late = d(OfferAnswered, call_id="c1", agent_id="a1")
    assert late == [RefuseAnswer(call_id="c1", agent_id="a1", reason="already_answered")]
    assert d.e.agent_call("a2") == "c1"
    assert d.e.agent_call("a1") is None
    assert d.e.routable("a1") and d.e.routable("a3")


def test_wrap_up_counts_across_queues() -> None:
    """asterisk#1006: an agent in wrap-up from queue A is not offered queue B's call."""
    d = Drive(
        {"A": {"wrap_up_seconds": 30}, "B": {}},
        {"a1": {"queues": ["A", "B"]}},
    )
    d.login("a1")
    d.at(1).arrive("ca", "A")
    d.at(2)(OfferAnswered, call_id="ca", agent_id="a1")
    d.at(60)(CallEnded, call_id="ca")
    assert d.e.agent_state("a1")[1] is AgentState.WRAP_UP
    acts = d.at(63).arrive("cb", "B")  # 3 s after hang-up
    assert offers(acts) == []
    assert d.e.next_deadline() == 90.0
    assert offers(d.tick(90.0)) == [("cb", "a1")]


def test_fairness_across_queues_oldest_highest_priority_wins() -> None:
    """asterisk#108/#1637/#1691, Wazo "non-deterministic": across an agent's queues the highest
    priority call wins, then the oldest."""
    d = Drive(
        {"A": {}, "B": {}, "C": {"priority": 2}},
        {"a1": {"queues": ["A", "B", "C"]}},
    )
    d.at(1).arrive("a_old", "A")
    d.at(2).arrive("b_newer", "B")
    d.at(3).arrive("a_vip", "A", priority=1)
    d.at(4).arrive("c_queue_prio", "C")  # queue priority 2 beats caller priority 1
    d.at(5).login("a1")
    served = []
    for t in range(6, 14, 2):
        cid = d.e.agent_call("a1")
        served.append(cid)
        d.at(t)(OfferAnswered, call_id=cid, agent_id="a1")
        d.at(t + 1)(CallEnded, call_id=cid)
    assert served == ["c_queue_prio", "a_vip", "a_old", "b_newer"]


def test_rona_keeps_place_and_pauses_after_max_misses() -> None:
    """FreePBX#816: pause after N misses, not 1; the call keeps its place (Connect#613)."""
    d = Drive(
        {"q": {"ring_timeout": 10}},
        {
            "a1": {"queues": ["q"], "max_misses": 2, "no_answer_delay_seconds": 0},
            "a2": {"queues": ["q"]},
        },
    )
    d.login("a1")
    d.at(1).arrive("c1", "q")
    d.at(2).arrive("c2", "q")
    assert d.e.waiting("q") == ["c1", "c2"]
    acts = d.tick(11)  # ring timeout
    assert CancelOffer(call_id="c1", agent_id="a1", reason="no_answer") in acts
    assert d.e.waiting("q") == ["c1", "c2"]
    assert offers(acts) == [("c1", "a1")]  # still first in line; a1 was the only agent
    acts = d.tick(21)  # second miss -> paused
    assert PauseAgent(agent_id="a1", reason="rona") in acts
    assert d.e.agent_state("a1") == (AgentStatus.PAUSED, AgentState.IDLE, "rona")
    assert d.e.waiting("q") == ["c1", "c2"]
    acts = d.at(22).login("a2")
    assert offers(acts) == [("c1", "a2")]
    acts = d.at(23)(AgentReady, agent_id="a1")
    assert offers(acts) == [("c2", "a1")]


def test_reject_and_busy_delays() -> None:
    d = Drive(
        {"q": {}},
        {"a1": {"queues": ["q"], "reject_delay_seconds": 4, "busy_delay_seconds": 9}},
    )
    d.login("a1")
    d.at(1).arrive("c1", "q")
    assert offers(d.at(2)(OfferRejected, call_id="c1", agent_id="a1")) == []
    assert not d.e.routable("a1")
    assert offers(d.tick(6)) == [("c1", "a1")]
    assert offers(d.at(7)(OfferFailed, call_id="c1", agent_id="a1")) == []
    assert offers(d.tick(15.9)) == []
    assert offers(d.tick(16)) == [("c1", "a1")]
    assert d.e.agent_state("a1")[0] is AgentStatus.AVAILABLE  # reject/busy are not misses


def test_pause_and_logout_while_ringing_withdraw_the_offer() -> None:
    """FS PR #800: status change while ringing must not loop; the call goes to someone else."""
    d = Drive({"q": {}}, {"a1": {"queues": ["q"]}, "a2": {"queues": ["q"]}})
    d.login("a1")
    d.at(1).arrive("c1", "q")
    d.at(2).login("a2")
    acts = d.at(3)(AgentPaused, agent_id="a1", reason="lunch")
    assert CancelOffer(call_id="c1", agent_id="a1", reason="agent_paused") in acts
    assert offers(acts) == [("c1", "a2")]
    acts = d.at(4)(AgentLoggedOut, agent_id="a2")
    assert CancelOffer(call_id="c1", agent_id="a2", reason="agent_logged_out") in acts
    assert d.e.call_state("c1") is CallState.WAITING
    late = d.at(5)(OfferAnswered, call_id="c1", agent_id="a2")
    assert late == [RefuseAnswer(call_id="c1", agent_id="a2", reason="offer_withdrawn")]


def test_logout_during_call_skips_wrap_up_and_pause_waits_for_hangup() -> None:
    d = Drive({"q": {"wrap_up_seconds": 20}}, {"a1": {"queues": ["q"]}, "a2": {"queues": ["q"]}})
    d.login("a1", "a2")
    d.at(1).arrive("c1", "q")
    d.at(1).arrive("c2", "q")
    d.at(2)(OfferAnswered, call_id="c1", agent_id="a1")
    d.at(2)(OfferAnswered, call_id="c2", agent_id="a2")
    d.at(3)(AgentLoggedOut, agent_id="a1")
    d.at(3)(AgentPaused, agent_id="a2", reason="training")
    assert d.e.agent_call("a1") == "c1"  # calls continue
    d.at(9)(CallEnded, call_id="c1")
    d.at(9)(CallEnded, call_id="c2")
    assert d.e.agent_state("a1") == (AgentStatus.LOGGED_OUT, AgentState.IDLE, None)
    assert d.e.agent_state("a2") == (AgentStatus.PAUSED, AgentState.WRAP_UP, "training")
    d.at(10)(WrapUpDone, agent_id="a2")
    assert d.e.agent_state("a2") == (AgentStatus.PAUSED, AgentState.IDLE, "training")


def test_priority_then_arrival_within_a_queue() -> None:
    d = Drive({"q": {}}, {"a1": {"queues": ["q"]}})
    d.at(1).arrive("c1", "q")
    d.at(2).arrive("c2", "q", priority=5)
    d.at(3).arrive("c3", "q")
    d.at(4).arrive("c0", "q", enqueued_at=0.5)  # a voicemail message keeps its caller's place
    assert d.e.waiting("q") == ["c2", "c0", "c1", "c3"]


# --- queue limits --------------------------------------------------------------------------------


def test_max_wait_overflows_keeping_original_enqueue_time() -> None:
    d = Drive(
        {
            "front": {"max_wait": 30, "overflow": "queue:back"},
            "back": {"max_wait": 60, "overflow": "voicemail"},
        },
        {},
    )
    d.at(0).arrive("early_front", "front")
    d.at(10).arrive("late_back", "back")
    acts = d.tick(30)
    assert (
        Overflow(call_id="early_front", from_queue="front", to_queue="back", reason="max_wait")
        in acts
    )
    assert d.e.waiting("back") == ["early_front", "late_back"]  # kept its enqueue time 0
    acts = d.tick(70)
    assert SendToVoicemail(call_id="late_back", queue="back", reason="max_wait") in acts
    acts = d.tick(90)
    assert SendToVoicemail(call_id="early_front", queue="back", reason="max_wait") in acts
    assert d.e.waiting("back") == []


def test_max_wait_while_ringing_leaves_when_the_offer_ends() -> None:
    d = Drive({"q": {"max_wait": 10, "ring_timeout": 20}}, {"a1": {"queues": ["q"]}})
    d.at(5).login("a1")
    d.at(6).arrive("c1", "q")
    assert d.tick(16) == []  # max wait reached while ringing a1: not pulled away mid-ring
    acts = d.tick(26)  # a1's ring times out -> the call leaves, no new offer
    assert acts == [
        CancelOffer(call_id="c1", agent_id="a1", reason="no_answer"),
        RejectCall(call_id="c1", queue="q", reason="max_wait"),
    ]
    assert d.e.call_state("c1") is None


def test_queue_full_and_no_agents_rules() -> None:
    d = Drive(
        {
            "small": {"max_len": 1},
            "refusing": {"when_no_agents": "refuse", "overflow": "voicemail"},
            "leaving": {"when_no_agents": "leave"},
            "joining": {},
        },
        {"a1": {"queues": ["leaving"]}},
    )
    d.at(1).arrive("s1", "small")
    assert d.at(2).arrive("s2", "small") == [
        RejectCall(call_id="s2", queue="small", reason="queue_full")
    ]
    assert d.arrive("r1", "refusing") == [
        SendToVoicemail(call_id="r1", queue="refusing", reason="no_agents")
    ]
    assert d.arrive("j1", "joining") == []
    assert d.e.waiting("joining") == ["j1"]
    assert d.arrive("l0", "leaving") == [
        RejectCall(call_id="l0", queue="leaving", reason="no_agents")
    ]
    d.at(3).login("a1")
    d.at(3)(AgentPaused, agent_id="a1", reason="x")
    d.at(4).arrive("l1", "leaving")
    assert d.e.waiting("leaving") == ["l1"]
    acts = d.at(5)(AgentLoggedOut, agent_id="a1")
    assert acts == [RejectCall(call_id="l1", queue="leaving", reason="no_agents")]
    assert d.arrive("dup", "joining") == []
    assert d.arrive("dup", "joining") == [
        RejectCall(call_id="dup", queue="joining", reason="duplicate_call")
    ]
    assert d.arrive("x", "nope") == [RejectCall(call_id="x", queue="nope", reason="unknown_queue")]


def test_announcements_position_and_ewt() -> None:
    d = Drive(
        {"q": {"announce_every": 30, "default_handle_seconds": 120}},
        {"a1": {"queues": ["q"]}, "a2": {"queues": ["q"]}},
    )
    d.login("a1", "a2")
    d.at(1)(AgentPaused, agent_id="a2", reason="x")
    d.at(1).arrive("c1", "q")  # offered at once: no announcement
    acts = d.at(2).arrive("c2", "q")
    # position 2 (c1 ringing ahead), one staffed agent: 2 * 120 s
    assert acts == [AnnouncePosition(call_id="c2", queue="q", position=2, ewt_seconds=240.0)]
    d.at(3)(OfferAnswered, call_id="c1", agent_id="a1")
    acts = d.tick(32)
    assert acts == [AnnouncePosition(call_id="c2", queue="q", position=1, ewt_seconds=120.0)]


def test_abandon_while_ringing_cancels_offers() -> None:
    d = Drive({"q": {"strategy": "ring-all"}}, {"a1": {"queues": ["q"]}, "a2": {"queues": ["q"]}})
    d.login("a1", "a2")
    d.at(1).arrive("c1", "q")
    acts = d.at(2)(CallAbandoned, call_id="c1")
    assert sorted((a.agent_id, a.reason) for a in of(acts, CancelOffer)) == [
        ("a1", "caller_abandoned"),
        ("a2", "caller_abandoned"),
    ]
    assert d.e.routable("a1") and d.e.routable("a2")
    assert d.e.call_state("c1") is None


def test_shell_timeout_and_engine_timeout_count_once() -> None:
    d = Drive({"q": {"ring_timeout": 5}}, {"a1": {"queues": ["q"], "no_answer_delay_seconds": 0}})
    d.login("a1")
    d.at(1).arrive("c1", "q")
    acts = d.at(3)(OfferTimedOut, call_id="c1", agent_id="a1")
    assert CancelOffer(call_id="c1", agent_id="a1", reason="no_answer") in acts
    assert d.e.snapshot()["agents"]["a1"]["misses"] == 1
    assert d.e.next_deadline() == 8.0  # the new offer's timeout, not the stale one at 6


# --- skills, widening, groups ---------------------------------------------------------------------


def test_skill_minimum_holds_until_widened() -> None:
    d = Drive(
        {"q": {"skills": {"fr": 7}, "widening": [{"after_seconds": 30, "relax_levels": 2}]}},
        {"novice": {"queues": ["q"], "skills": {"fr": 5}}},
    )
    d.login("novice")
    assert offers(d.at(0).arrive("c1", "q")) == []
    assert offers(d.tick(29.9)) == []
    assert d.e.next_deadline() == 30.0
    assert offers(d.tick(30)) == [("c1", "novice")]


def test_group_overflow_order() -> None:
    d = Drive(
        {"q": {"groups": ["tier1"], "widening": [{"after_seconds": 20, "add_groups": ["tier2"]}]}},
        {"t1": {"groups": ["tier1"]}, "t2": {"groups": ["tier2"]}},
    )
    d.login("t1", "t2")
    assert offers(d.at(0).arrive("c1", "q")) == [("c1", "t1")]
    d.at(1)(OfferAnswered, call_id="c1", agent_id="t1")
    assert offers(d.at(1).arrive("c2", "q")) == []  # tier2 not yet
    assert offers(d.tick(20.9)) == []
    assert offers(d.tick(21)) == [("c2", "t2")]  # 20 s after c2 joined


def test_widening_reaches_calls_already_ringing() -> None:
    """Wazo scenario 1: rules must relax while a call rings a qualified agent."""
    d = Drive(
        {
            "q": {
                "strategy": "ring-all",
                "ring_timeout": 60,
                "skills": {"de": 6},
                "widening": [{"after_seconds": 10, "relax_levels": 3}],
            }
        },
        {
            "expert": {"queues": ["q"], "skills": {"de": 9}},
            "junior": {"queues": ["q"], "skills": {"de": 3}},
        },
    )
    d.login("expert", "junior")
    assert offers(d.at(0).arrive("c1", "q")) == [("c1", "expert")]
    assert offers(d.tick(10)) == [("c1", "junior")]
    assert sorted(d.e.ringing("c1")) == ["expert", "junior"]


def test_ring_progressively_adds_batches() -> None:
    d = Drive(
        {
            "q": {
                "strategy": "ring-progressively",
                "strategy_params": {"batch": 1, "step_seconds": 5},
                "ring_timeout": 60,
            }
        },
        {f"a{i}": {"queues": {"q": {"position": i}}} for i in range(3)},
    )
    d.login("a2", "a0", "a1")
    assert offers(d.at(0).arrive("c1", "q")) == [("c1", "a0")]
    assert offers(d.tick(5)) == [("c1", "a1")]
    assert offers(d.tick(10)) == [("c1", "a2")]
    assert sorted(d.e.ringing("c1")) == ["a0", "a1", "a2"]


# --- live configuration ---------------------------------------------------------------------------


def test_config_change_keeps_waiting_calls_and_rolls_back() -> None:
    d = Drive({"q": {"skills": {"en": 8}}}, {"a1": {"queues": ["q"], "skills": {"en": 5}}})
    d.login("a1")
    d.at(1).arrive("c1", "q")
    d.at(2).arrive("c2", "q")
    assert d.e.version == 1
    relaxed = AcdConfig.from_dict(
        {
            "queues": {"q": {"skills": {"en": 5}, "max_wait": 30}},
            "agents": {"a1": {"queues": ["q"], "skills": {"en": 5}}},
        }
    )
    acts = d.at(40)(ConfigChanged, config=relaxed)
    assert d.e.version == 2
    # c1 is first and now qualifies; c2 waited 38 s > new max_wait 30 -> leaves now
    assert offers(acts) == [("c1", "a1")]
    assert RejectCall(call_id="c2", queue="q", reason="max_wait") in acts
    acts = d.at(41)(ConfigRolledBack, version=1)
    assert d.e.version == 3 and d.e.config.queues["q"].skills == {"en": 8}
    assert d.e.ringing("c1") == ["a1"]  # the ringing offer continues
    assert [v for v, _, _ in d.e.config_history()] == [1, 2, 3]


def test_removed_agent_is_logged_out_and_removed_queue_drains() -> None:
    d = Drive({"q": {}, "old": {}}, {"a1": {"queues": ["q"]}, "a2": {"queues": ["q"]}})
    d.login("a1")
    d.at(1).arrive("c1", "q")
    d.at(1).arrive("o1", "old")
    new = AcdConfig.from_dict({"queues": {"q": {}}, "agents": {"a2": {"queues": ["q"]}}})
    acts = d.at(2)(ConfigChanged, config=new)
    assert CancelOffer(call_id="c1", agent_id="a1", reason="agent_logged_out") in acts
    assert d.e.agent_state("a1")[0] is AgentStatus.LOGGED_OUT
    assert d.e.waiting("old") == ["o1"]
    assert d.arrive("o2", "old") == [RejectCall(call_id="o2", queue="old", reason="unknown_queue")]
    assert d.login("a1") == []  # no longer configured


def test_config_change_rejects_invalid_config_without_side_effects() -> None:
    d = Drive({"q": {}}, {})
    bad = AcdConfig(queues={"q": AcdConfig.from_dict({"queues": {"q": {}}}).queues["q"]}, agents={})
    bad = bad.with_queue(bad.queues["q"].__class__(name="q", strategy="nope"))
    with pytest.raises(ValueError, match="unknown strategy"):
        d(ConfigChanged, config=bad)
    assert d.e.version == 1


# --- explain / snapshot ---------------------------------------------------------------------------


def test_explain_lists_reasons_and_scores() -> None:
    d = Drive(
        {"q": {"strategy": "weighted", "skills": {"fr": 5}, "weights": {"skill": 2, "idle": 1}}},
        {
            "busy": {"queues": ["q"], "skills": {"fr": 9}},
            "weak": {"queues": ["q"], "skills": {"fr": 3}},
            "gone": {"queues": ["q"], "skills": {"fr": 9}},
            "lunch": {"queues": ["q"], "skills": {"fr": 9}},
        },
    )
    d.login("busy", "weak", "lunch")
    d.at(0)(AgentPaused, agent_id="lunch", reason="lunch")
    d.at(1).arrive("c0", "q")
    d.at(2)(OfferAnswered, call_id="c0", agent_id="busy")
    d.at(3).arrive("c1", "q")
    ex = d.e.explain("c1")
    reasons = {c.agent_id: c.reason for c in ex.considered}
    assert reasons["busy"] == "on a call"
    assert reasons["weak"] == "missing skill fr 3 < 5"
    assert reasons["gone"] == "logged out"
    assert reasons["lunch"] == "paused: lunch"
    assert ex.choice == [] and ex.target["required"] == {"fr": 5}
    d.at(4)(AgentReady, agent_id="lunch")
    assert d.e.ringing("c1") == ["lunch"]
    ex = d.e.explain("c1")
    assert ex.ringing == ["lunch"]
    assert "c1" in ex.text() and ex.to_dict()["queue"] == "q"


def test_snapshot_shape() -> None:
    d = Drive({"q": {}}, {"a1": {"queues": ["q"]}})
    d.at(1).arrive("c1", "q")
    snap = d.at(5).e.snapshot()
    assert snap["queues"]["q"]["waiting"] == 1
    assert snap["queues"]["q"]["calls"][0]["call_id"] == "c1"
    assert snap["agents"]["a1"]["status"] == "logged_out"
    assert snap["version"] == 1


def test_late_and_unknown_events_are_harmless() -> None:
    d = Drive({"q": {}}, {"a1": {"queues": ["q"]}})
    assert d(OfferTimedOut, call_id="zz", agent_id="a1") == []
    assert d(AgentReady, agent_id="ghost") == []
    assert d(CallEnded, call_id="zz") == []
    assert d(WrapUpDone, agent_id="a1") == []
    assert d.e.next_deadline() is None


@pytest.mark.parametrize("strategy", ["round-robin", "longest-idle", "linear", "fewest-calls"])
def test_inlined_decisions_equal_the_strategy(strategy: str) -> None:
    """The engine's inlined fast paths pick what ``strategy.choose`` picks."""
    rng = random.Random(11)
    agents = {
        f"a{i}": {
            "queues": {"q": {"penalty": rng.choice([0, 1, 2]), "position": rng.randrange(50)}},
            "skills": {"fr": rng.randint(1, 10)},
        }
        for i in range(40)
    }
    d = Drive({"q": {"strategy": strategy}}, agents)
    for i in rng.sample(range(40), 25):
        d.at(i).login(f"a{i}")
    q = d.e._queues["q"]
    keys = [k for k, _ in q.index.items] + [None, (0, -1, -1), (9, 99, 99)]
    for last in keys:
        for level in (0, 3, 6, 9):
            q.memory.last_key = last
            inline = d.e.decide("q", skills={"fr": level} if level else {})
            p = _Probe()
            p.required = {"fr": level} if level else {}
            chosen = q.strategy.choose(
                p, d.e._candidates(q, p), want=1, now=d.e.now, rng=random.Random(0),
                memory=RoutingMemory(last_key=last),
            )  # fmt: skip
            assert inline == [a.id for a, _ in chosen], (last, level)


def test_queued_messages_wait_for_an_agent_past_max_wait_and_with_nobody_logged_in() -> None:
    """A voicemail (or callback request) has nobody on the line: the queue's wait limit and
    its no-agents rule do not send it away; it keeps the caller's original arrival time."""
    d = Drive(
        {
            "q": {
                "max_wait": 30,
                "overflow": "voicemail",
                "when_no_agents": "refuse",
                "announce_every": 20,
            }
        },
        {"a1": {"queues": ["q"]}},
    )
    acts = d.at(100).arrive("vm1", "q", kind="voicemail", enqueued_at=40.0)
    assert not of(acts, SendToVoicemail) and not of(acts, RejectCall)
    acts = d.tick(1000)
    assert not of(acts, SendToVoicemail)
    assert not [a for a in acts if type(a).__name__ == "AnnouncePosition"]
    # A call behind it still gets the queue's rules.
    acts = d.at(1000).arrive("c1", "q")
    assert of(acts, SendToVoicemail) == [
        SendToVoicemail(call_id="c1", queue="q", reason="no_agents")
    ]
    acts = d.at(1001).login("a1")
    assert offers(acts) == [("vm1", "a1")]
