"""Case search on both stores: every filter narrows to exactly the matching cases, pages cover
every match exactly once in the asked order, and the store agrees with a plain Python oracle.

One data set per store (module-scoped: hypothesis tries many searches against it), built with
ties on purpose (several cases opened or updated in the same second) so the tie-break by id
is what keeps pages apart.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.cases import (
    Case,
    CaseError,
    CaseEvent,
    CasePage,
    CaseSearch,
    NewCase,
    answer_changes,
    normalise_number,
)
from acd.store._sql import SqlCaseStore
from acd.store.postgres import PostgresCaseStore
from acd.store.sqlite import SQLiteCaseStore
from acd.store.testing import pg_dsn_for_tests
from acd.store.writer import AsyncCaseWriter

CALLERS = ["+33 6 12 34 56 78", "tel:+33-6-12-34-56-78", "+4930111", "0049 30 222", "sip:9@x"]
TYPES = ["complaint", "fault", "consultation", "query", "care", "revisit", "suggestion"]
OWNERS = ["", "alice", "bob"]
QUEUES = ["", "sales", "support"]
GROUPS = ["", "tech", "billing"]
TIMES = [float(t) for t in range(1000, 1200, 10)]  # 20 instants: many ties among 90 cases


def fill(store: SqlCaseStore) -> list[Case]:
    """90 cases with every field varied, some updated (status, owner) and some noted."""
    rng = random.Random(12)
    for _ in range(90):
        case = store.open_case(
            NewCase(
                caller_number=rng.choice(CALLERS),
                at=rng.choice(TIMES),
                case_type=rng.choice(TYPES),
                owner=rng.choice(OWNERS),
                workgroup=rng.choice(GROUPS),
                queue=rng.choice(QUEUES),
            )
        )
        later = case.created_at + rng.choice([0.0, 5.0, 50.0, 500.0])
        roll = rng.random()
        if roll < 0.3:
            store.update_case(case.id, at=later, actor="sup", status="in_progress")
        elif roll < 0.45:
            store.update_case(case.id, at=later, actor="sup", status="resolved")
        elif roll < 0.55:
            store.update_case(case.id, at=later, actor="sup", status="closed")
        elif roll < 0.7:
            store.append_event(case.id, CaseEvent(at=later, kind="note", data={"text": "hi"}))
    found = store.search_cases(CaseSearch(limit=1000))
    assert found.total == 90 and not found.more
    return found.cases


def matches(case: Case, s: CaseSearch) -> bool:
    """The oracle: what ``s`` means, in Python."""
    return (
        (s.caller is None or case.caller_number == normalise_number(s.caller))
        and (not s.ids or case.id in s.ids)
        and (not s.types or case.case_type in s.types)
        and (not s.statuses or case.status in s.statuses)
        and (s.owner is None or case.owner == s.owner)
        and (s.queue is None or case.queue == s.queue)
        and (s.workgroup is None or case.workgroup == s.workgroup)
        and (s.created_from is None or case.created_at >= s.created_from)
        and (s.created_to is None or case.created_at < s.created_to)
    )


def expected(cases: list[Case], s: CaseSearch) -> list[int]:
    hits = [c for c in cases if matches(c, s)]
    hits.sort(key=s.key, reverse=s.descending)
    return [c.id for c in hits]


def all_pages(store: SqlCaseStore, s: CaseSearch) -> tuple[list[int], list[CasePage]]:
    """Follow the pages of ``s`` to the end, as a client following next_cursor does."""
    seen: list[int] = []
    pages: list[CasePage] = []
    search = s
    for _ in range(200):
        page = store.search_cases(search)
        pages.append(page)
        seen += [c.id for c in page.cases]
        if not page.more:
            return seen, pages
        search = dataclasses.replace(s, after=s.key(page.cases[-1]))
    raise AssertionError("pages never ended")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def data(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SqlCaseStore, list[Case]]]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("search") / "cases.sqlite3"
        store: SqlCaseStore = SQLiteCaseStore(path)
        yield store, fill(store)
        store.close()
        return
    dsn = pg_dsn_for_tests()
    schema = "t_" + uuid.uuid4().hex[:16]
    store = PostgresCaseStore(dsn, schema=schema)
    try:
        yield store, fill(store)
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


FILTERS = {
    "caller": CaseSearch(caller="+33612345678"),
    "caller in another notation": CaseSearch(caller="0033 6 12 34 56 78"),
    "case numbers": CaseSearch(ids=(3, 5, 8, 400)),
    "one type": CaseSearch(types=("fault",)),
    "two types": CaseSearch(types=("care", "revisit")),
    "status": CaseSearch(statuses=("in_progress",)),
    "two statuses": CaseSearch(statuses=("resolved", "closed")),
    "owner": CaseSearch(owner="alice"),
    "nobody owns": CaseSearch(owner=""),
    "queue": CaseSearch(queue="support"),
    "workgroup": CaseSearch(workgroup="billing"),
    "opened from": CaseSearch(created_from=1100.0),
    "opened before": CaseSearch(created_to=1050.0),
    "a time range": CaseSearch(created_from=1050.0, created_to=1100.0),
    "all together": CaseSearch(owner="bob", statuses=("open", "in_progress"), queue="sales"),
}


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_narrows_to_exactly_the_matching_cases(
    data: tuple[SqlCaseStore, list[Case]], name: str
) -> None:
    store, cases = data
    s = FILTERS[name]
    want = expected(cases, s)
    assert 0 < len(want) < len(cases), f"{name}: the data set does not exercise this filter"
    page = store.search_cases(dataclasses.replace(s, limit=1000))
    assert [c.id for c in page.cases] == want
    assert page.total == len(want) and not page.more


def test_time_range_bounds_are_from_inclusive_to_exclusive(
    data: tuple[SqlCaseStore, list[Case]],
) -> None:
    store, cases = data
    at = {c.id for c in cases if c.created_at == 1050.0}
    assert at
    got = store.search_cases(CaseSearch(created_from=1050.0, created_to=1050.0 + 1e-6, limit=1000))
    assert {c.id for c in got.cases} == at
    assert store.search_cases(CaseSearch(created_from=1050.0, created_to=1050.0)).total == 0


@pytest.mark.parametrize("sort", ["created_at", "updated_at"])
@pytest.mark.parametrize("descending", [True, False])
def test_sorting_orders_by_the_time_then_the_case_number(
    data: tuple[SqlCaseStore, list[Case]], sort: str, descending: bool
) -> None:
    store, cases = data
    s = CaseSearch(sort=sort, descending=descending, limit=1000)  # type: ignore[arg-type]
    got = store.search_cases(s).cases
    keys = [s.key(c) for c in got]
    assert keys == sorted(keys, reverse=descending)
    assert len({k[0] for k in keys}) < len(keys)  # ties exist: the id decides them
    assert [c.id for c in got] == expected(cases, s)


searches = st.builds(
    CaseSearch,
    caller=st.none() | st.sampled_from(CALLERS),
    ids=st.just(()) | st.lists(st.integers(1, 95), max_size=12).map(tuple),
    types=st.just(()) | st.lists(st.sampled_from(TYPES), max_size=3).map(tuple),
    statuses=st.just(())
    | st.lists(st.sampled_from(["open", "in_progress", "resolved", "closed"]), max_size=2).map(
        tuple
    ),
    owner=st.none() | st.sampled_from([*OWNERS, "nobody"]),
    queue=st.none() | st.sampled_from(QUEUES),
    workgroup=st.none() | st.sampled_from(GROUPS),
    created_from=st.none() | st.sampled_from(TIMES),
    created_to=st.none() | st.sampled_from(TIMES),
    sort=st.sampled_from(["created_at", "updated_at"]),
    descending=st.booleans(),
    limit=st.integers(1, 12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=searches)
def test_pages_cover_every_match_exactly_once_in_order(
    data: tuple[SqlCaseStore, list[Case]], s: CaseSearch
) -> None:
    store, cases = data
    seen, pages = all_pages(store, s)
    assert seen == expected(cases, s)  # all of them, once each, in the asked order
    assert all(p.total == len(seen) for p in pages)
    assert all(len(p.cases) == s.limit for p in pages[:-1])
    assert len(pages[-1].cases) <= s.limit


def test_cases_opened_while_paging_neither_repeat_nor_push_others_out(tmp_path: Path) -> None:
    store = SQLiteCaseStore(tmp_path / "c.sqlite3")
    try:
        first = [store.open_case(NewCase(caller_number="+1", at=10.0)).id for _ in range(7)]
        s = CaseSearch(limit=3)  # newest first
        page = store.search_cases(s)
        for _ in range(4):  # new calls arrive (same second, too) while the supervisor pages
            store.open_case(NewCase(caller_number="+1", at=10.0))
        seen = [c.id for c in page.cases]
        while page.more:
            page = store.search_cases(dataclasses.replace(s, after=s.key(page.cases[-1])))
            seen += [c.id for c in page.cases]
        assert seen == sorted(first, reverse=True)
    finally:
        store.close()


def test_a_search_refuses_what_no_case_can_be() -> None:
    with pytest.raises(CaseError, match="case type"):
        CaseSearch(types=("rant",))
    with pytest.raises(CaseError, match="status"):
        CaseSearch(statuses=("lost",))
    with pytest.raises(CaseError, match="sort"):
        CaseSearch(sort="caller")  # type: ignore[arg-type]


# -- what an answer does to a case -------------------------------------------------------------


def test_an_answer_makes_the_agent_owner_and_the_case_worked_on() -> None:
    case = Case(id=1, caller_number="+1")
    assert answer_changes(case, "alice") == {"owner": "alice", "status": "in_progress"}
    worked = dataclasses.replace(case, owner="alice", status="in_progress")
    assert answer_changes(worked, "alice") == {}
    assert answer_changes(worked, "bob") == {"owner": "bob"}  # a transfer to a colleague
    closed = dataclasses.replace(case, status="closed")
    assert answer_changes(closed, "bob") == {"owner": "bob"}  # closed stays closed


def test_a_queued_event_files_the_case_under_its_queue_without_a_second_event(
    tmp_path: Path,
) -> None:
    store = SQLiteCaseStore(tmp_path / "c.sqlite3")
    try:
        case = store.open_case(NewCase(caller_number="+1", at=1.0))
        queued = CaseEvent(at=2.0, kind="queued", actor="acd", data={"queue": "sales"})
        done = store.update_case(case.id, at=2.0, actor="acd", events=[queued], queue="sales")
        assert done.queue == "sales"
        assert [e.kind for e in store.events(case.id)] == ["opened", "queued"]
        # A later move to another queue is a change of its own.
        moved = CaseEvent(at=3.0, kind="transferred", actor="acd", data={"to_queue": "vip"})
        store.update_case(case.id, at=3.0, actor="acd", events=[moved], queue="vip")
        assert [(e.kind, e.data.get("to")) for e in store.events(case.id)[2:]] == [
            ("transferred", None),
            ("queue_changed", "vip"),
        ]
    finally:
        store.close()


async def test_the_writer_applies_a_planned_change_after_what_was_queued_before(
    tmp_path: Path,
) -> None:
    store = SQLiteCaseStore(tmp_path / "c.sqlite3")
    writer = AsyncCaseWriter(store)
    try:
        case = await writer.run(lambda s: s.open_case(NewCase(caller_number="+1", at=1.0)))
        answered = CaseEvent(at=2.0, kind="answered", actor="alice", data={"agent": "alice"})
        writer.update_case(
            case.id,
            lambda c: answer_changes(c, "alice"),
            at=2.0,
            actor="alice",
            reason="answered",
            events=[answered],
        )
        await writer.flush()
        trail = store.events(case.id)
        assert [(e.kind, e.actor, e.data.get("to")) for e in trail] == [
            ("opened", "system", None),
            ("answered", "alice", None),
            ("owner_changed", "alice", "alice"),
            ("status_changed", "alice", "in_progress"),
        ]
        assert trail[-1].data["reason"] == "answered"
        # A change the case refuses is counted as failed, and its events are still written.
        writer.update_case(
            case.id,
            lambda c: {"case_type": "rant"},
            at=3.0,
            actor="x",
            events=[CaseEvent(at=3.0, kind="note", actor="x", data={"text": "kept"})],
        )
        with pytest.raises(Exception, match="1 writes failed"):
            await writer.flush()
        assert store.events(case.id)[-1].data == {"text": "kept"}
        assert store.get_case(case.id).case_type == "query"  # type: ignore[union-attr]
    finally:
        await writer.close()
        store.close()
