"""The ACD engine: a pure, deterministic state machine over calls, queues and agents.

Usage (the same in the live service and in the simulator)::

    engine = AcdEngine(config, rng=random.Random(7), now=0.0)
    actions = engine.handle(AgentLoggedIn(at=0.0, agent_id=AgentId("a1")))
    actions = engine.handle(CallArrived(at=1.0, call_id=CallId("c1"), queue="sales"))
    # -> [OfferCall(call_id="c1", agent_id="a1", queue="sales", ring_timeout=20.0)]
    engine.next_deadline()            # earliest engine timer, or None
    engine.handle(Tick(at=t))         # fires timers due at or before t
    engine.drain_log()                # append-only LogRecords since the last drain
    engine.explain(CallId("c1"))      # routing.explain.Explanation
    engine.snapshot()                 # plain dict for the wallboard
    engine.queue_status("sales")      # acd.model.QueueStatus (typed: waiting, routable, ewt ...)
    engine.agent_status("a1")         # acd.model.AgentStatusView (state word, reason, since ...)
    engine.wrap_up_ends("a1")         # when the agent's wrap-up ends (WrapUpExtended moves it)

``handle`` first fires every timer due at or before the event's ``at`` (instant by instant: all
timers of one instant fire, then the engine settles, so an agent freed at ``t`` sees every call
that changed at ``t``), then applies the event. It never reads a clock and never raises for late or unknown
events (they return no action, or ``RefuseAnswer`` for a late answer).

Rules the engine guarantees (property-tested in ``tests/property/test_acd_props.py``):

* **Single assignment.** :meth:`_reserve` is the only place that takes a reservation; an agent
  holds at most one (ringing or on a call) across all queues. Ring-all rings many agents for one
  call; each of them is reserved for that call. The first ``OfferAnswered`` wins, the others get
  ``CancelOffer(reason="answered_elsewhere")``, a late answer gets ``RefuseAnswer``.
* **No lost call.** A call ends answered, abandoned, overflowed, sent to voicemail or rejected,
  or it is still waiting.
* **Order.** Calls are ordered by effective priority (call + queue priority, higher first), then
  original enqueue time, then arrival sequence. An agent becoming routable takes the first call in
  that order, *across all its queues*, that it qualifies for (global, priority-aware fairness).
  A call arriving while agents are routable is offered by its queue's strategy; those agents had no
  qualifying call waiting, so this never overtakes an older call. After every ``handle`` no
  routable agent qualifies for a call that still wants an agent.
* **RONA keeps the place.** An offer withdrawn for no answer, reject, busy, pause or logout leaves
  the call where it was in its queue. After ``max_misses`` no-answers in a row the agent is paused
  with reason ``"rona"`` (``PauseAgent``); ``AgentReady`` resets the count.
* **Wrap-up is agent-wide.** An agent in wrap-up is not routable for any queue.
* **Maximum wait.** At ``max_wait`` a call with no ringing offer leaves for the queue's
  ``overflow`` target (another queue, keeping its original enqueue time and priority, or voicemail)
  or is rejected; a call that is ringing an agent at that moment leaves when the offer ends
  unanswered (no new offers are made for it).

**Live configuration** (``ConfigChanged`` / ``ConfigRolledBack``): each publication gets the next
version number; :meth:`config_history` keeps every version for rollback. Calls already waiting keep
their place (original enqueue time, arrival sequence) and the time they have waited; from the
moment of the change the new queue settings apply to them: strategy and weights, required skills,
widening (their step is recomputed from the time already waited), priority, and maximum wait
(counted from when they joined; if already exceeded they leave now). Offers ringing at the change
continue. A queue removed from the configuration drains: it admits no new calls, its waiting calls
keep their old settings. An agent removed from the configuration is logged out (a ringing offer is
withdrawn; a call in progress continues).

**EWT** for announcements: ``position * aht / max(1, staffed)`` where ``aht`` is the queue's
exponential moving average (alpha 0.2) of talk + wrap-up seconds, starting at
``default_handle_seconds``, and ``staffed`` counts members whose status is available (idle or busy).

Performance: per queue the routable members live in a :class:`routing.index.SortedIndex` in the
strategy's order; waiting calls in a sorted list; timers in a heap with lazy deletion (generation
counters), so an event costs O(log n) plus the agents or calls skipped as unqualified. Ordered
strategies (longest-idle, fewest-calls, least-talk-time, linear) stop at the first qualified agent;
round-robin, random, weighted-random, skills-best-match and weighted look at the lowest penalty
tier of routable members (see ``python -m bench.routing``). ``record_log=False`` skips the log
records (for simulations that do not need them).

Explanations: :meth:`explain` works for a waiting call (who it rings or would ring, every member
with its reason or score); :meth:`decide` is a dry run for a hypothetical call.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any, get_args

from acd.actions import (
    Action,
    AnnouncePosition,
    BridgeCall,
    CancelOffer,
    CancelReason,
    OfferCall,
    Overflow,
    PauseAgent,
    RefuseAnswer,
    RejectCall,
    RejectReason,
    SendToVoicemail,
)
from acd.config import AcdConfig, AgentConfig, QueueConfig
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
    Event,
    OfferAnswered,
    OfferFailed,
    OfferRejected,
    OfferTimedOut,
    Tick,
    WrapUpDone,
    WrapUpExtended,
)
from acd.model import (
    AgentId,
    AgentState,
    AgentStatus,
    AgentStatusView,
    CallId,
    CallKind,
    CallState,
    LogKind,
    LogRecord,
    QueueStatus,
)
from acd.widening import describe_step, members, next_step_at, relax_for, step_for
from routing.explain import Considered, Explanation
from routing.index import SortedIndex
from routing.member import MemberInfo
from routing.skills import meets, merge_requirements, shortfall
from routing.strategy import Candidate, RoutingMemory, Strategy, make_strategy, qualified

_AVAILABLE = AgentStatus.AVAILABLE
_LOGGED_OUT = AgentStatus.LOGGED_OUT
_PAUSED = AgentStatus.PAUSED
_IDLE = AgentState.IDLE
_RESERVED = AgentState.RESERVED
_ON_CALL = AgentState.ON_CALL
_WRAP_UP = AgentState.WRAP_UP
_WAITING = CallState.WAITING
_CONNECTED = CallState.CONNECTED

# timer kinds
_K_RING = 0
_K_AGENT = 1
_K_MAX_WAIT = 2
_K_WIDEN = 3
_K_ANNOUNCE = 4
_K_FANOUT = 5

_STATUS_LABEL = {_AVAILABLE: "idle", _PAUSED: "paused", _LOGGED_OUT: "logged_out"}
_STATE_LABEL = {_RESERVED: "reserved", _ON_CALL: "on_call", _WRAP_UP: "wrap_up", _IDLE: "idle"}
_AHT_ALPHA = 0.2
_new = tuple.__new__
"""Builds a ``NamedTuple`` action from its fields in order without the keyword-binding
``__new__`` (a third of the cost; used on the per-call hot path only)."""
_FOREVER = float("inf")
_MIN_RETRY = 1.0
"""Floor for reject and busy delays: a phone that fails at once must not be re-offered the same
call in the same instant, forever (a live-lock inside one ``handle``)."""

Entry = tuple[int, float, int, str]
"""A waiting call's sort key: (-effective priority, enqueued_at, arrival seq, call id)."""


class _Agent:
    """Runtime state of one agent (satisfies ``routing.strategy.AgentLike``)."""

    __slots__ = (
        "busy_since",
        "busy_total",
        "call",
        "calls_taken",
        "cfg",
        "id",
        "idle_since",
        "keys",
        "label",
        "label_reason",
        "logged_total",
        "login_at",
        "memberships",
        "misses",
        "not_before",
        "offer_gen",
        "order",
        "priority",
        "reason",
        "since",
        "skills",
        "state",
        "status",
        "talk_time",
        "timer_gen",
        "wrap_until",
    )

    def __init__(self, cfg: AgentConfig, order: int, now: float) -> None:
        self.id: str = cfg.id
        self.cfg = cfg
        self.order = order
        self.skills: Mapping[str, int] = cfg.skills
        self.priority = cfg.priority
        self.status = _LOGGED_OUT
        self.state = _IDLE
        self.reason: str | None = None
        self.since = now
        """When the agent's ``AgentStatusView.state`` word (or pause reason) last changed."""
        self.idle_since = now
        self.calls_taken = 0
        self.talk_time = 0.0
        self.busy_total = 0.0
        self.busy_since = 0.0
        self.logged_total = 0.0
        self.login_at = now
        self.not_before = 0.0
        self.misses = 0
        self.call: _Call | None = None
        self.offer_gen = 0
        self.timer_gen = 0
        self.keys: dict[str, tuple[float, ...]] = {}
        self.memberships: list[tuple[str, MemberInfo]] = []
        self.label = "logged_out"
        self.label_reason: str | None = None
        self.wrap_until = 0.0
        """When the current wrap-up ends (meaningful in wrap-up only)."""

    def occupancy(self, now: float) -> float:
        """Busy (reserved, on call, wrap-up) share of logged-in time."""
        busy = self.busy_total + (now - self.busy_since if self.state is not _IDLE else 0.0)
        logged = self.logged_total + (
            now - self.login_at if self.status is not _LOGGED_OUT else 0.0
        )
        return busy / logged if logged > 0 else 0.0


class _Call:
    """Runtime state of one call (satisfies ``routing.strategy.CallLike``)."""

    __slots__ = (
        "agent",
        "answered_at",
        "arrived_at",
        "base_priority",
        "call_skills",
        "caller",
        "data",
        "enqueued_at",
        "entry",
        "expired",
        "first_offer_at",
        "gen",
        "hops",
        "id",
        "joined_at",
        "kind",
        "offers",
        "q",
        "relax",
        "required",
        "seq",
        "state",
        "step",
    )

    joined_at: float
    entry: Entry
    required: Mapping[str, int]
    relax: int
    step: int
    offers: dict[str, float]
    first_offer_at: float | None
    expired: bool

    def __init__(self, ev: CallArrived, seq: int) -> None:
        # one unpacking instead of nine field lookups (the field order is checked at import)
        at, self.id, _, self.base_priority, self.call_skills, self.caller, self.data, enq, kind = ev
        self.kind: CallKind = kind
        self.arrived_at = at
        self.enqueued_at = enq if enq is not None else at
        self.seq = seq
        self.state = _WAITING
        self.q: _Queue | None = None
        # joined_at, entry, required, relax, step, offers, first_offer_at and expired are set by
        # _join, which every admitted call goes through (a refused one is dropped at once)
        self.gen = 0
        self.hops = 0
        self.agent: _Agent | None = None
        self.answered_at = 0.0


assert CallArrived._fields == (
    "at", "call_id", "queue", "priority", "skills", "caller", "data", "enqueued_at", "kind",
), "_Call.__init__ unpacks CallArrived by position"  # fmt: skip
assert all(ev._fields[0] == "at" for ev in get_args(Event)), "handle() reads event[0] as at"


class _Probe:
    """A hypothetical call for :meth:`AcdEngine.decide`."""

    __slots__ = ("relax", "required", "step")

    def __init__(self) -> None:
        self.required: Mapping[str, int] = {}
        self.relax = 0
        self.step = 0


class _Queue:
    """Runtime state of one queue."""

    __slots__ = (
        "aht",
        "cfg",
        "draining",
        "index",
        "logged_in",
        "members",
        "memory",
        "name",
        "ring_one",
        "staffed",
        "strategy",
        "takes_first",
        "waiting",
    )

    def __init__(self, cfg: QueueConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.strategy: Strategy = make_strategy(
            cfg.strategy, params=cfg.strategy_params, weights=cfg.weights
        )
        self.memory = RoutingMemory()
        self.takes_first = False
        self.ring_one = False
        self.set_strategy(self.strategy)
        self.members: dict[str, MemberInfo] = {}
        self.index = SortedIndex()
        self.waiting: list[Entry] = []
        self.staffed = 0
        self.logged_in = 0
        self.aht = cfg.default_handle_seconds
        self.draining = False

    def set_strategy(self, strategy: Strategy) -> None:
        """Attach ``strategy`` (see ``routing.strategy`` for the members the engine calls); its
        flags are copied into slots because the engine reads them on every decision."""
        self.strategy = strategy
        self.ring_one = strategy.ring_one
        self.takes_first = strategy.ring_one and strategy.takes_first
        strategy.bind_queue(self.cfg.skills)


class AcdEngine:
    """See the module docstring."""

    def __init__(
        self, config: AcdConfig, *, rng: random.Random, now: float, record_log: bool = True
    ) -> None:
        self._rng = rng
        self._dry_rng = random.Random(0)  # dry runs (decide, explain) never touch ``rng``
        self._now = now
        self._record = record_log
        self._log: list[LogRecord] = []
        self._log_seq = 0
        self._seq = 0
        self._timers: list[tuple[float, int, int, Any, int]] = []
        self._actions: list[Action] = []
        self._pulls: list[_Agent] = []
        self._pushes: list[_Call] = []
        self._announce: list[_Call] = []
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _Agent] = {}
        self._calls: dict[str, _Call] = {}
        self._history: list[tuple[int, float, AcdConfig]] = []
        self._config = config
        self._configuring = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            CallArrived: self._on_call_arrived,
            CallAbandoned: self._on_call_abandoned,
            CallEnded: self._on_call_ended,
            AgentLoggedIn: self._on_logged_in,
            AgentLoggedOut: self._on_logged_out,
            AgentReady: self._on_ready,
            AgentPaused: self._on_paused,
            OfferAnswered: self._on_answered,
            OfferRejected: self._on_rejected,
            OfferTimedOut: self._on_timed_out,
            OfferFailed: self._on_failed,
            WrapUpDone: self._on_wrap_up_done,
            WrapUpExtended: self._on_wrap_up_extended,
            ConfigChanged: self._on_config_changed,
            ConfigRolledBack: self._on_config_rolled_back,
            Tick: self._on_tick,
        }
        config.validate()
        self._apply_config(config)

    # --- public API ------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The engine's current time (the latest event or timer handled)."""
        return self._now

    @property
    def config(self) -> AcdConfig:
        return self._config

    @property
    def version(self) -> int:
        """Current configuration version (1 for the initial one)."""
        return self._history[-1][0]

    def config_history(self) -> list[tuple[int, float, AcdConfig]]:
        """Every published ``(version, at, config)``, oldest first."""
        return list(self._history)

    def handle(self, event: Event) -> list[Action]:
        """Apply ``event`` (after firing due timers) and return the actions to carry out."""
        actions: list[Action] = []
        self._actions = actions
        at = event[0]  # ``at``: every event's first field (cheaper than the named lookup)
        timers = self._timers
        if timers and timers[0][0] <= at:
            self._run_timers(at)
        if at > self._now:
            self._now = at
        self._handlers[type(event)](event)
        self._settle()
        if timers and timers[0][0] <= self._now:
            self._run_timers(self._now)  # timers that fell due during this event (e.g. max wait)
        return actions

    def next_deadline(self) -> float | None:
        """The earliest pending engine timer (ring timeout, wrap-up, delay, widening, max wait,
        announcement, progressive ring), or None."""
        timers = self._timers
        while timers:
            at, _, kind, obj, gen = timers[0]
            if kind == _K_RING:  # the common dead entry: an answered offer's ring timeout
                if obj.offer_gen == gen and obj.state is _RESERVED:
                    return at
            elif self._timer_live(kind, obj, gen):
                return at
            heapq.heappop(timers)
        return None

    def drain_log(self) -> list[LogRecord]:
        """Log records appended since the last call (empty when ``record_log`` is False)."""
        out = self._log
        self._log = []
        return out

    def agent_state(self, agent_id: str) -> tuple[AgentStatus, AgentState, str | None]:
        """``(status, state, pause reason)`` of an agent; KeyError if unknown."""
        a = self._agents[agent_id]
        return a.status, a.state, a.reason

    def agent_call(self, agent_id: str) -> CallId | None:
        """The call the agent is reserved for or talking to."""
        a = self._agents[agent_id]
        return CallId(a.call.id) if a.call is not None else None

    def wrap_up_ends(self, agent_id: str) -> float | None:
        """When the agent's wrap-up ends (its timer, extensions included), None when the agent
        is not in wrap-up; KeyError if unknown."""
        a = self._agents[agent_id]
        return a.wrap_until if a.state is _WRAP_UP else None

    def call_state(self, call_id: str) -> CallState | None:
        """None once the call has left the ACD."""
        c = self._calls.get(call_id)
        return c.state if c is not None else None

    def call_queue(self, call_id: str) -> str | None:
        c = self._calls.get(call_id)
        return c.q.name if c is not None and c.q is not None else None

    def ringing(self, call_id: str) -> list[AgentId]:
        """Agents currently rung for the call."""
        c = self._calls.get(call_id)
        return [AgentId(a) for a in c.offers] if c is not None else []

    def waiting(self, queue: str) -> list[CallId]:
        """Waiting calls of ``queue`` in service order (ringing ones included: they keep their
        place)."""
        q = self._queues[queue]
        return [CallId(e[3]) for e in q.waiting]

    def routable(self, agent_id: str) -> bool:
        """Available, idle and past any reject/busy/no-answer delay."""
        return self._is_routable(self._agents[agent_id])

    def qualifies(self, agent_id: str, call_id: str) -> bool:
        """Whether the agent may serve the waiting call at its current widening step (ignoring
        whether the agent is routable)."""
        a = self._agents[agent_id]
        c = self._calls[call_id]
        if c.q is None:
            return False
        m = c.q.members.get(a.id)
        return m is not None and m.step <= c.step and meets(a.skills, c.required, c.relax)

    def wants_agent(self, call_id: str) -> bool:
        """Whether the call would take another agent now (waiting, not expired, fewer agents ringing
        than its strategy's fan-out)."""
        c = self._calls.get(call_id)
        return c is not None and self._wants(c)

    def order_key(self, call_id: str) -> Entry:
        """The call's service-order key (lower is served first)."""
        return self._calls[call_id].entry

    def decide(
        self, queue: str, *, skills: Mapping[str, int] | None = None, waited: float = 0.0
    ) -> list[AgentId]:
        """Dry run: the agents the queue's strategy would ring now for a new call with ``skills``
        that has waited ``waited`` seconds. Changes nothing (random strategies draw from a
        private generator, round robin from a copy of its memory)."""
        q = self._queues[queue]
        cfg = q.cfg
        probe = _Probe()
        probe.required = merge_requirements(cfg.skills, skills) if skills else cfg.skills
        if cfg.widening:
            probe.step = step_for(cfg, waited)
            probe.relax = relax_for(cfg, probe.step)
        if q.ring_one and q.takes_first:
            first = self._first_qualified(q, probe)
            return [AgentId(first.id)] if first is not None else []
        if q.ring_one:
            a = q.strategy.pick(
                probe,
                q.index.items,
                q.members,
                self._agents,
                step=probe.step,
                now=self._now,
                rng=self._dry_rng,
                memory=RoutingMemory(last_key=q.memory.last_key),
            )
            return [AgentId(a.id)] if a is not None else []
        chosen = q.strategy.choose(
            probe,
            self._candidates(q, probe),
            want=q.strategy.fanout(0.0),
            now=self._now,
            rng=self._dry_rng,
            memory=RoutingMemory(last_key=q.memory.last_key),
        )
        return [AgentId(a.id) for a, _ in chosen]

    def explain(self, call_id: str) -> Explanation:
        """Why the waiting call rings whom it rings, or who it would be offered to now: every
        member of its queue, eligible or not (with the reason), eligible ones scored by the
        strategy. KeyError if the call is not waiting."""
        c = self._calls[call_id]
        q = c.q
        if c.state is not _WAITING or q is None:
            raise KeyError(call_id)
        considered: list[Considered] = []
        cands: list[Candidate] = []
        for aid, m in q.members.items():
            a = self._agents[aid]
            why = self._ineligible_reason(a, m, c)
            if why is None:
                cands.append((a, m))
            else:
                considered.append(Considered(agent_id=aid, eligible=False, reason=why))
        ranked = q.strategy.rank(c, cands, now=self._now)
        scored = [
            Considered(
                agent_id=s.agent_id, eligible=True, reason=s.reason, score=s.score,
                criteria=s.criteria,
            )
            for s in ranked
        ]  # fmt: skip
        choice: list[str] = []
        if self._wants(c):
            want = self._want_count(c)
            choice = [
                a.id
                for a, _ in q.strategy.choose(
                    c,
                    self._candidates(q, c),
                    want=want,
                    now=self._now,
                    rng=self._dry_rng,
                    memory=RoutingMemory(last_key=q.memory.last_key),
                )
            ]
        return Explanation(
            call_id=c.id,
            queue=q.name,
            strategy=q.cfg.strategy,
            at=self._now,
            target={"required": dict(c.required), **describe_step(q.cfg, c.step)},
            ringing=list(c.offers),
            choice=choice,
            considered=scored + considered,
        )

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the wallboard: queues (waiting calls in order), agents."""
        now = self._now
        queues: dict[str, Any] = {}
        for name, q in self._queues.items():
            calls: list[dict[str, Any]] = []
            for pos, e in enumerate(q.waiting, 1):
                c = self._calls[e[3]]
                calls.append(
                    {
                        "call_id": c.id,
                        "position": pos,
                        "priority": -e[0],
                        "waited": now - c.joined_at,
                        "since_enqueued": now - c.enqueued_at,
                        "ringing": list(c.offers),
                        "kind": c.kind,
                        "caller": c.caller,
                        "step": c.step,
                    }
                )
            queues[name] = {
                "strategy": q.cfg.strategy,
                "waiting": len(q.waiting),
                "oldest_wait": max((x["waited"] for x in calls), default=0.0),
                "staffed": q.staffed,
                "logged_in": q.logged_in,
                "routable": len(q.index),
                "aht": q.aht,
                "draining": q.draining,
                "calls": calls,
            }
        agents = {
            aid: {
                "status": a.status.value,
                "state": a.state.value,
                "reason": a.reason,
                "call_id": a.call.id if a.call is not None else None,
                "idle_since": a.idle_since,
                "calls_taken": a.calls_taken,
                "talk_time": a.talk_time,
                "occupancy": a.occupancy(now),
                "misses": a.misses,
                "routable": self._is_routable(a),
            }
            for aid, a in self._agents.items()
        }
        return {"at": now, "version": self.version, "queues": queues, "agents": agents}

    def queue_status(self, queue: str) -> QueueStatus:
        """The queue now, typed (see :class:`acd.model.QueueStatus`); KeyError if unknown. Costs
        O(waiting calls) for ``longest_wait`` (calls wait in priority order, not join order)."""
        q = self._queues[queue]
        now = self._now
        calls = self._calls
        longest = max((now - calls[e[3]].joined_at for e in q.waiting), default=0.0)
        n = len(q.waiting)
        return QueueStatus(
            queue=q.name,
            waiting=n,
            routable=len(q.index),
            logged_in=q.logged_in,
            longest_wait=max(0.0, longest),
            ewt_seconds=self._ewt(q, n + 1),
        )

    def agent_status(self, agent_id: str) -> AgentStatusView:
        """The agent now, typed (see :class:`acd.model.AgentStatusView`); KeyError if unknown."""
        a = self._agents[agent_id]
        st = a.state
        word: Any = _STATUS_LABEL[a.status] if st is _IDLE else _STATE_LABEL[st]
        return AgentStatusView(
            agent_id=a.id,
            state=word,
            reason=(a.reason or "") if a.status is _PAUSED else "",
            since=a.since,
            call_id=a.call.id if a.call is not None else "",
            queues=tuple(qname for qname, _ in a.memberships),
            routable=self._is_routable(a),
            misses=a.misses,
        )

    def check_invariants(self) -> None:
        """Assert the engine's internal consistency (used by tests; O(everything))."""
        holders: dict[str, str] = {}
        for c in self._calls.values():
            for aid in c.offers:
                assert aid not in holders, f"agent {aid} rung for {holders[aid]} and {c.id}"
                holders[aid] = c.id
                a = self._agents[aid]
                assert a.state is _RESERVED and a.call is c, (
                    f"offer {c.id}->{aid} without reservation"
                )
            if c.state is _CONNECTED:
                assert c.agent is not None and c.agent.call is c and c.agent.state is _ON_CALL
                assert c.agent.id not in holders
                holders[c.agent.id] = c.id
            else:
                assert c.q is not None
                i = bisect.bisect_left(c.q.waiting, c.entry)
                assert i < len(c.q.waiting) and c.q.waiting[i] == c.entry, f"{c.id} not queued"
        for a in self._agents.values():
            if a.state in (_RESERVED, _ON_CALL):
                assert a.call is not None and holders.get(a.id) == a.call.id
            else:
                assert a.call is None
            indexed = bool(a.keys)
            assert indexed == (self._is_routable(a) and bool(a.memberships)), (
                f"{a.id} index mismatch"
            )
        for q in self._queues.values():
            assert q.waiting == sorted(q.waiting)
            for e in q.waiting:
                assert self._calls[e[3]].q is q
            assert len(q.index) == sum(1 for a in self._agents.values() if q.name in a.keys)

    # --- event handlers --------------------------------------------------------------------------

    def _on_tick(self, ev: Tick) -> None:
        pass  # timers already fired by handle()

    def _on_call_arrived(self, ev: CallArrived) -> None:
        call_id = ev[1]
        if call_id in self._calls:
            self._actions.append(
                RejectCall(call_id=call_id, queue=ev.queue, reason="duplicate_call")
            )
            return
        self._seq += 1
        c = _Call(ev, self._seq)
        self._calls[call_id] = c
        q = self._queues.get(ev[2])
        if q is not None and not q.draining:
            cfg = q.cfg
            if (cfg.when_no_agents == "join" or q.logged_in) and (
                cfg.max_len is None or len(q.waiting) < cfg.max_len
            ):
                self._join(c, q)  # what _admit does for an admitted call
                return
        self._admit(c, ev.queue)

    def _on_call_abandoned(self, ev: CallAbandoned) -> None:
        c = self._calls.get(ev.call_id)
        if c is None:
            return
        if c.state is _CONNECTED:
            self._end_call(c)
            return
        q = c.q
        assert q is not None
        self._remove_waiting(c, "caller_abandoned")
        self._emit("call_abandoned", call=c.id, queue=q.name, waited=self._now - c.joined_at)
        del self._calls[c.id]

    def _on_call_ended(self, ev: CallEnded) -> None:
        c = self._calls.get(ev.call_id)
        if c is None:
            return
        if c.state is _WAITING:
            self._on_call_abandoned(CallAbandoned(at=ev.at, call_id=ev.call_id))
            return
        self._end_call(c)

    def _on_logged_in(self, ev: AgentLoggedIn) -> None:
        a = self._agents.get(ev.agent_id)
        if a is None or a.status is not _LOGGED_OUT or a.cfg.id not in self._config.agents:
            return
        a.login_at = self._now
        if a.state is _IDLE:
            a.idle_since = self._now
        a.misses = 0
        if ev.paused_reason is not None:
            self._set_status(a, _PAUSED, ev.paused_reason)
        else:
            self._set_status(a, _AVAILABLE, None)
        self._after_agent_change(a)

    def _on_logged_out(self, ev: AgentLoggedOut) -> None:
        a = self._agents.get(ev.agent_id)
        if a is None or a.status is _LOGGED_OUT:
            return
        self._logout(a)

    def _on_ready(self, ev: AgentReady) -> None:
        a = self._agents.get(ev.agent_id)
        if a is None or a.status is _LOGGED_OUT:
            return
        a.misses = 0
        if a.status is _PAUSED:
            if a.state is _IDLE:
                a.idle_since = self._now
            self._set_status(a, _AVAILABLE, None)
        self._after_agent_change(a)

    def _on_paused(self, ev: AgentPaused) -> None:
        a = self._agents.get(ev.agent_id)
        if a is None or a.status is _LOGGED_OUT:
            return
        if a.state is _RESERVED:
            self._withdraw(a, "agent_paused")
        self._set_status(a, _PAUSED, ev.reason)
        self._after_agent_change(a)

    def _on_answered(self, ev: OfferAnswered) -> None:
        _, call_id, agent_id = ev
        c = self._calls.get(call_id)
        a = self._agents.get(agent_id)
        if c is None or a is None or c.state is not _WAITING or agent_id not in c.offers:
            reason: Any = (
                "already_answered" if c is not None and c.state is _CONNECTED else "offer_withdrawn"
            )
            self._actions.append(
                RefuseAnswer(call_id=ev.call_id, agent_id=ev.agent_id, reason=reason)
            )
            self._emit("answer_refused", call=ev.call_id, agent=ev.agent_id, reason=reason)
            return
        q = c.q
        assert q is not None
        offers = c.offers
        aid = a.id
        others = [self._agents[o] for o in offers if o != aid] if len(offers) > 1 else ()
        del offers[aid]
        waiting = q.waiting
        entry = c.entry
        # bisect_remove inlined with a fast path, like _set_state below and _unindex in _reserve:
        # kept, calling them cost 3.0 % / 4.1 % more CPU in bench.sim (single / multi-skill, best
        # of 12 alternating runs, 2026-12-06; noise about 3 %)
        if waiting[0] is entry:  # usually the first waiting call
            del waiting[0]
        else:
            i = bisect.bisect_left(waiting, entry)
            assert i < len(waiting) and waiting[i] == entry, f"{entry} missing"
            del waiting[i]
        c.gen += 1
        c.state = _CONNECTED
        c.agent = a
        now = c.answered_at = self._now
        a.offer_gen += 1
        a.misses = 0
        a.calls_taken += 1
        if a.state is _IDLE:  # _set_state(a, _ON_CALL), inlined (kept: see above)
            a.busy_since = now
        a.state = _ON_CALL
        a.since = now
        self._actions.append(_new(BridgeCall, (c.id, aid, q.name)))
        if self._record:
            self._emit(
                "call_answered", call=c.id, agent=aid, queue=q.name, waited=now - c.joined_at
            )
            self._label(a)
        for o in others:
            self._release(o, c, "answered_elsewhere", cancel=True)
            self._after_agent_change(o)

    def _on_rejected(self, ev: OfferRejected) -> None:
        a = self._offered_agent(ev.call_id, ev.agent_id)
        if a is None:
            return
        c = a.call
        assert c is not None
        self._release(a, c, "rejected", cancel=False)
        self._delay(a, max(_MIN_RETRY, a.cfg.reject_delay_seconds))
        self._after_offer_ended(c)
        self._after_agent_change(a)

    def _on_failed(self, ev: OfferFailed) -> None:
        a = self._offered_agent(ev.call_id, ev.agent_id)
        if a is None:
            return
        c = a.call
        assert c is not None
        self._release(a, c, ev.reason, cancel=False)
        self._delay(a, max(_MIN_RETRY, a.cfg.busy_delay_seconds))
        self._after_offer_ended(c)
        self._after_agent_change(a)

    def _on_timed_out(self, ev: OfferTimedOut) -> None:
        a = self._offered_agent(ev.call_id, ev.agent_id)
        if a is not None:
            self._rona(a)

    def _on_wrap_up_done(self, ev: WrapUpDone) -> None:
        a = self._agents.get(ev.agent_id)
        if a is not None and a.state is _WRAP_UP:
            self._end_wrap_up(a)

    def _on_wrap_up_extended(self, ev: WrapUpExtended) -> None:
        a = self._agents.get(ev.agent_id)
        seconds = ev.seconds
        if a is None or a.state is not _WRAP_UP or not 0.0 < seconds < _FOREVER:
            return  # (NaN fails the comparison too)
        a.wrap_until = max(a.wrap_until, self._now) + seconds
        a.timer_gen += 1
        self._timer(a.wrap_until, _K_AGENT, a, a.timer_gen)

    def _on_config_changed(self, ev: ConfigChanged) -> None:
        ev.config.validate()
        self._apply_config(ev.config)

    def _on_config_rolled_back(self, ev: ConfigRolledBack) -> None:
        for version, _, cfg in self._history:
            if version == ev.version:
                self._apply_config(cfg)
                return

    # --- agents ----------------------------------------------------------------------------------

    def _is_routable(self, a: _Agent) -> bool:
        return a.status is _AVAILABLE and a.state is _IDLE and a.not_before <= self._now

    def _set_status(self, a: _Agent, status: AgentStatus, reason: str | None) -> None:
        old = a.status
        if a.state is _IDLE and (old is not status or reason != a.reason):
            a.since = self._now  # the state word is the status while idle
        if old is not status:
            now = self._now
            if status is _LOGGED_OUT:
                a.logged_total += now - a.login_at
            for qname, _ in a.memberships:
                q = self._queues[qname]
                if old is _AVAILABLE:
                    q.staffed -= 1
                elif status is _AVAILABLE:
                    q.staffed += 1
                if old is _LOGGED_OUT:
                    q.logged_in += 1
                elif status is _LOGGED_OUT:
                    q.logged_in -= 1
                    if (
                        q.logged_in == 0
                        and q.cfg.when_no_agents == "leave"
                        and not self._configuring
                    ):
                        self._leave_all(q)
            a.status = status
        a.reason = reason
        if self._record:  # labels only de-duplicate log records
            self._label(a)

    def _set_state(self, a: _Agent, state: AgentState) -> None:
        old = a.state
        if old is _IDLE and state is not _IDLE:
            a.busy_since = self._now
        elif old is not _IDLE and state is _IDLE:
            a.busy_total += self._now - a.busy_since
        if old is not state:
            a.since = self._now
        a.state = state

    def _label(self, a: _Agent) -> None:
        st = a.state
        label = _STATUS_LABEL[a.status] if st is _IDLE else _STATE_LABEL[st]
        reason = a.reason if label == "paused" else None
        if label != a.label or reason != a.label_reason:
            a.label = label
            a.label_reason = reason
            if self._record:
                self._emit("agent_state", agent=a.id, state=label, reason=reason)

    def _after_agent_change(self, a: _Agent) -> None:
        """Keep the index equal to the routable set; a newly routable agent pulls work."""
        routable = (
            a.status is _AVAILABLE
            and a.state is _IDLE
            and a.not_before <= self._now
            and bool(a.memberships)
        )  # _is_routable, inlined (kept with SortedIndex.add below)
        if routable and not a.keys:
            queues = self._queues
            keys = a.keys
            aid = a.id
            for qname, m in a.memberships:
                q = queues[qname]
                key = q.strategy.key(a, m)
                # SortedIndex.add inlined with a fast path: kept, calling it (and _is_routable)
                # cost 0.4 % / 1.5 % CPU in bench.sim (single / multi-skill), and with the other
                # copies replaced by calls the total came to 3-5 % (2026-12-06, docs/benchmarks.md)
                items = q.index.items
                item = (key, aid)
                if not items or items[-1] < item:  # usually last (e.g. longest idle)
                    items.append(item)
                else:
                    bisect.insort(items, item)
                keys[qname] = key
            self._pulls.append(a)
        elif not routable and a.keys:
            self._unindex(a)

    def _unindex(self, a: _Agent) -> None:
        queues = self._queues
        for qname, key in a.keys.items():
            queues[qname].index.remove(key, a.id)
        a.keys = {}

    def _delay(self, a: _Agent, seconds: float) -> None:
        if seconds > 0:
            a.not_before = self._now + seconds
            a.timer_gen += 1
            self._timer(a.not_before, _K_AGENT, a, a.timer_gen)

    def _logout(self, a: _Agent) -> None:
        if a.state is _RESERVED:
            self._withdraw(a, "agent_logged_out")
        elif a.state is _WRAP_UP:
            a.timer_gen += 1
            self._set_state(a, _IDLE)
        self._set_status(a, _LOGGED_OUT, None)
        self._after_agent_change(a)

    def _withdraw(self, a: _Agent, reason: CancelReason) -> None:
        """Cancel the agent's ringing offer; the call keeps its place."""
        c = a.call
        assert c is not None
        self._release(a, c, reason, cancel=True)
        self._after_offer_ended(c)

    def _release(self, a: _Agent, c: _Call, reason: str, *, cancel: bool) -> None:
        """End the agent's reservation for ``c`` (the single place that releases one)."""
        del c.offers[a.id]
        a.call = None
        a.offer_gen += 1
        self._set_state(a, _IDLE)
        self._emit("offer_cancelled", call=c.id, agent=a.id, queue=c.q.name if c.q else None,
                   reason=reason)  # fmt: skip
        if cancel:
            self._actions.append(
                CancelOffer(call_id=CallId(c.id), agent_id=AgentId(a.id), reason=reason)  # type: ignore[arg-type]
            )
        if self._record:  # labels only de-duplicate log records
            self._label(a)

    def _rona(self, a: _Agent) -> None:
        c = a.call
        assert c is not None
        self._release(a, c, "no_answer", cancel=True)
        a.misses += 1
        if a.cfg.max_misses and a.misses >= a.cfg.max_misses:
            self._set_status(a, _PAUSED, "rona")
            self._actions.append(PauseAgent(agent_id=AgentId(a.id), reason="rona"))
        else:
            self._delay(a, a.cfg.no_answer_delay_seconds)
        self._after_offer_ended(c)
        self._after_agent_change(a)

    def _end_wrap_up(self, a: _Agent) -> None:
        a.timer_gen += 1
        self._set_state(a, _IDLE)
        a.idle_since = self._now
        if self._record:  # labels only de-duplicate log records
            self._label(a)
        self._after_agent_change(a)

    def _offered_agent(self, call_id: str, agent_id: str) -> _Agent | None:
        a = self._agents.get(agent_id)
        if a is None or a.state is not _RESERVED or a.call is None or a.call.id != call_id:
            return None
        return a

    # --- calls -----------------------------------------------------------------------------------

    def _admit(self, c: _Call, qname: str) -> None:
        q = self._queues.get(qname)
        if q is None or q.draining:
            self._refuse(c, qname, "unknown_queue", to=None)
            return
        cfg = q.cfg
        reason: Any = None
        # Queued work (messages, callbacks) waits for an agent, whatever the queue's limits.
        if c.kind == "call" and cfg.when_no_agents != "join" and q.logged_in == 0:
            reason = "no_agents"
        elif c.kind == "call" and cfg.max_len is not None and len(q.waiting) >= cfg.max_len:
            reason = "queue_full"
        if reason is None:
            self._join(c, q)
            return
        self._emit_queue_record("call_refused", c, q, reason=reason, to=cfg.overflow)
        self._route_away(c, q, reason)

    def _refuse(self, c: _Call, qname: str, reason: RejectReason, to: str | None) -> None:
        self._emit("call_refused", call=c.id, queue=qname, reason=reason, to=to,
                   priority=c.base_priority, skills=dict(c.call_skills), kind=c.kind)  # fmt: skip
        self._actions.append(RejectCall(call_id=CallId(c.id), queue=qname, reason=reason))
        del self._calls[c.id]

    def _route_away(self, c: _Call, q: _Queue, reason: Any) -> None:
        """Send a call that is not (or no longer) in ``q`` to the queue's overflow target."""
        target = q.cfg.overflow
        cid = CallId(c.id)
        if target == "voicemail":
            self._actions.append(SendToVoicemail(call_id=cid, queue=q.name, reason=reason))
            del self._calls[c.id]
        elif target is None:
            self._actions.append(RejectCall(call_id=cid, queue=q.name, reason=reason))
            del self._calls[c.id]
        else:
            to = target.removeprefix("queue:")
            if c.hops >= self._config.max_overflow_hops:
                self._actions.append(RejectCall(call_id=cid, queue=q.name, reason="overflow_loop"))
                del self._calls[c.id]
                return
            c.hops += 1
            self._actions.append(
                Overflow(call_id=cid, from_queue=q.name, to_queue=to, reason=reason)
            )
            self._admit(c, to)

    def _join(self, c: _Call, q: _Queue) -> None:
        now = self._now
        c.q = q
        c.joined_at = now
        c.state = _WAITING
        c.offers = {}
        c.first_offer_at = None
        c.expired = False
        c.gen += 1
        cfg = q.cfg
        self._set_call_targets(c, q)
        entry = c.entry
        waiting = q.waiting
        if not waiting or waiting[-1] < entry:  # usually last (entries are unique: seq)
            waiting.append(entry)
        else:
            bisect.insort(waiting, entry)
        if self._record:
            self._emit_queue_record("call_queued", c, q, enqueued_at=c.enqueued_at)
        if cfg.max_wait is not None or cfg.widening or cfg.announce_every is not None:
            self._schedule_call_timers(c, announce_now=True)  # (no fan-out timer: not offered yet)
        self._pushes.append(c)

    def _set_call_targets(self, c: _Call, q: _Queue) -> None:
        cfg = q.cfg
        c.required = merge_requirements(cfg.skills, c.call_skills) if c.call_skills else cfg.skills
        if cfg.widening:
            c.step = step_for(cfg, self._now - c.joined_at)
            c.relax = relax_for(cfg, c.step)
        else:
            c.step = c.relax = 0
        c.entry = (-(c.base_priority + cfg.priority), c.enqueued_at, c.seq, c.id)

    def _schedule_call_timers(self, c: _Call, *, announce_now: bool) -> None:
        q = c.q
        assert q is not None
        cfg = q.cfg
        gen = c.gen
        work = c.kind != "call"  # a message or callback request: nobody is on the line
        if cfg.max_wait is not None and not work:
            self._timer(max(self._now, c.joined_at + cfg.max_wait), _K_MAX_WAIT, c, gen)
        nxt = next_step_at(cfg, c.step)
        if nxt is not None:
            self._timer(c.joined_at + nxt, _K_WIDEN, c, gen)
        if cfg.announce_every is not None and not work:
            if announce_now:
                self._announce.append(c)
            else:
                self._timer(self._now + cfg.announce_every, _K_ANNOUNCE, c, gen)
        if c.first_offer_at is not None:
            self._schedule_fanout(c)

    def _schedule_fanout(self, c: _Call) -> None:
        assert c.q is not None and c.first_offer_at is not None
        nxt = c.q.strategy.next_fanout_change(self._now - c.first_offer_at)
        if nxt is not None and c.first_offer_at + nxt > self._now:
            self._timer(c.first_offer_at + nxt, _K_FANOUT, c, c.gen)

    def _remove_waiting(self, c: _Call, reason: CancelReason) -> None:
        """Take a waiting call out of its queue, withdrawing its offers."""
        q = c.q
        assert q is not None
        bisect_remove(q.waiting, c.entry)
        c.gen += 1
        for aid in list(c.offers):
            a = self._agents[aid]
            self._release(a, c, reason, cancel=True)
            self._after_agent_change(a)

    def _exit(self, c: _Call, reason: Any) -> None:
        """A waiting call leaves its queue without an agent (max wait, no agents)."""
        q = c.q
        assert q is not None
        self._remove_waiting(c, "call_left")
        waited = self._now - c.joined_at
        target = q.cfg.overflow
        if target == "voicemail":
            self._emit("call_voicemail", call=c.id, queue=q.name, reason=reason, waited=waited)
        elif target is None:
            self._emit("call_left", call=c.id, queue=q.name, reason=reason, waited=waited)
        else:
            self._emit("call_overflowed", call=c.id, queue=q.name, reason=reason, waited=waited,
                       to=target.removeprefix("queue:"))  # fmt: skip
        self._route_away(c, q, reason)

    def _leave_all(self, q: _Queue) -> None:
        for e in list(q.waiting):
            c = self._calls.get(e[3])
            if c is not None and c.q is q and c.state is _WAITING:
                self._exit(c, "no_agents")

    def _after_offer_ended(self, c: _Call) -> None:
        if c.state is not _WAITING or c.q is None or c.id not in self._calls:
            return
        if c.expired and not c.offers:
            self._exit(c, "max_wait")
        else:
            self._pushes.append(c)

    def _end_call(self, c: _Call) -> None:
        a = c.agent
        q = c.q
        assert a is not None and q is not None
        now = self._now
        talk = now - c.answered_at
        if self._record:
            self._emit("call_ended", call=c.id, agent=a.id, queue=q.name, talk=talk)
        a.talk_time += talk
        a.call = None
        del self._calls[c.id]
        wrap = a.cfg.wrap_up_seconds if a.cfg.wrap_up_seconds is not None else q.cfg.wrap_up_seconds
        q.aht += _AHT_ALPHA * (talk + wrap - q.aht)
        if wrap > 0 and a.status is not _LOGGED_OUT:
            self._set_state(a, _WRAP_UP)
            a.timer_gen += 1
            a.wrap_until = now + wrap
            self._timer(a.wrap_until, _K_AGENT, a, a.timer_gen)
            if self._record:  # labels only de-duplicate log records
                self._label(a)
        else:
            if a.state is not _IDLE:  # _set_state(a, _IDLE), inlined (kept: see _on_answered)
                a.busy_total += now - a.busy_since
                a.state = _IDLE
                a.since = now
            a.idle_since = now
            if self._record:  # labels only de-duplicate log records
                self._label(a)
            self._after_agent_change(a)

    def _wants(self, c: _Call) -> bool:
        if c.state is not _WAITING or c.expired:
            return False
        n = len(c.offers)
        if n == 0:
            return True
        assert c.q is not None
        if c.q.ring_one:
            return False
        want = self._want_count(c)
        return want is None or n < want

    def _want_count(self, c: _Call) -> int | None:
        assert c.q is not None
        fo = c.first_offer_at
        return c.q.strategy.fanout(self._now - fo if fo is not None else 0.0)

    # --- routing ---------------------------------------------------------------------------------

    def _candidates(self, q: _Queue, c: _Call | _Probe) -> Iterator[Candidate]:
        return qualified(c, q.index.items, q.members, self._agents, c.step)

    def _push(self, c: _Call) -> None:
        """Offer a call that wants agents to the agents its strategy picks."""
        if c.state is not _WAITING or c.expired or c.id not in self._calls:
            return
        if c.offers and not self._wants(c):
            return
        q = c.q
        assert q is not None
        if not q.index.items:
            return
        if q.ring_one and q.takes_first:
            # The strategy's ``pick`` (the first qualified entry, routing.strategy.qualified and
            # meets), inlined: the hot path of every arrival. Kept because it still pays on the
            # compiled core: calling ``q.strategy.pick`` here and ``meets`` in ``_pull`` instead
            # cost 8.0 % (single queue) / 9.5 % (multi-skill) more CPU in bench.sim, best of 5
            # alternating runs, 2026-12-06; noise about 3 % (docs/benchmarks.md).
            members = q.members
            agents = self._agents
            required = c.required
            relax = c.relax
            step = c.step
            for _, aid in q.index.items:
                if members[aid].step > step:
                    continue
                a = agents[aid]
                if required:
                    have = a.skills
                    for skill, level in required.items():  # meets(), inlined: see above
                        if have.get(skill, 0) < level - relax:
                            break
                    else:
                        self._reserve(c, a)
                        return
                    continue
                self._reserve(c, a)
                return
            return
        if q.ring_one:
            picked = q.strategy.pick(
                c,
                q.index.items,
                q.members,
                self._agents,
                step=c.step,
                now=self._now,
                rng=self._rng,
                memory=q.memory,
            )
            if picked is not None:
                self._reserve(c, self._agents[picked.id])
            return
        want = self._want_count(c)
        need = None if want is None else want - len(c.offers)
        chosen = q.strategy.choose(
            c, self._candidates(q, c), want=need, now=self._now, rng=self._rng, memory=q.memory
        )
        agents = self._agents
        for chosen_agent, _ in chosen:
            self._reserve(c, agents[chosen_agent.id])

    def _first_qualified(self, q: _Queue, c: _Call | _Probe) -> _Agent | None:
        """``pick`` of a ``takes_first`` strategy (the first qualified routable member in the
        index), as :meth:`_push` inlines it, for :meth:`decide`. Kept: ``decide`` through
        ``q.strategy.pick`` instead measured p50 1.2 -> 2.4 us per decision in bench.routing
        (longest-idle, 10,000 agents, compiled, 2026-12-06)."""
        members = q.members
        agents = self._agents
        required = c.required
        relax = c.relax
        step = c.step
        for _, aid in q.index.items:
            if members[aid].step > step:
                continue
            a = agents[aid]
            if required and not meets(a.skills, required, relax):
                continue
            return a
        return None

    def _pull(self, a: _Agent) -> None:
        """A newly routable agent takes the first call, across its queues, it qualifies for."""
        if (
            not a.keys
            or a.status is not _AVAILABLE
            or a.state is not _IDLE
            or a.not_before > self._now
        ):  # not indexed or not routable (_is_routable, inlined: kept, see _after_agent_change)
            return
        best: _Call | None = None
        best_entry: Entry | None = None
        calls = self._calls
        skills = a.skills
        for qname, m in a.memberships:
            q = self._queues[qname]
            for e in q.waiting:
                if best_entry is not None and e >= best_entry:
                    break
                c = calls[e[3]]
                if m.step > c.step or c.expired:
                    continue
                if c.offers and not self._wants(c):
                    continue
                required = c.required
                if required:
                    # meets(), inlined: kept with _push's inlined pick (8-9.5 % in bench.sim)
                    relax = c.relax
                    unmet = False
                    for skill, level in required.items():
                        if skills.get(skill, 0) < level - relax:
                            unmet = True
                            break
                    if unmet:
                        continue
                best = c
                best_entry = e
                break
        if best is not None:
            self._reserve(best, a)

    def _reserve(self, c: _Call, a: _Agent) -> None:
        """The one place that takes a reservation: ring ``a`` for ``c``."""
        assert a.keys and a.call is None and c.state is _WAITING, f"{a.id} cannot take {c.id}"
        q = c.q
        assert q is not None
        # _unindex (with a fast path) and _set_state(a, _RESERVED), inlined: kept, see
        # _on_answered (3.0 % / 4.1 % in bench.sim)
        queues = self._queues
        aid = a.id
        for qname, key in a.keys.items():
            items = queues[qname].index.items  # SortedIndex.remove, inlined
            if items[0][1] == aid:  # usually the first (ids are unique in an index)
                del items[0]
                continue
            i = bisect.bisect_left(items, (key, aid))
            assert i < len(items) and items[i][1] == aid, f"agent {aid} not in index at {key}"
            del items[i]
        a.keys = {}
        now = self._now
        if a.state is _IDLE:
            a.busy_since = now
        a.state = _RESERVED
        a.since = now
        a.call = c
        gen = a.offer_gen = a.offer_gen + 1
        ring = q.cfg.ring_timeout
        c.offers[aid] = now + ring
        if c.first_offer_at is None:
            c.first_offer_at = now
            if not q.ring_one:  # ring-one strategies never change their fan-out
                self._schedule_fanout(c)
        self._seq += 1
        heapq.heappush(self._timers, (now + ring, self._seq, _K_RING, a, gen))
        self._actions.append(_new(OfferCall, (c.id, aid, q.name, ring)))
        if self._record:
            self._emit("call_offered", call=c.id, agent=aid, queue=q.name, strategy=q.cfg.strategy)
            self._label(a)

    def _settle(self) -> None:
        """Newly routable agents pull first (fairness), then calls wanting agents push, in service
        order; then due join announcements."""
        pulls = self._pulls
        pushes = self._pushes
        if not (pulls or pushes or self._announce):
            return
        while pulls or pushes:
            if pulls:
                self._pull(pulls.pop(0))
                continue
            if len(pushes) > 1:
                pushes.sort(key=lambda c: c.entry, reverse=True)
            self._push(pushes.pop())
        if self._announce:
            for c in self._announce:
                if c.id in self._calls and c.state is _WAITING and c.q is not None:
                    self._announce_position(c)
            self._announce.clear()

    def _announce_position(self, c: _Call) -> None:
        q = c.q
        assert q is not None
        every = q.cfg.announce_every
        if every is None:
            return
        if not c.offers:
            pos = bisect.bisect_left(q.waiting, c.entry) + 1
            ewt = self._ewt(q, pos)
            self._actions.append(
                AnnouncePosition(call_id=CallId(c.id), queue=q.name, position=pos, ewt_seconds=ewt)
            )
        self._timer(self._now + every, _K_ANNOUNCE, c, c.gen)

    def _ewt(self, q: _Queue, position: int) -> float:
        """Expected wait of the call at ``position`` (1 = next) in ``q``: the module docstring's
        EWT, shared by announcements and :meth:`queue_status`."""
        return position * q.aht / max(1, q.staffed)

    def _ineligible_reason(self, a: _Agent, m: MemberInfo, c: _Call) -> str | None:
        if a.status is _LOGGED_OUT:
            return "logged out"
        if a.status is _PAUSED and a.state is _IDLE:
            return f"paused: {a.reason}"
        if a.state is _RESERVED:
            who = "this call" if a.call is c else f"call {a.call.id if a.call else '?'}"
            return f"ringing for {who}"
        if a.state is _ON_CALL:
            return "on a call"
        if a.state is _WRAP_UP:
            return "in wrap-up"
        if a.not_before > self._now:
            return f"delayed until {a.not_before:g} (reject/busy/no-answer)"
        if m.step > c.step:
            return f"group added at widening step {m.step}"
        short = shortfall(a.skills, c.required, c.relax)
        if short:
            return "missing skill " + ", ".join(short)
        return None

    # --- timers ----------------------------------------------------------------------------------

    def _timer(self, at: float, kind: int, obj: Any, gen: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, kind, obj, gen))

    def _timer_live(self, kind: int, obj: Any, gen: int) -> bool:
        if kind == _K_RING:
            return bool(obj.offer_gen == gen and obj.state is _RESERVED)
        if kind == _K_AGENT:
            return bool(obj.timer_gen == gen)
        return bool(obj.gen == gen and obj.state is _WAITING and obj.id in self._calls)

    def _run_timers(self, until: float) -> None:
        """Fire due timers instant by instant: every timer of one instant fires, then the engine
        settles once, so an agent freed at ``t`` sees every call that changed at ``t`` (a call
        overflowing in, a widening step) before it picks one."""
        timers = self._timers
        while timers and timers[0][0] <= until:
            instant = timers[0][0]
            if instant > self._now:
                self._now = instant
            while timers and timers[0][0] == instant:
                _, _, kind, obj, gen = heapq.heappop(timers)
                if self._timer_live(kind, obj, gen):
                    self._fire(kind, obj)
            self._settle()

    def _fire(self, kind: int, obj: Any) -> None:
        if kind == _K_RING:
            self._rona(obj)
        elif kind == _K_AGENT:
            a: _Agent = obj
            a.timer_gen += 1
            if a.state is _WRAP_UP:
                self._end_wrap_up(a)
            else:
                self._after_agent_change(a)
        elif kind == _K_MAX_WAIT:
            c: _Call = obj
            if c.offers:
                c.expired = True
            else:
                self._exit(c, "max_wait")
        elif kind == _K_WIDEN:
            c = obj
            q = c.q
            assert q is not None
            # the timer fired at the step's time: count it even if float rounding says otherwise
            c.step = min(
                len(q.cfg.widening), max(c.step + 1, step_for(q.cfg, self._now - c.joined_at))
            )
            c.relax = relax_for(q.cfg, c.step)
            nxt = next_step_at(q.cfg, c.step)
            if nxt is not None:
                self._timer(c.joined_at + nxt, _K_WIDEN, c, c.gen)
            self._pushes.append(c)
        elif kind == _K_ANNOUNCE:
            self._announce_position(obj)
        elif kind == _K_FANOUT:
            self._schedule_fanout(obj)
            self._pushes.append(obj)

    # --- configuration ---------------------------------------------------------------------------

    def _apply_config(self, cfg: AcdConfig) -> None:
        version = self._history[-1][0] + 1 if self._history else 1
        self._history.append((version, self._now, cfg))
        self._config = cfg
        self._configuring = True
        # agents: unindex everyone, logout the removed ones
        for a in self._agents.values():
            if a.keys:
                self._unindex(a)
        for aid, a in self._agents.items():
            if aid not in cfg.agents and a.status is not _LOGGED_OUT:
                self._logout(a)
        # queues
        for name, qcfg in cfg.queues.items():
            q = self._queues.get(name)
            if q is None:
                self._queues[name] = _Queue(qcfg)
            else:
                if q.cfg.strategy != qcfg.strategy:
                    q.memory = RoutingMemory()
                q.cfg = qcfg
                q.draining = False
                q.set_strategy(
                    make_strategy(qcfg.strategy, params=qcfg.strategy_params, weights=qcfg.weights)
                )
        for name, q in self._queues.items():
            if name not in cfg.queues:
                q.draining = True
        # memberships
        for order, (aid, acfg) in enumerate(cfg.agents.items()):
            a = self._agents.get(aid) or _Agent(acfg, order, self._now)
            self._agents[aid] = a
            a.cfg = acfg
            a.order = order
            a.skills = acfg.skills
            a.priority = acfg.priority
            a.memberships = []
        agent_cfgs = list(cfg.agents.values())
        for q in self._queues.values():
            q.index.clear()
            q.staffed = 0
            q.logged_in = 0
            q.members = {} if q.draining else members(q.cfg, agent_cfgs)
            for aid, m in q.members.items():
                a = self._agents[aid]
                a.memberships.append((q.name, m))
                if a.status is _AVAILABLE:
                    q.staffed += 1
                if a.status is not _LOGGED_OUT:
                    q.logged_in += 1
        for a in self._agents.values():
            if a.cfg.id not in cfg.agents:
                a.memberships = []
            a.keys = {}
            self._after_agent_change(a)
        self._pulls.clear()  # every wanting call is pushed below, in service order
        # waiting calls: keep their place, apply the new settings from now on
        for q in self._queues.values():
            entries = []
            for e in q.waiting:
                c = self._calls[e[3]]
                if not q.draining:
                    self._set_call_targets(c, q)
                c.gen += 1
                c.expired = False
                entries.append(c.entry)
            entries.sort()
            q.waiting = entries
            for e in entries:
                c = self._calls[e[3]]
                self._schedule_call_timers(c, announce_now=False)
                self._pushes.append(c)
        self._emit("config_changed", version=version)
        self._configuring = False
        for q in self._queues.values():
            if q.logged_in == 0 and q.cfg.when_no_agents == "leave" and q.waiting:
                self._leave_all(q)

    # --- log -------------------------------------------------------------------------------------

    def _emit(
        self,
        log_kind: LogKind,
        /,
        *,
        call: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
        **data: Any,
    ) -> None:
        if not self._record:
            return
        self._log_seq += 1
        self._log.append(
            LogRecord(
                at=self._now,
                seq=self._log_seq,
                kind=log_kind,
                call_id=CallId(call) if call is not None else None,
                agent_id=AgentId(agent) if agent is not None else None,
                queue=queue,
                data=data,
            )
        )

    def _emit_queue_record(self, log_kind: LogKind, c: _Call, q: _Queue, **extra: Any) -> None:
        if not self._record:
            return
        cfg = q.cfg
        self._emit(
            log_kind,
            call=c.id,
            queue=q.name,
            priority=c.base_priority + cfg.priority,
            skills=dict(merge_requirements(cfg.skills, c.call_skills)),
            kind=c.kind,
            sl=cfg.service_level_seconds,
            short=cfg.short_abandon_seconds,
            **extra,
        )


def bisect_remove(items: list[Entry], entry: Entry) -> None:
    """Remove ``entry`` from the sorted list ``items``."""
    i = bisect.bisect_left(items, entry)
    assert i < len(items) and items[i] == entry, f"{entry} missing"
    del items[i]
