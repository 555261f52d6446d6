"""The agents' desk: an agent's state, the call in hand, and their voicemail and callback work.

:class:`AgentDesk` sits beside the engine in the :class:`~hotline.center.ContactCenter` (as
``center.agents``); the HTTP routes (``hotline/http/agents.py``) only translate. Every change
goes to the ACD engine as an event through the center's ``AcdService``; every action on a call
is written to the call's case (``CaseLog.call_control``).

**State.** ``ready`` ends a pause (the engine's automatic ``rona`` pause included) or logs the
agent in; ``pause`` takes one of ``[acd] pause_reasons`` (read from the configuration file:
routing versions applied through the API do not change them); ``end_wrap_up`` and
``extend_wrap_up`` act on the engine's wrap-up timer (``WrapUpDone``, ``WrapUpExtended``).

**Logging out and presence.** The engine logs an agent in when their first phone registers
(or their browser phone opens) and out when the last one goes. ``logout`` logs the agent out
*and keeps them out*: while they are signed off, a phone registering (a refresh, a reboot, a
second device) does not log them in again. They come back with ``ready`` (or ``pause``), which
needs a reachable phone (409 ``no_phone`` otherwise) and ends the signed-off mark. The mark is
kept in memory: after a restart, agents with a phone are logged in again.

**The call in hand.** :mod:`hotline.center.offers` reports each bridged conversation
(:meth:`AgentDesk.talking`) and the end of the agent's leg (:meth:`AgentDesk.agent_left`). On
it: hold and resume (the caller hears music, re-INVITE sendonly), mute (the agent's voice and
keys no longer reach the caller, who hears silence), keys (RFC 4733 to the party the agent is
talking to: the colleague during a consultation, else the caller), hang up, and transfers:

* **blind** to a colleague (id or extension): the agent's leg ends at once (the agent goes to
  wrap-up), the caller hears music while the colleague's phone rings; when nobody answers, the
  caller is queued again in the call's queue rather than lost;
* **blind** to a queue: the agent's leg ends and the caller waits in that queue, on the same
  case, as a new arrival (please-hold, music, announcements, keys 1 and 2);
* **attended** to a colleague: the caller is held (music), the colleague is rung and, once they
  answer, talks with the agent; ``complete`` joins caller and colleague and ends the agent's
  leg, ``cancel`` (or the colleague hanging up, then ``cancel`` or ``resume``) brings the agent
  back to the caller.

A colleague who took a transferred call talks to the caller outside the ACD (as after a
transfer from a phone's REFER): the engine does not count it as their call.

**Tasks.** Voicemail messages and callback requests are queued work the engine routes like
calls (:mod:`hotline.center.waiting`). An agent's tasks are the work waiting in their queues
and the work delivered to them since the start (the last :data:`KEEP_DONE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import wave
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from acd import events as acd_ev
from acd.model import AgentStatus, AgentWord
from hotline.center.routing import RoutingDeskError
from hotline.center.waiting import QueueItem
from media_gateway.media.engine import MediaError
from media_gateway.session import CallSession, SessionEnded, keep_bridged

if TYPE_CHECKING:
    from hotline.center.contact import ContactCenter

log = structlog.get_logger("hotline.center.agents")

KEEP_DONE = 100
"""Delivered tasks kept per agent (in memory)."""
TRANSFER_RING_SECONDS = 30.0
"""How long a colleague's phone rings for a transfer."""
AGENT_LEFT_WAIT = 5.0
"""Seconds to wait for the ACD to hear that the agent's leg ended (before a re-queue)."""

Status = Literal["logged_out", "available", "paused"]
TaskState = Literal["queued", "offered", "delivering", "done", "called_back", "callback_failed"]
ConsultState = Literal["ringing", "talking", "ended", "failed"]


class AgentDeskError(Exception):
    """A request the desk refuses: the HTTP status, a code word and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _conflict(code: str, message: str) -> AgentDeskError:
    return AgentDeskError(409, code, message)


# -- what the desk reports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentView:
    """One agent now."""

    agent_id: str
    name: str
    status: Status
    """The person's choice: ``logged_out``, ``available`` or ``paused``."""
    state: AgentWord
    """The engine's word: ``idle`` (ready), ``paused``, ``logged_out``, ``reserved`` (an
    offer rings), ``on_call`` or ``wrap_up``."""
    reason: str
    """The pause reason while paused, else ``""``."""
    since: float
    """When ``state`` (or the pause reason) last changed (epoch seconds)."""
    queues: tuple[str, ...]
    skills: Mapping[str, int]
    phone: bool
    """A registered phone or an open browser phone."""
    signed_off: bool
    """Logged out through the API: a phone registering does not log them in."""
    call_id: str
    """The call ringing for or talking to the agent, ``""`` when none."""
    case_id: int | None
    caller: str
    wrap_up_ends: float | None
    """When the wrap-up ends (in wrap-up only)."""
    routable: bool
    misses: int


@dataclass
class Consultation:
    """An attended transfer under way: the colleague rung, then talking with the agent."""

    target: str
    started: float
    state: ConsultState = "ringing"
    leg: CallSession | None = None
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class LiveCall:
    """A conversation between a caller and an agent, as ``offers._converse`` bridged it."""

    agent: str
    item: QueueItem
    caller: CallSession
    leg: CallSession
    since: float
    task: asyncio.Task[object] | None
    """The task supervising the conversation (``offers._connect``), cancelled by a blind
    transfer, which supervises the caller from then on."""
    held: bool = False
    muted: bool = False
    consult: Consultation | None = None
    handing_over: bool = False
    """A blind transfer is taking the caller away: no more controls."""
    agent_gone: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the ACD knows the agent's leg ended (``agent_left``)."""


@dataclass
class WorkTask:
    """A voicemail message or a callback request delivered to an agent."""

    id: str
    kind: Literal["voicemail", "callback"]
    caller: str
    queue: str
    case_id: int
    arrived_at: float
    recording: str
    callback: str
    agent: str
    delivered_at: float
    state: TaskState = "delivering"
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task as an agent sees it."""

    id: str
    kind: Literal["voicemail", "callback"]
    caller: str
    queue: str
    case_id: int
    state: TaskState
    arrived_at: float
    """When the caller called (the task keeps their place in the queue)."""
    recorded_at: float | None
    """When the message was saved (voicemail only, while its file is kept)."""
    duration: float | None
    """The message's seconds (voicemail only, while its file is kept)."""
    callback_to: str
    """Where a callback goes (the caller's number or URI)."""
    agent: str
    """Who took it ("" while queued)."""
    offered_to: tuple[str, ...]
    delivered_at: float | None
    finished_at: float | None
    has_audio: bool


@dataclass(frozen=True, slots=True)
class CallView:
    """The call in an agent's hands."""

    call_id: str
    case_id: int
    caller: str
    queue: str
    since: float
    """When the agent was connected."""
    arrived_at: float
    waited: float
    vars: Mapping[str, str]
    """The IVR's variables and choices (``session.vars``)."""
    held: bool
    muted: bool
    consult: Consultation | None


@dataclass(frozen=True, slots=True)
class TransferStarted:
    mode: Literal["blind", "attended"]
    to: str
    target: Literal["agent", "queue"]
    state: str


@dataclass(frozen=True, slots=True)
class _Audio:
    recorded_at: float
    seconds: float


def _audio_facts(path: str) -> _Audio | None:
    """The message file's save time and length (None once it is gone)."""
    try:
        p = Path(path)
        stat = p.stat()
        with wave.open(str(p), "rb") as w:
            rate = w.getframerate() or 8000
            seconds = w.getnframes() / rate
    except (OSError, EOFError, wave.Error):
        return None
    return _Audio(recorded_at=stat.st_mtime, seconds=round(seconds, 3))


class AgentDesk:
    """See the module docstring. Raises :class:`AgentDeskError` for what it refuses."""

    def __init__(self, center: ContactCenter, *, clock: Callable[[], float]) -> None:
        self._center = center
        self._clock = clock
        self.pause_reasons: tuple[str, ...] = center.config.acd.pause_reasons
        """The reasons an agent may pause with (``[acd] pause_reasons``)."""
        self._signed_off: set[str] = set()
        self._calls: dict[str, LiveCall] = {}
        self._done: dict[str, deque[WorkTask]] = {}
        self._last_case: dict[str, int] = {}
        self._audio: dict[str, _Audio | None] = {}
        self._busy: set[str] = set()
        """Agents with a control in progress (one at a time per agent)."""

    # -- agents ----------------------------------------------------------------------------

    def known(self, agent_id: str) -> None:
        """Raise 404 unless ``agent_id`` is a configured agent."""
        if agent_id not in self._center.settings.agents:
            raise AgentDeskError(404, "no_such_agent", f"no agent {agent_id!r}")

    def view(self, agent_id: str) -> AgentView:
        self.known(agent_id)
        center = self._center
        engine = center.engine
        s = engine.agent_status(agent_id)
        status, _, _ = engine.agent_state(agent_id)
        cfg = engine.config.agents.get(agent_id)
        live = self._calls.get(agent_id)
        case_id: int | None = None
        caller = ""
        if s.call_id:
            item = center.waiting.get(s.call_id)
            if live is not None and live.item.call_id == s.call_id:
                item = live.item
            if item is not None:
                case_id, caller = item.case_id, item.caller
        staff = center.config.agent(agent_id)
        return AgentView(
            agent_id=agent_id,
            name=(staff.name if staff is not None else "") or (cfg.name if cfg is not None else ""),
            status=status.value,
            state=s.state,
            reason=s.reason,
            since=s.since,
            queues=s.queues,
            skills=dict(cfg.skills) if cfg is not None else {},
            phone=center.telephony.agent_reachable(agent_id),
            signed_off=agent_id in self._signed_off,
            call_id=s.call_id,
            case_id=case_id,
            caller=caller,
            wrap_up_ends=engine.wrap_up_ends(agent_id),
            routable=s.routable,
            misses=s.misses,
        )

    def views(self) -> list[AgentView]:
        return [self.view(a) for a in self._center.settings.agents]

    def _status(self, agent_id: str) -> AgentStatus:
        self.known(agent_id)
        status, _, _ = self._center.engine.agent_state(agent_id)
        return status

    def _log_in(self, agent_id: str, *, paused: str | None) -> None:
        if not self._center.telephony.agent_reachable(agent_id):
            raise _conflict(
                "no_phone",
                f"{agent_id} has no registered phone or open browser phone: log one in first",
            )
        self._signed_off.discard(agent_id)
        self._center.acd.handle(
            acd_ev.AgentLoggedIn(at=self._clock(), agent_id=agent_id, paused_reason=paused)
        )

    def ready(self, agent_id: str, *, by: str) -> AgentView:
        """Available for calls: ends a pause, or logs the agent in (they need a phone)."""
        if self._status(agent_id) is AgentStatus.LOGGED_OUT:
            self._log_in(agent_id, paused=None)
        else:
            self._center.acd.handle(acd_ev.AgentReady(at=self._clock(), agent_id=agent_id))
        log.info("agent_ready", agent=agent_id, by=by)
        return self.view(agent_id)

    def pause(self, agent_id: str, reason: str, *, by: str) -> AgentView:
        """Paused with one of the configured reasons (a call in progress goes on; a ringing
        offer is withdrawn); a logged-out agent is logged in paused."""
        if reason not in self.pause_reasons:
            raise AgentDeskError(
                422,
                "unknown_pause_reason",
                f"reason {reason!r} is not one of {list(self.pause_reasons)}",
            )
        if self._status(agent_id) is AgentStatus.LOGGED_OUT:
            self._log_in(agent_id, paused=reason)
        else:
            self._center.acd.handle(
                acd_ev.AgentPaused(at=self._clock(), agent_id=agent_id, reason=reason)
            )
        log.info("agent_paused", agent=agent_id, reason=reason, by=by)
        return self.view(agent_id)

    def _wrap_up_ends(self, agent_id: str) -> float:
        self.known(agent_id)
        ends = self._center.engine.wrap_up_ends(agent_id)
        if ends is None:
            raise _conflict("not_in_wrap_up", f"{agent_id} is not in wrap-up")
        return ends

    def end_wrap_up(self, agent_id: str, *, by: str) -> AgentView:
        self._wrap_up_ends(agent_id)
        self._center.acd.handle(acd_ev.WrapUpDone(at=self._clock(), agent_id=agent_id))
        case_id = self._last_case.get(agent_id)
        if case_id:
            self._center.cases.wrap_up_done(case_id, agent=agent_id, by=by)
        log.info("wrap_up_ended", agent=agent_id, by=by)
        return self.view(agent_id)

    def extend_wrap_up(self, agent_id: str, seconds: float, *, by: str) -> AgentView:
        self._wrap_up_ends(agent_id)
        self._center.acd.handle(
            acd_ev.WrapUpExtended(at=self._clock(), agent_id=agent_id, seconds=seconds)
        )
        log.info("wrap_up_extended", agent=agent_id, seconds=seconds, by=by)
        return self.view(agent_id)

    def logout(self, agent_id: str, *, by: str) -> AgentView:
        """Logged out of the ACD until they come back with ``ready`` or ``pause``, whatever
        their phones do meanwhile (a call in progress goes on; a ringing offer is withdrawn)."""
        self.known(agent_id)
        self._signed_off.add(agent_id)
        self._center.acd.handle(acd_ev.AgentLoggedOut(at=self._clock(), agent_id=agent_id))
        log.info("agent_signed_off", agent=agent_id, by=by)
        return self.view(agent_id)

    def presence_may_log_in(self, agent_id: str) -> bool:
        """Whether a phone appearing may log the agent in (not while signed off)."""
        return agent_id not in self._signed_off

    async def set_skills(self, agent_id: str, skills: Mapping[str, int], *, by: str) -> AgentView:
        """Replace the agent's skills, live: a new routing version (``RoutingDesk.publish``),
        so waiting calls are offered by the new skills at once."""
        self.known(agent_id)
        center = self._center
        cfg = center.engine.config
        agent = cfg.agents.get(agent_id)
        if agent is None:
            raise AgentDeskError(404, "no_such_agent", f"{agent_id} has no routing entry")
        if dict(agent.skills) != dict(skills):
            new = cfg.with_agent(dataclasses.replace(agent, skills=dict(skills)))
            shown = ", ".join(f"{k}={v}" for k, v in sorted(skills.items())) or "none"
            try:
                await center.routing.publish(
                    new, user=by, comment=f"skills of {agent_id}: {shown}", source="api"
                )
            except RoutingDeskError as exc:
                if exc.code != "unchanged":
                    raise AgentDeskError(exc.status, exc.code, exc.message) from None
            log.info("agent_skills_changed", agent=agent_id, skills=dict(skills), by=by)
        return self.view(agent_id)

    # -- conversations (reported by offers.py) ----------------------------------------------

    def talking(self, item: QueueItem, caller: CallSession, leg: CallSession, agent: str) -> None:
        """The caller and the agent's leg are bridged; the current task supervises them."""
        if caller.state == "ended" or leg.state == "ended":
            return
        self._calls[agent] = LiveCall(
            agent=agent,
            item=item,
            caller=caller,
            leg=leg,
            since=self._clock(),
            task=asyncio.current_task(),
        )

    def agent_left(self, item: QueueItem, agent: str) -> None:
        """The agent's leg of ``item`` ended and the ACD knows (the agent is in wrap-up)."""
        self._last_case[agent] = item.case_id
        live = self._calls.get(agent)
        if live is None or live.item is not item:
            return
        del self._calls[agent]
        live.agent_gone.set()
        consult = live.consult
        if consult is not None and not live.handing_over:
            live.consult = None
            if consult.task is not None:
                consult.task.cancel()
            if consult.leg is not None and consult.leg.bridged_to is None:
                self._center._spawn(_hang_up(consult.leg, "normal"))

    def work_started(self, item: QueueItem, agent: str) -> None:
        """A message or callback request is being delivered to ``agent``."""
        if item.kind == "call":
            return
        task = WorkTask(
            id=item.call_id,
            kind=item.kind,
            caller=item.caller,
            queue=item.queue,
            case_id=item.case_id,
            arrived_at=item.enqueued_at,
            recording=item.recording,
            callback=item.callback,
            agent=agent,
            delivered_at=self._clock(),
        )
        self._done.setdefault(agent, deque(maxlen=KEEP_DONE)).append(task)

    def work_ended(self, item: QueueItem, agent: str, *, called_back: bool | None) -> None:
        """The delivery ended: ``called_back`` True/False when the agent called back (and
        whether it went ahead), None when they did not."""
        self._last_case[agent] = item.case_id
        for task in self._done.get(agent, ()):
            if task.id == item.call_id and task.finished_at is None:
                task.finished_at = self._clock()
                task.state = (
                    "done"
                    if called_back is None
                    else "called_back"
                    if called_back
                    else "callback_failed"
                )

    # -- the call in hand ------------------------------------------------------------------

    def _live(self, agent_id: str, *, caller_needed: bool = True) -> LiveCall:
        self.known(agent_id)
        live = self._calls.get(agent_id)
        if live is None or live.leg.state == "ended":
            raise _conflict("no_call", f"{agent_id} is not on a call")
        if live.handing_over:
            raise _conflict("transferring", "the call is being transferred")
        if caller_needed and live.caller.state == "ended":
            raise _conflict("no_call", "the caller has hung up")
        return live

    def call(self, agent_id: str) -> CallView:
        self.known(agent_id)
        live = self._calls.get(agent_id)
        if live is None or live.leg.state == "ended" or live.handing_over:
            raise AgentDeskError(404, "no_call", f"{agent_id} is not on a call")
        item = live.item
        return CallView(
            call_id=item.call_id,
            case_id=item.case_id,
            caller=item.caller,
            queue=item.queue,
            since=live.since,
            arrived_at=item.enqueued_at,
            waited=max(0.0, (item.answered_at or live.since) - item.enqueued_at),
            vars={str(k): str(v) for k, v in live.caller.vars.items()},
            held=live.held,
            muted=live.muted,
            consult=live.consult,
        )

    @contextlib.asynccontextmanager
    async def _control(self, agent_id: str) -> AsyncIterator[None]:
        """One control at a time per agent; a call that ends meanwhile is a 409."""
        if agent_id in self._busy:
            raise _conflict("busy", "another action on this call is under way")
        self._busy.add(agent_id)
        try:
            yield
        except SessionEnded:
            raise _conflict("no_call", "the call ended") from None
        except MediaError as exc:
            raise AgentDeskError(503, "media_unavailable", f"media: {exc}") from None
        finally:
            self._busy.discard(agent_id)

    def _record(self, live: LiveCall, action: str, by: str, **data: str | float | bool) -> None:
        self._center.cases.call_control(
            live.item.case_id, agent=live.agent, action=action, by=by, **data
        )
        log.info(
            "call_control",
            call_id=live.item.call_id,
            case_id=live.item.case_id,
            agent=live.agent,
            action=action,
            by=by,
            **data,
        )

    async def hold(self, agent_id: str, *, by: str) -> CallView:
        """The caller hears music and the agent nothing (re-INVITE sendonly to the caller)."""
        live = self._live(agent_id)
        if live.consult is not None:
            raise _conflict("consulting", "the caller is held for a transfer")
        if not live.held:
            async with self._control(agent_id):
                await live.caller.hold(self._center.settings.music_on_hold)
                live.held = True
                self._record(live, "hold", by)
        return self.call(agent_id)

    async def resume(self, agent_id: str, *, by: str) -> CallView:
        """Back to the caller (after hold, or a consultation whose colleague hung up)."""
        live = self._live(agent_id)
        consult = live.consult
        if consult is not None and consult.state in ("ringing", "talking"):
            raise _conflict("consulting", "a transfer is under way: complete or cancel it")
        if live.held or consult is not None:
            async with self._control(agent_id):
                live.consult = None
                await self._back_to_caller(live)
                self._record(live, "resume", by)
        return self.call(agent_id)

    async def _back_to_caller(self, live: LiveCall) -> None:
        caller, leg = live.caller, live.leg
        if caller.bridged_to is not leg:
            await caller.bridge(leg)
        await caller.unhold()
        live.held = False

    async def mute(self, agent_id: str, muted: bool, *, by: str) -> CallView:
        """The agent's voice (and keys) stop, or start again, reaching the caller."""
        live = self._live(agent_id)
        if live.muted != muted:
            async with self._control(agent_id):
                await live.leg.mute(muted)
                live.muted = muted
                self._record(live, "mute" if muted else "unmute", by)
        return self.call(agent_id)

    async def keys(self, agent_id: str, digits: str, *, by: str) -> str:
        """Send keys (RFC 4733) to whom the agent talks to: the colleague during a
        consultation, else the caller. Returns ``colleague`` or ``caller``."""
        live = self._live(agent_id, caller_needed=False)
        consult = live.consult
        to: Literal["caller", "colleague"] = "caller"
        target = live.caller
        if consult is not None:
            if consult.state != "talking" or consult.leg is None:
                raise _conflict("consulting", "the colleague is not on the line")
            to, target = "colleague", consult.leg
        elif live.caller.state == "ended":
            raise _conflict("no_call", "the caller has hung up")
        async with self._control(agent_id):
            await target.send_dtmf(digits)
            self._record(live, "keys", by, count=len(digits), to=to)
        return to

    async def hangup(self, agent_id: str, *, by: str) -> None:
        """End the call: the agent's leg (and a consultation's colleague); the caller is
        hung up with it."""
        live = self._live(agent_id, caller_needed=False)
        async with self._control(agent_id):
            consult = live.consult
            live.consult = None
            if consult is not None:
                await self._drop_consult(consult)
            self._record(live, "hangup", by)
            await live.leg.hangup("normal")

    # -- transfers ---------------------------------------------------------------------------

    def resolve_target(self, to: str) -> tuple[Literal["agent", "queue"], str]:
        """``to``: a queue name, an agent's id or an extension."""
        center = self._center
        if to in center.engine.config.queues:
            return "queue", to
        for staff in center.config.agents:
            if staff.id and to in (staff.id, staff.extension):
                return "agent", staff.id
        raise AgentDeskError(422, "unknown_target", f"{to!r} is no queue, agent id or extension")

    async def transfer(
        self, agent_id: str, to: str, mode: Literal["blind", "attended"], *, by: str
    ) -> TransferStarted:
        live = self._live(agent_id)
        if live.consult is not None:
            raise _conflict("consulting", "a transfer is under way: complete or cancel it")
        kind, target = self.resolve_target(to)
        if kind == "agent":
            if target == agent_id:
                raise _conflict("same_agent", "a call cannot be transferred to its own agent")
            if not self._center.telephony.agent_reachable(target):
                raise _conflict("not_reachable", f"{target} has no phone to ring")
        elif mode == "attended":
            raise AgentDeskError(
                422, "attended_to_queue", "an attended transfer goes to a colleague, not a queue"
            )
        if agent_id in self._busy:
            raise _conflict("busy", "another action on this call is under way")
        if mode == "attended":
            consult = Consultation(target=target, started=self._clock())
            live.consult = consult
            self._record(live, "transfer", by, mode=mode, to=target, target=kind)
            consult.task = self._center._spawn(self._consult(live, consult))
            return TransferStarted(mode=mode, to=target, target=kind, state="ringing")
        live.handing_over = True
        self._record(live, "transfer", by, mode=mode, to=target, target=kind)
        await self._take_over(live)
        if kind == "queue":
            self._center._spawn(self._blind_to_queue(live, target))
        else:
            self._center._spawn(self._blind_to_agent(live, target))
        return TransferStarted(mode=mode, to=target, target=kind, state="transferring")

    async def _take_over(self, live: LiveCall) -> None:
        """Stop the conversation's supervision (offers._converse): the desk supervises the
        caller from now on."""
        task = live.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _release_agent(self, live: LiveCall, to: str) -> None:
        """End the agent's leg; wait until the ACD knows (the agent is in wrap-up)."""
        await _hang_up(live.leg, "transferred")
        try:
            await asyncio.wait_for(live.agent_gone.wait(), AGENT_LEFT_WAIT)
        except TimeoutError:  # the leg's watcher is gone: tell the engine ourselves
            self._center.acd.handle(acd_ev.CallEnded(at=self._clock(), call_id=live.item.call_id))
            self.agent_left(live.item, live.agent)
        self._center.cases.transferred_by_agent(live.item.case_id, agent=live.agent, to=to)

    async def _blind_to_queue(self, live: LiveCall, queue: str) -> None:
        caller, item = live.caller, live.item
        await self._release_agent(live, f"queue:{queue}")
        if caller.state == "ended":
            self._center.cases.hung_up(item.case_id, "caller", stage="transfer")
            return
        if caller.held:
            with contextlib.suppress(SessionEnded, MediaError):
                await caller.unhold()
        await self._center.requeue(caller, item.case_id, queue, language=item.language)

    async def _blind_to_agent(self, live: LiveCall, target: str) -> None:
        center = self._center
        caller, item = live.caller, live.item
        with contextlib.suppress(SessionEnded, MediaError):
            if caller.held:
                await caller.unhold()
            await caller.play(
                center.settings.music_on_hold, interruptible=False, loop=True, wait=False
            )
        await self._release_agent(live, target)
        other: CallSession | None = None
        if caller.state != "ended":
            try:
                other = await center.telephony.originate(
                    target,
                    ring_timeout=TRANSFER_RING_SECONDS,
                    caller=caller.caller or "hotline",
                )
            except (LookupError, ValueError, MediaError) as exc:
                log.info("transfer_failed", call_id=item.call_id, to=target, reason=str(exc))
        if caller.state == "ended":
            if other is not None:
                await _hang_up(other, "caller_gone")
            center.cases.hung_up(item.case_id, "caller", stage="transfer")
            return
        if other is None:
            center.cases.call_control(
                item.case_id, agent=live.agent, action="transfer_failed", to=target
            )
            log.info("transfer_requeued", call_id=item.call_id, to=target, queue=item.queue)
            await center.requeue(caller, item.case_id, item.queue, language=item.language)
            return
        try:
            await caller.bridge(other)
        except (SessionEnded, MediaError):
            await _hang_up(other, "caller_gone")
            center.cases.hung_up(item.case_id, "caller", stage="transfer")
            return
        log.info("transferred", call_id=item.call_id, to=target, mode="blind")
        await keep_bridged(caller, other)
        by = "caller" if caller.ended_by == "remote" else target
        center.cases.hung_up(item.case_id, by, agent=target)

    async def _consult(self, live: LiveCall, consult: Consultation) -> None:
        """Hold the caller, ring the colleague, connect them to the agent."""
        center = self._center
        try:
            await live.caller.hold(center.settings.music_on_hold)
            live.held = True
            other = await center.telephony.originate(
                consult.target, ring_timeout=TRANSFER_RING_SECONDS, caller=live.agent
            )
        except (LookupError, ValueError, MediaError, SessionEnded) as exc:
            log.info("consultation_failed", agent=live.agent, to=consult.target, reason=str(exc))
            other = None
        if other is None:
            consult.state = "failed"
            return
        if live.consult is not consult or live.leg.state == "ended":
            await _hang_up(other, "normal")  # cancelled, or the agent left meanwhile
            return
        consult.leg = other
        try:
            await live.leg.bridge(other)
        except (SessionEnded, MediaError):
            consult.state = "failed"
            await _hang_up(other, "normal")
            return
        consult.state = "talking"
        log.info("consulting", agent=live.agent, to=consult.target, call_id=live.item.call_id)
        await other.ended.wait()
        if consult.state == "talking":
            consult.state = "ended"

    async def _drop_consult(self, consult: Consultation) -> None:
        if consult.task is not None and not consult.task.done():
            consult.task.cancel()
            await asyncio.gather(consult.task, return_exceptions=True)
        if consult.leg is not None:
            await _hang_up(consult.leg, "transfer_cancelled")

    async def complete_transfer(self, agent_id: str, *, by: str) -> None:
        """Join the caller and the colleague; the agent's leg ends."""
        live = self._live(agent_id)
        consult = live.consult
        if consult is None:
            raise _conflict("no_transfer", "no attended transfer is under way")
        other = consult.leg
        if consult.state != "talking" or other is None or other.state == "ended":
            raise _conflict("colleague_not_connected", "the colleague is not on the line")
        async with self._control(agent_id):
            consult.state = "ended"
            live.consult = None
            await live.caller.bridge(other)
            await live.caller.unhold()
            live.held = False
            self._record(live, "transfer_completed", by, to=consult.target)
            # the conversation's supervision follows the caller to the colleague (keep_bridged),
            # and writes the transfer to the case when the agent's leg ends
            await live.leg.hangup("transferred")

    async def cancel_transfer(self, agent_id: str, *, by: str) -> CallView:
        """Drop the colleague (ringing or talking) and go back to the caller."""
        live = self._live(agent_id)
        consult = live.consult
        if consult is None:
            raise _conflict("no_transfer", "no attended transfer is under way")
        async with self._control(agent_id):
            live.consult = None
            await self._drop_consult(consult)
            await self._back_to_caller(live)
            self._record(live, "transfer_cancelled", by, to=consult.target)
        return self.call(agent_id)

    # -- tasks -------------------------------------------------------------------------------

    async def tasks(self, agent_id: str) -> list[TaskView]:
        """Work waiting in the agent's queues, then work delivered to them (oldest first)."""
        self.known(agent_id)
        center = self._center
        queues = set(center.engine.agent_status(agent_id).queues)
        waiting = [
            item
            for item in center.waiting.values()
            if item.kind != "call" and not item.agent and item.queue in queues
        ]
        done = list(self._done.get(agent_id, ()))
        paths = [i.recording for i in waiting if i.recording] + [t.recording for t in done]
        await self._load_audio([p for p in paths if p])
        out = [
            self._task_view(
                id=item.call_id,
                kind="voicemail" if item.kind == "voicemail" else "callback",
                caller=item.caller,
                queue=item.queue,
                case_id=item.case_id,
                state="offered" if item.offers else "queued",
                arrived_at=item.enqueued_at,
                recording=item.recording,
                callback=item.callback,
                agent="",
                offered_to=tuple(item.offers),
                delivered_at=None,
                finished_at=None,
            )
            for item in sorted(waiting, key=lambda i: i.enqueued_at)
        ]
        out += [
            self._task_view(
                id=t.id,
                kind=t.kind,
                caller=t.caller,
                queue=t.queue,
                case_id=t.case_id,
                state=t.state,
                arrived_at=t.arrived_at,
                recording=t.recording,
                callback=t.callback,
                agent=t.agent,
                offered_to=(),
                delivered_at=t.delivered_at,
                finished_at=t.finished_at,
            )
            for t in done
        ]
        return out

    def _task_view(
        self,
        *,
        id: str,
        kind: Literal["voicemail", "callback"],
        caller: str,
        queue: str,
        case_id: int,
        state: TaskState,
        arrived_at: float,
        recording: str,
        callback: str,
        agent: str,
        offered_to: tuple[str, ...],
        delivered_at: float | None,
        finished_at: float | None,
    ) -> TaskView:
        audio = self._audio.get(recording) if recording else None
        return TaskView(
            id=id,
            kind=kind,
            caller=caller,
            queue=queue,
            case_id=case_id,
            state=state,
            arrived_at=arrived_at,
            recorded_at=audio.recorded_at if audio is not None else None,
            duration=audio.seconds if audio is not None else None,
            callback_to=callback,
            agent=agent,
            offered_to=offered_to,
            delivered_at=delivered_at,
            finished_at=finished_at,
            has_audio=audio is not None,
        )

    async def _load_audio(self, paths: list[str]) -> None:
        """Message facts, read once per file (a file that is gone is looked at again)."""
        todo = [p for p in paths if self._audio.get(p) is None]
        if not todo:
            return
        facts = await asyncio.to_thread(lambda: {p: _audio_facts(p) for p in todo})
        self._audio.update(facts)

    async def task_audio(self, agent_id: str, task_id: str) -> Path:
        """The message file of one of the agent's tasks."""
        for task in await self.tasks(agent_id):
            if task.id != task_id:
                continue
            if task.kind != "voicemail":
                raise AgentDeskError(404, "no_audio", "a callback request has no recording")
            path = self._recording_of(agent_id, task_id)
            if path is None or not task.has_audio:
                raise AgentDeskError(404, "no_audio", "the message is no longer kept")
            return Path(path)
        raise AgentDeskError(404, "no_such_task", f"{agent_id} has no task {task_id!r}")

    def _recording_of(self, agent_id: str, task_id: str) -> str | None:
        item = self._center.waiting.get(task_id)
        if item is not None and item.recording:
            return item.recording
        for t in self._done.get(agent_id, ()):
            if t.id == task_id and t.recording:
                return t.recording
        return None


async def _hang_up(leg: CallSession, cause: str) -> None:
    with contextlib.suppress(SessionEnded, MediaError):
        await leg.hangup(cause)


__all__ = [
    "AgentDesk",
    "AgentDeskError",
    "AgentView",
    "CallView",
    "Consultation",
    "LiveCall",
    "TaskView",
    "TransferStarted",
]
