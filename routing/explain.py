"""Why a call goes (or would go) to an agent: the considered agents, their eligibility and scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Considered:
    """One agent the decision looked at."""

    agent_id: str
    eligible: bool
    """Routable now and qualified for the call at its current widening step."""
    reason: str
    """Why not (``"paused: lunch"``, ``"missing skill fr 3 < 5"``, ``"group added at step 1"``),
    or the strategy's scoring summary."""
    score: float | None = None
    criteria: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """A decision explained, best candidate first."""

    call_id: str
    queue: str
    strategy: str
    at: float
    target: Mapping[str, Any]
    """The call's requirements and widening: ``required``, ``step``, ``relax_levels``, ``groups``."""
    ringing: Sequence[str]
    """Agents currently rung for the call."""
    choice: Sequence[str]
    """Agents the strategy would pick now (empty if none is eligible or the call is ringing)."""
    considered: Sequence[Considered]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the HTTP API."""
        return {
            "call_id": self.call_id,
            "queue": self.queue,
            "strategy": self.strategy,
            "at": self.at,
            "target": dict(self.target),
            "ringing": list(self.ringing),
            "choice": list(self.choice),
            "considered": [
                {
                    "agent_id": c.agent_id,
                    "eligible": c.eligible,
                    "reason": c.reason,
                    "score": c.score,
                    "criteria": dict(c.criteria),
                }
                for c in self.considered
            ],
        }

    def text(self) -> str:
        """A few lines a supervisor can read."""
        lines = [
            f"call {self.call_id} in {self.queue} ({self.strategy}), target {dict(self.target)}",
        ]
        if self.ringing:
            lines.append(f"  ringing: {', '.join(self.ringing)}")
        if self.choice:
            lines.append(f"  would offer to: {', '.join(self.choice)}")
        for c in self.considered:
            mark = "+" if c.eligible else "-"
            score = f" score={c.score:.3f}" if c.score is not None else ""
            lines.append(f"  {mark} {c.agent_id}{score}: {c.reason}")
        return "\n".join(lines)
