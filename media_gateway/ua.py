"""The SIP user agent: the sans-IO endpoint's typed events become ``CallSession``s.

``SipUserAgent`` is the transaction user of ``sip/endpoint.py`` (through the asyncio shell
``transport.py``). It answers REGISTER through ``Registrations``, checks every new INVITE
(Request-URI scheme, Accept, Content-Type, SDP), asks a ``CallRouter`` what a dialled number
leads to, opens the call's media, answers, and runs the service the router chose on a
``CallSession``. Inside a call it handles re-INVITE (hold, media changes), INFO keys, NOTIFY and
REFER (blind, or attended with Replaces, RFC 3891). It places outbound calls (``originate``) to
a user's registered phone or browser, a ``sip:`` URI at an IP literal, or a number through a
trunk, and keeps the trunks registered (``TrunkRegistrations``).

It knows nothing of entry points, queues or agents: the router (the composition root's
service switch) decides what a number means, and the ``directory`` maps a dialled target (an
agent id or extension) to the SIP user whose phones ring. What the user agent observes for the
metrics goes to a ``UaObserver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from media_gateway.calls import (
    CallRecord,
    CallReport,
    CallRouter,
    InboundCall,
    NullObserver,
    Route,
    Service,
    UaObserver,
    UaSettings,
    Wire,
)
from media_gateway.dialplan import Destination, Destinations
from media_gateway.media import control as mc
from media_gateway.media.client import MediaClient
from media_gateway.media.engine import MediaError
from media_gateway.registrations import Registrations
from media_gateway.relayed import HEADER as SOURCE_HEADER
from media_gateway.relayed import real_source
from media_gateway.rtp.dtmf import parse_info_body
from media_gateway.sdp.offer_answer import (
    SRTP_POLICIES,
    NoCommonCodec,
    SrtpPolicy,
    SrtpRefused,
    negotiated_media,
)
from media_gateway.sdp.session import SdpError, SessionDescription
from media_gateway.session import CallSession, SessionEnded
from media_gateway.sessions import SessionFactory
from media_gateway.sip import events as ev
from media_gateway.sip.dialog import CallHandle
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import format_hostport, parse_name_addr
from media_gateway.sip.message import SipRequest
from media_gateway.sip.trunk import match_did
from media_gateway.sip.uri import parse_uri
from media_gateway.sip_leg import SipLeg, media_update
from media_gateway.streams import StreamLimits
from media_gateway.tls import SipTlsSettings, server_context
from media_gateway.transport import SipTransport, StreamConnection
from media_gateway.trunk_registrations import Trunk, TrunkRegistrations

log = structlog.get_logger("hotline.ua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, REFER, NOTIFY"

_EXPIRES = re.compile(r"expires=(\d+)", re.IGNORECASE)
"""A binding's lifetime in a 200-to-REGISTER's Contact."""


class SipUserAgent:
    """The transaction user: registrations, INVITE checks, sessions, in-dialog requests,
    outbound calls and trunk registrations."""

    def __init__(
        self,
        settings: UaSettings,
        *,
        media: MediaClient,
        registrations: Registrations,
        router: CallRouter,
        directory: Callable[[str], str | None],
        known_users: Callable[[], Sequence[str]],
        trunks: Sequence[Trunk] = (),
        language: str = "en",
        observer: UaObserver | None = None,
        rng: random.Random | None = None,
        stream_limits: StreamLimits | None = None,
        tls: SipTlsSettings | None = None,
        on_limit: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.stream_limits = stream_limits or StreamLimits()
        """Limits of SIP over TCP and TLS connections (``[sip.tcp]``)."""
        self.tls = tls or SipTlsSettings()
        """SIP over TLS (``[sip.tls]``); off without a certificate."""
        self.on_limit = on_limit
        self.loop = asyncio.get_running_loop()
        self.rng = rng or random.SystemRandom()
        self.endpoint = SipEndpoint(
            EndpointConfig(
                host=settings.public_host,
                port=settings.sip_port,
                transport="udp",
                user_agent=settings.user_agent,
                max_server_transactions=settings.max_server_transactions,
                retry_after=settings.retry_after,
                allow=ALLOW,
                limits=settings.limits,
                tls_port=(tls or SipTlsSettings()).port,
            ),
            rng=self.rng,
        )
        self._media = media
        self._registrations = registrations
        self.router = router
        self.directory = directory
        """Maps a dialled target (an agent's id or extension) to the SIP user to ring."""
        self.known_users = known_users
        self.trunks = list(trunks)
        self.observer: UaObserver = observer or NullObserver()
        self._sessions = SessionFactory(media, language=language, rerouter=self.reroute)
        self.trunk_registrations = TrunkRegistrations(
            self.trunks,
            self.endpoint,
            local_host=settings.public_host,
            local_port=settings.sip_port,
            rng=self.rng,
            clock=self.loop.time,
        )
        self.destinations = Destinations(
            public_host=settings.public_host,
            registrations=registrations,
            trunks=self.trunks,
            clock=self.loop.time,
            edge=settings.edge,
        )
        self.calls: dict[CallHandle, CallRecord] = {}
        self._by_source: Counter[str] = Counter()
        """Inbound calls in progress per source IP (``max_calls_per_source``)."""
        self._counted: dict[CallHandle, str] = {}
        self._limited: set[str] = set()
        """Sources at their limit (logged once each time they reach it)."""
        """SIP calls in progress by their endpoint handle (handles hash by identity)."""
        self.web_sessions: set[CallSession] = set()
        """Sessions that did not come through SIP (WebRTC), for the debug counts."""
        self.transport: Wire | None = None
        self._chan_seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- SessionHost (for webrtc.py) -----------------------------------------------------------

    @property
    def sessions(self) -> SessionFactory:
        return self._sessions

    @property
    def media(self) -> MediaClient:
        return self._media

    @property
    def registrations(self) -> Registrations:
        return self._registrations

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        transport = SipTransport(
            self.endpoint,
            self.on_event,
            max_loop_lag=s.max_loop_lag,
            udp_receive_buffer=s.udp_receive_buffer,
            limits=self.stream_limits,
            on_limit=self.on_limit,
            tls_context=server_context(self.tls.cert, self.tls.key) if self.tls.enabled else None,
            tls_port=self.tls.port,
        )
        await transport.start(s.sip_host, s.sip_port, s.transports)
        self.transport = transport
        if self.trunk_registrations.registrations:
            self._spawn(self._trunk_loop())
        self._spawn(self._expire_registrations())

    async def stop(self) -> None:
        now = self.loop.time()
        for record in list(self.calls.values()):
            if record.done is not None and not record.done.done():
                record.done.set_result(CallReport(record.call_id, "shutdown"))
            if record.answered_at is not None and record.handle is not None:
                with contextlib.suppress(Exception):
                    self.endpoint.bye(record.handle, now=now)
        if self.transport is not None:
            self.transport.pump()
            await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            await self.transport.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- snapshots -----------------------------------------------------------------------------

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

    def debug_counts(self) -> dict[str, Any]:
        return {
            "active_calls": len(self.endpoint.active_calls()),
            "gateway_calls": len(self.calls),
            "transactions": self.endpoint.transaction_count(),
            "transaction_sample": self.endpoint.transaction_summary(5),
            "rtp_endpoints": sum(1 for r in self.calls.values() if r.chan),
            "sessions": len(self.web_sessions),
            "stats": dict(self.endpoint.stats),
        }

    # -- event dispatch ----------------------------------------------------------------------

    def on_event(self, event: ev.SipEvent) -> None:
        match event:
            case ev.InviteReceived():
                self.observer.sip_request("INVITE")
                with structlog.contextvars.bound_contextvars(
                    call_id=event.request.headers.get("Call-ID")
                ):
                    self._on_invite(event)
            case ev.RequestReceived():
                method = event.request.method
                self.observer.sip_request(method)
                if method == "REGISTER":
                    self._on_register(event)
                else:
                    self._respond(event.transaction, 405, headers=[("Allow", ALLOW)])
            case ev.CallEnded():
                self._on_call_ended(event)
            case ev.CallAnswered():
                self._on_answered(event)
            case ev.CallFailed():
                record = self.calls.get(event.call)
                if record is not None:
                    self._finish(record, f"failed:{event.status}")
            case ev.ReinviteReceived():
                self._on_reinvite(event)
            case ev.ReinviteResponded():
                record = self.calls.get(event.call)
                if record is not None and record.leg is not None:
                    record.leg.reinvite_answered(event.status, event.sdp)
            case ev.InDialogRequestReceived():
                self._on_in_dialog(event)
            case ev.InfoReceived():
                self.observer.sip_request("INFO")
                self._on_info(event)
            case ev.AckTimedOut():
                self.endpoint.bye(event.call, now=self.loop.time())
                self._flush()
            case ev.ResponseReceived():
                self._request_done(event.transaction, event.response.status, event.response)
            case ev.RequestTimedOut():
                self._request_done(event.transaction, 408, None)
            case _:
                pass  # AckReceived, CancelReceived (a CallEnded follows), CallProgress

    def _request_done(self, tx: object, status: int, response: Any) -> None:
        """A response to one of our out-of-dialog or in-dialog requests."""
        for record in self.calls.values():
            if record.leg is not None and record.leg.owns_request(tx):
                record.leg.request_answered(tx, status)
                return
        headers = response.headers if response is not None else None
        self.trunk_registrations.response(tx, status, headers)

    def _on_in_dialog(self, event: ev.InDialogRequestReceived) -> None:
        method = event.request.method
        self.observer.sip_request(method)
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

    def _on_info(self, event: ev.InfoReceived) -> None:
        """SIP INFO keys (application/dtmf-relay, application/dtmf) join the session's keys."""
        record = self.calls.get(event.call)
        try:
            digit = parse_info_body(event.content_type, event.body, at=self.loop.time())
        except ValueError as exc:
            log.info("sip_info_ignored", call_id=record.call_id if record else "", reason=str(exc))
            return
        if record is not None and record.session is not None:
            record.session.digit_from_signalling(digit.digit, "info")

    # -- the SIP side of sessions (SipSide for sip_leg.py) ------------------------------------

    def flush(self) -> None:
        self._flush()

    def respond_sdp(self, handle: Any, status: int, body: bytes) -> None:
        self._respond(handle, status, body=body, headers=[("Content-Type", "application/sdp")])
        record = self.calls.get(handle)
        if record is not None and 200 <= status < 300 and record.answered_at is None:
            record.answered_at = self.loop.time()
            self.observer.call_setup(record.answered_at - record.started)
            log.info(
                "call_answered",
                call_id=record.call_id,
                entry=record.entry,
                caller=record.caller,
                dialled=record.dialled,
            )

    def ringing(self, handle: Any) -> None:
        """180 Ringing (while a colleague's phone rings for this caller)."""
        self._respond(handle, 180)

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
        """Send what the endpoint queued. Inside event dispatch the pump sends after the
        handler anyway; from a task (an answer after an await) it sends now."""
        if self.transport is not None:
            self.transport.pump()

    async def _open_media(self, record: CallRecord) -> int:
        self._chan_seq += 1
        chan = f"{record.direction[0]}{self._chan_seq}"
        opened = await self._media.request(mc.Open(chan=chan))
        record.chan = chan
        if opened.port is None:
            raise MediaError(f"media channel {chan} has no RTP port")
        return opened.port

    async def _close_media(self, record: CallRecord) -> None:
        chan, record.chan = record.chan, ""
        if not chan:
            return
        self._media.unsubscribe(chan)
        with contextlib.suppress(MediaError):
            await self._media.request(mc.Close(chan=chan))

    # -- REGISTER ----------------------------------------------------------------------------

    def _client(self, request: SipRequest, source: tuple[str, int]) -> tuple[str, int]:
        """Whom a request counts against (lockout, nonces): behind a cluster's edge, the
        address the edge writes in ``X-Hotline-Source`` (relayed.py)."""
        edge = self.settings.edge
        return real_source(
            source, request.headers.get(SOURCE_HEADER), (edge[0],) if edge is not None else ()
        )

    def _on_register(self, event: ev.RequestReceived) -> None:
        reply = self._registrations.register(
            event.request,
            source=event.source,
            transport=event.transport,
            now=self.loop.time(),
            client=self._client(event.request, event.source),
        )
        self.observer.registration(reply.outcome)
        self._respond(event.transaction, reply.status, headers=reply.headers, reason=reply.reason)
        conn = getattr(event.transaction, "connection", None)
        if reply.status == 200 and isinstance(conn, StreamConnection):
            # The phone's calls come over this connection: keep it past the idle timeout for
            # as long as its longest binding lives.
            expires = [int(v) for _, h in reply.headers for v in _EXPIRES.findall(h)]
            if expires and max(expires) > 0:
                conn.hold_open(max(expires) + 32.0)

    # -- INVITE --------------------------------------------------------------------------------

    def _dialled(self, request: SipRequest, source: tuple[str, int]) -> tuple[str, str]:
        """(number, route) for an initial INVITE: a trunk's DID maps to its entry number."""
        uri = parse_uri(request.uri)  # raises SipParseError(416) on an unknown scheme
        dialled = uri.user or ""
        for trunk in self.trunks:
            if trunk.address[0] == source[0]:
                entry = match_did(trunk.dids, dialled)
                if entry is not None:
                    return entry, f"trunk:{trunk.name}"
        return dialled, "dialled"

    def _on_invite(self, event: ev.InviteReceived) -> None:
        request = event.request
        handle = event.call
        try:
            number, route = self._dialled(request, event.source)
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
        offer: SessionDescription | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as exc:
                self._respond(handle, 400, reason=f"Bad SDP: {exc}"[:60])
                return
        call = InboundCall(
            call_id=request.headers.get("Call-ID") or "",
            number=number,
            route=route,
            caller=_caller(request),
            source=event.source,
            transport=event.transport,
        )
        decision = self.router.route(call)
        if isinstance(decision, int):
            reason = "Temporarily Unavailable" if decision == 480 else None
            self._respond(handle, decision, reason=reason)
            return
        if decision.kind == "extension":  # a colleague's call: digest, not the address alone
            user, challenge = self._registrations.authorize_invite(
                request, source=self._client(request, event.source), now=self.loop.time()
            )
            if user is None:
                self._respond(handle, 407, headers=challenge)
                return
        if self._source_full(event.source[0]):
            self._respond(handle, 503, headers=[("Retry-After", str(self.settings.retry_after))])
            self.observer.call_ended("inbound", "source_limit")
            return
        srtp = self._srtp_policy(event.source[0], event.transport)
        if srtp is None:  # SDES keys would cross the network in the clear
            self._respond(
                handle, 488, headers=[("Warning", '399 hotline "SRTP needs SIP over TLS"')]
            )
            return
        record = CallRecord(
            srtp=srtp,
            call_id=call.call_id,
            direction="inbound",
            entry=decision.kind,
            caller=call.caller,
            dialled=number,
            started=self.loop.time(),
            handle=handle,
            route=route,
            source=event.source,
        )
        self.calls[handle] = record
        self._by_source[event.source[0]] += 1
        self._counted[handle] = event.source[0]
        self._spawn(self._start_session(record, offer, decision.service))

    def _srtp_policy(self, peer_ip: str, transport: str, trunk: str = "") -> str | None:
        """The SRTP policy of a call with this peer: its trunk's (by name, else by address),
        else the phones' (``[sip] srtp``). SDES keys travel in the SDP, so unless the
        signalling is TLS (or ``srtp_over_plain_sip``) ``optional`` becomes ``off`` and
        ``required`` None: the call cannot be made."""
        policy = self.settings.srtp
        for t in self.trunks:
            if (t.name == trunk) if trunk else (t.address[0] == peer_ip):
                policy = str(getattr(t, "srtp", "off"))
                break
        if policy == "off" or self.settings.srtp_over_plain_sip:
            return policy
        if transport.lower() in ("tls", "wss"):
            return policy
        return None if policy == "required" else "off"

    def _trusted(self, ip: str) -> bool:
        """``[sip.limits] trusted`` (a proxy or the cluster's edge carries many callers)."""
        trusted = self.settings.limits.trusted
        return ip in trusted or (self.settings.edge is not None and ip == self.settings.edge[0])

    def _source_full(self, ip: str) -> bool:
        """Whether ``ip`` already holds ``max_calls_per_source`` calls (one log line when it
        reaches it, not one per refused call)."""
        limit = self.settings.max_calls_per_source
        if not limit or self._by_source[ip] < limit:
            return False
        if any(trunk.address[0] == ip for trunk in self.trunks) or self._trusted(ip):
            return False
        if ip not in self._limited:
            self._limited.add(ip)
            log.warning("calls_per_source_limited", source=ip, limit=limit)
        return True

    async def _start_session(
        self, record: CallRecord, offer: SessionDescription | None, service: Service
    ) -> None:
        """Open the call's media, prepare the SDP answer, and run the service on the session."""
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
            from_trunk = record.route.startswith("trunk:")
            leg = SipLeg(
                self,
                record.handle,
                local_ip=self.settings.public_host,
                local_port=port,
                channel="trunk" if from_trunk else "sip",
                session_id=str(self.rng.getrandbits(40)),
                sip_port=self.settings.sip_port,
                srtp=_policy(record.srtp),
            )
            record.leg = leg
            try:
                update = leg.prepare_answer(offer)
            except NoCommonCodec as exc:
                srtp_refused = isinstance(exc, SrtpRefused)
                text = _warning_text(str(exc)) if srtp_refused else "no common codec"
                self._respond(record.handle, 488, headers=[("Warning", f'305 hotline "{text}"')])
                if srtp_refused:
                    log.info("srtp_refused", reason=str(exc), policy=record.srtp)
                self._finish(record, "srtp_refused" if srtp_refused else "no_common_codec")
                return
            session = self._sessions.build(
                session_id=record.call_id,
                leg=leg,
                chan=record.chan,
                caller=record.caller,
                dialled=record.dialled,
                direction="inbound",
            )
            record.session = session
            # How to call this caller back later (a voicemail or callback request): their
            # number through the trunk they came in on, or their phone's own address.
            if from_trunk and record.caller:
                session.vars["callback_uri"] = record.caller
            elif record.caller and record.source is not None:
                ip, sport = record.source
                session.vars["callback_uri"] = f"sip:{record.caller}@{format_hostport(ip, sport)}"
            if update is not None:
                try:
                    await self._media.request(update.op(record.chan))
                except MediaError as exc:
                    log.error("media_failed", error=str(exc))
                    await session.hangup("media_failed")
                    return
            await self._serve(session, service, entry=record.entry)

    async def _serve(self, session: CallSession, service: Service, *, entry: str) -> None:
        """Run a service on a session (any channel); when it returns or fails, the call ends."""
        try:
            with contextlib.suppress(SessionEnded):
                await service(session)
        except MediaError as exc:
            log.error("media_failed", error=str(exc))
        except Exception:
            log.exception("session_handler_failed", entry=entry)
        finally:
            if session.state != "ended":
                with contextlib.suppress(Exception):
                    await session.hangup("normal")

    async def echo(self, session: CallSession) -> None:
        """The echo test: answer and return the caller's own RTP until they hang up."""
        await session.answer()
        await self._media.request(mc.Echo(chan=session.chan, on=True))
        await session.ended.wait()

    async def accept_session(self, session: CallSession, number: str) -> bool:
        """A session that arrived by another channel (WebRTC): route ``number`` like an INVITE's
        and run its service. False when no entry point takes it."""
        call = InboundCall(
            call_id=session.id,
            number=number,
            route="webrtc",
            caller=session.caller,
            source=("0.0.0.0", 0),
            transport="ws",
        )
        decision = self.router.route(call)
        if isinstance(decision, int):
            return False
        self.web_sessions.add(session)
        self._spawn(self._run_web_session(session, decision))
        return True

    async def _run_web_session(self, session: CallSession, route: Route) -> None:
        entry = route.kind
        with structlog.contextvars.bound_contextvars(call_id=session.id):
            log.info(
                "session_started",
                channel=session.channel,
                caller=session.caller,
                dialled=session.dialled,
                entry=entry,
            )
            try:
                await self._serve(session, route.service, entry=entry)
            finally:
                self.web_sessions.discard(session)
                log.info("session_ended", by=session.ended_by, cause=session.cause)

    async def _end_session(self, record: CallRecord, session: CallSession, by: str) -> None:
        await session.ended_by_signalling(by, record.outcome)
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

    # -- REFER (RFC 3515, Replaces RFC 3891) ---------------------------------------------------

    def _on_refer(self, event: ev.InDialogRequestReceived) -> None:
        """A phone in a bridged call asks us to transfer its peer: blind, or attended when
        Refer-To carries Replaces naming its consultation call."""
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
        s = self.settings
        ours = uri.host in (s.public_host, s.sip_host) and uri.port in (None, s.sip_port)
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
        if referrer.state != "ended" and record.handle is not None:
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

    # -- re-INVITE -----------------------------------------------------------------------------

    def _on_reinvite(self, event: ev.ReinviteReceived) -> None:
        """Hold/unhold or a media change: answer with our same RTP port (RFC 3264 §8)."""
        record = self.calls.get(event.call)
        if record is None or record.leg is None:
            self._respond(event.transaction, 488)
            return
        try:
            answer, update = record.leg.answer_reinvite(event.sdp)
        except (SdpError, NoCommonCodec):
            self._respond(event.transaction, 488)
            return
        self._respond(
            event.transaction,
            200,
            body=answer.to_bytes(),
            headers=[("Content-Type", "application/sdp")],
        )
        if update is not None and record.chan:
            self._spawn(self._apply_reinvite(record, update.op(record.chan), update.held))

    async def _apply_reinvite(self, record: CallRecord, update: mc.Update, held: bool) -> None:
        with contextlib.suppress(MediaError):
            await self._media.request(update)
        if record.session is not None:
            await record.session.remote_hold_changed(held)

    # -- the end of a call ---------------------------------------------------------------------

    def _on_call_ended(self, event: ev.CallEnded) -> None:
        record = self.calls.get(event.call)
        if record is None:
            return
        outcome = "answered" if record.answered_at is not None else f"ended:{event.reason}"
        self._finish(record, outcome, by=event.by)

    def _finish(self, record: CallRecord, outcome: str, *, by: str = "") -> None:
        if record.handle is None or self.calls.pop(record.handle, None) is None:
            return
        ip = self._counted.pop(record.handle, None)
        if ip is not None:
            left = self._by_source[ip] = self._by_source[ip] - 1
            if left < self.settings.max_calls_per_source:
                self._limited.discard(ip)  # below its limit again: the next bite is logged
            if left <= 0:
                del self._by_source[ip]
        record.outcome = outcome
        if record.session is not None:
            self._spawn(self._end_session(record, record.session, by or "local"))
        elif record.chan:
            self._spawn(self._close_media(record))
        now = self.loop.time()
        self.observer.call_ended(record.direction, outcome.split(":")[0])
        talk = round(now - record.answered_at, 3) if record.answered_at is not None else 0.0
        log.info(
            "sip_call_ended",
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
                CallReport(
                    record.call_id,
                    outcome,
                    talk,
                    agent=record.agent,
                    trunk=record.trunk,
                    caller_id=record.caller_id,
                )
            )

    # -- outbound calls (UAC) ----------------------------------------------------------------

    async def originate(
        self,
        target: str,
        *,
        ring_timeout: float = 30.0,
        caller: str = "hotline",
        display: str | None = None,
    ) -> CallSession | None:
        """Call a user (an agent's id or extension: their browser phone, else their registered
        phone), a number (through the first trunk) or ``sip:user@IP[:port]``; the answered
        session, or None when nobody answered. ``display``: the From display name a user's
        registered phone shows (``sales: +33612345678``). LookupError: the user has no phone;
        ValueError: the target cannot be called."""
        user = self.directory(target)
        if user is not None:
            phone = self._registrations.browser_phones.get(user)
            if phone is not None:
                return await phone.ring(caller, ring_timeout)
            dest = self.destinations.user(user, caller, display)
            _, session = await self._invite(dest, ring_timeout)
            return session
        digits = target.lstrip("+")
        if digits.isdigit() and len(digits) >= 5 and self.trunks:
            # A phone number (a callback to a PSTN caller): out through the first trunk.
            dest = self.destinations.trunk(target, self.trunks[0].name, "")
            _, session = await self._invite(dest, ring_timeout)
            return session
        try:
            uri = parse_uri(target)
        except SipParseError as exc:  # not a ValueError: callers catch (LookupError, ValueError)
            raise ValueError(f"cannot call {target!r}: {exc}") from exc
        if uri.scheme not in ("sip", "sips"):
            raise ValueError(f"cannot call {target!r}: only agents and sip: URIs")
        dest = self.destinations.uri(target, (uri.host, uri.port or 5060), caller)
        _, session = await self._invite(dest, ring_timeout)
        return session

    async def test_call(
        self,
        *,
        agent: str | None = None,
        uri: str | None = None,
        dest: tuple[str, int] | None = None,
        number: str | None = None,
        trunk: str | None = None,
        caller: str = "",
        hold_seconds: float = 1.0,
        ring_timeout: float = 30.0,
    ) -> CallReport:
        """Place a call (to a user's phone, a URI at an address, or a number through a trunk),
        keep it ``hold_seconds`` once answered, hang up, and report how it went."""
        if agent is not None:
            if not self._registrations.contacts(agent, self.loop.time()):
                return CallReport("", "not_registered", agent=agent)
            destination = self.destinations.user(agent, "hotline")
        elif number is not None and trunk is not None:
            destination = self.destinations.trunk(number, trunk, caller)
            ring_timeout = max(ring_timeout, 60.0)
        elif uri is not None and dest is not None:
            destination = self.destinations.uri(uri, dest, "hotline")
        else:
            raise ValueError("a test call needs an agent, a uri and dest, or a number and trunk")
        record, session = await self._invite(destination, ring_timeout)
        if session is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.ended.wait(), hold_seconds)
            if session.state != "ended":
                await session.hangup("normal")
        assert record.done is not None
        return await asyncio.wait_for(asyncio.shield(record.done), 40)

    async def _invite(
        self, d: Destination, ring_timeout: float
    ) -> tuple[CallRecord, CallSession | None]:
        srtp = self._srtp_policy(d.dest[0], d.transport, d.trunk)
        if srtp is None:
            raise ValueError(f"cannot call {d.uri}: SRTP is required and SIP to it is not TLS")
        record = CallRecord(
            srtp=srtp,
            call_id="",
            direction="outbound",
            entry="dial",
            caller="hotline",
            dialled=d.uri,
            started=self.loop.time(),
            done=self.loop.create_future(),
            agent=d.agent,
            trunk=d.trunk,
            caller_id=d.caller_id,
        )
        port = await self._open_media(record)
        leg = SipLeg(
            self,
            None,
            local_ip=self.settings.public_host,
            local_port=port,
            channel="trunk" if d.trunk else "sip",
            session_id=str(self.rng.getrandbits(40)),
            sip_port=self.settings.sip_port,
            srtp=_policy(srtp),
        )
        leg.answered = True
        offer = leg.local_offer()
        handle = self.endpoint.invite(
            d.uri,
            d.dest,
            from_uri=d.from_uri,
            from_display=d.from_display,
            to_uri=d.to_uri,
            sdp=offer.to_bytes(),
            headers=d.headers,
            now=self.loop.time(),
            transport=d.transport,
        )
        leg.handle = handle
        record.handle = handle
        record.call_id = handle.call_id
        record.leg = leg
        record.offer = offer
        answered: asyncio.Future[None] = self.loop.create_future()
        record.answered = answered
        session = self._sessions.build(
            session_id=record.call_id,
            leg=leg,
            chan=record.chan,
            caller="hotline",
            dialled=d.uri,
            direction="outbound",
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

    def _on_answered(self, event: ev.CallAnswered) -> None:
        record = self.calls.get(event.call)
        if record is None:
            return
        record.answered_at = self.loop.time()
        log.info("outbound_answered", call_id=record.call_id, dialled=record.dialled)
        self._spawn(self._outbound_media(record, event.sdp))

    async def _outbound_media(self, record: CallRecord, body: bytes) -> None:
        offer, record.offer = record.offer, None
        answered, record.answered = record.answered, None
        try:
            if offer is not None and body and record.chan:
                params = negotiated_media(
                    offer, SessionDescription.parse(body), local_is_offerer=True
                )
                update = media_update(params)
                await self._media.request(update.op(record.chan))
        except (SdpError, NoCommonCodec, MediaError) as exc:
            log.info("outbound_answer_unusable", call_id=record.call_id, reason=str(exc))
        if answered is not None and not answered.done():
            answered.set_result(None)

    # -- housekeeping --------------------------------------------------------------------------

    async def _expire_registrations(self, every: float = 5.0) -> None:
        """Drop expired registrations (a user whose last phone went away is reported absent)."""
        while True:
            await asyncio.sleep(every)
            self._registrations.expire(self.loop.time())

    async def _trunk_loop(self) -> None:
        while True:
            self.trunk_registrations.poll()
            self._flush()
            await asyncio.sleep(1.0)


def _policy(value: str) -> SrtpPolicy:
    for policy in SRTP_POLICIES:
        if value == policy:
            return policy
    raise ValueError(f"unknown SRTP policy {value!r}")


def _warning_text(reason: str) -> str:
    """A reason as a Warning header's quoted text (no quotes, backslashes or controls)."""
    return "".join(c if c.isprintable() and c not in '"\\' else "'" for c in reason)[:120]


def _caller(request: SipRequest) -> str:
    try:
        return parse_uri(parse_name_addr(request.headers.get("From") or "").uri).user or ""
    except SipParseError:
        return ""
