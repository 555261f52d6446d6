"""Each strategy against a hand-worked example (agents as plain data, no engine)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from routing.member import MemberInfo
from routing.skills import match_score, meets, merge_requirements, shortfall
from routing.strategy import RoutingError, RoutingMemory, make_strategy, strategy_names


@dataclass
class Agent:
    id: str
    idle_since: float = 0.0
    calls_taken: int = 0
    talk_time: float = 0.0
    order: int = 0
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    occ: float = 0.0

    def occupancy(self, now: float) -> float:
        return self.occ


@dataclass
class Call:
    required: Mapping[str, int] = field(default_factory=dict)
    relax: int = 0


def member(
    penalty: int = 0, position: int = 0, weight: float = 1.0, group_rank: int = 0
) -> MemberInfo:
    return MemberInfo(
        penalty=penalty, position=position, weight=weight, group_rank=group_rank, step=0
    )


def pick(
    name: str,
    cands,
    call=None,
    *,
    memory=None,
    rng=None,
    params=None,
    weights=None,
    want=1,
    now=100.0,
):
    s = make_strategy(name, params=params, weights=weights)
    ordered = sorted(cands, key=lambda c: s.key(c[0], c[1]))
    chosen = s.choose(
        call or Call(),
        iter(ordered),
        want=want,
        now=now,
        rng=rng or random.Random(0),
        memory=memory or RoutingMemory(),
    )
    return [a.id for a, _ in chosen]


# agents: a (idle since 50, 3 calls, 100 s talk), b (idle since 10, 5 calls, 50 s), c (since 30, 1 call, 300 s)
A = Agent("a", idle_since=50, calls_taken=3, talk_time=100, order=0)
B = Agent("b", idle_since=10, calls_taken=5, talk_time=50, order=1)
C = Agent("c", idle_since=30, calls_taken=1, talk_time=300, order=2)
ABC = [(A, member(position=2)), (B, member(position=0)), (C, member(position=1))]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("longest-idle", ["b"]),
        ("fewest-calls", ["c"]),
        ("least-talk-time", ["b"]),
        ("linear", ["b"]),
        ("round-robin", ["b"]),
    ],
)
def test_ordered_strategies(name: str, expected: list[str]) -> None:
    assert pick(name, ABC) == expected


def test_penalty_tier_comes_first() -> None:
    cands = [(A, member(penalty=0)), (B, member(penalty=1))]
    for name in (
        "longest-idle",
        "fewest-calls",
        "random",
        "weighted-random",
        "skills-best-match",
        "weighted",
    ):
        assert pick(name, cands) == ["a"], name


def test_round_robin_remembers_across_decisions() -> None:
    mem = RoutingMemory()
    got = [pick("round-robin", ABC, memory=mem)[0] for _ in range(4)]
    assert got == ["b", "c", "a", "b"]  # positions 0, 1, 2, wrap


def test_ring_all_and_progressive_fanout() -> None:
    assert sorted(pick("ring-all", ABC, want=None)) == ["a", "b", "c"]
    prog = make_strategy("ring-progressively", params={"batch": 2, "step_seconds": 10})
    assert [prog.fanout(t) for t in (0, 9.9, 10, 25)] == [2, 2, 4, 6]
    assert prog.next_fanout_change(0) == 10 and prog.next_fanout_change(10) == 20
    with pytest.raises(RoutingError):
        make_strategy("ring-progressively", params={"delay": 1})


def test_random_is_uniform_and_seeded() -> None:
    rng = random.Random(5)
    counts = Counter(pick("random", ABC, rng=rng)[0] for _ in range(3000))
    assert set(counts) == {"a", "b", "c"}
    assert all(900 < n < 1100 for n in counts.values())
    assert pick("random", ABC, rng=random.Random(9)) == pick("random", ABC, rng=random.Random(9))


def test_weighted_random_follows_weights() -> None:
    cands = [(A, member(weight=1)), (B, member(weight=3))]
    rng = random.Random(2)
    counts = Counter(pick("weighted-random", cands, rng=rng)[0] for _ in range(4000))
    assert 0.70 < counts["b"] / 4000 < 0.80


def test_skills_best_match() -> None:
    strong = Agent("strong", idle_since=90, skills={"fr": 9, "en": 5})
    weak = Agent("weak", idle_since=0, skills={"fr": 5, "en": 5})
    call = Call(required={"fr": 5})
    assert pick("skills-best-match", [(weak, member()), (strong, member())], call) == ["strong"]


def test_weighted_combination_and_its_explanation() -> None:
    expert_busy = Agent("expert", idle_since=99, skills={"fr": 10}, occ=0.9)
    fresh = Agent("fresh", idle_since=0, skills={"fr": 5}, occ=0.1)
    call = Call(required={"fr": 5})
    cands = [(expert_busy, member()), (fresh, member())]
    # skill only: the expert; idle and occupancy fairness: the fresh agent
    assert pick("weighted", cands, call, weights={"skill": 1, "idle": 0}) == ["expert"]
    assert pick("weighted", cands, call, weights={"skill": 0, "idle": 1, "occupancy": 1}) == [
        "fresh"
    ]
    s = make_strategy("weighted", weights={"skill": 1, "idle": 1, "occupancy": 1})
    ranked = s.rank(call, cands, now=100.0)
    assert [r.agent_id for r in ranked] == ["fresh", "expert"]
    top = ranked[0]
    # skill 0.5, idle 100/(100+60), occupancy 0.9
    assert top.score == pytest.approx(0.5 + 100 / 160 + 0.9)
    assert set(top.criteria) >= {"skill", "idle", "occupancy", "group", "priority"}
    assert "weighted:" in top.reason
    # group preference and agent priority
    g = [(Agent("g0"), member(group_rank=0)), (Agent("g2", order=1), member(group_rank=2))]
    assert pick("weighted", g, weights={"skill": 0, "idle": 0, "group": 1}) == ["g0"]
    p = [(Agent("lo", priority=1), member()), (Agent("hi", priority=9, order=1), member())]
    assert pick("weighted", p, weights={"skill": 0, "idle": 0, "priority": 1}) == ["hi"]
    with pytest.raises(RoutingError):
        make_strategy("weighted", weights={"luck": 1})


def test_rank_agrees_with_choose_for_ordered_strategies() -> None:
    for name in ("longest-idle", "fewest-calls", "least-talk-time", "linear", "skills-best-match"):
        s = make_strategy(name)
        assert s.rank(Call(), ABC, now=100.0)[0].agent_id == pick(name, ABC)[0], name


def test_registry() -> None:
    names = strategy_names()
    for n in (
        "ring-all",
        "longest-idle",
        "fewest-calls",
        "least-talk-time",
        "round-robin",
        "linear",
        "random",
        "weighted-random",
        "ring-progressively",
        "skills-best-match",
        "weighted",
    ):
        assert n in names
    with pytest.raises(RoutingError, match="unknown strategy"):
        make_strategy("psychic")


def test_skill_helpers() -> None:
    assert merge_requirements({"fr": 5, "en": 3}, {"en": 6, "de": 2}) == {"fr": 5, "en": 6, "de": 2}
    assert meets({"fr": 5}, {"fr": 5})
    assert not meets({"fr": 4}, {"fr": 5})
    assert meets({"fr": 3}, {"fr": 5}, relax=2)
    assert meets({}, {"fr": 3}, relax=3)  # relaxed to 0: requirement dropped
    assert shortfall({"fr": 3}, {"fr": 5, "en": 1}) == ["fr 3 < 5", "en 0 < 1"]
    assert match_score({"fr": 10, "en": 5}, {"fr": 1, "en": 1}) == 0.75
    assert match_score({}, {}) == 1.0
