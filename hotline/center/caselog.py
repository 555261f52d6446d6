"""Case writing for the call path: the case event vocabulary in one place.

Every step of a call appends an event to its case (acd/cases.py). Before this module the
center wrote events as ``event(case_id, "kind", actor, **anything)`` from a dozen places, so
the kinds and their data keys drifted apart and a typo only showed at run time, in the
writer thread. Here each kind the call path writes has one method with typed arguments, and
the data keys readers rely on (the wallboard, the e2e tests, reports) are fixed here.

Writes go through :class:`~acd.store.writer.AsyncCaseWriter`: they are O(1) on the loop and
never wait on the database, so routing is never slowed by disk I/O. Reads (for the HTTP
routes) run on the writer thread after everything queued before them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from acd.cases import Case, CaseEvent, CasePage, CaseSearch, NewCase, answer_changes
from acd.escalation import Escalate, EscalationPolicy, escalate_overdue
from acd.store import CaseStore
from acd.store.work import StoredWork
from acd.store.writer import AsyncCaseWriter
from media_gateway.session import CallSession

if TYPE_CHECKING:
    from hotline.center.feed import CenterEvents

log = structlog.get_logger("hotline.center.cases")

WorkKind = Literal["call", "voicemail", "callback"]
"""What a queued item is: a caller on the line, a voicemail message, a callback request."""

IvrEventKind = Literal["ivr_input", "ivr_set", "ivr_branch"]
_IVR_KINDS: frozenset[str] = frozenset({"ivr_input", "ivr_set", "ivr_branch"})
_CHANNELS: frozenset[str] = frozenset({"sip", "trunk", "webrtc"})


@dataclass(frozen=True, slots=True)
class CaseTrail:
    """A case and its events, oldest first (what ``GET /api/cases/{id}`` shows)."""

    case: Case
    events: list[CaseEvent]


class CaseLog:
    """One method per case event kind the call path writes; ``case_id`` 0 means "no case"
    (a write that failed to open one) and is ignored, so a broken database never breaks a
    call."""

    def __init__(self, writer: AsyncCaseWriter, clock: Callable[[], float]) -> None:
        self.writer = writer
        self._clock = clock
        self._on_call: dict[str, int] = {}
        """Agent -> the case of the call they answered and are still on."""
        self.events: CenterEvents | None = None
        """Where every write is also published (the live event stream, feed.py)."""

    # -- opening ---------------------------------------------------------------------------

    async def open_case(self, session: CallSession, *, entry: str = "") -> int:
        """A new case for an inbound call; its id (also kept in ``session.vars["case_id"]``
        so IVR prompts and transfers can refer to it).

        With ``entry`` (the entry point: ``hotline``, ``ivr``, ``queue``, ``voicemail``) the
        ``entered`` event is written in the same transaction and the call is recorded as live
        until :meth:`call_over`: both are durable before this returns, so a crash can lose
        neither (hotline/center/recovery.py closes the calls it cut off)."""
        channel = session.channel if session.channel in _CHANNELS else "other"
        new = NewCase(
            caller_number=session.caller or "anonymous",
            at=self._clock(),
            dialled=session.dialled,
            channel=channel,
            call_id=session.id,
        )
        opening: list[CaseEvent] = []
        if entry:
            opening.append(
                CaseEvent(
                    at=new.at,
                    kind="entered",
                    actor="system",
                    data={"dialled": session.dialled, "channel": session.channel, "entry": entry},
                )
            )
        case = await self.writer.run(
            lambda store: store.open_case(new, events=opening, live=bool(entry))
        )
        session.vars["case_id"] = str(case.id)
        self._announce(
            case.id,
            "opened",
            "system",
            {"caller": case.caller_number, "dialled": new.dialled, "call_id": new.call_id},
        )
        for ev in opening:
            self._announce(case.id, ev.kind, ev.actor, ev.data)
        return case.id

    async def call_over(self, case_id: int) -> None:
        """The call is over: everything written for it so far (its closing event included) is
        committed, and it is no longer live, before this returns (one awaited round trip to
        the writer thread; the other events of a call stay batched)."""
        if not case_id or self.writer.closed:
            return
        try:
            async with asyncio.timeout(10):  # never hang a call's end on a closing writer
                await self.writer.run(lambda store: store.end_call(case_id))
        except Exception as exc:  # a broken database never breaks a call
            log.warning("case_call_over_failed", case_id=case_id, error=str(exc))

    def work_kept(self, work: StoredWork) -> None:
        """Keep queued work in the store until an agent has had it (written in order,
        after the events queued before; :meth:`durable` waits for it)."""
        if not work.case_id:
            return
        try:
            self.writer.submit(lambda store: store.save_work(work))
        except RuntimeError:
            log.warning("work_not_kept", case_id=work.case_id, call_id=work.call_id)

    def work_done(self, call_id: str) -> None:
        """An agent has had the work (or it is gone): no restart brings it back."""
        try:
            self.writer.submit(lambda store: store.drop_work(call_id))
        except RuntimeError:
            log.warning("work_not_dropped", call_id=call_id)

    async def durable(self) -> None:
        """Wait until everything written so far is committed (errors are logged, not raised:
        a broken database never breaks a call)."""
        if self.writer.closed:
            return
        try:
            async with asyncio.timeout(10):
                await self.writer.flush()
        except Exception as exc:
            log.warning("case_flush_failed", error=str(exc))

    # -- the call path's events ------------------------------------------------------------

    def entered(self, case_id: int, *, dialled: str, channel: str, entry: str) -> None:
        """The call reached an entry point (``hotline``, ``ivr``, ``queue``, ``voicemail``)."""
        self._write(case_id, "entered", "system", dialled=dialled, channel=channel, entry=entry)

    def ivr(self, case_id: int, kind: str, data: Mapping[str, Any]) -> None:
        """A key, a variable or a branch reported by the IVR runner (its ``record`` hook)."""
        if kind not in _IVR_KINDS:
            log.warning("unknown_ivr_event", case_id=case_id, kind=kind)
            kind = "ivr_branch"
        self._write(case_id, kind, "ivr", **data)

    def queued(
        self,
        case_id: int,
        *,
        queue: str,
        skills: Mapping[str, int] | None = None,
        priority: int = 0,
        language: str = "",
    ) -> None:
        """The caller joined ``queue`` (the original arrival: no ``kind`` key); the case is
        filed under that queue (the event states it: no ``queue_changed`` of its own)."""
        self._update(
            case_id,
            lambda case: {"queue": queue},
            "acd",
            CaseEvent(
                at=self._clock(),
                kind="queued",
                actor="acd",
                data={
                    "queue": queue,
                    "skills": dict(skills or {}),
                    "priority": priority,
                    "language": language,
                },
            ),
        )

    def work_queued(
        self,
        case_id: int,
        *,
        queue: str,
        kind: WorkKind,
        enqueued_at: float,
        restored: bool = False,
    ) -> None:
        """A message or callback request joined ``queue``, keeping the caller's place
        (``restored``: put back at start-up after a restart, hotline/center/recovery.py)."""
        extra = {"restored": True} if restored else {}
        self._write(
            case_id, "queued", "acd", queue=queue, kind=kind, enqueued_at=enqueued_at, **extra
        )

    def offered(self, case_id: int, *, agent: str, queue: str) -> None:
        self._write(case_id, "offered", "acd", agent=agent, queue=queue)

    def rona(self, case_id: int, *, agent: str) -> None:
        """Ring-no-answer: the offer to ``agent`` timed out; the call keeps its place."""
        self._write(case_id, "rona", "acd", agent=agent)

    def answered(
        self, case_id: int, *, agent: str, queue: str, kind: WorkKind, waited: float
    ) -> None:
        """``agent`` took the call (or the message): the agent is the actor and becomes the
        case's owner, and the case is being worked on (``in_progress``, until somebody resolves
        it): ``owner_changed`` and ``status_changed`` events follow ``answered`` in the same
        transaction (:func:`acd.cases.answer_changes`); ``waited`` counts from the original
        arrival."""
        if case_id:
            self._on_call[agent] = case_id
        self._update(
            case_id,
            lambda case: answer_changes(case, agent),
            agent,
            CaseEvent(
                at=self._clock(),
                kind="answered",
                actor=agent,
                data={
                    "agent": agent,
                    "owner": agent,
                    "queue": queue,
                    "kind": kind,
                    "waited": round(waited, 1),
                },
            ),
            reason="answered",
        )

    def transferred_by_ivr(self, case_id: int, *, target: str, ok: bool) -> None:
        self._write(case_id, "transferred", "ivr", target=target, ok=ok)

    def sent_to_voicemail(self, case_id: int, *, queue: str, reason: str) -> None:
        """The engine moved the caller to voicemail (wait limit, no agents, queue full)."""
        self._write(case_id, "transferred", "acd", to="voicemail", reason=reason, queue=queue)

    def overflowed(self, case_id: int, *, from_queue: str, to_queue: str, reason: str) -> None:
        """The engine moved the caller to another queue; the case follows (``queue_changed``)."""
        self._update(
            case_id,
            lambda case: {"queue": to_queue},
            "acd",
            CaseEvent(
                at=self._clock(),
                kind="transferred",
                actor="acd",
                data={"from_queue": from_queue, "to_queue": to_queue, "reason": reason},
            ),
            reason=reason,
        )

    def transferred_by_agent(self, case_id: int, *, agent: str, to: str) -> None:
        """The agent's phone transferred the caller (REFER); the case follows the caller."""
        self._off_call(agent, case_id)
        self._write(case_id, "transferred", agent, from_agent=agent, to=to, kind="by_agent")

    def called_back(self, case_id: int, *, agent: str, target: str, ok: bool) -> None:
        self._write(case_id, "transferred", agent, target=target, ok=ok, kind="callback")

    def voicemail_left(
        self, case_id: int, *, path: str, seconds: float, queue: str, stopped_by: str
    ) -> None:
        self._write(
            case_id,
            "voicemail_left",
            "caller",
            path=path,
            seconds=seconds,
            queue=queue,
            stopped_by=stopped_by,
        )

    def abandoned(self, case_id: int, *, queue: str, waited: float) -> None:
        """The caller hung up while waiting for an agent."""
        self._write(case_id, "abandoned", "caller", queue=queue, waited=round(waited, 1))

    def hung_up(self, case_id: int, actor: str, **data: str | float | bool) -> None:
        """The end of the call (or of a message's delivery); ``actor`` is who ended it:
        ``caller``, an agent id, ``ivr``, ``acd`` or ``system``."""
        agent = data.get("agent")
        self._off_call(agent if isinstance(agent, str) else actor, case_id)
        self._write(case_id, "hung_up", actor, **data)

    def call_control(
        self, case_id: int, *, agent: str, action: str, by: str = "", **data: str | float | bool
    ) -> None:
        """The agent's call was acted on through the API (hotline/center/agents.py):
        ``action`` is ``hold``, ``resume``, ``mute``, ``unmute``, ``keys`` (their count, never
        the digits), ``transfer`` (``to``, ``mode``), ``transfer_completed``,
        ``transfer_cancelled`` or ``hangup``; ``by`` is who did it when not the agent (a
        supervisor)."""
        extra: dict[str, str | float | bool] = {"by": by} if by and by != agent else {}
        self._write(case_id, "call_control", agent, action=action, agent=agent, **data, **extra)

    def wrap_up_done(self, case_id: int, *, agent: str, by: str = "") -> None:
        """The agent ended their wrap-up of this case's call early (``by``: a supervisor)."""
        extra = {"by": by} if by and by != agent else {}
        self._write(case_id, "wrap_up_done", agent, agent=agent, **extra)

    def note(self, case_id: int, actor: str, *, text: str, **data: str) -> None:
        self._write(case_id, "note", actor, text=text, **data)

    def recording(
        self,
        case_id: int,
        *,
        recording_id: str,
        file: str,
        seconds: float,
        started: float,
        ended: float,
        agent: str,
        queue: str,
        reason: str,
    ) -> None:
        """A recorded conversation is complete (hotline/center/recordings.py): a stereo WAV,
        the caller on the left and ``agent`` on the right; ``started``/``ended`` epoch seconds,
        ``reason`` why it ended (hangup, transferred, stopped, max_length, recovered)."""
        self._write(
            case_id,
            "recording",
            "system",
            recording_id=recording_id,
            file=file,
            seconds=round(seconds, 3),
            started=started,
            ended=ended,
            agent=agent,
            queue=queue,
            reason=reason,
            channels=["caller", "agent"],
        )

    def recording_expired(self, case_id: int, *, recording_id: str) -> None:
        """The recording was deleted at the end of its queue's retention."""
        self._write(case_id, "recording_expired", "system", recording_id=recording_id)

    # -- reads (the HTTP routes) -----------------------------------------------------------

    async def trail(self, case_id: int) -> CaseTrail | None:
        """The case and every event written so far (queued writes are flushed first)."""
        await self.writer.flush()
        case = await self.writer.run(lambda store: store.get_case(case_id))
        if case is None:
            return None
        events = await self.writer.run(lambda store: store.events(case_id))
        return CaseTrail(case=case, events=events)

    async def case(self, case_id: int) -> Case | None:
        """The case as stored after every write queued so far."""
        return await self.writer.run(lambda store: store.get_case(case_id))

    async def search(self, search: CaseSearch) -> CasePage:
        """One page of a case search (after every write queued so far)."""
        return await self.writer.run(lambda store: store.search_cases(search))

    def current_case(self, agent: str) -> int | None:
        """The case of the call ``agent`` is on now (answered, not yet over), if any."""
        return self._on_call.get(agent)

    # -- changes by people (the HTTP routes) -----------------------------------------------

    async def add_note(self, case_id: int, actor: str, text: str) -> CaseEvent:
        """Append a ``note`` by ``actor``; the stored event (with its ``seq``)."""
        event = CaseEvent(at=self._clock(), kind="note", actor=actor, data={"text": text})
        seq = await self.writer.run(lambda store: store.append_event(case_id, event))
        if self.events is not None and self.events.owner_of(case_id) is None:
            case = await self.case(case_id)
            owner = case.owner if case is not None else None
            self._announce(case_id, "note", actor, event.data, owner=owner)
        else:
            self._announce(case_id, "note", actor, event.data)
        return dataclasses.replace(event, seq=seq)

    async def change(
        self,
        case_id: int,
        changes: Mapping[str, Any],
        *,
        actor: str,
        check: Callable[[Case], None] = lambda case: None,
    ) -> Case | None:
        """Change a case's fields for ``actor`` (each change an event on its trail, in one
        transaction); None when there is no such case. ``check(case)`` runs first, on the case
        as stored then, and may raise to refuse (the writer thread makes check-then-write one
        step). ``status="open"`` on a closed case reopens it (a ``reopened`` event). Raises
        :class:`acd.cases.CaseError` for a change the case's state machine refuses."""
        at = self._clock()
        before: list[Case] = []

        def apply(store: CaseStore) -> Case | None:
            case = store.get_case(case_id)
            if case is None:
                return None
            check(case)
            before.append(case)
            rest = dict(changes)
            if rest.get("status") == "open" and case.status == "closed":
                del rest["status"]
                store.reopen_case(case_id, at=at, actor=actor)
            return store.update_case(case_id, at=at, actor=actor, **rest)

        changed = await self.writer.run(apply)
        if changed is not None:
            self._announce_change(changed, before[0], changes, actor)
        return changed

    async def cases(self, *, caller: str | None = None, limit: int = 50) -> list[Case]:
        """The latest cases, or a caller's (by normalised number)."""
        if caller:
            return await self.writer.run(lambda store: store.cases_for_caller(caller, limit))
        return await self.writer.run(lambda store: store.list_cases(limit=limit))

    # -- escalation ------------------------------------------------------------------------

    async def escalate(self, policy: EscalationPolicy) -> list[Escalate]:
        """Escalate the open cases past their due time (acd/escalation.py): each an
        ``escalated`` event and the new owner, published to the old and the new owner."""
        now = self._clock()
        await self.writer.flush()
        applied = await self.writer.run(lambda store: escalate_overdue(store, policy, now))
        for esc in applied:
            data = {"level": esc.level, "index": esc.index, "from": esc.from_owner}
            data["to"] = esc.to_owner
            log.info("case_escalated", case_id=esc.case_id, **data)
            if self.events is not None:
                on_call = [a for a, case in self._on_call.items() if case == esc.case_id]
                self.events.case(
                    esc.case_id,
                    "escalated",
                    "escalation",
                    data,
                    agents=[*on_call, esc.from_owner],
                    owner=esc.to_owner,
                )
        return applied

    async def escalate_periodically(self, policy: EscalationPolicy, every: float) -> None:
        """:meth:`escalate` every ``every`` seconds, for the service's life (a failed sweep is
        logged and tried again at the next one)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.escalate(policy)
            except Exception:  # a store error must not end the sweeps
                log.exception("escalation_sweep_failed")

    # -- engine log ------------------------------------------------------------------------

    def engine_log(self, records: list[dict[str, Any]]) -> None:
        """Store the ACD engine's log records (statistics are folded from them)."""
        for record in records:
            try:
                self.writer.append_log(record)
            except (RuntimeError, ValueError) as exc:
                log.warning("acd_log_dropped", kind=record.get("kind"), error=str(exc))

    def _announce(
        self,
        case_id: int,
        kind: str,
        actor: str,
        data: Mapping[str, Any],
        *,
        owner: str | None = None,
    ) -> None:
        """Publish a write on the live event stream, to the case's people: its owner and
        the agents on its call (feed.py ``CenterEvents.case``)."""
        if self.events is not None and case_id:
            on_call = [agent for agent, case in self._on_call.items() if case == case_id]
            self.events.case(case_id, kind, actor, data, agents=on_call, owner=owner)

    def _announce_change(
        self, case: Case, before: Case, changes: Mapping[str, Any], actor: str
    ) -> None:
        data = {
            "changes": dict(changes),
            "status": case.status,
            "owner": case.owner,
            "type": case.case_type,
            "disposition": case.disposition,
            "due_at": case.due_at,
        }
        if before.owner and before.owner != case.owner:
            data["previous_owner"] = before.owner
        self._announce(case.id, "changed", actor, data, owner=case.owner)

    def _off_call(self, agent: str, case_id: int) -> None:
        if self._on_call.get(agent) == case_id:
            del self._on_call[agent]

    def _update(
        self,
        case_id: int,
        plan: Callable[[Case], Mapping[str, Any]],
        actor: str,
        event: CaseEvent,
        *,
        reason: str = "",
    ) -> None:
        """``event`` and the field changes ``plan`` decides, in one transaction."""
        if not case_id:
            return
        try:
            self.writer.update_case(
                case_id, plan, at=event.at, actor=actor, reason=reason, events=[event]
            )
        except RuntimeError:  # shutting down: the writer has closed
            log.warning("case_event_dropped", case_id=case_id, kind=event.kind)
            return
        owner = event.data.get("owner")  # an event that names an owner (answered) sets it
        self._announce(
            case_id, event.kind, actor, event.data, owner=owner if isinstance(owner, str) else None
        )

    def _write(self, case_id: int, kind: str, actor: str, /, **data: Any) -> None:
        if not case_id:
            return
        try:
            self.writer.append_event(
                case_id, CaseEvent(at=self._clock(), kind=kind, actor=actor, data=data)
            )
        except RuntimeError:  # shutting down: the writer has closed
            log.warning("case_event_dropped", case_id=case_id, kind=kind)
            return
        self._announce(case_id, kind, actor, data)
