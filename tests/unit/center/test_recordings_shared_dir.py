"""One recordings directory shared by several nodes (issue 15): a node finds the recordings
another node made after it started, leaves another node's unfinished recording alone, and two
nodes expiring the same recording both end fine, the case told once. A message recorded by
another node is played from this node's own path to the directory.

Two ``CallRecorder``s (nodes "a" and "b") on one real directory and one real SQLite case store;
the clock is injected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from center_harness import CenterHarness, Clock, until
from structlog.testing import capture_logs

from acd.cases import NewCase
from acd.config import QueueConfig
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter
from hotline.center.caselog import CaseLog
from hotline.center.recordings import (
    ABANDONED_SECONDS,
    CallRecorder,
    Recording,
    RecordingStore,
)
from media_gateway.media.server import part_path

DAY = 86400.0


@dataclasses.dataclass
class Nodes:
    clock: Clock
    writer: AsyncCaseWriter
    case_id: int
    a: CallRecorder
    b: CallRecorder
    tasks: list[asyncio.Task[None]]

    def make(self, node: str, *, directory: Path | None = None) -> CallRecorder:
        """A node's recorder over the shared directory (or ``directory``: another mount)."""
        queues = {"support": QueueConfig(name="support", record=True, recording_keep_days=7)}

        def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(coro)
            self.tasks.append(task)
            return task

        return CallRecorder(
            RecordingStore(directory or self.a.store.dir),
            queue_config=queues.get,
            cases=CaseLog(self.writer, self.clock),
            clock=self.clock,
            spawn=spawn,
            node=node,
        )

    async def events(self, kind: str) -> list[dict[str, Any]]:
        await self.writer.flush()
        events = await self.writer.run(lambda s: s.events(self.case_id))
        return [e.data for e in events if e.kind == kind]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    clock = Clock()
    writer = AsyncCaseWriter(SQLiteCaseStore(tmp_path / "cases.sqlite3"))
    case = await writer.run(lambda s: s.open_case(NewCase(caller_number="+100", at=clock())))
    shared = tmp_path / "shared" / "calls"
    n = Nodes(clock, writer, case.id, a=None, b=None, tasks=[])  # type: ignore[arg-type]
    n.a = n.make("a", directory=shared)
    n.b = n.make("b")
    await n.a.open()
    await n.b.open()  # both running before anything is recorded
    try:
        yield n
    finally:
        for task in n.tasks:
            task.cancel()
        await asyncio.gather(*n.tasks, return_exceptions=True)
        await writer.close()


def recorded(node: CallRecorder, case_id: int, *, at: float, ended: bool = True) -> Recording:
    """What ``node`` writes for a conversation (its JSON and WAV), indexed by it alone."""
    rec_id = node.store.new_id()
    rec = Recording(
        id=rec_id,
        case_id=case_id,
        call_id=f"call-{rec_id}",
        queue="support",
        agent="bob",
        file=str(node.store.wav_path(rec_id)),
        started=at - 60,
        ended=at if ended else None,
        seconds=60.0 if ended else 0.0,
        reason="hangup" if ended else "",
        keep_days=7,
        node=node.node,
    )
    audio = node.store.wav_path(rec_id)
    (audio if ended else part_path(audio)).write_bytes(b"RIFF-" + rec_id.encode())
    node.store.write(rec)
    node.store.add(rec)
    return rec


async def test_a_node_finds_a_recording_another_node_made_after_it_started(nodes: Nodes) -> None:
    rec = recorded(nodes.a, nodes.case_id, at=nodes.clock.now)
    assert nodes.b.store.get(rec.id) is None  # b's index knows nothing of it...
    with capture_logs() as logs:
        found = await nodes.b.find(rec.id)  # ...its JSON on disk does
    assert found == rec and nodes.b.store.get(rec.id) == rec  # indexed from now on
    assert [e["log_level"] for e in logs] == ["debug"]
    assert await nodes.b.find("0123456789abcdef") is None
    assert await nodes.b.find("../../etc/passwd") is None
    assert nodes.b.store.wav_path(rec.id).read_bytes() == b"RIFF-" + rec.id.encode()


async def test_a_case_lists_the_recordings_its_trail_names(nodes: Nodes) -> None:
    first = recorded(nodes.a, nodes.case_id, at=nodes.clock.now)
    second = recorded(nodes.b, nodes.case_id, at=nodes.clock.now + 120)
    other_case = recorded(nodes.a, nodes.case_id + 1, at=nodes.clock.now)
    assert await nodes.b.for_case(nodes.case_id) == [second]
    named = [second.id, first.id, other_case.id, "0123456789abcdef"]
    assert await nodes.b.for_case(nodes.case_id, named) == [first, second]


async def test_another_nodes_unfinished_recording_is_read_again_until_it_ends(
    nodes: Nodes,
) -> None:
    rec = recorded(nodes.a, nodes.case_id, at=nodes.clock.now, ended=False)
    assert (await nodes.b.find(rec.id)) == rec  # still being recorded on a (409 for the API)
    done = dataclasses.replace(rec, ended=nodes.clock.now + 5, seconds=65.0, reason="hangup")
    nodes.a.store.write(done)
    nodes.a.store.add(done)
    assert await nodes.b.find(rec.id) == done
    # a's own unfinished recordings come from its index: no disk read.
    mine = recorded(nodes.a, nodes.case_id, at=nodes.clock.now, ended=False)
    nodes.a.store._meta_path(mine.id).unlink()
    assert await nodes.a.find(mine.id) == mine


async def test_a_node_starting_leaves_another_nodes_unfinished_recording_alone(
    nodes: Nodes,
) -> None:
    theirs = recorded(nodes.a, nodes.case_id, at=nodes.clock.now, ended=False)
    wav = nodes.a.store.wav_path(theirs.id)
    b_again = nodes.make("b")
    await b_again.open()  # b restarts while a records
    assert b_again.store.get(theirs.id) == theirs  # indexed, not "recovered"
    assert part_path(wav).exists() and await nodes.events("recording") == []
    a_again = nodes.make("a")
    await a_again.open()  # a crashed and restarts: its own recording is completed
    done = a_again.store.get(theirs.id)
    assert done is not None and done.reason == "recovered"
    assert [e["recording_id"] for e in await nodes.events("recording")] == [theirs.id]


async def test_two_nodes_expiring_the_same_recording_both_end_fine(nodes: Nodes) -> None:
    recs = [recorded(nodes.a, nodes.case_id, at=nodes.clock.now) for _ in range(5)]
    for rec in recs:
        assert await nodes.b.find(rec.id) == rec
    nodes.clock.now += 8 * DAY  # past the queue's 7 days
    with capture_logs() as logs:
        removed_a, removed_b = await asyncio.gather(nodes.a.expire(), nodes.b.expire())
    assert sorted(r.id for r in removed_a + removed_b) == sorted(r.id for r in recs)
    assert list(nodes.a.store.dir.iterdir()) == []
    assert nodes.a.store.all() == [] and nodes.b.store.all() == []
    # No warning, no error; the case is told once per recording, by the node that deleted it.
    assert {e["log_level"] for e in logs} <= {"debug", "info"}, logs
    expired = [e["recording_id"] for e in await nodes.events("recording_expired")]
    assert sorted(expired) == sorted(r.id for r in recs)
    # Deleting what is already gone is not an error.
    assert nodes.b.store.delete_files(recs[0]) is False


async def test_the_sweep_expires_recordings_another_node_made_and_forgets_those_it_expired(
    nodes: Nodes,
) -> None:
    made_by_a = recorded(nodes.a, nodes.case_id, at=nodes.clock.now)  # b never asked for it
    fresh = recorded(nodes.a, nodes.case_id, at=nodes.clock.now + 7 * DAY)
    nodes.clock.now += 7 * DAY + 1
    assert [r.id for r in await nodes.b.expire()] == [made_by_a.id]  # a was down, say
    assert nodes.b.store.get(fresh.id) == fresh  # indexed by the sweep, not yet due
    with capture_logs() as logs:
        assert await nodes.a.expire() == []  # a's index still had it: already gone
    assert nodes.a.store.get(made_by_a.id) is None
    assert [e["event"] for e in logs] == ["recordings_swept"]  # a debug line, nothing else
    assert len(await nodes.events("recording_expired")) == 1


async def test_an_unreachable_directory_is_logged_and_recording_goes_on_without_it(
    nodes: Nodes, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    node = nodes.make("c", directory=blocked / "calls")
    with capture_logs() as logs:
        await node.open()
        assert await node.expire() == []
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("recordings_unreachable", "error"),
        ("recordings_unreachable", "error"),
        ("recordings_swept", "debug"),
    ]
    assert logs[0]["directory"] == str(blocked / "calls")


async def test_a_message_recorded_by_another_node_is_played_from_this_nodes_directory(
    tmp_path: Path,
) -> None:
    """Work taken over from a lost node names the message as that node wrote it (its own
    mount of the shared directory): this node plays it from its own."""
    h = CenterHarness(tmp_path)
    await h.start()
    try:
        room = h.center.room
        case = await h.center.writer.run(
            lambda s: s.open_case(NewCase(caller_number="+100", at=h.clock()))
        )
        name = f"case-{case.id}-1700000000000.wav"
        (room.recordings / name).write_bytes(b"RIFF")
        elsewhere = f"/mnt/node-a/recordings/{name}"
        item = room.queue_work(
            case.id, "sales", "voicemail", h.clock(), caller="+100", recording=elsewhere
        )
        assert item.recording == str(room.recordings / name)
        assert room.message_file(str(room.recordings / name)) == str(room.recordings / name)
        assert room.message_file("/somewhere/else/greeting.wav") == "/somewhere/else/greeting.wav"
        assert room.message_file("") == ""

        phone = h.telephony.phone("alice", keys=[""])
        h.center.presence_changed("alice", True)
        await until(lambda: bool(phone.legs) and phone.legs[0].state == "ended", "delivered")
        assert phone.legs[0].heard[:3] == ["agent_voicemail", "beep", item.recording]
    finally:
        await h.close()


class _Caller:
    """Just what the recorder uses of a caller's session."""

    id = "call-9"

    def __init__(self) -> None:
        self.vars: dict[str, Any] = {}
        self.recorded: list[str] = []

    async def record_call(self, other: Any, path: str) -> asyncio.Future[None]:
        self.recorded.append(path)
        return asyncio.get_running_loop().create_future()


async def test_a_call_goes_on_unrecorded_when_the_directory_is_unreachable(
    nodes: Nodes, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    node = nodes.make("c", directory=blocked / "calls")
    caller = _Caller()
    with capture_logs() as logs:
        rec = await node.start(
            caller,  # type: ignore[arg-type]
            caller,  # type: ignore[arg-type]
            case_id=nodes.case_id,
            queue="support",
            agent="bob",
        )
    assert rec is None and caller.recorded == [] and node.store.all() == []
    [line] = logs
    assert (line["event"], line["log_level"], line["recorded"]) == (
        "recording_failed",
        "error",
        False,
    )
    assert line["directory"] == str(blocked / "calls") and "Not a directory" in line["error"]


async def test_a_recording_abandoned_by_a_node_that_never_comes_back_is_completed_once(
    nodes: Nodes,
) -> None:
    rec = recorded(nodes.a, nodes.case_id, at=nodes.clock.now, ended=False)
    part = part_path(nodes.a.store.wav_path(rec.id))
    c = nodes.make("c")
    await c.open()
    await nodes.b.find(rec.id)  # both b and c have it indexed, unfinished
    # Written recently: a is still recording it (its media process appends every second).
    os.utime(part, (nodes.clock.now - ABANDONED_SECONDS + 5,) * 2)
    assert await nodes.b.complete_abandoned() == [] and await c.complete_abandoned() == []
    # Not written for ABANDONED_SECONDS: a stopped. b and c sweep at the same time.
    os.utime(part, (nodes.clock.now - ABANDONED_SECONDS - 1,) * 2)
    done_b, done_c = await asyncio.gather(nodes.b.complete_abandoned(), c.complete_abandoned())
    [done] = done_b + done_c
    assert done.id == rec.id and done.reason == "recovered" and done.ended is not None
    assert not part.exists() and nodes.a.store.wav_path(rec.id).exists()
    assert [e["recording_id"] for e in await nodes.events("recording")] == [rec.id]  # once
    # a comes back: nothing of its own is left to complete; the others index the end.
    a_again = nodes.make("a")
    await a_again.open()
    assert a_again.store.get(rec.id) == done
    assert len(await nodes.events("recording")) == 1
    assert (await c.find(rec.id)) == done and (await nodes.b.find(rec.id)) == done
    # Expired in time like any other, its claim file with it.
    nodes.clock.now += 8 * DAY
    await nodes.b.expire()
    assert list(nodes.a.store.dir.iterdir()) == []
