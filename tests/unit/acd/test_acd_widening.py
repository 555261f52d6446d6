"""Queue membership by widening step, and the step a wait has reached."""

from __future__ import annotations

from acd.config import AcdConfig
from acd.widening import describe_step, members, next_step_at, relax_for, step_for


def test_members_steps_and_group_ranks() -> None:
    cfg = AcdConfig.from_dict(
        {
            "queues": {
                "q": {
                    "groups": ["t1", "t2"],
                    "widening": [
                        {"after_seconds": 30, "relax_levels": 1},
                        {"after_seconds": 60, "relax_levels": 2, "add_groups": ["backup"]},
                    ],
                }
            },
            "agents": {
                "direct": {"queues": {"q": {"penalty": 2, "position": 7, "weight": 3}}},
                "tier2": {"groups": ["t2"]},
                "both": {"groups": ["backup", "t1"]},
                "backup": {"groups": ["backup"]},
                "other": {"groups": ["x"]},
            },
        }
    )
    q = cfg.queues["q"]
    m = members(q, cfg.agents.values())
    assert set(m) == {"direct", "tier2", "both", "backup"}
    assert (m["direct"].penalty, m["direct"].position, m["direct"].weight, m["direct"].step) == (
        2,
        7,
        3.0,
        0,
    )
    assert (m["tier2"].group_rank, m["tier2"].step) == (1, 0)
    assert (m["both"].group_rank, m["both"].step) == (0, 0)  # the earliest route wins
    assert (m["backup"].group_rank, m["backup"].step) == (3, 2)
    assert [step_for(q, w) for w in (0, 29.9, 30, 59, 60, 999)] == [0, 0, 1, 1, 2, 2]
    assert [relax_for(q, s) for s in (0, 1, 2)] == [0, 1, 3]
    assert next_step_at(q, 0) == 30 and next_step_at(q, 2) is None
    assert describe_step(q, 2) == {"step": 2, "relax_levels": 3, "groups": ["t1", "t2", "backup"]}
