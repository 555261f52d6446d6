"""One suite, run on SQLite and on a real PostgreSQL server (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from acd.cases import CaseError, CaseEvent, NewCase
from acd.escalation import EscalationPolicy, escalate_overdue
from acd.store._sql import SqlCaseStore


def test_open_case_records_opened_event(store: SqlCaseStore) -> None:
    case = store.open_case(
        NewCase(
            caller_number="+33 6 12 34 56 78",
            at=10.0,
            call_id="c1",
            case_type="fault",
            workgroup="tech",
        )
    )
    assert case.id > 0 and case.caller_number == "+33612345678" and case.status == "open"
    assert store.get_case(case.id) == case
    [ev] = store.events(case.id)
    assert ev.kind == "opened" and ev.at == 10.0 and ev.data["call_id"] == "c1"


def test_events_are_ordered_and_keep_their_data(store: SqlCaseStore) -> None:
    case = store.open_case(NewCase(caller_number="100", at=1.0))
    s1 = store.append_event(
        case.id, CaseEvent(at=2.0, kind="queued", actor="acd", data={"queue": "sales"})
    )
    s2 = store.append_event(
        case.id,
        CaseEvent(at=3.0, kind="ivr_input", data={"digits": "1#", "nested": [1, {"a": None}]}),
    )
    assert s2 > s1
    kinds = [(e.kind, e.data) for e in store.events(case.id)]
    assert kinds[1:] == [
        ("queued", {"queue": "sales"}),
        ("ivr_input", {"digits": "1#", "nested": [1, {"a": None}]}),
    ]
    assert store.get_case(case.id).updated_at == 3.0  # type: ignore[union-attr]


def test_updates_are_recorded_as_events(store: SqlCaseStore) -> None:
    case = store.open_case(NewCase(caller_number="100", at=1.0))
    case = store.update_case(case.id, at=5.0, actor="a7", owner="a7", status="in_progress")
    assert (case.owner, case.status, case.updated_at) == ("a7", "in_progress", 5.0)
    trail = store.events(case.id)
    assert [(e.kind, e.data["from"], e.data["to"], e.actor) for e in trail[1:]] == [
        ("owner_changed", "", "a7", "a7"),
        ("status_changed", "open", "in_progress", "a7"),
    ]


def test_closed_case_needs_reopen(store: SqlCaseStore) -> None:
    case = store.open_case(NewCase(caller_number="100", at=1.0))
    store.update_case(case.id, at=2.0, actor="a1", status="closed")
    with pytest.raises(CaseError, match="reopen"):
        store.update_case(case.id, at=3.0, actor="a1", status="in_progress")
    assert store.get_case(case.id).status == "closed"  # type: ignore[union-attr]
    assert len(store.events(case.id)) == 2  # the refused change left no trace
    reopened = store.reopen_case(case.id, at=4.0, actor="sup", reason="caller rang back")
    assert reopened.status == "open"
    assert store.events(case.id)[-1].kind == "reopened"
    with pytest.raises(CaseError, match="reopened"):
        store.reopen_case(case.id, at=5.0, actor="sup")


def test_events_table_is_append_only_in_sql(
    store_and_raw: tuple[SqlCaseStore, Callable[[str], None]],
) -> None:
    store, raw = store_and_raw
    case = store.open_case(NewCase(caller_number="100", at=1.0))
    store.append_log([{"at": 1.0, "kind": "call_arrived"}])
    for sql in (
        "UPDATE case_events SET kind = 'note'",
        "DELETE FROM case_events",
        "UPDATE acd_log SET kind = 'x'",
        "DELETE FROM acd_log",
    ):
        with pytest.raises(Exception, match="append-only"):
            raw(sql)
    assert [e.kind for e in store.events(case.id)] == ["opened"]
    assert len(store.read_log()) == 1


def test_caller_lookup_newest_first(store: SqlCaseStore) -> None:
    first = store.open_case(NewCase(caller_number="tel:+1-201-555-0123", at=1.0))
    store.open_case(NewCase(caller_number="+12015550199", at=2.0))
    second = store.open_case(NewCase(caller_number="sip:+12015550123@gw", at=3.0))
    third = store.open_case(NewCase(caller_number="+1 201 555 0123", at=4.0))
    got = store.cases_for_caller("+1 (201) 555-0123")
    assert [c.id for c in got] == [third.id, second.id, first.id]
    assert [c.id for c in store.cases_for_caller("+12015550123", limit=2)] == [third.id, second.id]
    assert store.cases_for_caller("+999") == []


def test_list_and_overdue(store: SqlCaseStore) -> None:
    a = store.open_case(
        NewCase(caller_number="1", at=1.0, owner="a1", workgroup="billing", due_at=50.0)
    )
    b = store.open_case(
        NewCase(caller_number="2", at=2.0, owner="a2", workgroup="billing", due_at=60.0)
    )
    c = store.open_case(
        NewCase(caller_number="3", at=3.0, owner="a1", workgroup="tech", due_at=40.0)
    )
    store.update_case(c.id, at=4.0, actor="a1", status="resolved")
    assert [x.id for x in store.list_cases(workgroup="billing")] == [b.id, a.id]
    assert [x.id for x in store.list_cases(owner="a1")] == [c.id, a.id]
    assert [x.id for x in store.list_cases(status="resolved")] == [c.id]
    assert [x.id for x in store.list_cases(owner="a1", status="open")] == [a.id]
    assert [x.id for x in store.find_overdue(55.0)] == [a.id]
    assert [x.id for x in store.find_overdue(100.0)] == [a.id, b.id]


def test_acd_log_round_trip(store: SqlCaseStore) -> None:
    assert store.append_log([]) == 0
    last = store.append_log(
        [
            {"at": 1.5, "kind": "call_arrived", "call": "c1"},
            {"at": 2.0, "kind": "answered", "agent": "a1"},
        ]
    )
    rows = store.read_log()
    assert [seq for seq, _ in rows][-1] == last
    assert [r for _, r in rows] == [
        {"at": 1.5, "kind": "call_arrived", "call": "c1"},
        {"at": 2.0, "kind": "answered", "agent": "a1"},
    ]
    assert store.read_log(since_seq=rows[0][0]) == rows[1:]
    assert store.read_log(limit=1) == rows[:1]
    with pytest.raises(CaseError, match="'at'"):
        store.append_log([{"kind": "x"}])


def test_event_for_unknown_case_is_refused(store: SqlCaseStore) -> None:
    with pytest.raises(Exception):  # noqa: B017 - driver-specific foreign key error
        store.append_event(424242, CaseEvent(at=1.0, kind="note"))


def test_escalation_applies_chain_once_per_level(store: SqlCaseStore) -> None:
    policy = EscalationPolicy(
        workgroup_leads={"billing": "lead-b"},
        targets={"supervisor": {"*": "sup"}, "manager": {"billing": "mgr"}},
        step_after_seconds=100.0,
    )
    case = store.open_case(
        NewCase(caller_number="1", at=0.0, owner="a1", workgroup="billing", due_at=50.0)
    )
    done = store.open_case(
        NewCase(caller_number="2", at=0.0, owner="a2", workgroup="billing", due_at=50.0)
    )
    store.update_case(done.id, at=10.0, actor="a2", status="closed")
    assert escalate_overdue(store, policy, 49.0) == []
    [e1] = escalate_overdue(store, policy, 60.0)
    assert (e1.case_id, e1.from_owner, e1.to_owner, e1.level) == (
        case.id,
        "a1",
        "lead-b",
        "workgroup_lead",
    )
    assert escalate_overdue(store, policy, 61.0) == []  # idempotent
    assert store.get_case(case.id).owner == "lead-b"  # type: ignore[union-attr]
    later = escalate_overdue(store, policy, 400.0)
    assert [(e.level, e.from_owner, e.to_owner) for e in later] == [
        ("supervisor", "lead-b", "sup"),
        ("manager", "sup", "mgr"),
    ]
    assert escalate_overdue(store, policy, 1000.0) == []
    trail = store.events(case.id)
    esc = [e for e in trail if e.kind == "escalated"]
    assert [e.data["level"] for e in esc] == ["workgroup_lead", "supervisor", "manager"]
    assert [e.data["to"] for e in trail if e.kind == "owner_changed"] == ["lead-b", "sup", "mgr"]
    assert store.get_case(case.id).owner == "mgr"  # type: ignore[union-attr]
