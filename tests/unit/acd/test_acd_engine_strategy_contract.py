"""A new strategy's author writes only the required members (``key``, ``fanout``, ``choose``,
``rank``) on :class:`routing.strategy.StrategyBase`; the engine routes with it through the
defaults (``pick`` is ``choose(want=1)``, no queue binding, constant fan-out)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence

from acd.actions import OfferCall
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import AgentLoggedIn, CallArrived, OfferTimedOut
from routing.member import MemberInfo
from routing.strategy import (
    AgentLike,
    CallLike,
    Candidate,
    RoutingMemory,
    Scored,
    StrategyBase,
    register_strategy,
)


class MostFrench(StrategyBase):
    """Rings the agent with the highest French level (ring-one, no ``pick`` of its own)."""

    name = "test-most-french"
    ring_one = True

    def __init__(self, params: Mapping[str, float], weights: Mapping[str, float]) -> None:
        pass

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        return (member.penalty, agent.order)

    def fanout(self, offering_for: float) -> int | None:
        return 1

    def choose(
        self,
        call: CallLike,
        candidates: Iterator[Candidate],
        *,
        want: int | None,
        now: float,
        rng: random.Random,
        memory: RoutingMemory,
    ) -> list[Candidate]:
        cands = list(candidates)
        return [max(cands, key=lambda c: c[0].skills.get("fr", 0))] if cands else []

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        return sorted(
            (Scored(agent_id=a.id, score=float(a.skills.get("fr", 0))) for a, _ in candidates),
            key=lambda s: -s.score,
        )


def test_a_strategy_with_only_the_required_members_routes_through_the_engine() -> None:
    register_strategy(MostFrench.name, MostFrench)
    cfg = AcdConfig.from_dict(
        {
            "queues": {"q": {"strategy": MostFrench.name, "ring_timeout": 10}},
            "agents": {
                "a1": {"queues": ["q"], "skills": {"fr": 2}},
                "a2": {"queues": ["q"], "skills": {"fr": 9}},
                "a3": {"queues": ["q"], "skills": {"fr": 5}},
            },
        }
    )
    e = AcdEngine(cfg, rng=random.Random(0), now=0.0)
    for a in ("a1", "a2", "a3"):
        e.handle(AgentLoggedIn(at=0.0, agent_id=a))
    assert e.decide("q") == ["a2"]
    acts = e.handle(CallArrived(at=1.0, call_id="c1", queue="q"))
    assert [x.agent_id for x in acts if isinstance(x, OfferCall)] == ["a2"]
    assert e.explain("c1").ringing == ["a2"]
    # ring-one: a no-answer moves the call to the next best, one agent at a time
    acts = e.handle(OfferTimedOut(at=5.0, call_id="c1", agent_id="a2"))
    assert [x.agent_id for x in acts if isinstance(x, OfferCall)] == ["a3"]
