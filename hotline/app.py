"""Wiring: the SIP endpoint, its transports, the registrar, trunks, entry points and the HTTP API.

``Gateway`` is the SIP transaction user. It receives the sans-IO endpoint's events (through
the asyncio transport shell) and decides: REGISTER goes through digest authentication to the
registrar; an INVITE is routed by the service switch (trunk DID or dialled number) to an entry
point; ``ring_agent`` places a call to an agent's registered phones (how the ACD reaches agents).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import random
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from hotline import native_hook
from hotline.api import build_app
from hotline.config import Config, ConfigError, TrunkConfig, parse_hostport, validate_sections
from hotline.logs import configure_logging
from hotline.metrics import Metrics
from media_gateway.media.client import LocalMedia, MediaClient, MediaProcess
from media_gateway.media.engine import MediaError
from media_gateway.rtp.dtmf import parse_info_body
from media_gateway.sdp.offer_answer import NoCommonCodec, negotiated_media
from media_gateway.sdp.session import SdpError, SessionDescription
from media_gateway.session import CallSession, SessionEnded, keep_bridged
from media_gateway.sip import events as ev
from media_gateway.sip.auth import AuthResult, DigestAuthenticator
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import format_hostport, parse_contact_list, parse_name_addr
from media_gateway.sip.message import SipRequest
from media_gateway.sip.registrar import Registrar
from media_gateway.sip.trunk import (
    CallerIdRule,
    SendRegister,
    TrunkRegistration,
    apply_caller_id,
    match_did,
    normalise_number,
)
from media_gateway.sip.uri import parse_uri
from media_gateway.sip_leg import SipLeg
from media_gateway.transport import SipTransport

log = structlog.get_logger("hotline.gateway")

SessionHandler = Callable[[CallSession], Awaitable[None]]


class BrowserPhone(Protocol):
    """An agent's browser connected as a phone (media_gateway/webrtc.py)."""

    async def ring(self, caller: str, ring_timeout: float) -> CallSession | None:
        """Offer a call to the browser; the answered session, or None."""


async def default_hotline_flow(session: CallSession) -> None:
    """Until an IVR flow is configured: welcome the caller, then music until they hang up."""
    await session.answer()
    try:
        await session.play(["welcome", "please_hold"], interruptible=False)
        await session.play("moh", interruptible=False, loop=True, wait=False)
    except MediaError as exc:
        log.warning("prompt_unavailable", call_id=session.id, error=str(exc))
    await session.ended.wait()


ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, REFER, NOTIFY"


@dataclass
class CallRecord:
    """What the gateway keeps about one call in progress (either direction)."""

    call_id: str
    direction: str  # inbound | outbound
    entry: str
    caller: str
    dialled: str
    started: float
    handle: Any = None
    chan: str = ""
    """The call's media channel in the media process ("" until opened)."""
    leg: SipLeg | None = None
    session: CallSession | None = None
    answered_at: float | None = None
    outcome: str = ""
    done: asyncio.Future[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Gateway:
    """The transaction user: registrar, service switch, entry points, UAC to agents, trunks."""

    def __init__(self, config: Config, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.rng = rng or random.Random(secrets.randbits(64))
        sip = config.sip
        self.endpoint = SipEndpoint(
            EndpointConfig(
                host=config.server.public_host,
                port=config.server.sip_port,
                transport="udp",
                user_agent=sip.user_agent,
                max_server_transactions=sip.max_server_transactions,
                retry_after=sip.retry_after,
                allow=ALLOW,
            ),
            rng=self.rng,
        )
        self.auth = DigestAuthenticator(
            realm=sip.realm,
            credentials_lookup=self._password_for,
            secret=secrets.token_bytes(32),
            nonce_ttl=sip.nonce_ttl,
            algorithms=sip.auth_algorithms,
        )
        self.registrar = Registrar(
            min_expires=sip.min_expires,
            max_expires=sip.max_expires,
            default_expires=min(3600, sip.max_expires),
        )
        media = config.media
        prompt_dirs = list(media.prompts)
        if media.process:
            self.media: MediaClient = MediaProcess(
                host=config.server.public_host,
                port_min=sip.rtp_port_min,
                port_max=sip.rtp_port_max,
                prompt_dirs=prompt_dirs,
                rtp_timeout=media.rtp_timeout,
            )
        else:
            self.media = LocalMedia(
                host=config.server.public_host,
                port_min=sip.rtp_port_min,
                port_max=sip.rtp_port_max,
                prompt_dirs=prompt_dirs,
                rtp_timeout=media.rtp_timeout,
            )
        self.handlers: dict[str, SessionHandler] = {"hotline": default_hotline_flow}
        """Entry-point kind -> the service that runs an inbound session (the IVR plugs in here)."""
        self._chan_seq = 0
        self.device_listeners: list[Callable[[str, bool], None]] = []
        """Called with (agent, registered) when an agent's first phone registers or the last goes."""
        self.browser_phones: dict[str, BrowserPhone] = {}
        """Agents whose browser is connected as their phone (WebRTC), by agent id."""
        self.sessions: set[CallSession] = set()
        """Sessions that did not come through SIP (WebRTC), for the debug counts."""
        self.metrics = Metrics()
        self._register_metrics()
        self.calls: dict[object, CallRecord] = {}
        """Calls in progress by their endpoint handle (handles hash by identity)."""
        self.transport: SipTransport | None = None
        self.trunks: dict[str, tuple[TrunkConfig, TrunkRegistration]] = {}
        self._trunk_requests: dict[object, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        server = self.config.server
        await self.media.start()
        self.transport = SipTransport(
            self.endpoint,
            self.on_event,
            max_loop_lag=self.config.sip.max_loop_lag_ms / 1000.0,
            udp_receive_buffer=self.config.sip.udp_receive_buffer,
        )
        await self.transport.start(server.sip_host, server.sip_port, self.config.sip.transports)
        for trunk in self.config.trunks:
            if trunk.register:
                reg = TrunkRegistration(
                    name=trunk.name,
                    registrar=trunk.address,
                    username=trunk.username,
                    password=trunk.password,
                    expires=trunk.expires,
                    local_host=server.public_host,
                    local_port=server.sip_port,
                    rng=self.rng,
                )
                self.trunks[trunk.name] = (trunk, reg)
        if self.trunks:
            self._spawn(self._trunk_loop())
        self._spawn(self._housekeeping())

    async def stop(self) -> None:
        now = self.loop.time()
        for record in list(self.calls.values()):
            if record.done is not None and not record.done.done():
                record.done.set_result({"call_id": record.call_id, "outcome": "shutdown"})
            if record.answered_at is not None:
                with contextlib.suppress(Exception):
                    self.endpoint.bye(record.handle, now=now)
        if self.transport is not None:
            self.transport.pump()
            await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        await self.media.close()
        if self.transport is not None:
            await self.transport.close()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- metrics -----------------------------------------------------------------------------

    def _register_metrics(self) -> None:
        m = self.metrics
        m.counter("hotline_sip_requests_total", "SIP requests received, by method")
        m.counter("hotline_calls_total", "Calls handled, by direction and outcome")
        m.counter("hotline_registrations_total", "REGISTER outcomes")
        m.gauge("hotline_calls_active", "Calls in progress", lambda: [({}, float(len(self.calls)))])
        m.gauge(
            "hotline_sip_transactions",
            "SIP transactions held by the endpoint",
            lambda: [({}, float(self.endpoint.transaction_count()))],
        )
        m.gauge(
            "hotline_registered_contacts",
            "Registered softphone contacts",
            lambda: [({}, float(sum(1 for _ in self._all_bindings())))],
        )
        m.gauge(
            "hotline_event_loop_lag_seconds",
            "Measured event-loop lag",
            lambda: [({}, self.transport.loop_lag if self.transport else 0.0)],
        )
        m.gauge(
            "hotline_sip_endpoint_stats",
            "SIP endpoint counters (parse errors, 503s...)",
            lambda: [({"kind": k}, float(v)) for k, v in sorted(self.endpoint.stats.items())],
        )

    # -- snapshots for the API ---------------------------------------------------------------

    def _all_bindings(self) -> list[tuple[str, Any]]:
        now = self.loop.time()
        out = []
        for agent in self.config.agents:
            for b in self.registrar.contacts(agent.id, now):
                out.append((agent.id, b))
        return out

    def registrations_snapshot(self) -> list[dict[str, Any]]:
        now = self.loop.time()
        return [
            {
                "agent": agent,
                "contact": str(b.contact),
                "source": f"{b.source[0]}:{b.source[1]}",
                "transport": b.transport,
                "expires_in": round(b.expires_at - now, 1),
            }
            for agent, b in self._all_bindings()
        ]

    def calls_snapshot(self) -> list[dict[str, Any]]:
        now = self.loop.time()
        return [
            {
                "call_id": r.call_id,
                "direction": r.direction,
                "entry": r.entry,
                "caller": r.caller,
                "dialled": r.dialled,
                "seconds": round(now - r.started, 1),
                "answered": r.answered_at is not None,
            }
            for r in self.calls.values()
        ]

    def trunks_snapshot(self) -> list[dict[str, Any]]:
        out = []
        for trunk in self.config.trunks:
            reg = self.trunks.get(trunk.name)
            out.append(
                {
                    "name": trunk.name,
                    "address": f"{trunk.address[0]}:{trunk.address[1]}",
                    "register": trunk.register,
                    "state": reg[1].state if reg else "not_registering",
                    "granted_seconds": reg[1].granted if reg else 0,
                    "failures": reg[1].failures if reg else 0,
                }
            )
        return out

    def debug_counts(self) -> dict[str, Any]:
        return {
            "active_calls": len(self.endpoint.active_calls()),
            "gateway_calls": len(self.calls),
            "transactions": self.endpoint.transaction_count(),
            "transaction_sample": self.endpoint.transaction_summary(5),
            "rtp_endpoints": sum(1 for r in self.calls.values() if r.chan),
            "sessions": len(self.sessions),
            "stats": dict(self.endpoint.stats),
        }

    # -- credentials -------------------------------------------------------------------------

    def _password_for(self, user: str) -> str | None:
        agent = self.config.agent(user)
        return agent.password if agent else None

    # -- event dispatch ----------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        if isinstance(event, ev.InviteReceived):
            self.metrics.inc("hotline_sip_requests_total", method="INVITE")
            with structlog.contextvars.bound_contextvars(
                call_id=event.request.headers.get("Call-ID")
            ):
                self._on_invite(event)
        elif isinstance(event, ev.RequestReceived):
            method = event.request.method
            self.metrics.inc("hotline_sip_requests_total", method=method)
            if method == "REGISTER":
                self._on_register(event)
            else:
                self._respond(event.transaction, 405, headers=[("Allow", ALLOW)])
        elif isinstance(event, ev.CallEnded):
            self._on_call_ended(event)
        elif isinstance(event, ev.CallAnswered):
            self._on_answered(event)
        elif isinstance(event, ev.CallFailed):
            self._on_failed(event)
        elif isinstance(event, ev.ReinviteReceived):
            self._on_reinvite(event)
        elif isinstance(event, ev.ReinviteResponded):
            record = self.calls.get(event.call)
            if record is not None and record.leg is not None:
                record.leg.reinvite_answered(event.status, event.sdp)
        elif isinstance(event, ev.InDialogRequestReceived):
            method = event.request.method
            self.metrics.inc("hotline_sip_requests_total", method=method)
            if method == "OPTIONS":
                self._respond(event.transaction, 200, headers=[("Allow", ALLOW)])
            elif method == "NOTIFY":
                self._respond(event.transaction, 200)
                record = self.calls.get(event.call)
                if record is not None and record.leg is not None:
                    record.leg.notify(event.request.body)
            elif method == "REFER":
                self._on_refer(event)
            else:
                self._respond(event.transaction, 501, headers=[("Allow", ALLOW)])
        elif isinstance(event, ev.InfoReceived):
            self.metrics.inc("hotline_sip_requests_total", method="INFO")
            self._on_info(event)
        elif isinstance(event, ev.AckTimedOut):
            self.endpoint.bye(event.call, now=self.loop.time())
            self._flush()
        elif isinstance(event, ev.ResponseReceived | ev.RequestTimedOut):
            status = event.response.status if isinstance(event, ev.ResponseReceived) else 408
            if not self._leg_request_done(event.transaction, status):
                if isinstance(event, ev.ResponseReceived):
                    self._on_trunk_response(event)
                else:
                    self._on_trunk_timeout(event)

    def agent_presence(self, agent: str, present: bool) -> None:
        """An agent's first phone (SIP registration or browser) came, or the last one went."""
        if not present and (
            agent in self.browser_phones or self.registrar.contacts(agent, self.loop.time())
        ):
            return  # another of their phones is still there
        for listener in self.device_listeners:
            try:
                listener(agent, present)
            except Exception:
                log.exception("device_listener_failed", agent=agent)

    def _leg_request_done(self, tx: Any, status: int) -> bool:
        """A response to a leg's in-dialog request (REFER): True when a leg owned it."""
        for record in self.calls.values():
            if record.leg is not None and record.leg.owns_request(tx):
                record.leg.request_answered(tx, status)
                return True
        return False

    def _on_info(self, event: Any) -> None:
        """SIP INFO keys (application/dtmf-relay, application/dtmf) join the session's keys."""
        record = self.calls.get(event.call)
        try:
            digit = parse_info_body(event.content_type, event.body, at=self.loop.time())
        except ValueError as exc:
            log.info("sip_info_ignored", call_id=record.call_id if record else "", reason=str(exc))
            return
        if record is not None and record.session is not None:
            record.session.digit_from_signalling(digit.digit, "info")

    # -- the SIP side of sessions (SipSide for media_gateway.sip_leg) ------------------------

    def flush(self) -> None:
        self._flush()

    def respond_sdp(self, handle: Any, status: int, body: bytes) -> None:
        self._respond(handle, status, body=body, headers=[("Content-Type", "application/sdp")])
        record = self.calls.get(handle)
        if record is not None and 200 <= status < 300 and record.answered_at is None:
            record.answered_at = self.loop.time()
            log.info(
                "call_answered",
                call_id=record.call_id,
                entry=record.entry,
                caller=record.caller,
                dialled=record.dialled,
            )

    async def _open_media(self, record: CallRecord, **fields: Any) -> int:
        self._chan_seq += 1
        chan = f"{record.direction[0]}{self._chan_seq}"
        reply = await self.media.request("open", chan=chan, **fields)
        record.chan = chan
        return int(reply["port"])

    def _respond(
        self,
        handle: Any,
        status: int,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        reason: str | None = None,
    ) -> None:
        self.endpoint.respond(
            handle, status, reason=reason, headers=headers or [], body=body, now=self.loop.time()
        )
        self._flush()

    def _flush(self) -> None:
        """Send what the endpoint queued. Inside event dispatch this is a no-op (the pump loop
        sends after the handler); from a task (an answer after an await) it sends now."""
        if self.transport is not None:
            self.transport.pump()

    # -- REGISTER ----------------------------------------------------------------------------

    def _on_register(self, event: Any) -> None:
        request: SipRequest = event.request
        tx = event.transaction
        now = self.loop.time()
        try:
            to = parse_name_addr(request.headers.get("To") or "")
            aor = parse_uri(to.uri)
        except SipParseError as exc:
            self._respond(tx, 400, reason=f"Bad To: {exc}"[:60])
            return
        if aor.scheme not in ("sip", "sips") or not aor.user:
            self._respond(tx, 400, reason="AOR must be a SIP URI with a user")
            return
        result: AuthResult = self.auth.verify(
            "REGISTER", request.headers.get("Authorization") or "", now, request_uri=request.uri
        )
        if not result.ok or result.username != aor.user:
            self.metrics.inc("hotline_registrations_total", outcome="challenged")
            if request.headers.get("Authorization"):
                # The reason stays in our log; the phone gets the same 401 whatever it was.
                log.info(
                    "register_refused",
                    user=aor.user,
                    source=f"{event.source[0]}:{event.source[1]}",
                    reason=result.reason or "credentials for another user",
                    stale=result.stale,
                )
            self._respond(
                tx,
                401,
                headers=[
                    ("WWW-Authenticate", c) for c in self.auth.challenge(now, stale=result.stale)
                ],
            )
            return
        try:
            contacts = parse_contact_list(request.headers.get_list("Contact"))
        except SipParseError as exc:
            self._respond(tx, 400, reason=f"Bad Contact: {exc}"[:60])
            return
        expires_text = request.headers.get("Expires")
        try:
            expires = int(expires_text) if expires_text is not None else None
        except ValueError:
            expires = None
        cseq_text = (request.headers.get("CSeq") or "0").split()[0]
        reg = self.registrar.register(
            aor.user,
            contacts,
            expires,
            request.headers.get("Call-ID") or "",
            int(cseq_text) if cseq_text.isdigit() else 0,
            now,
            source=event.source,
            transport=event.transport,
        )
        headers: list[tuple[str, str]] = []
        if reg.status == 200:
            for b in reg.bindings:
                headers.append(
                    ("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
                )
        elif reg.status == 423 and reg.min_expires:
            headers.append(("Min-Expires", str(reg.min_expires)))
        self.metrics.inc("hotline_registrations_total", outcome=str(reg.status))
        for change in reg.changes:
            log.info("device_registration", agent=change.user, change=str(change))
            self.agent_presence(change.user, change.kind == "registered")
        self._respond(tx, reg.status, headers=headers)

    # -- INVITE: the service switch ----------------------------------------------------------

    def _dialled(self, request: SipRequest, source: tuple[str, int]) -> tuple[str, str]:
        """(entry point number, how it was found) for an initial INVITE."""
        uri = parse_uri(request.uri)  # raises SipParseError(416) on an unknown scheme
        dialled = uri.user or ""
        for trunk in self.config.trunks:
            if trunk.address[0] == source[0]:
                entry = match_did(trunk.dids, dialled)
                if entry is not None:
                    return entry, f"trunk:{trunk.name}"
        return dialled, "dialled"

    def _on_invite(self, event: Any) -> None:
        request: SipRequest = event.request
        handle = event.call
        try:
            number, how = self._dialled(request, event.source)
        except SipParseError as exc:
            self._respond(handle, exc.status_hint if exc.status_hint in (400, 416) else 400)
            return
        accept = request.headers.get_list("Accept")
        if accept and not any(
            a.split(";")[0].strip().lower() in ("application/sdp", "*/*", "application/*")
            for a in accept
        ):
            self._respond(handle, 406, headers=[("Warning", '399 hotline "only application/sdp"')])
            return
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if request.body and ctype != "application/sdp":
            self._respond(handle, 415, headers=[("Accept", "application/sdp")])
            return
        entry = self.config.entry_point(number)
        agent = None
        if entry is None:
            agent = next(
                (a for a in self.config.agents if a.extension == number or a.id == number), None
            )
        if entry is None and agent is None:
            self._respond(handle, 404)
            return
        offer: SessionDescription | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as exc:
                self._respond(handle, 400, reason=f"Bad SDP: {exc}"[:60])
                return
        record = CallRecord(
            call_id=request.headers.get("Call-ID") or "",
            direction="inbound",
            entry=entry.kind if entry else "agent",
            caller=self._caller(request),
            dialled=number,
            started=self.loop.time(),
            handle=handle,
            extra={"route": how, "source": event.source},
        )
        self.calls[handle] = record
        if entry is not None and (entry.kind == "echo" or entry.kind in self.handlers):
            self._spawn(self._start_session(record, offer, entry.kind))
        elif entry is not None and entry.kind == "agent":
            # A public number that rings one employee directly (kind = "agent", target = id).
            record.extra["callee"] = entry.target
            self._spawn(self._start_session(record, offer, "extension"))
        elif agent is not None and self._is_internal(event.source):
            # An employee's phone dialling a colleague's extension: ring them and bridge.
            record.extra["callee"] = agent.id
            self._spawn(self._start_session(record, offer, "extension"))
        else:
            self._respond(handle, 480, reason="Temporarily Unavailable")

    def _is_internal(self, source: tuple[str, int]) -> bool:
        """The packet came from a phone registered by one of our agents (same IP and port)."""
        return any(b.source == source for _, b in self._all_bindings())

    @staticmethod
    def _caller(request: SipRequest) -> str:
        try:
            return parse_uri(parse_name_addr(request.headers.get("From") or "").uri).user or ""
        except SipParseError:
            return ""

    async def _start_session(
        self, record: CallRecord, offer: SessionDescription | None, kind: str
    ) -> None:
        """Open the call's media, prepare the SDP answer, and hand the session to its service."""
        with structlog.contextvars.bound_contextvars(call_id=record.call_id):
            try:
                port = await self._open_media(record)
            except MediaError as exc:
                log.error("rtp_unavailable", error=str(exc))
                self._respond(record.handle, 503, headers=[("Retry-After", "5")])
                self._finish(record, "rtp_unavailable")
                return
            if record.handle not in self.calls:  # cancelled while the port was opened
                await self._close_media(record)
                return
            leg = SipLeg(
                self,
                record.handle,
                local_ip=self.config.server.public_host,
                local_port=port,
                channel="trunk" if record.extra.get("route", "").startswith("trunk:") else "sip",
                session_id=str(self.rng.getrandbits(40)),
                sip_port=self.config.server.sip_port,
            )
            record.leg = leg
            try:
                fields = leg.prepare_answer(offer)
            except NoCommonCodec:
                self._respond(
                    record.handle, 488, headers=[("Warning", '305 hotline "no common codec"')]
                )
                self._finish(record, "no_common_codec")
                return
            fields.pop("_held", None)
            session = CallSession(
                session_id=record.call_id,
                leg=leg,
                media=self.media,
                chan=record.chan,
                caller=record.caller,
                dialled=record.dialled,
                direction="inbound",
                lang=self.config.media.language,
                rerouter=self.reroute,
            )
            record.session = session
            # How to call this caller back later (a voicemail or callback request): their
            # number through the trunk they came in on, or their phone's own address.
            if record.extra.get("route", "").startswith("trunk:") and record.caller:
                session.vars["callback_uri"] = record.caller
            elif record.caller and record.extra.get("source"):
                ip, port = record.extra["source"]
                session.vars["callback_uri"] = f"sip:{record.caller}@{format_hostport(ip, port)}"
            if fields:
                try:
                    await self.media.request("update", chan=record.chan, **fields)
                except MediaError as exc:
                    log.error("media_failed", error=str(exc))
                    await session.hangup("media_failed")
                    return
            await self._serve(session, kind, callee=str(record.extra.get("callee", "")))

    async def _serve(self, session: CallSession, kind: str, *, callee: str = "") -> None:
        """Run an entry point's service on a session (any channel); when it returns or fails,
        the call ends with it."""
        try:
            with contextlib.suppress(SessionEnded):
                if kind == "echo":
                    await session.answer()
                    await self.media.request("echo", chan=session.chan, on=True)
                    await session.ended.wait()
                elif kind == "extension":
                    await self._call_extension(session, callee)
                else:
                    await self.handlers[kind](session)
        except MediaError as exc:
            log.error("media_failed", error=str(exc))
        except Exception:
            log.exception("session_handler_failed", entry=kind)
        finally:
            if session.state != "ended":
                with contextlib.suppress(Exception):
                    await session.hangup("normal")

    async def _end_session(
        self, record: CallRecord, session: CallSession, by: str, outcome: str
    ) -> None:
        await session.ended_by_signalling(by, outcome)
        stats = session.final_stats or {}
        record.chan = ""
        if stats:
            log.info(
                "call_media",
                call_id=record.call_id,
                rtp_in=stats.get("packets_in", 0),
                rtp_out=stats.get("packets_out", 0),
                lost=stats.get("lost", 0),
                jitter_ms=stats.get("jitter_ms", 0.0),
                peer_fraction_lost=stats.get("peer_fraction_lost", 0.0),
            )

    async def _call_extension(self, session: CallSession, callee: str) -> None:
        if isinstance(session.leg, SipLeg):
            self._respond(session.leg.handle, 180)  # ringback while the colleague's phone rings
        other = await self.originate(callee, ring_timeout=30.0, caller=session.caller)
        if other is None:
            await session.hangup("no_answer")  # unanswered: 480 to the caller
            return
        if session.state == "ended":
            await other.hangup("caller_gone")
            return
        await session.answer()
        await session.bridge(other)
        await keep_bridged(session, other)

    def _on_refer(self, event: Any) -> None:
        """A phone in a bridged call asks us to transfer its peer (RFC 3515): blind, or
        attended when Refer-To carries Replaces (RFC 3891) naming its consultation call."""
        record = self.calls.get(event.call)
        if record is None or record.session is None or record.session.bridged_to is None:
            self._respond(event.transaction, 603, reason="Nothing to transfer")
            return
        raw = event.request.headers.get("Refer-To") or ""
        try:
            uri = parse_uri(parse_name_addr(raw).uri)
        except SipParseError:
            self._respond(event.transaction, 400, reason="Bad Refer-To")
            return
        replaces = next((v for k, v in uri.headers.items() if k.lower() == "replaces"), None)
        target = uri.user or ""
        server = self.config.server
        ours = uri.host in (server.public_host, server.sip_host) and (
            uri.port in (None, server.sip_port)
        )
        if not ours:  # somewhere else: only an IP literal is ever called (nothing resolved)
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(uri.host)
                target = f"sip:{uri.user}@{format_hostport(uri.host, uri.port or 5060)}"
        self._respond(event.transaction, 202)
        self._spawn(self._transfer_for(record, record.session, target, replaces))

    async def _transfer_for(
        self, record: CallRecord, referrer: CallSession, target: str, replaces: str | None
    ) -> None:
        peer = referrer.bridged_to
        ok = False
        if peer is not None:
            if replaces:
                consult = self._consultation(replaces)
                other = consult.session.bridged_to if consult and consult.session else None
                if other is not None and other.state != "ended" and peer.state != "ended":
                    await peer.bridge(other)  # caller <-> colleague; both referrer legs go
                    ok = True
                    assert consult is not None and consult.session is not None
                    await consult.session.hangup("transferred")
            else:
                ok = await peer.transfer(target, mode="reroute")
        log.info(
            "transfer_by_phone",
            call_id=record.call_id,
            target=target,
            attended=bool(replaces),
            ok=ok,
        )
        frag = b"SIP/2.0 200 OK\r\n" if ok else b"SIP/2.0 503 Service Unavailable\r\n"
        if referrer.state != "ended":
            with contextlib.suppress(Exception):
                self.endpoint.in_dialog_request(
                    record.handle,
                    "NOTIFY",
                    headers=[
                        ("Event", "refer"),
                        ("Subscription-State", "terminated;reason=noresource"),
                        ("Content-Type", "message/sipfrag;version=2.0"),
                    ],
                    body=frag,
                    now=self.loop.time(),
                )
                self._flush()
            if ok:
                await referrer.hangup("transferred")

    def _consultation(self, replaces: str) -> CallRecord | None:
        """The call a Replaces value names: ``call-id;to-tag=..;from-tag=..``."""
        call_id = replaces.split(";", 1)[0].strip()
        return next((r for r in self.calls.values() if r.call_id == call_id), None)

    async def accept_session(self, session: CallSession, number: str) -> bool:
        """A session that arrived by another channel (WebRTC): route ``number`` like an INVITE's
        and run its service. False when no entry point takes it."""
        entry = self.config.entry_point(number)
        if entry is None or not (entry.kind == "echo" or entry.kind in self.handlers):
            return False
        self.sessions.add(session)
        self._spawn(self._run_session(session, entry.kind))
        return True

    async def _run_session(self, session: CallSession, kind: str) -> None:
        with structlog.contextvars.bound_contextvars(call_id=session.id):
            log.info(
                "session_started",
                channel=session.channel,
                caller=session.caller,
                dialled=session.dialled,
                entry=kind,
            )
            try:
                await self._serve(session, kind)
            finally:
                self.sessions.discard(session)
                log.info("session_ended", by=session.ended_by, cause=session.cause)

    async def _close_media(self, record: CallRecord) -> dict[str, Any] | None:
        chan, record.chan = record.chan, ""
        if not chan:
            return None
        self.media.unsubscribe(chan)
        with contextlib.suppress(MediaError):
            reply = await self.media.request("close", chan=chan)
            return reply.get("stats")
        return None

    async def reroute(self, session: CallSession, target: str) -> bool:
        """Transfer by re-routing: we call ``target`` (an agent, or an IP SIP URI) and bridge."""
        try:
            other = await self.originate(target, ring_timeout=30.0)
        except (LookupError, ValueError) as exc:
            log.info("transfer_failed", call_id=session.id, target=target, reason=str(exc))
            return False
        if other is None:
            return False
        if session.state == "ended":
            await other.hangup("normal")
            return False
        await session.bridge(other)
        return True

    def _on_reinvite(self, event: Any) -> None:
        """Hold/unhold or a media change: answer with our same RTP port (RFC 3264 §8)."""
        record = self.calls.get(event.call)
        if record is None or record.leg is None:
            self._respond(event.transaction, 488)
            return
        try:
            answer, fields = record.leg.answer_reinvite(event.sdp)
        except (SdpError, NoCommonCodec):
            self._respond(event.transaction, 488)
            return
        self._respond(
            event.transaction,
            200,
            body=answer.to_bytes(),
            headers=[("Content-Type", "application/sdp")],
        )
        if fields and record.chan:
            held = bool(fields.pop("_held", False))
            self._spawn(self._apply_reinvite(record, fields, held))

    async def _apply_reinvite(self, record: CallRecord, fields: dict[str, Any], held: bool) -> None:
        with contextlib.suppress(MediaError):
            await self.media.request("update", chan=record.chan, **fields)
        if record.session is not None:
            await record.session.remote_hold_changed(held)

    def _on_call_ended(self, event: Any) -> None:
        record = self.calls.get(event.call)
        if record is None:
            return
        outcome = "completed" if record.answered_at is not None else f"ended:{event.reason}"
        self._finish(record, outcome, by=getattr(event, "by", ""))

    def _finish(self, record: CallRecord, outcome: str, *, by: str = "") -> None:
        if self.calls.pop(record.handle, None) is None:
            return
        if record.session is not None:
            self._spawn(self._end_session(record, record.session, by or "local", outcome))
        elif record.chan:
            self._spawn(self._close_media(record))
        record.outcome = outcome
        now = self.loop.time()
        self.metrics.inc(
            "hotline_calls_total", direction=record.direction, outcome=outcome.split(":")[0]
        )
        talk = round(now - record.answered_at, 3) if record.answered_at is not None else 0.0
        log.info(
            "call_ended",
            call_id=record.call_id,
            direction=record.direction,
            entry=record.entry,
            caller=record.caller,
            dialled=record.dialled,
            outcome=outcome,
            by=by,
            duration=round(now - record.started, 3),
            talk=talk,
        )
        if record.done is not None and not record.done.done():
            record.done.set_result(
                {
                    "call_id": record.call_id,
                    "outcome": outcome,
                    "talk_seconds": talk,
                    **{k: v for k, v in record.extra.items() if not k.startswith("_")},
                }
            )

    # -- outbound calls (UAC): ringing agents' phones ----------------------------------------

    async def ring_agent(
        self, agent_id: str, *, hold_seconds: float = 1.0, ring_timeout: float = 30.0
    ) -> dict[str, Any]:
        """Ring an agent's registered phones; hang up ``hold_seconds`` after the answer."""
        agent = self.config.agent(agent_id)
        if agent is None:
            raise LookupError(f"no agent {agent_id!r}")
        bindings = self.registrar.contacts(agent_id, self.loop.time())
        if not bindings:
            return {"outcome": "not_registered", "agent": agent_id}
        b = bindings[0]
        return await self._dial(
            str(b.contact),
            b.source,
            transport=b.transport,
            to_uri=f"sip:{agent_id}@{self.config.server.public_host}",
            hold_seconds=hold_seconds,
            ring_timeout=ring_timeout,
            extra={"agent": agent_id},
        )

    async def dial_uri(self, uri: str, dest: str, *, hold_seconds: float = 1.0) -> dict[str, Any]:
        host, port = parse_hostport(dest, default_port=5060)
        ipaddress.ip_address(host)  # ValueError for names: we resolve nothing
        return await self._dial(
            uri,
            (host, port),
            transport="udp",
            to_uri=uri,
            hold_seconds=hold_seconds,
            ring_timeout=30.0,
            extra={},
        )

    def _trunk_call(self, number: str, trunk_name: str, caller: str) -> dict[str, Any]:
        """Where and how to call ``number`` through a trunk (caller-id rules applied)."""
        trunk = next((t for t in self.config.trunks if t.name == trunk_name), None)
        if trunk is None:
            raise LookupError(f"no trunk {trunk_name!r}")
        dialled = normalise_number(number)
        if len(dialled.lstrip("+")) < 2:
            raise ValueError(f"not a dialable number: {number!r}")
        rule = CallerIdRule(
            number=trunk.caller_id,
            display=trunk.caller_id_display,
            withhold=trunk.withhold_caller_id,
        )
        shown, display, headers = apply_caller_id(rule, caller or "hotline", None)
        host = format_hostport(trunk.address[0], trunk.address[1])
        public = self.config.server.public_host
        return {
            "uri": f"sip:{dialled}@{host};user=phone",
            "dest": trunk.address,
            "transport": "udp",
            "to_uri": f"sip:{dialled}@{host};user=phone",
            "extra": {"trunk": trunk.name, "caller_id": shown},
            "from_uri": f"sip:{shown}@{public}",
            "from_display": display,
            "headers": headers,
        }

    async def dial_number(
        self, number: str, trunk_name: str, *, caller: str = "", hold_seconds: float = 1.0
    ) -> dict[str, Any]:
        """Call a PSTN number through a trunk, presenting the trunk's caller-id rules."""
        call = self._trunk_call(number, trunk_name, caller)
        return await self._dial(**call, hold_seconds=hold_seconds, ring_timeout=60.0)

    async def _dial(
        self,
        uri: str,
        dest: tuple[str, int],
        *,
        transport: str,
        to_uri: str,
        hold_seconds: float,
        ring_timeout: float,
        extra: dict[str, Any],
        from_uri: str | None = None,
        from_display: str | None = "hotline",
        headers: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Place a call, keep it ``hold_seconds`` once answered, hang up; report how it went."""
        record, session = await self._originate(
            uri,
            dest,
            transport=transport,
            to_uri=to_uri,
            ring_timeout=ring_timeout,
            extra=extra,
            from_uri=from_uri,
            from_display=from_display,
            headers=headers,
        )
        if session is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.ended.wait(), hold_seconds)
            if session.state != "ended":
                await session.hangup("normal")
        assert record.done is not None
        return await asyncio.wait_for(asyncio.shield(record.done), 40)

    async def originate(
        self, target: str, *, ring_timeout: float = 30.0, caller: str = "hotline"
    ) -> CallSession | None:
        """Call an agent (id or extension: their registered phone) or ``sip:user@IP[:port]``;
        the answered session, or None when nobody answered."""
        agent = next(
            (a for a in self.config.agents if target in (a.id, a.extension) and a.id), None
        )
        host = self.config.server.public_host
        if agent is not None and agent.id in self.browser_phones:
            return await self.browser_phones[agent.id].ring(caller, ring_timeout)
        if agent is not None:
            bindings = self.registrar.contacts(agent.id, self.loop.time())
            if not bindings:
                raise LookupError(f"agent {agent.id!r} has no registered phone")
            b = bindings[0]
            _, session = await self._originate(
                str(b.contact),
                b.source,
                transport=b.transport,
                to_uri=f"sip:{agent.id}@{host}",
                ring_timeout=ring_timeout,
                extra={"agent": agent.id},
                from_uri=f"sip:{caller}@{host}",
            )
            return session
        digits = target.lstrip("+")
        if digits.isdigit() and len(digits) >= 5 and self.config.trunks:
            # A phone number (a callback to a PSTN caller): out through the first trunk.
            call = self._trunk_call(target, self.config.trunks[0].name, "")
            _, session = await self._originate(**call, ring_timeout=ring_timeout)
            return session
        uri = parse_uri(target)  # SipParseError (a ValueError) on junk
        if uri.scheme not in ("sip", "sips"):
            raise ValueError(f"cannot call {target!r}: only agents and sip: URIs")
        ipaddress.ip_address(uri.host)  # ValueError for names: we resolve nothing
        _, session = await self._originate(
            target,
            (uri.host, uri.port or 5060),
            transport="udp",
            to_uri=target,
            ring_timeout=ring_timeout,
            extra={},
            from_uri=f"sip:{caller}@{host}",
        )
        return session

    async def _originate(
        self,
        uri: str,
        dest: tuple[str, int],
        *,
        transport: str,
        to_uri: str,
        ring_timeout: float,
        extra: dict[str, Any],
        from_uri: str | None = None,
        from_display: str | None = "hotline",
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[CallRecord, CallSession | None]:
        record = CallRecord(
            call_id="",
            direction="outbound",
            entry="dial",
            caller="hotline",
            dialled=uri,
            started=self.loop.time(),
            done=self.loop.create_future(),
            extra=extra,
        )
        port = await self._open_media(record)
        leg = SipLeg(
            self,
            None,
            local_ip=self.config.server.public_host,
            local_port=port,
            channel="trunk" if "trunk" in extra else "sip",
            session_id=str(self.rng.getrandbits(40)),
            sip_port=self.config.server.sip_port,
        )
        leg.answered = True
        offer = leg.local_offer()
        host = self.config.server.public_host
        handle = self.endpoint.invite(
            uri,
            dest,
            from_uri=from_uri or f"sip:hotline@{host}",
            from_display=from_display,
            to_uri=to_uri,
            sdp=offer.to_bytes(),
            headers=headers or [],
            now=self.loop.time(),
            transport=transport,
        )
        leg.handle = handle
        record.handle = handle
        record.call_id = getattr(handle, "call_id", "")
        record.leg = leg
        record.extra["_offer"] = offer
        answered: asyncio.Future[None] = self.loop.create_future()
        record.extra["_answered"] = answered
        session = CallSession(
            session_id=record.call_id,
            leg=leg,
            media=self.media,
            chan=record.chan,
            caller="hotline",
            dialled=uri,
            direction="outbound",
            lang=self.config.media.language,
            rerouter=self.reroute,
        )
        record.session = session
        self.calls[handle] = record
        self._flush()
        assert record.done is not None
        waiters: set[asyncio.Future[Any]] = {answered, record.done}
        finished, _ = await asyncio.wait(
            waiters, timeout=ring_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if answered in finished and answered.exception() is None:
            session.state = "answered"
            return record, session
        if not finished:
            self.endpoint.cancel(handle, now=self.loop.time())
            self._flush()
        return record, None

    def _on_answered(self, event: Any) -> None:
        record = self.calls.get(event.call)
        if record is None:
            return
        record.answered_at = self.loop.time()
        log.info("outbound_answered", call_id=record.call_id, dialled=record.dialled)
        self._spawn(self._outbound_media(record, event.sdp))

    async def _outbound_media(self, record: CallRecord, body: bytes) -> None:
        offer = record.extra.pop("_offer", None)
        answered = record.extra.pop("_answered", None)
        try:
            if offer is not None and body and record.chan:
                from media_gateway.sip_leg import media_fields

                params = negotiated_media(
                    offer, SessionDescription.parse(body), local_is_offerer=True
                )
                fields = media_fields(params)
                fields.pop("_held", None)
                await self.media.request("update", chan=record.chan, **fields)
        except (SdpError, NoCommonCodec, MediaError) as exc:
            log.info("outbound_answer_unusable", call_id=record.call_id, reason=str(exc))
        if answered is not None and not answered.done():
            answered.set_result(None)

    def _on_failed(self, event: Any) -> None:
        record = self.calls.get(event.call)
        if record is None:
            return
        self._finish(record, f"failed:{event.status}")

    # -- trunks: outbound registration -------------------------------------------------------

    async def _housekeeping(self, every: float = 5.0) -> None:
        """Drop expired registrations; a user whose last phone went away is logged out of the
        ACD (``device_listeners``)."""
        ticks = 0
        while True:
            await asyncio.sleep(every)
            for change in self.registrar.expire(self.loop.time()):
                log.info("device_registration", agent=change.user, change=str(change))
                self.agent_presence(change.user, change.kind == "registered")
            ticks += 1
            _age_gc(ticks)

    async def _trunk_loop(self) -> None:
        while True:
            now = self.loop.time()
            for name, (_, reg) in self.trunks.items():
                self._send_trunk_registers(name, reg.poll(now))
            if self.transport is not None:
                self.transport.pump()
            await asyncio.sleep(1.0)

    def _send_trunk_registers(self, name: str, sends: list[SendRegister]) -> None:
        trunk, _ = self.trunks[name]
        for send in sends:
            handle = self.endpoint.request(
                "REGISTER",
                send.uri,
                trunk.address,
                headers=send.headers,
                body=b"",
                now=self.loop.time(),
                call_id=send.call_id,
                cseq=send.cseq,
            )
            self._trunk_requests[handle] = name

    def _on_trunk_response(self, event: Any) -> None:
        name = self._trunk_requests.pop(event.transaction, None)
        if name is None:
            return
        _, reg = self.trunks[name]
        resend = reg.on_response(event.response.status, event.response.headers, self.loop.time())
        log.info("trunk_registration", trunk=name, status=event.response.status, state=reg.state)
        self._send_trunk_registers(name, resend)

    def _on_trunk_timeout(self, event: Any) -> None:
        name = self._trunk_requests.pop(event.transaction, None)
        if name is None:
            return
        _, reg = self.trunks[name]
        self._send_trunk_registers(name, reg.on_response(408, None, self.loop.time()))


GC_UNFREEZE_EVERY = 60
"""Housekeeping ticks (5 s each) between returns of the frozen objects to the collector."""


def _age_gc(ticks: int) -> None:
    """Keep long-lived SIP state out of the collector's way.

    Answered transactions linger 32 s (Timer J, RFC 6026 Accepted): at 1,000 calls/s that is
    ~60,000 objects, and every full collection scanned them all (50-130 ms pauses: the p99 of
    INVITE-to-200). They are freed by reference counting, so freezing what has survived a
    few seconds costs nothing. Every GC_UNFREEZE_EVERY ticks the frozen objects go back to the
    oldest generation, so cyclic garbage that got frozen is still collected.
    """
    if ticks % GC_UNFREEZE_EVERY == 0:
        gc.unfreeze()
    else:
        gc.freeze()


async def serve(config: Config, *, ready_file: str | None = None) -> int:
    data_dir = Path(config.server.data_dir)
    gateway = Gateway(config)
    await gateway.start()
    from hotline.center import ContactCenter, add_center_routes

    center = ContactCenter(gateway, config)
    await center.start()
    app = build_app(gateway)
    add_center_routes(app, center)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.http_host, config.server.http_port)
    await site.start()
    log.info(
        "hotline_started",
        sip=f"{config.server.sip_host}:{config.server.sip_port}",
        http=f"{config.server.http_host}:{config.server.http_port}",
        config=config.source,
        data_dir=str(data_dir),
        pid=os.getpid(),
        routing_core="compiled" if native_hook.active() else "pure-python",
    )
    # Garbage-collector pauses, not CPU, set the INVITE-to-200 tail: tens of thousands of
    # answered transactions linger 32 s (Timer J, RFC 6026 Accepted) and full collections
    # scanned them all. Measured at 1,000 calls/s (SIPp uac, 15 s, docs/benchmarks.md):
    #   default collector:                         gen-2 pauses 131 ms, p99 124 ms
    #   + freeze start-up objects, release spent transactions' requests: 78 ms, p99 48 ms
    #   + thresholds below (gen 2 about 20x rarer):  12 ms, p99 4 ms
    # Calls and transactions are freed by reference counting; the cyclic collector still runs.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    if ready_file:
        await asyncio.to_thread(Path(ready_file).write_text, str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("hotline_stopping")
    await gateway.stop()
    await center.close()
    await runner.cleanup()
    return 0


def run_server(config: Config, *, ready_file: str | None = None) -> int:
    fmt = os.environ.get("HOTLINE_LOG_FORMAT", config.server.log_format)
    configure_logging(fmt, config.server.log_level)
    Path(config.server.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        validate_sections(config)
    except ConfigError as exc:
        print(f"hotline: configuration error: {exc}")
        return 2
    start = time.monotonic()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, ready_file=ready_file))
    log.info("event_loop", kind="uvloop", import_ms=round((time.monotonic() - start) * 1000, 1))
    return uvloop.run(serve(config, ready_file=ready_file))
