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
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_client import desk as agent_desk
from agent_client import pages as agent_pages
from agent_client.console import declare as declare_console
from hotline.config import parse_hostport
from hotline.http.agents import declare as declare_agents
from hotline.http.api import API_KEY, Access, Api, ApiCall
from hotline.http.cases import declare as declare_center_routes
from hotline.http.docs import declare as declare_docs
from hotline.http.middleware import access_log_middleware, api_error, error_middleware
from hotline.http.monitor import declare as declare_monitor
from hotline.http.recordings import declare as declare_recordings
from hotline.http.routing import declare as declare_routing
from hotline.http.session import declare as declare_session
from hotline.http.session import session_middleware
from hotline.http.stats import declare as declare_stats
from hotline.http.stream import declare as declare_stream
from media_gateway import webrtc

if TYPE_CHECKING:
    from hotline.server import Hotline


class Health(BaseModel):
    status: str


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


def _version() -> str:
    try:
        return version("hotline")
    except PackageNotFoundError:
        return "0+unknown"


def build_api(hotline: Hotline) -> Api:
    """Every route of the service, declared once (hotline/http/api.py)."""
    api = Api(
        title="hotline",
        version=_version(),
        authenticator=hotline.auth,
        audit=hotline.audit.api_call,
    )
    declare(api, hotline)
    declare_center_routes(api, hotline)
    declare_agents(api, hotline)
    declare_recordings(api, hotline)
    declare_routing(api, hotline)
    declare_stats(api, hotline)
    declare_stream(api, hotline)
    declare_monitor(api, hotline)
    agent_desk.declare(api, Access.PUBLIC)  # /desk, /desk/*, /common/*
    declare_docs(api, hotline)
    declare_console(api, public=Access.PUBLIC)
    declare_session(api, hotline)  # last: DELETE /api/tokens/current revokes the caller's token
    return api


def build_http_app(hotline: Hotline) -> web.Application:
    app = web.Application(
        middlewares=[session_middleware(hotline.config), access_log_middleware, error_middleware],
        client_max_size=hotline.config.http.connections.max_message_bytes,
    )
    app[API_KEY] = api = build_api(hotline)
    api.mount(app)
    return app


def declare(api: Api, hotline: Hotline) -> None:
    """The node's own routes: health, metrics, SIP state, test calls, WebRTC pages."""
    ua = hotline.ua
    users = [a.id for a in hotline.config.agents]
    rtc = webrtc.handlers(ua)

    @api.route("GET", "/healthz", access=Access.PUBLIC, summary="Liveness", response=Health)
    async def healthz(call: ApiCall) -> Health:
        return Health(status="ok")

    @api.route(
        "GET",
        "/metrics",
        access=Access.METRICS,
        summary="Prometheus metrics (text exposition format)",
        raw=True,
        raw_content_type="text/plain",
    )
    async def metrics(call: ApiCall) -> web.Response:
        body, content_type = hotline.metrics.render()
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    @api.route(
        "GET",
        "/api/registrations",
        access=Access.SUPERVISOR,
        summary="Registered softphones and browser phones",
        tags=["sip"],
        response=list[dict[str, Any]],
    )
    async def registrations(call: ApiCall) -> list[dict[str, Any]]:
        return hotline.registrations.snapshot(users, ua.loop.time())

    @api.route(
        "GET",
        "/api/trunks",
        access=Access.SUPERVISOR,
        summary="PSTN trunks and their registration state",
        tags=["sip"],
        response=list[dict[str, Any]],
    )
    async def trunks(call: ApiCall) -> list[dict[str, Any]]:
        return ua.trunk_registrations.snapshot()

    @api.route(
        "GET",
        "/api/calls",
        access=Access.SUPERVISOR,
        summary="Calls in progress",
        tags=["sip"],
        response=list[dict[str, Any]],
    )
    async def calls(call: ApiCall) -> list[dict[str, Any]]:
        return ua.calls_snapshot()

    @api.route(
        "POST",
        "/api/dial",
        access=Access.ADMIN,
        summary="Place a test call (an agent's phone, a SIP URI, or a number through a trunk)",
        tags=["sip"],
        body=DialRequest,
        response=dict[str, Any],
        errors=[404],
    )
    async def dial(call: ApiCall) -> dict[str, Any]:
        body: DialRequest = call.body
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
        return report.as_dict()

    @api.route(
        "GET",
        "/api/debug/sip",
        access=Access.ADMIN,
        summary="Calls, dialogs, transactions and tasks held (leak checks)",
        tags=["sip"],
        response=dict[str, Any],
    )
    async def debug_sip(call: ApiCall) -> dict[str, Any]:
        stats = ua.debug_counts()
        stats["tasks"] = len(asyncio.all_tasks())
        return stats

    @api.route(
        "GET",
        "/call",
        access=Access.PUBLIC,
        summary="The caller's WebRTC page",
        tags=["pages"],
        raw=True,
        raw_content_type="text/html",
    )
    async def call_page(call: ApiCall) -> web.StreamResponse:
        return await rtc.call_page(call.request)

    @api.route(
        "GET",
        "/ws/call",
        access=Access.PUBLIC,
        summary="The caller's WebRTC socket (a public caller, like a phone call)",
        tags=["pages"],
        raw=True,
        raw_content_type="application/octet-stream",
    )
    async def ws_call(call: ApiCall) -> web.StreamResponse:
        return await rtc.ws_call(call.request)

    @api.route(
        "GET",
        "/agent",
        access=Access.PUBLIC,
        summary="The agent's browser phone page (it signs in itself)",
        tags=["pages"],
        raw=True,
        raw_content_type="text/html",
    )
    async def agent_page(call: ApiCall) -> web.StreamResponse:
        return await agent_pages.agent_page(call.request)

    @api.route(
        "GET",
        "/ws/agent",
        access=Access.OWN_AUTH,
        summary="The agent's browser phone socket",
        description="Signs in on its first message with the agent's id and SIP password.",
        tags=["pages"],
        raw=True,
        raw_content_type="application/octet-stream",
    )
    async def ws_agent(call: ApiCall) -> web.StreamResponse:
        return await rtc.ws_agent(call.request)
