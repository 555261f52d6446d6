"""Cases and the floor's live state: translation between HTTP and the contact center.

``GET /api/cases``                 search: caller, case number, type, status, owner, queue,
                                   workgroup, opened from/to; sorted; keyset pages (``cursor``)
``GET /api/cases/{id}``            a case with its trail, notes, recordings and escalation state
``PATCH /api/cases/{id}``          type, status, owner, disposition, due time: each an event
``POST /api/cases/{id}/notes``     an append-only note by the signed-in person
``GET /api/acd``                   live queues and agents (the engine's snapshot)
``POST /api/ivr/reload``           re-read the configuration file's flows without a restart (a
                                   bad edit is refused with file, line and key; running flows stay)

Who may change a case: a supervisor (or admin) any case; an agent the cases they own and the
case of the call they are on now, and an agent assigns a case only to themselves. Every
signed-in person may read and search cases (a caller's earlier cases pop up on the agent's
screen). No store logic here: the center's :class:`~hotline.center.CaseLog` answers, and every
write goes through its writer thread, after the call path's own writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from acd.cases import (
    ACTIVE_STATUSES,
    RECORDING_EVENT_KINDS,
    Case,
    CaseError,
    CaseEvent,
    CaseSearch,
    CaseStatus,
    CaseType,
    is_overdue,
)
from acd.escalation import EscalationPolicy, levels_done
from hotline.center import ContactCenter, NoConfigFile
from hotline.config import ConfigError
from hotline.http.api import Access, Api, ApiCall, Principal, Role
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

PAGE_DEFAULT = 50
PAGE_MAX = 200


def declare(api: Api, hotline: Hotline) -> None:
    """The contact center's routes."""
    add_center_routes(api, hotline.center)


# -- models ------------------------------------------------------------------------------------


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _epoch(d: datetime) -> float:
    """A request's time as epoch seconds (a time without an offset is taken as UTC)."""
    return (d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp()


def _split(value: Any) -> Any:
    """``a,b`` or a repeated parameter (a list) -> a list; anything else as it is."""
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(",")) if v]
    if isinstance(value, list):
        return [v for item in value for v in _split(item)]
    return value


class _Model(BaseModel):
    """Field docstrings become the document's descriptions."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class _Request(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")


CaseId = Annotated[int, Field(ge=1, le=2**62)]
StaffId = Annotated[str, Field(max_length=64)]
SortKey = Literal["created_at", "-created_at", "updated_at", "-updated_at"]


class CaseSearchQuery(_Request):
    """``GET /api/cases``: every given filter must hold; a list filter matches any of its values
    (repeat the parameter or separate values with commas)."""

    caller: str | None = Field(default=None, min_length=1, max_length=64)
    """The caller's number, in any notation (``+33 6 12..``, ``tel:``, ``sip:...@``)."""
    id: list[CaseId] | None = Field(default=None, max_length=100)
    """Case numbers."""
    type: list[CaseType] | None = Field(default=None, max_length=20)
    status: list[CaseStatus] | None = Field(default=None, max_length=10)
    owner: StaffId | None = None
    """An owner's id; ``me`` for yourself; empty (``owner=``) for cases nobody owns."""
    queue: str | None = Field(default=None, max_length=64)
    workgroup: str | None = Field(default=None, max_length=64)
    from_: datetime | None = Field(default=None, alias="from")
    """Opened at or after this time (ISO 8601; UTC when no offset is given)."""
    to: datetime | None = None
    """Opened before this time (ISO 8601; UTC when no offset is given)."""
    sort: SortKey = "-created_at"
    """Order: ``created_at`` or ``updated_at``, newest first with a leading ``-``."""
    limit: int = Field(default=PAGE_DEFAULT, ge=1, le=PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=200)
    """Where the next page starts: the ``next_cursor`` of the previous page (same sort)."""

    _lists = field_validator("id", "type", "status", mode="before")(_split)


class CaseSummary(_Model):
    """A case as search results show it."""

    id: int
    caller: str
    """The caller's number, normalised."""
    caller_name: str
    dialled: str
    channel: str
    call_id: str
    type: CaseType
    status: CaseStatus
    owner: str
    """The owner's id ("" = nobody)."""
    workgroup: str
    queue: str
    """The queue the call waited in ("" = none)."""
    disposition: str
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None

    @classmethod
    def of(cls, c: Case) -> CaseSummary:
        return cls.model_validate(_summary_fields(c))


def _summary_fields(c: Case) -> dict[str, Any]:
    return {
        "id": c.id,
        "caller": c.caller_number,
        "caller_name": c.caller_name,
        "dialled": c.dialled,
        "channel": c.channel,
        "call_id": c.call_id,
        "type": c.case_type,
        "status": c.status,
        "owner": c.owner,
        "workgroup": c.workgroup,
        "queue": c.queue,
        "disposition": c.disposition,
        "created_at": _utc(c.created_at),
        "updated_at": _utc(c.updated_at),
        "due_at": None if c.due_at is None else _utc(c.due_at),
    }


class CaseSearchPage(_Model):
    """One page of a search."""

    items: list[CaseSummary]
    total: int
    """Cases matching the filters, on all pages."""
    limit: int
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""
    next: str | None
    """The next page's URL (the same query with the cursor); null on the last page."""


class CaseTrailEvent(_Model):
    """One entry of a case's trail."""

    seq: int
    at: datetime
    kind: str
    actor: str
    """Who: an agent id, ``caller``, ``system``, ``acd``, ``ivr``, ``escalation``..."""
    data: dict[str, Any]

    @classmethod
    def of(cls, e: CaseEvent) -> CaseTrailEvent:
        return cls(seq=e.seq, at=_utc(e.at), kind=e.kind, actor=e.actor, data=e.data)


class CaseNote(_Model):
    seq: int
    at: datetime
    author: str
    text: str


class CaseRecording(_Model):
    """A recorded conversation attached to the case (its ``recording`` trail event; played
    through the recording routes, which check who may)."""

    seq: int
    at: datetime
    id: str
    """The recording's id ("" when the event names none)."""
    agent: str
    seconds: float | None
    expired: bool
    """Deleted by its queue's retention (a later ``recording_expired`` event)."""
    data: dict[str, Any]


class CaseEscalation(_Model):
    """Where the case stands against its due time."""

    due_at: datetime | None
    """The deadline (null: none)."""
    overdue: bool
    """Still active (open, in progress, pending) at or past its due time."""
    level: str | None
    """The last escalation level reached (null: not escalated)."""
    levels_done: int
    escalated_at: datetime | None
    next_level: str | None
    """The level the case reaches next if it stays active (null: none)."""
    next_level_at: datetime | None


class CaseDetail(CaseSummary):
    """A case with everything that happened to it."""

    events: list[CaseTrailEvent]
    """The whole trail, oldest first."""
    notes: list[CaseNote]
    recordings: list[CaseRecording]
    escalation: CaseEscalation


class CasePath(_Model):
    case_id: CaseId


class CaseNoteBody(_Request):
    text: str = Field(min_length=1, max_length=4000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a note needs some text")
        return v


class CaseChange(_Request):
    """``PATCH /api/cases/{id}``: the fields to change (at least one); each change becomes an
    event on the trail, by the signed-in person."""

    type: CaseType | None = None
    status: CaseStatus | None = None
    """A transition the case's state machine allows (409 otherwise); ``open`` on a closed case
    reopens it."""
    owner: StaffId | None = None
    """A staff member's id, or "" for nobody; an agent may only take a case themselves."""
    disposition: str | None = Field(default=None, max_length=200)
    """The outcome, recorded at wrap-up."""
    due_at: datetime | None = None
    """The escalation deadline (null clears it); supervisors only."""

    def changes(self) -> dict[str, Any]:
        """Store field -> new value, for the fields given."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "due_at":
                out["due_at"] = None if value is None else _epoch(value)
            elif value is None:
                continue
            elif name == "type":
                out["case_type"] = value
            else:
                out[name] = value
        return out


class IvrReloaded(_Model):
    ok: bool
    version: int


class AcdWaitingCall(_Model):
    call_id: str
    position: int
    priority: int
    waited: float
    """Seconds since the caller joined this queue."""
    since_enqueued: float
    """Seconds since the original arrival (a message keeps the caller's)."""
    ringing: list[str]
    kind: str
    caller: str
    step: int
    """The widening step reached."""


class AcdQueue(_Model):
    strategy: str
    waiting: int
    oldest_wait: float
    staffed: int
    logged_in: int
    routable: int
    aht: float
    draining: bool
    calls: list[AcdWaitingCall]


class AcdAgent(_Model):
    status: str
    state: str
    reason: str | None
    """The pause reason (null when not paused)."""
    call_id: str | None
    idle_since: datetime
    calls_taken: int
    talk_time: float
    occupancy: float
    misses: int
    routable: bool


class AcdSnapshot(_Model):
    """The engine's live state (the wallboard)."""

    at: datetime
    version: int
    """The routing configuration's version."""
    queues: dict[str, AcdQueue]
    agents: dict[str, AcdAgent]


# -- cursor ------------------------------------------------------------------------------------


def encode_cursor(sort: str, key: tuple[float, int]) -> str:
    raw = json.dumps([sort, key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[float, int]:
    """The keyset position in ``cursor``; 422 when it is not one of ours or of another sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, value, case_id = json.loads(raw)
        if not isinstance(value, int | float) or not isinstance(case_id, int):
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error):
        raise api_error(422, "bad_cursor", "the cursor is not one this API gave") from None
    if got_sort != sort:
        raise api_error(422, "bad_cursor", f"the cursor belongs to sort={got_sort}, not {sort}")
    return float(value), case_id


# -- rules -------------------------------------------------------------------------------------


def may_change(
    who: Principal, case: Case, *, on_call: int | None, changes: dict[str, Any] | None = None
) -> None:
    """Raise 403 unless ``who`` may make ``changes`` (None: add a note) to ``case``."""
    if who.role.at_least(Role.SUPERVISOR):
        return
    if case.owner != who.user and on_call != case.id:
        raise api_error(
            403,
            "forbidden",
            "an agent changes only the cases they own and the case of their current call",
        )
    changes = changes or {}
    if "owner" in changes and changes["owner"] != who.user:
        raise api_error(403, "forbidden", "assigning a case to someone else needs a supervisor")
    if "due_at" in changes:
        raise api_error(403, "forbidden", "setting a case's due time needs a supervisor")


def escalation_state(
    case: Case, events: list[CaseEvent], policy: EscalationPolicy, now: float
) -> CaseEscalation:
    done = levels_done(events)
    last = next((e for e in reversed(events) if e.kind == "escalated"), None)
    level = None if last is None else str(last.data.get("level", "")) or None
    next_level = next_at = None
    if case.due_at is not None and case.status in ACTIVE_STATUSES and done < len(policy.chain):
        next_level = policy.chain[done]
        next_at = _utc(case.due_at + done * policy.step_after_seconds)
    return CaseEscalation(
        due_at=None if case.due_at is None else _utc(case.due_at),
        overdue=is_overdue(case, now),
        level=level,
        levels_done=done,
        escalated_at=None if last is None else _utc(last.at),
        next_level=next_level,
        next_level_at=next_at,
    )


def recordings(events: list[CaseEvent]) -> list[CaseRecording]:
    expired = {str(e.data.get("recording_id")) for e in events if e.kind == "recording_expired"}
    out = []
    for e in events:
        if e.kind not in RECORDING_EVENT_KINDS:
            continue
        rec_id = str(e.data.get("recording_id", ""))
        seconds = e.data.get("seconds")
        out.append(
            CaseRecording(
                seq=e.seq,
                at=_utc(e.at),
                id=rec_id,
                agent=str(e.data.get("agent", e.actor)),
                seconds=float(seconds) if isinstance(seconds, int | float) else None,
                expired=bool(rec_id) and rec_id in expired,
                data=e.data,
            )
        )
    return out


def case_detail(
    case: Case, events: list[CaseEvent], policy: EscalationPolicy, now: float
) -> CaseDetail:
    return CaseDetail.model_validate(
        {
            **_summary_fields(case),
            "events": [CaseTrailEvent.of(e) for e in events],
            "notes": [
                CaseNote(seq=e.seq, at=_utc(e.at), author=e.actor, text=str(e.data.get("text", "")))
                for e in events
                if e.kind == "note"
            ],
            "recordings": recordings(events),
            "escalation": escalation_state(case, events, policy, now),
        }
    )


# -- routes ------------------------------------------------------------------------------------


def add_center_routes(
    api: Api,
    center: ContactCenter,
    *,
    escalation: EscalationPolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Declare the contact center's routes on ``api``."""
    policy = escalation or center.settings.escalation
    cases = center.cases
    staff = frozenset(center.settings.agents)

    async def detail(case_id: int) -> CaseDetail:
        trail = await cases.trail(case_id)
        if trail is None:
            raise _no_case(case_id)
        return case_detail(trail.case, trail.events, policy, clock())

    @api.route(
        "GET",
        "/api/acd",
        access=Access.SUPERVISOR,
        summary="Live queues and agents (the engine's snapshot)",
        tags=["floor"],
        response=AcdSnapshot,
    )
    async def acd(call: ApiCall) -> AcdSnapshot:
        snap = center.acd_snapshot()
        return AcdSnapshot.model_validate(
            {
                **snap,
                "at": _utc(snap["at"]),
                "agents": {
                    aid: {**a, "idle_since": _utc(a["idle_since"])}
                    for aid, a in snap["agents"].items()
                },
            }
        )

    @api.route(
        "GET",
        "/api/cases",
        access=Access.SIGNED_IN,
        summary="Search cases",
        description=(
            "Filters combine with AND; a list filter (id, type, status) matches any of its"
            " values. Pages follow the sort order (ties by case number) and never repeat or"
            " skip a case: pass next_cursor as cursor. Sorting by updated_at pages by a time"
            " that changes: a case updated while you page may move."
        ),
        tags=["cases"],
        query=CaseSearchQuery,
        response=CaseSearchPage,
        errors=[422],
    )
    async def search_cases(call: ApiCall) -> CaseSearchPage:
        q: CaseSearchQuery = call.query
        sort = q.sort.lstrip("-")
        descending = q.sort.startswith("-")
        owner = call.user.user if q.owner == "me" else q.owner
        search = CaseSearch(
            caller=q.caller,
            ids=tuple(q.id or ()),
            types=tuple(q.type or ()),
            statuses=tuple(q.status or ()),
            owner=owner,
            queue=q.queue,
            workgroup=q.workgroup,
            created_from=None if q.from_ is None else _epoch(q.from_),
            created_to=None if q.to is None else _epoch(q.to),
            sort="updated_at" if sort == "updated_at" else "created_at",
            descending=descending,
            limit=q.limit,
            after=None if q.cursor is None else decode_cursor(q.cursor, q.sort),
        )
        page = await cases.search(search)
        cursor = (
            encode_cursor(q.sort, search.key(page.cases[-1])) if page.more and page.cases else None
        )
        url = call.request.rel_url
        return CaseSearchPage(
            items=[CaseSummary.of(c) for c in page.cases],
            total=page.total,
            limit=q.limit,
            next_cursor=cursor,
            next=None if cursor is None else str(url.update_query(cursor=cursor)),
        )

    @api.route(
        "GET",
        "/api/cases/{case_id}",
        access=Access.SIGNED_IN,
        summary="A case with its trail, notes, recordings and escalation state",
        tags=["cases"],
        path_model=CasePath,
        response=CaseDetail,
        errors=[404],
    )
    async def read_case(call: ApiCall) -> CaseDetail:
        return await detail(call.path.case_id)

    @api.route(
        "PATCH",
        "/api/cases/{case_id}",
        access=Access.SIGNED_IN,
        summary="Change a case's type, status, owner, disposition or due time",
        description=(
            "Each change is an event on the trail with you as its actor. A supervisor changes"
            " any case; an agent the cases they own and the case of their current call, and"
            " assigns a case only to themselves. 409 for a status change the case's state"
            " machine refuses (closed is final until reopened with status=open)."
        ),
        tags=["cases"],
        path_model=CasePath,
        body=CaseChange,
        response=CaseDetail,
        errors=[404, 409],
    )
    async def change_case(call: ApiCall) -> CaseDetail:
        who = call.user
        case_id: int = call.path.case_id
        body: CaseChange = call.body
        changes = body.changes()
        if not changes:
            raise api_error(422, "nothing_to_change", "give at least one field to change")
        owner = changes.get("owner")
        if owner and owner not in staff:
            raise api_error(422, "unknown_owner", f"no staff member {owner!r}")
        on_call = cases.current_case(who.user)

        def check(case: Case) -> None:
            may_change(who, case, on_call=on_call, changes=changes)

        try:
            changed = await cases.change(case_id, changes, actor=who.user, check=check)
        except CaseError as exc:
            raise api_error(409, "invalid_change", str(exc)) from None
        if changed is None:
            raise _no_case(case_id)
        return await detail(case_id)

    @api.route(
        "POST",
        "/api/cases/{case_id}/notes",
        access=Access.SIGNED_IN,
        summary="Add a note to a case",
        description=(
            "Notes are append-only events (kind note) with you as the author. Who may add one:"
            " as for changes (a supervisor any case; an agent their own and their current call's)."
        ),
        tags=["cases"],
        path_model=CasePath,
        body=CaseNoteBody,
        response=CaseNote,
        status=201,
        errors=[404],
    )
    async def add_note(call: ApiCall) -> CaseNote:
        who = call.user
        case_id: int = call.path.case_id
        case = await cases.case(case_id)
        if case is None:
            raise _no_case(case_id)
        may_change(who, case, on_call=cases.current_case(who.user))
        event = await cases.add_note(case_id, who.user, call.body.text)
        return CaseNote(seq=event.seq, at=_utc(event.at), author=event.actor, text=call.body.text)

    @api.route(
        "POST",
        "/api/ivr/reload",
        access=Access.ADMIN,
        summary="Re-read the IVR flows from the configuration file",
        tags=["routing"],
        response=IvrReloaded,
        errors=[409],
    )
    async def reload_ivr(call: ApiCall) -> IvrReloaded:
        try:
            version = await center.reload_ivr_from_file()
        except NoConfigFile as exc:
            raise api_error(409, "no_config_file", str(exc)) from None
        except ConfigError as exc:
            raise api_error(422, "invalid_flows", str(exc)) from None
        return IvrReloaded(ok=True, version=version)


def _no_case(case_id: int) -> web.HTTPException:
    return api_error(404, "no_such_case", f"no case {case_id}")
