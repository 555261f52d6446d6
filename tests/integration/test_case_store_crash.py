"""SIGKILL a process in the middle of writing case events; reopen: nothing committed is lost,
nothing partial is there, the SQLite file is consistent."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from acd.store.sqlite import SQLiteCaseStore

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, hashlib, sys
from acd.cases import CaseEvent, NewCase
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter

async def main() -> None:
    store = SQLiteCaseStore(sys.argv[1])
    writer = AsyncCaseWriter(store)
    case = await writer.run(lambda s: s.open_case(NewCase(caller_number="+100", at=0.0)))
    print("case", case.id, flush=True)
    i = 0
    while True:  # runs until killed
        for _ in range(20):
            body = "x" * (i % 3000)
            digest = hashlib.sha256(f"{i}:{body}".encode()).hexdigest()
            writer.append_event(case.id, CaseEvent(at=float(i), kind="note", data={"i": i, "body": body, "sha": digest}))
            i += 1
        await writer.flush()
        print("committed", i - 1, flush=True)

asyncio.run(main())
"""


def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "cases.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        case_line = proc.stdout.readline().split()
        assert case_line[:1] == ["case"], case_line
        case_id = int(case_line[1])
        committed = -1
        for _ in range(60):  # bounded: 60 flushes of 20 events
            line = proc.stdout.readline()
            assert line.startswith("committed"), line
            committed = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)  # the child is mid-batch: it never waits between flushes
        proc.wait(timeout=10)
    finally:  # never leave the child behind, even when an assertion fails
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    store = SQLiteCaseStore(db)
    try:
        assert store.integrity_check() == "ok"
        events = store.events(case_id)[1:]
        seen = [e.data["i"] for e in events]
        assert seen == list(range(len(seen)))  # in order, no gap, no duplicate
        assert len(seen) > committed  # every reported commit is there
        for e in events:  # no partial event
            body = e.data["body"]
            assert len(body) == e.data["i"] % 3000
            assert e.data["sha"] == hashlib.sha256(f"{e.data['i']}:{body}".encode()).hexdigest()
    finally:
        store.close()
