"""The strategy contract (``routing.strategy``): for every registered strategy, ``pick`` (the
engine's ring-one decision over its index: bounded searches for skills-best-match and weighted, a
binary search for round robin, the first qualified entry for ordered strategies) returns exactly
the agent the reference ``choose(want=1)`` returns, draws the same random numbers and leaves the
same memory, and an ordered (``takes_first``) strategy's choice is the first qualified candidate,
over random populations and states."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.actions import OfferCall
from acd.config import AcdConfig
from acd.engine import AcdEngine, _Probe
from acd.events import (
    AgentLoggedIn,
    AgentPaused,
    AgentReady,
    CallArrived,
    CallEnded,
    OfferAnswered,
    Tick,
)
from routing.index import Entry
from routing.member import MemberInfo
from routing.skills import meets, merge_requirements
from routing.strategy import RoutingMemory, Strategy, make_strategy, strategy_names

SKILLS = ("fr", "en", "de", "es")
IDLE = (0.0, 5.0, 5.5, 10.0, 40.0, 99.0, 100.0, 100.0, 130.0)  # repeats make ties
FAST = ("skills-best-match", "weighted")


@dataclass
class Agent:
    id: str
    idle_since: float
    order: int
    priority: int
    skills: Mapping[str, int]
    occ: float
    calls_taken: int = 0
    talk_time: float = 0.0

    def occupancy(self, now: float) -> float:
        return self.occ


@dataclass
class Call:
    required: Mapping[str, int] = field(default_factory=dict)
    relax: int = 0


levels = st.dictionaries(st.sampled_from(SKILLS), st.integers(0, 12), max_size=4)
weight = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]), st.floats(0.0, 5.0))


@st.composite
def agents(draw: Any, n: int) -> list[tuple[Agent, MemberInfo]]:
    out = []
    for i in range(n):
        a = Agent(
            id=f"a{i}",
            idle_since=draw(st.one_of(st.sampled_from(IDLE), st.floats(0.0, 150.0))),
            order=i,
            priority=draw(st.integers(-1, 12)),
            skills=draw(levels),
            occ=draw(
                st.one_of(st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 1.2, -0.1]), st.floats(0, 1))
            ),
        )
        m = MemberInfo(
            penalty=draw(st.sampled_from([0, 0, 0, 1, 2])),
            position=i,
            weight=1.0,
            group_rank=draw(st.integers(0, 3)),
            step=draw(st.sampled_from([0, 0, 0, 1, 2])),
        )
        out.append((a, m))
    return out


def build(name: str, draw: Any) -> tuple[Strategy, dict[str, int]]:
    weights = {k: draw(weight) for k in ("skill", "idle", "occupancy", "group", "priority")}
    params = {"idle_scale": draw(st.sampled_from([60.0, 60.0, 1.0, 0.0]))}
    if name != "weighted":
        params, weights = {}, {}
    s = make_strategy(name, params=params, weights=weights)
    queue_skills = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 6), max_size=3))
    s.bind_queue(queue_skills)
    return s, queue_skills


Outcome = tuple[str | None, Any, float]
"""The chosen agent id, the memory left behind and the next number the generator draws."""


def qualified_ids(call: Call, items: list[Entry], pop: dict[str, Any], step: int) -> list[str]:
    return [
        aid
        for _, aid in items
        if pop[aid][1].step <= step and meets(pop[aid][0].skills, call.required, call.relax)
    ]


def reference(
    s: Strategy,
    call: Call,
    items: list[Entry],
    pop: dict[str, Any],
    step: int,
    now: float,
    last: Any = None,
) -> Outcome:
    """The reference: qualified candidates in key order into ``choose(want=1)``."""
    cands = [pop[aid] for aid in qualified_ids(call, items, pop, step)]
    rng, memory = random.Random(5), RoutingMemory(last_key=last)
    got = s.choose(call, iter(cands), want=1, now=now, rng=rng, memory=memory)
    return (got[0][0].id if got else None), memory.last_key, rng.random()


def fast(
    s: Strategy,
    call: Call,
    items: list[Entry],
    pop: dict[str, Any],
    step: int,
    now: float,
    last: Any = None,
) -> Outcome:
    members = {aid: m for aid, (_, m) in pop.items()}
    agents = {aid: a for aid, (a, _) in pop.items()}
    rng, memory = random.Random(5), RoutingMemory(last_key=last)
    a = s.pick(call, items, members, agents, step=step, now=now, rng=rng, memory=memory)
    return (a.id if a is not None else None), memory.last_key, rng.random()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_pick_equals_reference_over_random_populations_and_states(data: Any) -> None:
    draw = data.draw
    name = draw(st.sampled_from(strategy_names()))
    s, queue_skills = build(name, draw)
    pop_list = draw(agents(draw(st.integers(0, 30))))
    pop = {a.id: (a, m) for a, m in pop_list}
    # the index: routable agents keyed by this strategy (a random subset is routable)
    routable = [aid for aid in pop if draw(st.booleans()) or len(pop) < 4]
    items = sorted((s.key(*pop[aid]), aid) for aid in routable)
    now = draw(st.sampled_from([100.0, 120.0, 1000.0]))
    for _round in range(draw(st.integers(1, 6))):
        # calls: the queue's skills (same set, levels raised) or a different set
        extra = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(0, 9), max_size=2))
        if draw(st.booleans()):
            extra = {k: v for k, v in extra.items() if k in queue_skills}
        call = Call(required=merge_requirements(queue_skills, extra), relax=draw(st.integers(0, 3)))
        step = draw(st.integers(0, 2))
        last = draw(st.sampled_from([None] + [k for k, _ in items]))  # round robin's memory
        got = fast(s, call, items, pop, step, now, last)
        assert got == reference(s, call, items, pop, step, now, last)
        if s.ring_one and s.takes_first:  # the engine may take the first qualified itself
            assert got[0] == next(iter(qualified_ids(call, items, pop, step)), None)
        # time passes; an agent takes a call and comes back idle (re-keyed), another leaves
        now += draw(st.sampled_from([0.0, 1.0, 30.0, 500.0]))
        if items and draw(st.booleans()):
            _key, aid = items.pop(draw(st.integers(0, len(items) - 1)))
            a, m = pop[aid]
            if draw(st.booleans()):
                a.idle_since = now
                a.occ = draw(st.floats(0.0, 1.0))
                items.append((s.key(a, m), aid))
                items.sort()


def test_pick_on_a_bound_tier_with_a_foreign_skill_falls_back_to_scoring() -> None:
    """A call requiring a skill the queue does not: the key's skill term does not apply."""
    for name in FAST:
        s = make_strategy(name, weights={"skill": 1, "idle": 0} if name == "weighted" else {})
        s.bind_queue({"fr": 3})
        good_fr = Agent("fr", 0.0, 0, 0, {"fr": 10, "de": 3}, 0.0)
        good_de = Agent("de", 0.0, 1, 0, {"fr": 3, "de": 10}, 0.0)
        m = MemberInfo(penalty=0, position=0, weight=1.0, group_rank=0, step=0)
        pop = {"fr": (good_fr, m), "de": (good_de, m)}
        items = sorted((s.key(*pop[aid]), aid) for aid in pop)
        assert items[0][1] == "fr"
        call = Call(required={"fr": 3, "de": 1})
        assert fast(s, call, items, pop, 0, 10.0)[0] == "fr"  # 13/20 each: tie -> lower order
        call = Call(required={"de": 5, "fr": 3})
        got = fast(s, call, items, pop, 0, 10.0)
        assert got == reference(s, call, items, pop, 0, 10.0)


# --- through the engine ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.sampled_from(FAST))
def test_engine_decisions_and_explanations_equal_the_reference(seed: int, name: str) -> None:
    """Random arrivals, answers, hang-ups and pauses: every ``decide`` and every offer equals
    ``choose`` over the engine's candidates, and ``explain`` names the agent that was rung."""
    rng = random.Random(seed)
    queues: dict[str, Any] = {}
    for qn in ("q0", "q1", "q2"):
        queues[qn] = {
            "strategy": name,
            "skills": {s: rng.randint(1, 4) for s in rng.sample(SKILLS, rng.randint(0, 2))},
            "weights": {"skill": rng.choice([0, 1, 2]), "idle": rng.choice([0, 1]),
                        "occupancy": rng.choice([0, 1]), "group": rng.choice([0, 1]),
                        "priority": rng.choice([0, 1])} if name == "weighted" else {},
            "groups": ["g1", "g2"],
        }  # fmt: skip
    agents = {
        f"a{i}": {
            "queues": {
                q: {"penalty": rng.choice([0, 0, 1])} for q in rng.sample(sorted(queues), 2)
            },
            "groups": rng.sample(["g1", "g2", "g3"], rng.randint(0, 2)),
            "skills": {s: rng.randint(1, 10) for s in rng.sample(SKILLS, rng.randint(1, 4))},
            "priority": rng.randint(0, 10),
        }
        for i in range(30)
    }
    e = AcdEngine(AcdConfig.from_dict({"queues": queues, "agents": agents}), rng=rng, now=0.0)
    t = 0.0
    for i in range(30):
        t += rng.choice([0.0, 0.5, 3.0])
        e.handle(AgentLoggedIn(at=t, agent_id=f"a{i}"))
    calls: list[str] = []
    for n in range(120):
        t += rng.choice([0.0, 0.1, 2.0, 20.0])
        e.handle(Tick(at=t))
        for qname in queues:
            q = e._queues[qname]
            p = _Probe()
            own = {s: rng.randint(0, 9) for s in rng.sample(SKILLS, rng.randint(0, 2))}
            p.required = merge_requirements(q.cfg.skills, own)
            want = q.strategy.choose(
                p, e._candidates(q, p), want=1, now=e.now, rng=random.Random(0),
                memory=RoutingMemory(),
            )  # fmt: skip
            decided = e.decide(qname, skills=own)
            assert decided == [a.id for a, _ in want]
            if name == "skills-best-match":  # the explanation's ranking puts it first
                ranked = q.strategy.rank(p, list(e._candidates(q, p)), now=e.now)
                assert decided == [r.agent_id for r in ranked[:1]]
        r = rng.random()
        if r < 0.4:
            cid = f"c{n}"
            qname = rng.choice(sorted(queues))
            q = e._queues[qname]
            skills = {s: rng.randint(1, 6) for s in rng.sample(SKILLS, rng.randint(0, 1))}
            p = _Probe()
            p.required = merge_requirements(q.cfg.skills, skills)
            want = q.strategy.choose(
                p, e._candidates(q, p), want=1, now=t, rng=random.Random(0),
                memory=RoutingMemory(),
            )  # fmt: skip
            acts = e.handle(CallArrived(at=t, call_id=cid, queue=qname, skills=skills))
            offered = [x.agent_id for x in acts if isinstance(x, OfferCall)]
            if offered:
                assert offered == [a.id for a, _ in want]
            calls.append(cid)
        elif r < 0.7 and calls:
            cid = rng.choice(calls)
            ringing = e.ringing(cid)
            qname = e.call_queue(cid) or ""
            if not ringing and cid in e.waiting(qname):
                c = e._calls[cid]
                q = e._queues[qname]
                got = q.strategy.pick(
                    c, q.index.items, q.members, e._agents, step=c.step, now=e.now,
                    rng=random.Random(0), memory=RoutingMemory(),
                )  # fmt: skip
                assert e.explain(cid).choice == ([got.id] if got is not None else [])
            if ringing:
                assert e.explain(cid).ringing == ringing
                e.handle(OfferAnswered(at=t, call_id=cid, agent_id=ringing[0]))
            else:
                e.handle(CallEnded(at=t, call_id=cid))
                calls.remove(cid)
        elif r < 0.85:
            aid = f"a{rng.randrange(30)}"
            e.handle(AgentPaused(at=t, agent_id=aid, reason="x"))
        else:
            aid = f"a{rng.randrange(30)}"
            e.handle(AgentReady(at=t, agent_id=aid))
        e.check_invariants()
