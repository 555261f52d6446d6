"""Target widening over wait time, and who is a member of a queue at which widening step.

These read the queue configuration (``acd.config``), so they live in ``acd``: ``routing`` stays
free of ``acd`` imports (its input :class:`routing.member.MemberInfo` is built here).

A queue is served by its direct members (agents listing the queue) and by the agents of its
``groups``; widening step ``i`` (``after_seconds`` into the wait) adds ``add_groups`` and relaxes
skill minimums by ``relax_levels``. Steps are cumulative. A call's *step* is the number of steps
reached; an agent whose :class:`MemberInfo` has ``step <= call step`` may serve it.

Widening applies to calls already waiting and already being offered: when a step is reached the
engine re-evaluates the call at once, so ring-all and ring-progressively calls start ringing the
newly eligible agents, and a ring-one call's next offer (after a no-answer) uses the wider target.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from acd.config import AgentConfig, QueueConfig
from routing.member import MemberInfo


def step_for(queue: QueueConfig, waited: float) -> int:
    """Number of widening steps reached after ``waited`` seconds in the queue."""
    steps = queue.widening
    if not steps:
        return 0
    return bisect.bisect_right([s.after_seconds for s in steps], waited)


def relax_for(queue: QueueConfig, step: int) -> int:
    """Cumulative skill relaxation at ``step``."""
    return sum(s.relax_levels for s in queue.widening[:step])


def next_step_at(queue: QueueConfig, step: int) -> float | None:
    """Seconds into the wait at which step ``step + 1`` is reached, or None."""
    if step < len(queue.widening):
        return queue.widening[step].after_seconds
    return None


def members(queue: QueueConfig, agents: Iterable[AgentConfig]) -> dict[str, MemberInfo]:
    """Every agent who may ever serve ``queue``, with the step from which they may."""
    group_rank: dict[str, tuple[int, int]] = {}
    for i, g in enumerate(queue.groups):
        group_rank.setdefault(g, (i, 0))
    base = len(queue.groups)
    for si, st in enumerate(queue.widening):
        for g in st.add_groups:
            group_rank.setdefault(g, (base + si, si + 1))
    out: dict[str, MemberInfo] = {}
    for order, a in enumerate(agents):
        mem = a.queues.get(queue.name)
        best: tuple[int, int] | None = (0, 0) if mem is not None else None
        for g in a.groups:
            gr = group_rank.get(g)
            if gr is not None and (best is None or (gr[1], gr[0]) < (best[1], best[0])):
                best = gr
        if best is None:
            continue
        out[a.id] = MemberInfo(
            penalty=mem.penalty if mem is not None else 0,
            position=mem.position if mem is not None and mem.position is not None else order,
            weight=mem.weight if mem is not None else 1.0,
            group_rank=best[0],
            step=best[1],
        )
    return out


def describe_step(queue: QueueConfig, step: int) -> Mapping[str, object]:
    """What a call at ``step`` may use: relaxation and groups (for explanations)."""
    groups = list(queue.groups)
    for st in queue.widening[:step]:
        groups.extend(st.add_groups)
    return {"step": step, "relax_levels": relax_for(queue, step), "groups": groups}
