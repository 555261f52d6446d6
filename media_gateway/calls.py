"""What the SIP user agent and its collaborators share about calls: its settings, what the
service switch is asked and answers, what it reports for the metrics, the wire it sends on, and
the record it keeps of each call in progress.

Kept apart from ``ua.py`` (the behaviour) so the switch, the tests' in-memory wire and the
metrics see the vocabulary without the machinery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from media_gateway.sdp.session import SessionDescription
from media_gateway.session import CallSession
from media_gateway.sessions import Direction
from media_gateway.sip.dialog import CallHandle
from media_gateway.sip.limits import LimitsConfig
from media_gateway.sip_leg import SipLeg

Service = Callable[[CallSession], Awaitable[None]]
"""What runs on an answered-or-about-to-be-answered inbound session until the call is over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UaSettings:
    """The user agent's own settings (the composition root fills them from configuration)."""

    sip_host: str = "127.0.0.1"
    """Address the SIP transports listen on."""
    sip_port: int = 5060
    public_host: str = "127.0.0.1"
    """IP literal written into Contact and SDP."""
    transports: tuple[str, ...] = ("udp", "tcp")
    user_agent: str = "hotline"
    max_server_transactions: int = 20000
    """Past this many unanswered server transactions, new INVITEs get 503."""
    retry_after: int = 5
    max_loop_lag: float = 0.25
    """Event-loop lag (seconds) past which new INVITEs get 503 + Retry-After."""
    udp_receive_buffer: int = 4 * 1024 * 1024
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """Per-source limits and the set-up bound (``[sip.limits]``)."""
    max_calls_per_source: int = 0
    """Inbound calls (each holding RTP ports) one source IP may have at once; past it, 503
    with Retry-After. 0: no limit. Trunks' addresses are exempt."""
    srtp: str = "off"
    """SRTP policy (``off``, ``optional``, ``required``) for calls with phones; trunks have
    their own (``Trunk.srtp``)."""
    srtp_over_plain_sip: bool = False
    """Negotiate SDES keys over SIP that is not TLS (UDP, TCP) too."""
    edge: tuple[str, int] | None = None
    """A cluster's edge proxy: users not registered here are rung through it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundCall:
    """What the service switch sees of a new INVITE."""

    call_id: str
    number: str
    """The dialled number (Request-URI user), or the entry a trunk's DID maps it to."""
    route: str
    """``dialled``, or ``trunk:NAME`` when it came from a trunk's address with a known DID."""
    caller: str
    """The From user (the caller's number or SIP user)."""
    source: tuple[str, int]
    transport: str


@dataclass(frozen=True, slots=True)
class Route:
    """The service switch's answer: which service runs the call."""

    kind: str
    """What the number is (``echo``, ``hotline``, ``queue``, ``extension``...): logs, metrics."""
    service: Service


class CallRouter(Protocol):
    """The service switch: what a dialled number leads to."""

    def route(self, call: InboundCall) -> Route | int:
        """The service to run on the call, or a SIP status to refuse it with (404, 480...)."""
        ...


class UaObserver(Protocol):
    """What the user agent reports for the metrics."""

    def sip_request(self, method: str) -> None:
        """A request received, by method."""
        ...

    def registration(self, outcome: str) -> None:
        """A REGISTER answered: ``challenged``, ``bad_request`` or the status."""
        ...

    def call_setup(self, seconds: float) -> None:
        """An inbound call answered: INVITE received -> 200 OK sent."""
        ...

    def call_ended(self, direction: str, outcome: str) -> None: ...


class Wire(Protocol):
    """What carries the endpoint's datagrams: ``transport.SipTransport`` on real sockets, or an
    in-memory pair in the unit tests. ``pump()`` delivers events and sends what is queued."""

    loop_lag: float

    def pump(self) -> None: ...

    async def close(self) -> None: ...


class NullObserver:
    """Observes nothing: the user agent's default when no metrics are wired."""

    def sip_request(self, method: str) -> None:
        pass

    def registration(self, outcome: str) -> None:
        pass

    def call_setup(self, seconds: float) -> None:
        pass

    def call_ended(self, direction: str, outcome: str) -> None:
        pass


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """What the user agent keeps about one SIP call in progress (either direction)."""

    call_id: str
    direction: Direction
    entry: str
    """``inbound``: the number's service kind as the switch named it; ``dial`` for outbound."""
    caller: str
    dialled: str
    started: float
    handle: CallHandle | None = None
    chan: str = ""
    """The call's media channel in the media process ("" until opened, or once closed)."""
    leg: SipLeg | None = None
    session: CallSession | None = None
    answered_at: float | None = None
    outcome: str = ""
    route: str = "dialled"
    source: tuple[str, int] | None = None
    agent: str = ""
    """Outbound: the user whose phone was called."""
    trunk: str = ""
    caller_id: str = ""
    srtp: str = "off"
    """The call's SRTP policy (``off``, ``optional``, ``required``; sdp/offer_answer.py)."""
    offer: SessionDescription | None = None
    """Outbound: our SDP offer, until the answer arrives."""
    answered: asyncio.Future[None] | None = None
    """Outbound: resolved once the answer's media is applied."""
    done: asyncio.Future[CallReport] | None = None
    """Resolved when the call ends."""


@dataclass(frozen=True, slots=True)
class CallReport:
    """How an outbound test call went (``POST /api/dial``)."""

    call_id: str
    outcome: str
    talk_seconds: float = 0.0
    agent: str = ""
    trunk: str = ""
    caller_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "outcome": self.outcome,
            "talk_seconds": self.talk_seconds,
        }
        for key in ("agent", "trunk", "caller_id"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out
