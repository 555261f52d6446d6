"""The contact-centre model: callers and agents around the real ACD engine, on a virtual clock.

One replication (:func:`run_replication`):

* callers (``sim.workload``) enter their queue in time order: ``CallArrived``; a caller whose
  patience runs out while still waiting sends ``CallAbandoned``; an answered call hangs up after
  its handle time: ``CallEnded`` (the engine runs wrap-up itself);
* agents follow their group's roster: ``AgentLoggedIn`` / ``AgentLoggedOut`` at the shift's ends,
  ``AgentPaused(reason="break")`` / ``AgentReady`` around breaks, and ``AgentReady`` some time
  after the engine paused them for ring-no-answer;
* every ``OfferCall`` the engine returns rings the agent: with the group's ``ring_no_answer``
  probability nobody answers (the engine's own ring timeout fires), otherwise the agent answers
  after ``answer_seconds`` (``OfferAnswered``) unless that is past the ring timeout;
* the engine's deadlines are honoured with ``Tick``: the kernel keeps one pending tick at
  ``engine.next_deadline()``, like ``acd.service``'s single ``loop.call_at``.

The engine and the strategies run unchanged; the model only observes the actions to account for
callers (outcome, wait) and agents (staffed and busy time), see ``sim.stats``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from acd.actions import (
    BridgeCall,
    CancelOffer,
    OfferCall,
    PauseAgent,
    RejectCall,
    SendToVoicemail,
)
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReady,
    CallAbandoned,
    CallArrived,
    CallEnded,
    Event,
    OfferAnswered,
    Tick,
)
from acd.model import AgentId
from sim.distributions import Sampler, Streams, Uniforms
from sim.scenario import Scenario
from sim.stats import ABANDONED, ANSWERED, REJECTED, UNFINISHED, VOICEMAIL, RunResult
from sim.workload import Callers, draw_callers

_new = tuple.__new__
"""Builds a ``NamedTuple`` event from its fields in order (a third of the keyword constructor's
cost; the loop builds several per caller)."""

# kernel event kinds
_ABANDON, _ANSWER, _HANGUP, _TICK, _WRAP_END = 0, 1, 2, 3, 4
_LOGIN, _LOGOUT, _BREAK, _READY, _RONA_READY = 5, 6, 7, 8, 9

EngineFactory = Callable[[Scenario, random.Random], AcdEngine]


def default_engine(scenario: Scenario, rng: random.Random) -> AcdEngine:
    """The ACD engine as the live service builds it, from the scenario's routing configuration
    (no log records: the model accounts for calls and agents from the actions)."""
    return AcdEngine(scenario.acd, rng=rng, now=0.0, record_log=False)


class _Accounts:
    """Staffed and busy time per agent, per interval, clipped to the measured window."""

    __slots__ = (
        "busy",
        "busy_by_interval",
        "hi",
        "lo",
        "staffed",
        "staffed_by_interval",
        "width",
    )

    def __init__(self, n_agents: int, n_intervals: int, window: tuple[float, float], width: float):
        self.lo, self.hi = window
        self.width = width
        self.staffed = [0.0] * n_agents
        self.busy = [0.0] * n_agents
        self.staffed_by_interval = [[0.0] * n_intervals for _ in range(n_agents)]
        self.busy_by_interval = [[0.0] * n_intervals for _ in range(n_agents)]

    def add(self, busy: bool, j: int, a: float, b: float) -> None:
        if a < self.lo:
            a = self.lo
        if b > self.hi:
            b = self.hi
        if b <= a:
            return
        total = self.busy if busy else self.staffed
        row = (self.busy_by_interval if busy else self.staffed_by_interval)[j]
        total[j] += b - a
        w = self.width
        k = int(a // w)
        while a < b:
            end = (k + 1) * w
            if end > b:
                end = b
            row[k] += end - a
            a = end
            k += 1


def run_replication(
    scenario: Scenario,
    replication: int,
    *,
    engine_factory: EngineFactory = default_engine,
    trace: list[tuple[float, Event, list[object]]] | None = None,
) -> RunResult:
    """Simulate one replication; ``trace`` (if given) receives every ``(at, event, actions)``."""
    sim = scenario.simulation
    streams = Streams(sim.seed, replication)
    callers = draw_callers(scenario, streams)
    seed = int(streams.rng("routing").integers(0, 2**63))
    engine = engine_factory(scenario, random.Random(seed))
    return _Run(scenario, streams, callers, engine, replication, trace).run()


def _add_area(area: list[float], width: float, n_int: int, q: int, last: float, t: float) -> None:
    """Add ``q`` callers waiting over ``[last, t)`` to the per-interval queue-length integrals."""
    k = int(last // width)
    a = last
    while a < t and k < n_int:
        end = min(t, (k + 1) * width)
        area[k] += q * (end - a)
        a = end
        k += 1


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        streams: Streams,
        callers: Callers,
        engine: AcdEngine,
        replication: int,
        trace: list[tuple[float, Event, list[object]]] | None,
    ) -> None:
        self.scenario = scenario
        self.callers = callers
        self.engine = engine
        self.replication = replication
        self.trace = trace
        sim = scenario.simulation
        self.window = (sim.warmup_hours * 3600.0, sim.horizon)
        self.width = sim.interval_minutes * 60.0
        self.n_intervals = max(1, math.ceil(sim.horizon / self.width))
        self.queues = list(scenario.acd.queues)
        self.queue_index = {q: i for i, q in enumerate(self.queues)}
        self.agents: list[str] = [aid for g in scenario.groups for aid in g.agent_ids()]
        self.agent_index = {a: j for j, a in enumerate(self.agents)}
        n_agents = len(self.agents)
        group_of = [g for g in scenario.groups for _ in range(g.count)]
        self.rona_p = [g.ring_no_answer for g in group_of]
        self.rona_ready = [g.rona_ready_seconds for g in group_of]
        answer_samplers: dict[str, Sampler] = {
            g.name: streams.sampler(f"answer:{g.name}", g.answer) for g in scenario.groups
        }
        self.answer = [answer_samplers[g.name] for g in group_of]
        self.answer_zero = [g.answer.kind == "constant" and g.answer.mean == 0 for g in group_of]
        rona_streams = {g.name: Uniforms(streams.rng(f"rona:{g.name}")) for g in scenario.groups}
        self.rona_u = [rona_streams[g.name] for g in group_of]
        # wrap-up time per (agent, queue) as the engine applies it
        acd = scenario.acd
        self.wrap: list[dict[str, float]] = []
        for aid in self.agents:
            own = acd.agents[aid].wrap_up_seconds
            self.wrap.append(
                {
                    q: (own if own is not None else qc.wrap_up_seconds)
                    for q, qc in acd.queues.items()
                }
            )
        self.accounts = _Accounts(n_agents, self.n_intervals, self.window, self.width)
        n = len(callers)
        # per caller, as Python lists while running (element access is cheaper than numpy's)
        self.outcome = [UNFINISHED] * n
        self.wait = [math.nan] * n
        self.waited = [True] * n
        self.agent_of = [-1] * n
        self.bridge_queue: list[str] = list(callers.queue)
        # typed, so the compiled loop (hotline/native.py) keeps them as native floats and ints
        self.entry: list[float] = callers.entry.tolist()
        self.handle: list[float] = callers.handle.tolist()
        self.patience: list[float] = callers.patience.tolist()
        self.call_queue: list[str] = callers.queue
        self.source: list[int] = callers.source.tolist()
        sources = scenario.arrivals
        self.src_skills = [dict(s.skills) for s in sources]
        self.src_priority = [s.priority for s in sources]
        # live state
        self.waiting_flag = bytearray(n)  # 1 while in a queue
        self.in_call = 0
        self.n_waiting = 0
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.now = 0.0
        self.tick_at = math.inf
        self.ring_token = [-1] * n_agents
        self.ring_call = [-1] * n_agents
        self.busy_since = [math.nan] * n_agents
        self.staffed_since = [math.nan] * n_agents
        self.on_shift = [False] * n_agents
        self.paused = [False] * n_agents
        self.busy_state = [0] * n_agents  # 0 idle, 1 reserved, 2 on call, 3 wrap-up
        self.queue_area = [0.0] * self.n_intervals
        self.queue_area_total = 0.0
        self.q_last = 0.0
        self.wait_total = 0.0
        self.events = 0
        self.engine_calls = 0
        self.pending: list[Event] = []

    # --- heap -----------------------------------------------------------------------------

    def push(self, at: float, kind: int, a: int = 0, b: int = 0) -> int:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, a, b))
        return self.seq

    # --- accounting -----------------------------------------------------------------------

    def _queue_change(self, t: float, delta: int) -> None:
        q = self.n_waiting
        last = self.q_last
        if q and t > last:
            self.queue_area_total += q * (t - last)
            w = self.width
            k = int(last // w)
            area = self.queue_area
            n_int = self.n_intervals
            a = last
            while a < t and k < n_int:
                end = min(t, (k + 1) * w)
                area[k] += q * (end - a)
                a = end
                k += 1
        self.q_last = t
        self.n_waiting = q + delta

    def _agent_state(self, j: int, t: float, busy: int) -> None:
        """Set agent ``j``'s busy state and close the staffed / busy spans that end."""
        was_busy = self.busy_state[j] != 0
        self.busy_state[j] = busy
        is_busy = busy != 0
        if was_busy != is_busy:
            if is_busy:
                self.busy_since[j] = t
            else:
                self.accounts.add(True, j, self.busy_since[j], t)
            if not self.on_shift[j] or self.paused[j]:
                self._staffing(j, t)  # on shift and not paused: staffed either way

    def _staffing(self, j: int, t: float) -> None:
        staffed = self.busy_state[j] != 0 or (self.on_shift[j] and not self.paused[j])
        since = self.staffed_since[j]
        if staffed and since != since:  # NaN: was not staffed
            self.staffed_since[j] = t
        elif not staffed and since == since:
            self.accounts.add(False, j, since, t)
            self.staffed_since[j] = math.nan

    def _leave_queue(self, i: int, t: float, outcome: int) -> None:
        if not self.waiting_flag[i]:
            return
        self.waiting_flag[i] = 0
        self._queue_change(t, -1)
        w = t - self.entry[i]
        self.wait[i] = w
        self.wait_total += w
        self.outcome[i] = outcome

    # --- run ------------------------------------------------------------------------------

    def _schedule_roster(self) -> None:
        for g in self.scenario.groups:
            for n, aid in enumerate(g.agent_ids()):
                j = self.agent_index[aid]
                self.push(g.shift_start, _LOGIN, j)
                if math.isfinite(g.shift_end):
                    self.push(g.shift_end, _LOGOUT, j)
                for b in g.breaks:
                    start = b.at + n * b.stagger
                    self.push(start, _BREAK, j)
                    self.push(start + b.seconds, _READY, j)

    def run(self) -> RunResult:
        """The event loop, in one function: the per-caller state lives in lists bound to locals
        and the clock, counters and queue integrals in local variables (written back at the
        end), because attribute and method lookups were most of the simulator's own cost. Each
        iteration takes the next arrival or heap entry, turns it into at most one engine event,
        feeds it to the engine (with the follow-ups the actions cause, e.g. an immediate
        answer) and re-arms the single pending tick at ``engine.next_deadline()``."""
        self._schedule_roster()
        heap = self.heap
        hpush = heapq.heappush
        hpop = heapq.heappop
        entry = self.entry
        n = len(entry)
        nxt = 0
        inf = math.inf
        next_entry = entry[0] if n else inf
        horizon = self.window[1]
        sim = self.scenario.simulation
        drain = sim.drain
        stop_at = horizon + sim.max_drain_hours * 3600.0 if drain else horizon
        agents = self.agents
        queues = self.call_queue
        cids = list(map(str, range(n)))  # the engine's call ids (CallId is a plain str)
        handle = self.engine.handle
        next_deadline = self.engine.next_deadline
        trace = self.trace
        agent_index = self.agent_index
        waiting_flag = self.waiting_flag
        patience = self.patience
        handle_time = self.handle
        source = self.source
        src_priority = self.src_priority
        src_skills = self.src_skills
        waited = self.waited
        wait = self.wait
        outcome = self.outcome
        agent_of = self.agent_of
        bridge_queue = self.bridge_queue
        ring_token = self.ring_token
        ring_call = self.ring_call
        busy_state = self.busy_state
        busy_since = self.busy_since
        on_shift = self.on_shift
        paused = self.paused
        rona_p = self.rona_p
        rona_u = self.rona_u
        rona_ready = self.rona_ready
        answer_zero = self.answer_zero
        answer = self.answer
        wrap_of = self.wrap
        has_wrap = [any(w > 0 for w in ws.values()) for ws in wrap_of]
        accounts = self.accounts
        lo, hi, width = accounts.lo, accounts.hi, accounts.width
        busy_total = accounts.busy
        busy_rows = accounts.busy_by_interval
        queue_area = self.queue_area
        n_int = self.n_intervals
        agent_state = self._agent_state
        staffing = self._staffing
        new = _new
        # CallArrived's remaining fields at their defaults (caller, data, enqueued_at, kind)
        caller0, data0, enqueued0, kind0 = [
            CallArrived._field_defaults[f] for f in CallArrived._fields[5:]
        ]
        pending: list[Any] = []
        # the scalars of the run, as locals (written back to ``self`` after the loop)
        seq = self.seq
        now = self.now
        n_waiting = self.n_waiting
        q_last = self.q_last
        area_total = self.queue_area_total
        wait_total = self.wait_total
        in_call = self.in_call
        tick_at = self.tick_at
        events = self.events
        engine_calls = self.engine_calls
        while True:
            arrived = -1
            t_heap = heap[0][0] if heap else inf
            if next_entry <= t_heap:
                t = next_entry
                if t >= stop_at:
                    break
                now = t
                events += 1
                i = arrived = nxt
                nxt += 1
                next_entry = entry[nxt] if nxt < n else inf
                waiting_flag[i] = 1
                # The queue-length integral (_queue_change) and below _leave_queue and the end of a
                # busy span (_agent_state) inlined: kept, calling them cost 1-2 % CPU in bench.sim
                # (compiled, 12 alternating runs, 2026-12-06: within the ~3 % noise alone, but
                # part of 3-5 % together with the engine's copies; docs/simulator.md)
                if n_waiting and t > q_last:  # the queue-length integral up to t
                    area_total += n_waiting * (t - q_last)
                    k = int(q_last // width)  # _add_area, inlined for one interval
                    if k < n_int and t <= (k + 1) * width:
                        queue_area[k] += n_waiting * (t - q_last)
                    else:
                        _add_area(queue_area, width, n_int, n_waiting, q_last, t)
                q_last = t
                n_waiting += 1
                s = source[i]
                ev: Any = new(
                    CallArrived,
                    (
                        t,
                        cids[i],
                        queues[i],
                        src_priority[s],
                        src_skills[s],
                        caller0,
                        data0,
                        enqueued0,
                        kind0,
                    ),
                )
            else:
                if t_heap == inf or t_heap >= stop_at:
                    break
                if nxt >= n and drain and t_heap >= horizon and n_waiting == 0 and in_call == 0:
                    break
                t, token, kind, a, b = hpop(heap)
                now = t
                events += 1
                if kind == _HANGUP:
                    in_call -= 1
                    wrap = wrap_of[b][bridge_queue[a]] if has_wrap[b] else 0.0
                    if wrap > 0 and on_shift[b]:
                        if busy_state[b]:
                            busy_state[b] = 3  # on call -> wrap-up: still busy
                        else:
                            agent_state(b, t, 3)
                        seq += 1
                        hpush(heap, (t + wrap, seq, _WRAP_END, b, 0))
                    elif busy_state[b]:  # _agent_state(b, t, 0), inlined (kept: see above)
                        busy_state[b] = 0
                        # _Accounts.add(True, b, busy_since[b], t), inlined
                        x = busy_since[b]
                        y = t
                        if x < lo:
                            x = lo
                        if y > hi:
                            y = hi
                        if y > x:
                            busy_total[b] += y - x
                            row = busy_rows[b]
                            k = int(x // width)
                            while x < y:
                                end = (k + 1) * width
                                if end > y:
                                    end = y
                                row[k] += end - x
                                x = end
                                k += 1
                        if not on_shift[b] or paused[b]:
                            staffing(b, t)
                    ev = new(CallEnded, (t, cids[a]))
                elif kind == _ANSWER:
                    if ring_token[b] == token and waiting_flag[a]:
                        ev = new(OfferAnswered, (t, cids[a], agents[b]))
                    else:
                        continue
                elif kind == _TICK:
                    if t == tick_at:
                        tick_at = inf
                        ev = new(Tick, (t,))
                    else:
                        continue
                elif kind == _ABANDON:
                    if waiting_flag[a]:  # _leave_queue(a, t, ABANDONED), inlined (kept: above)
                        waiting_flag[a] = 0
                        if n_waiting and t > q_last:
                            area_total += n_waiting * (t - q_last)
                            k = int(q_last // width)  # _add_area, inlined for one interval
                            if k < n_int and t <= (k + 1) * width:
                                queue_area[k] += n_waiting * (t - q_last)
                            else:
                                _add_area(queue_area, width, n_int, n_waiting, q_last, t)
                        q_last = t
                        n_waiting -= 1
                        w = t - entry[a]
                        wait[a] = w
                        wait_total += w
                        outcome[a] = ABANDONED
                        ev = new(CallAbandoned, (t, cids[a]))
                    else:
                        continue
                elif kind == _WRAP_END:
                    if busy_state[a] == 3:
                        agent_state(a, t, 0)
                    continue
                elif kind == _LOGIN:
                    on_shift[a] = True
                    paused[a] = False
                    staffing(a, t)
                    ev = AgentLoggedIn(at=t, agent_id=AgentId(agents[a]))
                elif kind == _LOGOUT:
                    on_shift[a] = False
                    staffing(a, t)
                    ev = AgentLoggedOut(at=t, agent_id=AgentId(agents[a]))
                elif kind == _BREAK:
                    if not on_shift[a]:
                        continue
                    paused[a] = True
                    staffing(a, t)
                    ev = AgentPaused(at=t, agent_id=AgentId(agents[a]), reason="break")
                elif kind in (_READY, _RONA_READY) and on_shift[a] and paused[a]:
                    paused[a] = False
                    staffing(a, t)
                    ev = AgentReady(at=t, agent_id=AgentId(agents[a]))
                else:
                    continue
            # --- feed ``ev`` to the engine, carry out its actions and the follow-ups they cause
            # (``pending``, in order: e.g. an immediate answer to an offer)
            e = ev
            p_next = 0
            while True:
                actions: list[Any] = handle(e)  # dispatched on the exact type below
                engine_calls += 1
                if trace is not None:
                    trace.append((e.at, e, list(actions)))
                for act in actions:
                    tp = type(act)
                    if tp is OfferCall:
                        # ring the agent: answered (now or later) or rings out
                        i = int(act[0])
                        j = agent_index[act[1]]
                        if entry[i] == t and waited[i]:
                            waited[i] = False
                        seq += 1
                        ring_token[j] = seq
                        ring_call[j] = i
                        if busy_state[j] == 0:
                            if on_shift[j] and not paused[j]:
                                busy_state[j] = 1  # staffed either way: only the busy span starts
                                busy_since[j] = t
                            else:
                                agent_state(j, t, 1)
                        p = rona_p[j]
                        if p > 0.0 and rona_u[j].next() < p:
                            continue  # rings out: the engine's ring timeout withdraws the offer
                        if answer_zero[j]:
                            pending.append(new(OfferAnswered, (t, act[0], act[1])))
                            continue
                        delay = answer[j].next()
                        if delay < act[3]:
                            hpush(heap, (t + delay, seq, _ANSWER, i, j))
                    elif tp is BridgeCall:
                        i = int(act[0])
                        j = agent_index[act[1]]
                        if waiting_flag[i]:  # _leave_queue(i, t, ANSWERED), inlined (kept)
                            waiting_flag[i] = 0
                            if n_waiting and t > q_last:
                                area_total += n_waiting * (t - q_last)
                                k = int(q_last // width)  # _add_area, inlined for one interval
                                if k < n_int and t <= (k + 1) * width:
                                    queue_area[k] += n_waiting * (t - q_last)
                                else:
                                    _add_area(queue_area, width, n_int, n_waiting, q_last, t)
                            q_last = t
                            n_waiting -= 1
                            w = t - entry[i]
                            wait[i] = w
                            wait_total += w
                            outcome[i] = ANSWERED
                        agent_of[i] = j
                        bridge_queue[i] = act[2]
                        ring_token[j] = -1
                        ring_call[j] = -1
                        if busy_state[j]:
                            busy_state[j] = 2  # reserved -> on call: still busy
                        else:
                            agent_state(j, t, 2)
                        in_call += 1
                        seq += 1
                        hpush(heap, (t + handle_time[i], seq, _HANGUP, i, j))
                    elif tp is CancelOffer:
                        j = agent_index[act.agent_id]
                        if ring_call[j] == int(act.call_id):
                            ring_token[j] = -1
                            ring_call[j] = -1
                            if busy_state[j] == 1:
                                agent_state(j, t, 0)
                    elif tp is SendToVoicemail or tp is RejectCall:
                        i = int(act.call_id)
                        if waiting_flag[i]:  # _leave_queue(i, t, ...), inlined (kept)
                            waiting_flag[i] = 0
                            if n_waiting and t > q_last:
                                area_total += n_waiting * (t - q_last)
                                k = int(q_last // width)  # _add_area, inlined for one interval
                                if k < n_int and t <= (k + 1) * width:
                                    queue_area[k] += n_waiting * (t - q_last)
                                else:
                                    _add_area(queue_area, width, n_int, n_waiting, q_last, t)
                            q_last = t
                            n_waiting -= 1
                            w = t - entry[i]
                            wait[i] = w
                            wait_total += w
                            outcome[i] = VOICEMAIL if tp is SendToVoicemail else REJECTED
                    elif tp is PauseAgent:
                        j = agent_index[act.agent_id]
                        paused[j] = True
                        staffing(j, t)
                        if act.reason == "rona":
                            seq += 1
                            hpush(heap, (t + rona_ready[j], seq, _RONA_READY, j, 0))
                if p_next < len(pending):
                    e = pending[p_next]
                    p_next += 1
                    continue
                if p_next:
                    pending.clear()
                break
            d = next_deadline()
            if d is not None and d < tick_at:
                tick_at = d
                seq += 1
                hpush(heap, (d if d > t else t, seq, _TICK, 0, 0))
            # a caller answered at once (the common case) needs no abandonment event
            if arrived >= 0 and waiting_flag[arrived]:
                pat = patience[arrived]
                if pat < inf:
                    seq += 1
                    hpush(heap, (t + pat, seq, _ABANDON, arrived, 0))
        self.seq = seq
        self.now = now
        self.n_waiting = n_waiting
        self.q_last = q_last
        self.queue_area_total = area_total
        self.wait_total = wait_total
        self.in_call = in_call
        self.tick_at = tick_at
        self.events = events
        self.engine_calls = engine_calls
        end = self.now
        self._queue_change(end, 0)
        for j in range(len(agents)):
            if self.busy_state[j]:
                self.accounts.add(True, j, self.busy_since[j], end)
            since = self.staffed_since[j]
            if since == since:
                self.accounts.add(False, j, since, max(end, horizon))
        return RunResult(
            replication=self.replication,
            window=self.window,
            interval_seconds=self.width,
            queues=self.queues,
            agents=agents,
            entry=self.callers.entry,
            queue_idx=np.asarray([self.queue_index[q] for q in queues], dtype=np.int64),
            source=self.callers.source,
            outcome=np.asarray(self.outcome, dtype=np.int8),
            wait=np.asarray(self.wait, dtype=float),
            waited=np.asarray(self.waited, dtype=bool),
            agent_idx=np.asarray(self.agent_of, dtype=np.int64),
            staffed=np.asarray(self.accounts.staffed),
            busy=np.asarray(self.accounts.busy),
            staffed_by_interval=np.asarray(self.accounts.staffed_by_interval).reshape(
                len(agents), self.n_intervals
            ),
            busy_by_interval=np.asarray(self.accounts.busy_by_interval).reshape(
                len(agents), self.n_intervals
            ),
            queue_area_by_interval=np.asarray(self.queue_area),
            queue_area_total=self.queue_area_total,
            wait_total=self.wait_total,
            end_time=end,
            events=self.events,
            engine_calls=self.engine_calls,
        )
