"""PostgreSQL case store (multi-node deployments): the same schema and behaviour as SQLite.

psycopg 3, one connection guarded by a lock. Each write is one transaction, committed
before the call returns (PostgreSQL's default ``synchronous_commit=on``: durable after a crash).
``schema`` puts the tables in their own namespace (tests use one schema per test).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from acd.store._sql import SqlCaseStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id BIGSERIAL PRIMARY KEY,
    caller_number TEXT NOT NULL,
    caller_name TEXT NOT NULL DEFAULT '',
    dialled TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    case_type TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    workgroup TEXT NOT NULL DEFAULT '',
    due_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_caller ON cases (caller_number, created_at);
CREATE INDEX IF NOT EXISTS cases_status ON cases (status, due_at);
CREATE INDEX IF NOT EXISTS cases_owner ON cases (owner);
CREATE INDEX IF NOT EXISTS cases_workgroup ON cases (workgroup);
CREATE INDEX IF NOT EXISTS cases_call ON cases (call_id);
CREATE TABLE IF NOT EXISTS case_events (
    seq BIGSERIAL PRIMARY KEY,
    case_id BIGINT NOT NULL REFERENCES cases (id),
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    data JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, seq);
CREATE TABLE IF NOT EXISTS acd_log (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    data JSONB NOT NULL
);
CREATE OR REPLACE FUNCTION hotline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER acd_log_append_only BEFORE UPDATE OR DELETE ON acd_log
    FOR EACH ROW EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER acd_log_no_truncate BEFORE TRUNCATE ON acd_log
    FOR EACH STATEMENT EXECUTE FUNCTION hotline_append_only();
"""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresCaseStore(SqlCaseStore):
    """Case store in PostgreSQL (psycopg 3). Thread-safe; one connection, one writer at a time."""

    _json_param = "?::jsonb"

    def __init__(self, dsn: str, *, schema: str = "public") -> None:
        super().__init__()
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self.schema = schema
        self._conn = psycopg.connect(dsn, autocommit=True)
        with self._lock, self._conn.transaction():
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self._conn.execute(f"SET search_path TO {schema}")
            # One creator at a time across processes (tables, function and triggers).
            self._conn.execute("SELECT pg_advisory_xact_lock(7406531)")
            self._conn.execute(SCHEMA)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

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
