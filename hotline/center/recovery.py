"""Start-up after a crash: close the calls it cut off, put the queued work back.

What the case store keeps for this (migration 0005, ``acd/store/work.py``):

* every call from its case's opening (written in the same transaction as ``opened`` and
  ``entered``) until its end (``CaseLog.call_over``, awaited when the call is over). A call
  still there at start-up was cut off by a crash (kill -9, power loss): its case gets the
  closing event it never had, ``hung_up`` by ``system`` with cause ``service_restart``, in the
  same transaction that forgets it;
* every message and callback request from the moment it is queued (awaited before the call
  moves on) until an agent has had it. At start-up each goes back into the engine's queue in
  the callers' original order and with their original arrival times (the engine sorts on
  them), so it is offered to the next free agent as if nothing had happened; its case gets a
  ``queued`` event marked ``restored`` and stays open as queued work.

Run once by :meth:`ContactCenter.start`, after the agents whose phones are registered (the
registrations are restored too, ``media_gateway/registrations.py``) have been logged in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog

from acd.cases import CaseEvent
from acd.store import CaseStore
from acd.store.work import LiveCall, StoredWork
from hotline.center.caselog import CaseLog
from hotline.center.waiting import WaitingRoom

log = structlog.get_logger("hotline.center.recovery")

RESTART_CAUSE = "service_restart"
"""The cause on the closing event of a call a crash cut off."""


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one start-up found and did."""

    closed: tuple[LiveCall, ...] = ()
    """Calls cut off by the crash, now closed (``hung_up``, cause ``service_restart``)."""
    restored: tuple[StoredWork, ...] = ()
    """Messages and callback requests put back into their queues, in arrival order."""
    held: tuple[StoredWork, ...] = ()
    """Work kept but not queued: its queue is no longer configured (it stays kept)."""


NODE_LOST_CAUSE = "node_lost"
"""The cause on the closing event of a call held by a cluster node that was found lost."""


async def recover(
    cases: CaseLog,
    room: WaitingRoom,
    *,
    queues: Collection[str],
    clock: Callable[[], float],
    lost_node: str | None = None,
) -> Recovered:
    """Close the calls a crash cut off, then queue the kept work again (see the module).

    ``lost_node``: instead of this node's own, the calls and work of a cluster node the
    routing brain found lost (its heartbeat stopped): its calls are closed with cause
    ``node_lost`` and its queued work becomes this node's, queued again here."""
    writer = cases.writer
    cause = RESTART_CAUSE if lost_node is None else NODE_LOST_CAUSE
    live = await writer.run(lambda store: store.live_calls(lost_node))
    adopted: set[str] | None = None
    if lost_node is not None:
        adopted = set(await writer.run(lambda store: store.adopt_work(lost_node)))
    now = clock()
    for call in live:
        closing = CaseEvent(
            at=now,
            kind="hung_up",
            actor="system",
            data={
                "cause": cause,
                "call_id": call.call_id,
                "opened_at": call.opened_at,
                **({"node": lost_node} if lost_node is not None else {}),
            },
        )
        await writer.run(functools.partial(_end, case_id=call.case_id, event=closing))
        log.warning(
            "call_closed_after_restart" if lost_node is None else "call_closed_node_lost",
            case_id=call.case_id,
            call_id=call.call_id,
            cause=cause,
            node=lost_node,
        )
    kept = await writer.run(lambda store: store.queued_work())
    if adopted is not None:  # this node's own work is queued already
        kept = [w for w in kept if w.call_id in adopted]
    restored: list[StoredWork] = []
    held: list[StoredWork] = []
    for work in kept:  # oldest arrival first
        if work.queue not in queues:
            held.append(work)
            log.warning(
                "work_not_restored",
                case_id=work.case_id,
                call_id=work.call_id,
                queue=work.queue,
                reason="unknown_queue",
            )
            continue
        room.queue_work(
            work.case_id,
            work.queue,
            work.kind,
            work.enqueued_at,
            caller=work.caller,
            recording=work.recording,
            callback=work.callback,
            restored=work.call_id,
        )
        restored.append(work)
    if live or kept:
        log.info(
            "recovered_after_restart" if lost_node is None else "recovered_lost_node",
            node=lost_node,
            calls_closed=len(live),
            work_restored=len(restored),
            work_held=len(held),
        )
    return Recovered(closed=tuple(live), restored=tuple(restored), held=tuple(held))


def _end(store: CaseStore, *, case_id: int, event: CaseEvent) -> bool:
    return store.end_call(case_id, [event])


__all__ = ["NODE_LOST_CAUSE", "RESTART_CAUSE", "Recovered", "recover"]
