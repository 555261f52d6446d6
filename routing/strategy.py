"""Routing strategies: the protocol, the registry and the shapes they exchange with the engine.

A strategy decides *which* routable, qualified agents ring for a call. The engine does everything
else (who is routable, skill minimums, widening, reservations), so a strategy is a small, pure
object built from the queue's ``strategy_params`` and ``weights``::

    register_strategy("longest-idle", LongestIdle)      # aioquic's congestion-control registry
    strat = make_strategy("longest-idle", params={}, weights={})

Speed: the engine keeps, per queue, the routable members in a list sorted by ``strat.key(agent,
member)``. ``key`` must not change while an agent stays routable (it may use idle-since, call
counts and talk time, which only change while the agent is busy). ``choose`` receives the
qualified candidates lazily in that order and stops as early as it can: an *ordered* strategy takes
the first one, so a decision costs O(log n) plus the unqualified agents skipped, not a scan of all
agents. Penalty tiers: every key starts with the member's penalty, and strategies that compare
candidates (random, weighted, best-match) only consider the lowest tier present.

Scoring strategies (skills-best-match, weighted) may also offer two optional hooks the engine
uses when present: ``bind_queue(skills)`` (the queue's required skills, so ``key`` can hold the
static part of the score) and ``pick(call, items, members, agents, *, step, now)``, a ring-one
decision searching the index ``items`` directly (bounded by the key, no full-tier scan). ``pick``
must return exactly the agent ``choose`` would; ``choose`` stays the reference.

Explanations: ``rank`` scores a full candidate list with reasons (``Scored``) for
``AcdEngine.explain``; it must agree with ``choose`` for deterministic strategies.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from routing.widening import MemberInfo


class RoutingError(Exception):
    """Unknown strategy or bad parameters."""


class AgentLike(Protocol):
    """What strategies read about an agent (the engine's runtime agent satisfies it)."""

    @property
    def id(self) -> str: ...
    @property
    def skills(self) -> Mapping[str, int]: ...
    @property
    def priority(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def idle_since(self) -> float: ...
    @property
    def calls_taken(self) -> int: ...
    @property
    def talk_time(self) -> float: ...
    def occupancy(self, now: float) -> float: ...


class CallLike(Protocol):
    """What strategies read about a call."""

    @property
    def required(self) -> Mapping[str, int]: ...
    @property
    def relax(self) -> int: ...


Candidate = tuple[AgentLike, MemberInfo]


@dataclass(slots=True)
class RoutingMemory:
    """Per-queue memory a strategy may keep across decisions (round robin's last position)."""

    last_key: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    """One candidate's score (higher is better) with the criteria behind it."""

    agent_id: str
    score: float
    criteria: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""


class Strategy(Protocol):
    """A routing strategy; see the module docstring."""

    name: ClassVar[str]

    def key(self, agent: AgentLike, member: MemberInfo) -> tuple[float, ...]:
        """Index order (lower first); constant while the agent is routable."""
        ...

    def fanout(self, offering_for: float) -> int | None:
        """How many agents ring at once after ``offering_for`` seconds of offering; None = all."""
        ...

    def next_fanout_change(self, offering_for: float) -> float | None:
        """Seconds into offering at which ``fanout`` grows next (ring-progressively), or None."""
        ...

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
        """Pick up to ``want`` agents (None = all) from qualified candidates in key order."""
        ...

    def rank(self, call: CallLike, candidates: Sequence[Candidate], *, now: float) -> list[Scored]:
        """Score every candidate, best first, for explanations."""
        ...


StrategyFactory = Callable[[Mapping[str, float], Mapping[str, float]], Strategy]

_REGISTRY: dict[str, StrategyFactory] = {}


def register_strategy(name: str, factory: StrategyFactory) -> None:
    """Register a strategy under ``name`` (replaces an earlier one of the same name)."""
    _REGISTRY[name] = factory


def strategy_names() -> list[str]:
    """Registered names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def make_strategy(
    name: str,
    *,
    params: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> Strategy:
    """Build the strategy registered as ``name``; raises :class:`RoutingError` if unknown."""
    _load_builtins()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise RoutingError(
            f"unknown strategy {name!r}, expected one of {sorted(_REGISTRY)}"
        ) from None
    return factory(params or {}, weights or {})


def _load_builtins() -> None:
    if "longest-idle" not in _REGISTRY:
        import routing.strategies  # noqa: F401  (registers the built-ins)
