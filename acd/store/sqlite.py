"""SQLite case store (the single-node default): one file, WAL journal.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` (the default here) syncs the WAL at
every commit, so a committed transaction survives a process crash *and* a power loss.
``synchronous="NORMAL"`` (allowed) survives a process crash (SIGKILL) but may lose the last
commits on power loss. One connection, serialised by a lock: one writer at a time.
Opening migrates the schema to the latest version (:mod:`acd.store.migrate`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from acd.store._sql import SqlCaseStore
from acd.store.migrate import migrate_sqlite


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
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self._lock:
                found, self.schema_version = migrate_sqlite(self._conn, where=self.path)
        except BaseException:
            self._conn.close()  # a refused store leaves no open handle behind
            raise
        self.schema_version_at_open = found

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
