"""Engine invariants over random event sequences (hypothesis RuleBasedStateMachine).

Checked after every step:
* no agent holds two reservations/calls (``check_invariants`` plus an independent recount);
* no call is lost: every call that arrived is answered, abandoned, overflowed, sent to voicemail,
  rejected, or still known to the engine;
* priority and arrival order: an offered agent qualifies for no waiting call that is ahead of the
  offered one and still wants an agent; and no routable agent qualifies for a call that wants one;
* skill minimums hold (relaxed only by the widening steps reached);
* a withdrawn offer (no answer, reject, busy, pause) leaves the call's place unchanged;
* statistics folded live equal a rebuild from the log and a recount of the records.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd.actions import (
    BridgeCall,
    OfferCall,
    Overflow,
    RefuseAnswer,
    RejectCall,
    SendToVoicemail,
)
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
    ConfigChanged,
    ConfigRolledBack,
    OfferAnswered,
    OfferFailed,
    OfferRejected,
    OfferTimedOut,
    Tick,
    WrapUpDone,
)
from acd.model import AgentState, CallState
from acd.stats import StatsAccumulator
from acd.widening import relax_for, step_for
from routing.skills import meets

AGENTS = [f"a{i}" for i in range(6)]
QUEUES = ["q0", "q1", "q2"]
STRATEGIES = ["longest-idle", "ring-all", "round-robin", "weighted", "ring-progressively", "random"]


def make_config(strategy_q0: str = "longest-idle", widen: bool = True) -> AcdConfig:
    return AcdConfig.from_dict(
        {
            "queues": {
                "q0": {
                    "strategy": strategy_q0,
                    "skills": {"en": 5},
                    "ring_timeout": 7,
                    "wrap_up_seconds": 4,
                    "max_wait": 60,
                    "overflow": "queue:q1",
                    "announce_every": 20,
                    "widening": (
                        [{"after_seconds": 15, "relax_levels": 3, "add_groups": ["backup"]}]
                        if widen
                        else []
                    ),
                    "strategy_params": {"batch": 1, "step_seconds": 3}
                    if strategy_q0 == "ring-progressively"
                    else {},
                },
                "q1": {
                    "strategy": "ring-all",
                    "priority": 1,
                    "ring_timeout": 5,
                    "max_wait": 40,
                    "overflow": "voicemail",
                    "max_len": 4,
                },
                "q2": {"strategy": "fewest-calls", "when_no_agents": "leave", "groups": ["g2"]},
            },
            "agents": {
                "a0": {"skills": {"en": 7}, "queues": ["q0", "q1"], "max_misses": 2},
                "a1": {"skills": {"en": 4}, "queues": ["q0"], "groups": ["g2"]},
                "a2": {"skills": {"en": 9, "fr": 3}, "queues": ["q1"], "wrap_up_seconds": 2},
                "a3": {"groups": ["backup", "g2"], "skills": {"en": 2}},
                "a4": {"skills": {"en": 5}, "queues": {"q0": {"penalty": 1}, "q1": {}}},
                "a5": {"groups": ["g2"], "queues": ["q1"], "reject_delay_seconds": 3},
            },
        }
    )


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0
        self.cfg = make_config()
        self.engine = AcdEngine(self.cfg, rng=random.Random(1), now=0.0)
        self.stats = StatsAccumulator(interval_seconds=30)
        self.log: list = []
        self.n = 0
        self.arrived: set[str] = set()
        self.finished: dict[str, str] = {}
        self.connected: set[str] = set()
        self.versions = 1
        self.call_skills: dict[str, dict[str, int]] = {}

    # --- driving ---------------------------------------------------------------------------------

    def feed(self, event):
        before = {
            cid: self.engine.order_key(cid)
            for cid in self.arrived
            if self.engine.call_state(cid) is CallState.WAITING
        }
        wanting_before = {cid for cid in before if self.engine.wants_agent(cid)}
        actions = self.engine.handle(event)
        records = self.engine.drain_log()
        self.log.extend(records)
        for r in records:
            self.stats.apply(r)
        for a in actions:
            if isinstance(a, BridgeCall):
                self.connected.add(a.call_id)
            elif isinstance(a, SendToVoicemail):
                self.finished[a.call_id] = "voicemail"
            elif isinstance(a, RejectCall):
                if a.reason != "duplicate_call":
                    self.finished[a.call_id] = "rejected"
            elif isinstance(a, RefuseAnswer):
                # the refused agent did not get the call
                assert self.engine.agent_call(a.agent_id) != a.call_id
        self.check_offers(actions, wanting_before)
        # a call that is still waiting kept its place
        for cid, key in before.items():
            if self.engine.call_state(cid) is CallState.WAITING and not any(
                isinstance(a, Overflow) and a.call_id == cid for a in actions
            ):
                assert self.engine.order_key(cid) == key or isinstance(
                    event, ConfigChanged | ConfigRolledBack
                )
        return actions

    def check_offers(self, actions, were_waiting: set[str]) -> None:
        e = self.engine
        for a in actions:
            if not isinstance(a, OfferCall):
                continue
            if (
                e.agent_call(a.agent_id) != a.call_id
                or e.call_state(a.call_id) is not CallState.WAITING
            ):
                continue
            # skill minimums honoured, relaxed only by the widening reached
            qname = e.call_queue(a.call_id)
            assert qname is not None
            qcfg = e.config.queues[qname]
            waited = e.snapshot()["queues"][qname]["calls"]
            info = next(x for x in waited if x["call_id"] == a.call_id)
            step = step_for(qcfg, info["waited"] + 1e-6)  # timers fire at the exact step time
            assert e.qualifies(a.agent_id, a.call_id)
            acfg = e.config.agents[a.agent_id]
            call_req = dict(qcfg.skills)
            for skill, level in self.call_skills[a.call_id].items():
                call_req[skill] = max(level, call_req.get(skill, 0))
            assert meets(acfg.skills, call_req, relax_for(qcfg, step))
            # order: nothing ahead of this call, still wanting an agent, that this agent could take
            key = e.order_key(a.call_id)
            for q in QUEUES:
                for other in e.waiting(q):
                    # only calls that wanted an agent before and after this instant: a call that
                    # arrived with the event, or was ringing someone then, was not available
                    if other == a.call_id or other not in were_waiting or not e.wants_agent(other):
                        continue
                    if e.order_key(other) < key:
                        assert not e.qualifies(a.agent_id, other), (
                            f"{a.agent_id} offered {a.call_id} but {other} is ahead"
                        )

    def tick(self, dt: float) -> None:
        """Advance deadline by deadline, so each handle fires the timers of one instant."""
        target = self.t + dt
        for _ in range(1000):
            d = self.engine.next_deadline()
            if d is None or d > target:
                break
            self.t = max(self.t, d)
            self.feed(Tick(at=self.t))
        self.t = target
        self.feed(Tick(at=self.t))

    def offered_pairs(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for cid in sorted(self.arrived):
            for aid in self.engine.ringing(cid):
                out.append((cid, aid))
        return out

    # --- rules -----------------------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 2),
        fr=st.booleans(),
        dt=st.floats(0, 5),
    )
    def arrive(self, queue, priority, fr, dt):
        self.t += dt
        self.n += 1
        cid = f"c{self.n}"
        self.arrived.add(cid)
        self.call_skills[cid] = {"fr": 2} if fr else {}
        self.feed(
            CallArrived(
                at=self.t,
                call_id=cid,
                queue=queue,
                priority=priority,
                skills={"fr": 2} if fr else {},
            )
        )

    @rule(agent=st.sampled_from(AGENTS), paused=st.booleans())
    def login(self, agent, paused):
        self.feed(
            AgentLoggedIn(at=self.t, agent_id=agent, paused_reason="meeting" if paused else None)
        )

    @rule(agent=st.sampled_from(AGENTS))
    def logout(self, agent):
        self.feed(AgentLoggedOut(at=self.t, agent_id=agent))

    @rule(agent=st.sampled_from(AGENTS))
    def ready(self, agent):
        self.feed(AgentReady(at=self.t, agent_id=agent))

    @rule(agent=st.sampled_from(AGENTS))
    def pause(self, agent):
        self.feed(AgentPaused(at=self.t, agent_id=agent, reason="lunch"))

    @rule(data=st.data())
    def answer(self, data):
        pairs = self.offered_pairs()
        if not pairs:
            return
        cid, aid = data.draw(st.sampled_from(pairs))
        others = [x for x in self.engine.ringing(cid) if x != aid]
        self.feed(OfferAnswered(at=self.t, call_id=cid, agent_id=aid))
        assert self.engine.call_state(cid) is CallState.CONNECTED
        assert self.engine.agent_call(aid) == cid
        # ring-all: a second answer is refused and changes nothing
        for other in others:
            acts = self.feed(OfferAnswered(at=self.t, call_id=cid, agent_id=other))
            assert any(isinstance(a, RefuseAnswer) for a in acts)
            assert self.engine.agent_call(aid) == cid

    @rule(data=st.data(), how=st.sampled_from(["reject", "fail", "timeout"]))
    def decline(self, data, how):
        pairs = self.offered_pairs()
        if not pairs:
            return
        cid, aid = data.draw(st.sampled_from(pairs))
        q = self.engine.call_queue(cid)
        key = self.engine.order_key(cid)
        cls = {"reject": OfferRejected, "fail": OfferFailed, "timeout": OfferTimedOut}[how]
        acts = self.feed(cls(at=self.t, call_id=cid, agent_id=aid))
        moved = any(isinstance(a, Overflow) and a.call_id == cid for a in acts)
        if self.engine.call_state(cid) is CallState.WAITING and not moved:
            assert self.engine.call_queue(cid) == q
            assert self.engine.order_key(cid) == key  # RONA keeps the call's place

    @rule(data=st.data())
    def abandon(self, data):
        live = sorted(c for c in self.arrived if self.engine.call_state(c) is CallState.WAITING)
        if not live:
            return
        cid = data.draw(st.sampled_from(live))
        self.feed(CallAbandoned(at=self.t, call_id=cid))
        self.finished[cid] = "abandoned"

    @rule(data=st.data(), dt=st.floats(0, 3))
    def hang_up(self, data, dt):
        live = sorted(c for c in self.arrived if self.engine.call_state(c) is CallState.CONNECTED)
        if not live:
            return
        cid = data.draw(st.sampled_from(live))
        self.t += dt
        self.feed(CallEnded(at=self.t, call_id=cid))
        self.finished[cid] = "ended"

    @rule(agent=st.sampled_from(AGENTS))
    def wrap_up_done(self, agent):
        self.feed(WrapUpDone(at=self.t, agent_id=agent))

    @rule(dt=st.floats(0.1, 20))
    def time_passes(self, dt):
        self.tick(dt)

    @rule()
    def to_next_deadline(self):
        d = self.engine.next_deadline()
        if d is not None:
            self.t = max(self.t, d)
            self.feed(Tick(at=self.t))

    @precondition(lambda self: self.versions < 6)
    @rule(strategy=st.sampled_from(STRATEGIES), widen=st.booleans())
    def reconfigure(self, strategy, widen):
        self.versions += 1
        self.feed(ConfigChanged(at=self.t, config=make_config(strategy, widen)))
        assert self.engine.version == self.versions

    @precondition(lambda self: 1 < self.versions < 6)
    @rule()
    def rollback(self):
        self.versions += 1
        self.feed(ConfigRolledBack(at=self.t, version=1))
        assert self.engine.config.queues["q0"].strategy == "longest-idle"

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def consistent(self):
        self.engine.check_invariants()

    @invariant()
    def one_call_per_agent(self):
        holders: Counter[str] = Counter()
        for cid in self.arrived:
            for aid in self.engine.ringing(cid):
                holders[aid] += 1
        for agent in AGENTS:
            c = self.engine.agent_call(agent)
            state = self.engine.agent_state(agent)[1]
            if state is AgentState.ON_CALL:
                holders[agent] += 1
                assert c is not None and self.engine.call_state(c) is CallState.CONNECTED
        assert all(n <= 1 for n in holders.values()), holders

    @invariant()
    def no_call_lost(self):
        for cid in self.arrived:
            st_ = self.engine.call_state(cid)
            assert st_ is not None or cid in self.finished, f"{cid} vanished"

    @invariant()
    def maximal(self):
        """No routable agent qualifies for a call that wants an agent."""
        e = self.engine
        for q in QUEUES:
            for cid in e.waiting(q):
                if not e.wants_agent(cid):
                    continue
                for aid in AGENTS:
                    if e.routable(aid) and e.config.agents[aid] is not None:
                        assert not e.qualifies(aid, cid), f"{aid} idle while {cid} waits"

    @invariant()
    def stats_are_a_fold(self):
        rebuilt = StatsAccumulator.from_records(self.log, interval_seconds=30)
        assert rebuilt.summary(now=self.t) == self.stats.summary(now=self.t)
        kinds = Counter(r.kind for r in self.log)
        total = self.stats.total
        assert total.offered == kinds["call_queued"]
        assert total.answered == kinds["call_answered"] == len(self.connected)
        assert total.abandoned == kinds["call_abandoned"]
        assert total.overflowed == kinds["call_overflowed"]
        assert total.voicemail == kinds["call_voicemail"]
        assert total.refused == kinds["call_refused"]
        waiting = sum(len(self.engine.waiting(q)) for q in QUEUES)
        assert total.offered == total.finished + waiting


TestAcdMachine = AcdMachine.TestCase
TestAcdMachine.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
