"""The agent's pages, served by the service: today the browser phone (``/agent``).

The page talks only to the public surface (the ``/ws/agent`` WebSocket of
``media_gateway/webrtc.py``); nothing here imports the server's internals.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
AGENT_PAGE = STATIC / "agent.html"


async def agent_page(request: web.Request) -> web.FileResponse:
    """``GET /agent``: the browser phone for an agent."""
    return web.FileResponse(AGENT_PAGE, headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    """``GET /agent`` on ``app``."""
    app.router.add_get("/agent", agent_page)
