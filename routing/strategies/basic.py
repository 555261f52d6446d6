"""The classic strategies (Asterisk app_queue, FreeSWITCH mod_callcenter vocabulary)."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar

from routing.index import Entry
from routing.member import MemberInfo
from routing.skills import match_score, meets
from routing.strategy import (
    AgentLike,
    CallLike,
    Candidate,
    RoutingError,
    RoutingMemory,
    Scored,
    StrategyBase,
    qualified,
)


def _tier(candidates: Iterator[Candidate]) -> list[Candidate]:
    """The leading candidates sharing the lowest penalty (keys start with the penalty)."""
    out: list[Candidate] = []
    for c in candidates:
        if out and c[1].penalty != out[0][1].penalty:
            break
        out.append(c)
    return out


class _Ordered(StrategyBase):
    """Base: the index key fully defines the order; ``choose`` takes the first ``want``."""

    criterion: ClassVar[str] = "order"
    takes_first: ClassVar[bool] = True
    ring_one: ClassVar[bool] = True

    def __init__(self, params: Mapping[str, float], weights: Mapping[str, float]) -> None:
        self.params = dict(params)

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        return (member.penalty, member.position, agent.order)

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
        out: list[Candidate] = []
        for c in candidates:
            out.append(c)
            if want is not None and len(out) >= want:
                break
        return out

    def pick(
        self,
        call: CallLike,
        items: Sequence[Entry],
        members: Mapping[str, MemberInfo],
        agents: Mapping[str, AgentLike],
        *,
        step: int,
        now: float,
        rng: random.Random,
        memory: RoutingMemory,
    ) -> AgentLike | None:
        """The first qualified entry when ``takes_first`` (no list, no ``choose`` call); the
        reference otherwise (subclasses that compare candidates)."""
        if not self.takes_first:
            return super().pick(
                call, items, members, agents, step=step, now=now, rng=rng, memory=memory
            )
        for a, _ in qualified(call, items, members, agents, step):
            return a
        return None

    def _value(self, agent: AgentLike, member: MemberInfo, now: float) -> float:
        return -float(member.position)

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        ordered = sorted(candidates, key=lambda c: self.key(c[0], c[1]))
        return [
            Scored(
                agent_id=a.id,
                score=float(len(ordered) - i),
                criteria={"penalty": float(m.penalty), self.criterion: self._value(a, m, now)},
                reason=f"{self.name}: rank {i + 1} by penalty then {self.criterion}",
            )
            for i, (a, m) in enumerate(ordered)
        ]


class LongestIdle(_Ordered):
    """Lowest penalty, then the agent idle the longest (idle clock restarts when an agent becomes
    idle: after wrap-up, at login, after a pause)."""

    name = "longest-idle"
    criterion = "idle_seconds"

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        return (member.penalty, agent.idle_since, agent.order)

    def _value(self, agent: AgentLike, member: MemberInfo, now: float) -> float:
        return now - agent.idle_since


class FewestCalls(_Ordered):
    """Lowest penalty, then fewest answered calls (counted across all queues), then longest idle."""

    name = "fewest-calls"
    criterion = "calls_taken"

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        return (member.penalty, agent.calls_taken, agent.idle_since, agent.order)

    def _value(self, agent: AgentLike, member: MemberInfo, now: float) -> float:
        return float(agent.calls_taken)


class LeastTalkTime(_Ordered):
    """Lowest penalty, then least total talk time, then longest idle."""

    name = "least-talk-time"
    criterion = "talk_seconds"

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        return (member.penalty, agent.talk_time, agent.idle_since, agent.order)

    def _value(self, agent: AgentLike, member: MemberInfo, now: float) -> float:
        return agent.talk_time


class Linear(_Ordered):
    """Top-down: lowest penalty, then position; always starts from the top."""

    name = "linear"
    criterion = "position"


class RoundRobin(_Ordered):
    """Round robin with memory (Asterisk ``rrmemory``): position order, starting after the agent
    last offered a call from this queue, wrapping around; lower penalty tiers still come first."""

    takes_first = False

    name = "round-robin"
    criterion = "position"

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
        tier = _tier(candidates)
        if not tier:
            return []
        last = memory.last_key
        pick = tier[0]
        if last is not None:
            for c in tier:
                if self.key(c[0], c[1]) > last:
                    pick = c
                    break
        memory.last_key = self.key(pick[0], pick[1])
        return [pick]

    def pick(
        self,
        call: CallLike,
        items: Sequence[Entry],
        members: Mapping[str, MemberInfo],
        agents: Mapping[str, AgentLike],
        *,
        step: int,
        now: float,
        rng: random.Random,
        memory: RoutingMemory,
    ) -> AgentLike | None:
        """``choose`` by binary search instead of a scan of the tier: in the lowest penalty tier
        with a qualified member, the first one after ``memory.last_key`` in key order, else the
        tier's first (the index keys are this strategy's keys)."""
        required = call.required
        relax = call.relax
        n = len(items)

        def first_from(i: int, penalty: float | None) -> tuple[tuple[float, ...], AgentLike] | None:
            while i < n:
                key, aid = items[i]
                i += 1
                if penalty is not None and key[0] != penalty:
                    return None
                if members[aid].step > step:
                    continue
                a = agents[aid]
                if required and not meets(a.skills, required, relax):
                    continue
                return key, a
            return None

        found = first_from(0, None)
        last = memory.last_key
        if found is not None and last is not None:
            tier = found[0][0]
            start = bisect.bisect_right(items, (last, "\U0010ffff"))
            if start < n and items[start][0][0] < tier:
                start = bisect.bisect_left(items, ((tier,), ""))
            after = first_from(start, tier)
            if after is not None:
                found = after
        if found is None:
            return None
        memory.last_key = found[0]
        return found[1]


class RingAll(_Ordered):
    """Every qualified routable agent rings at once; the first answer wins, the others are
    cancelled, a late answer is refused. Agents becoming routable while it rings join in."""

    ring_one = False

    name = "ring-all"

    def fanout(self, offering_for: float) -> int | None:
        return None


class RingProgressively(_Ordered):
    """Ring ``batch`` agents in position order, then ``batch`` more every ``step_seconds`` while the
    earlier ones keep ringing (FreeSWITCH ``ring-progressively``); ends as ring-all."""

    ring_one = False

    name = "ring-progressively"

    def __init__(self, params: Mapping[str, float], weights: Mapping[str, float]) -> None:
        super().__init__(params, weights)
        unknown = set(params) - {"batch", "step_seconds"}
        if unknown:
            raise RoutingError(f"ring-progressively: unknown parameters {sorted(unknown)}")
        self.batch = max(1, int(params.get("batch", 1)))
        self.step = float(params.get("step_seconds", 10.0))
        if self.step <= 0:
            raise RoutingError("ring-progressively: step_seconds must be > 0")

    def fanout(self, offering_for: float) -> int | None:
        # a small epsilon: the engine evaluates this exactly at the step time
        return self.batch * (1 + math.floor(max(0.0, offering_for) / self.step + 1e-9))

    def next_fanout_change(self, offering_for: float) -> float | None:
        return (math.floor(max(0.0, offering_for) / self.step + 1e-9) + 1) * self.step


class RandomPick(_Ordered):
    """Uniformly random among the qualified agents of the lowest penalty tier."""

    takes_first = False

    name = "random"

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
        tier = _tier(candidates)
        return [tier[rng.randrange(len(tier))]] if tier else []

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        low = min((m.penalty for _, m in candidates), default=0)
        tier = [c for c in candidates if c[1].penalty == low]
        return [
            Scored(
                agent_id=a.id,
                score=1.0 / len(tier) if m.penalty == low else 0.0,
                criteria={"penalty": float(m.penalty)},
                reason="random: equal chance in the lowest tier"
                if m.penalty == low
                else "random: higher penalty tier",
            )
            for a, m in sorted(candidates, key=lambda c: self.key(c[0], c[1]))
        ]


class WeightedRandom(_Ordered):
    """Random with probability proportional to the membership ``weight``, lowest tier first."""

    takes_first = False

    name = "weighted-random"

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
        tier = _tier(candidates)
        if not tier:
            return []
        total = sum(m.weight for _, m in tier)
        if total <= 0:
            return [tier[rng.randrange(len(tier))]]
        x = rng.random() * total
        for c in tier:
            x -= c[1].weight
            if x < 0:
                return [c]
        return [tier[-1]]

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        low = min((m.penalty for _, m in candidates), default=0)
        total = sum(m.weight for _, m in candidates if m.penalty == low) or 1.0
        out = [
            Scored(
                agent_id=a.id,
                score=m.weight / total if m.penalty == low else 0.0,
                criteria={"penalty": float(m.penalty), "weight": m.weight},
                reason="weighted-random: probability weight / tier total",
            )
            for a, m in candidates
        ]
        return sorted(out, key=lambda s: -s.score)


class SkillsBestMatch(_Ordered):
    """The agent with the highest mean level on the call's required skills (lowest tier first);
    ties go to the longest idle.

    Speed: bound to its queue's skills (``bind_queue``), the index key is ``(penalty, -match,
    idle_since, order)``, so for a call whose required skills are the queue's (levels may differ:
    the match only reads which skills are required) the first qualified agent in key order is
    the answer (``pick``). Other calls fall back to scoring the lowest tier (``choose``, the
    reference)."""

    takes_first = False

    name = "skills-best-match"

    def __init__(self, params: Mapping[str, float], weights: Mapping[str, float]) -> None:
        super().__init__(params, weights)
        self._bound: dict[str, int] | None = None

    def bind_queue(self, skills: Mapping[str, int]) -> None:
        """The queue's required skills, which the index key scores against (engine-called)."""
        self._bound = dict(skills)

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        bound = self._bound
        match = match_score(agent.skills, bound) if bound is not None else 0.0
        return (member.penalty, -match, agent.idle_since, agent.order)

    def _score(self, call: CallLike, agent: AgentLike) -> float:
        return match_score(agent.skills, call.required)

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
        """The reference: score the whole lowest tier."""
        tier = _tier(candidates)
        if not tier:
            return []
        best = max(tier, key=lambda c: (self._score(call, c[0]), -c[0].idle_since, -c[0].order))
        return [best]

    def pick(
        self,
        call: CallLike,
        items: Sequence[Entry],
        members: Mapping[str, MemberInfo],
        agents: Mapping[str, AgentLike],
        *,
        step: int,
        now: float,
        rng: random.Random,
        memory: RoutingMemory,
    ) -> AgentLike | None:
        """``choose`` for one agent over the engine's index ``items`` (sorted by :meth:`key`),
        qualifying agents as the engine does (member step, skill minimums)."""
        required = call.required
        relax = call.relax
        bound = self._bound
        fast = bound is not None and required.keys() == bound.keys()
        tier: float | None = None
        best: AgentLike | None = None
        best_key: tuple[float, float, float] | None = None
        for key, aid in items:
            if tier is not None and key[0] != tier:
                break
            if members[aid].step > step:
                continue
            a = agents[aid]
            if required and not meets(a.skills, required, relax):
                continue
            if fast:
                return a
            tier = key[0]
            k = (match_score(a.skills, required), -a.idle_since, -a.order)
            if best_key is None or k > best_key:
                best, best_key = a, k
        return best

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        ordered = sorted(
            candidates,
            key=lambda c: (c[1].penalty, -self._score(call, c[0]), c[0].idle_since, c[0].order),
        )
        return [
            Scored(
                agent_id=a.id,
                score=self._score(call, a),
                criteria={
                    "penalty": float(m.penalty),
                    "skill": self._score(call, a),
                    "idle_seconds": now - a.idle_since,
                },
                reason=f"skills-best-match: rank {i + 1} by penalty, mean skill level, idle",
            )
            for i, (a, m) in enumerate(ordered)
        ]
