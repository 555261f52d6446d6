"""The one thing the contact center needs from the telephony side: ringing someone.

The center never sees the SIP gateway, the registrar or browser phones; the composition root
hands it an object with these two methods. That keeps the center testable without sockets
(tests/unit/center uses a scripted implementation) and lets the SIP user agent move without
touching the center.
"""

from __future__ import annotations

from typing import Protocol

from acd.engine import AcdEngine
from acd.events import Event
from media_gateway.session import CallSession


class Telephony(Protocol):
    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        """Ring an agent (id or extension: registered phone or browser phone), a sip: URI or a number; the answered session, or None when nobody answered. ``display`` is what an agent's SIP phone shows as the caller's name (``sales: +33612345678``). Raises LookupError (agent has no phone) or ValueError (bad target)."""

    def agent_reachable(self, agent_id: str) -> bool:
        """True while the agent has a registered phone or an open browser phone."""


class Acd(Protocol):
    """The center's ACD: :class:`acd.service.AcdService` on one node, or
    :class:`hotline.cluster.brain.ClusterAcd` on a cluster's node (the engine is then a replica
    of the routing brain's, and ``handle`` reaches it shortly after it returns)."""

    @property
    def engine(self) -> AcdEngine: ...

    def now(self) -> float: ...

    def handle(self, event: Event) -> None: ...
