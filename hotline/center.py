"""The contact center: IVR → ACD → agent or voicemail, every step in the call's case record.

``ContactCenter`` is wiring (composition root), not logic: the IVR runner decides what the
caller chose, the ACD engine decides who gets the call, the session does the media. Here:

* an inbound session on a ``hotline`` / ``ivr`` / ``queue`` / ``voicemail`` entry point opens a
  case, runs its flow, and acts on the outcome;
* queued callers hear music, their position and expected wait at the queue's announcement
  interval, and may press 1 to leave a message or 2 for a callback (keeping their place: the
  message or callback request is queued with the caller's original arrival time);
* the engine's ``OfferCall`` rings the agent (``Gateway.originate``: their registered phone or
  browser); the answer is reported, and ``BridgeCall`` joins the caller; a ring-no-answer or
  a busy phone goes back to the engine, which re-offers the call (keeping its place);
* ``SendToVoicemail`` records the caller; the message becomes queued work of ``kind =
  "voicemail"``; the agent who takes it hears it and can call back with one key;
* an agent's phone registering or going away logs the agent in or out of the ACD.

Case writes go through the writer thread (``AsyncCaseWriter``), so routing never waits on the
database; the SQLite file is in WAL mode with synchronous FULL, so a crash loses nothing
committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from acd import actions as act
from acd import events as acd_ev
from acd.cases import CaseEvent, NewCase
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.service import AcdService
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter
from ivr.flow import IvrConfig, parse_ivr
from ivr.runner import Outcome, run_flow
from media_gateway.media.engine import MediaError
from media_gateway.prompts import number_words
from media_gateway.session import CallSession, SessionEnded, keep_bridged
from voicemail import box as voicemail

if TYPE_CHECKING:
    from hotline.app import Gateway
    from hotline.config import Config

log = structlog.get_logger("hotline.center")


def acd_table(config: Config) -> dict[str, Any]:
    """The ACD configuration: ``[acd]`` queues plus the agents of ``[[agents]]``."""
    raw = dict(config.raw.get("acd", {}))
    agents = dict(raw.get("agents", {}))
    for a in config.agents:
        entry: dict[str, Any] = {"name": a.name or a.id}
        if a.skills:
            entry["skills"] = dict(a.skills)
        if a.queues:
            entry["queues"] = list(a.queues)
        if a.groups:
            entry["groups"] = list(a.groups)
        agents.setdefault(a.id, {}).update(entry)
    raw["agents"] = agents
    return raw


@dataclass
class Waiting:
    """A caller (or a message / callback request) the ACD is routing."""

    call_id: str
    case_id: int
    queue: str
    kind: str = "call"
    session: CallSession | None = None
    enqueued_at: float = 0.0
    recording: str = ""
    callback: str = ""
    caller: str = ""
    language: str = "en"
    offers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    agent_sessions: dict[str, CallSession] = field(default_factory=dict)
    done: asyncio.Future[str] | None = None
    connected_to: str = ""
    announce_task: asyncio.Task[None] | None = None


class ContactCenter:
    def __init__(self, gateway: Gateway, config: Config, *, clock: Any = time.time) -> None:
        self.gw = gateway
        self.config = config
        self.clock = clock
        data = Path(config.server.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.recordings = Path(config.media.recordings_dir or data / "recordings")
        self.store = SQLiteCaseStore(data / "cases.sqlite3")
        self.writer = AsyncCaseWriter(self.store)
        self.ivr: IvrConfig = parse_ivr(config.raw.get("ivr"))
        vm = config.raw.get("voicemail", {})
        self.vm_settings = voicemail.Settings(
            max_seconds=float(vm.get("max_seconds", 120)),
            silence_seconds=float(vm.get("silence_seconds", 5)),
            stop_digits=str(vm.get("stop_digits", "#")),
            keep_days=float(vm.get("keep_days", 30)),
        )
        acd_config = AcdConfig.from_dict(acd_table(config), path="acd")
        self.engine = AcdEngine(acd_config, rng=random.Random(), now=clock())
        self.acd = AcdService(
            self.engine, on_action=self._on_action, on_log=self._on_log, clock=clock
        )
        self.waiting: dict[str, Waiting] = {}
        self.finished: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = 0
        for kind in ("hotline", "ivr", "queue", "voicemail"):
            gateway.handlers[kind] = self._entry_handler(kind)
        gateway.device_listeners.append(self._on_device)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.recordings.mkdir(parents=True, exist_ok=True)
        now = self.clock()
        for agent in self.config.agents:
            if self.gw.registrar.contacts(agent.id, self.gw.loop.time()):
                self.acd.handle(acd_ev.AgentLoggedIn(at=now, agent_id=agent.id))
        self._spawn(self._expire_messages())

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        self.acd.close()
        with contextlib.suppress(Exception):
            await self.writer.close()
        self.store.close()

    def reload_ivr(self, table: Any) -> int:
        """Publish new flows (running calls keep theirs); raises FlowError, changing nothing."""
        new = parse_ivr(table, version=self.ivr.version + 1)
        self.ivr = new
        log.info("ivr_reloaded", version=new.version, flows=sorted(new.flows))
        return new.version

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- case records ----------------------------------------------------------------------

    def event(self, case_id: int, kind: str, actor: str = "system", /, **data: Any) -> None:
        if not case_id:
            return
        try:
            self.writer.append_event(
                case_id, CaseEvent(at=self.clock(), kind=kind, actor=actor, data=data)
            )
        except RuntimeError:  # shutting down: the writer has closed
            log.warning("case_event_dropped", case_id=case_id, kind=kind)

    def _on_log(self, records: list[Any]) -> None:
        for r in records:
            with contextlib.suppress(Exception):
                self.writer.append_log(r.to_dict() if hasattr(r, "to_dict") else dict(r._asdict()))

    # -- agents ----------------------------------------------------------------------------

    def _on_device(self, agent: str, registered: bool) -> None:
        if self.config.agent(agent) is None:
            return
        now = self.clock()
        if registered:
            self.acd.handle(acd_ev.AgentLoggedIn(at=now, agent_id=agent))
        else:
            self.acd.handle(acd_ev.AgentLoggedOut(at=now, agent_id=agent))
        log.info("agent_presence", agent=agent, logged_in=registered)

    def login(self, agent: str) -> None:
        """An agent present by another channel (a browser phone)."""
        self._on_device(agent, True)

    def logout(self, agent: str) -> None:
        self._on_device(agent, False)

    # -- queue view for flows --------------------------------------------------------------

    def agents_available(self, queue: str) -> int:
        q = self.engine.snapshot()["queues"].get(queue)
        return int(q["routable"]) if q else 0

    def ewt_seconds(self, queue: str) -> float:
        q = self.engine.snapshot()["queues"].get(queue)
        if not q:
            return 0.0
        staffed = max(1, int(q["logged_in"]))
        return float((q["waiting"] + 1) * (q["aht"] or 180.0) / staffed)

    # -- inbound sessions ------------------------------------------------------------------

    def _entry_handler(self, kind: str) -> Any:
        async def handler(session: CallSession) -> None:
            entry = self.config.entry_point(session.dialled)
            target = entry.target if entry is not None else ""
            await self.handle_call(session, kind, target)

        return handler

    async def handle_call(self, session: CallSession, kind: str, target: str) -> None:
        now = self.clock()
        case = await self.writer.run(
            lambda s: s.open_case(
                NewCase(
                    caller_number=session.caller or "anonymous",
                    at=now,
                    dialled=session.dialled,
                    channel=session.channel
                    if session.channel in ("sip", "trunk", "webrtc")
                    else "other",
                    call_id=session.id,
                )
            )
        )
        case_id = case.id
        session.vars["case_id"] = str(case_id)
        self.event(
            case_id,
            "entered",
            "system",
            dialled=session.dialled,
            channel=session.channel,
            entry=kind,
        )
        waiting: Waiting | None = None
        try:
            await session.answer()
            if kind == "hotline" and not self.ivr.flows:
                # No IVR configured: straight to the first queue, or a welcome and music.
                queues = list(self.engine.config.queues)
                if queues:
                    outcome = Outcome(kind="queue", queue=queues[0], language=session.lang or "en")
                else:
                    await session.play(["welcome", "please_hold"], interruptible=False)
                    await session.play("moh", interruptible=False, loop=True, wait=False)
                    await session.ended.wait()
                    raise SessionEnded(session.ended_by or "remote", session.cause or "bye")
            elif kind in ("hotline", "ivr"):
                flow = target if kind == "ivr" and target else None
                outcome = await run_flow(
                    self.ivr,
                    session,
                    flow=flow,
                    record=lambda k, d: self._ivr_event(case_id, k, d),
                    queues=self,
                    wallclock=self.clock,
                )
            elif kind == "queue":
                outcome = Outcome(kind="queue", queue=target, language=session.lang or "en")
            else:
                outcome = Outcome(
                    kind="voicemail",
                    queue=target,
                    language=session.lang or "en",
                    greeting=["voicemail_intro"],
                )
            if outcome.kind == "queue":
                waiting = await self._queue_call(session, case_id, outcome)
                result = await self._wait_in_queue(waiting)
                self.event(case_id, "hung_up", "system", after=result)
            elif outcome.kind == "voicemail":
                await self._leave_message(
                    session,
                    case_id,
                    outcome.queue,
                    enqueued_at=self.clock(),
                    greeting=outcome.greeting,
                )
            elif outcome.kind == "transfer":
                ok = await session.transfer(outcome.target)
                self.event(case_id, "transferred", "ivr", target=outcome.target, ok=ok)
                if not ok:
                    await session.play("goodbye", interruptible=False)
            else:
                self.event(case_id, "hung_up", "ivr", reason=outcome.reason or "flow")
        except SessionEnded as ended:
            if waiting is not None and waiting.call_id in self.waiting and not waiting.connected_to:
                self.acd.handle(acd_ev.CallAbandoned(at=self.clock(), call_id=waiting.call_id))
                self.event(case_id, "abandoned", "caller", queue=waiting.queue)
                self._forget(waiting)
            elif waiting is None:
                self.event(
                    case_id, "hung_up", "caller", by=ended.by, cause=ended.cause, stage="ivr"
                )
        finally:
            if waiting is not None:
                self._forget(waiting)

    def _ivr_event(self, case_id: int, kind: str, data: dict[str, Any]) -> None:
        known = {"ivr_input": "ivr_input"}
        self.event(
            case_id, known.get(kind, "ivr_input" if kind == "ivr_input" else kind), "ivr", **data
        )

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}-{int(self.clock())}"

    async def _queue_call(self, session: CallSession, case_id: int, outcome: Outcome) -> Waiting:
        queue = outcome.queue
        if queue not in self.engine.config.queues:
            raise SessionEnded("local", f"unknown queue {queue!r}")
        now = self.clock()
        waiting = Waiting(
            call_id=session.id,
            case_id=case_id,
            queue=queue,
            session=session,
            enqueued_at=now,
            caller=session.caller,
            language=outcome.language,
            done=asyncio.get_running_loop().create_future(),
        )
        self.waiting[waiting.call_id] = waiting
        self.event(
            case_id,
            "queued",
            "acd",
            queue=queue,
            skills=outcome.skills,
            priority=outcome.priority,
            language=outcome.language,
        )
        with contextlib.suppress(MediaError):
            await session.play("please_hold", interruptible=True)
        await self._music(waiting)
        self.acd.handle(
            acd_ev.CallArrived(
                at=now,
                call_id=waiting.call_id,
                queue=queue,
                priority=outcome.priority,
                skills=outcome.skills,
                caller=session.caller,
                data={"case_id": str(case_id), "language": outcome.language},
            )
        )
        return waiting

    async def _music(self, waiting: Waiting) -> None:
        session = waiting.session
        if session is None or session.state == "ended" or waiting.connected_to:
            return
        with contextlib.suppress(MediaError, SessionEnded):
            await session.play(
                self.config.media.music_on_hold, interruptible=False, loop=True, wait=False
            )

    async def _wait_in_queue(self, waiting: Waiting) -> str:
        """Until the caller is connected and the call ends, or they leave the queue by a key."""
        session = waiting.session
        assert session is not None and waiting.done is not None
        while not waiting.done.done():
            digit_task = asyncio.ensure_future(session.collect(1, timeout=3600, terminator=""))
            pending: set[asyncio.Future[Any]] = {digit_task, waiting.done}
            finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done in finished:
                digit_task.cancel()
                with contextlib.suppress(BaseException):
                    await digit_task
                break
            got = digit_task.result()
            if waiting.connected_to:
                continue
            if got.digits == "1":  # leave a message instead of waiting, keeping the place
                self._leave_queue(waiting, "voicemail")
                await session.stop_play()
                await self._leave_message(
                    session, waiting.case_id, waiting.queue, enqueued_at=waiting.enqueued_at
                )
                return "voicemail"
            if got.digits == "2":  # a callback instead of waiting, keeping the place
                self._leave_queue(waiting, "callback")
                self._queue_work(
                    waiting.case_id,
                    waiting.queue,
                    "callback",
                    waiting.enqueued_at,
                    caller=session.caller,
                    callback=self._callback_target(session),
                )
                self.event(
                    waiting.case_id,
                    "note",
                    "caller",
                    text="callback requested",
                    queue=waiting.queue,
                )
                await session.play("callback_confirmed", interruptible=False)
                return "callback"
        result = waiting.done.result() if waiting.done.done() else "ended"
        if result == "connected":
            await session.ended.wait()
        elif result == "voicemail":  # the engine's wait limit (or no agents): record instead
            self._forget(waiting)
            with contextlib.suppress(MediaError):
                await session.stop_play()
            await self._leave_message(
                session, waiting.case_id, waiting.queue, enqueued_at=waiting.enqueued_at
            )
        elif result == "rejected":
            self._forget(waiting)
            await session.play(["all_busy", "goodbye"], interruptible=False)
        return result

    def _leave_queue(self, waiting: Waiting, why: str) -> None:
        self.acd.handle(acd_ev.CallEnded(at=self.clock(), call_id=waiting.call_id))
        for task in waiting.offers.values():
            task.cancel()
        self._forget(waiting)
        log.info("left_queue", call_id=waiting.call_id, why=why)

    def _forget(self, waiting: Waiting) -> None:
        if self.waiting.get(waiting.call_id) is waiting:
            del self.waiting[waiting.call_id]
        if waiting.announce_task is not None:
            waiting.announce_task.cancel()

    def _callback_target(self, session: CallSession) -> str:
        return str(session.vars.get("callback_uri") or session.caller)

    # -- voicemail -------------------------------------------------------------------------

    async def _leave_message(
        self,
        session: CallSession,
        case_id: int,
        queue: str,
        *,
        enqueued_at: float,
        greeting: list[str] | None = None,
    ) -> None:
        path = self.recordings / f"case-{case_id}-{int(self.clock() * 1000)}.wav"
        message = await voicemail.record_message(session, path, self.vm_settings, greeting=greeting)
        if message is None:
            self.event(case_id, "hung_up", "caller", stage="voicemail", reason="empty message")
            return
        self.event(
            case_id,
            "voicemail_left",
            "caller",
            path=message.path,
            seconds=message.seconds,
            queue=queue,
            stopped_by=message.stopped_by,
        )
        self._queue_work(
            case_id,
            queue,
            "voicemail",
            enqueued_at,
            caller=session.caller,
            recording=message.path,
            callback=self._callback_target(session),
        )

    def _queue_work(
        self,
        case_id: int,
        queue: str,
        kind: str,
        enqueued_at: float,
        *,
        caller: str,
        recording: str = "",
        callback: str = "",
    ) -> None:
        item = Waiting(
            call_id=self._new_id("vm-" if kind == "voicemail" else "cb-"),
            case_id=case_id,
            queue=queue,
            kind=kind,
            enqueued_at=enqueued_at,
            recording=recording,
            callback=callback,
            caller=caller,
        )
        self.waiting[item.call_id] = item
        self.event(case_id, "queued", "acd", queue=queue, kind=kind, enqueued_at=enqueued_at)
        self.acd.handle(
            acd_ev.CallArrived(
                at=self.clock(),
                call_id=item.call_id,
                queue=queue,
                caller=caller,
                data={"case_id": str(case_id)},
                enqueued_at=enqueued_at,
                kind=kind,  # type: ignore[arg-type]
            )
        )

    async def _expire_messages(self) -> None:
        """Delete recordings older than ``[voicemail] keep_days`` (checked hourly)."""
        while True:
            for p in await asyncio.to_thread(
                voicemail.expire, self.recordings, self.vm_settings.keep_days
            ):
                log.info("voicemail_expired", path=str(p))
            await asyncio.sleep(3600)

    # -- the engine's actions --------------------------------------------------------------

    def _on_action(self, action: Any) -> None:
        log.debug("acd_action", action=type(action).__name__, **action._asdict())
        if isinstance(action, act.OfferCall):
            w = self.waiting.get(action.call_id)
            if w is None:
                self.acd.handle(
                    acd_ev.OfferFailed(
                        at=self.clock(),
                        call_id=action.call_id,
                        agent_id=action.agent_id,
                        reason="gone",
                    )
                )
                return
            self.event(w.case_id, "offered", "acd", agent=action.agent_id, queue=action.queue)
            w.offers[action.agent_id] = self._spawn(
                self._ring(w, action.agent_id, action.ring_timeout)
            )
        elif isinstance(action, act.CancelOffer):
            w = self.waiting.get(action.call_id)
            if w is not None:
                task = w.offers.pop(action.agent_id, None)
                if task is not None:
                    task.cancel()
                if action.reason == "no_answer":
                    self.event(w.case_id, "rona", "acd", agent=action.agent_id)
        elif isinstance(action, act.BridgeCall):
            w = self.waiting.get(action.call_id)
            if w is not None:
                self._spawn(self._connect(w, action.agent_id))
        elif isinstance(action, act.RefuseAnswer):
            w = self.waiting.get(action.call_id)
            agent_session = w.agent_sessions.pop(action.agent_id, None) if w else None
            if agent_session is not None:
                self._spawn(agent_session.hangup("answered_elsewhere"))
        elif isinstance(action, act.SendToVoicemail):
            w = self.waiting.get(action.call_id)
            if w is not None and w.done is not None and not w.done.done():
                self.event(
                    w.case_id,
                    "transferred",
                    "acd",
                    to="voicemail",
                    reason=action.reason,
                    queue=action.queue,
                )
                w.queue = action.queue
                w.done.set_result("voicemail")
        elif isinstance(action, act.Overflow):
            w = self.waiting.get(action.call_id)
            if w is not None:
                w.queue = action.to_queue
                self.event(
                    w.case_id,
                    "transferred",
                    "acd",
                    from_queue=action.from_queue,
                    to_queue=action.to_queue,
                    reason=action.reason,
                )
        elif isinstance(action, act.RejectCall):
            w = self.waiting.get(action.call_id)
            if w is not None:
                self.event(w.case_id, "hung_up", "acd", reason=f"rejected:{action.reason}")
                if w.done is not None and not w.done.done():
                    w.done.set_result("rejected")
        elif isinstance(action, act.AnnouncePosition):
            w = self.waiting.get(action.call_id)
            if w is not None and w.session is not None and not w.connected_to:
                w.announce_task = self._spawn(
                    self._announce(w, action.position, action.ewt_seconds)
                )
        elif isinstance(action, act.PauseAgent):
            log.info("agent_paused", agent=action.agent_id, reason=action.reason)

    async def _announce(self, w: Waiting, position: int, ewt: float) -> None:
        session = w.session
        if session is None:
            return
        lang = session.lang or "en"
        minutes = max(1, round(ewt / 60))
        prompts = ["position_before", *number_words(position, lang), "position_after"]
        prompts += [
            "wait_before",
            *number_words(minutes, lang, measure=True),
            "wait_after",
            "queue_options",
        ]
        with contextlib.suppress(SessionEnded, MediaError):
            await session.play(prompts, interruptible=True)
            await self._music(w)

    async def _ring(self, w: Waiting, agent: str, ring_timeout: float) -> None:
        """Ring one agent for one queued item; report what happened to the engine."""
        caller_label = w.caller or "hotline"
        try:
            other = await self.gw.originate(agent, ring_timeout=ring_timeout, caller=caller_label)
        except asyncio.CancelledError:
            raise
        except (LookupError, ValueError, MediaError) as exc:
            w.offers.pop(agent, None)
            self.acd.handle(
                acd_ev.OfferFailed(
                    at=self.clock(), call_id=w.call_id, agent_id=agent, reason=str(exc)[:40]
                )
            )
            return
        w.offers.pop(agent, None)
        if other is None:
            self.acd.handle(
                acd_ev.OfferTimedOut(at=self.clock(), call_id=w.call_id, agent_id=agent)
            )
            return
        if w.call_id not in self.waiting or (w.session is not None and w.session.state == "ended"):
            await other.hangup("caller_gone")
            return
        w.agent_sessions[agent] = other
        self.acd.handle(acd_ev.OfferAnswered(at=self.clock(), call_id=w.call_id, agent_id=agent))

    async def _connect(self, w: Waiting, agent: str) -> None:
        """The engine confirmed ``agent`` takes the item: bridge (calls) or deliver (messages)."""
        other = w.agent_sessions.pop(agent, None)
        if other is None:
            return
        w.connected_to = agent
        self.event(
            w.case_id,
            "answered",
            agent,
            agent=agent,
            queue=w.queue,
            kind=w.kind,
            waited=round(self.clock() - w.enqueued_at, 1),
        )
        if w.announce_task is not None:
            w.announce_task.cancel()
        if w.kind == "call" and w.session is not None:
            if w.done is not None and not w.done.done():
                w.done.set_result("connected")
            try:
                await w.session.bridge(other)
            except (SessionEnded, MediaError):
                await other.hangup("caller_gone")
            await self._end_when_either_hangs_up(w, w.session, other, agent)
        else:
            await self._deliver(w, other, agent)
        self._forget(w)

    async def _end_when_either_hangs_up(
        self, w: Waiting, caller: CallSession, agent_leg: CallSession, agent: str
    ) -> None:
        """The agent's part ends when their leg ends (hung up, or transferred away by their
        phone's REFER: then the caller talks on with whoever took the call, and the case
        follows); the conversation ends when the caller or the last party hangs up."""

        async def agent_part() -> None:
            await agent_leg.ended.wait()
            self.acd.handle(acd_ev.CallEnded(at=self.clock(), call_id=w.call_id))
            now_with = caller.bridged_to
            if caller.state != "ended" and now_with is not None and now_with is not agent_leg:
                self.event(
                    w.case_id,
                    "transferred",
                    agent,
                    from_agent=agent,
                    to=now_with.dialled,
                    kind="by_agent",
                )

        part = self._spawn(agent_part())
        await keep_bridged(caller, agent_leg)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(part, 10)
        by = "caller" if caller.ended_by == "remote" else "agent"
        self.event(w.case_id, "hung_up", by, agent=agent)

    async def _deliver(self, w: Waiting, agent_leg: CallSession, agent: str) -> None:
        """A message or callback request reached an agent: play it, offer to call back."""
        try:
            prompt = "agent_callback" if w.kind == "voicemail" else "agent_callback_request"
            choice = await voicemail.deliver(agent_leg, w.recording or None, prompt=prompt)
            if choice == "callback" and w.callback and agent_leg.state != "ended":
                self.event(w.case_id, "note", agent, text="calling back", target=w.callback)
                with contextlib.suppress(SessionEnded):
                    ok = await agent_leg.transfer(w.callback, mode="reroute")
                    self.event(
                        w.case_id, "transferred", agent, target=w.callback, ok=ok, kind="callback"
                    )
                    if ok:
                        await agent_leg.ended.wait()
        finally:
            if agent_leg.state != "ended":
                with contextlib.suppress(Exception):
                    await agent_leg.hangup("normal")
            self.event(w.case_id, "hung_up", agent, kind=w.kind)
            self.acd.handle(acd_ev.CallEnded(at=self.clock(), call_id=w.call_id))


def add_center_routes(app: Any, center: ContactCenter) -> None:
    """Wallboard and case API: ``GET /api/acd``, ``GET /api/cases[?caller=]``,
    ``GET /api/cases/{id}``, ``POST /api/ivr/reload`` (re-reads the configuration file's [ivr])."""
    from aiohttp import web

    async def acd(request: web.Request) -> web.Response:
        return web.json_response(center.engine.snapshot())

    async def cases(request: web.Request) -> web.Response:
        caller = request.query.get("caller")
        if caller:
            found = await center.writer.run(lambda s: s.cases_for_caller(caller, 50))
        else:
            found = await center.writer.run(lambda s: s.list_cases(limit=50))
        return web.json_response([_case_dict(c) for c in found])

    async def case(request: web.Request) -> web.Response:
        try:
            case_id = int(request.match_info["case_id"])
        except ValueError:
            raise web.HTTPBadRequest(text="case id must be a number") from None
        await center.writer.flush()
        found = await center.writer.run(lambda s: s.get_case(case_id))
        if found is None:
            raise web.HTTPNotFound(text=f"no case {case_id}")
        events = await center.writer.run(lambda s: s.events(case_id))
        body = _case_dict(found)
        body["events"] = [
            {"at": e.at, "kind": e.kind, "actor": e.actor, "data": e.data} for e in events
        ]
        return web.json_response(body)

    async def reload_ivr(request: web.Request) -> web.Response:
        from hotline.config import ConfigError, load_config

        source = center.config.source
        if source.startswith("<"):
            raise web.HTTPConflict(text="the built-in demo configuration has no file to re-read")
        from ivr.flow import FlowError

        try:
            fresh = await asyncio.to_thread(load_config, source)
            try:
                version = center.reload_ivr(fresh.raw.get("ivr"))
            except FlowError as exc:
                raise fresh.error(exc.path, exc.reason) from None  # file:line: path: reason
        except ConfigError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=422)
        return web.json_response({"ok": True, "version": version})

    app.router.add_get("/api/acd", acd)
    app.router.add_get("/api/cases", cases)
    app.router.add_get("/api/cases/{case_id}", case)
    app.router.add_post("/api/ivr/reload", reload_ivr)


def _case_dict(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "caller": c.caller_number,
        "dialled": c.dialled,
        "channel": c.channel,
        "call_id": c.call_id,
        "type": c.case_type,
        "status": c.status,
        "owner": c.owner,
        "created_at": c.created_at,
    }
