"""bench/brain_log.py's PostgreSQL path on the suite's server, for a few hundred events.

Keeps the bench from rotting: the events go through the inbox, the fenced append and the
actions back to the producers, in order, and an active whose lease was taken cannot append.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from acd.store.testing import pg_dsn_for_tests
from bench.brain_log import LeaseLost, PostgresSystem, in_order, run_one

needs_pg = pytest.mark.postgres


def dsn() -> str:
    """The suite's PostgreSQL server (started when missing, as the case-store tests do)."""
    return pg_dsn_for_tests()


def schema_exists(name: str) -> bool:
    with psycopg.connect(dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (name,)
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.postgres
@needs_pg
@pytest.mark.parametrize(
    ("notify_in_tx", "node_batch"),
    [(False, False), (True, False), (False, True)],
    ids=["notify-after-commit", "notify-in-tx", "batching-nodes"],
)
async def test_every_event_comes_back_as_an_action_in_log_order(
    notify_in_tx: bool, node_batch: bool
) -> None:
    system = PostgresSystem(dsn(), notify_in_tx=notify_in_tx)
    flat = await run_one(
        system, rate=None, count=300, time_limit=30, window=2, node_batch=node_batch
    )
    assert flat.mode == ("batch" if node_batch else "event")
    assert (flat.sent, flat.received, flat.error) == (300, 300, "")
    assert flat.ordered
    assert flat.events_per_s > 0 and 0 < flat.p50_ms <= flat.p99_ms
    assert not schema_exists(system.schema)  # each run cleans up after itself

    paced = await run_one(
        system, rate=300.0, count=150, time_limit=30, window=2, node_batch=node_batch
    )
    assert (paced.sent, paced.received, paced.error) == (150, 150, "")
    assert paced.ordered


@pytest.mark.postgres
@needs_pg
async def test_an_active_whose_lease_was_taken_cannot_append() -> None:
    system = PostgresSystem(dsn())
    await system.open(uuid.uuid4().hex[:10], producers=1, window=1)
    try:
        await system.send(0, 0, b'{"node":0,"k":0}')
        assert await system._step() == 1  # the lease holder appends
        async with await psycopg.AsyncConnection.connect(dsn(), autocommit=True) as other:
            # Another brain takes over (the lease lapsed): the epoch moves on.
            await other.execute(
                f"UPDATE {system.schema}.lease SET holder = 'other', epoch = epoch + 1"
            )
        await system.send(0, 0, b'{"node":0,"k":1}')
        with pytest.raises(LeaseLost):
            await system._step()
        async with await psycopg.AsyncConnection.connect(dsn(), autocommit=True) as other:
            cur = await other.execute(f"SELECT seq FROM {system.schema}.log ORDER BY seq")
            assert [r[0] for r in await cur.fetchall()] == [1]
            cur = await other.execute(f"SELECT count(*) FROM {system.schema}.inbox")
            assert await cur.fetchone() == (1,)  # the refused event waits for the new active
    finally:
        await system.close_run()


def test_order_check_catches_a_log_that_reorders_acknowledged_appends() -> None:
    sent = {(0, 0): 0.0, (1, 0): 2.0}
    acked = {(0, 0): 1.0, (1, 0): 3.0}
    assert in_order({(0, 0): 1, (1, 0): 2}, sent, acked)
    # (0, 0) was acknowledged before (1, 0) was sent, yet logged after it.
    assert not in_order({(0, 0): 2, (1, 0): 1}, sent, acked)
    assert not in_order({(0, 0): 1, (1, 0): 3}, sent, acked)  # a gap in the sequence
    # Concurrent appends (neither acknowledged before the other was sent) may go either way.
    overlap_acked = {(0, 0): 2.5, (1, 0): 3.0}
    assert in_order({(0, 0): 2, (1, 0): 1}, sent, overlap_acked)
