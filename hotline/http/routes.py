"""The HTTP API (aiohttp): health, metrics, registrations, calls, trunks, test calls, pages.

GET  /healthz                  liveness
GET  /metrics                  Prometheus text format (prometheus_client)
GET  /api/registrations        registered softphones (agent, contact, source, expires)
GET  /api/calls                calls in progress
GET  /api/trunks               PSTN trunks and their registration state
POST /api/dial                 {"agent": ID} | {"uri": ..., "dest": "IP:PORT"} |
                               {"number": ..., "trunk": NAME}: ring a phone (a test call that
                               hangs up ``hold_seconds`` after the answer); answers when it ends
GET  /api/debug/sip            calls, dialogs, transactions, tasks held (leak checks)
GET  /call, /ws/call           a caller's WebRTC page and socket (media_gateway/webrtc.py)
GET  /agent, /ws/agent         an agent's browser phone (agent_client/) and its socket
     /api/acd, /api/cases...   the contact center's routes (hotline/http/cases.py)

Every error is one JSON shape (hotline/http/middleware.py); every request is one access-log line.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_client import pages as agent_pages
from hotline.config import parse_hostport
from hotline.http.cases import add_center_routes
from hotline.http.middleware import access_log_middleware, api_error, error_middleware, read_json
from media_gateway import webrtc

if TYPE_CHECKING:
    from hotline.server import Hotline


class DialRequest(BaseModel):
    """``POST /api/dial``: exactly one kind of destination."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(default=None, min_length=1, max_length=64)
    """An agent's id: their registered phone rings."""
    uri: str | None = Field(default=None, min_length=4, max_length=256)
    """A SIP URI, sent to ``dest``."""
    dest: str | None = Field(default=None, min_length=1, max_length=64)
    """``IP:PORT`` (an IP literal: names are never resolved)."""
    number: str | None = Field(default=None, min_length=2, max_length=32)
    """A PSTN number, through ``trunk``."""
    trunk: str | None = Field(default=None, min_length=1, max_length=64)
    caller: str = Field(default="", max_length=32)
    """The number presented on a trunk call (the trunk's caller-id rules apply)."""
    hold_seconds: float = Field(default=1.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _one_destination(self) -> DialRequest:
        kinds = [
            self.agent is not None,
            self.uri is not None or self.dest is not None,
            self.number is not None or self.trunk is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of: agent; uri and dest; number and trunk")
        if (self.uri is None) != (self.dest is None):
            raise ValueError("uri and dest go together")
        if (self.number is None) != (self.trunk is None):
            raise ValueError("number and trunk go together")
        return self


def build_http_app(hotline: Hotline) -> web.Application:
    app = web.Application(middlewares=[access_log_middleware, error_middleware])
    ua = hotline.ua
    users = [a.id for a in hotline.config.agents]

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = hotline.metrics.render()
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def registrations(request: web.Request) -> web.Response:
        return web.json_response(hotline.registrations.snapshot(users, ua.loop.time()))

    async def trunks(request: web.Request) -> web.Response:
        return web.json_response(ua.trunk_registrations.snapshot())

    async def calls(request: web.Request) -> web.Response:
        return web.json_response(ua.calls_snapshot())

    async def dial(request: web.Request) -> web.Response:
        body = await read_json(request, DialRequest)
        try:
            if body.agent is not None:
                if hotline.config.agent(body.agent) is None:
                    raise api_error(404, "not_found", f"no agent {body.agent!r}")
                report = await ua.test_call(agent=body.agent, hold_seconds=body.hold_seconds)
            elif body.number is not None:
                report = await ua.test_call(
                    number=body.number,
                    trunk=body.trunk,
                    caller=body.caller,
                    hold_seconds=body.hold_seconds,
                )
            else:
                assert body.uri is not None and body.dest is not None
                try:
                    dest = parse_hostport(body.dest, default_port=5060)
                except ValueError as exc:
                    raise api_error(422, "bad_dest", f"dest: {exc}") from None
                report = await ua.test_call(uri=body.uri, dest=dest, hold_seconds=body.hold_seconds)
        except LookupError as exc:
            raise api_error(404, "not_found", str(exc).strip("'\"")) from None
        except ValueError as exc:
            raise api_error(422, "cannot_dial", str(exc)) from None
        return web.json_response(report.as_dict())

    async def debug_sip(request: web.Request) -> web.Response:
        stats = ua.debug_counts()
        stats["tasks"] = len(asyncio.all_tasks())
        return web.json_response(stats)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/registrations", registrations)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/api/trunks", trunks)
    app.router.add_post("/api/dial", dial)
    app.router.add_get("/api/debug/sip", debug_sip)
    webrtc.add_routes(app, ua)
    agent_pages.add_routes(app)
    add_center_routes(app, hotline.center)
    return app
