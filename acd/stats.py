"""Contact-center statistics as a pure fold over the engine's log records.

Two folds: :class:`StatsAccumulator` (below: running totals since start, every common
service-level variant, for the metrics) and :class:`DayFold` (at the end: one day's figures per
interval with the simulator's definitions, for the supervisors' live statistics; the shared
ratios :func:`service_level`, :func:`abandon_rate` and :func:`occupancy` are used by ``sim.stats``
too).

``StatsAccumulator.apply(record)`` folds one :class:`acd.model.LogRecord`;
``StatsAccumulator.from_records(records)`` rebuilds the same figures from a stored log, so the live
wallboard and history come from one stream and survive restarts (no reset on reload, no cron).

Counting rules (per queue, per skill, per interval, and in total):

* A call is **offered** to a queue when it joins it (``call_queued``). It **finishes** in that queue
  as exactly one of: answered, abandoned, overflowed (to another queue, where it is offered again),
  voicemail, left (rejected after waiting: max wait without target, last agent left). Figures are
  attributed to the interval in which the call joined the queue (``interval_seconds``, default 900).
* **Refused** calls (queue full, no agents, unknown queue) never joined and are counted apart.
* ``T`` is the queue's ``service_level_seconds`` and ``S`` its ``short_abandon_seconds`` *as they
  were when the call joined* (the engine writes them into ``call_queued``), so editing them never
  rewrites history.
* Waits are measured from joining the queue.

Service level, every common definition (``finished`` = answered + abandoned + overflowed +
voicemail + left):

* ``sl_offered``       = answered within T / finished (the strict definition, Asterisk's SL2-like);
* ``sl_answered``      = answered within T / answered;
* ``sl_excl_short``    = answered within T / (finished - short abandons);
* ``sl_abandon_neutral`` = answered within T / (finished - abandoned within T);
* ``sl_abandon_positive`` = (answered within T + abandoned within T) / finished.

Also: ``asa`` = total wait of answered calls / answered; ``abandon_rate`` = abandoned / finished;
``abandon_rate_excl_short`` = (abandoned - short) / (finished - short); ``avg_talk``.

Agents: seconds per state (``idle``, ``reserved``, ``on_call``, ``wrap_up``, ``paused``,
``logged_out`` excluded), offers, answers, no-answers, rejects; **occupancy** = (reserved + on_call
+ wrap_up) / (idle + reserved + on_call + wrap_up). State time is split across intervals.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from itertools import pairwise
from typing import Any

from acd.model import LogRecord

_BUSY = ("reserved", "on_call", "wrap_up")


@dataclass(slots=True)
class CallFigures:
    """Counters for one queue / skill / interval; derived rates via :meth:`as_dict`."""

    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    abandoned_in_sl: int = 0
    short_abandoned: int = 0
    overflowed: int = 0
    voicemail: int = 0
    left: int = 0
    refused: int = 0
    wait_answered: float = 0.0
    wait_abandoned: float = 0.0
    max_wait_answered: float = 0.0
    talk: float = 0.0
    ended: int = 0

    @property
    def finished(self) -> int:
        return self.answered + self.abandoned + self.overflowed + self.voicemail + self.left

    def as_dict(self) -> dict[str, float | int | None]:
        """Counters plus derived figures (None where the denominator is 0)."""
        out: dict[str, float | int | None] = {f.name: getattr(self, f.name) for f in fields(self)}
        fin = self.finished
        out["finished"] = fin
        out["sl_offered"] = _ratio(self.answered_in_sl, fin)
        out["sl_answered"] = _ratio(self.answered_in_sl, self.answered)
        out["sl_excl_short"] = _ratio(self.answered_in_sl, fin - self.short_abandoned)
        out["sl_abandon_neutral"] = _ratio(self.answered_in_sl, fin - self.abandoned_in_sl)
        out["sl_abandon_positive"] = _ratio(self.answered_in_sl + self.abandoned_in_sl, fin)
        out["asa"] = _ratio(self.wait_answered, self.answered)
        out["abandon_rate"] = _ratio(self.abandoned, fin)
        out["abandon_rate_excl_short"] = _ratio(
            self.abandoned - self.short_abandoned, fin - self.short_abandoned
        )
        out["avg_talk"] = _ratio(self.talk, self.ended)
        return out


@dataclass(slots=True)
class AgentFigures:
    """Counters and state seconds for one agent (optionally within one interval)."""

    offers: int = 0
    answered: int = 0
    no_answer: int = 0
    rejected: int = 0
    talk: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)

    def occupancy(self) -> float | None:
        busy = sum(self.seconds.get(s, 0.0) for s in _BUSY)
        return _ratio(busy, busy + self.seconds.get("idle", 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "offers": self.offers,
            "answered": self.answered,
            "no_answer": self.no_answer,
            "rejected": self.rejected,
            "talk": self.talk,
            "seconds": dict(sorted(self.seconds.items())),
            "occupancy": self.occupancy(),
        }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


@dataclass(slots=True)
class _Pending:
    queue: str
    bucket: float
    skills: tuple[str, ...]
    sl: float
    short: float


class StatsAccumulator:
    """Folds log records into queue, skill, interval and agent figures. See the module docstring."""

    def __init__(self, *, interval_seconds: float = 900.0) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be > 0")
        self.interval_seconds = interval_seconds
        self.total = CallFigures()
        self.queues: dict[str, CallFigures] = {}
        self.skills: dict[str, CallFigures] = {}
        self.intervals: dict[tuple[float, str], CallFigures] = {}
        self.agents: dict[str, AgentFigures] = {}
        self.agent_intervals: dict[tuple[float, str], AgentFigures] = {}
        self.records = 0
        self.last_at: float | None = None
        self._pending: dict[str, _Pending] = {}
        self._answered: dict[str, _Pending] = {}
        self._agent_state: dict[str, tuple[str, float]] = {}

    @classmethod
    def from_records(
        cls, records: Iterable[LogRecord], *, interval_seconds: float = 900.0
    ) -> StatsAccumulator:
        """Rebuild from a stored log (e.g. after a restart)."""
        acc = cls(interval_seconds=interval_seconds)
        for r in records:
            acc.apply(r)
        return acc

    # --- folding ---------------------------------------------------------------------------------

    def apply(self, record: LogRecord) -> None:
        """Fold one record; records must come in log order."""
        self.records += 1
        self.last_at = record.at
        kind = record.kind
        d = record.data
        cid = record.call_id
        if kind == "call_queued" and cid is not None and record.queue is not None:
            p = _Pending(
                queue=record.queue,
                bucket=self._bucket(record.at),
                skills=tuple(sorted(d.get("skills", {}))),
                sl=float(d.get("sl", 20.0)),
                short=float(d.get("short", 5.0)),
            )
            self._pending[cid] = p
            for f in self._targets(p):
                f.offered += 1
        elif kind == "call_refused" and record.queue is not None:
            p = _Pending(
                queue=record.queue,
                bucket=self._bucket(record.at),
                skills=tuple(sorted(d.get("skills", {}))),
                sl=0.0,
                short=0.0,
            )
            for f in self._targets(p):
                f.refused += 1
        elif kind == "call_answered" and cid is not None:
            p_ = self._pending.pop(cid, None)
            if p_ is not None:
                waited = float(d.get("waited", 0.0))
                in_sl = waited <= p_.sl
                for f in self._targets(p_):
                    f.answered += 1
                    f.wait_answered += waited
                    f.max_wait_answered = max(f.max_wait_answered, waited)
                    if in_sl:
                        f.answered_in_sl += 1
                self._answered[cid] = p_
            if record.agent_id is not None:
                self._agent_count(record.agent_id, record.at, "answered", 1)
        elif kind == "call_abandoned" and cid is not None:
            p_ = self._pending.pop(cid, None)
            if p_ is not None:
                waited = float(d.get("waited", 0.0))
                for f in self._targets(p_):
                    f.abandoned += 1
                    f.wait_abandoned += waited
                    if waited <= p_.sl:
                        f.abandoned_in_sl += 1
                    if waited < p_.short:
                        f.short_abandoned += 1
        elif kind in ("call_overflowed", "call_voicemail", "call_left") and cid is not None:
            p_ = self._pending.pop(cid, None)
            if p_ is not None:
                for f in self._targets(p_):
                    if kind == "call_overflowed":
                        f.overflowed += 1
                    elif kind == "call_voicemail":
                        f.voicemail += 1
                    else:
                        f.left += 1
        elif kind == "call_ended" and cid is not None:
            p_ = self._answered.pop(cid, None)
            talk = float(d.get("talk", 0.0))
            if p_ is not None:
                for f in self._targets(p_):
                    f.talk += talk
                    f.ended += 1
            if record.agent_id is not None:
                self._agent_count(record.agent_id, record.at, "talk", talk)
        elif kind == "call_offered" and record.agent_id is not None:
            self._agent_count(record.agent_id, record.at, "offers", 1)
        elif kind == "offer_cancelled" and record.agent_id is not None:
            reason = d.get("reason")
            if reason == "no_answer":
                self._agent_count(record.agent_id, record.at, "no_answer", 1)
            elif reason == "rejected":
                self._agent_count(record.agent_id, record.at, "rejected", 1)
        elif kind == "agent_state" and record.agent_id is not None:
            self._agent_transition(record.agent_id, str(d.get("state")), record.at)

    def _bucket(self, at: float) -> float:
        return math.floor(at / self.interval_seconds) * self.interval_seconds

    def _targets(self, p: _Pending) -> list[CallFigures]:
        out = [self.total]
        out.append(self.queues.setdefault(p.queue, CallFigures()))
        out.append(self.intervals.setdefault((p.bucket, p.queue), CallFigures()))
        for s in p.skills:
            out.append(self.skills.setdefault(s, CallFigures()))
        return out

    def _agent_count(self, agent_id: str, at: float, name: str, amount: float) -> None:
        """Add to an agent counter, in total and in the interval of ``at``."""
        for f in (
            self.agents.setdefault(agent_id, AgentFigures()),
            self.agent_intervals.setdefault((self._bucket(at), agent_id), AgentFigures()),
        ):
            setattr(f, name, getattr(f, name) + amount)

    def _agent_transition(self, agent_id: str, state: str, at: float) -> None:
        prev = self._agent_state.get(agent_id)
        if prev is not None:
            self._add_seconds(agent_id, prev[0], prev[1], at)
        self._agent_state[agent_id] = (state, at)

    def _add_seconds(self, agent_id: str, state: str, start: float, end: float) -> None:
        if state == "logged_out" or end <= start:
            return
        total = self.agents.setdefault(agent_id, AgentFigures())
        total.seconds[state] = total.seconds.get(state, 0.0) + (end - start)
        t = start
        step = self.interval_seconds
        while t < end:
            bucket = self._bucket(t)
            upto = min(end, bucket + step)
            if upto <= t:  # float edge: move to the next bucket
                upto = min(end, bucket + 2 * step)
            f = self.agent_intervals.setdefault((bucket, agent_id), AgentFigures())
            f.seconds[state] = f.seconds.get(state, 0.0) + (upto - t)
            t = upto

    # --- reading ---------------------------------------------------------------------------------

    def agent_figures(self, agent_id: str, *, now: float | None = None) -> AgentFigures:
        """An agent's totals, including the state it is in up to ``now`` (if given)."""
        base = self.agents.get(agent_id, AgentFigures())
        out = AgentFigures(
            offers=base.offers,
            answered=base.answered,
            no_answer=base.no_answer,
            rejected=base.rejected,
            talk=base.talk,
            seconds=dict(base.seconds),
        )
        cur = self._agent_state.get(agent_id)
        if now is not None and cur is not None and cur[0] != "logged_out" and now > cur[1]:
            out.seconds[cur[0]] = out.seconds.get(cur[0], 0.0) + (now - cur[1])
        return out

    def summary(self, *, now: float | None = None) -> dict[str, Any]:
        """Everything as plain data (JSON-ready; interval keys become ``"start|name"``)."""
        agent_ids = sorted(set(self.agents) | set(self._agent_state))
        return {
            "total": self.total.as_dict(),
            "queues": {k: v.as_dict() for k, v in sorted(self.queues.items())},
            "skills": {k: v.as_dict() for k, v in sorted(self.skills.items())},
            "intervals": {
                f"{b:g}|{q}": v.as_dict() for (b, q), v in sorted(self.intervals.items())
            },
            "agents": {a: self.agent_figures(a, now=now).as_dict() for a in agent_ids},
            "agent_intervals": {
                f"{b:g}|{a}": v.as_dict() for (b, a), v in sorted(self.agent_intervals.items())
            },
            "waiting": len(self._pending),
            "talking": len(self._answered),
        }


# --- the live figures of one day, with the simulator's definitions -------------------------------
#
# ``DayFold`` folds the same log records into the figures the supervisors' API serves (per queue,
# per interval of one day, per agent). Unlike ``StatsAccumulator`` above it uses the simulator's
# definitions (``sim/stats.py``, docs/simulator.md), so a what-if prediction and the live figure
# mean the same thing; ``sim.stats`` takes the shared ratios below from here. The calendar (which
# epoch seconds a local day and its 15-minute intervals cover) is the caller's: this module gets
# the boundaries as numbers (acd.stats is pure: no clock, no datetime).

BUSY_LABELS = _BUSY
"""Agent labels that count as busy: ringing (``reserved``), talking, wrap-up."""
STAFFED_LABELS = ("idle", *_BUSY)
"""Agent labels that count as staffed: ready or busy (not paused, not logged out)."""


def service_level(answered_within_target: float, offered: float) -> float | None:
    """Calls answered within the target / calls offered (None when none was offered).

    Abandoned, voicemail, rejected calls and calls still waiting are all in the denominator: the
    simulator's definition (``sim.stats.caller_figures``), Asterisk's and Erlang C's."""
    return _ratio(answered_within_target, offered)


def abandon_rate(abandoned: float, offered: float) -> float | None:
    """Abandoned / offered (short abandons included: the simulator has no such notion)."""
    return _ratio(abandoned, offered)


def occupancy(busy_seconds: float, staffed_seconds: float) -> float | None:
    """Busy time (ringing, talking, wrap-up) / staffed time (ready or busy)."""
    return _ratio(busy_seconds, staffed_seconds)


@dataclass(slots=True)
class CallCounts:
    """Counters of the calls offered to one queue in one interval (or a sum of them)."""

    offered: int = 0
    """Calls that entered the queue (refused calls included: they were offered and rejected)."""
    answered: int = 0
    answered_within_target: int = 0
    """Answered after waiting at most the queue's ``service_level_seconds`` (as it was then)."""
    abandoned: int = 0
    short_abandoned: int = 0
    """Abandoned in less than ``short_abandon_seconds`` (counted in ``abandoned`` as well)."""
    voicemail: int = 0
    rejected: int = 0
    """Refused on arrival (queue full, no agents), or left at max wait with nowhere to go."""
    wait_answered: float = 0.0
    """Total wait of the answered calls (from entering the queue to the answer)."""
    longest_wait_answered: float = 0.0
    handled: int = 0
    """Answered calls whose talk and wrap-up are over."""
    talk: float = 0.0
    """Talk seconds of the handled calls."""
    wrap_up: float = 0.0
    """Wrap-up seconds of the handled calls."""

    @property
    def unfinished(self) -> int:
        """Offered calls without an outcome yet (still waiting, or lost to a restart)."""
        return self.offered - self.answered - self.abandoned - self.voicemail - self.rejected

    @property
    def service_level(self) -> float | None:
        return service_level(self.answered_within_target, self.offered)

    @property
    def abandon_rate(self) -> float | None:
        return abandon_rate(self.abandoned, self.offered)

    @property
    def asa(self) -> float | None:
        """Average speed of answer: mean wait of the answered calls (ringing time counts)."""
        return _ratio(self.wait_answered, self.answered)

    @property
    def aht(self) -> float | None:
        """Average handle time: (talk + wrap-up) / handled calls."""
        return _ratio(self.talk + self.wrap_up, self.handled)

    def add(self, other: CallCounts) -> None:
        for f in fields(self):
            if f.name == "longest_wait_answered":
                self.longest_wait_answered = max(
                    self.longest_wait_answered, other.longest_wait_answered
                )
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class AgentTime:
    """One agent's (or a pool of agents') time and counters in an interval or a day."""

    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per label (``idle``, ``reserved``, ``on_call``, ``wrap_up``, ``paused``)."""
    pauses: dict[str, float] = field(default_factory=dict)
    """Paused seconds per reason (``""`` when none was given)."""
    offers: int = 0
    answered: int = 0
    """Calls answered (queued work such as voicemail messages and callbacks apart)."""
    work_answered: int = 0
    """Queued work items (voicemail messages, callback requests) taken."""
    missed: int = 0
    """Offers that rang out unanswered (``offer_cancelled`` with reason ``no_answer``)."""
    rejected: int = 0
    """Offers the agent declined."""

    @property
    def busy(self) -> float:
        return sum(self.seconds.get(s, 0.0) for s in BUSY_LABELS)

    @property
    def staffed(self) -> float:
        return sum(self.seconds.get(s, 0.0) for s in STAFFED_LABELS)

    @property
    def occupancy(self) -> float | None:
        return occupancy(self.busy, self.staffed)

    def add(self, other: AgentTime) -> None:
        for k, v in other.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        for k, v in other.pauses.items():
            self.pauses[k] = self.pauses.get(k, 0.0) + v
        self.offers += other.offers
        self.answered += other.answered
        self.work_answered += other.work_answered
        self.missed += other.missed
        self.rejected += other.rejected


@dataclass(slots=True)
class _DayCall:
    queue: str
    index: int
    entered: float
    sl: float
    short: float


@dataclass(slots=True)
class _AgentNow:
    label: str = "logged_out"
    reason: str = ""
    since: float = 0.0
    handling: tuple[_DayCall, float] | None = None
    """The call whose talk just ended and its talk seconds, until its wrap-up is over."""
    wrap_since: float | None = None


class DayFold:
    """Folds engine log records into the figures of one day (any period cut into intervals).

    ``boundaries`` are the intervals' edges in epoch seconds, increasing: interval ``i`` is
    ``[boundaries[i], boundaries[i + 1])``. Records come in log order; records from before the day
    only set the agents' states and mark the calls already under way (which belong to the day
    they entered); records after it only finish the day's calls.

    Attribution (the simulator's convention, and the usual one for queue reports):

    * a **call** counts once, under the queue it entered first and in the interval it entered
      (its outcome is added there when it comes, so an interval's call figures can still change
      after it ends, until its last call finishes); an overflowed call is followed to its
      outcome, its wait measured from its first entry; queued work (voicemail messages, callback
      requests) is not a call and is left out of the call figures;
    * an **agent's** time is split across the intervals it spans; counters (offers, answers,
      misses) go to the interval of the record.

    A new engine run (the engine's own ``seq`` starting again: a restart) logs every agent out
    at the last record of the previous run and leaves the calls then under way unfinished.
    """

    def __init__(self, boundaries: Sequence[float]) -> None:
        edges = [float(b) for b in boundaries]
        if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
            raise ValueError("boundaries: at least two, strictly increasing")
        self.boundaries: tuple[float, ...] = tuple(edges)
        self.start = edges[0]
        self.end = edges[-1]
        self.calls: dict[tuple[str, int], CallCounts] = {}
        """(queue, interval index) -> counters of the calls that entered it then."""
        self.agents: dict[tuple[str, int], AgentTime] = {}
        """(agent, interval index) -> time and counters (closed spans only; see agent_time)."""
        self.records = 0
        self.last_at: float | None = None
        self.restarts = 0
        self._calls: dict[str, _DayCall] = {}
        """The day's calls without an outcome yet."""
        self._talking: dict[str, _DayCall] = {}
        """The day's answered calls whose talk has not ended."""
        self._elsewhere: set[str] = set()
        """Calls under way that entered before (or after) the day: their records are ignored."""
        self._work: dict[str, str] = {}
        """Queued work items (not calls) under way: call id -> kind."""
        self._agent: dict[str, _AgentNow] = {}
        self._engine_seq = 0

    @classmethod
    def following(cls, previous: DayFold, boundaries: Sequence[float]) -> DayFold:
        """The next day's fold, carrying the agents' states (and the engine run) over."""
        fold = cls(boundaries)
        fold._engine_seq = previous._engine_seq
        fold.last_at = previous.last_at
        for aid, a in previous._agent.items():
            fold._agent[aid] = _AgentNow(label=a.label, reason=a.reason, since=a.since)
        fold._elsewhere = set(previous._elsewhere) | set(previous._calls) | set(previous._talking)
        fold._work = dict(previous._work)
        return fold

    # --- folding ---------------------------------------------------------------------------------

    def index(self, at: float) -> int | None:
        """The interval ``at`` falls in, None outside the day."""
        if at < self.start or at >= self.end:
            return None
        return bisect.bisect_right(self.boundaries, at) - 1

    def apply(self, record: LogRecord) -> None:
        """Fold one record (in log order)."""
        if record.seq <= self._engine_seq and self.last_at is not None:
            self._restart(self.last_at)
        self._engine_seq = record.seq
        self.records += 1
        self.last_at = record.at
        kind = record.kind
        cid = record.call_id
        aid = record.agent_id
        d = record.data
        at = record.at
        c: _DayCall | None
        if kind == "agent_state" and aid is not None:
            self._transition(aid, str(d.get("state")), str(d.get("reason") or ""), at)
            return
        if cid is None:
            return
        if kind in ("call_queued", "call_refused"):
            if d.get("kind", "call") != "call":
                self._work[cid] = str(d.get("kind"))
                return
            if cid not in self._calls and cid not in self._elsewhere:
                i = self.index(at)
                if i is None or record.queue is None:
                    self._elsewhere.add(cid)
                    return
                c = _DayCall(
                    queue=record.queue,
                    index=i,
                    entered=at,
                    sl=float(d.get("sl", 20.0)),
                    short=float(d.get("short", 5.0)),
                )
                self._calls[cid] = c
                self._counts(c).offered += 1
            if kind == "call_refused":
                to = d.get("to")
                if to is None:
                    self._finish(cid, "rejected")
                elif to == "voicemail":
                    self._finish(cid, "voicemail")
                # else it overflows to another queue: its next record tells
        elif kind == "call_answered":
            if aid is not None:
                work = self._work.get(cid)
                self._agent_count(aid, at, "work_answered" if work else "answered")
            c = self._calls.pop(cid, None)
            if c is not None:
                waited = at - c.entered
                f = self._counts(c)
                f.answered += 1
                f.wait_answered += waited
                f.longest_wait_answered = max(f.longest_wait_answered, waited)
                if waited <= c.sl:
                    f.answered_within_target += 1
                self._talking[cid] = c
            else:
                self._elsewhere.discard(cid)
        elif kind == "call_abandoned":
            c = self._finish(cid, "abandoned")
            if c is not None and at - c.entered < c.short:
                self._counts(c).short_abandoned += 1
        elif kind == "call_voicemail":
            self._finish(cid, "voicemail")
        elif kind == "call_left":
            self._finish(cid, "rejected")
        elif kind == "call_ended":
            self._work.pop(cid, None)
            c = self._talking.pop(cid, None)
            if c is not None and aid is not None:
                a = self._agent.setdefault(aid, _AgentNow(since=at))
                a.handling = (c, float(d.get("talk", 0.0)))
        elif kind == "call_offered" and aid is not None:
            self._agent_count(aid, at, "offers")
        elif kind == "offer_cancelled" and aid is not None:
            reason = d.get("reason")
            if reason == "no_answer":
                self._agent_count(aid, at, "missed")
            elif reason == "rejected":
                self._agent_count(aid, at, "rejected")

    def _counts(self, c: _DayCall) -> CallCounts:
        key = (c.queue, c.index)
        f = self.calls.get(key)
        if f is None:
            f = self.calls[key] = CallCounts()
        return f

    def _finish(self, cid: str, outcome: str) -> _DayCall | None:
        self._work.pop(cid, None)
        c = self._calls.pop(cid, None)
        if c is None:
            self._elsewhere.discard(cid)
            return None
        f = self._counts(c)
        setattr(f, outcome, getattr(f, outcome) + 1)
        return c

    def _agent_count(self, aid: str, at: float, name: str) -> None:
        i = self.index(at)
        if i is None:
            return
        f = self.agents.get((aid, i))
        if f is None:
            f = self.agents[(aid, i)] = AgentTime()
        setattr(f, name, getattr(f, name) + 1)

    def _transition(self, aid: str, label: str, reason: str, at: float) -> None:
        a = self._agent.get(aid)
        if a is None:
            a = self._agent[aid] = _AgentNow(since=at)
        else:
            self._span(aid, a.label, a.reason, a.since, at)
        if a.handling is not None:
            if a.wrap_since is None and label == "wrap_up":
                a.wrap_since = at
            else:
                c, talk = a.handling
                f = self._counts(c)
                f.handled += 1
                f.talk += talk
                f.wrap_up += at - a.wrap_since if a.wrap_since is not None else 0.0
                a.handling = None
                a.wrap_since = None
        a.label = label
        a.reason = reason if label == "paused" else ""
        a.since = at

    def _span(self, aid: str, label: str, reason: str, a: float, b: float) -> None:
        """Add ``[a, b)`` in ``label`` to the agent's intervals (clipped to the day)."""
        if label == "logged_out":
            return
        for i, lo, hi in self._pieces(a, b):
            f = self.agents.get((aid, i))
            if f is None:
                f = self.agents[(aid, i)] = AgentTime()
            _add_time(f, label, reason, hi - lo)

    def _pieces(self, a: float, b: float) -> Iterator[tuple[int, float, float]]:
        """``[a, b)`` cut at the interval boundaries, clipped to the day."""
        a = max(a, self.start)
        b = min(b, self.end)
        if b <= a:
            return
        edges = self.boundaries
        i = bisect.bisect_right(edges, a) - 1
        while a < b:
            hi = min(b, edges[i + 1])
            yield i, a, hi
            a = hi
            i += 1

    def _restart(self, at: float) -> None:
        """A new engine run: the old one's agents are logged out at its last record."""
        self.restarts += 1
        for aid in list(self._agent):
            self._transition(aid, "logged_out", "", at)
        # the old run's calls never finish: the day's stay offered and unfinished
        self._calls.clear()
        self._talking.clear()
        self._elsewhere.clear()
        self._work.clear()

    # --- reading ---------------------------------------------------------------------------------

    @property
    def n_intervals(self) -> int:
        return len(self.boundaries) - 1

    def settled(self, now: float) -> bool:
        """The day is over and every call of it has its outcome: the figures are final."""
        return now >= self.end and not self._calls

    def queues(self) -> set[str]:
        """The queues the day's calls entered."""
        return {q for q, _ in self.calls}

    def call_counts(self, queue: str | None = None, index: int | None = None) -> CallCounts:
        """Counters of one queue (None: all) in one interval (None: the whole day)."""
        out = CallCounts()
        for (q, i), f in self.calls.items():
            if (queue is None or q == queue) and (index is None or i == index):
                out.add(f)
        return out

    def agent_time(
        self, agents: Iterable[str] | None = None, index: int | None = None, *, now: float
    ) -> AgentTime:
        """Time and counters of the given agents (None: all) pooled, in one interval (None: the
        whole day), the state each is in now counted up to ``now``."""
        wanted = None if agents is None else set(agents)
        out = AgentTime()
        for (aid, i), f in self.agents.items():
            if (wanted is None or aid in wanted) and (index is None or i == index):
                out.add(f)
        for aid, a in self._agent.items():
            if a.label == "logged_out" or (wanted is not None and aid not in wanted):
                continue
            for i, lo, hi in self._pieces(a.since, now):
                if index is None or i == index:
                    _add_time(out, a.label, a.reason, hi - lo)
        return out

    def by_interval(
        self, *, queue: str | None = None, agents: Iterable[str] | None = None, now: float
    ) -> list[tuple[CallCounts, AgentTime]]:
        """Every interval's call counters (one queue, None: all) and pooled agent time (the given
        agents, None: all; the current states counted up to ``now``), in one pass over the fold
        (``call_counts`` and ``agent_time`` per interval would walk it once per interval)."""
        out = [(CallCounts(), AgentTime()) for _ in range(self.n_intervals)]
        for (q, i), f in self.calls.items():
            if queue is None or q == queue:
                out[i][0].add(f)
        wanted = None if agents is None else set(agents)
        for (aid, i), t in self.agents.items():
            if wanted is None or aid in wanted:
                out[i][1].add(t)
        for aid, a in self._agent.items():
            if a.label == "logged_out" or (wanted is not None and aid not in wanted):
                continue
            for i, lo, hi in self._pieces(a.since, now):
                _add_time(out[i][1], a.label, a.reason, hi - lo)
        return out

    def agent_label(self, agent_id: str) -> tuple[str, str, float] | None:
        """The agent's label, pause reason and since when, as of the last record."""
        a = self._agent.get(agent_id)
        return None if a is None else (a.label, a.reason, a.since)


def _add_time(f: AgentTime, label: str, reason: str, seconds: float) -> None:
    f.seconds[label] = f.seconds.get(label, 0.0) + seconds
    if label == "paused":
        f.pauses[reason] = f.pauses.get(reason, 0.0) + seconds
