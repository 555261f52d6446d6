"""SQLite case store (the single-node default): one file, WAL journal.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` (the default here) syncs the WAL at
every commit, so a committed transaction survives a process crash *and* a power loss.
``synchronous="NORMAL"`` (allowed) survives a process crash (SIGKILL) but may lose the last
commits on power loss. One connection, serialised by a lock: one writer at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from acd.store._sql import SqlCaseStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    caller_number TEXT NOT NULL,
    caller_name TEXT NOT NULL DEFAULT '',
    dialled TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    case_type TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    workgroup TEXT NOT NULL DEFAULT '',
    due_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_caller ON cases (caller_number, created_at);
CREATE INDEX IF NOT EXISTS cases_status ON cases (status, due_at);
CREATE INDEX IF NOT EXISTS cases_owner ON cases (owner);
CREATE INDEX IF NOT EXISTS cases_workgroup ON cases (workgroup);
CREATE INDEX IF NOT EXISTS cases_call ON cases (call_id);
CREATE TABLE IF NOT EXISTS case_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, seq);
CREATE TABLE IF NOT EXISTS acd_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE TRIGGER IF NOT EXISTS case_events_no_update BEFORE UPDATE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS case_events_no_delete BEFORE DELETE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS acd_log_no_update BEFORE UPDATE ON acd_log
BEGIN SELECT RAISE(ABORT, 'acd_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS acd_log_no_delete BEFORE DELETE ON acd_log
BEGIN SELECT RAISE(ABORT, 'acd_log is append-only'); END;
"""


class SQLiteCaseStore(SqlCaseStore):
    """Case store in one SQLite file (WAL). Thread-safe; writes serialised by one lock."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        super().__init__()
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = str(path)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._conn.executescript(SCHEMA)

    def _q(self, sql: str) -> str:
        return sql

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result ("ok" when the file is consistent)."""
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
