from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.cases import (
    Case,
    CaseError,
    CaseEvent,
    NewCase,
    check_transition,
    is_overdue,
    normalise_number,
    plan_update,
    validate_event,
    validate_new_case,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+33 1 23-45-67-89", "+33123456789"),
        ("tel:+1-201-555-0123;ext=12", "+12015550123"),
        ("sip:+4930123456@trunk.example;user=phone", "+4930123456"),
        ('"Alice" <sip:0612345678@pbx.local>', "0612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("(020) 7946.0958", "02079460958"),
        ("sip:Alice@example.com", "alice"),
    ],
)
def test_normalise_number(raw: str, expected: str) -> None:
    assert normalise_number(raw) == expected


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="0123456789 -.", min_size=1, max_size=20))
def test_normalise_is_idempotent(raw: str) -> None:
    once = normalise_number(raw)
    assert normalise_number(once) == once


def test_unknown_type_channel_and_empty_caller_are_refused() -> None:
    with pytest.raises(CaseError, match="case type"):
        validate_new_case(NewCase(caller_number="+1", at=0.0, case_type="rant"))
    with pytest.raises(CaseError, match="channel"):
        validate_new_case(NewCase(caller_number="+1", at=0.0, channel="fax"))
    with pytest.raises(CaseError, match="empty"):
        validate_new_case(NewCase(caller_number="  ", at=0.0))
    with pytest.raises(CaseError, match="kind"):
        validate_event(CaseEvent(at=0.0, kind="edited"))


def test_closed_is_terminal_until_reopened() -> None:
    check_transition("open", "in_progress")
    check_transition("resolved", "closed")
    with pytest.raises(CaseError, match="reopen"):
        check_transition("closed", "open")
    with pytest.raises(CaseError, match="already"):
        check_transition("open", "open")
    with pytest.raises(CaseError, match="status must be"):
        check_transition("open", "done")


def test_plan_update_lists_only_real_changes() -> None:
    case = Case(id=1, caller_number="+1", owner="a1", workgroup="billing")
    plan = plan_update(case, {"owner": "a2", "workgroup": "billing", "status": "pending"})
    assert plan == [("owner", "a1", "a2"), ("status", "open", "pending")]
    with pytest.raises(CaseError, match="cannot be updated"):
        plan_update(case, {"caller_number": "+2"})
    with pytest.raises(CaseError, match="case type"):
        plan_update(case, {"case_type": "rant"})


def test_overdue_only_while_active() -> None:
    case = Case(id=1, caller_number="+1", due_at=100.0)
    assert is_overdue(case, 100.0)
    assert not is_overdue(case, 99.9)
    assert not is_overdue(Case(id=1, caller_number="+1", due_at=100.0, status="resolved"), 200.0)
    assert not is_overdue(Case(id=1, caller_number="+1"), 1e12)
