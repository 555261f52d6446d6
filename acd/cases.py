"""Case records: one case per call, with an append-only, timestamped event trail (pure model).

A case carries the caller (looked up by a normalised number so an agent sees that caller's
earlier cases), a type, a status, an owner, a workgroup and a due time. Every change is a
:class:`CaseEvent`; events are never edited or deleted (the stores enforce it in SQL).
No I/O and no clock here: ``at``/``now`` are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

CaseType = Literal[
    "complaint", "fault", "consultation", "query", "care", "revisit", "suggestion", "callback"
]
"""The one list of case types: the seeds' seven, and ``callback`` (a caller's callback request,
written by earlier releases for voicemail work)."""
CaseStatus = Literal["open", "in_progress", "pending", "resolved", "closed"]
Channel = Literal["sip", "trunk", "webrtc", "voicemail", "other"]

CASE_TYPES: Final[frozenset[str]] = frozenset(get_args(CaseType))
CASE_STATUSES: Final[frozenset[str]] = frozenset(get_args(CaseStatus))
CHANNELS: Final[frozenset[str]] = frozenset(get_args(Channel))

#: Event kinds written by the call path and by the case service (DESIGN.md, "Case record").
EVENT_KINDS: Final[frozenset[str]] = frozenset(
    {
        "opened",
        "entered",
        "ivr_input",
        "ivr_set",
        "ivr_branch",
        "queued",
        "offered",
        "rona",
        "answered",
        "transferred",
        "voicemail_left",
        "abandoned",
        "hung_up",
        "wrap_up_done",
        "note",
        "escalated",
        "status_changed",
        "owner_changed",
        "workgroup_changed",
        "type_changed",
        "due_changed",
        "queue_changed",
        "disposition_set",
        "reopened",
        "recording",
        "recording_expired",
        "call_control",
    }
)

#: ``recording`` attaches a recorded conversation to the case (data: ``recording_id``,
#: ``seconds``, ``agent``...); ``recording_expired`` says its retention deleted it.
#: ``GET /api/cases/{id}`` lists them apart, as the case's recordings.
RECORDING_EVENT_KINDS: Final[frozenset[str]] = frozenset({"recording"})

#: The statuses a case is in while someone works on it; an answered call's case moves to
#: ``in_progress`` with the answering agent as owner (:func:`answer_changes`) and stays there
#: until somebody resolves or closes it (its disposition is set apart, at wrap-up).
WORKED_STATUS: Final = "in_progress"

#: Allowed status transitions. ``closed`` is terminal: only a ``reopened`` event leaves it.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "open": frozenset({"in_progress", "pending", "resolved", "closed"}),
    "in_progress": frozenset({"open", "pending", "resolved", "closed"}),
    "pending": frozenset({"open", "in_progress", "resolved", "closed"}),
    "resolved": frozenset({"in_progress", "closed", "open"}),
    "closed": frozenset(),
}

#: Statuses for which a due time still matters (the case is not done).
ACTIVE_STATUSES: Final[frozenset[str]] = frozenset({"open", "in_progress", "pending"})

#: Fields that :meth:`CaseStore.update_case` may change, with the event kind each change records.
UPDATABLE_FIELDS: Final[dict[str, str]] = {
    "status": "status_changed",
    "owner": "owner_changed",
    "workgroup": "workgroup_changed",
    "case_type": "type_changed",
    "due_at": "due_changed",
    "queue": "queue_changed",
    "disposition": "disposition_set",
}


class CaseError(ValueError):
    """A case value or transition was refused (bad type, status, kind or transition)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One case record (a row; its history is the event trail)."""

    id: int
    """Store-assigned id (0 before insertion)."""
    caller_number: str
    """Caller's number, normalised with :func:`normalise_number` (lookup key)."""
    caller_name: str = ""
    dialled: str = ""
    """The dialled number (DNIS)."""
    channel: str = "sip"
    call_id: str = ""
    """The ACD/gateway call id this case was opened for ("" when opened by hand)."""
    case_type: str = "query"
    status: str = "open"
    owner: str = ""
    """Agent or person owning the case ("" = nobody yet)."""
    workgroup: str = ""
    due_at: float | None = None
    """Escalation deadline (epoch seconds) or None for no deadline."""
    created_at: float = 0.0
    updated_at: float = 0.0
    queue: str = ""
    """The ACD queue the call waited in ("" = none or unknown, e.g. cases from before 0.2)."""
    disposition: str = ""
    """The outcome recorded at wrap-up ("" = none yet); free text, set with ``update_case``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseEvent:
    """One entry of a case's trail: ``(at, kind, actor, data)``; ``seq`` is store-assigned."""

    at: float
    kind: str
    actor: str = ""
    """Who did it: an agent id, "system", "ivr", "escalation"..."""
    data: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable details."""
    seq: int = 0
    """Store-assigned, strictly increasing per store (0 before insertion)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCase:
    """What :meth:`CaseStore.open_case` needs; validated with :func:`validate_new_case`."""

    caller_number: str
    at: float
    caller_name: str = ""
    dialled: str = ""
    channel: str = "sip"
    call_id: str = ""
    case_type: str = "query"
    owner: str = ""
    workgroup: str = ""
    due_at: float | None = None
    actor: str = "system"
    queue: str = ""


_URI_RE = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s\-.()/]")


def normalise_number(raw: str) -> str:
    """Normalise a caller number for lookup (E.164-ish).

    Accepts ``tel:`` URIs (RFC 3966 §3, visual separators ``-.()`` removed) and ``sip:``/``sips:``
    URIs (the user part, RFC 3261 §19.1.1), display angle brackets, and parameters after ``;``.
    Keeps one leading ``+``; a leading ``00`` international prefix becomes ``+``. A user part that
    is not a number (``sip:alice@host``) is returned lower-cased as it is.
    """
    s = raw.strip()
    if "<" in s and ">" in s:
        s = s[s.index("<") + 1 : s.index(">")]
    s = _URI_RE.sub("", s)
    s = s.split(";", 1)[0]
    s = s.split("@", 1)[0]
    compact = _SEPARATORS.sub("", s)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if digits.isdigit() and digits:
        if not plus and digits.startswith("00") and len(digits) > 4:
            return "+" + digits[2:]
        return ("+" if plus else "") + digits
    return s.strip().lower()


def validate_new_case(new: NewCase) -> None:
    """Raise :class:`CaseError` for an unknown type or channel, or an empty caller number."""
    if new.case_type not in CASE_TYPES:
        raise CaseError(f"case type must be one of {sorted(CASE_TYPES)}, got {new.case_type!r}")
    if new.channel not in CHANNELS:
        raise CaseError(f"channel must be one of {sorted(CHANNELS)}, got {new.channel!r}")
    if not normalise_number(new.caller_number):
        raise CaseError("caller number is empty")


def validate_event(event: CaseEvent) -> None:
    """Raise :class:`CaseError` for an unknown event kind or a non-dict payload."""
    if event.kind not in EVENT_KINDS:
        raise CaseError(f"event kind must be one of {sorted(EVENT_KINDS)}, got {event.kind!r}")
    if not isinstance(event.data, dict):
        raise CaseError("event data must be a dict")


def check_transition(current: str, new: str) -> None:
    """Raise :class:`CaseError` unless ``current -> new`` is allowed (``closed`` is terminal)."""
    if new not in CASE_STATUSES:
        raise CaseError(f"status must be one of {sorted(CASE_STATUSES)}, got {new!r}")
    if current == new:
        raise CaseError(f"case is already {current!r}")
    if new not in TRANSITIONS.get(current, frozenset()):
        if current == "closed":
            raise CaseError("case is closed; reopen it first (a 'reopened' event)")
        raise CaseError(f"status {current!r} cannot become {new!r}")


def plan_update(case: Case, changes: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Validate field changes; return ``(field, old, new)`` for the ones that differ.

    ``status`` changes obey :func:`check_transition`; ``case_type`` must be known.
    """
    out: list[tuple[str, Any, Any]] = []
    for name, value in changes.items():
        if name not in UPDATABLE_FIELDS:
            raise CaseError(f"field {name!r} cannot be updated; one of {sorted(UPDATABLE_FIELDS)}")
        old = getattr(case, name)
        if old == value:
            continue
        if name == "status":
            check_transition(case.status, str(value))
        elif name == "case_type" and value not in CASE_TYPES:
            raise CaseError(f"case type must be one of {sorted(CASE_TYPES)}, got {value!r}")
        elif name in ("owner", "workgroup", "queue", "disposition") and not isinstance(value, str):
            raise CaseError(f"{name} must be a string")
        out.append((name, old, value))
    return out


#: Event kinds that state a field's new value themselves: a change of that field written
#: together with such an event (``update_case(events=[...])``) gets no ``*_changed`` event of
#: its own. A caller's first ``queued`` event sets the case's queue; saying it twice is noise.
STATED_BY: Final[dict[str, str]] = {"queued": "queue"}


def change_events(
    changes: list[tuple[str, Any, Any]],
    *,
    at: float,
    actor: str,
    reason: str = "",
    stated: Sequence[CaseEvent] = (),
) -> list[CaseEvent]:
    """The events recording planned field changes (one per field), except the changes one of
    ``stated`` (events written with them) already states (:data:`STATED_BY`)."""
    said = {
        (STATED_BY[ev.kind], ev.data.get(STATED_BY[ev.kind]))
        for ev in stated
        if ev.kind in STATED_BY
    }
    events = []
    for name, old, new in changes:
        if old == "" and (name, new) in said:
            continue
        data: dict[str, Any] = {"field": name, "from": old, "to": new}
        if reason:
            data["reason"] = reason
        events.append(CaseEvent(at=at, kind=UPDATABLE_FIELDS[name], actor=actor, data=data))
    return events


def is_overdue(case: Case, now: float) -> bool:
    """True when an active case has passed its due time."""
    return case.status in ACTIVE_STATUSES and case.due_at is not None and case.due_at <= now


def answer_changes(case: Case, agent: str) -> dict[str, Any]:
    """What an agent's answer changes in a case: the agent becomes its owner, and a case not yet
    worked on moves to :data:`WORKED_STATUS` (a closed case keeps its status: closed is
    terminal, reopening is a person's decision)."""
    changes: dict[str, Any] = {}
    if case.owner != agent:
        changes["owner"] = agent
    if case.status != WORKED_STATUS and WORKED_STATUS in TRANSITIONS.get(case.status, ()):
        changes["status"] = WORKED_STATUS
    return changes


# -- search ------------------------------------------------------------------------------------

CaseSort = Literal["created_at", "updated_at"]
"""The times a search can be ordered by (ties broken by id, in the same direction)."""
CASE_SORTS: Final[frozenset[str]] = frozenset(get_args(CaseSort))


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseSearch:
    """A case search: every given filter must hold (a tuple: any of its values). Pages are
    keyset pages: ``after`` is the ``(sort value, id)`` of the last case of the previous page,
    so a page never repeats or skips a case while others are added (new cases land on the
    first page of a newest-first search)."""

    caller: str | None = None
    """The caller's number, in any notation :func:`normalise_number` understands."""
    ids: tuple[int, ...] = ()
    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    owner: str | None = None
    """An owner's id; ``""`` finds the cases nobody owns."""
    queue: str | None = None
    workgroup: str | None = None
    created_from: float | None = None
    """Opened at or after (epoch seconds)."""
    created_to: float | None = None
    """Opened before (epoch seconds)."""
    sort: CaseSort = "created_at"
    descending: bool = True
    limit: int = 50
    after: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        if self.sort not in CASE_SORTS:
            raise CaseError(f"sort must be one of {sorted(CASE_SORTS)}, got {self.sort!r}")
        if not 1 <= self.limit <= 10_000:
            raise CaseError(f"limit must be 1..10000, got {self.limit}")
        for t in self.types:
            if t not in CASE_TYPES:
                raise CaseError(f"case type must be one of {sorted(CASE_TYPES)}, got {t!r}")
        for st in self.statuses:
            if st not in CASE_STATUSES:
                raise CaseError(f"status must be one of {sorted(CASE_STATUSES)}, got {st!r}")

    def key(self, case: Case) -> tuple[float, int]:
        """The keyset position of ``case`` in this search's order (for ``after``)."""
        return (case.created_at if self.sort == "created_at" else case.updated_at, case.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CasePage:
    """One page of a search."""

    cases: list[Case]
    total: int
    """How many cases match the filters (all pages)."""
    more: bool
    """Whether cases follow this page."""
