"""What a restart needs from the case store (migration 0005): queued work and live calls.

:class:`StoredWork` is one queued voicemail message or callback request, kept from the moment
it is queued until an agent has had it; :class:`LiveCall` is a call whose case is open and
whose end has not been written yet. ``hotline/center/recovery.py`` reads both at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WorkKind = Literal["voicemail", "callback"]


@dataclass(frozen=True, slots=True)
class StoredWork:
    """A message or callback request waiting for an agent."""

    call_id: str
    """The engine's id for it (``vm-...``/``cb-...``), kept across a restart."""
    case_id: int
    kind: WorkKind
    queue: str
    enqueued_at: float
    """The caller's original arrival (epoch seconds): the work keeps the caller's place."""
    caller: str = ""
    recording: str = ""
    """The message's audio file (``voicemail``)."""
    callback: str = ""
    """Where a callback goes (the caller's number or URI)."""
    created_at: float = 0.0
    id: int = 0
    """The row's id (0 until stored)."""


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A call in progress, as the store knows it: its case was opened, its end not written."""

    case_id: int
    call_id: str
    opened_at: float
