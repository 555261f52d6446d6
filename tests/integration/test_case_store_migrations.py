"""Schema migrations of the case stores: a store written by hotline 0.1.0 upgrades in place.

The SQLite fixture is a real file written by the 0.1.0 code (tests/fixtures/make_cases_v0_1_0.py);
the PostgreSQL fixture is 0.1.0's DDL, filled here with the very rows of the SQLite fixture.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from acd.cases import CaseEvent, NewCase
from acd.store.migrate import (
    PG_VERSION_TABLE,
    SchemaError,
    SchemaTooNewError,
    latest_version,
    migrations,
    sqlite_statements,
)
from acd.store.postgres import PostgresCaseStore
from acd.store.sqlite import SQLiteCaseStore
from acd.store.testing import pg_dsn_for_tests

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OLD_SQLITE = FIXTURES / "cases-v0.1.0.sqlite3"
OLD_PG_DDL = FIXTURES / "cases-v0.1.0-postgres.sql"

#: The columns of 0.1.0's tables, in their order (what must survive an upgrade unchanged).
OLD_COLUMNS = {
    "cases": "id, caller_number, caller_name, dialled, channel, call_id, case_type, status,"
    " owner, workgroup, due_at, created_at, updated_at",
    "case_events": "seq, case_id, at, kind, actor, data",
    "acd_log": "seq, at, kind, data",
}
ORDER = {"cases": "id", "case_events": "seq", "acd_log": "seq"}
LATEST = latest_version("sqlite")
"""The version this code migrates to (a newer one is refused)."""
FUTURE = LATEST + 1
#: The queue each 0.1.0 case is filed under once migrated (0004: from its trail's queued event).
OLD_QUEUES = {1: "billing", 2: "", 3: ""}


def test_the_code_knows_its_versions() -> None:
    assert latest_version("sqlite") == latest_version("postgres") == LATEST >= 4
    names = [m.name for m in migrations("sqlite")]
    assert names[:2] == ["baseline", "search_and_disposition"] and names[3] == "case_search"
    assert [m.name for m in migrations("postgres")] == names


# -- SQLite --------------------------------------------------------------------------------------


@pytest.fixture
def old_sqlite(tmp_path: Path) -> Path:
    """A copy of the store hotline 0.1.0 wrote (the fixture itself is never opened)."""
    path = tmp_path / "cases.sqlite3"
    shutil.copy(OLD_SQLITE, path)
    return path


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT {cols} FROM {t} ORDER BY {ORDER[t]}").fetchall()
            for t, cols in OLD_COLUMNS.items()
        }
    finally:
        conn.close()


def sqlite_pragma(path: Path, pragma: str) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {pragma}").fetchall()
    finally:
        conn.close()


def sqlite_schema(path: Path | str) -> set[tuple[str, str]]:
    """(type, name) of every table, index and trigger, and each table's columns."""
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        columns = [
            (t, f"{c[1]} {c[2]} notnull={c[3]} default={c[4]}")
            for (kind, t) in objects
            if kind == "table"
            for c in conn.execute(f"PRAGMA table_info({t})")
        ]
        return set(objects) | set(columns)
    finally:
        conn.close()


def test_sqlite_010_store_upgrades_and_keeps_every_row(old_sqlite: Path) -> None:
    before = sqlite_rows(old_sqlite)
    assert [len(before[t]) for t in OLD_COLUMNS] == [3, 17, 3]
    assert sqlite_pragma(old_sqlite, "user_version") == [(0,)]  # 0.1.0 had no version

    store = SQLiteCaseStore(old_sqlite)
    try:
        assert store.schema_version_at_open == 1  # adopted as the baseline
        assert store.schema_version == LATEST
        cases = [store.get_case(int(row[0])) for row in before["cases"]]
        assert all(c is not None and c.disposition == "" for c in cases)
        assert {c.id: c.queue for c in cases if c is not None} == OLD_QUEUES
        trail = store.events(int(before["cases"][0][0]))
        assert [e.kind for e in trail][:3] == ["opened", "queued", "answered"]
        assert any(e.kind == "escalated" and e.data["to"] == "lead-billing" for e in trail)
    finally:
        store.close()

    assert sqlite_rows(old_sqlite) == before  # every case, event and log row, unchanged
    assert sqlite_pragma(old_sqlite, "user_version") == [(LATEST,)]
    assert sqlite_pragma(old_sqlite, "integrity_check") == [("ok",)]


def test_sqlite_upgraded_store_takes_new_writes_and_searches_by_index(old_sqlite: Path) -> None:
    SQLiteCaseStore(old_sqlite).close()
    store = SQLiteCaseStore(old_sqlite)  # a second open finds the latest and runs nothing
    try:
        assert store.schema_version_at_open == store.schema_version == LATEST
        case = store.open_case(NewCase(caller_number="+4930999", queue="billing", at=100.0))
        assert case.id == 4  # the 0.1.0 id sequence goes on: the table was not re-created
        done = store.update_case(case.id, at=101.0, actor="a1", disposition="refund promised")
        assert (done.queue, done.disposition) == ("billing", "refund promised")
        assert store.events(case.id)[-1] == CaseEvent(
            seq=store.events(case.id)[-1].seq,
            at=101.0,
            kind="disposition_set",
            actor="a1",
            data={"field": "disposition", "from": "", "to": "refund promised"},
        )
    finally:
        store.close()
    conn = sqlite3.connect(old_sqlite)
    try:
        for column, index in (
            ("queue", "cases_queue_created"),
            ("case_type", "cases_type_created"),
            ("owner", "cases_owner_created"),
            ("status", "cases_status_created"),
            ("disposition", "cases_disposition_created"),
        ):
            plan = conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM cases"
                f" WHERE {column} = ? AND created_at BETWEEN ? AND ?"
                " ORDER BY created_at DESC, id DESC LIMIT 50",
                ("x", 0.0, 1e12),
            ).fetchall()
            detail = " ".join(str(r[-1]) for r in plan)
            assert f"USING INDEX {index}" in detail or f"USING COVERING INDEX {index}" in detail
            assert "TEMP B-TREE" not in detail  # pages come straight off the index, no sort
    finally:
        conn.close()


def test_sqlite_fresh_store_is_created_at_the_latest_version(
    tmp_path: Path, old_sqlite: Path
) -> None:
    fresh = tmp_path / "fresh.sqlite3"
    store = SQLiteCaseStore(fresh)
    assert (store.schema_version_at_open, store.schema_version) == (0, LATEST)
    store.close()
    assert sqlite_pragma(fresh, "user_version") == [(LATEST,)]
    SQLiteCaseStore(old_sqlite).close()
    assert sqlite_schema(fresh) == sqlite_schema(old_sqlite)  # both paths end at one schema


def test_sqlite_first_migration_is_exactly_the_010_schema(tmp_path: Path) -> None:
    """Version 1 run on an empty file gives the very tables, indexes and triggers of 0.1.0."""
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    for statement in sqlite_statements(migrations("sqlite")[0].sql):
        conn.execute(statement)
    conn.commit()
    got = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    old = sqlite3.connect(OLD_SQLITE)
    try:
        want = old.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        old.close()
    assert got == want


def test_sqlite_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    SQLiteCaseStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {FUTURE}")
    conn.close()
    with pytest.raises(
        SchemaTooNewError,
        match=rf"version {FUTURE}, but this hotline knows versions up to {LATEST}",
    ):
        SQLiteCaseStore(path)
    assert sqlite_pragma(path, "user_version") == [(FUTURE,)]  # left as it was


def test_sqlite_file_with_only_some_case_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE cases (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(SchemaError, match="not all of"):
        SQLiteCaseStore(path)


@pytest.mark.parametrize(
    "sql",
    ["UPDATE case_events SET kind = 'note'", "DELETE FROM case_events", "DELETE FROM acd_log"],
)
def test_sqlite_events_stay_append_only_after_upgrade(old_sqlite: Path, sql: str) -> None:
    SQLiteCaseStore(old_sqlite).close()
    conn = sqlite3.connect(old_sqlite)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    finally:
        conn.close()
    assert sqlite_rows(old_sqlite)["case_events"] == sqlite_rows(OLD_SQLITE)["case_events"]


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "t_" + uuid.uuid4().hex[:16]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def pg_connect(dsn: str, schema: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"SET search_path TO {schema}")
    return conn


def make_old_pg_store(dsn: str, schema: str) -> None:
    """What 0.1.0 left in PostgreSQL: its DDL, holding the rows of the SQLite fixture."""
    rows = sqlite_rows(OLD_SQLITE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(OLD_PG_DDL.read_bytes())
        with conn.transaction():
            for table, cols in OLD_COLUMNS.items():
                marks = ", ".join(
                    "%s::jsonb" if c.strip() == "data" else "%s" for c in cols.split(",")
                )
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {table} ({cols}) VALUES ({marks})".encode(), rows[table]
                    )
                key = ORDER[table]
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'),"
                    f" (SELECT max({key}) FROM {table}))".encode()
                )


def pg_rows(dsn: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    with pg_connect(dsn, schema) as conn:
        return {
            t: conn.execute(f"SELECT {cols} FROM {t} ORDER BY {ORDER[t]}".encode()).fetchall()
            for t, cols in OLD_COLUMNS.items()
        }


def pg_shape(dsn: str, schema: str) -> set[tuple[Any, ...]]:
    """Columns, indexes and triggers of a schema (with the schema's name taken out)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable,"
            " replace(coalesce(column_default, ''), %s, '') FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name <> %s",
            (schema + ".", schema, PG_VERSION_TABLE),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, replace(indexdef, %s, '') FROM pg_indexes"
            " WHERE schemaname = %s AND tablename <> %s",
            (schema + ".", schema, PG_VERSION_TABLE),
        ).fetchall()
        triggers = conn.execute(
            "SELECT trigger_name, event_manipulation, action_timing,"
            " replace(action_statement, %s, '') FROM information_schema.triggers"
            " WHERE trigger_schema = %s",
            (schema + ".", schema),
        ).fetchall()
    return (
        {("column", *c) for c in columns}
        | {("index", *i) for i in indexes}
        | {("trigger", *t) for t in triggers}
    )


@pytest.mark.postgres
def test_postgres_010_store_upgrades_and_keeps_every_row(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    make_old_pg_store(dsn, schema)
    before = pg_rows(dsn, schema)
    assert [len(before[t]) for t in OLD_COLUMNS] == [3, 17, 3]

    store = PostgresCaseStore(dsn, schema=schema)
    try:
        assert (store.schema_version_at_open, store.schema_version) == (1, LATEST)
        old = [store.get_case(int(r[0])) for r in before["cases"]]
        assert all(c is not None and c.disposition == "" for c in old)
        assert {c.id: c.queue for c in old if c is not None} == OLD_QUEUES
        case = store.open_case(NewCase(caller_number="+4930999", queue="billing", at=100.0))
        assert case.id == 4  # the 0.1.0 sequence goes on
        done = store.update_case(case.id, at=101.0, actor="a1", disposition="callback booked")
        assert dataclasses.replace(done, updated_at=0.0) == dataclasses.replace(
            case, disposition="callback booked", updated_at=0.0
        )
    finally:
        store.close()
    after = pg_rows(dsn, schema)
    assert after["acd_log"] == before["acd_log"]
    assert after["cases"][:3] == before["cases"]
    assert after["case_events"][: len(before["case_events"])] == before["case_events"]
    with pg_connect(dsn, schema) as conn:
        versions = conn.execute(f"SELECT version, name FROM {PG_VERSION_TABLE} ORDER BY version")
        assert versions.fetchall() == [
            (1, "baseline (adopted)"),
            *((m.version, m.name) for m in migrations("postgres")[1:]),
        ]
        for sql in ("UPDATE case_events SET kind = 'note'", "DELETE FROM case_events"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql.encode())
    assert pg_rows(dsn, schema)["case_events"] == after["case_events"]


@pytest.mark.postgres
def test_postgres_fresh_store_matches_an_upgraded_one(pg_schema: tuple[str, str]) -> None:
    dsn, fresh = pg_schema
    old = "t_" + uuid.uuid4().hex[:16]
    try:
        make_old_pg_store(dsn, old)
        PostgresCaseStore(dsn, schema=old).close()
        store = PostgresCaseStore(dsn, schema=fresh)
        assert (store.schema_version_at_open, store.schema_version) == (0, LATEST)
        store.close()
        again = PostgresCaseStore(dsn, schema=fresh)
        assert again.schema_version_at_open == LATEST
        again.close()
        assert pg_shape(dsn, fresh) == pg_shape(dsn, old)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {old} CASCADE".encode())


@pytest.mark.postgres
def test_postgres_newer_schema_is_refused(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    PostgresCaseStore(dsn, schema=schema).close()
    with pg_connect(dsn, schema) as conn:
        conn.execute(
            f"INSERT INTO {PG_VERSION_TABLE} (version, name) VALUES ({FUTURE}, 'future')".encode()
        )
    with pytest.raises(
        SchemaTooNewError,
        match=rf"version {FUTURE}, but this hotline knows versions up to {LATEST}",
    ):
        PostgresCaseStore(dsn, schema=schema)


# -- psycopg is optional ---------------------------------------------------------------------------

WITHOUT_PSYCOPG = r"""
import sys
sys.modules["psycopg"] = None  # as if the 'postgres' extra were not installed
from acd.cases import NewCase
from acd.store import PostgresCaseStore, SQLiteCaseStore
store = SQLiteCaseStore(sys.argv[1])
print(store.open_case(NewCase(caller_number="+100", at=1.0)).id, store.schema_version)
store.close()
try:
    PostgresCaseStore("postgresql://nobody@127.0.0.1:1/none")
except ImportError as exc:
    print(exc)
"""


def test_sqlite_path_runs_without_psycopg(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-c", WITHOUT_PSYCOPG, str(tmp_path / "c.sqlite3")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == f"1 {LATEST}"
    assert "pip install 'hotline[postgres]'" in lines[1]


def test_postgres_first_migration_is_the_010_ddl() -> None:
    def body(sql: str) -> str:
        return "\n".join(ln for ln in sql.splitlines() if not ln.startswith("--")).strip()

    assert body(migrations("postgres")[0].sql) == body(OLD_PG_DDL.read_text(encoding="utf-8"))


# -- concurrent first opens ----------------------------------------------------------------------


def open_concurrently(open_store: Any, n: int = 4) -> list[tuple[int, int]]:
    """``n`` threads open the same new store at once; return each one's (found, reached)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> tuple[int, int]:
        store = open_store()
        try:
            return store.schema_version_at_open, store.schema_version
        finally:
            store.close()

    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(one, range(n)))


def test_sqlite_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "race.sqlite3"
    assert (
        open_concurrently(lambda: SQLiteCaseStore(path)) == [(0, LATEST)] + [(LATEST, LATEST)] * 3
    )


@pytest.mark.postgres
def test_postgres_concurrent_first_opens_migrate_once(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    got = open_concurrently(lambda: PostgresCaseStore(dsn, schema=schema))
    assert got == [(0, LATEST)] + [(LATEST, LATEST)] * 3
