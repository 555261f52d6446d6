"""Several nodes on one store (migration 0006): live calls and queued work are the node's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from acd.cases import NewCase
from acd.store.postgres import PostgresCaseStore
from acd.store.work import StoredWork

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_nodes(pg_dsn: str) -> Iterator[tuple[PostgresCaseStore, PostgresCaseStore]]:
    schema = "n_" + uuid.uuid4().hex[:16]
    a = PostgresCaseStore(pg_dsn, schema=schema)
    b = PostgresCaseStore(pg_dsn, schema=schema)
    a.node, b.node = "a", "b"
    yield a, b
    a.close()
    b.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_each_node_finds_only_its_own_live_calls_and_queued_work(
    two_nodes: tuple[PostgresCaseStore, PostgresCaseStore],
) -> None:
    a, b = two_nodes
    ca = a.open_case(NewCase(caller_number="+1555", at=1.0, call_id="call-a"), live=True)
    cb = b.open_case(NewCase(caller_number="+1666", at=2.0, call_id="call-b"), live=True)
    for store, case, n in ((a, ca, "a"), (b, cb, "b")):
        store.save_work(StoredWork(call_id=f"vm-{n}", case_id=case.id, kind="voicemail",
                                   queue="support", enqueued_at=3.0, created_at=3.0))  # fmt: skip
    assert [c.call_id for c in a.live_calls()] == ["call-a"]
    assert [c.call_id for c in b.live_calls()] == ["call-b"]
    assert [w.call_id for w in a.queued_work()] == ["vm-a"]
    assert [w.call_id for w in b.queued_work()] == ["vm-b"]
    # the record itself is shared: either node reads every case
    assert {c.id for c in a.list_cases()} == {c.id for c in b.list_cases()} == {ca.id, cb.id}


def test_a_node_takes_over_a_lost_nodes_calls_and_work(
    two_nodes: tuple[PostgresCaseStore, PostgresCaseStore],
) -> None:
    a, b = two_nodes
    ca = a.open_case(NewCase(caller_number="+1555", at=1.0, call_id="call-a"), live=True)
    cb = b.open_case(NewCase(caller_number="+1666", at=2.0, call_id="call-b"), live=True)
    a.save_work(StoredWork(call_id="vm-a", case_id=ca.id, kind="voicemail", queue="support",
                           enqueued_at=1.0, created_at=1.0))  # fmt: skip
    b.save_work(StoredWork(call_id="vm-b", case_id=cb.id, kind="voicemail", queue="support",
                           enqueued_at=2.0, created_at=2.0))  # fmt: skip
    # b is lost: a reads b's calls in progress and takes b's queued work
    assert [c.call_id for c in a.live_calls("b")] == ["call-b"]
    assert a.adopt_work("b") == ["vm-b"]
    assert [w.call_id for w in a.queued_work()] == ["vm-a", "vm-b"]
    assert b.queued_work() == []
    assert a.adopt_work("b") == []  # nothing twice
