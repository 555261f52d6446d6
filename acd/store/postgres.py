"""PostgreSQL case store (multi-node deployments): the same schema and behaviour as SQLite.

psycopg 3, one connection guarded by a lock. Each write is one transaction, committed
before the call returns (PostgreSQL's default ``synchronous_commit=on``: durable after a crash).
``schema`` puts the tables in their own namespace (tests use one schema per test).
Opening migrates the schema to the latest version (:mod:`acd.store.migrate`).

psycopg is an optional extra (``pip install 'hotline[postgres]'``): it is imported when a
PostgreSQL store is opened, never by the SQLite path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from acd.store._sql import SqlCaseStore
from acd.store.migrate import PG_SCHEMA_LOCK, migrate_postgres

if TYPE_CHECKING:
    import psycopg


@functools.lru_cache(maxsize=256)
def _to_pyformat(sql: str) -> str:
    """The shared query text (DB-API ``qmark``: ``?``) in psycopg's ``%s`` style.

    Kept on purpose: sqlite3 and psycopg share no placeholder style (sqlite3 binds ``?``/``:name``,
    psycopg ``%s``/``%(name)s``; psycopg's raw ``$1`` is a *named* parameter to SQLite), and one
    text per query for both dialects is worth more than a second copy of every query. Safe because
    the shared queries never use ``?`` except as a placeholder (no string literal holding one, no
    JSONB ``?`` operator: use ``jsonb_exists``), and a literal ``%`` is doubled as psycopg needs.
    Migrations do not go through here: they run without parameters, as written.
    """
    return sql.replace("%", "%%").replace("?", "%s")


def _psycopg() -> Any:
    """Import psycopg on first use, with an error that says how to get it."""
    try:
        import psycopg
    except ImportError as exc:
        raise ImportError(
            "PostgresCaseStore needs psycopg 3, which is not installed: install hotline with the"
            " 'postgres' extra (pip install 'hotline[postgres]'), or use SQLiteCaseStore"
        ) from exc
    return psycopg


_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresCaseStore(SqlCaseStore):
    """Case store in PostgreSQL (psycopg 3). Thread-safe; one connection, one writer at a time."""

    _json_param = "?::jsonb"

    def __init__(self, dsn: str, *, schema: str = "public") -> None:
        super().__init__()
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self.schema = schema
        driver = _psycopg()
        self._conn: psycopg.Connection[Any] = driver.connect(dsn, autocommit=True)
        try:
            with self._lock, self._conn.transaction():
                # The lock first: CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent
                # creator (a unique violation), and the migration needs it anyway.
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_SCHEMA_LOCK,))
                self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                self._conn.execute(f"SET search_path TO {schema}")
                found, self.schema_version = migrate_postgres(
                    self._conn, where=f"PostgreSQL schema {schema!r}"
                )
        except BaseException:
            self._conn.close()  # a refused store leaves no open connection behind
            raise
        self.schema_version_at_open = found

    def _q(self, sql: str) -> str:
        return _to_pyformat(sql)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
