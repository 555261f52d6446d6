"""Skill requirements: levels 1-10, minimum levels, relaxation (see ``acd.widening``).

A requirement ``{"fr": 5}`` is met by an agent whose ``fr`` level is at least 5. Relaxing by ``r``
levels lowers every minimum by ``r``; a minimum relaxed to 0 or below is dropped, so an agent
without the skill then qualifies (Genesys bullseye "skills removed").
"""

from __future__ import annotations

from collections.abc import Mapping


def merge_requirements(queue: Mapping[str, int], call: Mapping[str, int]) -> dict[str, int]:
    """The call's effective requirements: the queue's and the call's own, highest level wins."""
    out = dict(queue)
    for skill, level in call.items():
        if level > out.get(skill, 0):
            out[skill] = level
    return out


def meets(agent_skills: Mapping[str, int], required: Mapping[str, int], relax: int = 0) -> bool:
    """True when every required minimum (lowered by ``relax``) is met."""
    # a plain loop: this is the hot path of every decision, all() with a generator is slower
    for skill, level in required.items():  # noqa: SIM110
        if agent_skills.get(skill, 0) < level - relax:
            return False
    return True


def shortfall(
    agent_skills: Mapping[str, int], required: Mapping[str, int], relax: int = 0
) -> list[str]:
    """Human-readable unmet requirements, e.g. ``["fr 3 < 5"]`` (for explanations)."""
    out = []
    for skill, level in required.items():
        have = agent_skills.get(skill, 0)
        if have < level - relax:
            out.append(f"{skill} {have} < {level - relax}")
    return out


def match_score(agent_skills: Mapping[str, int], required: Mapping[str, int]) -> float:
    """Mean level over the required skills, normalised to 0..1 (1.0 when nothing is required)."""
    if not required:
        return 1.0
    total = 0
    for skill in required:
        total += min(agent_skills.get(skill, 0), 10)
    return total / (10.0 * len(required))
