"""A unit harness for the contact center: no SIP, no sockets, no media process.

* :class:`FakeSession` stands in for ``CallSession``: prompts take no time, keys are pressed
  by the test (:meth:`FakeSession.press`), the far end hangs up when the test says so
  (:meth:`FakeSession.remote_hangup`), a recording writes a small file. It keeps the parts
  of the session contract the center relies on: pending ``collect``/``play`` raise
  ``SessionEnded`` at a hangup, a bridged peer is unbridged when its partner ends, type-ahead
  stays buffered, an interruptible prompt with a key buffered is skipped.
* :class:`ScriptedTelephony` is the Telephony port: which agents have a phone, and what each
  one does when rung (``answer``, ``ring`` forever, ``busy``, ``fail``).
* :class:`Clock` is the injected wall clock; :meth:`CenterHarness.advance` moves it and
  fires the engine's timers (what the AcdService's loop timer does in production).
* The case store is a real SQLite file in the test's tmp_path.

Everything the caller and the agents hear goes into one ``timeline`` so a test can check
order across legs ("the agent was rung before the caller heard please_hold").
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from acd.cases import CaseEvent
from acd.events import Tick
from hotline.center import ContactCenter
from hotline.center.telemetry import QueueMetrics
from hotline.config import parse_config
from media_gateway.session import CallSession, CollectResult, PlayDone, RecordDone, SessionEnded

_ids = itertools.count(1)

Timeline = list[tuple[str, str, str]]
"""``(who, what, detail)``: who is a session id or ``telephony``."""


class Clock:
    """The injected wall clock (epoch seconds), moved only by the test."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSession:
    """A call leg whose media is instantaneous and whose far end the test drives."""

    def __init__(
        self,
        timeline: Timeline,
        *,
        caller: str = "+8613800138000",
        dialled: str = "1000",
        direction: str = "inbound",
        lang: str | None = None,
        agent_keys: Sequence[str] = (),
        message_seconds: float = 4.0,
    ) -> None:
        self.id = f"call-{next(_ids)}"
        self.channel = "sip"
        self.caller = caller
        self.dialled = dialled
        self.direction = direction
        self.lang = lang
        self.vars: dict[str, Any] = {}
        self.state = "ringing"
        self.ended = asyncio.Event()
        self.ended_by: str | None = None
        self.cause: str | None = None
        self.bridged_to: FakeSession | None = None
        self.transferring: asyncio.Future[bool] | None = None
        self.transfers: list[str] = []
        self.transfer_ok = True
        self.message_seconds = message_seconds
        """What a recording on this leg yields (0: the caller said nothing)."""
        self._timeline = timeline
        self._digits: deque[str] = deque()
        self._digit_arrived = asyncio.Event()
        self._auto_keys: deque[str] = deque(agent_keys)
        """Answers to ``collect`` when nothing is buffered ("" = a timeout at once); when
        they run out, ``collect`` waits for a key or a hangup."""

    # -- what the test does ----------------------------------------------------------------

    def press(self, digits: str) -> None:
        self._digits.extend(digits)
        self._digit_arrived.set()
        self._timeline.append((self.id, "pressed", digits))

    def remote_hangup(self) -> None:
        self._end("remote", "bye")

    @property
    def heard(self) -> list[str]:
        """Every prompt (or file) played on this leg, in order."""
        return [d for who, what, d in self._timeline if who == self.id and what == "play"]

    # -- the CallSession surface the center uses ---------------------------------------------

    async def answer(self) -> None:
        self._check()
        self.state = "answered"

    async def hangup(self, cause: str = "normal") -> None:
        self._end("local", cause)

    async def play(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        lang: str | None = None,
        file: str | None = None,
        interruptible: bool = True,
        loop: bool = False,
        wait: bool = True,
    ) -> PlayDone:
        self._check()
        await asyncio.sleep(0)
        self._check()
        op = f"p{next(_ids)}"
        if interruptible and not loop and self._digits:
            return PlayDone(op=op, reason="dtmf", digit=self._digits[0])
        names = [file] if file else [prompt] if isinstance(prompt, str) else list(prompt or [])
        for name in names:
            self._timeline.append((self.id, "play", str(name)))
        return PlayDone(op=op, reason="finished" if wait else "started")

    async def stop_play(self) -> None:
        self._check()

    async def collect(
        self,
        max_digits: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the signature of CallSession.collect
        terminator: str = "#",
        inter_digit_timeout: float = 3.0,
    ) -> CollectResult:
        got = ""
        while True:
            while self._digits:
                d = self._digits.popleft()
                if terminator and d in terminator:
                    return CollectResult(got, "terminator")
                got += d
                if len(got) >= max_digits:
                    return CollectResult(got, "max_digits")
            self._check()
            if got:
                return CollectResult(got, "inter_digit_timeout")
            if self._auto_keys:
                keys = self._auto_keys.popleft()
                if not keys:
                    return CollectResult("", "timeout")
                self._digits.extend(keys)
                continue
            self._digit_arrived.clear()
            waits = [
                asyncio.ensure_future(self._digit_arrived.wait()),
                asyncio.ensure_future(self.ended.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def flush_digits(self) -> str:
        out = "".join(self._digits)
        self._digits.clear()
        return out

    async def record(
        self,
        path: str,
        *,
        max_seconds: float = 120.0,
        silence_seconds: float = 5.0,
        stop_digits: str = "#",
        beep: bool = False,
    ) -> RecordDone:
        self._check()
        if beep:
            await self.play("beep", interruptible=False)
        await asyncio.to_thread(Path(path).write_bytes, b"RIFF-a-message")
        self._timeline.append((self.id, "record", path))
        return RecordDone(
            op=f"r{next(_ids)}",
            path=path,
            reason="dtmf",
            seconds=self.message_seconds,
            heard_sound=self.message_seconds > 0,
        )

    async def bridge(self, other: CallSession) -> None:
        peer = cast(FakeSession, other)
        self._check()
        peer._check()
        self.bridged_to, peer.bridged_to = peer, self
        self._timeline.append((self.id, "bridge", peer.id))

    async def transfer(self, target: str, *, mode: str = "auto") -> bool:
        self._check()
        self.transfers.append(target)
        return self.transfer_ok

    # -- internals -------------------------------------------------------------------------

    def _check(self) -> None:
        if self.state == "ended":
            raise SessionEnded(self.ended_by or "local", self.cause or "ended")

    def _end(self, by: str, cause: str) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_by, self.cause = by, cause
        peer, self.bridged_to = self.bridged_to, None
        if peer is not None and peer.bridged_to is self:
            peer.bridged_to = None
        self._timeline.append((self.id, "ended", by))
        self.ended.set()


@dataclass
class AgentPhone:
    """One agent's phone: whether it is there, and what it does for each offer."""

    reachable: bool = True
    script: deque[str] = field(default_factory=deque)
    """``answer``, ``ring`` (never answered), ``busy`` (nobody answered) or ``fail``;
    ``answer`` when the script is empty."""
    keys: list[str] = field(default_factory=list)
    """What the agent presses on an answered leg (message delivery), see FakeSession."""
    legs: list[FakeSession] = field(default_factory=list)


class ScriptedTelephony:
    """The Telephony port in memory: rings agents by script."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.phones: dict[str, AgentPhone] = {}
        self.rung: list[str] = []
        self.displays: list[str | None] = []
        """The display name each ring asked for (what a SIP phone would show)."""

    def phone(self, agent: str, *script: str, keys: Sequence[str] = ()) -> AgentPhone:
        p = self.phones.setdefault(agent, AgentPhone())
        p.script.extend(script)
        p.keys = list(keys)
        return p

    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        self.rung.append(target)
        self.displays.append(display)
        self.timeline.append(("telephony", "ring", target))
        phone = self.phones.get(target)
        if phone is None or not phone.reachable:
            raise LookupError(f"agent {target!r} has no registered phone")
        what = phone.script.popleft() if phone.script else "answer"
        if what == "ring":
            await asyncio.Event().wait()  # until the engine withdraws the offer
        if what == "busy":
            return None
        if what == "fail":
            raise LookupError("486 busy here")
        leg = FakeSession(
            self.timeline,
            caller=caller,
            dialled=target,
            direction="outbound",
            agent_keys=phone.keys,
        )
        leg.state = "answered"
        phone.legs.append(leg)
        self.timeline.append(("telephony", "answered", target))
        return cast(CallSession, leg)

    def agent_reachable(self, agent_id: str) -> bool:
        phone = self.phones.get(agent_id)
        return phone is not None and phone.reachable


SITE = """
[server]
data_dir = "{data}"

[media]
process = false

[[agents]]
id = "alice"
password = "pw-secret"
queues = ["sales"]

[[agents]]
id = "bob"
password = "pw-secret"
queues = ["sales"]

[entry_points]
"1000" = {{ kind = "hotline" }}
"2000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"
ring_timeout = 20
max_wait = 120
overflow = "voicemail"
{queue_extra}

[acd.agents.alice]
max_misses = {max_misses}

[ivr]
entry = "main"

[ivr.flows.main]
start = "menu"

[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = {{ "1" = "sales" }}

[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
"""


class CenterHarness:
    """A ContactCenter on scripted telephony, a real SQLite case store and an injected clock."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        queue_extra: str = "",
        max_misses: int = 3,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self.timeline: Timeline = []
        self.clock = Clock()
        self.telephony = ScriptedTelephony(self.timeline)
        text = SITE.format(data=tmp_path / "data", queue_extra=queue_extra, max_misses=max_misses)
        self.config = parse_config(text, file=str(tmp_path / "site.toml"))
        self.center = ContactCenter(self.config, self.telephony, clock=self.clock, metrics=metrics)
        self.calls: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        await self.center.start()

    async def close(self) -> None:
        for session_id, task in self.calls.items():
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            del session_id
        await self.center.close()

    def caller(self, **kwargs: Any) -> FakeSession:
        return FakeSession(self.timeline, **kwargs)

    async def call(self, session: FakeSession, kind: str = "queue", target: str = "sales") -> None:
        """Hand an inbound call to the center, as the composition root does."""
        task = asyncio.get_running_loop().create_task(
            self.center.handle_call(cast(CallSession, session), kind, target)
        )
        self.calls[session.id] = task
        # The case is opened on the writer thread: wait for it, then for the loop to settle.
        await until(lambda: session.state != "ringing" or task.done(), "the call answered")
        await settle()

    async def finished(self, session: FakeSession) -> None:
        """Wait for the center to be done with a call."""
        await asyncio.wait_for(self.calls[session.id], 5)
        await settle()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of wall time pass: the engine's timers due by then fire."""
        self.clock.now += seconds
        self.center.acd.handle(Tick(at=self.clock.now))
        await settle()

    async def trail(self, session_or_case: FakeSession | int) -> list[CaseEvent]:
        """The case's events (of a caller's case, or by id), store-assigned order."""
        case_id = (
            session_or_case
            if isinstance(session_or_case, int)
            else int(session_or_case.vars["case_id"])
        )
        trail = await self.center.case_trail(case_id)
        assert trail is not None
        return trail.events

    async def kinds(self, session: FakeSession) -> list[str]:
        return [e.kind for e in await self.trail(session)]


async def settle(rounds: int = 200) -> None:
    """Run the loop until the center's tasks have nothing left to do right now."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    """Run the loop (and the writer thread) until ``predicate()``; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.002)
