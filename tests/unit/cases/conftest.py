from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from acd.store._sql import SqlCaseStore
from acd.store.postgres import PostgresCaseStore
from acd.store.sqlite import SQLiteCaseStore
from acd.store.testing import pg_dsn_for_tests


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return pg_dsn_for_tests()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_and_raw(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SqlCaseStore, Callable[[str], None]]]:
    """The same suite runs on both stores; ``raw(sql)`` runs SQL on a separate connection."""
    if request.param == "sqlite":
        path = tmp_path / "cases.db"
        store: SqlCaseStore = SQLiteCaseStore(path)

        def raw(sql: str) -> None:
            import sqlite3

            conn = sqlite3.connect(path)
            try:
                conn.execute(sql)
                conn.commit()
            finally:
                conn.close()

        yield store, raw
        store.close()
        return
    dsn = request.getfixturevalue("pg_dsn")
    schema = "t_" + uuid.uuid4().hex[:16]
    store = PostgresCaseStore(dsn, schema=schema)

    def raw_pg(sql: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema}")
            conn.execute(sql)

    yield store, raw_pg
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(store_and_raw: tuple[SqlCaseStore, Callable[[str], None]]) -> SqlCaseStore:
    return store_and_raw[0]
