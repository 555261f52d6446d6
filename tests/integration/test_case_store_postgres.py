"""The PostgreSQL store against a real server: reopening, two processes, SIGKILL mid-write."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from acd.cases import CaseEvent, NewCase
from acd.store.postgres import PostgresCaseStore
from acd.store.testing import NoTestPostgres, pg_dsn_for_tests

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "t_" + uuid.uuid4().hex[:16]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_reopen_keeps_cases_and_triggers(schema: tuple[str, str]) -> None:
    dsn, name = schema
    store = PostgresCaseStore(dsn, schema=name)
    case = store.open_case(NewCase(caller_number="+4930123", at=1.0, case_type="complaint"))
    store.append_event(case.id, CaseEvent(at=2.0, kind="answered", actor="a1"))
    store.close()
    again = PostgresCaseStore(dsn, schema=name)  # schema creation is idempotent
    try:
        assert again.get_case(case.id) == dataclasses.replace(case, updated_at=2.0)
        assert [e.kind for e in again.events(case.id)] == ["opened", "answered"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {name}")
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute("TRUNCATE case_events CASCADE")
    finally:
        again.close()


CHILD = r"""
import asyncio, hashlib, sys
from acd.cases import CaseEvent, NewCase
from acd.store.postgres import PostgresCaseStore
from acd.store.writer import AsyncCaseWriter

async def main() -> None:
    store = PostgresCaseStore(sys.argv[1], schema=sys.argv[2])
    writer = AsyncCaseWriter(store)
    case = await writer.run(lambda s: s.open_case(NewCase(caller_number="+100", at=0.0)))
    print("case", case.id, flush=True)
    i = 0
    while True:  # runs until killed
        for _ in range(20):
            body = "y" * (i % 2000)
            digest = hashlib.sha256(f"{i}:{body}".encode()).hexdigest()
            writer.append_event(case.id, CaseEvent(at=float(i), kind="note", data={"i": i, "body": body, "sha": digest}))
            writer.append_log({"at": float(i), "kind": "tick", "i": i})
            i += 1
        await writer.flush()
        print("committed", i - 1, flush=True)

asyncio.run(main())
"""


def test_sigkill_mid_write_loses_nothing_committed(schema: tuple[str, str]) -> None:
    dsn, name = schema
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, dsn, name],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[:1] == ["case"], first
        case_id = int(first[1])
        committed = -1
        for _ in range(30):
            line = proc.stdout.readline()
            assert line.startswith("committed"), line
            committed = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:  # never leave the child behind, even when an assertion fails
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    store = PostgresCaseStore(dsn, schema=name)
    try:
        events = store.events(case_id)[1:]
        seen = [e.data["i"] for e in events]
        assert seen == list(range(len(seen)))
        assert len(seen) >= committed + 1
        for e in events:
            assert (
                e.data["sha"]
                == hashlib.sha256(f"{e.data['i']}:{e.data['body']}".encode()).hexdigest()
            )
        # events and log records of a batch commit together
        assert [r["i"] for _, r in store.read_log()] == seen
    finally:
        store.close()


def test_required_postgres_without_dsn_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOTLINE_TEST_PG_DSN", raising=False)
    monkeypatch.setenv("HOTLINE_REQUIRE_PG", "1")
    with pytest.raises(NoTestPostgres, match="HOTLINE_REQUIRE_PG"):
        pg_dsn_for_tests()
