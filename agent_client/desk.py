"""The agent desktop (``/desk``) and the pages' shared static files, served by the service.

``GET /desk``            the agent desktop: sign-in, state, the phone, the screen pop, tasks
``GET /desk/{name}``     its scripts and style (``static/desk/``)
``GET /common/{name}``   modules shared by the staff's pages (``static/common/``: ``api.js``,
                         ``stream.js``, ``i18n.js``)

The pages are public (they sign in through the API); everything they fetch is protected by the
API. This module knows only aiohttp and the route table's ``route`` decorator, which the
composition root passes in with the access rule to use (``agent_client`` imports nothing of the
server: docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field

STATIC = Path(__file__).resolve().parent / "static"
DESK = STATIC / "desk"
COMMON = STATIC / "common"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


class StaticPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,60}\.(js|css|svg)$")
    """A file of the folder (no sub-folders, no dots but the extension's)."""


def serve(folder: Path, name: str) -> web.FileResponse:
    """A file of ``folder`` by its bare name (the path model already refused anything else)."""
    path = folder / name
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            hdrs.CONTENT_TYPE: CONTENT_TYPES[path.suffix],
            hdrs.CACHE_CONTROL: "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


def declare(api: Any, public: Any) -> None:
    """Declare the desk's routes on the service's route table (``hotline.http.api.Api``);
    ``public`` is its access rule for pages anyone may load."""

    @api.route(
        "GET",
        "/desk",
        access=public,
        summary="The agent desktop (it signs in itself)",
        tags=["pages"],
        raw=True,
        raw_content_type="text/html",
    )
    async def desk_page(call: Any) -> web.StreamResponse:
        return serve_page()

    @api.route(
        "GET",
        "/desk/{name}",
        access=public,
        summary="The agent desktop's scripts and style",
        tags=["pages"],
        path_model=StaticPath,
        raw=True,
        raw_content_type="text/javascript",
    )
    async def desk_file(call: Any) -> web.StreamResponse:
        return serve(DESK, call.path.name)

    @api.route(
        "GET",
        "/common/{name}",
        access=public,
        summary="Modules shared by the staff's pages (API, event stream, translations)",
        tags=["pages"],
        path_model=StaticPath,
        raw=True,
        raw_content_type="text/javascript",
    )
    async def common_file(call: Any) -> web.StreamResponse:
        return serve(COMMON, call.path.name)


def serve_page() -> web.FileResponse:
    return web.FileResponse(
        DESK / "index.html",
        headers={
            hdrs.CONTENT_TYPE: CONTENT_TYPES[".html"],
            hdrs.CACHE_CONTROL: "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
