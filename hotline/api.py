"""The HTTP API (aiohttp): health, Prometheus metrics, registrations, calls, and test hooks.

GET  /healthz                  liveness
GET  /metrics                  Prometheus text format
GET  /api/registrations        registered softphones (agent, contact, source, expires)
GET  /api/calls                calls in progress
POST /api/dial                 {"agent": ID} or {"uri": ..., "dest": "IP:PORT"}: ring a phone
                               (click-to-call / agent phone test); answers when it ends
GET  /api/debug/sip            calls, dialogs, transactions, tasks held (leak checks)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from media_gateway.webrtc import add_routes

if TYPE_CHECKING:
    from hotline.app import Gateway


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            text=gateway.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Prometheus-Format": "0.0.4"},
        )

    async def registrations(request: web.Request) -> web.Response:
        return web.json_response(gateway.registrations_snapshot())

    async def trunks(request: web.Request) -> web.Response:
        return web.json_response(gateway.trunks_snapshot())

    async def calls(request: web.Request) -> web.Response:
        return web.json_response(gateway.calls_snapshot())

    async def dial(request: web.Request) -> web.Response:
        try:
            body: dict[str, Any] = await request.json()
        except ValueError:
            return web.json_response({"error": "expected a JSON body"}, status=400)
        hold = float(body.get("hold_seconds", 1.0))
        if not 0 <= hold <= 3600:
            return web.json_response({"error": "hold_seconds must be 0-3600"}, status=400)
        try:
            if "number" in body:
                result = await gateway.dial_number(
                    str(body["number"]),
                    str(body.get("trunk", "")),
                    caller=str(body.get("caller", "")),
                    hold_seconds=hold,
                )
            elif "agent" in body:
                result = await gateway.ring_agent(str(body["agent"]), hold_seconds=hold)
            else:
                result = await gateway.dial_uri(
                    str(body["uri"]), str(body["dest"]), hold_seconds=hold
                )
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result)

    async def debug_sip(request: web.Request) -> web.Response:
        stats = gateway.debug_counts()
        stats["tasks"] = len(asyncio.all_tasks())
        return web.json_response(stats)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/registrations", registrations)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/api/trunks", trunks)
    app.router.add_post("/api/dial", dial)
    app.router.add_get("/api/debug/sip", debug_sip)
    add_routes(app, gateway)
    return app
