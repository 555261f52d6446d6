"""Migration 0004 (case search) on stores written by the previous schema (version 2, the first
with the ``queue`` column): the store upgrades in place, keeps every row, gains the search
indexes, and its old cases are filed under the queue their trail names.

The version-2 stores are made as that release made them: its migrations run on an empty
database, then rows written with its columns (queue left empty, as its center did).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from acd.cases import CaseSearch
from acd.store.migrate import PG_VERSION_TABLE, latest_version, migrations, sqlite_statements
from acd.store.postgres import PostgresCaseStore
from acd.store.sqlite import SQLiteCaseStore
from acd.store.testing import pg_dsn_for_tests

V2 = 2

#: (id, caller, queue column, created_at, updated_at); then each case's trail.
CASES = [
    (1, "+4930111", "", 10.0, 12.0),
    (2, "+4930111", "", 20.0, 25.0),
    (3, "+4930222", "", 30.0, 30.0),
    (4, "+4930333", "billing", 40.0, 41.0),
]
EVENTS: list[tuple[int, float, str, str, dict[str, Any]]] = [
    (1, 10.0, "opened", "system", {"caller": "+4930111"}),
    (1, 11.0, "queued", "acd", {"queue": "sales", "skills": {}}),
    (1, 12.0, "answered", "alice", {"agent": "alice"}),
    (2, 20.0, "opened", "system", {"caller": "+4930111"}),
    (2, 21.0, "queued", "acd", {"queue": "sales"}),
    (2, 22.0, "transferred", "acd", {"from_queue": "sales", "to_queue": "vip"}),
    (2, 25.0, "transferred", "acd", {"to": "voicemail", "queue": "vip"}),
    (3, 30.0, "opened", "system", {"caller": "+4930222"}),
    (4, 40.0, "opened", "system", {"caller": "+4930333", "queue": "billing"}),
    (4, 41.0, "queued", "acd", {"queue": "sales"}),
]
WANT_QUEUES = {1: "sales", 2: "vip", 3: "", 4: "billing"}
NEW_INDEXES = {
    "cases_updated",
    "cases_status_updated",
    "cases_owner_updated",
    "cases_queue_updated",
    "cases_caller_created",
}


def case_row(c: tuple[int, str, str, float, float]) -> tuple[Any, ...]:
    case_id, caller, queue, created, updated = c
    return (
        case_id,
        caller,
        "",
        "",
        "sip",
        "",
        "query",
        "open",
        "",
        "",
        None,
        created,
        updated,
        queue,
        "",
    )


COLUMNS = (
    "id, caller_number, caller_name, dialled, channel, call_id, case_type, status, owner,"
    " workgroup, due_at, created_at, updated_at, queue, disposition"
)


# -- SQLite --------------------------------------------------------------------------------------


@pytest.fixture
def v2_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "cases.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for m in migrations("sqlite")[:V2]:
        for statement in sqlite_statements(m.sql):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {V2}")
    conn.executemany(
        f"INSERT INTO cases ({COLUMNS}) VALUES ({', '.join('?' * 15)})",
        [case_row(c) for c in CASES],
    )
    conn.executemany(
        "INSERT INTO case_events (case_id, at, kind, actor, data) VALUES (?, ?, ?, ?, ?)",
        [(c, at, k, a, json.dumps(d)) for c, at, k, a, d in EVENTS],
    )
    conn.execute("COMMIT")
    conn.close()
    return path


def sqlite_dump(path: Path, table: str, order: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    finally:
        conn.close()


def test_sqlite_version_2_store_upgrades_and_files_old_cases_under_their_queue(
    v2_sqlite: Path,
) -> None:
    events_before = sqlite_dump(v2_sqlite, "case_events", "seq")
    store = SQLiteCaseStore(v2_sqlite)
    try:
        assert store.schema_version_at_open == V2
        assert store.schema_version == latest_version("sqlite") >= 4
        assert {c: store.get_case(c).queue for c in WANT_QUEUES} == WANT_QUEUES  # type: ignore[union-attr]
        page = store.search_cases(CaseSearch(queue="sales"))
        assert [c.id for c in page.cases] == [1]
        page = store.search_cases(CaseSearch(caller="+4930111", sort="updated_at", limit=1))
        assert [c.id for c in page.cases] == [2] and page.more and page.total == 2
    finally:
        store.close()
    assert sqlite_dump(v2_sqlite, "case_events", "seq") == events_before  # the trail untouched
    conn = sqlite3.connect(v2_sqlite)
    try:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert indexes >= NEW_INDEXES and "cases_caller" not in indexes
        for where, index in (
            ("", "cases_updated"),
            ("status = 'open' AND", "cases_status_updated"),
            ("owner = 'a' AND", "cases_owner_updated"),
            ("queue = 'a' AND", "cases_queue_updated"),
        ):
            plan = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM cases WHERE {where} (updated_at, id) < (?, ?)"
                " ORDER BY updated_at DESC, id DESC LIMIT 50",
                (1e12, 10**9),
            ).fetchall()
            detail = " ".join(str(r[-1]) for r in plan)
            assert index in detail and "TEMP B-TREE" not in detail, detail
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM cases WHERE caller_number = ?"
            " ORDER BY created_at DESC, id DESC LIMIT 50",
            ("+1",),
        ).fetchall()
        detail = " ".join(str(r[-1]) for r in plan)
        assert "cases_caller_created" in detail and "TEMP B-TREE" not in detail, detail
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def v2_pg() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
        conn.execute(f"SET search_path TO {schema}".encode())
        with conn.transaction():
            conn.execute(
                f"CREATE TABLE {PG_VERSION_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())".encode()
            )
            for m in migrations("postgres")[:V2]:
                conn.execute(m.sql.encode())
                conn.execute(
                    f"INSERT INTO {PG_VERSION_TABLE} (version, name) VALUES (%s, %s)".encode(),
                    (m.version, m.name),
                )
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO cases ({COLUMNS}) VALUES ({', '.join(['%s'] * 15)})".encode(),
                    [case_row(c) for c in CASES],
                )
                cur.executemany(
                    b"INSERT INTO case_events (case_id, at, kind, actor, data)"
                    b" VALUES (%s, %s, %s, %s, %s::jsonb)",
                    [(c, at, k, a, json.dumps(d)) for c, at, k, a, d in EVENTS],
                )
            conn.execute(b"SELECT setval(pg_get_serial_sequence('cases', 'id'), 4)")
    try:
        yield dsn, schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())


@pytest.mark.postgres
def test_postgres_version_2_store_upgrades_and_files_old_cases_under_their_queue(
    v2_pg: tuple[str, str],
) -> None:
    dsn, schema = v2_pg
    store = PostgresCaseStore(dsn, schema=schema)
    try:
        assert store.schema_version_at_open == V2
        assert store.schema_version == latest_version("postgres") >= 4
        assert {c: store.get_case(c).queue for c in WANT_QUEUES} == WANT_QUEUES  # type: ignore[union-attr]
        page = store.search_cases(CaseSearch(caller="+4930111", sort="updated_at", limit=1))
        assert [c.id for c in page.cases] == [2] and page.more and page.total == 2
        assert len(store.events(2)) == 4
    finally:
        store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
            ).fetchall()
        }
        assert names >= NEW_INDEXES and "cases_caller" not in names
        versions = conn.execute(
            f"SELECT version, name FROM {schema}.{PG_VERSION_TABLE} WHERE version = 4".encode()
        ).fetchall()
        assert versions == [(4, "case_search")]
