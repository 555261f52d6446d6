"""The live event stream's core: numbered events, a ring buffer to resume from, filtered
subscriptions; and what the contact center publishes on it.

:class:`EventFeed` gives every published event the next sequence number (1, 2, 3 ...), the
time (the injected clock), a kind, its data and its :class:`Audience`; it keeps the last
``capacity`` events in a ring. A :class:`Subscription` is one reader, seen through a
:class:`Viewer` (who is reading, what they may see): the feed filters at publication, so a
reader only ever holds what it may see. Sequence numbers are global, so a filtered reader sees
gaps in the numbers; a gap is never a loss. A loss is said out loud: a subscription that asks to
resume after a number the ring no longer holds starts with ``reset`` instead (the reader reloads
the state), never with a silent skip.

Nothing here waits on a reader: :meth:`EventFeed.publish` puts events in each subscription's
bounded queue without waiting; a reader more than ``max_pending`` events behind is dropped with
the reason ``slow_consumer`` (its queue freed at once) and may resume from the last event it
took, if the ring still holds what follows.

The feed knows nothing of HTTP (hotline/http/stream.py serves it as ``GET /api/events``) nor of
the center: :class:`CenterEvents` translates the center's facts into events (the engine's log
records, offers to agents, case writes, statistics ticks) and builds the state a ``reset``
carries. Who sees what:

* supervisors and admins: everything;
* an agent: their own ``agent_state`` and the engine's records about calls offered to, answered
  by or refused by them; ``offer`` events to them (caller number, queue, IVR choices); ``case``
  events of the cases they own or are on; ``queue`` summaries and ``stats`` ticks of their
  queues (counts only: no caller numbers, no other agent's name).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Literal, Protocol

import structlog

from acd.config import AcdConfig
from acd.model import AgentStatusView, LogRecord, QueueStatus
from hotline.center.stats import StatsNow

log = structlog.get_logger("hotline.center.feed")

CAPACITY = 10_000
"""Events the ring keeps by default (a reader can resume within this many)."""
MAX_PENDING = 1_000
"""Events a subscription may hold unread before it is dropped as a slow consumer."""


def iso(at: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, written as the API's pydantic models write times
    (``2026-05-28T20:26:40Z``)."""
    return datetime.fromtimestamp(at, UTC).isoformat().removesuffix("+00:00") + "Z"


# -- events and who sees them ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Audience:
    """Who, besides supervisors and admins (they see every event), sees an event."""

    agents: frozenset[str] = frozenset()
    """Agents the event is about: them, their offer, their case."""
    queues: frozenset[str] = frozenset()
    """The members of these queues (the event holds nothing a member may not see)."""


SUPERVISORS = Audience()
"""Supervisors and admins only."""


class FeedEvent:
    """One published event. Its data is read-only once published."""

    __slots__ = ("_text", "at", "audience", "data", "kind", "seq")

    def __init__(
        self, seq: int, at: float, kind: str, data: Mapping[str, Any], audience: Audience
    ) -> None:
        self.seq = seq
        self.at = at
        self.kind = kind
        self.data = data
        self.audience = audience
        self._text: str | None = None

    def message(self) -> dict[str, Any]:
        """The wire form: ``{seq, at, kind, data}`` (``at`` in ISO 8601)."""
        return {"seq": self.seq, "at": iso(self.at), "kind": self.kind, "data": self.data}

    def text(self) -> str:
        """:meth:`message` as JSON, serialised once for every reader."""
        if self._text is None:
            self._text = json.dumps(self.message(), separators=(",", ":"), default=str)
        return self._text

    def __repr__(self) -> str:
        return f"FeedEvent({self.seq}, {self.kind!r})"


@dataclass(frozen=True, slots=True)
class Viewer:
    """A reader: who they are and what they may see."""

    user: str
    everything: bool = False
    """Supervisors and admins: every event."""
    queues: frozenset[str] = frozenset()
    """The queues the agent serves (when they connected)."""

    def sees(self, event: FeedEvent) -> bool:
        if self.everything:
            return True
        audience = event.audience
        return self.user in audience.agents or not audience.queues.isdisjoint(self.queues)


StartReason = Literal["new", "resumed", "too_old", "ahead", "other_stream"]
"""How a subscription began: ``new`` (no resume asked), ``resumed`` (every event after the
asked number follows), or why a resume was impossible: ``too_old`` (the ring no longer holds
the events after it), ``ahead`` (a number this feed never gave: another process's, before a
restart), ``other_stream`` (the reader names another feed)."""


class FeedClosed(Exception):
    """The subscription ended: ``reason`` is ``slow_consumer``, ``closed`` (by its reader),
    ``shutdown`` (the feed closed) or what :meth:`Subscription.close` was given."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Closed:
    reason: str


class Subscription:
    """One reader's events, in order: a replay from the ring first, then live events.

    :meth:`next` (or :meth:`poll`) returns events; they raise :class:`FeedClosed` once the
    subscription is over. :attr:`position` is the number to resume after."""

    def __init__(
        self,
        feed: EventFeed,
        viewer: Viewer,
        *,
        start: int,
        reason: StartReason,
        replay: Iterable[FeedEvent],
        max_pending: int,
    ) -> None:
        self.feed = feed
        self.viewer = viewer
        self.start = start
        """Events after this number follow (the resume point, or the head when it began)."""
        self.reason: StartReason = reason
        self._backlog: deque[FeedEvent] = deque(replay)
        self._queue: asyncio.Queue[FeedEvent | _Closed] = asyncio.Queue(max_pending)
        self._position = start
        self.closed: str | None = None
        """Why the subscription ended (None while it runs)."""

    @property
    def reset(self) -> bool:
        """The reader must reload the state: a new reader, or a resume that was impossible."""
        return self.reason != "resumed"

    @property
    def position(self) -> int:
        """The number to resume after: every event up to it that the viewer may see has been
        returned. It is the feed's head while nothing is pending (and was when a read last
        found nothing), so a filtered reader's position keeps up even when nothing it may see
        happens."""
        if self.closed is None and not self._backlog and self._queue.empty():
            return self.feed.head
        return self._position

    @property
    def pending(self) -> int:
        return len(self._backlog) + self._queue.qsize()

    def poll(self) -> FeedEvent | None:
        """The next event if one is pending, else None (raises FeedClosed when over)."""
        if self._backlog:
            event = self._backlog.popleft()
            self._position = event.seq
            return event
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if self.closed is not None:
                raise FeedClosed(self.closed) from None
            self._position = self.feed.head  # nothing pending: every event so far considered
            return None
        return self._take(item)

    async def next(self, timeout: float | None = None) -> FeedEvent | None:  # noqa: ASYNC109
        """The next event; None after ``timeout`` seconds without one."""
        event = self.poll()
        if event is not None:
            return event
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return self.poll()  # None, and the position moves up to the head
        return self._take(item)

    def _take(self, item: FeedEvent | _Closed) -> FeedEvent:
        if isinstance(item, _Closed):
            raise FeedClosed(item.reason)
        self._position = item.seq
        return item

    def _offer(self, event: FeedEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning(
                "event_stream_slow_consumer",
                user=self.viewer.user,
                position=self._position,
                head=event.seq,
            )
            self.close("slow_consumer")

    def close(self, reason: str = "closed") -> None:
        """End the subscription: pending events are dropped; the reader's next read raises
        :class:`FeedClosed` with ``reason`` (and :attr:`position` stays at the last event
        it took)."""
        if self.closed is not None:
            return
        self.closed = reason
        self.feed._unsubscribe(self)
        self._backlog.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_Closed(reason))


class EventFeed:
    """Numbered events in a ring; filtered, bounded subscriptions. One per center."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        capacity: int = CAPACITY,
        max_pending: int = MAX_PENDING,
        stream: str | None = None,
    ) -> None:
        if capacity < 1 or max_pending < 1:
            raise ValueError("capacity and max_pending must be at least 1")
        self.clock = clock
        self.capacity = capacity
        self.max_pending = max_pending
        self.stream = stream or secrets.token_hex(8)
        """This feed's name: numbers from another feed (a restarted process) mean nothing here."""
        self.head = 0
        """The number of the last published event (0: none yet)."""
        self._ring: deque[FeedEvent] = deque(maxlen=capacity)
        self._subscriptions: set[Subscription] = set()

    @property
    def oldest(self) -> int:
        """The number of the oldest event held (``head + 1`` when none is)."""
        return self._ring[0].seq if self._ring else self.head + 1

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def publish(
        self,
        kind: str,
        data: Mapping[str, Any],
        audience: Audience = SUPERVISORS,
        *,
        at: float | None = None,
    ) -> FeedEvent:
        """Number, keep and hand out one event (never waits)."""
        self.head += 1
        event = FeedEvent(self.head, self.clock() if at is None else at, kind, data, audience)
        self._ring.append(event)
        for sub in list(self._subscriptions):
            if sub.viewer.sees(event):
                sub._offer(event)
        return event

    def _resume(self, after: int | None, stream: str | None) -> StartReason:
        if after is None:
            return "new"
        if stream is not None and stream != self.stream:
            return "other_stream"
        if after > self.head:
            return "ahead"
        if after < self.oldest - 1:
            return "too_old"
        return "resumed"

    def subscribe(
        self, viewer: Viewer, *, after: int | None = None, stream: str | None = None
    ) -> Subscription:
        """A new reader. ``after``: resume after that number (every event after it that the
        viewer may see follows, in order), if this feed (``stream``, when given) still holds
        them; otherwise, or without ``after``, the subscription starts at the head with
        :attr:`Subscription.reset` set."""
        reason = self._resume(after, stream)
        replay: list[FeedEvent] = []
        if reason == "resumed":
            assert after is not None
            start = after
            first = after + 1 - self.oldest
            replay = [e for e in islice(self._ring, first, None) if viewer.sees(e)]
        else:
            start = self.head
        sub = Subscription(
            self, viewer, start=start, reason=reason, replay=replay, max_pending=self.max_pending
        )
        self._subscriptions.add(sub)
        return sub

    def since(
        self, viewer: Viewer, after: int | None, *, limit: int, stream: str | None = None
    ) -> tuple[StartReason, list[FeedEvent], int, bool]:
        """For readers that poll: ``(reason, events, position, more)``. Without ``after``
        (``new``), the last ``limit`` events the viewer may see; after a resume that is
        impossible, none (reload the state). ``position`` is the number to pass as ``after``
        next time; ``more``: events beyond ``limit`` are waiting."""
        reason = self._resume(after, stream)
        if reason == "new":
            seen = [e for e in self._ring if viewer.sees(e)]
            return reason, seen[-limit:] if limit else [], self.head, False
        if reason != "resumed":
            return reason, [], self.head, False
        assert after is not None
        out: list[FeedEvent] = []
        for event in islice(self._ring, after + 1 - self.oldest, None):
            if not viewer.sees(event):
                continue
            if len(out) == limit:
                return reason, out, out[-1].seq if out else after, True
            out.append(event)
        return reason, out, self.head, False

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def close(self) -> None:
        """End every subscription (reason ``shutdown``)."""
        for sub in list(self._subscriptions):
            sub.close("shutdown")


# -- what the center publishes ---------------------------------------------------------------


class EngineReads(Protocol):
    """The engine's typed reads CenterEvents uses (``acd.engine.AcdEngine``)."""

    @property
    def config(self) -> AcdConfig: ...
    def queue_status(self, queue: str) -> QueueStatus: ...
    def agent_status(self, agent_id: str) -> AgentStatusView: ...


OfferState = Literal["ringing", "answered", "timed_out", "failed", "cancelled", "refused"]
"""An offer's life: ``ringing``, then one of ``answered`` (the agent picked up), ``timed_out``
(nobody answered in time), ``failed`` (could not ring), ``cancelled`` (withdrawn: another agent
answered, the caller left); ``refused`` follows ``answered`` when another agent was first."""

_FINAL: frozenset[str] = frozenset({"answered", "timed_out", "failed", "cancelled"})
_REMEMBERED = 10_000
"""Cases whose owner and IVR choices CenterEvents remembers (the most recent)."""


def _queue_summary(status: QueueStatus) -> dict[str, Any]:
    return {
        "queue": status.queue,
        "waiting": status.waiting,
        "longest_wait_seconds": round(status.longest_wait, 1),
        "routable": status.routable,
        "logged_in": status.logged_in,
        "ewt_seconds": round(status.ewt_seconds),
    }


def _agent_summary(view: AgentStatusView) -> dict[str, Any]:
    return {
        "agent": view.agent_id,
        "state": view.state,
        "reason": view.reason,
        "since": iso(view.since),
        "call_id": view.call_id or None,
        "queues": list(view.queues),
        "routable": view.routable,
    }


class CenterEvents:
    """The contact center's facts as feed events (one method per source), and the state a
    ``reset`` carries. Hooks call it synchronously; it never waits."""

    def __init__(self, feed: EventFeed, engine: EngineReads) -> None:
        self.feed = feed
        self.engine = engine
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._last_summary: dict[str, tuple[int, int, int]] = {}
        self._offers: dict[tuple[str, str], dict[str, Any]] = {}
        """Offers ringing now, by (call id, agent): the ``ringing`` event's data."""
        self._owners: OrderedDict[int, str] = OrderedDict()
        self._ivr: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()

    # -- readers -----------------------------------------------------------------------------

    def viewer(self, user: str, *, everything: bool) -> Viewer:
        """The viewer of a signed-in staff member (an agent sees their queues' summaries)."""
        if everything:
            return Viewer(user, everything=True)
        try:
            queues = frozenset(self.engine.agent_status(user).queues)
        except KeyError:
            queues = frozenset()
        return Viewer(user, queues=queues)

    def state(self, viewer: Viewer) -> dict[str, Any]:
        """What a reader starting afresh needs: the queues and agents it may see now, and the
        offers ringing for it."""
        config = self.engine.config
        queue_names = [q for q in config.queues if viewer.everything or q in viewer.queues]
        agent_ids = list(config.agents) if viewer.everything else [viewer.user]
        agents: dict[str, Any] = {}
        for aid in agent_ids:
            with contextlib.suppress(KeyError):
                agents[aid] = _agent_summary(self.engine.agent_status(aid))
        return {
            "stream": self.feed.stream,
            "queues": {q: _queue_summary(self.engine.queue_status(q)) for q in queue_names},
            "agents": agents,
            "offers": [
                data
                for (_, agent), data in self._offers.items()
                if viewer.everything or agent == viewer.user
            ],
        }

    # -- the engine's log ----------------------------------------------------------------------

    def engine_log(self, records: Iterable[LogRecord]) -> None:
        """Publish the engine's records (the same the store keeps): agent states to the agent,
        calls offered/answered/refused/ended to the agent concerned, the rest (queued,
        abandoned, overflowed ...) to supervisors; then a ``queue`` summary of each queue they
        changed, once per loop turn, to its members."""
        feed = self.feed
        for r in records:
            data: dict[str, Any] = {"call_id": r.call_id, "agent": r.agent_id, "queue": r.queue}
            data.update(r.data)
            agent = r.agent_id
            audience = SUPERVISORS if agent is None else Audience(agents=frozenset((agent,)))
            feed.publish(r.kind, data, audience, at=r.at)
            if r.queue is not None:
                self._dirty.add(r.queue)
            if r.kind == "agent_state" and agent is not None:
                with contextlib.suppress(KeyError):
                    self._dirty.update(self.engine.agent_status(agent).queues)
        if self._dirty and not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush_queues()
                return
            self._flush_scheduled = True
            loop.call_soon(self.flush_queues)

    def flush_queues(self) -> None:
        """Publish a ``queue`` summary for each queue changed since the last flush (only when
        its waiting, routable or logged-in count changed)."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            try:
                status = self.engine.queue_status(name)
            except KeyError:
                continue
            key = (status.waiting, status.routable, status.logged_in)
            if self._last_summary.get(name) == key:
                continue
            self._last_summary[name] = key
            self.feed.publish("queue", _queue_summary(status), Audience(queues=frozenset((name,))))

    # -- offers ----------------------------------------------------------------------------------

    def offer_ringing(
        self,
        *,
        agent: str,
        call_id: str,
        case_id: int,
        queue: str,
        caller: str,
        ring_timeout: float,
        vars: Mapping[str, Any] | None = None,
    ) -> None:
        """``agent`` is rung for a call (an ``offer`` event to them, state ``ringing``): the
        caller's number, the queue, the IVR choices (the menu keys and entries the caller made,
        and the flow's variables)."""
        data: dict[str, Any] = {
            "state": "ringing",
            "agent": agent,
            "call_id": call_id,
            "case_id": case_id or None,
            "queue": queue,
            "caller": caller,
            "ring_timeout": ring_timeout,
            "since": iso(self.feed.clock()),
            "ivr": list(self._ivr.get(case_id, ())),
            "vars": {k: v for k, v in (vars or {}).items() if k != "case_id"},
        }
        self._offers[(call_id, agent)] = data
        self.feed.publish("offer", data, Audience(agents=frozenset((agent,))))

    def offer_ended(self, state: OfferState, *, agent: str, call_id: str, reason: str = "") -> None:
        """The offer to ``agent`` is over (``answered``, ``timed_out``, ``failed``,
        ``cancelled``: published once, the first report wins; a RONA and the phone's own
        timeout may both report one), or an answer was ``refused``."""
        data: dict[str, Any] = {"state": state, "agent": agent, "call_id": call_id}
        if state in _FINAL:
            ringing = self._offers.pop((call_id, agent), None)
            if ringing is None:
                return
            data.update({k: ringing[k] for k in ("case_id", "queue", "caller")})
        if reason:
            data["reason"] = reason
        self.feed.publish("offer", data, Audience(agents=frozenset((agent,))))

    # -- monitoring ------------------------------------------------------------------------------

    def monitoring(
        self,
        *,
        supervisor: str,
        agent: str,
        call_id: str,
        case_id: int,
        mode: str,
        state: str,
        reason: str = "",
    ) -> None:
        """A supervisor monitors an agent's call (monitor.py): ``state`` ``ringing`` (their
        phone rings), ``active`` or ``ended`` (with ``reason``), in ``mode`` ``listen``,
        ``whisper`` or ``barge``. Supervisors only: an agent is not told of a silent listen."""
        data: dict[str, Any] = {
            "supervisor": supervisor,
            "agent": agent,
            "call_id": call_id,
            "case_id": case_id or None,
            "mode": mode,
            "state": state,
        }
        if reason:
            data["reason"] = reason
        self.feed.publish("monitor", data, SUPERVISORS)

    # -- cases -----------------------------------------------------------------------------------

    def case(
        self,
        case_id: int,
        event: str,
        actor: str,
        data: Mapping[str, Any],
        *,
        agents: Iterable[str] = (),
        owner: str | None = None,
    ) -> None:
        """A case was written (``case`` events): seen by its owner (``owner`` when the write
        set it, else the last one known here) and ``agents`` (those on the case's call)."""
        if not case_id:
            return
        previous = self._owners.get(case_id)
        if owner is not None:
            self._owners[case_id] = owner
            self._owners.move_to_end(case_id)
            while len(self._owners) > _REMEMBERED:
                self._owners.popitem(last=False)
        if event == "ivr_input" and data.get("result") in ("chosen", "accepted"):
            self._remember_ivr(case_id, data)
        who = {a for a in (*agents, previous, owner) if a}
        self.feed.publish(
            "case",
            {"case_id": case_id, "event": event, "actor": actor, "data": dict(data)},
            Audience(agents=frozenset(who)),
        )

    def owner_of(self, case_id: int) -> str | None:
        """The case's owner as last seen here (None: not known)."""
        return self._owners.get(case_id)

    def _remember_ivr(self, case_id: int, data: Mapping[str, Any]) -> None:
        choice = {k: data[k] for k in ("node", "digits", "to", "var") if data.get(k) is not None}
        self._ivr.setdefault(case_id, []).append(choice)
        self._ivr.move_to_end(case_id)
        while len(self._ivr) > _REMEMBERED:
            self._ivr.popitem(last=False)

    # -- statistics --------------------------------------------------------------------------

    def stats(self, snapshot: StatsNow) -> None:
        """One statistics tick: a ``stats`` event per queue (to its members: counts and today's
        figures) and one for all queues together (supervisors)."""
        at = snapshot.at.timestamp()
        for q in snapshot.queues:
            self.feed.publish(
                "stats",
                q.model_dump(mode="json"),
                Audience(queues=frozenset((q.queue,))),
                at=at,
            )
        total = {
            "queue": None,
            "day": snapshot.day.isoformat(),
            "timezone": snapshot.timezone,
            "today": snapshot.total.model_dump(mode="json"),
        }
        self.feed.publish("stats", total, SUPERVISORS, at=at)

    async def stats_ticks(
        self, snapshot: Callable[[], Awaitable[StatsNow]], every: float = 5.0
    ) -> None:
        """Publish a statistics tick every ``every`` seconds while somebody reads the feed."""
        while True:
            await asyncio.sleep(every)
            if not self.feed.subscribers:
                continue
            try:
                self.stats(await snapshot())
            except Exception:  # a failing read must not end the ticks
                log.exception("stats_tick_failed")


__all__ = [
    "Audience",
    "CenterEvents",
    "EventFeed",
    "FeedClosed",
    "FeedEvent",
    "OfferState",
    "StartReason",
    "Subscription",
    "Viewer",
]
