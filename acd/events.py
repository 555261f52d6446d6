"""Events fed to :class:`acd.engine.AcdEngine` (past-tense facts; STYLE.md §2.6).

Ids on events are plain ``str`` (a ``CallId``/``AgentId`` is one); actions and log records carry
the ``NewType`` ids. Every event carries ``at``, the time it happened on the clock the driver injects (wall seconds in
the live service, virtual seconds in the simulator).  The engine never reads a clock.  Events older
than the engine's current time are handled as if they happened now.

The engine runs its own timers (ring timeout, wrap-up end, reject/busy delays, widening steps,
maximum wait, announcements); the driver only calls ``engine.handle(Tick(at=t))`` at
``engine.next_deadline()``.  Events the engine cannot place (an unknown call or agent, an answer
for a withdrawn offer) never raise: they return no action, or a :class:`~acd.actions.RefuseAnswer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from acd.config import AcdConfig
from acd.model import CallKind, typed_equality

_EMPTY: Mapping[str, Any] = MappingProxyType({})
"""Default ``skills`` / ``data`` (shared and read-only)."""


class CallArrived(NamedTuple):
    """A call (or voicemail message / callback request) asks to join a queue."""

    at: float
    call_id: str
    queue: str
    """Queue name from the configuration."""
    priority: int = 0
    """Caller priority; higher is served first. The queue's own ``priority`` is added."""
    skills: Mapping[str, int] = _EMPTY
    """Extra skill requirements ``{skill: minimum level 1-10}``, merged with the queue's (max)."""
    caller: str = ""
    """Caller id (ANI), informational."""
    data: Mapping[str, str] = _EMPTY
    """IVR variables, informational (kept for the wallboard and explanations)."""
    enqueued_at: float | None = None
    """Original enqueue time for ordering; a voicemail message or callback re-entering the ACD keeps
    its caller's place by passing the first enqueue time. Defaults to ``at``."""
    kind: CallKind = "call"
    """``call`` (someone on the line), or queued work: ``voicemail`` / ``callback``. Work waits for
    an agent however long it takes: the queue's ``max_wait``, ``when_no_agents``, ``max_len`` and
    position announcements apply to calls only."""


class CallAbandoned(NamedTuple):
    """The caller hung up while waiting (or while agents were being rung)."""

    at: float
    call_id: str


class CallEnded(NamedTuple):
    """An answered call hung up (either side). The agent enters wrap-up.

    For a call that was still waiting this is the same as :class:`CallAbandoned`."""

    at: float
    call_id: str


class AgentLoggedIn(NamedTuple):
    """An agent logged in; they become available unless ``paused_reason`` is given.

    For an agent already logged in it changes nothing, and in particular it does **not** clear a
    pause, the engine's automatic ``"rona"`` pause included. The live service sends it when the
    agent's phone registers, and a phone re-registers routinely (registration refresh, a network
    blip, a reboot) without anyone at the desk; the automatic pause exists precisely because a
    registered phone rang unanswered ``max_misses`` times. The way back is :class:`AgentReady`."""

    at: float
    agent_id: str
    paused_reason: str | None = None


class AgentLoggedOut(NamedTuple):
    """An agent logged out. A ringing offer is withdrawn (the call keeps its place); a call in
    progress continues and the agent is logged out when it ends."""

    at: float
    agent_id: str


class AgentReady(NamedTuple):
    """An agent (or a supervisor for them) made themselves available: the "ready" button.

    It ends any pause, the engine's automatic ``"rona"`` pause (``PauseAgent`` after
    ``max_misses`` unanswered offers) included, and resets the missed-offer counter; the agent
    is routable at once (unless busy: then from the end of the call or wrap-up) and is offered
    the first waiting call they qualify for, across their queues, in the same ``handle``. Ignored
    for a logged-out agent (log in with :class:`AgentLoggedIn`)."""

    at: float
    agent_id: str


class AgentPaused(NamedTuple):
    """An agent paused with a reason. A ringing offer is withdrawn (the call keeps its place); a
    call in progress continues and the pause starts when it ends."""

    at: float
    agent_id: str
    reason: str


class OfferAnswered(NamedTuple):
    """The agent's leg answered the offer for ``call_id``. The first answer wins; a later one gets
    :class:`~acd.actions.RefuseAnswer`."""

    at: float
    call_id: str
    agent_id: str


class OfferRejected(NamedTuple):
    """The agent declined the offer (e.g. 603 Decline). The agent gets ``reject_delay_seconds``."""

    at: float
    call_id: str
    agent_id: str


class OfferTimedOut(NamedTuple):
    """Ring-no-answer reported by the shell. The engine also times offers out by itself at
    ``ring_timeout``; whichever comes first counts, the other is ignored."""

    at: float
    call_id: str
    agent_id: str


class OfferFailed(NamedTuple):
    """The agent leg could not be rung (486 Busy Here, unreachable). The agent gets
    ``busy_delay_seconds``; it does not count as a miss."""

    at: float
    call_id: str
    agent_id: str
    reason: str = "busy"


class WrapUpDone(NamedTuple):
    """The agent finished wrap-up early (it also ends by itself after the wrap-up time)."""

    at: float
    agent_id: str


class WrapUpExtended(NamedTuple):
    """The agent (or a supervisor for them) asked for more wrap-up time: the wrap-up now ends
    ``seconds`` later than it would have (counted from now if its end had already been
    reached in the same instant). Ignored unless the agent is in wrap-up."""

    at: float
    agent_id: str
    seconds: float
    """More wrap-up seconds (> 0; anything else changes nothing)."""


class ConfigChanged(NamedTuple):
    """A new configuration is published (becomes version ``n + 1``); see ``acd.engine`` for the
    rule applied to calls already waiting."""

    at: float
    config: AcdConfig


class ConfigRolledBack(NamedTuple):
    """Re-publish an earlier configuration version (as a new version number)."""

    at: float
    version: int


class Tick(NamedTuple):
    """Time passed: fire every engine timer due at or before ``at``."""

    at: float


Event = (
    CallArrived
    | CallAbandoned
    | CallEnded
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentReady
    | AgentPaused
    | OfferAnswered
    | OfferRejected
    | OfferTimedOut
    | OfferFailed
    | WrapUpDone
    | WrapUpExtended
    | ConfigChanged
    | ConfigRolledBack
    | Tick
)

typed_equality(
    CallArrived,
    CallAbandoned,
    CallEnded,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentReady,
    AgentPaused,
    OfferAnswered,
    OfferRejected,
    OfferTimedOut,
    OfferFailed,
    WrapUpDone,
    WrapUpExtended,
    ConfigChanged,
    ConfigRolledBack,
    Tick,
)
