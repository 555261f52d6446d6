"""Plain data shared by the ACD engine, the routing strategies, statistics and the simulator.

Vocabulary (one word per concept, see STYLE.md §2.6):

* **call**: one caller waiting in, or served from, a queue (a voicemail message or a callback
  re-enters as a call-like item with ``kind`` set and its original ``enqueued_at``).
* **agent status** is the person's choice (FreeSWITCH's split): ``logged_out``, ``available``,
  ``paused`` (with a reason).  **Agent state** is the engine's: ``idle``, ``reserved`` (an offer is
  ringing), ``on_call``, ``wrap_up``.  An agent is *routable* when status is ``available``, state is
  ``idle`` and no reject/busy/no-answer delay is running.
* **offer**: the engine asks the shell to ring one agent for one call; while it rings the agent holds
  a **reservation**.  An agent holds at most one reservation across all queues.
* **log record**: one append-only fact about a transition, with its timestamp; statistics are a pure
  fold over these (``acd.stats``), and the store persists them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, NewType

_NO_DATA: Mapping[str, Any] = MappingProxyType({})


def _typed_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[Any, ...], other: object) -> bool:
    return not (type(self) is type(other) and tuple.__eq__(self, other))


def typed_equality(*classes: type) -> None:
    """Make ``NamedTuple`` records compare equal only to records of the same class (a plain tuple
    compares by fields alone, so ``CallEnded(at=1, call_id="c") == CallAbandoned(at=1,
    call_id="c")`` would hold); hashing stays the tuple's. Events, actions and log records are
    ``NamedTuple`` s: immutable, and built several times faster than frozen dataclasses, which
    matters because the simulator builds several per simulated call."""
    for cls in classes:
        setattr(cls, "__eq__", _typed_eq)  # noqa: B010
        setattr(cls, "__ne__", _typed_ne)  # noqa: B010
        setattr(cls, "__hash__", tuple.__hash__)  # noqa: B010


CallId = NewType("CallId", str)
AgentId = NewType("AgentId", str)

CallKind = Literal["call", "voicemail", "callback"]
"""What a queued item is: a live call, a voicemail message or a callback request."""


class AgentStatus(enum.Enum):
    """The person's status (set by the agent or the supervisor)."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    PAUSED = "paused"


class AgentState(enum.Enum):
    """The engine's state for a logged-in agent."""

    IDLE = "idle"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


class CallState(enum.Enum):
    """Where a call is in its life inside the ACD."""

    WAITING = "waiting"
    """In a queue; may be ringing one or more agents (``offers`` non-empty) and keeps its place."""
    CONNECTED = "connected"
    """Answered by an agent; no longer in any queue."""


LogKind = Literal[
    "call_queued",
    "call_refused",
    "call_offered",
    "offer_cancelled",
    "call_answered",
    "answer_refused",
    "call_abandoned",
    "call_overflowed",
    "call_voicemail",
    "call_left",
    "call_ended",
    "agent_state",
    "config_changed",
]


class LogRecord(NamedTuple):
    """One append-only fact emitted by the engine (a flat, immutable row: a ``NamedTuple`` rather
    than a frozen dataclass because the engine writes about a dozen per call, and tuples are
    several times cheaper to build; Ciw's ``DataRecord`` is the model).

    Field meanings per ``kind`` (``data`` keys in brackets):

    * ``call_queued``: a call joined ``queue`` [priority, skills, enqueued_at, kind, sl, short];
      ``sl``/``short`` are the queue's service-level and short-abandon thresholds at that time so
      history never changes when the configuration does.
    * ``call_refused``: a call was not admitted to ``queue`` [reason, priority, skills, sl, short].
    * ``call_offered``: ``agent_id`` is rung for the call [strategy, score].
    * ``offer_cancelled``: the offer to ``agent_id`` ended without an answer [reason].
    * ``call_answered``: ``agent_id`` took the call [waited]; ``waited`` counts from joining ``queue``.
    * ``answer_refused``: a late answer by ``agent_id`` was refused [reason].
    * ``call_abandoned`` / ``call_voicemail`` / ``call_left``: the call left ``queue`` without an
      agent [waited, reason].
    * ``call_overflowed``: the call moved from ``queue`` [to, reason, waited].
    * ``call_ended``: the answered call hung up [talk].
    * ``agent_state``: ``agent_id`` entered [state, reason]; ``state`` is one of ``logged_out``,
      ``idle``, ``paused``, ``reserved``, ``on_call``, ``wrap_up`` (``paused`` only when idle).
    * ``config_changed``: [version].
    """

    at: float
    seq: int
    kind: LogKind
    call_id: CallId | None = None
    agent_id: AgentId | None = None
    queue: str | None = None
    data: Mapping[str, Any] = _NO_DATA

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the store's row)."""
        return {
            "at": self.at,
            "seq": self.seq,
            "kind": self.kind,
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "queue": self.queue,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> LogRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            at=float(row["at"]),
            seq=int(row["seq"]),
            kind=row["kind"],
            call_id=row.get("call_id"),
            agent_id=row.get("agent_id"),
            queue=row.get("queue"),
            data=dict(row.get("data") or {}),
        )


AgentWord = Literal["logged_out", "idle", "paused", "reserved", "on_call", "wrap_up"]
"""One word for an agent's situation, the same as the ``agent_state`` log records': the agent
state when not idle (``reserved`` while an offer rings), else the status (``idle`` means
available: ready for calls)."""


class QueueStatus(NamedTuple):
    """One queue as :meth:`acd.engine.AcdEngine.queue_status` sees it now: a typed read for the
    composition root and wallboards (instead of the string keys of ``snapshot()``)."""

    queue: str
    waiting: int
    """Calls waiting (ringing ones included: they keep their place)."""
    routable: int
    """Logged-in, ready agents able to take this queue's calls now (available, idle, no
    reject/busy/no-answer delay running)."""
    logged_in: int
    """Members (direct or through groups) who are logged in, whatever their state."""
    longest_wait: float
    """Seconds the oldest waiting call has waited in this queue; 0 when none waits."""
    ewt_seconds: float
    """The engine's expected wait for a call joining now: the computation behind
    ``AnnouncePosition.ewt_seconds`` at position ``waiting + 1``."""


class AgentStatusView(NamedTuple):
    """One agent as :meth:`acd.engine.AcdEngine.agent_status` sees it now (named apart from the
    :class:`AgentStatus` enum, the person's status, which is one input of ``state``)."""

    agent_id: str
    state: AgentWord
    reason: str
    """The pause reason while paused (also while a call in progress finishes), else ``""``."""
    since: float
    """When ``state`` (or the pause reason) last changed."""
    call_id: str
    """The call ringing for or talking to the agent, ``""`` when none."""
    queues: tuple[str, ...]
    """The queues the agent serves (directly or through groups), in configuration order."""
    routable: bool
    """Whether the next call could be offered to the agent now (``idle`` and no delay running)."""
    misses: int
    """Offers in a row left unanswered (at the agent's ``max_misses`` the engine pauses them
    with reason ``"rona"``)."""
