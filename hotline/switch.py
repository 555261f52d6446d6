"""The service switch: what a dialled number leads to (the user agent's ``CallRouter``).

Entry points come from configuration (``[entry_points]``: a number -> a kind and a target).
``echo`` is the user agent's echo test; ``hotline``/``ivr``/``queue``/``voicemail`` go to the
contact center; ``agent`` rings one employee from outside. A number that is no entry point but
an employee's extension (or id) rings that colleague when the call comes from a registered
phone; from anywhere else it is refused with 480.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from hotline.config import Config
from media_gateway.calls import InboundCall, Route
from media_gateway.session import CallSession, keep_bridged
from media_gateway.sip_leg import SipLeg
from media_gateway.ua import SipUserAgent

log = structlog.get_logger("hotline.switch")

CenterHandler = Callable[[CallSession, str, str], Awaitable[None]]
"""``handle_call(session, kind, target)`` of the contact center."""

CENTER_KINDS = ("hotline", "ivr", "queue", "voicemail")


class ServiceSwitch:
    """Maps dialled numbers to services; the composition root wires the contact center in."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ua: SipUserAgent | None = None
        self.center: CenterHandler | None = None

    def directory(self, target: str) -> str | None:
        """The employee a dialled target names (their id or extension), as a SIP user."""
        agent = next(
            (a for a in self.config.agents if a.id and target in (a.id, a.extension)), None
        )
        return agent.id if agent is not None else None

    def route(self, call: InboundCall) -> Route | int:
        ua = self.ua
        assert ua is not None, "the switch is wired to a user agent before it starts"
        entry = self.config.entry_point(call.number)
        if entry is not None:
            if entry.kind == "echo":
                return Route("echo", ua.echo)
            if entry.kind == "agent":
                return Route("agent", self._call_colleague(entry.target))
            if entry.kind in CENTER_KINDS and self.center is not None:
                return Route(entry.kind, self._center_service(entry.kind, entry.target))
            return 480
        callee = self.directory(call.number)
        if callee is None:
            return 404
        if call.transport == "ws":
            return 404  # web callers reach entry points only
        users = [a.id for a in self.config.agents]
        if not ua.registrations.registered_at(call.source, users, ua.loop.time()):
            return 480  # only employees' registered phones call a colleague directly
        return Route("extension", self._call_colleague(callee))

    def _center_service(self, kind: str, target: str) -> Callable[[CallSession], Awaitable[None]]:
        center = self.center
        assert center is not None

        async def service(session: CallSession) -> None:
            await center(session, kind, target)

        return service

    def _call_colleague(self, callee: str) -> Callable[[CallSession], Awaitable[None]]:
        """Ring one employee for this caller and join them (ringback meanwhile)."""

        async def service(session: CallSession) -> None:
            ua = self.ua
            assert ua is not None
            if isinstance(session.leg, SipLeg):
                ua.ringing(session.leg.handle)
            other = await ua.originate(callee, ring_timeout=30.0, caller=session.caller)
            if other is None:
                await session.hangup("no_answer")  # unanswered: 480 to the caller
                return
            if session.state == "ended":
                await other.hangup("caller_gone")
                return
            await session.answer()
            await session.bridge(other)
            await keep_bridged(session, other)

        return service
