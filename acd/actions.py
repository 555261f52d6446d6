"""Actions returned by :meth:`acd.engine.AcdEngine.handle` (imperative; STYLE.md §2.6).

The engine has already applied the state change each action describes; the shell (``acd.service``
in the live engine, ``sim`` in the simulator) carries it out on the outside world. Ids are plain
``str`` (``acd.model.CallId``/``AgentId`` are ``NewType``s of it).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from acd.model import typed_equality


class OfferCall(NamedTuple):
    """Ring ``agent_id`` for ``call_id`` (the agent now holds the reservation). The engine times the
    offer out by itself after ``ring_timeout`` seconds and sends :class:`CancelOffer`."""

    call_id: str
    agent_id: str
    queue: str
    ring_timeout: float


CancelReason = Literal[
    "answered_elsewhere",
    "caller_abandoned",
    "no_answer",
    "agent_paused",
    "agent_logged_out",
    "call_left",
]


class CancelOffer(NamedTuple):
    """Stop ringing ``agent_id`` for ``call_id`` (reservation released)."""

    call_id: str
    agent_id: str
    reason: CancelReason


class BridgeCall(NamedTuple):
    """``agent_id``'s answer won: connect the caller to the agent leg."""

    call_id: str
    agent_id: str
    queue: str


class RefuseAnswer(NamedTuple):
    """A late answer (another agent already took the call, or the offer was withdrawn): hang up
    ``agent_id``'s leg; the agent keeps whatever state the engine gave them."""

    call_id: str
    agent_id: str
    reason: Literal["already_answered", "offer_withdrawn"]


class SendToVoicemail(NamedTuple):
    """The call leaves ``queue`` for voicemail (overflow target ``voicemail``)."""

    call_id: str
    queue: str
    reason: Literal["max_wait", "no_agents", "queue_full"]


class Overflow(NamedTuple):
    """The call moved from ``from_queue`` to ``to_queue`` inside the engine (it keeps its original
    enqueue time); informational for the shell (prompts, case record)."""

    call_id: str
    from_queue: str
    to_queue: str
    reason: Literal["max_wait", "no_agents", "queue_full"]


RejectReason = Literal[
    "queue_full",
    "no_agents",
    "max_wait",
    "unknown_queue",
    "overflow_loop",
    "duplicate_call",
]


class RejectCall(NamedTuple):
    """The call was not admitted, or left its queue without an agent and with no overflow target;
    the shell decides what follows (busy tone, next IVR step, hang up)."""

    call_id: str
    queue: str
    reason: RejectReason


class AnnouncePosition(NamedTuple):
    """Tell the waiting caller their position (1 = next) and estimated wait in seconds."""

    call_id: str
    queue: str
    position: int
    ewt_seconds: float


class PauseAgent(NamedTuple):
    """The engine paused ``agent_id`` (``reason`` is ``"rona"`` after ``max_misses`` unanswered
    offers in a row); show it on the agent's client."""

    agent_id: str
    reason: str


Action = (
    OfferCall
    | CancelOffer
    | BridgeCall
    | RefuseAnswer
    | SendToVoicemail
    | Overflow
    | RejectCall
    | AnnouncePosition
    | PauseAgent
)

typed_equality(
    OfferCall,
    CancelOffer,
    BridgeCall,
    RefuseAnswer,
    SendToVoicemail,
    Overflow,
    RejectCall,
    AnnouncePosition,
    PauseAgent,
)
