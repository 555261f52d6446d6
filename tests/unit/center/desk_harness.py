"""The center harness (center_harness.py) with what the agents' desk does to calls: sessions
that hold, mute, send keys and bridge as ``CallSession`` does, and messages recorded as real
WAV files. Used by the desk's unit tests and the agents' API tests."""

from __future__ import annotations

import asyncio
import itertools
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from hotline.center import ContactCenter
from hotline.config import parse_config
from media_gateway.session import CallSession, RecordDone
from tests.unit.center.center_harness import Clock, FakeSession, ScriptedTelephony, Timeline

_ids = itertools.count(1)


class DeskSession(FakeSession):
    """A FakeSession with hold, mute, keys and ``CallSession.bridge``'s rules."""

    def __init__(self, timeline: Timeline, **kwargs: Any) -> None:
        super().__init__(timeline, **kwargs)
        self.id = f"desk-{next(_ids)}"
        self.held = False
        self.muted = False
        self.keys_sent: list[str] = []

    async def hold(self, music: str | None = "moh") -> None:
        self._check()
        if not self.held:
            self.held = True
            self._timeline.append((self.id, "hold", music or ""))

    async def unhold(self) -> None:
        self._check()
        if self.held:
            self.held = False
            self._timeline.append((self.id, "unhold", ""))

    async def mute(self, on: bool = True) -> None:
        self._check()
        self.muted = on
        self._timeline.append((self.id, "mute", str(on)))

    async def send_dtmf(self, digits: str) -> None:
        self._check()
        self.keys_sent.append(digits)
        self._timeline.append((self.id, "keys", digits))

    async def bridge(self, other: CallSession) -> None:
        peer = cast(DeskSession, other)
        self._check()
        peer._check()
        mine = self.bridged_to
        if mine is not None and mine is not peer and mine.bridged_to is self:
            mine.bridged_to = None
        old = peer.bridged_to
        if old is not None and old is not self and old.bridged_to is peer:
            old.bridged_to = None
        self.bridged_to, peer.bridged_to = peer, self
        self._timeline.append((self.id, "bridge", peer.id))

    async def record(
        self,
        path: str,
        *,
        max_seconds: float = 120.0,
        silence_seconds: float = 5.0,
        stop_digits: str = "#",
        beep: bool = False,
    ) -> RecordDone:
        done = await super().record(
            path,
            max_seconds=max_seconds,
            silence_seconds=silence_seconds,
            stop_digits=stop_digits,
            beep=beep,
        )
        frames = int(8000 * self.message_seconds)
        await asyncio.to_thread(_write_wav, Path(path), frames)
        return done


def _write_wav(path: Path, frames: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * frames)


class DeskTelephony(ScriptedTelephony):
    """ScriptedTelephony whose answered legs are DeskSessions."""

    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        self.rung.append(target)
        self.timeline.append(("telephony", "ring", target))
        phone = self.phones.get(target)
        if phone is None or not phone.reachable:
            raise LookupError(f"agent {target!r} has no registered phone")
        what = phone.script.popleft() if phone.script else "answer"
        if what == "ring":
            await asyncio.Event().wait()
        if what == "busy":
            return None
        if what == "fail":
            raise LookupError("486 busy here")
        leg = DeskSession(
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


SITE = """
[server]
data_dir = "{data}"

[media]
process = false

[[agents]]
id = "alice"
password = "pw-alice-1"
extension = "201"
queues = ["sales", "french"]

[[agents]]
id = "bob"
password = "pw-bob-1"
extension = "202"
queues = ["sales"]

[[agents]]
id = "carol"
password = "pw-carol-1"
queues = ["support"]

[[agents]]
id = "sam"
password = "pw-sam-1"
role = "supervisor"

[entry_points]
"2000" = {{ kind = "queue", target = "sales" }}

[acd]
pause_reasons = ["break", "lunch", "training"]

[acd.queues.sales]
strategy = "longest-idle"
ring_timeout = 20
wrap_up_seconds = 30

[acd.queues.support]
strategy = "longest-idle"

[acd.queues.french]
strategy = "longest-idle"
skills = {{ fr = 5 }}
"""


class DeskHarness:
    """A ContactCenter on DeskTelephony, a real SQLite store and an injected clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.timeline: Timeline = []
        self.clock = Clock()
        self.telephony = DeskTelephony(self.timeline)
        text = SITE.format(data=tmp_path / "data")
        self.config = parse_config(text, file=str(tmp_path / "site.toml"))
        self.center = ContactCenter(self.config, self.telephony, clock=self.clock)
        self.calls: dict[str, asyncio.Task[None]] = {}

    async def start(self, *phones: str) -> None:
        for agent in phones:
            self.telephony.phone(agent)
        await self.center.start()

    async def close(self) -> None:
        for task in self.calls.values():
            task.cancel()
        await asyncio.gather(*self.calls.values(), return_exceptions=True)
        await self.center.close()

    def caller(self, **kwargs: Any) -> DeskSession:
        return DeskSession(self.timeline, **kwargs)

    async def call(self, session: DeskSession, queue: str = "sales") -> None:
        task = asyncio.get_running_loop().create_task(
            self.center.handle_call(cast(CallSession, session), "queue", queue)
        )
        self.calls[session.id] = task
        await until(lambda: session.state != "ringing" or task.done(), "the call answered")
        await settle()

    async def advance(self, seconds: float) -> None:
        from acd.events import Tick

        self.clock.now += seconds
        self.center.acd.handle(Tick(at=self.clock.now))
        await settle()

    def legs(self, agent: str) -> Sequence[DeskSession]:
        phone = self.telephony.phones[agent]
        return [cast(DeskSession, leg) for leg in phone.legs]

    async def events(self, session: DeskSession) -> list[tuple[str, str, dict[str, Any]]]:
        """The caller's case: (kind, actor, data) in order."""
        trail = await self.center.case_trail(int(session.vars["case_id"]))
        assert trail is not None
        return [(e.kind, e.actor, dict(e.data)) for e in trail.events]


async def settle(rounds: int = 200) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(predicate: Any, what: str, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.002)
