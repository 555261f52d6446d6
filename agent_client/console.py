"""The supervisor console (``/console``): a page and its files, served by the service.

The page (``static/console/``: HTML, one CSS file, plain JS modules, no build step; the
staff pages' shared modules come from ``/common/``, agent_client/desk.py) signs in
through the API (``POST /api/session``) and reads everything it shows from the API and the
event stream (``/api/events``): the wallboard, the agents, monitoring, the routing editor.
It is open to anyone (``Access.PUBLIC``); every route it calls checks the caller's role.

``agent_client`` may not import the server (docs/architecture.md, contract "agent-client"),
so the composition root hands :func:`declare` the route table and the access rule to use.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static" / "console"
PAGE = STATIC / "index.html"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""The kinds of file the page loads; nothing else under ``static/console/`` is served."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg)$")


class _Call(Protocol):
    """What the handlers use of ``hotline.http.api.ApiCall``."""

    @property
    def request(self) -> web.Request: ...


class RouteTable(Protocol):
    """What :func:`declare` uses of ``hotline.http.api.Api``."""

    def route(
        self,
        method: str,
        path: str,
        *,
        access: Any,
        summary: str,
        description: str = "",
        tags: Any = (),
        raw: bool = False,
        raw_content_type: str = "",
        errors: Any = (),
    ) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]: ...


def console_file(name: str) -> Path | None:
    """The file ``name`` of the page (``app.js``, ``console.css`` ...), or None."""
    if not _NAME.match(name):
        return None
    path = STATIC / name
    return path if path.is_file() else None


def declare(api: RouteTable, *, public: Any) -> None:
    """Declare ``GET /console`` and ``GET /console/{name}`` on ``api`` with the access
    rule ``public`` (``Access.PUBLIC``: the page signs in itself, through the API)."""

    @api.route(
        "GET",
        "/console",
        access=public,
        summary="The supervisor console page (it signs in itself, through the API)",
        tags=["pages"],
        raw=True,
        raw_content_type="text/html",
    )
    async def console_page(call: _Call) -> web.StreamResponse:
        return web.FileResponse(
            PAGE,
            headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"},
        )

    @api.route(
        "GET",
        "/console/{name}",
        access=public,
        summary="A file of the supervisor console (script, style)",
        tags=["pages"],
        raw=True,
        raw_content_type="application/octet-stream",
        errors=[404],
    )
    async def console_static(call: _Call) -> web.StreamResponse:
        name = call.request.match_info["name"]
        path = console_file(name)
        if path is None:
            raise web.HTTPNotFound(text=f"no file {name!r}")  # the API's error shape
        return web.FileResponse(
            path,
            headers={
                "Content-Type": CONTENT_TYPES[path.suffix],
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )
