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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from acd.cases import Case, CaseEvent, NewCase
from acd.store.writer import AsyncCaseWriter
from media_gateway.session import CallSession

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

    # -- opening ---------------------------------------------------------------------------

    async def open_case(self, session: CallSession) -> int:
        """A new case for an inbound call; its id (also kept in ``session.vars["case_id"]``
        so IVR prompts and transfers can refer to it)."""
        channel = session.channel if session.channel in _CHANNELS else "other"
        new = NewCase(
            caller_number=session.caller or "anonymous",
            at=self._clock(),
            dialled=session.dialled,
            channel=channel,
            call_id=session.id,
        )
        case = await self.writer.run(lambda store: store.open_case(new))
        session.vars["case_id"] = str(case.id)
        return case.id

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
        """The caller joined ``queue`` (the original arrival: no ``kind`` key)."""
        self._write(
            case_id,
            "queued",
            "acd",
            queue=queue,
            skills=dict(skills or {}),
            priority=priority,
            language=language,
        )

    def work_queued(self, case_id: int, *, queue: str, kind: WorkKind, enqueued_at: float) -> None:
        """A message or callback request joined ``queue``, keeping the caller's place."""
        self._write(case_id, "queued", "acd", queue=queue, kind=kind, enqueued_at=enqueued_at)

    def offered(self, case_id: int, *, agent: str, queue: str) -> None:
        self._write(case_id, "offered", "acd", agent=agent, queue=queue)

    def rona(self, case_id: int, *, agent: str) -> None:
        """Ring-no-answer: the offer to ``agent`` timed out; the call keeps its place."""
        self._write(case_id, "rona", "acd", agent=agent)

    def answered(
        self, case_id: int, *, agent: str, queue: str, kind: WorkKind, waited: float
    ) -> None:
        """``agent`` took the call (or the message): the agent is the actor and the owner of
        this stretch of the case; ``waited`` counts from the original arrival."""
        self._write(
            case_id,
            "answered",
            agent,
            agent=agent,
            owner=agent,
            queue=queue,
            kind=kind,
            waited=round(waited, 1),
        )

    def transferred_by_ivr(self, case_id: int, *, target: str, ok: bool) -> None:
        self._write(case_id, "transferred", "ivr", target=target, ok=ok)

    def sent_to_voicemail(self, case_id: int, *, queue: str, reason: str) -> None:
        """The engine moved the caller to voicemail (wait limit, no agents, queue full)."""
        self._write(case_id, "transferred", "acd", to="voicemail", reason=reason, queue=queue)

    def overflowed(self, case_id: int, *, from_queue: str, to_queue: str, reason: str) -> None:
        self._write(
            case_id,
            "transferred",
            "acd",
            from_queue=from_queue,
            to_queue=to_queue,
            reason=reason,
        )

    def transferred_by_agent(self, case_id: int, *, agent: str, to: str) -> None:
        """The agent's phone transferred the caller (REFER); the case follows the caller."""
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
        self._write(case_id, "hung_up", actor, **data)

    def note(self, case_id: int, actor: str, *, text: str, **data: str) -> None:
        self._write(case_id, "note", actor, text=text, **data)

    # -- reads (the HTTP routes) -----------------------------------------------------------

    async def trail(self, case_id: int) -> CaseTrail | None:
        """The case and every event written so far (queued writes are flushed first)."""
        await self.writer.flush()
        case = await self.writer.run(lambda store: store.get_case(case_id))
        if case is None:
            return None
        events = await self.writer.run(lambda store: store.events(case_id))
        return CaseTrail(case=case, events=events)

    async def cases(self, *, caller: str | None = None, limit: int = 50) -> list[Case]:
        """The latest cases, or a caller's (by normalised number)."""
        if caller:
            return await self.writer.run(lambda store: store.cases_for_caller(caller, limit))
        return await self.writer.run(lambda store: store.list_cases(limit=limit))

    # -- engine log ------------------------------------------------------------------------

    def engine_log(self, records: list[dict[str, Any]]) -> None:
        """Store the ACD engine's log records (statistics are folded from them)."""
        for record in records:
            try:
                self.writer.append_log(record)
            except (RuntimeError, ValueError) as exc:
                log.warning("acd_log_dropped", kind=record.get("kind"), error=str(exc))

    def _write(self, case_id: int, kind: str, actor: str, /, **data: Any) -> None:
        if not case_id:
            return
        try:
            self.writer.append_event(
                case_id, CaseEvent(at=self._clock(), kind=kind, actor=actor, data=data)
            )
        except RuntimeError:  # shutting down: the writer has closed
            log.warning("case_event_dropped", case_id=case_id, kind=kind)
