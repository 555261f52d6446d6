"""Callers: SIP user agents that dial, press the IVR's keys, wait, give up or talk, and hang up.

One worker process runs the callers whose index ``i % workers == worker`` on its own asyncio
loop, one SIP socket (:class:`~sim.load.sipua.SipShell`) and one RTP socket per call, all on
127.0.0.1. A caller (:meth:`CallerWorker.call`):

1. dials at ``start + at`` (INVITE with a PCMU offer; telephone-event unless its keys are
   in-band; its Call-ID names the run and the caller, :func:`sim.load.watch.call_id`); set-up
   time is INVITE to 200 OK, post-dial delay INVITE to the first 18x (or the 200);
2. sends and hears RTP from the answer on, presses its path's keys (RFC 4733 events, in-band
   tones or SIP INFO) spread over its IVR time;
3. waits in the queue. Its queue entry is the service's (``call_queued`` on the service's event
   stream, :mod:`sim.load.watch`; without the operator token, the end of its last key): it
   never hangs up before the service has queued it. It abandons at its patience after that
   entry (``Board.try_leave``), goes to voicemail at the queue's maximum wait (then speaks for
   its message time), unless an agent took it first (``Board.try_answer``, by the agents'
   process);
4. when answered it talks for its handle time from the moment it first *hears* its agent (the
   agent's signature in the RTP it receives: the service has connected the two, so it counts
   the call answered) and hangs up (the caller ends the call, as in the simulator).

Each call ends as one record (a dict), sent to the parent as soon as the call ends:
``answered``, ``abandoned``, ``voicemail``, ``rejected`` (the service hung up when the queue
refused it), ``failed`` with a cause (SIP status, no media, hung up in the IVR...) or
``unfinished`` (the run was stopped while it was in progress).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Any

from media_gateway.rtp.dtmf import build_dtmf_relay
from media_gateway.sdp.offer_answer import make_offer, negotiated_media
from media_gateway.sdp.session import SessionDescription
from media_gateway.sip import events as ev
from media_gateway.sip.dialog import CallHandle
from sim.load.profile import DIGIT_SECONDS, WorkerPlan, key_schedule
from sim.load.shared import (
    ABANDONED,
    ANSWERED,
    DONE,
    FAILED,
    FAILED_CALLS,
    FINISHED,
    IN_IVR,
    IN_QUEUE,
    IVR,
    PLACED,
    TALKING,
    VOICEMAIL,
    WAITING,
    Board,
)
from sim.load.sipua import AGENT_MAGIC, CALLER_MAGIC, MediaClock, RtpStream, SipShell, signature
from sim.load.watch import call_id

INVITE_TIMEOUT = 40.0
"""Longest wait for a final answer to an INVITE (Timer B is 32 s)."""
NO_MEDIA_SECONDS = 3.0
"""An answered call that hears no RTP at all in this long has failed (``no_media``)."""
STOP_GRACE = 3.0
"""After a stop, how long hang-ups may take."""
QUEUE_CONFIRM = 10.0
"""A caller whose last key ended this long ago and whom the service has not queued has failed
(``not queued``): the service lost a key or the IVR went elsewhere."""
QUEUE_SETTLE = 0.25
"""Without the service's event stream (no operator token): a caller gives up no sooner than
this after its last key ended, the moment the service usually needs to queue it. Patience
shorter than this is served as this (the records' ``patience_served``)."""
HEAR_AGENT = 3.0
"""An answered caller who has not heard its agent this long after the answer talks anyway
(noted: ``cause_hint``)."""
TICK = 0.01
"""How often a worker reads the board for the stop flag and the service's queue entries."""


def caller_user(i: int) -> str:
    """The From user of caller ``i`` (the case's caller number; the agent reads ``i`` back)."""
    return f"77{i:08d}"


def caller_index(user: str) -> int | None:
    if len(user) == 10 and user.startswith("77") and user.isdigit():
        return int(user[2:])
    return None


class _Stop(Exception):
    """The run was stopped: hang up and report the call unfinished."""


class _Call:
    """What the dispatcher hands one caller's coroutine."""

    __slots__ = ("events", "gauge", "stream")

    def __init__(self) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.stream: RtpStream | None = None
        self.gauge = -1
        """The progress counter the call is counted in now (IN_IVR, IN_QUEUE, TALKING)."""


class CallerWorker:
    def __init__(self, plan: WorkerPlan, board: Board, worker: int, workers: int) -> None:
        self.plan = plan
        self.board = board
        self.worker = worker
        self.rows = [i for i in range(len(plan.callers)) if i % workers == worker]
        self.records = 0
        self.calls: dict[CallHandle, _Call] = {}
        self.awaiting: dict[int, _Call] = {}
        """Callers waiting for the service's word that it queued them."""
        self.rng = random.Random(plan.seed * 1009 + worker)
        self.stopping = asyncio.Event()
        self.shell: SipShell | None = None
        self.clock: MediaClock | None = None
        self.results: Any = None

    # -- the worker ------------------------------------------------------------------------

    async def run(self, results: Any, *, max_seconds: float) -> int:
        """Place this worker's calls; every record goes to ``results`` as ``("call", worker,
        record)`` when its call ends. Returns the number of records. Ends by ``max_seconds``
        at the latest (calls in progress are then hung up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        self.results = results
        self.shell = SipShell(self.on_event, user="caller", seed=self.rng.getrandbits(32))
        await self.shell.start()
        self.clock = MediaClock()
        self.clock.start()
        results.put(("ready", self.worker))
        ticker = loop.create_task(self._tick())
        # the start instant is shared memory written by another process: polled
        while not self.board.start_at.value and loop.time() < deadline:
            if self.board.stop.value:
                break
            await asyncio.sleep(0.02)
        start = self.board.start_at.value
        tasks: list[asyncio.Task[None]] = []
        at = self.plan.callers.at
        for i in sorted(self.rows, key=lambda r: float(at[r])):
            if self.stopping.is_set() or not start:
                break
            due = start + float(at[i])
            if due > deadline:
                break
            delay = due - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                if self.stopping.is_set():
                    break
            tasks.append(loop.create_task(self.call(i)))
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            if pending:
                self._stop_all()
                _, pending = await asyncio.wait(pending, timeout=STOP_GRACE + 1.0)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
        ticker.cancel()
        # let the last BYEs' transactions finish (their 200s)
        for _ in range(10 if self.stopping.is_set() else 40):
            if not self.shell.endpoint.active_calls():
                break
            await asyncio.sleep(0.05)
        self.clock.stop()
        self.shell.close()
        return self.records

    def _gauge(self, c: _Call, to: int) -> None:
        if c.gauge >= 0:
            self.board.add(self.worker, c.gauge, -1)
        if to >= 0:
            self.board.add(self.worker, to)
        c.gauge = to

    def _stop_all(self) -> None:
        self.stopping.set()
        for c in list(self.calls.values()):
            c.events.put_nowait("stop")

    async def _tick(self) -> None:
        """Every :data:`TICK`: the parent's stop flag, and the service's queue entries for the
        callers awaiting them (shared memory, written by the agents' process)."""
        board = self.board
        while True:
            await asyncio.sleep(TICK)
            if board.stop.value and not self.stopping.is_set():
                self._stop_all()
            if self.awaiting:
                for i, c in list(self.awaiting.items()):
                    t = board.svc_queued_at[i]
                    if t:
                        del self.awaiting[i]
                        c.events.put_nowait(("queued", t))

    def on_event(self, event: Any) -> None:
        assert self.shell is not None
        ep = self.shell.endpoint
        if isinstance(event, ev.ReinviteReceived):
            c = self.calls.get(event.call)
            body = b""
            if c is not None and c.stream is not None:
                body = make_offer(local_ip="127.0.0.1", local_port=c.stream.port,
                                  codecs=("PCMU",)).to_bytes()  # fmt: skip
            ep.respond(event.transaction, 200, body=body, now=self.shell.now)
            return
        if isinstance(event, ev.InDialogRequestReceived):
            ep.respond(event.transaction, 200, now=self.shell.now)
            return
        if isinstance(event, ev.RequestReceived):
            ep.respond(event.transaction, 405, now=self.shell.now)
            return
        if isinstance(event, ev.InviteReceived):
            ep.respond(event.call, 486, now=self.shell.now)
            return
        call = getattr(event, "call", None)
        if call is not None:
            c = self.calls.get(call)
            if c is not None:
                c.events.put_nowait(event)

    # -- one caller ------------------------------------------------------------------------

    async def call(self, i: int) -> None:
        plan = self.plan
        board = self.board
        shell = self.shell
        assert shell is not None and self.clock is not None
        loop = asyncio.get_running_loop()
        t = plan.callers
        path = plan.paths[int(t.path[i])]
        rec: dict[str, Any] = {
            "i": i,
            "worker": self.worker,
            "queue": t.queue[i],
            "source": int(t.source[i]),
            "path": path.describe(),
            "dtmf": path.dtmf,
            "at": float(t.at[i]),
            "patience": _finite(float(t.patience[i])),
            "handle": float(t.handle[i]),
            "outcome": "unfinished",
            "cause": "",
            "sip_status": None,
        }
        c = _Call()
        stream = RtpStream(signature(CALLER_MAGIC, i), rng=self.rng)
        stream.magic = AGENT_MAGIC
        await stream.open(loop)
        c.stream = stream
        stream.on_heard = lambda: c.events.put_nowait("heard")
        offer = make_offer(local_ip="127.0.0.1", local_port=stream.port, codecs=("PCMU",),
                           telephone_event=path.dtmf != "inband")  # fmt: skip
        host, port = plan.sip_target
        start = board.start_at.value
        rec["invite_at"] = loop.time() - start
        board.add(self.worker, PLACED)
        handle = shell.endpoint.invite(
            f"sip:{path.dial}@{host}:{port}",
            plan.sip_target,
            from_uri=f"sip:{caller_user(i)}@127.0.0.1",
            sdp=offer.to_bytes(),
            now=shell.now,
            call_id=call_id(plan.run_tag, i),
        )
        rec["call_id"] = handle.call_id
        self.calls[handle] = c
        shell.pump()
        try:
            await self._play(i, rec, c, handle, offer, start)
        except _Stop:
            rec["stopped"] = True
        finally:
            self._gauge(c, -1)
            self.awaiting.pop(i, None)
            if not handle.ended:
                shell.endpoint.bye(handle, shell.now)
                shell.pump()
                # after a stop, briefly: an INVITE nobody answered cannot be cancelled before
                # a provisional (RFC 3261 §9.1) and is left to the endpoint's timers
                grace = STOP_GRACE if not self.stopping.is_set() else 1.0
                with contextlib.suppress(_Stop, asyncio.CancelledError):
                    await self._until_ended(c, handle, loop.time() + grace)
            rec["ended_at"] = loop.time() - start
            stream.close()
            rec["rtp"] = stream.reception()
            rec["rtp"]["sent"] = stream.sent
            rec["heard_at"] = None if stream.heard_at is None else stream.heard_at - start
            rec["heard_agent"] = stream.heard_index
            self._board_facts(i, rec, start)
            self.calls.pop(handle, None)
            if rec["outcome"] == "failed":
                board.set_state(i, FAILED)
                board.add(self.worker, FAILED_CALLS)
            else:
                board.add(self.worker, FINISHED)
            self.records += 1
            if self.results is not None:
                self.results.put(("call", self.worker, rec))

    def _board_facts(self, i: int, rec: dict[str, Any], start: float) -> None:
        """What the board knows of the call: offers, the answer, the service's queue entry;
        the waits from them."""
        b = self.board

        def rel(v: float) -> float | None:
            return v - start if v else None

        rec["first_offer_at"] = rel(b.first_offer_at[i])
        rec["answered_at"] = rel(b.answered_at[i]) if rec["outcome"] == "answered" else None
        rec["answered_by"] = (
            self.plan.agents[b.answered_by[i] - 1].id
            if b.answered_by[i] > 0 and rec["outcome"] == "answered"
            else None
        )
        rec["offers"] = int(b.offers[i])
        if b.svc_queued_at[i]:  # the service's word, when it came after the record's guess
            rec["queued_at"] = b.svc_queued_at[i] - start
            rec["queued_by"] = "service"
        q = rec.get("queued_at")
        if q is not None and rec.get("ivr_answered_at") is not None:
            rec["ivr_seconds"] = q - rec["ivr_answered_at"]
        if q is not None:
            end = rec["answered_at"] if rec["outcome"] == "answered" else rec.get("left_at")
            if end is not None:
                rec["wait"] = max(0.0, end - q)

    async def _next(self, c: _Call, until: float | None) -> Any:
        """The next event for this call, or None at ``until``; raises _Stop on a stop."""
        loop = asyncio.get_running_loop()
        if c.events.empty():
            if until is None:
                item = await c.events.get()
            else:
                timeout = until - loop.time()
                if timeout <= 0:
                    return None
                try:
                    item = await asyncio.wait_for(c.events.get(), timeout)
                except TimeoutError:
                    return None
        else:
            item = c.events.get_nowait()
        if item == "stop":
            raise _Stop
        return item

    async def _until_ended(self, c: _Call, handle: CallHandle, until: float) -> None:
        while not handle.ended:
            item = await self._next(c, until)
            if item is None:
                return

    async def _play(
        self,
        i: int,
        rec: dict[str, Any],
        c: _Call,
        handle: CallHandle,
        offer: SessionDescription,
        start: float,
    ) -> None:
        """The caller's whole call (ends at its end, or raises _Stop)."""
        plan, board, shell = self.plan, self.board, self.shell
        assert shell is not None and self.clock is not None and c.stream is not None
        loop = asyncio.get_running_loop()
        t = plan.callers
        path = plan.paths[int(t.path[i])]
        sent_at = loop.time()
        answer = b""
        # 1. set-up
        while True:
            item = await self._next(c, sent_at + INVITE_TIMEOUT)
            if item is None:
                rec.update(outcome="failed", cause="no final answer to INVITE")
                return
            if isinstance(item, ev.CallProgress):
                rec.setdefault("pdd", loop.time() - sent_at)
            elif isinstance(item, ev.CallAnswered):
                answer = item.sdp
                break
            elif isinstance(item, ev.CallFailed):
                rec.update(outcome="failed", sip_status=item.status,
                           cause=f"INVITE answered {item.status} {item.reason}")  # fmt: skip
                return
            elif isinstance(item, ev.CallEnded):
                rec.update(outcome="failed", cause=f"ended before the answer ({item.reason})")
                return
        answered = loop.time()
        rec["setup"] = answered - sent_at
        rec.setdefault("pdd", rec["setup"])
        rec["sip_status"] = 200
        rec["ivr_answered_at"] = answered - start
        try:
            media = negotiated_media(offer, SessionDescription.parse(answer), local_is_offerer=True)
            c.stream.start((media.remote_ip, media.remote_port), media.payload_type,
                           media.dtmf_pt, self.clock)  # fmt: skip
        except ValueError as exc:
            rec.update(outcome="failed", cause=f"unusable answer SDP: {exc}")
            return
        if path.dtmf == "rfc4733" and media.dtmf_pt is None:
            rec.update(outcome="failed", cause="the service did not accept telephone-event")
            return
        # 2. the IVR
        board.set_state(i, IVR)
        self._gauge(c, IN_IVR)
        schedule = key_schedule(path.keys, float(t.ivr[i]), gap=plan.key_gap)
        for offset, digit in schedule:
            until = answered + offset
            while True:
                item = await self._next(c, until)
                if item is None:
                    break
                if isinstance(item, ev.CallEnded):
                    rec.update(outcome="failed", cause=f"hung up by the service in the IVR "
                               f"({item.reason})")  # fmt: skip
                    return
            if path.dtmf == "rfc4733":
                c.stream.send_event(digit)
            elif path.dtmf == "inband":
                c.stream.send_tone(digit)
            else:
                ctype, body = build_dtmf_relay(digit, int(DIGIT_SECONDS * 1000))
                shell.endpoint.in_dialog_request(
                    handle, "INFO", headers=[("Content-Type", ctype)], body=body, now=shell.now
                )
                shell.pump()
        if schedule:
            ends = answered + schedule[-1][0] + (0.0 if path.dtmf == "info" else DIGIT_SECONDS)
            while (item := await self._next(c, ends)) is not None:
                if isinstance(item, ev.CallEnded):
                    rec.update(outcome="failed", cause="hung up by the service in the IVR")
                    return
        if c.stream.first_rx is None:
            rec["cause_hint"] = "no RTP heard in the IVR"
        keys_done = loop.time()
        rec["keys_done_at"] = keys_done - start
        # 3. the queue. From here an agent may take the call (an offer proves the service
        # queued it); the caller itself leaves only once the service has said so.
        board.set_state(i, WAITING)
        self._gauge(c, IN_QUEUE)
        watched = bool(board.watching.value)
        patience = float(t.patience[i])
        leave = plan.leave[t.queue[i]]
        queued: float | None = None
        patience_at = leave_at = math.inf
        confirm_by = keys_done + QUEUE_CONFIRM

        def joined(at: float) -> None:
            nonlocal queued, patience_at, leave_at
            queued = at
            rec["queued_at"] = at - start
            rec["queued_by"] = "service" if watched else "keys"
            served = patience if watched else max(patience, QUEUE_SETTLE)
            patience_at = at + served
            leave_at = at + leave.after

        if watched:
            self.awaiting[i] = c
        else:
            joined(keys_done)
        no_media_at = answered + NO_MEDIA_SECONDS
        while True:
            if board.state[i] == ANSWERED:
                if await self._talk(i, rec, c, handle):
                    return
                continue  # the answer did not take: waiting again
            now = loop.time()
            until = min(patience_at, leave_at, now + 0.25)
            if queued is None:
                until = min(until, confirm_by)
            if c.stream.first_rx is None:
                until = min(until, no_media_at)
            item = await self._next(c, until)
            now = loop.time()
            if isinstance(item, tuple) and item[0] == "queued":
                joined(float(item[1]))
                rec["patience_served"] = _finite(max(patience_at, now) - float(item[1]))
                continue
            if item is None:
                if c.stream.first_rx is None and now >= no_media_at:
                    if board.try_leave(i, ABANDONED) == WAITING:
                        rec.update(outcome="failed", cause="no_media: no RTP from the service")
                        return
                    continue
                if queued is None and now >= confirm_by:
                    if board.try_leave(i, ABANDONED) == WAITING:
                        rec.update(outcome="failed", cause=f"not queued by the service "
                                   f"{QUEUE_CONFIRM:g} s after the last key")  # fmt: skip
                        return
                    continue
                if now >= patience_at and patience_at <= leave_at:
                    if board.try_leave(i, ABANDONED) == WAITING:
                        rec.update(outcome="abandoned", left_at=now - start)
                        shell.endpoint.bye(handle, shell.now)
                        shell.pump()
                        return
                    continue
                if now >= leave_at:
                    if leave.to == "voicemail":
                        if board.ringing[i] > 0:  # the engine waits for the offer to end
                            leave_at = now + 0.02
                            continue
                        if board.try_leave(i, VOICEMAIL) == WAITING:
                            rec.update(outcome="voicemail", left_at=now - start)
                            await self._leave_message(i, c, handle, float(t.message[i]))
                            return
                        continue
                    leave_at = math.inf  # rejected: the service hangs up
                continue
            if item == "heard":
                continue
            if isinstance(item, ev.CallEnded) and board.try_leave(i, ABANDONED) == WAITING:
                rejected = (
                    queued is not None
                    and leave.to == "rejected"
                    and now >= queued + leave.after - 0.5
                )
                where = "while waiting" if queued is not None else "in the IVR"
                rec.update(outcome="rejected" if rejected else "failed", left_at=now - start,
                           cause="" if rejected else f"hung up by the service {where} "
                           f"({item.reason})")  # fmt: skip
                return
            # (when the agent answered at the same moment, the talk sees the end)

    async def _talk(self, i: int, rec: dict[str, Any], c: _Call, handle: CallHandle) -> bool:
        """An agent took the call: talk for the handle time from the moment the agent is heard,
        then hang up. False when the answer did not take (the agent's phone was told to stop:
        ``Board.undo_answer``) and the caller waits again."""
        board, shell = self.board, self.shell
        assert shell is not None and c.stream is not None
        loop = asyncio.get_running_loop()
        hear_by = loop.time() + HEAR_AGENT
        while c.stream.heard_at is None and not handle.ended:
            if board.state[i] == WAITING:
                return False
            now = loop.time()
            if now >= hear_by:
                rec["cause_hint"] = f"no agent audio {HEAR_AGENT:g} s after the answer"
                break
            item = await self._next(c, min(hear_by, now + 0.05))
            if isinstance(item, ev.CallEnded):
                rec["cause_hint"] = f"the service ended the call before the agent was heard " \
                                    f"({item.reason})"  # fmt: skip
                break
        rec["outcome"] = "answered"
        self._gauge(c, TALKING)
        talk_from = c.stream.heard_at if c.stream.heard_at is not None else loop.time()
        hangup_at = talk_from + float(self.plan.callers.handle[i])
        while not handle.ended:
            item = await self._next(c, hangup_at)
            if item is None:
                break
            if isinstance(item, ev.CallEnded):
                rec["cause_hint"] = f"the service ended the call during the talk ({item.reason})"
                break
        rec["talk"] = loop.time() - talk_from
        board.set_state(i, DONE)
        if not handle.ended:
            shell.endpoint.bye(handle, shell.now)
            shell.pump()
        return True

    async def _leave_message(self, i: int, c: _Call, handle: CallHandle, seconds: float) -> None:
        """Speak for ``seconds`` after the service's voicemail began (an offer still ringing
        when the maximum wait came delays it), then hang up."""
        loop = asyncio.get_running_loop()
        board = self.board
        began = max(loop.time(), board.ring_end_at[i])
        until = began + seconds
        while not handle.ended:
            item = await self._next(c, until)
            if item is None:
                if board.ringing[i] > 0 or board.ring_end_at[i] > began:
                    began = max(loop.time(), board.ring_end_at[i])
                    until = began + seconds
                    continue
                break
        board.set_state(i, DONE)
        if not handle.ended:
            assert self.shell is not None
            self.shell.endpoint.bye(handle, self.shell.now)
            self.shell.pump()


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def worker_main(
    plan: WorkerPlan, board: Board, worker: int, workers: int, results: Any, max_seconds: float
) -> None:
    """A caller worker process: run its callers (each record put as ``("call", worker, rec)``
    when its call ends), then put ``("callers", worker, count)``."""
    count = 0
    try:
        worker_ = CallerWorker(plan, board, worker, workers)
        count = _run_loop(worker_.run(results, max_seconds=max_seconds))
    except KeyboardInterrupt:
        pass
    finally:
        results.put(("callers", worker, count))


def _run_loop(coro: Any) -> Any:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run through the board
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


__all__ = ["CallerWorker", "caller_index", "caller_user", "worker_main"]
