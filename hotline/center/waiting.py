"""The waiting experience: what a queued caller hears and may do until an agent answers.

* A caller joins the engine's queue first (``CallArrived``): when an agent is free the
  engine offers the call at once and the caller hears nothing extra. "Please hold" and
  music on hold start only while the call is really waiting (no offer, no bridge), so a
  free agent is never made to wait behind a prompt (that used to cost ~3 s of service level).
* At the queue's announcement interval the engine sends ``AnnouncePosition``: the caller
  hears their position and expected wait, then the music again.
* Key 1 leaves a message, key 2 asks for a callback; both keep the caller's place: the
  message or request is queued as work with the caller's original arrival time.
* A message (key 1, the engine's wait limit, or a voicemail entry point) is recorded with
  voicemail/box.py and queued as ``voicemail`` work for the next agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from acd import events as acd_ev
from acd.store.work import StoredWork
from hotline.center.caselog import CaseLog, WorkKind
from hotline.center.reap import reap
from hotline.center.telephony import Acd
from ivr.runner import Outcome
from media_gateway.media.engine import MediaError
from media_gateway.prompts import number_words
from media_gateway.session import MEDIA_CAUSES, CallSession, SessionEnded
from voicemail import box as voicemail

log = structlog.get_logger("hotline.center.waiting")

QueueResult = Literal["connected", "voicemail", "callback", "rejected", "abandoned"]
"""How a caller's time in the queue ended."""

MESSAGE = re.compile(r"case-[0-9]+-[0-9]+\.wav")
"""A voicemail message's file name (``leave_message``)."""

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


@dataclass(eq=False)
class QueueItem:
    """A caller on the line, or a message / callback request, that the ACD is routing.

    The engine knows the item by ``call_id``; everything the shell needs to act on the
    engine's actions for it (the caller's session, the agent legs being rung or answered,
    the recording to deliver) is here, typed, instead of in loose dicts."""

    call_id: str
    case_id: int
    queue: str
    enqueued_at: float
    """The original arrival: messages and callbacks keep the caller's place with it."""
    caller: str
    kind: WorkKind = "call"
    session: CallSession | None = None
    """The caller's session (calls only)."""
    language: str = "en"
    recording: str = ""
    """The message to play to the agent (``voicemail`` work)."""
    callback: str = ""
    """Where the agent's callback goes (the caller's number or URI)."""
    offers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    """Agents being rung for this item, with the task ringing each."""
    answered_legs: dict[str, CallSession] = field(default_factory=dict)
    """Agent legs that answered and wait for the engine's ``BridgeCall`` (or refusal)."""
    agent: str = ""
    """The agent who took the item ("" until the engine bridged it)."""
    answered_at: float | None = None
    done: asyncio.Future[QueueResult] | None = None
    """Resolved when the caller's wait is over (calls only)."""
    holding: bool = False
    """"Please hold" and music have started (they play only while nobody is rung)."""
    announce_task: asyncio.Task[None] | None = None

    def finish(self, result: QueueResult) -> None:
        """End the caller's wait with ``result`` (the first result wins)."""
        if self.done is not None and not self.done.done():
            self.done.set_result(result)

    @property
    def still_waiting(self) -> bool:
        """A caller on the line, not rung, not connected, not leaving."""
        return (
            self.kind == "call"
            and self.session is not None
            and self.session.state != "ended"
            and not self.agent
            and not self.offers
            and not self.answered_legs
            and (self.done is None or not self.done.done())
        )


class WaitingRoom:
    """Queues callers and work, plays the waiting experience, handles the keys."""

    def __init__(
        self,
        *,
        acd: Acd,
        cases: CaseLog,
        items: dict[str, QueueItem],
        clock: Callable[[], float],
        spawn: Spawn,
        music_on_hold: str,
        voicemail_settings: voicemail.Settings,
        recordings: Path,
    ) -> None:
        self._acd = acd
        self._cases = cases
        self._items = items
        self._clock = clock
        self._spawn = spawn
        self._music = music_on_hold
        self._vm = voicemail_settings
        self.recordings = recordings
        self._ids = itertools.count(1)

    # -- joining ---------------------------------------------------------------------------

    async def enter(self, session: CallSession, case_id: int, outcome: Outcome) -> QueueItem:
        """Queue the caller (engine first, so a free agent rings at once), then "please
        hold" and music if the call is still waiting."""
        now = self._clock()
        item = QueueItem(
            call_id=session.id,
            case_id=case_id,
            queue=outcome.queue,
            enqueued_at=now,
            caller=session.caller,
            session=session,
            language=outcome.language,
            done=asyncio.get_running_loop().create_future(),
        )
        self._items[item.call_id] = item
        self._cases.queued(
            case_id,
            queue=outcome.queue,
            skills=outcome.skills,
            priority=outcome.priority,
            language=outcome.language,
        )
        self._acd.handle(
            acd_ev.CallArrived(
                at=now,
                call_id=item.call_id,
                queue=outcome.queue,
                priority=outcome.priority,
                skills=outcome.skills,
                caller=session.caller,
                data={"case_id": str(case_id), "language": outcome.language},
            )
        )
        await self.hold(item)
        return item

    async def hold(self, item: QueueItem) -> None:
        """ "Please hold" then music, once, and only while nobody is rung for the call."""
        session = item.session
        if session is None or item.holding or not item.still_waiting:
            return
        item.holding = True
        with contextlib.suppress(MediaError, SessionEnded):
            await session.play("please_hold", interruptible=True)
            await self._play_music(item)

    async def _play_music(self, item: QueueItem) -> None:
        session = item.session
        if session is None or session.state == "ended" or item.agent or item.answered_legs:
            return
        with contextlib.suppress(MediaError, SessionEnded):
            await session.play(self._music, interruptible=False, loop=True, wait=False)

    def announce(self, item: QueueItem, position: int, ewt_seconds: float) -> None:
        """Position and expected wait (the engine's ``AnnouncePosition``), then music."""
        if item.session is None or item.agent:
            return
        if item.announce_task is not None:
            item.announce_task.cancel()
        item.announce_task = self._spawn(self._announce(item, position, ewt_seconds))

    async def _announce(self, item: QueueItem, position: int, ewt_seconds: float) -> None:
        session = item.session
        if session is None:
            return
        lang = session.lang or item.language or "en"
        minutes = max(1, round(ewt_seconds / 60))
        prompts = [
            "position_before",
            *number_words(position, lang),
            "position_after",
            "wait_before",
            *number_words(minutes, lang, measure=True),
            "wait_after",
            "queue_options",
        ]
        with contextlib.suppress(SessionEnded, MediaError):
            await session.play(prompts, interruptible=True)
            await self._play_music(item)

    # -- waiting ---------------------------------------------------------------------------

    async def wait(self, item: QueueItem) -> QueueResult:
        """Until the caller is connected and the call ends, or the wait ends otherwise (a
        key, the engine's wait limit, a refusal). Raises SessionEnded when the caller hangs
        up while waiting (the caller of this method reports the abandon)."""
        session, done = item.session, item.done
        assert session is not None and done is not None, "only calls wait"
        while not done.done():
            key = asyncio.ensure_future(session.collect(1, timeout=3600, terminator=""))
            pending: set[asyncio.Future[Any]] = {key, done}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not key.done():
                key.cancel()
                await reap(key, SessionEnded)
                break
            digits = key.result().digits  # raises SessionEnded when the caller hung up
            if item.agent or item.answered_legs or done.done():
                continue
            if digits == "1":  # a message instead of waiting, keeping the place
                self.leave_queue(item, "voicemail")
                with contextlib.suppress(MediaError):
                    await session.stop_play()
                left = await self.leave_message(
                    session, item.case_id, item.queue, enqueued_at=item.enqueued_at
                )
                return "voicemail" if left else "abandoned"
            if digits == "2":  # a callback instead of waiting, keeping the place
                self.leave_queue(item, "callback")
                self.queue_work(
                    item.case_id,
                    item.queue,
                    "callback",
                    item.enqueued_at,
                    caller=session.caller,
                    callback=callback_target(session),
                )
                self._cases.note(
                    item.case_id, "caller", text="callback requested", queue=item.queue
                )
                await self._cases.durable()  # kept before the caller hears it is
                with contextlib.suppress(MediaError):
                    await session.stop_play()
                await session.play("callback_confirmed", interruptible=False)
                return "callback"
        result = done.result()
        if result == "connected":
            await session.ended.wait()
        elif result == "voicemail":  # the engine's wait limit (or no agents): record instead
            self.forget(item)
            with contextlib.suppress(MediaError):
                await session.stop_play()
            left = await self.leave_message(
                session, item.case_id, item.queue, enqueued_at=item.enqueued_at
            )
            return "voicemail" if left else "abandoned"
        elif result == "rejected":
            self.forget(item)
            with contextlib.suppress(MediaError):
                await session.stop_play()
            await session.play(["all_busy", "goodbye"], interruptible=False)
        return result

    def abandon(self, item: QueueItem) -> bool:
        """The caller hung up while waiting: tell the engine, write the case. False when the
        call had already been connected (then it is not an abandon)."""
        if item.agent or self._items.get(item.call_id) is not item:
            return False
        self._acd.handle(acd_ev.CallAbandoned(at=self._clock(), call_id=item.call_id))
        self._drop_agents(item)
        waited = self._clock() - item.enqueued_at
        cause = item.session.cause if item.session is not None else None
        if cause in MEDIA_CAUSES:
            # The media process died, or no RTP ever came: not the caller's doing (the case
            # names the real cause).
            self._cases.hung_up(
                item.case_id, "system", cause=cause, queue=item.queue, waited=waited
            )
        else:
            self._cases.abandoned(item.case_id, queue=item.queue, waited=waited)
        self.forget(item)
        return True

    def leave_queue(self, item: QueueItem, why: str) -> None:
        """The caller leaves the queue by a key (their work is queued in their place)."""
        self._acd.handle(acd_ev.CallEnded(at=self._clock(), call_id=item.call_id))
        self._drop_agents(item)
        self.forget(item)
        log.info("left_queue", call_id=item.call_id, why=why)

    def _drop_agents(self, item: QueueItem) -> None:
        """Stop ringing agents for an item the caller left, and release any agent leg that
        answered but was not bridged yet."""
        for task in item.offers.values():
            task.cancel()
        item.offers.clear()
        for leg in item.answered_legs.values():
            self._spawn(_hang_up(leg, "caller_gone"))
        item.answered_legs.clear()

    def forget(self, item: QueueItem) -> None:
        """Drop the item from the routed set (idempotent)."""
        if self._items.get(item.call_id) is item:
            del self._items[item.call_id]
            if item.kind != "call":  # delivered: a restart must not bring it back
                self._cases.work_done(item.call_id)
        if item.announce_task is not None:
            item.announce_task.cancel()

    # -- messages and callbacks ------------------------------------------------------------

    async def leave_message(
        self,
        session: CallSession,
        case_id: int,
        queue: str,
        *,
        enqueued_at: float,
        greeting: list[str] | None = None,
    ) -> bool:
        """Record a message and queue it as ``voicemail`` work; False when nothing was said."""
        path = self.recordings / f"case-{case_id}-{int(self._clock() * 1000)}.wav"
        message = await voicemail.record_message(session, path, self._vm, greeting=greeting)
        if message is None:
            self._cases.hung_up(case_id, "caller", stage="voicemail", reason="empty message")
            return False
        self._cases.voicemail_left(
            case_id,
            path=message.path,
            seconds=message.seconds,
            queue=queue,
            stopped_by=message.stopped_by,
        )
        self.queue_work(
            case_id,
            queue,
            "voicemail",
            enqueued_at,
            caller=session.caller,
            recording=message.path,
            callback=callback_target(session),
        )
        await self._cases.durable()  # the message is kept before the call moves on
        return True

    def queue_work(
        self,
        case_id: int,
        queue: str,
        kind: WorkKind,
        enqueued_at: float,
        *,
        caller: str,
        recording: str = "",
        callback: str = "",
        restored: str = "",
    ) -> QueueItem:
        """Queue a message or a callback request with the caller's original arrival time; it
        is kept in the case store until delivered. ``restored``: the id of work kept before a
        restart, put back by hotline/center/recovery.py (already kept)."""
        prefix = "vm-" if kind == "voicemail" else "cb-"
        item = QueueItem(
            call_id=restored or f"{prefix}{next(self._ids)}-{int(self._clock() * 1000)}",
            case_id=case_id,
            queue=queue,
            enqueued_at=enqueued_at,
            caller=caller,
            kind=kind,
            recording=self.message_file(recording),
            callback=callback,
        )
        self._items[item.call_id] = item
        if not restored and kind != "call":
            self._cases.work_kept(
                StoredWork(
                    call_id=item.call_id,
                    case_id=case_id,
                    kind=kind,
                    queue=queue,
                    enqueued_at=enqueued_at,
                    caller=caller,
                    recording=recording,
                    callback=callback,
                    created_at=self._clock(),
                )
            )
        self._cases.work_queued(
            case_id, queue=queue, kind=kind, enqueued_at=enqueued_at, restored=bool(restored)
        )
        self._acd.handle(
            acd_ev.CallArrived(
                at=self._clock(),
                call_id=item.call_id,
                queue=queue,
                caller=caller,
                data={"case_id": str(case_id)},
                enqueued_at=enqueued_at,
                kind=kind,
            )
        )
        return item

    def message_file(self, path: str) -> str:
        """Where a kept message's audio is on this node. Messages (``case-*.wav``) live in the
        recordings directory, which the nodes sharing it may mount at different paths: a
        message recorded by another node (work taken over from a lost node) is looked up by
        its name in this node's directory. Other paths are kept as they are."""
        given = Path(path)
        if not path or given.parent == self.recordings or not MESSAGE.fullmatch(given.name):
            return path
        return str(self.recordings / given.name)

    async def expire_messages(self) -> None:
        """Delete recordings older than the voicemail ``keep_days`` (checked hourly)."""
        while True:
            removed = await asyncio.to_thread(voicemail.expire, self.recordings, self._vm.keep_days)
            for path in removed:
                log.info("voicemail_expired", path=str(path))
            await asyncio.sleep(3600)


async def _hang_up(leg: CallSession, cause: str) -> None:
    with contextlib.suppress(SessionEnded, MediaError):
        await leg.hangup(cause)


def callback_target(session: CallSession) -> str:
    """Where a callback to this caller goes: a URI the IVR set, else their number."""
    return str(session.vars.get("callback_uri") or session.caller)
