from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.cases import Case, CaseEvent
from acd.escalation import EscalationPolicy, due_escalations, levels_done

POLICY = EscalationPolicy(
    workgroup_leads={"billing": "lead-b", "tech": "lead-t"},
    targets={"supervisor": {"*": "sup"}, "manager": {"tech": "mgr-t"}},
    step_after_seconds=60.0,
)


def test_first_level_is_the_owners_workgroup_lead() -> None:
    case = Case(id=7, caller_number="+1", owner="a1", workgroup="tech", due_at=100.0)
    assert due_escalations([case], 99.0, POLICY, {}) == []
    [esc] = due_escalations([case], 100.0, POLICY, {})
    assert (esc.from_owner, esc.to_owner, esc.level, esc.index) == (
        "a1",
        "lead-t",
        "workgroup_lead",
        0,
    )
    assert due_escalations([case], 100.0, POLICY, {7: 1}) == []


def test_chain_goes_up_one_level_per_step_and_stops_at_the_top() -> None:
    case = Case(id=1, caller_number="+1", owner="lead-t", workgroup="tech", due_at=0.0)
    got = due_escalations([case], 130.0, POLICY, {1: 1})
    assert [(e.level, e.from_owner, e.to_owner) for e in got] == [
        ("supervisor", "lead-t", "sup"),
        ("manager", "sup", "mgr-t"),
    ]
    assert due_escalations([case], 1e9, POLICY, {1: 3}) == []


def test_missing_target_keeps_the_owner_but_still_escalates() -> None:
    case = Case(id=1, caller_number="+1", owner="a9", workgroup="sales", due_at=0.0)
    [esc] = due_escalations([case], 10.0, POLICY, {})
    assert (esc.to_owner, esc.level) == ("a9", "workgroup_lead")


def test_done_cases_never_escalate() -> None:
    for status in ("resolved", "closed"):
        case = Case(id=1, caller_number="+1", status=status, due_at=0.0)
        assert due_escalations([case], 1e9, POLICY, {}) == []


def test_levels_done_reads_the_trail() -> None:
    trail = [
        CaseEvent(at=0.0, kind="opened"),
        CaseEvent(at=1.0, kind="escalated", data={"index": 0}),
        CaseEvent(at=2.0, kind="escalated", data={"index": 1}),
        CaseEvent(at=3.0, kind="note", data={"index": 9}),
    ]
    assert levels_done(trail) == 2
    assert levels_done([]) == 0


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="chain"):
        EscalationPolicy(chain=())
    with pytest.raises(ValueError, match="step_after_seconds"):
        EscalationPolicy(step_after_seconds=0.0)


@settings(max_examples=60, deadline=None)
@given(
    due=st.floats(0, 1000),
    times=st.lists(st.floats(0, 2000), min_size=1, max_size=8),
)
def test_repeated_passes_escalate_each_level_once(due: float, times: list[float]) -> None:
    """Whatever the pass times, levels come out once each, in chain order, none before its time."""
    case = Case(id=1, caller_number="+1", owner="a1", workgroup="billing", due_at=due)
    done = 0
    seen: list[int] = []
    for now in sorted(times):
        for esc in due_escalations([case], now, POLICY, {1: done}):
            assert due + esc.index * POLICY.step_after_seconds <= now
            seen.append(esc.index)
            done = esc.index + 1
    assert seen == list(range(len(seen)))
    assert len(seen) <= len(POLICY.chain)
