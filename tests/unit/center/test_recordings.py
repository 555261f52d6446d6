"""Recorded conversations on disk: kept for their queue's retention, then deleted; a recording
a crash interrupted is completed at the next start and attached to its case.

The clock is injected (epoch seconds moved by the test); files and the case store are real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import wave
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acd.cases import NewCase
from acd.config import QueueConfig
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter
from hotline.center.caselog import CaseLog
from hotline.center.recordings import CallRecorder, Recording, RecordingStore
from media_gateway.media.engine import MediaError
from media_gateway.media.server import part_path
from tests.unit.center.center_harness import Clock

DAY = 86400.0


@dataclasses.dataclass
class Rig:
    clock: Clock
    store: RecordingStore
    recorder: CallRecorder
    writer: AsyncCaseWriter
    queues: dict[str, QueueConfig]
    case_id: int


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = Clock()
    writer = AsyncCaseWriter(SQLiteCaseStore(tmp_path / "cases.sqlite3"))
    case = await writer.run(lambda s: s.open_case(NewCase(caller_number="+100", at=clock())))
    queues = {
        "sales": QueueConfig(name="sales", record=True, recording_keep_days=7),
        "support": QueueConfig(name="support", record=True, recording_keep_days=30),
    }
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.append(task)
        return task

    store = RecordingStore(tmp_path / "recordings" / "calls")
    recorder = CallRecorder(
        store, queue_config=queues.get, cases=CaseLog(writer, clock), clock=clock, spawn=spawn
    )
    try:
        yield Rig(clock, store, recorder, writer, queues, case.id)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await writer.close()


def on_disk(*files: str | Path) -> list[bool]:
    return [Path(f).exists() for f in files]


def finished(rig: Rig, queue: str, *, ended: float, keep_days: float = 30.0) -> Recording:
    rec_id = rig.store.new_id()
    rec = Recording(
        id=rec_id,
        case_id=rig.case_id,
        call_id="call-1",
        queue=queue,
        agent="bob",
        file=str(rig.store.wav_path(rec_id)),
        started=ended - 60,
        ended=ended,
        seconds=60.0,
        reason="hangup",
        keep_days=keep_days,
    )
    rig.store.dir.mkdir(parents=True, exist_ok=True)
    Path(rec.file).write_bytes(b"RIFF")
    rig.store.write(rec)
    rig.store.add(rec)
    return rec


async def test_recordings_are_deleted_after_their_queues_retention(rig: Rig) -> None:
    t0 = rig.clock.now
    sales = finished(rig, "sales", ended=t0)  # 7 days
    support = finished(rig, "support", ended=t0)  # 30 days
    gone = finished(rig, "closed-queue", ended=t0, keep_days=2)  # its own 2 days
    rig.clock.now = t0 + 2 * DAY - 1
    assert await rig.recorder.expire() == []
    rig.clock.now = t0 + 2 * DAY
    assert [r.id for r in await rig.recorder.expire()] == [gone.id]
    rig.clock.now = t0 + 7 * DAY + 1
    assert [r.id for r in await rig.recorder.expire()] == [sales.id]
    assert on_disk(sales.file, support.file) == [False, True]
    assert rig.store.get(sales.id) is None and rig.store.get(support.id) == support
    # A supervisor shortens the support queue's retention: the next sweep applies it.
    rig.queues["support"] = dataclasses.replace(rig.queues["support"], recording_keep_days=5)
    assert [r.id for r in await rig.recorder.expire()] == [support.id]
    assert sorted(p.name for p in rig.store.dir.iterdir()) == []


async def test_the_hourly_sweep_tells_the_case(rig: Rig) -> None:
    rec = finished(rig, "sales", ended=rig.clock.now)
    rig.clock.now += 8 * DAY
    sweep = asyncio.get_running_loop().create_task(rig.recorder.expire_recordings())
    try:
        async with asyncio.timeout(5):  # until the case is told (the file goes first)
            while True:
                await rig.writer.flush()
                events = await rig.writer.run(lambda s: s.events(rig.case_id))
                if any(e.kind == "recording_expired" for e in events):
                    break
                await asyncio.sleep(0.01)
    finally:
        sweep.cancel()
    assert rig.store.get(rec.id) is None
    assert [(e.kind, e.data) for e in events if e.kind == "recording_expired"] == [
        ("recording_expired", {"recording_id": rec.id})
    ]


async def test_a_recording_interrupted_by_a_crash_is_completed_at_the_next_start(
    rig: Rig,
) -> None:
    rec_id = rig.store.new_id()
    started = rig.clock.now - 30
    unfinished = Recording(
        id=rec_id,
        case_id=rig.case_id,
        call_id="call-2",
        queue="support",
        agent="bob",
        file=str(rig.store.wav_path(rec_id)),
        started=started,
        keep_days=30,
    )
    rig.store.write(unfinished)
    # What the media process had written when it died: two whole seconds (CallWav keeps the
    # header right after each second, so the .part file is a valid WAV of what was written).
    with wave.open(str(part_path(Path(unfinished.file))), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.ones((16000, 2), dtype="<i2").tobytes())
    # The next start: a fresh index from disk.
    again = CallRecorder(
        RecordingStore(rig.store.dir),
        queue_config=rig.queues.get,
        cases=CaseLog(rig.writer, rig.clock),
        clock=rig.clock,
        spawn=lambda coro: asyncio.get_running_loop().create_task(coro),
    )
    await again.open()
    done = again.store.get(rec_id)
    assert done is not None and done.reason == "recovered"
    assert done.seconds == pytest.approx(2.0) and done.ended == pytest.approx(started + 2.0)
    assert on_disk(done.file, part_path(Path(done.file))) == [True, False]
    await rig.writer.flush()
    events = await rig.writer.run(lambda s: s.events(rig.case_id))
    attached = [e.data for e in events if e.kind == "recording"]
    assert len(attached) == 1 and attached[0]["recording_id"] == rec_id
    assert attached[0]["seconds"] == pytest.approx(2.0) and attached[0]["agent"] == "bob"


async def test_queues_that_do_not_record_get_no_consent_prompt_and_no_recording(
    rig: Rig,
) -> None:
    rig.queues["plain"] = QueueConfig(name="plain")
    assert rig.recorder.records("plain") is None
    assert rig.recorder.records("unknown") is None
    assert rig.recorder.records("sales") is rig.queues["sales"]


class _Caller:
    """Just what the recorder uses of a caller's session."""

    def __init__(self, *, prompt_missing: bool) -> None:
        self.id = "call-9"
        self.vars: dict[str, Any] = {}
        self.played: list[str] = []
        self.recorded: list[str] = []
        self.prompt_missing = prompt_missing

    async def play(self, prompt: str, *, interruptible: bool = True) -> None:
        if self.prompt_missing:
            raise MediaError(f"no prompt {prompt!r}")
        self.played.append(prompt)

    async def record_call(self, other: Any, path: str) -> asyncio.Future[None]:
        self.recorded.append(path)
        return asyncio.get_running_loop().create_future()


@pytest.mark.parametrize("prompt_missing", [False, True])
async def test_nobody_is_recorded_without_hearing_the_consent_prompt(
    rig: Rig, prompt_missing: bool
) -> None:
    caller = _Caller(prompt_missing=prompt_missing)
    rig.queues["sales"] = dataclasses.replace(rig.queues["sales"], consent_prompt="consent_x")
    await rig.recorder.consent(caller, "sales")  # type: ignore[arg-type]
    rec = await rig.recorder.start(
        caller,  # type: ignore[arg-type]
        caller,  # type: ignore[arg-type]
        case_id=rig.case_id,
        queue="sales",
        agent="bob",
    )
    if prompt_missing:
        assert rec is None and caller.recorded == [] and rig.store.all() == []
    else:
        assert caller.played == ["consent_x"]
        assert rec is not None and caller.recorded == [rec.file]
        assert rig.store.get(rec.id) == rec and rec.ended is None
