"""WebRTC legs, signalling side: a browser over an aiohttp WebSocket becomes a ``CallSession``.

Two sockets (messages are JSON objects with a ``type``; see docs/webrtc.md):

* ``GET /ws/call``: a caller on a web page. ``call`` {number, sdp, caller} -> the media process
  answers the offer (``webrtc_offer``), we reply ``answer`` {sdp} and hand the session to the
  user agent like an INVITE (``SessionHost.accept_session``; ``rejected`` when no entry point takes
  the number). Then ``dtmf`` {digit} and ``hangup``; we send ``connected`` (answered),
  ``hold`` {held} and ``hangup`` {cause}.
* ``GET /ws/agent``: an agent's browser as their phone. ``login`` {agent, password} first
  (``logged_in``, or ``login_failed`` for an unknown user and a wrong password alike), then the
  gateway rings it (``incoming`` {caller, sdp: our offer}); the page answers ``accept`` {sdp}
  or ``decline``; after that the same ``dtmf``/``hangup``/``connected``/``hold`` messages.

The media itself (ICE, DTLS-SRTP, PCMU) lives in the media process
(``media/webrtc_peer.py``); this side only carries SDP and call control.

``add_routes(app, host)`` adds the two sockets and the caller's page ``GET /call``
(``media_gateway/static/call.html``); the agent's page belongs to ``agent_client/``. The host
is a ``sessions.SessionHost`` (the SIP user agent): this module never imports the composition
root.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from aiohttp import WSMsgType, web

from media_gateway.media import control as mc
from media_gateway.media.engine import MediaError
from media_gateway.session import CallSession
from media_gateway.sessions import SessionHost

log = structlog.get_logger("hotline.webrtc")

CALL_PAGE = Path(__file__).resolve().parent / "static" / "call.html"
MAX_MESSAGE = 64 * 1024
LOGIN_TIMEOUT = 15.0
FIRST_MESSAGE_TIMEOUT = 30.0
IDLE_TIMEOUT = 4 * 3600.0
DIGITS = frozenset("0123456789*#ABCD")
_chan_ids = itertools.count(1)


def _new_chan() -> str:
    return f"w{next(_chan_ids)}-{secrets.token_hex(3)}"


class WebRtcLeg:
    """The ``Leg`` of a session whose far end is a browser on a WebSocket."""

    channel = "webrtc"

    def __init__(self, ws: web.WebSocketResponse, *, close_on_hangup: bool = True) -> None:
        self.ws = ws
        self.close_on_hangup = close_on_hangup
        """A caller's socket closes with its call; an agent's phone stays logged in."""
        self.hung_up = False
        """True once we ended the call (the socket handler then does not report it again)."""

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_json(message)

    async def answer(self, session: CallSession) -> None:
        await self.send({"type": "connected", "call": session.id})

    async def hangup(self, session: CallSession, cause: str) -> None:
        self.hung_up = True
        await self.send({"type": "hangup", "cause": cause})
        if self.close_on_hangup:
            await _close_ws(self.ws)

    async def set_direction(self, session: CallSession, direction: str) -> None:
        # No re-negotiation: the media process sends the browser music or nothing while held.
        await self.send({"type": "hold", "held": direction != "sendrecv"})

    async def refer(self, session: CallSession, target: str) -> bool:
        return False  # a browser cannot place the new call itself: the gateway re-routes


def _parse(data: Any) -> dict[str, Any] | None:
    try:
        msg = json.loads(data)
    except (TypeError, ValueError):
        return None
    return msg if isinstance(msg, dict) and isinstance(msg.get("type"), str) else None


async def _receive(ws: web.WebSocketResponse, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
    """The next JSON message; None when the socket closed or stayed silent ``timeout`` s."""
    while True:
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            return None
        if msg.type == WSMsgType.TEXT:
            parsed = _parse(msg.data)
            if parsed is not None:
                return parsed
            await ws.send_json({"type": "error", "error": "expected a JSON object with a type"})
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        # binary, ping/pong: ignored


def _digit(msg: dict[str, Any]) -> str | None:
    d = msg.get("digit")
    return d if isinstance(d, str) and d in DIGITS else None


async def _close_ws(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(Exception):
        await ws.close()


class WebCaller:
    """One ``/ws/call`` socket: at most one call."""

    def __init__(self, host: SessionHost, ws: web.WebSocketResponse) -> None:
        self.host = host
        self.ws = ws
        self.leg = WebRtcLeg(ws)
        self.session: CallSession | None = None

    async def run(self) -> None:
        try:
            msg = await _receive(self.ws, FIRST_MESSAGE_TIMEOUT)
            if msg is None or msg["type"] != "call":
                await self.leg.send({"type": "error", "error": "first message must be a call"})
                return
            if not await self._call(msg):
                return
            session = self.session
            assert session is not None
            while not session.ended.is_set():
                msg = await _receive(self.ws, IDLE_TIMEOUT)
                if msg is None or msg["type"] == "hangup":
                    break
                if msg["type"] == "dtmf":
                    digit = _digit(msg)
                    if digit is None:
                        await self.leg.send({"type": "error", "error": "bad digit"})
                    else:
                        session.digit_from_signalling(digit, "webrtc")
        finally:
            session = self.session
            if session is not None and session.state != "ended" and not self.leg.hung_up:
                await session.ended_by_signalling("remote", "hangup")
            await _close_ws(self.ws)

    async def _call(self, msg: dict[str, Any]) -> bool:
        host = self.host
        number, sdp = msg.get("number"), msg.get("sdp")
        caller = msg.get("caller") or "web"
        if not isinstance(number, str) or not isinstance(sdp, str) or not isinstance(caller, str):
            await self.leg.send({"type": "error", "error": "call needs number and sdp strings"})
            return False
        caller = caller[:64]
        chan = _new_chan()
        try:
            reply = await host.media.request(mc.WebRtcOffer(chan=chan, sdp=sdp))
        except MediaError as exc:
            log.info("webrtc_offer_failed", error=str(exc))
            await self.leg.send({"type": "error", "error": f"cannot answer the offer: {exc}"})
            return False
        session = host.sessions.build(
            session_id=f"web-{secrets.token_hex(6)}",
            leg=self.leg,
            chan=chan,
            caller=caller,
            dialled=number,
            direction="inbound",
        )
        self.session = session
        await self.leg.send({"type": "answer", "sdp": reply.sdp, "call": session.id})
        if not await host.accept_session(session, number):
            log.info("webrtc_call_rejected", dialled=number)
            self.leg.hung_up = True
            await self.leg.send({"type": "rejected", "reason": "no such number"})
            await session.ended_by_signalling("local", "rejected")
            return False
        return True


class AgentBrowserPhone:
    """One ``/ws/agent`` socket after login: the agent's phone (``Registrations.browser_phones``)."""

    def __init__(self, host: SessionHost, ws: web.WebSocketResponse, agent: str) -> None:
        self.host = host
        self.ws = ws
        self.agent = agent
        self.leg = WebRtcLeg(ws, close_on_hangup=False)
        self.session: CallSession | None = None
        self._ringing: asyncio.Future[str | None] | None = None

    @property
    def busy(self) -> bool:
        return self._ringing is not None or (
            self.session is not None and self.session.state != "ended"
        )

    async def ring(self, caller: str, ring_timeout: float) -> CallSession | None:
        """Offer a call to the browser; the answered session, or None."""
        if self.busy or self.ws.closed:
            return None
        media = self.host.media
        chan = _new_chan()
        try:
            reply = await media.request(mc.WebRtcMakeOffer(chan=chan))
        except MediaError as exc:
            log.warning("webrtc_make_offer_failed", agent=self.agent, error=str(exc))
            return None
        loop = asyncio.get_running_loop()
        ringing: asyncio.Future[str | None] = loop.create_future()
        self._ringing = ringing
        call_id = f"web-{secrets.token_hex(6)}"
        answer: str | None = None
        try:
            await self.leg.send(
                {"type": "incoming", "caller": caller, "sdp": reply.sdp, "call": call_id}
            )
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(ringing, ring_timeout)
            if answer is not None:
                await media.request(mc.WebRtcAnswer(chan=chan, sdp=answer))
        except MediaError as exc:
            log.info("webrtc_answer_failed", agent=self.agent, error=str(exc))
            answer = None
        finally:
            self._ringing = None
            if answer is None:
                await self.leg.send({"type": "cancel", "call": call_id})
                with contextlib.suppress(MediaError):
                    await media.request(mc.WebRtcClose(chan=chan))
        if answer is None:
            return None
        self.leg = WebRtcLeg(self.ws, close_on_hangup=False)
        session = self.host.sessions.build(
            session_id=call_id,
            leg=self.leg,
            chan=chan,
            caller=caller,
            dialled=self.agent,
            direction="outbound",
            answered=True,
        )
        self.session = session
        await self.leg.send({"type": "connected", "call": call_id})
        return session

    async def run(self) -> None:
        """The socket's messages until it closes."""
        while True:
            msg = await _receive(self.ws, IDLE_TIMEOUT)
            if msg is None:
                return
            kind = msg["type"]
            session = self.session
            if kind in ("accept", "decline"):
                ringing = self._ringing
                sdp = msg.get("sdp")
                if ringing is not None and not ringing.done():
                    ok = kind == "accept" and isinstance(sdp, str) and sdp
                    ringing.set_result(sdp if ok else None)
            elif kind == "hangup":
                if session is not None and session.state != "ended":
                    await session.ended_by_signalling("remote", "hangup")
            elif kind == "dtmf":
                digit = _digit(msg)
                if session is not None and digit is not None:
                    session.digit_from_signalling(digit, "webrtc")
            else:
                await self.leg.send({"type": "error", "error": f"unknown message {kind!r}"})

    async def closed(self) -> None:
        """The socket is gone: a ring in progress is declined, a call in progress ends."""
        ringing = self._ringing
        if ringing is not None and not ringing.done():
            ringing.set_result(None)
        session = self.session
        if session is not None and session.state != "ended" and not self.leg.hung_up:
            await session.ended_by_signalling("remote", "hangup")


async def _check_login(
    host: SessionHost, msg: dict[str, Any] | None, *, source: str = ""
) -> str | None:
    """The agent a login message signs in, or None. Under the registrations' brute-force lockout
    (``source`` is the client's address): a failure is answered after the lockout's slow-down,
    and while the agent or the address is locked every login fails, right password or not."""
    if msg is None or msg.get("type") != "login":
        return None
    agent, password = msg.get("agent"), msg.get("password")
    if not isinstance(agent, str) or not isinstance(password, str):
        return None
    now = asyncio.get_running_loop().time()
    check = host.registrations.login(agent, password, source=source, now=now)
    if check.ok:
        return agent
    if check.delay:
        await asyncio.sleep(check.delay)
    return None


class WebRtcHandlers(NamedTuple):
    """The aiohttp handlers of the WebRTC sockets and the caller's page (mounted by the
    service's route table, which adds its access rules)."""

    ws_call: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ws_agent: Callable[[web.Request], Awaitable[web.StreamResponse]]
    call_page: Callable[[web.Request], Awaitable[web.StreamResponse]]


def handlers(host: SessionHost) -> WebRtcHandlers:
    """The WebRTC sockets and pages, for the HTTP API."""

    def socket() -> web.WebSocketResponse:
        return web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE)

    async def ws_call(request: web.Request) -> web.WebSocketResponse:
        ws = socket()
        await ws.prepare(request)
        await WebCaller(host, ws).run()
        return ws

    async def ws_agent(request: web.Request) -> web.WebSocketResponse:
        ws = socket()
        await ws.prepare(request)
        try:
            login = await _receive(ws, LOGIN_TIMEOUT)
            agent = await _check_login(host, login, source=request.remote or "")
            if agent is None:
                await ws.send_json({"type": "login_failed"})
                return ws
            phone = AgentBrowserPhone(host, ws, agent)
            loop = asyncio.get_running_loop()
            old = host.registrations.browser_connected(agent, phone, loop.time())
            if isinstance(old, AgentBrowserPhone):
                await old.leg.send({"type": "replaced"})
                await _close_ws(old.ws)
            log.info("agent_browser_connected", agent=agent)
            await ws.send_json({"type": "logged_in", "agent": agent})
            try:
                await phone.run()
            finally:
                host.registrations.browser_disconnected(agent, phone, loop.time())
                await phone.closed()
                log.info("agent_browser_disconnected", agent=agent)
        finally:
            await _close_ws(ws)
        return ws

    async def call_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(CALL_PAGE, headers={"Cache-Control": "no-cache"})

    return WebRtcHandlers(ws_call, ws_agent, call_page)


def add_routes(app: web.Application, host: SessionHost) -> None:
    """``GET /ws/call``, ``GET /ws/agent`` and ``GET /call`` on ``app``."""
    h = handlers(host)
    app.router.add_get("/ws/call", h.ws_call)
    app.router.add_get("/ws/agent", h.ws_agent)
    app.router.add_get("/call", h.call_page)
