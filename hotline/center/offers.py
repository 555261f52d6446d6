"""Offers and bridges: carrying out the engine's decisions about agents.

``OfferCall`` rings the agent through the :class:`~hotline.center.telephony.Telephony` port
(a SIP phone shows the queue and the caller as the display name, ``offer_display``) and
reports back what happened: answered (``OfferAnswered``), nobody answered (RONA,
``OfferTimedOut``), could not ring (``OfferFailed``). The engine decides what follows: for
an answer it sends ``BridgeCall`` (the first answer wins) or ``RefuseAnswer`` (a late one).

A bridged conversation is followed to its end with ``keep_bridged``, across transfers made
from the agent's phone; queued work (a message, a callback request) is delivered to the agent
with voicemail/box.py instead of bridged.

Log lines on the agent's leg carry the caller's ``call_id`` and ``leg=agent`` so one call's
story can be read from one id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from structlog.contextvars import bound_contextvars

from acd import actions as act
from acd import events as acd_ev
from hotline.center.caselog import CaseLog
from hotline.center.reap import reap
from hotline.center.recordings import CallRecorder
from hotline.center.telephony import Acd, Telephony
from hotline.center.waiting import QueueItem, Spawn
from media_gateway.media.engine import MediaError
from media_gateway.session import CallSession, SessionEnded, keep_bridged
from voicemail import box as voicemail

if TYPE_CHECKING:
    from hotline.center.agents import AgentDesk
    from hotline.center.feed import CenterEvents, OfferState

log = structlog.get_logger("hotline.center.offers")


def offer_display(item: QueueItem) -> str:
    """What an agent's SIP phone shows as the caller's name for an offer: the queue, what it
    is and who: ``sales: +33612345678``, ``support: message +33612345678``, ``support:
    callback +33612345678`` (``support: message`` when the number is unknown)."""
    who = item.callback if item.kind == "callback" and item.callback else item.caller
    what = {"call": "", "voicemail": "message", "callback": "callback"}[item.kind]
    said = " ".join(part for part in (what, who) if part)
    return f"{item.queue}: {said}" if said else item.queue


class Offers:
    """Rings agents for queued items and connects the winners."""

    def __init__(
        self,
        *,
        telephony: Telephony,
        acd: Acd,
        cases: CaseLog,
        items: dict[str, QueueItem],
        clock: Callable[[], float],
        spawn: Spawn,
        forget: Callable[[QueueItem], None],
        unoffered: Callable[[QueueItem], None],
        recorder: CallRecorder | None = None,
        events: CenterEvents | None = None,
        desk: AgentDesk | None = None,
    ) -> None:
        self._telephony = telephony
        self._acd = acd
        self._cases = cases
        self._items = items
        self._clock = clock
        self._spawn = spawn
        self._forget = forget
        self._unoffered = unoffered
        self._recorder = recorder
        self._events = events
        self._desk = desk
        """The agents' desk (agents.py) follows each agent's call and delivered work."""
        """Offers are published on the live event stream (feed.py)."""
        """Consent prompt and recording for queues that record (recordings.py)."""
        """Called when a call is left with nobody rung (it waits again: music)."""

    # -- the engine's actions --------------------------------------------------------------

    def offer(self, action: act.OfferCall) -> None:
        item = self._items.get(action.call_id)
        if item is None:  # the caller left between the decision and now
            self._acd.handle(
                acd_ev.OfferFailed(
                    at=self._clock(),
                    call_id=action.call_id,
                    agent_id=action.agent_id,
                    reason="gone",
                )
            )
            return
        self._cases.offered(item.case_id, agent=action.agent_id, queue=action.queue)
        if self._events is not None:
            self._events.offer_ringing(
                agent=action.agent_id,
                call_id=item.call_id,
                case_id=item.case_id,
                queue=action.queue,
                caller=item.caller,
                ring_timeout=action.ring_timeout,
                vars=item.session.vars if item.session is not None else None,
            )
        item.offers[action.agent_id] = self._spawn(
            self._ring(item, action.agent_id, action.ring_timeout)
        )

    def cancel(self, action: act.CancelOffer) -> None:
        timed_out = action.reason == "no_answer"
        self._offer_ended(
            action.call_id,
            action.agent_id,
            "timed_out" if timed_out else "cancelled",
            "" if timed_out else action.reason,
        )
        item = self._items.get(action.call_id)
        if item is None:
            return
        task = item.offers.pop(action.agent_id, None)
        if task is not None:
            task.cancel()
        if action.reason == "no_answer":
            self._cases.rona(item.case_id, agent=action.agent_id)
            log.info("rona", call_id=item.call_id, agent=action.agent_id)
        if not item.offers:
            self._unoffered(item)

    def bridge(self, action: act.BridgeCall) -> None:
        item = self._items.get(action.call_id)
        if item is not None:
            self._spawn(self._connect(item, action.agent_id))

    def refuse(self, action: act.RefuseAnswer) -> None:
        self._offer_ended(action.call_id, action.agent_id, "refused", action.reason)
        item = self._items.get(action.call_id)
        leg = item.answered_legs.pop(action.agent_id, None) if item is not None else None
        if leg is not None:
            self._spawn(leg.hangup("answered_elsewhere"))

    # -- ringing ---------------------------------------------------------------------------

    async def _ring(self, item: QueueItem, agent: str, ring_timeout: float) -> None:
        """Ring one agent for one item; report what happened to the engine."""
        with bound_contextvars(call_id=item.call_id, leg="agent", agent=agent):
            try:
                leg = await self._telephony.originate(
                    agent,
                    ring_timeout=ring_timeout,
                    caller=item.caller or "hotline",
                    display=offer_display(item),
                )
            except (LookupError, ValueError, MediaError) as exc:
                log.info("offer_failed", reason=str(exc))
                self._ring_ended(item, agent)
                self._offer_ended(item.call_id, agent, "failed", str(exc)[:40])
                self._acd.handle(
                    acd_ev.OfferFailed(
                        at=self._clock(), call_id=item.call_id, agent_id=agent, reason=str(exc)[:40]
                    )
                )
                self._check_unoffered(item)
                return
            self._ring_ended(item, agent)
            if leg is None:
                log.info("offer_not_answered")
                self._offer_ended(item.call_id, agent, "timed_out")
                self._acd.handle(
                    acd_ev.OfferTimedOut(at=self._clock(), call_id=item.call_id, agent_id=agent)
                )
                self._check_unoffered(item)
                return
            caller_gone = item.session is not None and item.session.state == "ended"
            if self._items.get(item.call_id) is not item or caller_gone:
                log.info("offer_answered_too_late")
                self._offer_ended(item.call_id, agent, "cancelled", "caller_gone")
                await leg.hangup("caller_gone")
                return
            item.answered_legs[agent] = leg
            log.info("offer_answered")
            self._offer_ended(item.call_id, agent, "answered")
            self._acd.handle(
                acd_ev.OfferAnswered(at=self._clock(), call_id=item.call_id, agent_id=agent)
            )

    def _offer_ended(self, call_id: str, agent: str, state: OfferState, reason: str = "") -> None:
        if self._events is not None:
            self._events.offer_ended(state, agent=agent, call_id=call_id, reason=reason)

    def _ring_ended(self, item: QueueItem, agent: str) -> None:
        item.offers.pop(agent, None)

    def _check_unoffered(self, item: QueueItem) -> None:
        """After a failed ring the engine may have offered the call elsewhere; if not, the
        caller is waiting again."""
        if not item.offers:
            self._unoffered(item)

    # -- connecting ------------------------------------------------------------------------

    async def _connect(self, item: QueueItem, agent: str) -> None:
        """The engine confirmed ``agent`` takes the item: bridge (calls) or deliver (work)."""
        with bound_contextvars(call_id=item.call_id, leg="agent", agent=agent):
            leg = item.answered_legs.pop(agent, None)
            if leg is None:
                return
            now = self._clock()
            item.agent, item.answered_at = agent, now
            self._cases.answered(
                item.case_id,
                agent=agent,
                queue=item.queue,
                kind=item.kind,
                waited=now - item.enqueued_at,
            )
            if item.announce_task is not None:
                item.announce_task.cancel()
            try:
                if item.kind == "call" and item.session is not None:
                    item.finish("connected")
                    await self._converse(item, item.session, leg, agent)
                else:
                    await self._deliver(item, leg, agent)
            finally:
                self._forget(item)

    async def _converse(
        self, item: QueueItem, caller: CallSession, leg: CallSession, agent: str
    ) -> None:
        """Bridge and follow the conversation: the agent's part ends when their leg ends
        (hung up, or transferred away by their phone's REFER, after which the caller talks on
        with whoever took the call and the case follows); the conversation ends when the
        caller or the last party hangs up."""
        try:
            if self._recorder is not None:
                await self._recorder.consent(caller, item.queue)  # before the agent hears them
            await caller.bridge(leg)
            if self._recorder is not None:
                await self._recorder.start(
                    caller, leg, case_id=item.case_id, queue=item.queue, agent=agent
                )
        except (SessionEnded, MediaError):
            with contextlib.suppress(SessionEnded, MediaError):
                await leg.hangup("caller_gone")
        log.info("bridged")

        async def agent_part() -> None:
            await leg.ended.wait()
            self._acd.handle(acd_ev.CallEnded(at=self._clock(), call_id=item.call_id))
            now_with = caller.bridged_to
            if caller.state != "ended" and now_with is not None and now_with is not leg:
                self._cases.transferred_by_agent(item.case_id, agent=agent, to=now_with.dialled)
            if self._desk is not None:
                self._desk.agent_left(item, agent)

        part = self._spawn(agent_part())
        if self._desk is not None:  # (a blind transfer through the API cancels this task)
            self._desk.talking(item, caller, leg, agent)
        await keep_bridged(caller, leg)
        await reap(asyncio.wait_for(part, 10), TimeoutError)
        by = "caller" if caller.ended_by == "remote" else agent
        self._cases.hung_up(item.case_id, by, agent=agent)
        log.info("conversation_ended", by=by)

    async def _deliver(self, item: QueueItem, leg: CallSession, agent: str) -> None:
        """A message or callback request reached an agent: play it, offer to call back."""
        called_back: bool | None = None
        if self._desk is not None:
            self._desk.work_started(item, agent)
        try:
            prompt = "agent_callback" if item.kind == "voicemail" else "agent_callback_request"
            choice = await voicemail.deliver(leg, item.recording or None, prompt=prompt)
            if choice == "callback" and item.callback and leg.state != "ended":
                self._cases.note(item.case_id, agent, text="calling back", target=item.callback)
                with contextlib.suppress(SessionEnded):
                    ok = called_back = await leg.transfer(item.callback, mode="reroute")
                    self._cases.called_back(item.case_id, agent=agent, target=item.callback, ok=ok)
                    if ok:
                        await leg.ended.wait()
        finally:
            if leg.state != "ended":
                with contextlib.suppress(SessionEnded, MediaError):
                    await leg.hangup("normal")
            self._cases.hung_up(item.case_id, agent, kind=item.kind)
            self._acd.handle(acd_ev.CallEnded(at=self._clock(), call_id=item.call_id))
            if self._desk is not None:
                self._desk.work_ended(item, agent, called_back=called_back)
            log.info("work_delivered", kind=item.kind)
