"""The weighted combination: a score summing normalised criteria times supervisor weights.

Criteria, each normalised to 0..1 (higher is better):

* ``skill``: mean level over the call's required skills / 10 (1.0 if none required);
* ``idle``: ``idle / (idle + idle_scale)`` with ``idle_scale`` = 60 s (parameter ``idle_scale``);
* ``occupancy``: ``1 - occupancy`` since login (fairness: the least loaded agent scores highest);
* ``group``: ``1 / (1 + group_rank)`` (direct members and the first group score 1);
* ``priority``: agent priority / 10.

Default weights are ``skill=1, idle=1`` and 0 for the others. The candidate with the highest
score in the lowest penalty tier wins; ties go to the longest idle.

Speed (``pick``, over the engine's index): bound to its queue's skills (``bind_queue``), the key
is ``(penalty, -static, idle_since, order)`` where *static* is the skill, group and priority part
of the score, constant while the agent is routable. So a tier is a run of buckets of equal static
score, highest first, each in longest-idle order; the idle term only falls along a bucket and the
occupancy term is at most ``w_occupancy``. The search scores qualified agents exactly, skips the
rest of a bucket once its bound (static + idle term of the next agent + ``w_occupancy``) is below
the best score, and stops once a bucket's static + ``w_idle`` + ``w_occupancy`` is. A call whose
required skills are not the queue's (the skill term then differs from the key's) scores the whole
tier, as ``choose`` (the reference) does.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Mapping, Sequence

from routing.index import Entry
from routing.member import MemberInfo
from routing.skills import match_score, meets
from routing.strategies.basic import _Ordered, _tier
from routing.strategy import AgentLike, CallLike, Candidate, RoutingError, RoutingMemory, Scored
from routing.weights import WEIGHT_KEYS

DEFAULT_WEIGHTS = {"skill": 1.0, "idle": 1.0, "occupancy": 0.0, "group": 0.0, "priority": 0.0}


class Weighted(_Ordered):
    """See the module docstring."""

    name = "weighted"
    takes_first = False

    def __init__(self, params: Mapping[str, float], weights: Mapping[str, float]) -> None:
        super().__init__(params, weights)
        unknown = set(weights) - set(WEIGHT_KEYS)
        if unknown:
            raise RoutingError(f"weighted: unknown criteria {sorted(unknown)}")
        self.weights = {**DEFAULT_WEIGHTS, **weights} if weights else dict(DEFAULT_WEIGHTS)
        self.idle_scale = float(params.get("idle_scale", 60.0))
        w = self.weights
        self._w_skill = float(w["skill"])
        self._w_idle = float(w["idle"])
        self._w_occ = float(w["occupancy"])
        self._w_group = float(w["group"])
        self._w_priority = float(w["priority"])
        self._occ_cap = max(0.0, self._w_occ)
        if self.idle_scale > 0:
            idle_cap = max(0.0, self._w_idle)  # idle / (idle + scale) < 1
        else:
            idle_cap = self._w_idle  # the idle term is the constant w_idle
        self._cap = idle_cap + self._occ_cap
        """Upper bound on the idle and occupancy terms together."""
        self._eps = 1e-9 * (1.0 + sum(abs(float(v)) for v in w.values()))
        """Rounding margin between the key's static sum and :meth:`score`'s."""
        self._bound: dict[str, int] | None = None
        self._min_idle_since = math.inf
        """A lower bound on the idle-since of every agent in the index: the least one :meth:`key`
        saw, refreshed from the index now and then by :meth:`pick` (so the bound on the idle term,
        ``w_idle * g(now - min)``, stays tight as agents come and go)."""
        self._picks = -1  # refresh at the first pick

    def bind_queue(self, skills: Mapping[str, int]) -> None:
        """The queue's required skills, which the index key scores against (engine-called)."""
        self._bound = dict(skills)

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        """``(penalty, -static, idle_since, order)``: the static part of the score (skill against
        the bound queue skills, group, priority) highest first, then longest idle."""
        bound = self._bound
        if agent.idle_since < self._min_idle_since:
            self._min_idle_since = agent.idle_since
        static = 0.0
        if self._w_skill and bound is not None:
            static += self._w_skill * match_score(agent.skills, bound)
        if self._w_group:
            static += self._w_group / (1 + member.group_rank)
        if self._w_priority:
            static += self._w_priority * min(10, max(0, agent.priority)) / 10.0
        return (member.penalty, -static, agent.idle_since, agent.order)

    def criteria(
        self, call: CallLike, agent: AgentLike, member: MemberInfo, now: float
    ) -> dict[str, float]:
        idle = max(0.0, now - agent.idle_since)
        return {
            "skill": match_score(agent.skills, call.required),
            "idle": idle / (idle + self.idle_scale) if self.idle_scale > 0 else 1.0,
            "occupancy": 1.0 - min(1.0, max(0.0, agent.occupancy(now))),
            "group": 1.0 / (1 + member.group_rank),
            "priority": min(10, max(0, agent.priority)) / 10.0,
        }

    def score(self, call: CallLike, agent: AgentLike, member: MemberInfo, now: float) -> float:
        """The same sum as over :meth:`criteria`, without building dicts (the hot path)."""
        total = 0.0
        w = self._w_skill
        if w:
            total += w * match_score(agent.skills, call.required)
        w = self._w_idle
        if w:
            idle = max(0.0, now - agent.idle_since)
            scale = self.idle_scale
            total += w * (idle / (idle + scale) if scale > 0 else 1.0)
        w = self._w_occ
        if w:
            total += w * (1.0 - min(1.0, max(0.0, agent.occupancy(now))))
        w = self._w_group
        if w:
            total += w / (1 + member.group_rank)
        w = self._w_priority
        if w:
            total += w * min(10, max(0, agent.priority)) / 10.0
        return total

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
        best = max(
            tier,
            key=lambda c: (self.score(call, c[0], c[1], now), -c[0].idle_since, -c[0].order),
        )
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
        qualifying agents as the engine does, with the bounded search of the module docstring.
        Candidates are compared on the exact :meth:`score`; bounds only skip agents whose score
        is certainly lower than the best found (by more than a rounding margin)."""
        required = call.required
        relax = call.relax
        bound = self._bound
        # the static part of the key is valid when the skill term does not depend on the call
        fast = not self._w_skill or (bound is not None and required.keys() == bound.keys())
        w_idle = self._w_idle
        scale = self.idle_scale
        slide = w_idle > 0 and scale > 0  # idle term falls along a bucket (idle_since ascending)
        n = len(items)
        cap = self._cap  # bound on idle + occupancy terms for anyone
        occ_cap = self._occ_cap
        if slide and fast:
            # amortised O(1): one pass over the index every n picks
            if self._picks > n or self._picks < 0:
                self._picks = 0
                self._min_idle_since = min((k[2] for k, _ in items), default=math.inf)
            self._picks += 1
            idle = max(0.0, now - self._min_idle_since)
            cap = w_idle * (idle / (idle + scale)) + occ_cap
        eps = self._eps
        score = self.score
        tier: float | None = None
        best: AgentLike | None = None
        best_score = -math.inf
        best_tie: tuple[float, float] = (-math.inf, -math.inf)
        i = 0
        while i < n:
            key, aid = items[i]
            if tier is not None:
                if key[0] != tier:
                    break
                if fast:
                    static = -key[1]
                    if slide:
                        idle = now - key[2]
                        if idle < 0.0:
                            idle = 0.0
                        ub = static + w_idle * (idle / (idle + scale)) + occ_cap
                    else:
                        ub = static + cap
                    if ub + eps < best_score:
                        # nobody left in this bucket can win; nor in later ones (lower static)
                        # once even the largest idle and occupancy terms cannot lift them
                        if static + cap + eps < best_score:
                            break
                        i = bisect.bisect_right(items, ((tier, key[1], math.inf),), i)
                        continue
            i += 1
            m = members[aid]
            if m.step > step:
                continue
            a = agents[aid]
            if required and not meets(a.skills, required, relax):
                continue
            tier = key[0]
            sc = score(call, a, m, now)
            if sc > best_score:
                best, best_score, best_tie = a, sc, (-a.idle_since, -a.order)
            elif sc == best_score:
                tie = (-a.idle_since, -a.order)
                if tie > best_tie:
                    best, best_tie = a, tie
        return best

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        out = []
        for a, m in candidates:
            crit = self.criteria(call, a, m, now)
            s = sum(self.weights[k] * v for k, v in crit.items())
            parts = ", ".join(f"{k} {self.weights[k]:g}x{v:.2f}" for k, v in crit.items())
            out.append(
                (
                    (m.penalty, -s, a.idle_since, a.order),
                    Scored(
                        agent_id=a.id,
                        score=s,
                        criteria={"penalty": float(m.penalty), **crit},
                        reason=f"weighted: {parts}",
                    ),
                )
            )
        out.sort(key=lambda t: t[0])
        return [s for _, s in out]
