"""Versioned schema migrations for the case stores, applied when a store opens.

Why hand-rolled rather than yoyo or alembic (figures in docs/architecture.md): a migration and
the record of its version must commit in ONE transaction on the store's own connection, so a
crash mid-upgrade leaves the old version, never half of a new one. SQLite keeps the version in
``PRAGMA user_version`` (the file header, written by the same transaction); PostgreSQL in a
``hotline_schema_version`` table, under the advisory lock the store already takes. yoyo runs on
a second connection of its own, takes a lock by inserting a row that a SIGKILL leaves behind (the
next start then waits 10 s and fails until ``yoyo break-lock``), opens SQLite in shared-cache
mode and needs a URL rather than a libpq DSN; alembic brings SQLAlchemy and Python scripts.

Migrations are SQL files in :mod:`acd.store.migrations`: ``NNNN_name.sql`` for both dialects, or
``NNNN_name.sqlite.sql`` / ``NNNN_name.postgres.sql`` where the SQL differs. Version 1 is the
schema of hotline 0.1.0; a store written by that release (tables, no version) is adopted at
version 1 without running anything. A store whose version is above what this code knows is
refused: an older release must not write into a schema it does not understand.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import psycopg

Dialect = Literal["sqlite", "postgres"]

#: The tables every version has; all three present without a version = a 0.1.0 store.
BASE_TABLES = frozenset({"cases", "case_events", "acd_log"})

#: PostgreSQL: one row per applied migration, in the store's schema.
PG_VERSION_TABLE = "hotline_schema_version"

#: PostgreSQL: the advisory lock held while a store creates or migrates its schema (one key for
#: every schema of a database, the same key hotline 0.1.0 used, so old and new exclude each other).
PG_SCHEMA_LOCK = 7406531

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgres))?\.sql$")


class SchemaError(RuntimeError):
    """The store's schema cannot be used by this code (see the message for what to do)."""


class SchemaTooNewError(SchemaError):
    """The store was migrated by a newer hotline than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: version ``version`` is reached by running ``sql``."""

    version: int
    name: str
    sql: str


@functools.cache
def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """The dialect's migrations in version order (1, 2, ... with no gap)."""
    found: dict[int, tuple[str, str, bool]] = {}
    for entry in resources.files("acd.store.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m is None or (m.group(3) is not None and m.group(3) != dialect):
            continue
        version, specific = int(m.group(1)), m.group(3) is not None
        if version in found and found[version][2] == specific:
            raise SchemaError(f"two migrations for version {version} ({dialect})")
        if version not in found or specific:
            found[version] = (m.group(2), entry.read_text(encoding="utf-8"), specific)
    out = tuple(Migration(v, found[v][0], found[v][1]) for v in sorted(found))
    if [m.version for m in out] != list(range(1, len(out) + 1)):
        raise SchemaError(f"{dialect} migrations must be numbered 1..N without gaps")
    return out


def latest_version(dialect: Dialect) -> int:
    """The version a store of this dialect has once migrated by this code."""
    return len(migrations(dialect))


def _too_new(where: str, version: int, dialect: Dialect) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"{where} has case-store schema version {version}, but this hotline knows versions up to"
        f" {latest_version(dialect)}: it was written by a newer release; run that release (or a"
        " newer one) against it, or restore a backup taken before the upgrade"
    )


def _partial(where: str, tables: set[str]) -> SchemaError:
    return SchemaError(
        f"{where} has some case tables ({sorted(tables)}) but not all of {sorted(BASE_TABLES)}"
        " and no schema version: not a store this hotline wrote; refusing to touch it"
    )


def sqlite_statements(sql: str) -> list[str]:
    """Split a SQL file into statements (``sqlite3.complete_statement`` knows trigger bodies),
    so each runs inside the caller's transaction: ``executescript`` would commit it first."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if any(ln.strip() and not ln.strip().startswith("--") for ln in buf.splitlines()):
        raise SchemaError(f"incomplete SQL statement at the end of a migration: {buf.strip()!r}")
    return out


def migrate_sqlite(conn: sqlite3.Connection, *, where: str) -> tuple[int, int]:
    """Bring a SQLite store (connection in autocommit mode) to the latest version in one
    ``BEGIN IMMEDIATE`` transaction; return ``(version before, version after)`` (a 0.1.0 store counts as version 1 before)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored = int(conn.execute("PRAGMA user_version").fetchone()[0])
        current = stored
        if current == 0:
            tables = {
                str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            ours = tables & BASE_TABLES
            if ours == BASE_TABLES:
                current = 1  # a 0.1.0 store: its tables are version 1 already
            elif ours:
                raise _partial(where, ours)
        if current > latest_version("sqlite"):
            raise _too_new(where, current, "sqlite")
        before = current
        for m in migrations("sqlite")[current:]:
            for statement in sqlite_statements(m.sql):
                conn.execute(statement)
            current = m.version
        if current != stored:
            conn.execute(f"PRAGMA user_version = {current:d}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return before, current


def migrate_postgres(conn: psycopg.Connection[Any], *, where: str) -> tuple[int, int]:
    """Bring the PostgreSQL schema on ``search_path`` to the latest version. The caller holds a
    transaction; this takes the schema advisory lock, so concurrent openers wait, then see the
    new version and run nothing. Return ``(version before, version after)``."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_SCHEMA_LOCK,))
    tables = {
        str(r[0])
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    }
    if PG_VERSION_TABLE in tables:
        row = conn.execute(f"SELECT max(version) FROM {PG_VERSION_TABLE}").fetchone()
        before = 0 if row is None or row[0] is None else int(str(row[0]))
    else:
        before = 0
        conn.execute(
            f"CREATE TABLE {PG_VERSION_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        ours = tables & BASE_TABLES
        if ours == BASE_TABLES:  # a 0.1.0 store: adopt its tables as version 1, run nothing
            conn.execute(
                f"INSERT INTO {PG_VERSION_TABLE} (version, name) VALUES (1, 'baseline (adopted)')"
            )
            before = 1
        elif ours:
            raise _partial(where, ours)
    if before > latest_version("postgres"):
        raise _too_new(where, before, "postgres")
    current = before
    for m in migrations("postgres")[before:]:
        conn.execute(m.sql.encode())  # no parameters: the file's own % and ? stay literal
        conn.execute(
            f"INSERT INTO {PG_VERSION_TABLE} (version, name) VALUES (%s, %s)", (m.version, m.name)
        )
        current = m.version
    return before, current
