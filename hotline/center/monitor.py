"""Supervisor monitoring of a live agent call: silent listen, whisper and barge-in.

A supervisor asks to monitor an agent's call (:meth:`MonitorDesk.start`); their own phone is
rung (a registered SIP phone or their browser phone, through the center's ``Telephony``, as
agents are rung) and, once they answer, their leg joins the call in one of three modes, set by
mixes in the media engine (``CallSession.hear``), never by re-bridging the call:

* ``listen``: the supervisor hears caller + agent; nobody hears the supervisor;
* ``whisper``: the supervisor hears caller + agent; the agent hears caller + supervisor; the
  caller still hears only the agent;
* ``barge``: a three-way conversation: each hears the other two.

The mode can change while monitoring (:meth:`MonitorDesk.change`) and monitoring can stop
(:meth:`MonitorDesk.stop`) without disturbing the call: the mixes are removed and the caller and
agent go on hearing each other through the plain relay. Monitoring also ends on its own when
the call ends or is transferred (the agent's leg ends, an attended transfer starts), when the
supervisor hangs up, or when their phone is not answered.

One monitoring per call at a time; never of one's own call. Each step is written to the call's
case (``call_control`` with the actions ``monitor``, ``monitor_mode`` and ``monitor_ended``,
``by`` the supervisor) and published on the event feed to supervisors only (kind ``monitor``:
an agent is not told of a silent listen). The API's audit trail records the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import structlog

from hotline.center.agents import AgentDeskError, LiveCall
from hotline.center.reap import reap
from media_gateway.media.engine import MediaError
from media_gateway.session import CallSession, SessionEnded

if TYPE_CHECKING:
    from hotline.center.contact import ContactCenter

log = structlog.get_logger("hotline.center.monitor")

Mode = Literal["listen", "whisper", "barge"]
State = Literal["ringing", "active", "ended"]
MODES: tuple[Mode, ...] = ("listen", "whisper", "barge")

RING_SECONDS = 30.0
"""How long the supervisor's phone rings."""
WATCH_SECONDS = 0.25
"""How often a monitoring looks for a transfer under way (the rest is awaited as events)."""


class MonitorError(AgentDeskError):
    """A monitoring request refused: the HTTP status, a code word and a message."""


@dataclass(eq=False)
class Monitoring:
    """One supervisor on one agent's call."""

    supervisor: str
    agent: str
    call_id: str
    case_id: int
    caller: str
    mode: Mode
    since: float
    live: LiveCall
    state: State = "ringing"
    leg: CallSession | None = None
    """The supervisor's phone, once answered."""
    answered_at: float | None = None
    reason: str = ""
    """Why it ended (``ended`` only): ``stopped``, ``call_ended``, ``transferred``,
    ``supervisor_hung_up``, ``no_answer``, ``failed``."""
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stop_by: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MonitorDesk:
    """See the module docstring. One per center: :func:`monitor_desk`."""

    def __init__(self, center: ContactCenter, *, clock: Callable[[], float]) -> None:
        self._center = center
        self._clock = clock
        self._by_agent: dict[str, Monitoring] = {}

    # -- reads -------------------------------------------------------------------------------

    def of(self, agent_id: str) -> Monitoring:
        """The monitoring of ``agent_id``'s call (404 ``no_monitoring`` when none)."""
        self._center.agents.known(agent_id)
        mon = self._by_agent.get(agent_id)
        if mon is None:
            raise MonitorError(404, "no_monitoring", f"nobody monitors {agent_id}'s call")
        return mon

    def all(self) -> list[Monitoring]:
        return list(self._by_agent.values())

    # -- requests ----------------------------------------------------------------------------

    async def start(self, agent_id: str, mode: Mode, *, by: str) -> Monitoring:
        """Ring ``by``'s phone to monitor ``agent_id``'s call in ``mode``; returns at once
        (state ``ringing``); the leg joins when answered."""
        center = self._center
        if agent_id == by:
            raise MonitorError(403, "own_call", "a supervisor does not monitor their own call")
        live = center.agents._live(agent_id)
        if live.consult is not None:
            raise MonitorError(409, "consulting", "the call is being transferred")
        current = self._by_agent.get(agent_id)
        if current is not None:
            raise MonitorError(
                409, "already_monitored", f"{current.supervisor} already monitors this call"
            )
        if any(m.supervisor == by for m in self._by_agent.values()):
            raise MonitorError(409, "monitoring_another", "stop monitoring the other call first")
        if not center.telephony.agent_reachable(by):
            raise MonitorError(409, "no_phone", f"{by} has no phone to ring")
        item = live.item
        mon = Monitoring(
            supervisor=by,
            agent=agent_id,
            call_id=item.call_id,
            case_id=item.case_id,
            caller=item.caller,
            mode=mode,
            since=self._clock(),
            live=live,
        )
        self._by_agent[agent_id] = mon
        center.cases.call_control(mon.case_id, agent=agent_id, action="monitor", by=by, mode=mode)
        self._publish(mon)
        log.info("monitor_started", call_id=mon.call_id, agent=agent_id, by=by, mode=mode)
        mon.task = center._spawn(self._run(mon))
        return mon

    async def change(self, agent_id: str, mode: Mode, *, by: str) -> Monitoring:
        """Switch the mode (while ringing: the mode the leg will join in)."""
        mon = self.of(agent_id)
        if mon.supervisor != by:
            raise MonitorError(403, "not_yours", f"{mon.supervisor} monitors this call")
        if mode == mon.mode:
            return mon
        async with mon.lock:
            if mon.state == "active":
                try:
                    await self._apply(mon, mode)
                except (SessionEnded, MediaError) as exc:
                    mon.wake.set()
                    raise MonitorError(409, "no_call", f"the call ended ({exc})") from None
            mon.mode = mode
        self._center.cases.call_control(
            mon.case_id, agent=agent_id, action="monitor_mode", by=by, mode=mode
        )
        self._publish(mon)
        log.info("monitor_mode", call_id=mon.call_id, agent=agent_id, by=by, mode=mode)
        return mon

    async def stop(self, agent_id: str, *, by: str) -> Monitoring:
        """End the monitoring (any supervisor may); the call goes on as before. Returns once
        the supervisor's leg is gone."""
        mon = self.of(agent_id)
        mon.stop_by = by
        mon.wake.set()
        task = mon.task
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait([task])
        return mon

    # -- the monitoring's life ---------------------------------------------------------------

    async def _run(self, mon: Monitoring) -> None:
        reason = "failed"
        try:
            reason = await self._ring_and_watch(mon)
        except asyncio.CancelledError:
            reason = "stopped"
            raise
        except (SessionEnded, MediaError, LookupError, ValueError) as exc:
            log.info("monitor_failed", call_id=mon.call_id, agent=mon.agent, reason=str(exc))
        finally:
            await self._finish(mon, reason)

    async def _ring_and_watch(self, mon: Monitoring) -> str:
        center, live = self._center, mon.live
        ring = asyncio.ensure_future(
            center.telephony.originate(mon.supervisor, ring_timeout=RING_SECONDS, caller=mon.agent)
        )
        try:
            stop = asyncio.ensure_future(mon.wake.wait())
            try:
                await asyncio.wait([ring, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not ring.done():  # stopped while ringing
                ring.cancel()
                await reap(ring, Exception)
                return "stopped"
        except BaseException:
            ring.cancel()
            raise
        leg = ring.result()
        if leg is None:
            return "no_answer"
        mon.leg = leg
        gone = self._gone(mon)
        if gone:
            return gone
        async with mon.lock:
            await self._apply(mon, mon.mode)
            mon.state = "active"
            mon.answered_at = self._clock()
        self._publish(mon)
        log.info("monitor_active", call_id=mon.call_id, agent=mon.agent, mode=mon.mode)
        ends = [
            asyncio.ensure_future(e.wait())
            for e in (leg.ended, live.caller.ended, live.leg.ended, live.agent_gone, mon.wake)
        ]
        try:
            while True:
                gone = self._gone(mon)
                if gone:
                    return gone
                await asyncio.wait(ends, timeout=WATCH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in ends:
                w.cancel()

    def _gone(self, mon: Monitoring) -> str:
        """Why the monitoring must end now, ``""`` while it goes on."""
        live = mon.live
        if mon.stop_by:
            return "stopped"
        if mon.leg is not None and mon.leg.state == "ended":
            return "supervisor_hung_up"
        if live.handing_over or live.consult is not None:
            return "transferred"
        if live.caller.state == "ended" or live.leg.state == "ended" or live.agent_gone.is_set():
            return "call_ended"
        return ""

    async def _apply(self, mon: Monitoring, mode: Mode) -> None:
        """Set the three mixes of ``mode`` (the supervisor's first, so the change is heard
        whole; the caller's last, so a barge-in is the last thing to start)."""
        sup, caller, agent = mon.leg, mon.live.caller, mon.live.leg
        assert sup is not None
        await sup.hear([caller, agent])
        await agent.hear([caller, sup] if mode in ("whisper", "barge") else [])
        await caller.hear([agent, sup] if mode == "barge" else [])

    async def _finish(self, mon: Monitoring, reason: str) -> None:
        live = mon.live
        for session in (live.caller, live.leg):
            if session.state != "ended":
                with contextlib.suppress(SessionEnded, MediaError):
                    await session.hear([])  # back to the plain conversation
        leg = mon.leg
        if leg is not None and leg.state != "ended":
            with contextlib.suppress(SessionEnded, MediaError):
                await leg.hangup("normal")
        mon.state = "ended"
        mon.reason = reason
        if self._by_agent.get(mon.agent) is mon:
            del self._by_agent[mon.agent]
        extra = {"stopped_by": mon.stop_by} if mon.stop_by and mon.stop_by != mon.supervisor else {}
        self._center.cases.call_control(
            mon.case_id,
            agent=mon.agent,
            action="monitor_ended",
            by=mon.supervisor,
            reason=reason,
            **extra,
        )
        self._publish(mon)
        log.info("monitor_ended", call_id=mon.call_id, agent=mon.agent, reason=reason)

    def _publish(self, mon: Monitoring) -> None:
        self._center.events.monitoring(
            supervisor=mon.supervisor,
            agent=mon.agent,
            call_id=mon.call_id,
            case_id=mon.case_id,
            mode=mon.mode,
            state=mon.state,
            reason=mon.reason,
        )


_DESKS: weakref.WeakKeyDictionary[ContactCenter, MonitorDesk] = weakref.WeakKeyDictionary()


def monitor_desk(center: ContactCenter) -> MonitorDesk:
    """The center's monitoring desk (made on first use, one per center)."""
    desk = _DESKS.get(center)
    if desk is None:
        desk = _DESKS[center] = MonitorDesk(center, clock=center.feed.clock)
    return desk
