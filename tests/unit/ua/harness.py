"""A unit harness for the SIP user agent: a real ``SipUserAgent``, no SIP sockets.

* :class:`Wire` is the user agent's transport (the ``Wire`` protocol of ``media_gateway/ua.py``):
  ``pump()`` drains the UA endpoint's events into ``ua.on_event`` (as ``transport.py``'s pump
  does), carries the UA's datagrams to the :class:`Phone` at their destination address and the
  phones' datagrams back, and keeps one ``loop.call_at`` armed for the earliest SIP timer of
  any endpoint. The clock is the loop's (``loop.time()``, which the UA reads): nothing is
  time-travelled, so tests keep their timeouts short.
* :class:`Phone` is a peer ``SipEndpoint`` at its own address (``127.0.0.2:5062``...) with the
  helpers of a desk phone: INVITE with an SDP offer, answer, BYE, re-INVITE (hold/unhold),
  INFO keys, REFER (blind, or attended with Replaces), REGISTER with digest. It answers the
  UA's NOTIFYs with 200 by itself and keeps every message the UA sent it.
* :class:`ScriptedRouter` is the ``CallRouter``: a number -> a ``Route`` or a status; it keeps
  every ``InboundCall`` it was asked about.
* Media is the real media server in-process (``LocalMedia``), RTP on 127.0.0.1:41000-41999.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from media_gateway.calls import InboundCall, Route, Service, UaSettings
from media_gateway.media.client import LocalMedia
from media_gateway.registrations import Registrations, RegistrationSettings
from media_gateway.sdp.offer_answer import make_offer
from media_gateway.sdp.session import SessionDescription
from media_gateway.session import CallSession
from media_gateway.sip import events as ev
from media_gateway.sip.auth import build_authorization, pick_challenge
from media_gateway.sip.dialog import CallHandle
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.message import SipRequest, SipResponse
from media_gateway.sip.parser import parse_message
from media_gateway.ua import SipUserAgent

UA_ADDR = ("127.0.0.1", 5060)
RTP_PORTS = (41000, 41999)
PASSWORDS = {"alice": "wonderland", "carol": "c4rol-pw", "dave": "d4ve-pw"}
DIRECTORY = {"alice": "alice", "1001": "alice", "carol": "carol", "1002": "carol"}

_seeds = itertools.count(100)


def offer_sdp(
    ip: str = "127.0.0.2",
    port: int = 40000,
    *,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    direction: str = "sendrecv",
    version: int = 0,
) -> bytes:
    """A phone's SDP offer (as ``make_offer`` writes ours: G.711 + telephone-event)."""
    sd = make_offer(
        local_ip=ip,
        local_port=port,
        codecs=codecs,
        direction=direction,
        session_id="4242",
        version=version,
    )
    return sd.to_bytes()


def audio_direction(body: bytes) -> str:
    """The audio stream's direction attribute in an SDP body (``sendrecv`` when absent)."""
    sd = SessionDescription.parse(body)
    for m in sd.media:
        for name, _value in m.attributes:
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                return name
    return "sendrecv"


@dataclass(frozen=True, slots=True)
class FakeTrunk:
    """Any object with the attributes of ``trunk_registrations.Trunk``."""

    name: str = "carrier"
    address: tuple[str, int] = ("127.0.0.9", 5060)
    username: str = ""
    password: str = ""
    register: bool = False
    expires: int = 3600
    dids: Mapping[str, str] = field(default_factory=lambda: {"+33123456789": "100"})
    caller_id: str = ""
    caller_id_display: str = ""
    withhold_caller_id: bool = False


class ScriptedRouter:
    """The service switch of one test: ``numbers`` maps a dialled number to a Route or a status
    (anything else is 404); ``asked`` keeps every call it was asked about."""

    def __init__(self) -> None:
        self.numbers: dict[str, Route | int] = {}
        self.asked: list[InboundCall] = []

    def route(self, call: InboundCall) -> Route | int:
        self.asked.append(call)
        return self.numbers.get(call.number, 404)


class ServiceProbe:
    """A service that records the sessions it ran on and what happens to them.

    ``body`` (optional) runs after the answer; the service then waits for the call to end."""

    def __init__(
        self,
        *,
        answer: bool = True,
        body: Callable[[CallSession], Any] | None = None,
    ) -> None:
        self.answer = answer
        self.body = body
        self.sessions: list[CallSession] = []
        self.started = asyncio.Event()
        self.finished = asyncio.Event()

    async def __call__(self, session: CallSession) -> None:
        self.sessions.append(session)
        self.started.set()
        try:
            if self.answer:
                await session.answer()
            if self.body is not None:
                await self.body(session)
            await session.ended.wait()
        finally:
            self.finished.set()

    @property
    def session(self) -> CallSession:
        assert self.sessions, "the service never ran"
        return self.sessions[-1]


class Phone:
    """A SIP phone (a peer ``SipEndpoint``) at ``addr``, driven by the test."""

    def __init__(self, harness: UaHarness, user: str, addr: tuple[str, int]) -> None:
        self.h = harness
        self.user = user
        self.addr = addr
        self.endpoint = SipEndpoint(
            EndpointConfig(host=addr[0], port=addr[1], contact_user=user, user_agent="phone"),
            rng=random.Random(next(_seeds)),
        )
        self.events: list[ev.SipEvent] = []
        self.received: list[SipRequest | SipResponse] = []
        """Every message the user agent sent to this phone, in order."""
        self.notifies: list[bytes] = []
        """Bodies of the in-dialog NOTIFYs received (answered 200 automatically)."""
        self.rtp_port = 40000 + 2 * (len(harness.phones) + 1)
        self._reg_call_id = f"reg-{user}-{addr[0]}"
        self._reg_cseq = 0

    # -- plumbing ------------------------------------------------------------------------------

    def deliver(self, data: bytes, now: float) -> None:
        self.received.append(parse_message(data))
        self.endpoint.receive(data, UA_ADDR, now)
        self.drain(now)

    def drain(self, now: float) -> None:
        """Take the endpoint's events (NOTIFYs are answered 200 here)."""
        for event in self.endpoint.events():
            self.events.append(event)
            if isinstance(event, ev.InDialogRequestReceived) and event.request.method == "NOTIFY":
                self.notifies.append(event.request.body)
                self.endpoint.respond(event.transaction, 200, now=now)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def for_call(self, call: CallHandle, kind: type) -> list[Any]:
        return [e for e in self.of(kind) if getattr(e, "call", None) is call]

    def requests(self, method: str) -> list[SipRequest]:
        return [m for m in self.received if isinstance(m, SipRequest) and m.method == method]

    def responses(self, method: str | None = None) -> list[SipResponse]:
        out = [m for m in self.received if isinstance(m, SipResponse)]
        if method is not None:
            out = [r for r in out if (r.headers.get("CSeq") or "").split()[-1] == method]
        return out

    def _now(self) -> float:
        return self.h.loop.time()

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.addr[0]}:{self.addr[1]}"

    # -- calls -----------------------------------------------------------------------------

    def offer(self, **kw: Any) -> bytes:
        kw.setdefault("ip", self.addr[0])
        kw.setdefault("port", self.rtp_port)
        return offer_sdp(**kw)

    def call(
        self,
        number: str,
        *,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        no_body: bool = False,
    ) -> CallHandle:
        """INVITE ``sip:number@ua`` with our SDP offer (or ``body``); pumped."""
        sdp = None if no_body else (body if body is not None else self.offer())
        handle = self.endpoint.invite(
            f"sip:{number}@{UA_ADDR[0]}:{UA_ADDR[1]}",
            UA_ADDR,
            from_uri=self.uri,
            sdp=sdp,
            headers=headers or [],
            now=self._now(),
        )
        self.h.pump()
        return handle

    def final_status(self, call: CallHandle) -> int | None:
        """200 once answered, the failure status once refused, None while pending."""
        if self.for_call(call, ev.CallAnswered):
            return 200
        failed = self.for_call(call, ev.CallFailed)
        return failed[-1].status if failed else None

    def answered_sdp(self, call: CallHandle) -> bytes:
        (answered,) = self.for_call(call, ev.CallAnswered)
        return bytes(answered.sdp)

    def incoming(self) -> list[ev.InviteReceived]:
        """INVITEs the user agent sent this phone."""
        return self.of(ev.InviteReceived)

    def answer(self, call: CallHandle, *, ring_first: bool = True) -> None:
        if ring_first:
            self.endpoint.respond(call, 180, now=self._now())
        self.endpoint.respond(
            call,
            200,
            body=self.offer(),
            headers=[("Content-Type", "application/sdp")],
            now=self._now(),
        )
        self.h.pump()

    def ring(self, call: CallHandle) -> None:
        self.endpoint.respond(call, 180, now=self._now())
        self.h.pump()

    def bye(self, call: CallHandle) -> None:
        self.endpoint.bye(call, now=self._now())
        self.h.pump()

    def reinvite(self, call: CallHandle, direction: str, *, version: int = 1) -> None:
        """A re-INVITE with our same media and ``direction`` (``sendonly``: hold)."""
        self.endpoint.reinvite(
            call, self.offer(direction=direction, version=version), now=self._now()
        )
        self.h.pump()

    def reinvite_answers(self, call: CallHandle) -> list[ev.ReinviteResponded]:
        return self.for_call(call, ev.ReinviteResponded)

    def info(self, call: CallHandle, digit: str, duration_ms: int = 160) -> ev.SipEvent:
        tx = self.endpoint.in_dialog_request(
            call,
            "INFO",
            body=f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode(),
            content_type="application/dtmf-relay",
            now=self._now(),
        )
        self.h.pump()
        return self._response_to(tx)

    def refer(self, call: CallHandle, refer_to: str) -> int:
        """REFER with ``Refer-To: <refer_to>``; the UA's final status."""
        tx = self.endpoint.in_dialog_request(
            call,
            "REFER",
            headers=[("Refer-To", f"<{refer_to}>"), ("Referred-By", f"<{self.uri}>")],
            now=self._now(),
        )
        self.h.pump()
        return self._status(self._response_to(tx))

    def _response_to(self, tx: object) -> ev.SipEvent:
        for e in self.events:
            if isinstance(e, ev.ResponseReceived | ev.RequestTimedOut) and e.transaction is tx:
                return e
        raise AssertionError("no final response")

    @staticmethod
    def _status(event: ev.SipEvent) -> int:
        return event.response.status if isinstance(event, ev.ResponseReceived) else 408

    # -- REGISTER --------------------------------------------------------------------------

    def register_once(self, *, authorization: str | None = None, expires: int = 600) -> SipResponse:
        """One REGISTER (same Call-ID, next CSeq); the UA's final response."""
        self._reg_cseq += 1
        aor = f"sip:{self.user}@{UA_ADDR[0]}"
        headers = [
            ("From", f"<{aor}>;tag=reg{self._reg_cseq}"),
            ("To", f"<{aor}>"),
            ("Contact", f"<{self.uri}>"),
            ("Expires", str(expires)),
        ]
        if authorization:
            headers.append(("Authorization", authorization))
        tx = self.endpoint.request(
            "REGISTER",
            self.register_uri,
            UA_ADDR,
            headers=headers,
            now=self._now(),
            call_id=self._reg_call_id,
            cseq=self._reg_cseq,
        )
        self.h.pump()
        event = self._response_to(tx)
        assert isinstance(event, ev.ResponseReceived)
        return event.response

    @property
    def register_uri(self) -> str:
        return f"sip:{UA_ADDR[0]}"

    def register(self, password: str | None = None, *, expires: int = 600) -> list[SipResponse]:
        """REGISTER, answer the digest challenge with ``password`` (default: the right one);
        every response in order."""
        pw = PASSWORDS.get(self.user, "") if password is None else password
        first = self.register_once(expires=expires)
        if first.status != 401:
            return [first]
        challenge = pick_challenge(first.headers.get_list("WWW-Authenticate"))
        auth = build_authorization(
            challenge,
            method="REGISTER",
            uri=self.register_uri,
            username=self.user,
            password=pw,
            cnonce=f"cn{self._reg_cseq}",
        )
        return [first, self.register_once(authorization=auth, expires=expires)]


class Wire:
    """The user agent's in-memory transport (``ua.Wire``)."""

    def __init__(self, harness: UaHarness) -> None:
        self.h = harness
        self.loop_lag = 0.0
        self.undelivered: list[tuple[tuple[str, int], bytes]] = []
        """UA datagrams to an address where no phone is."""
        self.log: list[tuple[str, bytes]] = []
        """``("ua->127.0.0.2:5062", data)`` / ``("127.0.0.2:5062->ua", data)``, in order."""
        self.errors: list[Exception] = []
        """Exceptions ``ua.on_event`` raised (the fixture fails a test that has any)."""
        self._pumping = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def endpoints(self) -> list[SipEndpoint]:
        return [self.h.ua.endpoint, *(p.endpoint for p in self.h.phones.values())]

    def pump(self) -> None:
        if self._pumping or self.closed:
            return
        self._pumping = True
        try:
            self._pump()
        finally:
            self._pumping = False
        self._arm()

    def _pump(self) -> None:
        ua = self.h.ua
        for _ in range(100_000):
            now = self.h.loop.time()
            event = ua.endpoint.next_event()
            if event is not None:
                try:
                    ua.on_event(event)
                except Exception as exc:  # the real pump logs it; the fixture fails the test
                    self.errors.append(exc)
                continue
            progressed = False
            for out in ua.endpoint.datagrams_to_send():
                progressed = True
                phone = self.h.phones.get(out.dest)
                self.log.append((f"ua->{out.dest[0]}:{out.dest[1]}", out.data))
                if phone is None:
                    self.undelivered.append((out.dest, out.data))
                else:
                    phone.deliver(out.data, now)
            for phone in list(self.h.phones.values()):
                for out in phone.endpoint.datagrams_to_send():
                    progressed = True
                    self.log.append((f"{phone.addr[0]}:{phone.addr[1]}->ua", out.data))
                    ua.endpoint.receive(out.data, phone.addr, now, transport="udp")
            if not progressed:
                return
        raise AssertionError("the wire never settled")

    def _arm(self) -> None:
        deadlines = [d for d in (e.next_deadline() for e in self.endpoints()) if d is not None]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines and not self.closed:
            self._timer = self.h.loop.call_at(min(deadlines), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.h.loop.time()
        for endpoint in self.endpoints():
            endpoint.handle_timer(now)
        for phone in self.h.phones.values():
            phone.drain(now)
        self.pump()

    async def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class UaHarness:
    """A ``SipUserAgent`` on this loop with in-process media, scripted routing and phones."""

    def __init__(self, *, trunks: tuple[FakeTrunk, ...] = ()) -> None:
        self.loop = asyncio.get_running_loop()
        self.trunks = trunks
        self.router = ScriptedRouter()
        self.phones: dict[tuple[str, int], Phone] = {}
        self.presence: list[tuple[str, bool]] = []
        self.media = LocalMedia(host="127.0.0.1", port_min=RTP_PORTS[0], port_max=RTP_PORTS[1])
        self.registrations = Registrations(
            RegistrationSettings(realm="hotline"), password_for=PASSWORDS.get
        )
        self.registrations.listeners.append(
            lambda user, present: self.presence.append((user, present))
        )
        self._ua: SipUserAgent | None = None
        self.wire = Wire(self)

    @property
    def ua(self) -> SipUserAgent:
        assert self._ua is not None, "start() first"
        return self._ua

    async def start(self) -> UaHarness:
        await self.media.start()
        self._ua = SipUserAgent(
            UaSettings(sip_host=UA_ADDR[0], sip_port=UA_ADDR[1], public_host=UA_ADDR[0]),
            media=self.media,
            registrations=self.registrations,
            router=self.router,
            directory=DIRECTORY.get,
            known_users=lambda: list(PASSWORDS),
            trunks=self.trunks,
            rng=random.Random(7),
        )
        self._ua.transport = self.wire
        return self

    async def close(self) -> None:
        if self._ua is not None:
            await self._ua.stop()  # BYE for calls still up, then Wire.close()
        await self.wire.close()
        await self.media.close()

    # -- phones and routes ---------------------------------------------------------------------

    def phone(self, user: str, addr: tuple[str, int] | None = None) -> Phone:
        addr = addr or (f"127.0.0.{len(self.phones) + 2}", 5062)
        assert addr not in self.phones
        phone = Phone(self, user, addr)
        self.phones[addr] = phone
        return phone

    def registered_phone(self, user: str, addr: tuple[str, int] | None = None) -> Phone:
        phone = self.phone(user, addr)
        assert phone.register()[-1].status == 200
        return phone

    def serve(self, number: str, service: Service, kind: str = "test") -> None:
        self.router.numbers[number] = Route(kind, service)

    def refuse(self, number: str, status: int) -> None:
        self.router.numbers[number] = status

    # -- running -------------------------------------------------------------------------------

    def pump(self) -> None:
        self.wire.pump()

    async def settle(self, rounds: int = 20) -> None:
        """Let spawned tasks (media requests, services) run, pumping between passes."""
        for _ in range(rounds):
            self.pump()
            await asyncio.sleep(0)
        self.pump()

    async def until(self, predicate: Callable[[], object], within: float = 2.0) -> None:
        """Pump and yield until ``predicate()`` is true (AssertionError after ``within`` s)."""
        deadline = self.loop.time() + within
        while not predicate():
            if self.loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {predicate}")
            self.pump()
            await asyncio.sleep(0.002)
        self.pump()

    def rtp_endpoints(self) -> int:
        return int(self.ua.debug_counts()["rtp_endpoints"])

    def media_channels(self) -> int:
        server = self.media.server
        return len(server.engine.channels) if server is not None else 0
