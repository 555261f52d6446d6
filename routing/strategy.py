"""Routing strategies: the protocol, the registry and the shapes they exchange with the engine.

A strategy decides *which* routable, qualified agents ring for a call. The engine does everything
else (who is routable, skill minimums, widening, reservations), so a strategy is a small, pure
object built from the queue's ``strategy_params`` and ``weights``::

    register_strategy("longest-idle", LongestIdle)      # aioquic's congestion-control registry
    strat = make_strategy("longest-idle", params={}, weights={})

Writing a strategy: subclass :class:`StrategyBase` (it supplies every optional member) and
implement ``key``, ``fanout``, ``choose`` and ``rank``. The engine reads nothing else, and calls
every member directly (no ``getattr``): the whole contract is :class:`Strategy`.

Required members

* ``name``: the registry name (shown in logs and explanations).
* ``key(agent, member)``: the order of the engine's per-queue index of routable members (lower
  first). It must not change while an agent stays routable (it may use idle-since, call counts and
  talk time, which only change while the agent is busy) and must start with ``member.penalty``.
* ``fanout(offering_for)``: how many agents ring at once after ``offering_for`` seconds of
  offering; None means all.
* ``choose(call, candidates, *, want, now, rng, memory)``: **the reference decision**. It
  receives the qualified candidates lazily in key order and returns up to ``want`` of them; it may
  stop early (an ordered strategy takes the first). Penalty tiers: strategies that compare
  candidates (random, weighted, best-match) only consider the lowest tier present.
* ``rank(call, candidates, *, now)``: every candidate scored with reasons (``Scored``), best
  first, for ``AcdEngine.explain``; for a deterministic strategy its first entry is ``choose``'s.

Optional members (defaults in :class:`StrategyBase`)

* ``next_fanout_change(offering_for)``: seconds into offering at which ``fanout`` grows next
  (ring-progressively); default None (never).
* ``ring_one`` (default False): ``fanout`` is always 1. The engine then decides with ``pick``,
  never with ``choose``, and keeps no fan-out timer.
* ``takes_first`` (default False; only with ``ring_one``): the decision is the first qualified
  candidate in key order, so the engine may find it itself, without calling ``pick``.
* ``bind_queue(skills)``: the queue's required skills, called when the strategy is attached to a
  queue (at start and at each configuration change) so ``key`` may hold a static part of a score;
  default: ignored.
* ``pick(call, items, members, agents, *, step, now, rng, memory)``: the ring-one decision over
  the engine's index ``items`` (``(key, agent_id)`` sorted by ``key``; every entry routable),
  qualifying agents as the engine does (:func:`qualified`: member ``step`` and skill minimums).
  Default: ``choose(..., want=1)`` over :func:`qualified`, which is always right; override it only
  to search the index faster (skills-best-match, weighted: a bounded search; round robin: a binary
  search from ``memory.last_key``).

The rule that ties them together: for every call and index, ``pick`` returns exactly the agent
``choose(want=1)`` returns (drawing the same numbers from ``rng`` and leaving ``memory`` the same),
a ``takes_first`` strategy's choice is the first qualified candidate, and ``rank`` agrees with
``choose`` for deterministic strategies. ``tests/unit/routing/test_routing_fast_pick.py`` checks
this for every registered strategy on random inputs.

Speed: the engine keeps, per queue, the routable members in a list sorted by ``key``, so a
decision costs O(log n) plus the unqualified agents skipped, not a scan of all agents.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from routing.index import Entry
from routing.member import MemberInfo
from routing.skills import meets

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # pragma: no cover - only mypy's own package; without it nothing is compiled

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[type], type]:  # type: ignore[misc]
        """No-op stand-in: the decorator only means something to the mypyc compiler."""
        return lambda cls: cls


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
    """A routing strategy; see the module docstring for the contract."""

    name: ClassVar[str]

    @property
    def ring_one(self) -> bool:
        """``fanout`` is always 1: the engine decides with :meth:`pick`."""
        ...

    @property
    def takes_first(self) -> bool:
        """(With ``ring_one``) the choice is the first qualified candidate in key order."""
        ...

    def bind_queue(self, skills: Mapping[str, int]) -> None:
        """The queue's required skills (called when attached to a queue)."""
        ...

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
        """The ring-one decision over the index ``items``: what ``choose(want=1)`` returns."""
        ...

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


def qualified(
    call: CallLike,
    items: Iterable[Entry],
    members: Mapping[str, MemberInfo],
    agents: Mapping[str, AgentLike],
    step: int,
) -> Iterator[Candidate]:
    """The candidates the engine passes to ``choose``: the index entries whose member may serve a
    call at widening ``step`` and whose skills meet the call's minimums (relaxed by
    ``call.relax``), in index order."""
    required = call.required
    relax = call.relax
    for _, aid in items:
        m = members[aid]
        if m.step > step:
            continue
        a = agents[aid]
        if required and not meets(a.skills, required, relax):
            continue
        yield a, m


@mypyc_attr(allow_interpreted_subclasses=True)
class StrategyBase:
    """Defaults for the optional members of :class:`Strategy` (see the module docstring):
    fan-out never changes, not ring-one, no queue binding, ``pick`` is ``choose(want=1)``.

    Compiled with the routing core, it still admits subclasses written in plain Python (a
    strategy registered by a user); the built-in strategies do not, so subclass this one."""

    name: ClassVar[str] = ""
    ring_one: ClassVar[bool] = False
    """``fanout`` is always 1: the engine decides with :meth:`pick`."""
    takes_first: ClassVar[bool] = False
    """(With ``ring_one``) the choice is the first qualified candidate in key order; the engine may
    find it without calling :meth:`pick`."""

    def next_fanout_change(self, offering_for: float) -> float | None:
        """Never: the fan-out is constant."""
        return None

    def bind_queue(self, skills: Mapping[str, int]) -> None:
        """Ignored: the key does not depend on the queue."""

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
        """The reference decision (subclasses implement it)."""
        raise NotImplementedError

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
        """``choose(want=1)`` over the qualified index entries: correct for any strategy; a
        subclass overrides it only to search ``items`` faster."""
        chosen = self.choose(
            call,
            qualified(call, items, members, agents, step),
            want=1,
            now=now,
            rng=rng,
            memory=memory,
        )
        return chosen[0][0] if chosen else None


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
