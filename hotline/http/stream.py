"""The live event stream over HTTP: ``GET /api/events`` (a WebSocket) and, for clients that
poll, ``GET /api/events/recent``. The events, their numbering and who sees what are the feed's
(hotline/center/feed.py); this module only serves them.

The socket, for any signed-in staff member:

* **Sign-in** as for every route, checked at the upgrade: ``Authorization: Bearer <token>``
  (scripts), or the session cookie (browsers: a page cannot set headers on a WebSocket, and its
  same-origin handshake carries the cookie). A cookie's handshake must come from the same origin
  (a foreign page's socket would ride the cookie: 403). Tokens are not taken from the URL (URLs
  end up in logs and histories).
* **Messages** are JSON objects ``{seq, at, kind, data}``. Events (``agent_state``,
  ``call_queued``, ``call_offered`` ..., ``offer``, ``case``, ``queue``, ``stats``) have increasing
  ``seq`` numbers (global: a filtered stream skips numbers, which is no loss). Control messages
  carry the position in ``seq``: ``reset`` (first message of a fresh stream, or of a resume that
  was impossible; ``data.state`` is the current state to start from, ``data.reason`` why),
  ``resumed`` (first message of a resume that worked: the missed events follow),
  ``heartbeat`` (after ``heartbeat`` seconds without a message), ``closing`` (``data.reason``:
  ``slow_consumer``, ``shutdown``) just before the server closes the socket.
* **Resume**: remember the ``seq`` of the last message and ``data.stream`` of the ``reset``;
  reconnect with ``?after=<seq>&stream=<stream>`` (or send ``{"resume": seq, "stream": ...}``
  at any time). Every event after it that you may see follows, in order, once; if the server no
  longer holds them (or restarted), a ``reset`` says so.
* **Limits**: ``max_per_user`` sockets per staff member (429 beyond); a reader too slow to
  keep up is sent ``closing`` (``slow_consumer``) and closed (code 1013): resume to catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from pydantic import BaseModel, Field

from hotline.center.feed import (
    CenterEvents,
    FeedClosed,
    FeedEvent,
    StartReason,
    Subscription,
    Viewer,
    iso,
)
from hotline.http.api import Access, Api, ApiCall, Principal, Role, _same_origin
from hotline.http.middleware import ApiError, api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

log = structlog.get_logger("hotline.http.stream")

MAX_CLIENT_MESSAGE = 4096
"""Bytes a client message may have (they are only resume requests)."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    heartbeat: float = 15.0
    """Seconds without a message before a ``heartbeat`` message (keeps proxies and the client's
    idea of its position fresh)."""
    ping: float = 30.0
    """WebSocket ping interval; a client that does not answer is closed."""
    max_per_user: int = 4
    """Sockets one staff member may hold open at once."""


class StreamQuery(BaseModel):
    after: int | None = Field(default=None, ge=0)
    """Resume after this ``seq`` (the last message's); absent: start afresh (``reset``)."""
    stream: str | None = Field(default=None, min_length=1, max_length=64)
    """The ``stream`` the ``seq`` came from (``data.stream`` of ``reset``); another one (a
    restarted server) gives a ``reset``."""


class RecentQuery(StreamQuery):
    limit: int = Field(default=200, ge=1, le=1000)
    """Events at most in one answer (``more`` says when others wait)."""


class StreamEvent(BaseModel):
    seq: int
    at: datetime
    kind: str
    data: dict[str, Any]


class RecentEvents(BaseModel):
    """Events for a client that polls: pass ``position`` as ``after`` next time."""

    stream: str
    start: StartReason
    """``resumed``: every event after ``after`` follows; ``new`` (no ``after``): the latest
    events and the state; otherwise (``too_old``, ``ahead``, ``other_stream``) events were lost:
    start again from ``state``."""
    position: int
    more: bool
    """Events beyond ``limit`` wait: ask again at once."""
    state: dict[str, Any] | None
    """The current state (as in the socket's ``reset``), unless ``start`` is ``resumed``."""
    events: list[StreamEvent]


def _viewer(events: CenterEvents, who: Principal) -> Viewer:
    return events.viewer(who.user, everything=who.role.at_least(Role.SUPERVISOR))


class _Client:
    """One open socket: a writer (events, heartbeats) and a reader (resume requests)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        events: CenterEvents,
        viewer: Viewer,
        settings: StreamSettings,
    ) -> None:
        self.ws = ws
        self.events = events
        self.viewer = viewer
        self.settings = settings
        self.sent = 0
        self._resume: tuple[int, str | None] | None = None

    def _control(self, kind: str, seq: int, data: dict[str, Any]) -> str:
        message = {"seq": seq, "at": iso(self.events.feed.clock()), "kind": kind, "data": data}
        return json.dumps(message, separators=(",", ":"), default=str)

    def _subscribe(self, after: int | None, stream: str | None) -> tuple[Subscription, str]:
        """Subscribe and build the first message in the same step (the state a ``reset``
        carries is the state at the subscription's start)."""
        feed = self.events.feed
        sub = feed.subscribe(self.viewer, after=after, stream=stream)
        if sub.reset:
            data: dict[str, Any] = {"stream": feed.stream, "reason": sub.reason, "after": after}
            data["state"] = self.events.state(self.viewer)
            return sub, self._control("reset", sub.start, data)
        data = {"stream": feed.stream, "replay": sub.pending}
        return sub, self._control("resumed", sub.start, data)

    async def run(self, after: int | None, stream: str | None) -> str:
        """Serve until the client goes or the feed drops it; why it ended."""
        sub, first = self._subscribe(after, stream)
        reader = asyncio.get_running_loop().create_task(self._read(sub))
        try:
            await self.ws.send_str(first)
            while True:
                try:
                    event = await sub.next(self.settings.heartbeat)
                except FeedClosed as closed:
                    if closed.reason == "resume" and self._resume is not None:
                        (after, stream), self._resume = self._resume, None
                        sub, first = self._subscribe(after, stream)
                        reader.cancel()
                        reader = asyncio.get_running_loop().create_task(self._read(sub))
                        await self.ws.send_str(first)
                        continue
                    return await self._end(sub, closed.reason)
                if event is None:
                    await self.ws.send_str(self._control("heartbeat", sub.position, {}))
                else:
                    await self._send(event)
        except ConnectionError:
            return "gone"
        finally:
            reader.cancel()
            sub.close()
            await asyncio.wait([reader])

    async def _send(self, event: FeedEvent) -> None:
        await self.ws.send_str(event.text())
        self.sent += 1

    async def _end(self, sub: Subscription, reason: str) -> str:
        if reason == "gone":
            return reason
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(self._control("closing", sub.position, {"reason": reason}))
        code = WSCloseCode.TRY_AGAIN_LATER if reason == "slow_consumer" else WSCloseCode.GOING_AWAY
        await self.ws.close(code=code, message=reason.encode())
        return reason

    async def _read(self, sub: Subscription) -> None:
        """Resume requests, until the socket closes (then the subscription ends: ``gone``)."""
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type == WSMsgType.TEXT:
                    request = _resume_request(msg.data)
                    if request is not None:
                        self._resume = request
                        sub.close("resume")
                        return
                    continue  # anything else is ignored
                if msg.type in (
                    WSMsgType.CLOSE,
                    WSMsgType.CLOSING,
                    WSMsgType.CLOSED,
                    WSMsgType.ERROR,
                ):
                    return
        finally:
            if self._resume is None:
                sub.close("gone")  # the writer stops too


def _resume_request(text: str) -> tuple[int, str | None] | None:
    """``{"resume": seq, "stream"?: name}``, else None."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    seq, stream = message.get("resume"), message.get("stream")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None
    if stream is not None and not (isinstance(stream, str) and 0 < len(stream) <= 64):
        return None
    return seq, stream


def add_event_routes(
    api: Api, events: CenterEvents, *, settings: StreamSettings | None = None
) -> None:
    """Declare ``GET /api/events`` and ``GET /api/events/recent`` on ``api``."""
    settings = settings or StreamSettings()
    open_sockets: Counter[str] = Counter()

    @api.route(
        "GET",
        "/api/events",
        access=Access.SIGNED_IN,
        summary="The live event stream (a WebSocket)",
        description=(
            "Queue and agent changes, offers to you, case updates and statistics ticks, filtered"
            " by your role: a supervisor sees everything, an agent their own state, offers and"
            " cases and their queues' summaries. Messages are JSON {seq, at, kind, data}. Sign in"
            " with a bearer token or the session cookie (same origin). Resume with"
            " ?after=<last seq>&stream=<stream>: every missed event follows in order, or a"
            " `reset` with the current state when they are no longer held. docs/api.md."
        ),
        tags=["events"],
        query=StreamQuery,
        raw=True,
        status=101,
        errors=[403, 426, 429],
    )
    async def event_stream(call: ApiCall) -> web.StreamResponse:
        who = call.user
        query: StreamQuery = call.query
        request = call.request
        ws = web.WebSocketResponse(heartbeat=settings.ping, max_msg_size=MAX_CLIENT_MESSAGE)
        if not ws.can_prepare(request).ok:
            raise ApiError(
                426,
                "upgrade_required",
                "GET /api/events is a WebSocket: connect with Upgrade: websocket"
                " (or poll GET /api/events/recent)",
                headers={hdrs.UPGRADE: "websocket", hdrs.CONNECTION: "Upgrade"},
            )
        if who.via == "cookie" and not _same_origin(request):
            raise api_error(403, "forbidden", "cross-origin WebSocket refused")
        if open_sockets[who.user] >= settings.max_per_user:
            raise api_error(
                429,
                "too_many_streams",
                f"at most {settings.max_per_user} event streams per staff member",
            )
        open_sockets[who.user] += 1
        client = _Client(ws, events, _viewer(events, who), settings)
        reason = "gone"
        try:
            await ws.prepare(request)
            log.info("event_stream_opened", user=who.user, after=query.after)
            reason = await client.run(query.after, query.stream)
        finally:
            open_sockets[who.user] -= 1
            if open_sockets[who.user] <= 0:
                del open_sockets[who.user]
            log.info("event_stream_closed", user=who.user, reason=reason, sent=client.sent)
        return ws

    @api.route(
        "GET",
        "/api/events/recent",
        access=Access.SIGNED_IN,
        summary="Events since a position (for clients that poll)",
        description=(
            "The same events and filter as the WebSocket GET /api/events. Pass the answer's"
            " position as after next time; a start other than resumed means events were lost"
            " (start again from state)."
        ),
        tags=["events"],
        query=RecentQuery,
        response=RecentEvents,
    )
    async def recent_events(call: ApiCall) -> RecentEvents:
        query: RecentQuery = call.query
        viewer = _viewer(events, call.user)
        feed = events.feed
        start, found, position, more = feed.since(
            viewer, query.after, limit=query.limit, stream=query.stream
        )
        return RecentEvents(
            stream=feed.stream,
            start=start,
            position=position,
            more=more,
            state=None if start == "resumed" else events.state(viewer),
            events=[StreamEvent.model_validate(e.message()) for e in found],
        )


def declare(api: Api, hotline: Hotline) -> None:
    """The event stream of the node's contact center."""
    add_event_routes(api, hotline.center.events)
