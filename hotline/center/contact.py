"""Coordination of one call, and the ``ContactCenter`` facade the composition root wires.

One call: entry point -> open a case -> IVR (``ivr.runner.run_flow``) -> outcome: queue
(waiting.py, then offers.py when the engine picks an agent), voicemail, transfer or hangup.
The center decides nothing about routing: the IVR says what the caller chose, the ACD
engine who takes the call (and the expected wait), the Telephony port rings agents.

At its end every call leaves one canonical log line, ``call_handled``, with its call id,
case id, entry point, dialled number, queue, agent, outcome, waited and talk seconds: the
line to grep when someone asks "what happened to my call?".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from structlog.contextvars import bound_contextvars

from acd import actions as act
from acd import events as acd_ev
from acd.cases import Case
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.escalation import EscalationPolicy
from acd.model import AgentStatusView, LogRecord, QueueStatus
from acd.service import AcdService
from acd.stats import StatsAccumulator
from acd.store._sql import SqlCaseStore
from acd.store.postgres import PostgresCaseStore
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter
from hotline.center.agents import AgentDesk
from hotline.center.caselog import CaseLog, CaseTrail
from hotline.center.feed import CenterEvents, EventFeed
from hotline.center.offers import Offers
from hotline.center.recordings import CallRecorder, RecordingStore
from hotline.center.recovery import Recovered, recover
from hotline.center.routing import RoutingDesk
from hotline.center.stats import StatsView
from hotline.center.telemetry import QueueMetrics, QueueTelemetry
from hotline.center.telephony import Acd, Telephony
from hotline.center.waiting import QueueItem, QueueResult, WaitingRoom
from hotline.config import Config, load_ivr
from ivr.flow import IvrConfig
from ivr.runner import Outcome, run_flow
from media_gateway.media.engine import MediaError
from media_gateway.session import MEDIA_CAUSES, CallSession, SessionEnded
from voicemail import box as voicemail

if TYPE_CHECKING:  # psycopg comes with the postgres extra: a single node needs none of it
    from hotline.cluster.brain import ClusterAcd

log = structlog.get_logger("hotline.center")

CallOutcome = Literal[
    "answered", "abandoned", "voicemail", "callback", "ivr_hangup", "transferred", "rejected"
]
"""How a call ended, in the canonical ``call_handled`` line."""

_QUEUE_OUTCOMES: dict[QueueResult, CallOutcome] = {
    "connected": "answered",
    "voicemail": "voicemail",
    "callback": "callback",
    "rejected": "rejected",
    "abandoned": "abandoned",
}


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CenterSettings:
    """What the center takes from the configuration, parsed and validated."""

    acd: AcdConfig
    ivr: IvrConfig
    voicemail: voicemail.Settings
    data_dir: Path
    recordings: Path
    music_on_hold: str
    agents: tuple[str, ...]
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    """Where overdue cases go ([escalation])."""
    escalation_check_seconds: float = 60.0


def read_settings(config: Config) -> CenterSettings:
    """The center's part of the (already validated) configuration."""
    vm = config.voicemail
    data = Path(config.server.data_dir)
    return CenterSettings(
        acd=config.acd,
        ivr=config.ivr,
        voicemail=voicemail.Settings(
            max_seconds=vm.max_seconds,
            silence_seconds=vm.silence_seconds,
            stop_digits=vm.stop_digits,
            keep_days=vm.keep_days,
        ),
        data_dir=data,
        recordings=Path(config.media.recordings_dir or data / "recordings"),
        music_on_hold=config.media.music_on_hold,
        agents=tuple(a.id for a in config.agents),
        escalation=config.escalation.policy,
        escalation_check_seconds=config.escalation.check_seconds,
    )


class NoConfigFile(Exception):
    """The running configuration did not come from a file, so there is nothing to re-read."""


# -- one call --------------------------------------------------------------------------------


@dataclass
class CallRecord:
    """What the canonical ``call_handled`` line says about one call."""

    call_id: str
    entry: str
    dialled: str
    started: float
    case_id: int = 0
    queue: str = ""
    agent: str = ""
    outcome: CallOutcome = "ivr_hangup"
    waited: float = 0.0
    talk: float = 0.0


def open_case_store(config: Config) -> SqlCaseStore:
    """The case store ``[database]`` names: PostgreSQL (shared by the nodes that name the same
    database and schema; this node's live calls and queued work tagged with its name), or
    SQLite in the data directory."""
    db = config.database
    store: SqlCaseStore
    if db.url:
        store = PostgresCaseStore(db.url, schema=db.schema)
    else:
        data_dir = Path(config.server.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = SQLiteCaseStore(data_dir / "cases.sqlite3")
    store.node = db.node
    return store


class ContactCenter:
    """IVR -> ACD -> agent or voicemail, every step in the call's case.

    The composition root calls :meth:`handle_call` for each inbound session on a
    ``hotline``/``ivr``/``queue``/``voicemail`` entry point and :meth:`presence_changed`
    when an agent's first phone comes or last phone goes; the center rings agents through
    ``telephony`` only."""

    def __init__(
        self,
        config: Config,
        telephony: Telephony,
        *,
        clock: Callable[[], float] = time.time,
        metrics: QueueMetrics | None = None,
        cluster: ClusterAcd | None = None,
    ) -> None:
        """``cluster``: on a cluster's node, the ACD over the routing brain (its engine a
        replica); the center binds its actions and log to it. Otherwise an engine of its own."""
        self.config = config
        self.telephony = telephony
        self._clock = clock
        self.settings = read_settings(config)
        self.ivr: IvrConfig = self.settings.ivr
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_case_store(config)
        self.writer = AsyncCaseWriter(self.store)
        self.cases = CaseLog(self.writer, clock)
        self.telemetry = QueueTelemetry(metrics)
        self.acd: Acd
        self.cluster = cluster
        self.persist_engine_log: Callable[[], bool] = lambda: True
        """Whether this node writes the engine's log records to the case store: every node
        of a cluster sees them all, so only the one whose brain is active writes them."""
        if cluster is not None:
            self.engine = cluster.engine
            cluster.bind(self._on_action, self._on_log)
            self.acd = cluster
        else:
            self.engine = AcdEngine(self.settings.acd, rng=random.Random(), now=clock())
            self.acd = AcdService(
                self.engine, on_action=self._on_action, on_log=self._on_log, clock=clock
            )
        self.stats_view = StatsView(self.writer, self.engine, clock=clock)
        """Live statistics from the stored engine log: queues now and per interval, an agent's
        day (stats.py); ``await stats_view.snapshot()`` is the statistics tick."""
        self.feed = EventFeed(clock=clock)
        """The live event stream (feed.py; served as ``GET /api/events``)."""
        self.events = CenterEvents(self.feed, self.engine)
        """What the center publishes on the feed: engine log, offers, cases, statistics."""
        self.cases.events = self.events
        self.waiting: dict[str, QueueItem] = {}
        """Calls and work the ACD is routing, by call id (read-only for others)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.room = WaitingRoom(
            acd=self.acd,
            cases=self.cases,
            items=self.waiting,
            clock=clock,
            spawn=self._spawn,
            music_on_hold=self.settings.music_on_hold,
            voicemail_settings=self.settings.voicemail,
            recordings=self.settings.recordings,
        )
        self.recordings = CallRecorder(
            RecordingStore(self.settings.recordings / "calls"),
            queue_config=lambda queue: self.engine.config.queues.get(queue),
            cases=self.cases,
            clock=clock,
            spawn=self._spawn,
        )
        """Recorded conversations of the queues with ``record = true`` (recordings.py)."""
        self.agents = AgentDesk(self, clock=clock)
        """The agents' own work: state, the call in hand, tasks (agents.py)."""
        self.offers = Offers(
            telephony=telephony,
            acd=self.acd,
            cases=self.cases,
            items=self.waiting,
            clock=clock,
            spawn=self._spawn,
            forget=self.room.forget,
            unoffered=self._waits_again,
            recorder=self.recordings,
            events=self.events,
            desk=self.agents,
        )
        self.recovered = Recovered()
        """What the last start-up found after a crash (recovery.py)."""
        self.routing = RoutingDesk(self)
        """Routing for supervisors: versions (restored from the data directory), validation,
        what-if, apply, rollback, explanations (routing.py)."""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in the agents who already have a phone; start the voicemail expiry."""
        self.settings.recordings.mkdir(parents=True, exist_ok=True)
        for agent in self.settings.agents:
            if self.telephony.agent_reachable(agent):
                self.presence_changed(agent, True)
        # After a crash: close the calls it cut off, queue the kept work again (recovery.py).
        self.recovered = await recover(
            self.cases, self.room, queues=set(self.engine.config.queues), clock=self._clock
        )
        self._spawn(self.room.expire_messages())
        await self.recordings.open()
        self._spawn(self.recordings.expire_recordings())
        self._spawn(self.events.stats_ticks(self.stats_view.snapshot))
        self._spawn(
            self.cases.escalate_periodically(
                self.settings.escalation, self.settings.escalation_check_seconds
            )
        )

    async def take_over(self, lost_node: str) -> Recovered:
        """A cluster node was found lost by the routing brain running here: close its cases
        (``node_lost``) and queue its kept messages and callbacks here (recovery.py)."""
        return await recover(
            self.cases,
            self.room,
            queues=set(self.engine.config.queues),
            clock=self._clock,
            lost_node=lost_node,
        )

    async def close(self) -> None:
        """Stop every task (agent legs, announcements), the engine's timer and the writer."""
        self.feed.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.close()
        else:
            assert isinstance(self.acd, AcdService)
            self.acd.close()
        with contextlib.suppress(Exception):
            await self.writer.close()
        self.store.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- agents ----------------------------------------------------------------------------

    def presence_changed(self, agent_id: str, present: bool) -> None:
        """An agent's first phone registered (or browser phone opened), or the last went."""
        if agent_id not in self.settings.agents:
            return
        now = self._clock()
        if present and not self.agents.presence_may_log_in(agent_id):
            log.info("agent_presence_ignored", agent=agent_id, reason="signed_off")
            return
        if present:
            self.acd.handle(acd_ev.AgentLoggedIn(at=now, agent_id=agent_id))
        else:
            self.acd.handle(acd_ev.AgentLoggedOut(at=now, agent_id=agent_id))
        log.info("agent_presence", agent=agent_id, logged_in=present)

    def agent_ready(self, agent_id: str) -> None:
        """The agent makes themselves available again (ends a pause, e.g. the automatic
        pause after too many unanswered offers)."""
        self.acd.handle(acd_ev.AgentReady(at=self._clock(), agent_id=agent_id))
        log.info("agent_ready", agent=agent_id)

    # -- read-only views (IVR queue_state nodes, HTTP routes) -------------------------------

    def agents_available(self, queue: str) -> int:
        """Agents who could take a call of ``queue`` now (0 for an unknown queue)."""
        try:
            return self.engine.queue_status(queue).routable
        except KeyError:
            return 0

    def ewt_seconds(self, queue: str) -> float:
        """The engine's expected wait for a new caller of ``queue``."""
        try:
            return self.engine.queue_status(queue).ewt_seconds
        except KeyError:
            return 0.0

    def queue_status(self, queue: str) -> QueueStatus:
        """Raises KeyError for an unknown queue."""
        return self.engine.queue_status(queue)

    def agent_status(self, agent_id: str) -> AgentStatusView:
        """Raises KeyError for an unknown agent."""
        return self.engine.agent_status(agent_id)

    @property
    def stats(self) -> StatsAccumulator:
        """Queue, agent and interval figures folded from the engine's log since start."""
        return self.telemetry.stats

    def queue_members(self) -> dict[str, list[str]]:
        """Queue name -> the agents serving it (directly or through a group)."""
        acd = self.settings.acd
        return {
            name: [
                aid
                for aid, agent in acd.agents.items()
                if name in agent.queues or set(agent.groups) & set(queue.groups)
            ]
            for name, queue in acd.queues.items()
        }

    def acd_snapshot(self) -> dict[str, Any]:
        """The wallboard's view of queues and agents (plain data)."""
        return self.engine.snapshot()

    async def case_trail(self, case_id: int) -> CaseTrail | None:
        return await self.cases.trail(case_id)

    async def list_cases(self, *, caller: str | None = None, limit: int = 50) -> list[Case]:
        return await self.cases.cases(caller=caller, limit=limit)

    # -- IVR flows -------------------------------------------------------------------------

    def reload_ivr(self, flows: IvrConfig) -> int:
        """Publish new flows as the next version (running calls keep theirs)."""
        self.ivr = dataclasses.replace(flows, version=self.ivr.version + 1)
        log.info("ivr_reloaded", version=self.ivr.version, flows=sorted(self.ivr.flows))
        return self.ivr.version

    async def reload_ivr_from_file(self) -> int:
        """Re-read the configuration file and publish its flows. Raises ``ConfigError``
        (every mistake with its file and line; the running flows stay) or ``NoConfigFile``."""
        source = self.config.source
        if source.startswith("<"):
            raise NoConfigFile("the built-in configuration has no file to re-read")
        flows = await asyncio.to_thread(load_ivr, source, version=self.ivr.version + 1)
        return self.reload_ivr(flows)

    # -- one call --------------------------------------------------------------------------

    async def handle_call(self, session: CallSession, kind: str, target: str) -> None:
        """Serve one inbound call on a ``hotline``/``ivr``/``queue``/``voicemail`` entry point
        (``target``: the flow, queue or mailbox it names), from answer to hangup."""
        record = CallRecord(
            call_id=session.id, entry=kind, dialled=session.dialled, started=self._clock()
        )
        with bound_contextvars(call_id=session.id):
            try:
                await self._serve(session, kind, target, record)
            finally:
                # A transferred caller may talk on with their new party on this session.
                if session.state != "ended" and record.outcome != "transferred":
                    with contextlib.suppress(SessionEnded, MediaError):
                        await session.hangup("normal")
                await self.cases.call_over(record.case_id)  # its end is durable, then the log
                log.info(
                    "call_handled",
                    call_id=record.call_id,
                    case_id=record.case_id,
                    entry=record.entry,
                    dialled=record.dialled,
                    queue=record.queue,
                    agent=record.agent,
                    outcome=record.outcome,
                    waited=round(record.waited, 1),
                    talk=round(record.talk, 1),
                )

    async def _serve(
        self, session: CallSession, kind: str, target: str, record: CallRecord
    ) -> None:
        case_id = await self.cases.open_case(session, entry=kind)  # opened + entered, durable
        record.case_id = case_id
        try:
            await session.answer()
            outcome = await self._choose(session, kind, target, case_id)
        except SessionEnded as ended:
            who = "system" if ended.cause in MEDIA_CAUSES else "caller"  # not the caller's doing
            self.cases.hung_up(case_id, who, by=ended.by, cause=ended.cause, stage="ivr")
            record.outcome = "ivr_hangup"
            return
        record.queue = outcome.queue
        if outcome.kind == "queue":
            record.outcome = "abandoned"  # until the queue says otherwise (e.g. shutdown)
            await self._queue(session, case_id, outcome, record)
        elif outcome.kind == "voicemail":
            record.outcome = "abandoned"
            with contextlib.suppress(SessionEnded):
                left = await self.room.leave_message(
                    session,
                    case_id,
                    outcome.queue,
                    enqueued_at=self._clock(),
                    greeting=outcome.greeting,
                )
                record.outcome = "voicemail" if left else "abandoned"
        elif outcome.kind == "transfer":
            record.outcome = "transferred"
            with contextlib.suppress(SessionEnded):
                ok = await session.transfer(outcome.target)
                self.cases.transferred_by_ivr(case_id, target=outcome.target, ok=ok)
                if not ok:
                    record.outcome = "rejected"
                    await session.play("goodbye", interruptible=False)
        else:
            self.cases.hung_up(case_id, "ivr", reason=outcome.reason or "flow")
            record.outcome = "ivr_hangup"

    async def _choose(self, session: CallSession, kind: str, target: str, case_id: int) -> Outcome:
        """What the caller wants: the IVR's outcome, or the entry point's fixed one."""
        lang = session.lang or "en"
        if kind == "queue":
            return Outcome(kind="queue", queue=target, language=lang)
        if kind == "voicemail":
            return Outcome(
                kind="voicemail", queue=target, language=lang, greeting=["voicemail_intro"]
            )
        if kind == "hotline" and not self.ivr.flows:
            # No IVR configured: straight to the first queue, or a welcome and music.
            queues = list(self.settings.acd.queues)
            if queues:
                return Outcome(kind="queue", queue=queues[0], language=lang)
            await session.play(["welcome", "please_hold"], interruptible=False)
            await session.play(
                self.settings.music_on_hold, interruptible=False, loop=True, wait=False
            )
            await session.ended.wait()
            raise SessionEnded(session.ended_by or "remote", session.cause or "bye")
        return await run_flow(
            self.ivr,
            session,
            flow=target if kind == "ivr" and target else None,
            record=lambda event_kind, data: self.cases.ivr(case_id, event_kind, data),
            queues=self,
            wallclock=self._clock,
        )

    async def _queue(
        self, session: CallSession, case_id: int, outcome: Outcome, record: CallRecord
    ) -> None:
        item = await self._enter_queue(session, case_id, outcome)
        result: QueueResult
        try:
            result = await self.room.wait(item) if item is not None else "abandoned"
        except SessionEnded:
            # The caller hung up: while waiting that is an abandon; once bridged, the end.
            result = "abandoned" if item is None or self.room.abandon(item) else "connected"
        finally:
            if item is not None:
                self.room.forget(item)
        now = self._clock()
        if item is not None:
            record.queue, record.agent = item.queue, item.agent
            record.waited = (item.answered_at or now) - item.enqueued_at
            if item.answered_at is not None:
                record.talk = now - item.answered_at
        record.outcome = _QUEUE_OUTCOMES[result]
        if result not in ("connected", "abandoned"):
            self.cases.hung_up(case_id, "system", after=result)

    async def _enter_queue(
        self, session: CallSession, case_id: int, outcome: Outcome
    ) -> QueueItem | None:
        """Join the queue; None when the caller hung up during "please hold" (then the
        abandon is already reported)."""
        try:
            return await self.room.enter(session, case_id, outcome)
        except SessionEnded:
            item = self.waiting.get(session.id)
            if item is not None:
                self.room.abandon(item)
            return None

    async def requeue(
        self, session: CallSession, case_id: int, queue: str, *, language: str
    ) -> None:
        """Queue a connected caller again, on their case (an agent's blind transfer to
        ``queue``): the waiting experience, offers and the end as for a new arrival, with a
        ``call_handled`` line of its own (entry ``transfer``) at the end."""
        record = CallRecord(
            call_id=session.id,
            entry="transfer",
            dialled=session.dialled,
            started=self._clock(),
            case_id=case_id,
            queue=queue,
        )
        with bound_contextvars(call_id=session.id):
            try:
                outcome = Outcome(kind="queue", queue=queue, language=language)
                await self._queue(session, case_id, outcome, record)
            finally:
                if session.state != "ended":
                    with contextlib.suppress(SessionEnded, MediaError):
                        await session.hangup("normal")
                log.info("call_handled", **dataclasses.asdict(record))

    def _waits_again(self, item: QueueItem) -> None:
        """Nobody is rung for the call any more (RONA, a failed ring): music again."""
        if item.still_waiting:
            self._spawn(self.room.hold(item))

    # -- the engine ------------------------------------------------------------------------

    def _on_log(self, records: list[LogRecord]) -> None:
        for record in records:
            self.telemetry.fold(record)
        if self.persist_engine_log():
            self.cases.engine_log([r.to_dict() for r in records])
        self.events.engine_log(records)

    def _on_action(self, action: act.Action) -> None:
        """Carry out one engine action (the engine has already changed its state)."""
        log.debug(
            "acd_action", action=type(action).__name__, call_id=getattr(action, "call_id", None)
        )
        match action:
            case act.OfferCall():
                self.offers.offer(action)
            case act.CancelOffer():
                self.offers.cancel(action)
            case act.BridgeCall():
                self.offers.bridge(action)
            case act.RefuseAnswer():
                self.offers.refuse(action)
            case act.SendToVoicemail(call_id=call_id, queue=queue, reason=reason):
                item = self.waiting.get(call_id)
                if item is not None and item.done is not None and not item.done.done():
                    self.cases.sent_to_voicemail(item.case_id, queue=queue, reason=reason)
                    item.queue = queue
                    item.finish("voicemail")
            case act.Overflow(call_id=call_id, from_queue=from_q, to_queue=to_q, reason=reason):
                item = self.waiting.get(call_id)
                if item is not None:
                    item.queue = to_q
                    self.cases.overflowed(
                        item.case_id, from_queue=from_q, to_queue=to_q, reason=reason
                    )
            case act.RejectCall(call_id=call_id, reason=reason):
                item = self.waiting.get(call_id)
                if item is not None:
                    self.cases.hung_up(item.case_id, "acd", reason=f"rejected:{reason}")
                    item.finish("rejected")
            case act.AnnouncePosition(call_id=call_id, position=position, ewt_seconds=ewt):
                item = self.waiting.get(call_id)
                if item is not None:
                    self.room.announce(item, position, ewt)
            case act.PauseAgent(agent_id=agent_id, reason=reason):
                log.info("agent_paused", agent=agent_id, reason=reason)


__all__ = [
    "CallOutcome",
    "CallRecord",
    "CenterSettings",
    "ContactCenter",
    "NoConfigFile",
    "read_settings",
]
