"""Agents: SIP user agents that register, ring, answer after a while (or not), talk, wrap up.

One process plays every agent of the plan on one SIP socket (each agent registers its own
Contact, ``sip:ID@127.0.0.1:PORT``, with digest authentication and the password of the
service's configuration), so the service rings them where real softphones would be. An offer
(the service's INVITE; its From user names the caller, :func:`~sim.load.callers.caller_index`):

* rings (180) and is marked ringing on the board (routing delay: the caller's queue entry to
  the first ring);
* is left to ring out with the agent's ``ring_no_answer`` probability, or when the sampled ring
  delay reaches the queue's ring timeout less a guard (so the agent's 200 and the service's
  CANCEL never cross);
* otherwise is answered after the sampled ring delay if the caller is still waiting
  (``Board.try_answer``: the first agent to answer takes the caller; a caller who gave up at
  that moment keeps the agent from answering) with 200 and a PCMU answer, then RTP carrying
  the agent's signature; the agent checks it hears the caller it was offered;
* ends when the caller hangs up (the service's BYE); the engine's wrap-up follows. A call still
  up ``handle + 10 s`` after the answer is hung up by the agent and noted.

Queued work (a caller's message, a callback request: the From's display name says ``message``
or ``callback``, or the caller it names has ended its call) is answered after :data:`WORK_RING`, listened to for :data:`WORK_SECONDS` and
hung up; its record says ``work``. (Refused, the engine would offer it to every agent in turn,
pausing each for ring-no-answer.)

After ``max_misses`` offers in a row left to ring out the engine pauses the agent; the agent
becomes ready again ``rona_ready`` seconds later: through the staff API when the service has
``POST /api/agents/{id}/ready`` (the agent signs in first, ``POST /api/tokens`` with its own
password, and uses its own token; the operator token when only hashes of its password are
known), else by registering again (log out, log in).

The same process follows the service's event stream (:class:`~sim.load.watch.QueueWatch`) when
the operator token is given, so callers know when the service queued them.

When the run stops every phone still ringing answers 480 and every call still up is hung up
(BYE), then the agents unregister: the service is left holding nothing of the run. Every wait
is bounded (a REGISTER's answer :data:`REQUEST_TIMEOUT`, the whole goodbye :data:`STOP_GRACE`),
so an unresponsive service cannot hold the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from media_gateway.sdp.offer_answer import answer_offer, make_offer
from media_gateway.sdp.session import SessionDescription
from media_gateway.sip import events as ev
from media_gateway.sip.auth import pick_challenge
from media_gateway.sip.dialog import CallHandle
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import parse_name_addr
from media_gateway.sip.uri import parse_uri
from sim.load.callers import _run_loop, caller_index
from sim.load.profile import WorkerPlan, dist_from
from sim.load.shared import DONE, VOICEMAIL, WAITING, Board
from sim.load.sipua import (
    AGENT_MAGIC,
    CALLER_MAGIC,
    MediaClock,
    RtpStream,
    SipShell,
    authorization,
    signature,
)
from sim.load.watch import QueueWatch

RING_GUARD = 0.3
"""Seconds before the ring timeout an agent no longer answers (its 200 would cross the
service's CANCEL)."""
REGISTER_EXPIRES = 3600
HANGUP_GRACE = 10.0
REQUEST_TIMEOUT = 4.0
"""Longest wait for the answer to a REGISTER (on loopback it takes milliseconds)."""
STOP_GRACE = 4.0
"""After a stop: how long the offers in progress may take to end, then the unregistering."""
NOT_CANCELLED = 10.0
"""An offer the agent will not answer rings this long past the ring timeout for the service's
CANCEL, then the agent refuses it (480): the service never cancelled it."""
WORK_RING = 0.3
"""Ring delay of queued work (a message or a callback request offered to an agent)."""
WORK_SECONDS = 1.0
"""How long an agent listens to queued work before hanging up."""


class _Stop(Exception):
    """The run stopped: end the offer now."""


def _user(header: str) -> str:
    try:
        return parse_uri(parse_name_addr(header).uri).user or ""
    except SipParseError:
        return ""


def _display(header: str) -> str:
    try:
        return parse_name_addr(header).display or ""
    except SipParseError:
        return ""


def is_work(header: str) -> bool:
    """Whether an offer's From (its display name: ``sales: message 7700000012``,
    ``support: callback ...``) is queued work, a message or a callback, not a waiting caller."""
    words = _display(header).partition(":")[2].split()
    return bool(words) and words[0] in ("message", "callback")


def work_queue(header: str) -> str:
    """The queue an offer's From display name names (``sales: message ...`` -> ``sales``)."""
    return _display(header).partition(":")[0].strip()


class AgentWorker:
    def __init__(self, plan: WorkerPlan, board: Board, *, api: Any = None) -> None:
        self.plan = plan
        self.board = board
        self.api = api
        """An object with ``async ready(agent_id) -> bool`` (the staff API), or None."""
        self.index = {a.id: j for j, a in enumerate(plan.agents)}
        self.answer = [dist_from(a.answer) for a in plan.agents]
        self.rngs = [random.Random(f"{plan.seed}:{a.id}") for a in plan.agents]
        self.shell: SipShell | None = None
        self.clock: MediaClock | None = None
        self.pending: dict[Any, asyncio.Future[Any]] = {}
        self.calls: dict[CallHandle, asyncio.Queue[Any]] = {}
        self.reg_cseq = [0] * len(plan.agents)
        self.reg_call_id = [f"reg-{a.id}-{random.getrandbits(32):08x}" for a in plan.agents]
        self.misses = [0] * len(plan.agents)
        self.offers: list[dict[str, Any]] = []
        self.registrations: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.ports: dict[CallHandle, int] = {}
        self.stopping = False
        self.watch: QueueWatch | None = None

    # -- the worker ------------------------------------------------------------------------

    async def run(
        self, results: Any, *, max_seconds: float, token: str | None = None
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        self.shell = SipShell(self.on_event, user="agent", seed=random.getrandbits(32))
        await self.shell.start()
        self.clock = MediaClock()
        self.clock.start()
        stop = asyncio.Event()
        watch_task: asyncio.Task[None] | None = None
        if token and self.plan.http:
            self.watch = QueueWatch(
                self.plan.http, token, self.board, self.plan.run_tag, len(self.plan.callers)
            )
            watch_task = loop.create_task(self.watch.run(stop))
        self.registrations = {}
        for j, a in enumerate(self.plan.agents):
            if self.board.stop.value:
                break
            # One at a time, a few ms apart: the service's digest nonce is a function of its
            # clock (1 ms resolution), so two challenges in one millisecond share a nonce and
            # the second phone's answer is refused as a replayed nonce count (docs/load.md).
            self.registrations[a.id] = await self.register(j)
            await asyncio.sleep(0.003)
        watching: dict[str, Any] | None = None
        if self.watch is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.watch.connected.wait(), REQUEST_TIMEOUT)
            watching = {"following": self.watch.connected.is_set(), "error": self.watch.error}
        results.put(("registered", self.registrations, watching))
        # the stop flag is shared memory written by another process: polled
        while not self.board.stop.value and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        # finish: offers ringing are refused, calls still up hung up, phones unregistered
        self.stopping = True
        for inbox in list(self.calls.values()):
            inbox.put_nowait("stop")
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=STOP_GRACE)
        for t in list(self.tasks):
            t.cancel()
        for call in self.shell.endpoint.active_calls():  # offers no task holds (none expected)
            self.shell.endpoint.bye(call, self.shell.now)
        self.shell.pump()
        stop.set()
        until = loop.time() + STOP_GRACE
        for j, a in enumerate(self.plan.agents):
            if self.registrations.get(a.id) != 200 or loop.time() > until:
                continue
            await self.register(j, expires=0, within=max(0.1, min(1.0, until - loop.time())))
            await asyncio.sleep(0.003)
        if watch_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(watch_task, 1.0)
        # the last responses and BYEs' transactions (their 200s), briefly
        for _ in range(20):
            if not self.shell.endpoint.active_calls():
                break
            await asyncio.sleep(0.05)
        self.clock.stop()
        self.shell.close()
        return self.offers

    def on_event(self, event: Any) -> None:
        assert self.shell is not None
        ep = self.shell.endpoint
        now = self.shell.now
        if isinstance(event, ev.ResponseReceived | ev.RequestTimedOut):
            fut = self.pending.pop(event.transaction, None)
            if fut is not None and not fut.done():
                fut.set_result(event)
            return
        if isinstance(event, ev.InviteReceived):
            agent = _user(f"<{event.request.uri}>")
            i = caller_index(_user(event.request.headers.get("From") or ""))
            j = self.index.get(agent)
            work = is_work(event.request.headers.get("From") or "") or (
                # a service whose offers carry no display name: the caller's call is over
                i is not None
                and i < len(self.plan.callers)
                and self.board.state[i] in (VOICEMAIL, DONE)
            )
            if j is None or (i is None and not work) or self.stopping:
                ep.respond(event.call, 404 if j is None else 480, now=now)
                return
            if i is not None and i >= len(self.plan.callers) and not work:
                ep.respond(event.call, 480, now=now)
                return
            q: asyncio.Queue[Any] = asyncio.Queue()
            self.calls[event.call] = q
            coro = self.work(j, event, q) if work else self.offer(j, i or 0, event, q)
            task = asyncio.get_running_loop().create_task(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        if isinstance(event, ev.ReinviteReceived):
            port = self.ports.get(event.call, 9)
            body = make_offer(local_ip="127.0.0.1", local_port=port, codecs=("PCMU",))
            ep.respond(event.transaction, 200, body=body.to_bytes(), now=now)
            return
        if isinstance(event, ev.InDialogRequestReceived):
            ep.respond(event.transaction, 200, now=now)
            return
        if isinstance(event, ev.RequestReceived):
            ep.respond(event.transaction, 405, now=now)
            return
        call = getattr(event, "call", None)
        inbox = self.calls.get(call) if call is not None else None
        if inbox is not None:
            inbox.put_nowait(event)

    # -- REGISTER --------------------------------------------------------------------------

    async def _request(
        self, j: int, headers: list[tuple[str, str]], within: float = REQUEST_TIMEOUT
    ) -> Any:
        assert self.shell is not None
        host, _ = self.plan.sip_target
        self.reg_cseq[j] += 1
        tx = self.shell.endpoint.request(
            "REGISTER",
            f"sip:{host}",
            self.plan.sip_target,
            headers=headers,
            now=self.shell.now,
            call_id=self.reg_call_id[j],
            cseq=self.reg_cseq[j],
        )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[tx] = fut
        self.shell.pump()
        try:
            return await asyncio.wait_for(fut, within)
        except TimeoutError:
            self.pending.pop(tx, None)
            return None

    async def register(
        self, j: int, *, expires: int = REGISTER_EXPIRES, within: float = REQUEST_TIMEOUT
    ) -> int:
        """REGISTER agent ``j`` (answering the digest challenge); the final status (408 when
        no answer came in ``within`` seconds)."""
        assert self.shell is not None
        a = self.plan.agents[j]
        host, _ = self.plan.sip_target
        aor = f"sip:{a.id}@{host}"
        base = [
            ("From", f"<{aor}>;tag=r{self.reg_cseq[j] + 1}"),
            ("To", f"<{aor}>"),
            ("Contact", f"<sip:{a.id}@127.0.0.1:{self.shell.port}>"),
            ("Expires", str(expires)),
        ]
        result = await self._request(j, base, within)
        for _ in range(2):
            if not isinstance(result, ev.ResponseReceived):
                return 408
            resp = result.response
            if resp.status not in (401, 407):
                return int(resp.status)
            name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
            try:
                challenge = pick_challenge(resp.headers.get_list(name))
                auth = authorization(
                    challenge,
                    method="REGISTER",
                    uri=f"sip:{host}",
                    username=a.id,
                    password=a.password,
                    ha1=a.ha1,
                    cnonce=f"{random.getrandbits(48):012x}",
                )
            except SipParseError:
                return int(resp.status)
            header = "Authorization" if resp.status == 401 else "Proxy-Authorization"
            result = await self._request(j, [*base, (header, auth)], within)
        return int(result.response.status) if isinstance(result, ev.ResponseReceived) else 408

    async def _ready_again(self, j: int) -> None:
        """After the engine's ring-no-answer pause: ready through the API, else log out and
        in again (a new registration)."""
        a = self.plan.agents[j]
        await asyncio.sleep(a.rona_ready)
        if self.stopping:
            return
        if self.api is not None and await self.api.ready(a.id, a.password):
            return
        await self.register(j, expires=0)
        await self.register(j)

    # -- one offer ---------------------------------------------------------------------------

    async def _next(self, q: asyncio.Queue[Any], until: float) -> Any:
        """The next event of the offer, or None at ``until``; raises _Stop on a stop."""
        timeout = until - asyncio.get_running_loop().time()
        if timeout <= 0 and q.empty():
            return None
        try:
            item = await asyncio.wait_for(q.get(), max(timeout, 0.0))
        except TimeoutError:
            return None
        if item == "stop":
            raise _Stop
        return item

    async def offer(self, j: int, i: int, invite: ev.InviteReceived, q: asyncio.Queue[Any]) -> None:
        shell, board, plan = self.shell, self.board, self.plan
        assert shell is not None and self.clock is not None
        loop = asyncio.get_running_loop()
        call = invite.call
        ep = shell.endpoint
        a = plan.agents[j]
        rng = self.rngs[j]
        start = board.start_at.value
        received = loop.time()
        rec: dict[str, Any] = {"agent": a.id, "i": i, "rang_at": received - start, "result": ""}
        ep.respond(call, 180, now=shell.now)
        shell.pump()
        board.ring(i, received, +1)
        ringing = True
        stream: RtpStream | None = None
        try:
            queue = plan.callers.queue[i]
            ring_timeout = plan.ring_timeout[queue]
            delay = float(self.answer[j].sample(_np_rng(rng), 1)[0])
            miss = rng.random() < a.ring_no_answer
            if not miss and delay >= ring_timeout - RING_GUARD:
                miss = True
                rec["late"] = True
            rec["decision"] = "miss" if miss else "answer"
            answer_at = received + delay if not miss else received + ring_timeout + NOT_CANCELLED
            while True:
                item = await self._next(q, answer_at)
                if item is None:
                    break
                if isinstance(item, ev.CallEnded | ev.CancelReceived):
                    rec["result"] = (
                        "cancelled"
                        if isinstance(item, ev.CancelReceived)
                        else (f"ended ({item.reason})")
                    )
                    break
            if rec["result"]:  # the service withdrew the offer
                if miss and board.state[i] == WAITING and board.answered_by[i] == 0:
                    self._missed(j)
                return
            if miss:  # the service should have cancelled long ago
                rec["result"] = "never_cancelled"
                ep.respond(call, 480, now=shell.now)
                shell.pump()
                return
            now = loop.time()
            if not board.try_answer(i, j, now):
                rec["result"] = "caller_left"
                # let it ring: the service cancels the offer (caller gone, or answered elsewhere)
                while (item := await self._next(q, now + ring_timeout + NOT_CANCELLED)) is not None:
                    if isinstance(item, ev.CallEnded | ev.CancelReceived):
                        return
                ep.respond(call, 480, now=shell.now)
                shell.pump()
                return
            board.ring(i, now, -1)
            ringing = False
            self.misses[j] = 0
            stream = RtpStream(signature(AGENT_MAGIC, j), rng=rng)
            stream.magic = CALLER_MAGIC
            await stream.open(loop)
            self.ports[call] = stream.port
            offer_sdp = invite.request.body
            if offer_sdp:
                offer = SessionDescription.parse(offer_sdp)
                sdp = answer_offer(offer, local_ip="127.0.0.1", local_port=stream.port,
                                   supported=("PCMU",))  # fmt: skip
                remote = offer
            else:
                sdp = make_offer(local_ip="127.0.0.1", local_port=stream.port, codecs=("PCMU",))
                remote = None
            ep.respond(call, 200, body=sdp.to_bytes(), now=shell.now)
            shell.pump()
            rec["answered_at"] = now - start
            # the ACK confirms the call (no ACK, or a BYE first: the answer did not take)
            acked = False
            while not acked:
                item = await self._next(q, now + 35.0)
                if isinstance(item, ev.AckReceived):
                    acked = True
                    if remote is None and item.sdp:
                        remote = SessionDescription.parse(item.sdp)
                elif item is None or isinstance(item, ev.CallEnded | ev.AckTimedOut):
                    board.undo_answer(i, j)
                    rec["result"] = "answer_lost"
                    return
            if remote is not None:
                media = remote.media[0] if remote.media else None
                conn = remote.connection_for(media) if media is not None else None
                if media is not None and conn is not None:
                    stream.start((conn.address, media.port), 0, None, self.clock)
            hangup_at = board.answered_at[i] + float(plan.callers.handle[i]) + HANGUP_GRACE
            while not call.ended:
                item = await self._next(q, hangup_at)
                if item is None:
                    rec["forced_hangup"] = True
                    ep.bye(call, shell.now)
                    shell.pump()
                    break
                if isinstance(item, ev.CallEnded):
                    break
            rec["result"] = "talked"
            rec["ended_at"] = loop.time() - start
            rec["heard_caller"] = stream.heard_index
            rec["heard_right_caller"] = (
                None if stream.heard_index is None else stream.heard_index == i
            )
            rec["rtp"] = stream.reception()
        except _Stop:
            rec["result"] = rec["result"] or "stopped"
            rec["stopped"] = True
        finally:
            if not call.ended:  # 480 while ringing, BYE once up
                ep.bye(call, shell.now)
                shell.pump()
            if ringing:
                board.ring(i, loop.time(), -1)
            if stream is not None:
                stream.close()
            self.calls.pop(call, None)
            self.ports.pop(call, None)
            self.offers.append(rec)

    async def work(self, j: int, invite: ev.InviteReceived, q: asyncio.Queue[Any]) -> None:
        """Queued work (a message, a callback request) offered to agent ``j``: taken as a real
        agent would, after a ring, listened to for :data:`WORK_SECONDS`, then hung up
        (refusing it would only have the engine offer it to the next agent, and pause each
        for ring-no-answer in turn). Its record has ``work: True``."""
        shell = self.shell
        assert shell is not None
        loop = asyncio.get_running_loop()
        call = invite.call
        ep = shell.endpoint
        start = self.board.start_at.value
        rec: dict[str, Any] = {"agent": self.plan.agents[j].id, "i": None, "work": True,
                               "queue": work_queue(invite.request.headers.get("From") or ""),
                               "rang_at": loop.time() - start, "result": ""}  # fmt: skip
        ep.respond(call, 180, now=shell.now)
        shell.pump()
        stream: RtpStream | None = None
        try:
            item = await self._next(q, loop.time() + WORK_RING)
            if item is not None:  # withdrawn (CANCEL, or ended)
                rec["result"] = "cancelled"
                return
            stream = RtpStream(signature(AGENT_MAGIC, j), rng=self.rngs[j])
            await stream.open(loop)
            self.ports[call] = stream.port
            offer_sdp = invite.request.body
            if offer_sdp:
                sdp = answer_offer(SessionDescription.parse(offer_sdp), local_ip="127.0.0.1",
                                   local_port=stream.port, supported=("PCMU",))  # fmt: skip
            else:
                sdp = make_offer(local_ip="127.0.0.1", local_port=stream.port, codecs=("PCMU",))
            ep.respond(call, 200, body=sdp.to_bytes(), now=shell.now)
            shell.pump()
            rec["answered_at"] = loop.time() - start
            until = loop.time() + WORK_SECONDS
            while not call.ended and (item := await self._next(q, until)) is not None:
                if isinstance(item, ev.CallEnded):
                    break
            rec["result"] = "delivered"
        except _Stop:
            rec["result"] = rec["result"] or "stopped"
            rec["stopped"] = True
        finally:
            if not call.ended:
                ep.bye(call, shell.now)
                shell.pump()
            if stream is not None:
                stream.close()
            self.calls.pop(call, None)
            self.ports.pop(call, None)
            self.offers.append(rec)

    def _missed(self, j: int) -> None:
        a = self.plan.agents[j]
        self.misses[j] += 1
        if a.max_misses and self.misses[j] >= a.max_misses:
            self.misses[j] = 0
            task = asyncio.get_running_loop().create_task(self._ready_again(j))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


_NP: dict[int, Any] = {}


def _np_rng(rng: random.Random) -> Any:
    """A numpy generator seeded from (and cached per) a ``random.Random``."""
    import numpy as np

    g = _NP.get(id(rng))
    if g is None:
        g = _NP[id(rng)] = np.random.default_rng(rng.getrandbits(64))
    return g


class _Api:
    """The staff API's ``ready``: the agent signs in (``POST /api/tokens`` with its password)
    and uses its own token; the operator token stands in when the password is not known."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token
        self.tokens: dict[str, str] = {}
        self.signed_in = 0

    async def _token(self, s: Any, agent_id: str, password: str) -> str:
        import aiohttp

        got = self.tokens.get(agent_id)
        if got is None and password:
            async with s.post(
                f"{self.base}/api/tokens",
                json={"user": agent_id, "password": password, "label": "hotline load"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r:
                if r.status == 201:
                    got = str((await r.json())["token"])
                    self.signed_in += 1
        got = got or self.token
        self.tokens[agent_id] = got
        return got

    async def ready(self, agent_id: str, password: str = "") -> bool:
        import aiohttp

        with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            async with aiohttp.ClientSession() as s:
                token = await self._token(s, agent_id, password)
                async with s.post(
                    f"{self.base}/api/agents/{agent_id}/ready",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as r:
                    return bool(r.status < 300)
        return False


def worker_main(
    plan: WorkerPlan,
    board: Board,
    results: Any,
    max_seconds: float,
    token: str | None,
    ready_api: bool,
) -> None:
    """The agents' process: put ``("registered", {id: status}, watching)`` then ``("agents",
    0, offers, info)``. ``ready_api``: the service has ``POST /api/agents/{id}/ready``."""
    offers: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    try:
        api = _Api(plan.http, token) if token and ready_api and plan.http else None
        worker = AgentWorker(plan, board, api=api)
        offers = _run_loop(worker.run(results, max_seconds=max_seconds, token=token))
        if worker.watch is not None:
            info.update(worker.watch.summary())
        if api is not None:
            info["agents_signed_in"] = api.signed_in
    except KeyboardInterrupt:
        pass
    finally:
        results.put(("agents", 0, offers, info))


__all__ = ["AgentWorker", "worker_main"]
