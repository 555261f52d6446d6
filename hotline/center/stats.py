"""Live statistics: queue figures now and per 15-minute interval, an agent's own day.

The figures are folded (``acd.stats.DayFold``, the simulator's definitions) from the engine's
log **as stored** (``acd_log``, read on the case writer's thread after everything queued
before), never from what this process happened to see: so they are the same after a restart,
and the same whether the day was folded live or later from the store.

:class:`StatsView` owns the calendar, which the pure fold does not know:

* **Today** is the local calendar day of the server (the process's time zone: ``TZ`` or
  ``/etc/localtime``), midnight to midnight; its intervals are 15 minutes of wall time from
  local midnight (a day of a daylight-saving change has 92 or 100 of them). ``tz`` overrides
  it (tests).
* Reading: on first use the view finds, by a binary search over the log's sequence numbers,
  the first record of ``lookback_seconds`` (12 h) before today (the agents' states at midnight
  come from there: an agent who has not changed state for longer than that counts from their
  first change of the day); then each read folds only the records added since. Today's fold
  carries over into tomorrow's at midnight; yesterday's stays live until its last call
  finishes (its calls count in the interval they entered), then is kept as final.
* Another day is folded once from the store (from its start minus the look-back, up to the end
  of its last call or ``settle_seconds`` after midnight) and kept when final.

``snapshot()`` is the hook for periodic statistics ticks (the event stream publishes it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as wall_time
from typing import Protocol

from pydantic import BaseModel, Field

from acd.config import AcdConfig
from acd.model import AgentStatusView, LogRecord, QueueStatus
from acd.stats import AgentTime, CallCounts, DayFold
from acd.store import CaseStore
from acd.store.writer import AsyncCaseWriter

INTERVAL_SECONDS = 900.0
"""The reporting interval: 15 minutes (the industry's and the workforce planners' unit)."""


# -- the calendar -------------------------------------------------------------------------------


def local_midnight(day: date, tz: tzinfo | None) -> float:
    """Epoch seconds of ``day``'s 00:00 in ``tz`` (None: the process's local time zone)."""
    return datetime.combine(day, wall_time(0), tzinfo=tz).timestamp()


def day_boundaries(day: date, tz: tzinfo | None, width: float = INTERVAL_SECONDS) -> list[float]:
    """``day``'s interval edges in epoch seconds: local midnight, every ``width`` seconds after
    it, the next local midnight (the last interval is shorter when the day is not a multiple)."""
    start = local_midnight(day, tz)
    end = local_midnight(day + timedelta(days=1), tz)
    n = max(1, math.ceil((end - start) / width - 1e-9))
    return [start + k * width for k in range(n)] + [end]


def local_day(at: float, tz: tzinfo | None) -> date:
    """The local calendar day of epoch ``at``."""
    return datetime.fromtimestamp(at, tz).date()


def zone_name(tz: tzinfo | None, at: float) -> str:
    """The time zone's name for documents (``Europe/Paris``, ``UTC``; the abbreviation of the
    process's zone when only that is known)."""
    if tz is not None:
        return str(tz)
    return datetime.fromtimestamp(at).astimezone().tzname() or "local"


def seek_log(store: CaseStore, at: float) -> int:
    """The sequence number after which the log's records are at ``at`` or later (a binary
    search on ``read_log``: records are in time order), 0 for the whole log."""

    def first_after(seq: int) -> float | None:
        rows = store.read_log(seq, 1)
        return float(rows[0][1]["at"]) if rows else None

    first = first_after(0)
    if first is None or first >= at:
        return 0
    lo, hi = 0, 1  # first_after(lo) < at; find hi with first_after(hi) >= at or no record
    while True:
        t = first_after(hi)
        if t is None or t >= at:
            break
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        t = first_after(mid)
        if t is None or t >= at:
            hi = mid
        else:
            lo = mid
    return hi


# -- the API's models ---------------------------------------------------------------------------


class Figures(BaseModel):
    """Call and agent figures of a period (the simulator's definitions, docs/api.md)."""

    offered: int
    """Calls that entered the queue (counted once, under the queue they entered first)."""
    answered: int
    answered_within_target: int
    abandoned: int
    short_abandoned: int
    """Abandoned within the queue's ``short_abandon_seconds`` (also in ``abandoned``)."""
    voicemail: int
    rejected: int
    unfinished: int
    """Offered calls without an outcome yet (still waiting, or lost to a restart)."""
    service_level: float | None
    """answered_within_target / offered; None when nothing was offered."""
    asa_seconds: float | None
    """Average speed of answer: mean wait of the answered calls."""
    longest_wait_answered_seconds: float
    abandon_rate: float | None
    """abandoned / offered."""
    handled: int
    """Answered calls whose talk and wrap-up are over."""
    aht_seconds: float | None
    """Average handle time: (talk + wrap-up) / handled."""
    occupancy: float | None
    """busy / staffed seconds of the agents concerned (busy: ringing, talking, wrap-up)."""
    staffed_seconds: float
    busy_seconds: float


class AgentsByState(BaseModel):
    """A queue's member agents by their state now."""

    ready: int = 0
    ringing: int = 0
    on_call: int = 0
    wrap_up: int = 0
    paused: int = 0
    logged_out: int = 0


class QueueNow(BaseModel):
    queue: str
    service_level_seconds: float
    """The queue's service-level target (``[acd.queues.NAME] service_level_seconds``)."""
    waiting: int
    longest_wait_seconds: float
    """How long the oldest waiting call has waited (0 when none waits)."""
    agents: AgentsByState
    today: Figures


class StatsNow(BaseModel):
    """Every queue now: the live state and today's figures (since local midnight)."""

    at: datetime
    day: date
    day_start: datetime
    timezone: str
    queues: list[QueueNow]
    total: Figures
    """All queues and all agents together."""


class IntervalFigures(Figures):
    start: datetime
    end: datetime


class DayIntervals(BaseModel):
    """One day's figures per interval (up to the current one for today)."""

    queue: str | None
    """None: all queues together (and all agents)."""
    day: date
    timezone: str
    interval_seconds: float
    at: datetime
    final: bool
    """The day is over and all its calls have their outcome: these figures will not change."""
    intervals: list[IntervalFigures]
    total: Figures


class AgentToday(BaseModel):
    """One agent's own figures since local midnight."""

    agent_id: str
    day: date
    day_start: datetime
    at: datetime
    state: str
    """The agent's state now: ``logged_out``, ``idle`` (ready), ``paused``, ``reserved``
    (ringing), ``on_call``, ``wrap_up``."""
    offers: int
    answered: int
    """Calls answered (queued voicemail messages and callbacks: ``work_answered``)."""
    work_answered: int
    missed: int
    """Offers that rang out unanswered."""
    rejected: int
    """Offers declined."""
    talk_seconds: float
    wrap_up_seconds: float
    ringing_seconds: float
    ready_seconds: float
    pause_seconds: float
    pauses: dict[str, float] = Field(default_factory=dict)
    """Paused seconds by reason (``""``: no reason given)."""
    staffed_seconds: float
    """Ready or busy (logged in and not paused)."""
    occupancy: float | None


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def figures(calls: CallCounts, agents: AgentTime) -> Figures:
    return Figures(
        offered=calls.offered,
        answered=calls.answered,
        answered_within_target=calls.answered_within_target,
        abandoned=calls.abandoned,
        short_abandoned=calls.short_abandoned,
        voicemail=calls.voicemail,
        rejected=calls.rejected,
        unfinished=calls.unfinished,
        service_level=calls.service_level,
        asa_seconds=calls.asa,
        longest_wait_answered_seconds=calls.longest_wait_answered,
        abandon_rate=calls.abandon_rate,
        handled=calls.handled,
        aht_seconds=calls.aht,
        occupancy=agents.occupancy,
        staffed_seconds=agents.staffed,
        busy_seconds=agents.busy,
    )


_BY_STATE = {
    "idle": "ready",
    "reserved": "ringing",
    "on_call": "on_call",
    "wrap_up": "wrap_up",
    "paused": "paused",
    "logged_out": "logged_out",
}


def queue_members(config: AcdConfig) -> dict[str, list[str]]:
    """Queue -> the agents serving it: direct members and members of its groups and widening
    groups (the simulator's ``scopes_of``, so occupancy pools the same agents)."""
    out: dict[str, list[str]] = {}
    for name, q in config.queues.items():
        groups = set(q.groups) | {g for step in q.widening for g in step.add_groups}
        out[name] = [
            aid
            for aid, a in config.agents.items()
            if name in a.queues or bool(groups & set(a.groups))
        ]
    return out


# -- the view -----------------------------------------------------------------------------------


class EngineReads(Protocol):
    """What the view reads from the live engine (``acd.engine.AcdEngine``)."""

    @property
    def config(self) -> AcdConfig: ...
    def queue_status(self, queue: str) -> QueueStatus: ...
    def agent_status(self, agent_id: str) -> AgentStatusView: ...


class StatsView:
    """Queue and agent figures from the stored engine log. See the module docstring."""

    def __init__(
        self,
        writer: AsyncCaseWriter,
        engine: EngineReads,
        *,
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        interval_seconds: float = INTERVAL_SECONDS,
        lookback_seconds: float = 12 * 3600.0,
        settle_seconds: float = 6 * 3600.0,
        chunk: int = 5000,
    ) -> None:
        self.writer = writer
        self.engine = engine
        self.clock = clock
        self.tz = tz
        self.interval_seconds = interval_seconds
        self.lookback_seconds = lookback_seconds
        self.settle_seconds = settle_seconds
        self.chunk = chunk
        self._lock = asyncio.Lock()
        self._seq = 0
        """The last stored log sequence number folded."""
        self._live: dict[date, DayFold] = {}
        """Today's fold and earlier days' still waiting for calls to finish."""
        self._final: OrderedDict[date, DayFold] = OrderedDict()
        """Days whose figures are final (the most recent 62 asked for)."""

    # -- reading the store ---------------------------------------------------------------------

    def _bounds(self, day: date) -> list[float]:
        return day_boundaries(day, self.tz, self.interval_seconds)

    async def _read(self, since: int) -> list[tuple[int, dict[str, object]]]:
        chunk = self.chunk
        return await self.writer.run(lambda store: store.read_log(since, chunk))

    async def refresh(self) -> DayFold:
        """Fold what was logged since the last read; today's fold."""
        async with self._lock:
            now = self.clock()
            today = local_day(now, self.tz)
            if not self._live:
                bounds = self._bounds(today)
                start = bounds[0] - self.lookback_seconds
                self._seq = await self.writer.run(lambda store: seek_log(store, start))
                self._live[today] = DayFold(bounds)
            while True:
                rows = await self._read(self._seq)
                for seq, row in rows:
                    self._apply(LogRecord.from_dict(row), today)
                    self._seq = seq
                if len(rows) < self.chunk:
                    break
            self._roll_to(today)
            for day in sorted(self._live):
                fold = self._live[day]
                if day < today and (fold.settled(now) or now >= fold.end + self.settle_seconds):
                    self._keep(day, self._live.pop(day))
            return self._live[today]

    def _apply(self, record: LogRecord, today: date) -> None:
        latest = max(self._live)
        if latest < today and record.at >= self._live[latest].end:
            self._roll_to(min(today, local_day(record.at, self.tz)))
        for fold in self._live.values():
            fold.apply(record)

    def _roll_to(self, day: date) -> None:
        """Open the folds of the days up to ``day``, each carrying its eve's agent states."""
        latest = max(self._live)
        while latest < day:
            nxt = latest + timedelta(days=1)
            self._live[nxt] = DayFold.following(self._live[latest], self._bounds(nxt))
            latest = nxt

    def _keep(self, day: date, fold: DayFold) -> None:
        self._final[day] = fold
        self._final.move_to_end(day)
        while len(self._final) > 62:
            self._final.popitem(last=False)

    async def day(self, day: date) -> DayFold | None:
        """The fold of ``day`` (None for a day that has not begun)."""
        fold = await self.refresh()
        now = self.clock()
        if day in self._live:
            return self._live[day]
        if day in self._final:
            self._final.move_to_end(day)
            return self._final[day]
        if fold.start <= local_midnight(day, self.tz):
            return None  # after today
        return await self._fold_past(day, now)

    async def _fold_past(self, day: date, now: float) -> DayFold:
        """Fold a past day from the store (kept when final)."""
        fold = DayFold(self._bounds(day))
        start = fold.start - self.lookback_seconds
        stop = fold.end + self.settle_seconds
        seq = await self.writer.run(lambda store: seek_log(store, start))
        done = False
        while not done:
            rows = await self._read(seq)
            for row_seq, row in rows:
                record = LogRecord.from_dict(row)
                if record.at >= stop or fold.settled(record.at):
                    done = True
                    break
                fold.apply(record)
                seq = row_seq
            done = done or len(rows) < self.chunk
        if fold.settled(now) or now >= stop:
            self._keep(day, fold)
        return fold

    # -- the figures -------------------------------------------------------------------------

    def _members(self) -> dict[str, list[str]]:
        return queue_members(self.engine.config)

    async def snapshot(self) -> StatsNow:
        """Every queue now and today (the statistics tick)."""
        fold = await self.refresh()
        now = self.clock()
        config = self.engine.config
        members = queue_members(config)
        queues: list[QueueNow] = []
        for name, qc in config.queues.items():
            by_state = AgentsByState()
            for aid in members[name]:
                try:
                    word = self.engine.agent_status(aid).state
                except KeyError:
                    continue
                field = _BY_STATE[word]
                setattr(by_state, field, getattr(by_state, field) + 1)
            status = self.engine.queue_status(name)
            queues.append(
                QueueNow(
                    queue=name,
                    service_level_seconds=qc.service_level_seconds,
                    waiting=status.waiting,
                    longest_wait_seconds=status.longest_wait,
                    agents=by_state,
                    today=figures(fold.call_counts(name), fold.agent_time(members[name], now=now)),
                )
            )
        return StatsNow(
            at=_utc(now),
            day=local_day(fold.start, self.tz),
            day_start=_utc(fold.start),
            timezone=zone_name(self.tz, now),
            queues=queues,
            total=figures(fold.call_counts(), fold.agent_time(now=now)),
        )

    def known_queue(self, queue: str) -> bool:
        return queue in self.engine.config.queues or any(
            queue in f.queues() for f in (*self._live.values(), *self._final.values())
        )

    async def intervals(self, day: date | None = None, queue: str | None = None) -> DayIntervals:
        """``day``'s figures per interval (today when None) for ``queue`` (None: all)."""
        now = self.clock()
        day = day if day is not None else local_day(now, self.tz)
        fold = await self.day(day)
        now = self.clock()
        agents: Iterable[str] | None = None
        if queue is not None:
            agents = self._members().get(queue, [])
        out: list[IntervalFigures] = []
        total_calls, total_agents = CallCounts(), AgentTime()
        if fold is not None:
            rows = fold.by_interval(queue=queue, agents=agents, now=now)
            edges = fold.boundaries
            for i, (calls, times) in enumerate(rows):
                if edges[i] > now:
                    break
                f = figures(calls, times)
                out.append(
                    IntervalFigures(**f.model_dump(), start=_utc(edges[i]), end=_utc(edges[i + 1]))
                )
                total_calls.add(calls)
                total_agents.add(times)
        return DayIntervals(
            queue=queue,
            day=day,
            timezone=zone_name(self.tz, now),
            interval_seconds=self.interval_seconds,
            at=_utc(now),
            final=fold is not None and fold.settled(now),
            intervals=out,
            total=figures(total_calls, total_agents),
        )

    async def agent_today(self, agent_id: str) -> AgentToday:
        """The agent's own figures since local midnight."""
        fold = await self.refresh()
        now = self.clock()
        t = fold.agent_time([agent_id], now=now)
        try:
            state: str = self.engine.agent_status(agent_id).state
        except KeyError:
            state = "logged_out"
        s = t.seconds
        return AgentToday(
            agent_id=agent_id,
            day=local_day(fold.start, self.tz),
            day_start=_utc(fold.start),
            at=_utc(now),
            state=state,
            offers=t.offers,
            answered=t.answered,
            work_answered=t.work_answered,
            missed=t.missed,
            rejected=t.rejected,
            talk_seconds=s.get("on_call", 0.0),
            wrap_up_seconds=s.get("wrap_up", 0.0),
            ringing_seconds=s.get("reserved", 0.0),
            ready_seconds=s.get("idle", 0.0),
            pause_seconds=s.get("paused", 0.0),
            pauses=dict(sorted(t.pauses.items())),
            staffed_seconds=t.staffed,
            occupancy=t.occupancy,
        )


__all__ = [
    "INTERVAL_SECONDS",
    "AgentToday",
    "AgentsByState",
    "DayIntervals",
    "Figures",
    "IntervalFigures",
    "QueueNow",
    "StatsNow",
    "StatsView",
    "day_boundaries",
    "local_day",
    "local_midnight",
    "queue_members",
    "seek_log",
]
