"""The one place a ``CallSession`` is built, and what channels need from their host.

Every channel (an inbound or outbound SIP dialog, a WebRTC caller, an agent's browser phone)
ends up as a ``CallSession`` with the same media client, default language and transfer hook;
``SessionFactory.build`` is where that happens, so a new session-wide setting is added once.

``SessionHost`` is what a non-SIP channel (``media_gateway/webrtc.py``) needs from the user
agent that hosts it: the factory, the media client, the registrations (to log a browser phone
in), and a way to route a new session like an INVITE. The SIP user agent implements it; the
channel modules never import the composition root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from media_gateway.media.client import MediaClient
from media_gateway.session import CallSession, Leg

if TYPE_CHECKING:
    from media_gateway.registrations import Registrations

Direction = Literal["inbound", "outbound"]
Rerouter = Callable[[CallSession, str], Awaitable[bool]]


@dataclass(slots=True)
class SessionFactory:
    """Builds sessions with the settings every channel shares."""

    media: MediaClient
    """The media process (or the in-loop media server) every session's channel lives in."""
    language: str = "en"
    """Prompt language of a session until its caller chooses one."""
    rerouter: Rerouter | None = None
    """Transfer by re-routing (we call the target and bridge): set by the user agent."""

    def build(
        self,
        *,
        session_id: str,
        leg: Leg,
        chan: str,
        caller: str,
        dialled: str,
        direction: Direction,
        answered: bool = False,
    ) -> CallSession:
        session = CallSession(
            session_id=session_id,
            leg=leg,
            media=self.media,
            chan=chan,
            caller=caller,
            dialled=dialled,
            direction=direction,
            lang=self.language,
            rerouter=self.rerouter,
        )
        if answered:
            session.state = "answered"
        return session


class SessionHost(Protocol):
    """What a channel that is not SIP (WebRTC) needs from the user agent hosting it."""

    @property
    def sessions(self) -> SessionFactory: ...

    @property
    def media(self) -> MediaClient: ...

    @property
    def registrations(self) -> Registrations: ...

    async def accept_session(self, session: CallSession, number: str) -> bool:
        """Route ``number`` like an INVITE's and run its service on ``session``; False when no
        entry point takes it."""
        ...
