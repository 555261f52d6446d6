"""Staff credentials in PostgreSQL: one table every node shares (``[database] url``).

The table ``staff_credentials`` (migration 0007, in the case store's schema) holds what the
staff file holds (hotline/auth/credentials.py): per member the argon2id hash and the SIP
digest HA1s, never a password. ``hotline passwd`` upserts one row (one statement: atomic);
each node keeps the rows in memory (``StaffCredentials``) and polls :meth:`StaffDatabase.stamp`
from a worker thread, reading every row again only when the stamp changed.

The stamp is ``(count(*), sum(version))``: each write takes a fresh, larger ``version`` from a
sequence, so every committed insert, update or delete changes the pair. ``max(version)`` alone
could miss a write: sequence values are handed out before commit, so a write holding version 10
can commit after one holding 11 has been seen.

Synchronous psycopg, one connection guarded by a lock: it runs at start-up (in the node's
constructor, like the case store) and, while serving, only in worker threads
(``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from acd.store.migrate import PG_SCHEMA_LOCK, SchemaError, migrate_postgres
from hotline.auth.credentials import StaffEntry, StaffFileError

if TYPE_CHECKING:
    import psycopg

Stamp = tuple[int, int]
"""``(rows, sum of versions)``: changes with every committed write."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""What a schema name may be (it is written into SQL): as the case store requires."""

IMPORT_LOCK = "hotline-staff-import-{schema}"
"""The advisory lock (``hashtext`` of this) under which a node imports its staff file."""

_UPSERT = (
    "INSERT INTO staff_credentials (user_id, web, ha1, updated) VALUES (%s, %s, %s::jsonb, %s)"
    " ON CONFLICT (user_id) DO UPDATE SET web = excluded.web, ha1 = excluded.ha1,"
    " updated = excluded.updated, version = nextval('staff_credentials_version')"
)


class StaffDatabaseError(StaffFileError):
    """The staff table cannot be reached or read (the message says why). A kind of
    :class:`StaffFileError`: wherever the staff file cannot be read, neither can this."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StaffDatabaseError(
            "[database] url needs psycopg 3: install hotline with the 'postgres' extra"
            " (pip install 'hotline[postgres]')"
        ) from exc
    return psycopg


def where(url: str, schema: str) -> str:
    """The database in words, without a password (for messages)."""
    psycopg = _psycopg()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return f"PostgreSQL schema {schema!r}"
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"PostgreSQL database {parts.get('dbname') or ''!r} on {host}{port}, schema {schema!r}"


class StaffDatabase:
    """The ``staff_credentials`` table of ``schema``. Thread-safe (one connection, a lock);
    reconnects after a lost connection on the next call."""

    def __init__(self, url: str, *, schema: str, connect_timeout: float = 5.0) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self.url = url
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self.imported = 0
        """How many entries :meth:`import_once` copied (0: none, the table had rows)."""

    @property
    def where(self) -> str:
        return where(self.url, self.schema)

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection (the lock held), opening one when there is none."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        psycopg = _psycopg()
        timeout = max(1, round(self.connect_timeout))
        try:
            # A link cut mid-query fails within ~timeout s instead of TCP's minutes (libpq's
            # TCP_USER_TIMEOUT and keepalives), so a poll never holds the lock for long.
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=timeout,
                tcp_user_timeout=timeout * 1000,
                keepalives=1,
                keepalives_idle=timeout,
                keepalives_interval=1,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise StaffDatabaseError(f"{self.where}: cannot connect: {exc}") from None
        try:
            conn.execute(f"SET search_path TO {self.schema}")
        except psycopg.Error as exc:
            conn.close()
            raise StaffDatabaseError(f"{self.where}: {exc}") from None
        self._conn = conn
        return conn

    def _run(self, work: Any) -> Any:
        """``work(connection)`` under the lock; a database error closes the connection (the
        next call opens a new one) and becomes :class:`StaffDatabaseError`."""
        psycopg = _psycopg()
        with self._lock:
            conn = self._connection()
            try:
                return work(conn)
            except psycopg.Error as exc:
                conn.close()
                self._conn = None
                raise StaffDatabaseError(f"{self.where}: {exc}") from None
            except SchemaError as exc:  # a schema written by a newer hotline, or not ours
                raise StaffDatabaseError(str(exc)) from None

    def migrate(self) -> None:
        """Create the schema and bring it to the latest version (the case store's migrations,
        under their advisory lock): the staff table exists afterwards."""

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_SCHEMA_LOCK,))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                conn.execute(f"SET search_path TO {self.schema}")
                migrate_postgres(conn, where=f"PostgreSQL schema {self.schema!r}")

        self._run(work)

    def exists(self) -> bool:
        """Whether the staff table exists yet (a database no node has started on has none)."""
        row = self._run(
            lambda conn: conn.execute("SELECT to_regclass('staff_credentials')").fetchone()
        )
        return row is not None and row[0] is not None

    def stamp(self) -> Stamp:
        """What changes with every committed write (one cheap query)."""

        def work(conn: psycopg.Connection[Any]) -> Stamp:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(version), 0) FROM staff_credentials"
            ).fetchone()
            return (0, 0) if row is None else (int(row[0]), int(row[1]))

        result: Stamp = self._run(work)
        return result

    def read(self) -> tuple[Stamp, dict[str, StaffEntry]]:
        """Every row, and the stamp they match (one statement: one snapshot)."""

        def work(conn: psycopg.Connection[Any]) -> tuple[Stamp, dict[str, StaffEntry]]:
            rows = conn.execute(
                "SELECT user_id, web, ha1, updated, version FROM staff_credentials"
            ).fetchall()
            entries = {
                str(user): StaffEntry(
                    user=str(user), web=str(web), ha1=_ha1(ha1), updated=str(updated)
                )
                for user, web, ha1, updated, _version in rows
            }
            return (len(rows), sum(int(r[4]) for r in rows)), entries

        result: tuple[Stamp, dict[str, StaffEntry]] = self._run(work)
        return result

    def upsert(self, entry: StaffEntry) -> None:
        """Write (or replace) one member's row: one statement, atomic."""
        self._run(
            lambda conn: conn.execute(
                _UPSERT, (entry.user, entry.web, json.dumps(entry.ha1), entry.updated)
            )
        )

    def import_once(self, entries: Mapping[str, StaffEntry]) -> int:
        """Copy ``entries`` (a staff file's) into the table if it has no row yet; the number
        copied (0: the table had rows, the database is the truth). Under an advisory lock, so
        of several nodes starting at once exactly one imports."""

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (IMPORT_LOCK.format(schema=self.schema),),
                )
                row = conn.execute("SELECT count(*) FROM staff_credentials").fetchone()
                if row is None or int(row[0]) > 0 or not entries:
                    return 0
                with conn.cursor() as cur:
                    cur.executemany(
                        _UPSERT,
                        [(e.user, e.web, json.dumps(e.ha1), e.updated) for e in entries.values()],
                    )
            return len(entries)

        count: int = self._run(work)
        self.imported = count
        return count

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _ha1(value: Any) -> dict[str, dict[str, str]]:
    """The ``ha1`` column (JSONB: psycopg gives a dict) as realm -> algorithm -> hex."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        return {}
    return {
        str(realm): {str(a): str(h).lower() for a, h in by_algorithm.items()}
        for realm, by_algorithm in value.items()
        if isinstance(by_algorithm, dict)
    }
