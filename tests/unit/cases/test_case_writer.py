from __future__ import annotations

import pytest

from acd.cases import CaseError, CaseEvent, NewCase
from acd.store._sql import SqlCaseStore
from acd.store.writer import AsyncCaseWriter, WriteFailed


async def test_writer_commits_in_background_and_flush_makes_durable(store: SqlCaseStore) -> None:
    writer = AsyncCaseWriter(store)
    case = await writer.run(lambda s: s.open_case(NewCase(caller_number="100", at=0.0)))
    for i in range(200):
        writer.append_event(case.id, CaseEvent(at=float(i), kind="note", data={"i": i}))
        writer.append_log({"at": float(i), "kind": "tick"})
    await writer.flush()
    assert [e.data["i"] for e in store.events(case.id)[1:]] == list(range(200))
    assert len(store.read_log()) == 200
    await writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.append_event(case.id, CaseEvent(at=1.0, kind="note"))


async def test_enqueue_does_not_wait_for_the_database(store: SqlCaseStore) -> None:
    writer = AsyncCaseWriter(store)
    case = store.open_case(NewCase(caller_number="100", at=0.0))
    # Hold the store's lock: the writer thread cannot commit. Had enqueueing waited for the
    # database it would never return here (the writer waits for this lock); it returns, and
    # nothing is written until the lock is let go. (Its speed is bench.durable's to measure.)
    with store._lock:
        for i in range(5000):
            writer.append_event(case.id, CaseEvent(at=float(i), kind="note"))
        assert len(store.events(case.id)) == 1  # same thread: RLock re-entry; nothing written yet
    await writer.flush()
    assert len(store.events(case.id)) == 5001
    await writer.close()


async def test_bad_write_is_isolated_and_reported(store: SqlCaseStore) -> None:
    writer = AsyncCaseWriter(store)
    case = store.open_case(NewCase(caller_number="100", at=0.0))
    with pytest.raises(CaseError):
        writer.append_event(case.id, CaseEvent(at=1.0, kind="bogus"))
    with store._lock:  # queue all three so they land in one batch
        writer.append_event(case.id, CaseEvent(at=1.0, kind="note", data={"n": 1}))
        writer.append_event(999999, CaseEvent(at=1.0, kind="note"))
        writer.append_event(case.id, CaseEvent(at=2.0, kind="note", data={"n": 2}))
    with pytest.raises(WriteFailed):
        await writer.flush()
    assert [e.data.get("n") for e in store.events(case.id)[1:]] == [1, 2]
    await writer.flush()  # the failure is reported once
    await writer.close()
