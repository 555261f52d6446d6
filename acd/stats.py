"""Contact-center statistics as a pure fold over the engine's log records.

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

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
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
