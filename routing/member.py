"""How an agent belongs to a queue: the routing input the engine builds from its configuration.

The engine (``acd.widening.members``) computes one :class:`MemberInfo` per agent and queue; strategies
read it in ``key`` and ``choose`` (penalty tiers, positions, weights). It lives in ``routing`` so
routing depends on nothing in ``acd`` (the engine depends on routing, not the other way).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """How one agent belongs to one queue."""

    penalty: int
    """Tier (lower first)."""
    position: int
    """Order for linear strategies."""
    weight: float
    """Weight for weighted-random."""
    group_rank: int
    """0 for direct members and the first group; ``i`` for the queue's ``i``-th group; groups added by
    widening step ``s`` rank after all configured groups."""
    step: int
    """The widening step from which the agent may serve the queue's calls (0 = from the start)."""
