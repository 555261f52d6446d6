"""The audit trail's table (migration 0003) in both stores: rows written, read back newest first
with filters and pages, and append-only (the database refuses UPDATE and DELETE)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from acd.store._sql import SqlCaseStore
from acd.store.postgres import PostgresCaseStore
from acd.store.sqlite import SQLiteCaseStore
from acd.store.testing import pg_dsn_for_tests
from hotline.auth.audit import redact


def fill(store: SqlCaseStore) -> list[int]:
    seqs = []
    for i, actor in enumerate(["alice", "ada", "alice", "sam", "alice"]):
        seqs.append(
            store.append_audit(
                {
                    "at": 100.0 + i,
                    "actor": actor,
                    "role": "agent",
                    "action": "sign_in",
                    "method": "POST",
                    "path": "/api/session",
                    "source": "127.0.0.1",
                    "status": 200,
                    "outcome": "ok",
                    "data": {"body": {"user": actor, "password": "***"}},
                }
            )
        )
    return seqs


def check(store: SqlCaseStore) -> None:
    seqs = fill(store)
    rows = store.read_audit()
    assert [r["seq"] for r in rows] == sorted(seqs, reverse=True)
    first = rows[-1]
    assert first["actor"] == "alice" and first["at"] == 100.0 and first["status"] == 200
    assert first["data"] == {"body": {"user": "alice", "password": "***"}}
    assert [r["at"] for r in store.read_audit(actor="alice")] == [104.0, 102.0, 100.0]
    assert [r["at"] for r in store.read_audit(since=101.0, until=104.0)] == [103.0, 102.0, 101.0]
    page = store.read_audit(limit=2)
    assert [r["at"] for r in store.read_audit(before_seq=page[-1]["seq"], limit=2)] == [
        102.0,
        101.0,
    ]


def test_sqlite_audit_rows(tmp_path: Path) -> None:
    store = SQLiteCaseStore(tmp_path / "cases.sqlite3")
    try:
        assert store.schema_version >= 3
        check(store)
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "cases.sqlite3")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'nobody'")
    finally:
        conn.close()


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "t_" + uuid.uuid4().hex[:16]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.postgres
def test_postgres_audit_rows(pg_schema: tuple[str, str]) -> None:
    dsn, name = pg_schema
    store = PostgresCaseStore(dsn, schema=name)
    try:
        check(store)
    finally:
        store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {name}")
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("DELETE FROM audit_log")


def test_redaction_hides_secrets_at_any_depth_and_bounds_sizes() -> None:
    body: dict[str, Any] = {
        "user": "alice",
        "password": "hunter22",
        "nested": {"csrf_token": "abc", "api_key": "k", "items": [{"secret": "s"}]},
        "note": "x" * 500,
        "many": list(range(80)),
    }
    out = redact(body)
    text = str(out)
    assert "hunter22" not in text and "abc" not in text and "'s'" not in text
    assert out["password"] == out["nested"]["csrf_token"] == "***"
    assert out["nested"]["items"] == [{"secret": "***"}]
    assert len(out["note"]) == 203 and len(out["many"]) == 51
