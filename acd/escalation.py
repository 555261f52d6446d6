"""Escalation of overdue cases (pure decisions + a small service applying them to a store).

A case still active at its due time escalates to the first level of the chain (by default the
owner's workgroup lead), then, every ``step_after_seconds`` later, one level further up. Every
escalation is an ``escalated`` event on the trail; the level reached is read back from that trail,
so applying the same decisions twice never escalates twice for one level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acd.cases import Case, CaseEvent, is_overdue

if TYPE_CHECKING:
    from acd.store import CaseStore


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationPolicy:
    """Where overdue cases go."""

    chain: tuple[str, ...] = ("workgroup_lead", "supervisor", "manager")
    """Level names, lowest first."""
    workgroup_leads: Mapping[str, str] = field(default_factory=dict)
    """workgroup -> lead (the ``workgroup_lead`` level)."""
    targets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """level -> (workgroup or ``"*"`` for any) -> person, for the other levels."""
    step_after_seconds: float = 3600.0
    """Delay between one level and the next (level k is due at ``due_at + k * step``)."""

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("escalation chain must not be empty")
        if self.step_after_seconds <= 0:
            raise ValueError(f"step_after_seconds: expected > 0, got {self.step_after_seconds}")

    def target(self, level: str, workgroup: str) -> str:
        """The person for ``level`` in ``workgroup`` ("" when none is configured)."""
        if level == "workgroup_lead":
            return self.workgroup_leads.get(workgroup, "")
        by_group = self.targets.get(level, {})
        return by_group.get(workgroup, by_group.get("*", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalate:
    """Action: move ``case_id`` to ``to_owner`` at chain position ``index`` (named ``level``)."""

    case_id: int
    from_owner: str
    to_owner: str
    level: str
    index: int


def levels_done(events: Iterable[CaseEvent]) -> int:
    """How many chain levels a trail already records (highest ``escalated`` index + 1)."""
    done = 0
    for ev in events:
        if ev.kind == "escalated":
            idx = ev.data.get("index")
            if isinstance(idx, int):
                done = max(done, idx + 1)
    return done


def due_escalations(
    cases: Sequence[Case], now: float, policy: EscalationPolicy, done: Mapping[int, int]
) -> list[Escalate]:
    """Escalations due at ``now``: for each overdue case, every level from ``done[case.id]`` whose
    time has come, in chain order (several when the service was down for a while)."""
    out: list[Escalate] = []
    for case in cases:
        if not is_overdue(case, now) or case.due_at is None:
            continue
        owner = case.owner
        for index in range(done.get(case.id, 0), len(policy.chain)):
            if case.due_at + index * policy.step_after_seconds > now:
                break
            level = policy.chain[index]
            to_owner = policy.target(level, case.workgroup) or owner
            out.append(
                Escalate(
                    case_id=case.id, from_owner=owner, to_owner=to_owner, level=level, index=index
                )
            )
            owner = to_owner
    return out


def escalate_overdue(
    store: CaseStore, policy: EscalationPolicy, now: float, *, actor: str = "escalation"
) -> list[Escalate]:
    """Apply due escalations to ``store``: each one an ``escalated`` event plus the owner change,
    in one transaction. Safe to call repeatedly (levels already on the trail are skipped)."""
    overdue = store.find_overdue(now)
    done = {case.id: levels_done(store.events(case.id)) for case in overdue}
    applied = due_escalations(overdue, now, policy, done)
    for esc in applied:
        event = CaseEvent(
            at=now,
            kind="escalated",
            actor=actor,
            data={
                "level": esc.level,
                "index": esc.index,
                "from": esc.from_owner,
                "to": esc.to_owner,
            },
        )
        store.update_case(
            esc.case_id,
            at=now,
            actor=actor,
            reason=f"escalated to {esc.level}",
            events=[event],
            owner=esc.to_owner,
        )
    return applied
