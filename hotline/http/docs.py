"""The API's own description: ``GET /api/openapi.json`` (OpenAPI 3.1, generated from the route
table: hotline/http/api.py) and ``GET /api/docs``, a browsable page (Swagger UI 5, whose files
come from the ``swagger-ui-py`` package and are served from this node: no CDN)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import swagger_ui
from aiohttp import web
from pydantic import BaseModel, Field

from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

SWAGGER_STATIC = Path(swagger_ui.__file__).resolve().parent / "static"
SWAGGER_FILES = frozenset(
    {
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
"""The files the page needs; nothing else of the package is served."""

_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/docs/static/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {spec_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  withCredentials: true,
  requestInterceptor: (req) => {{
    const csrf = sessionStorage.getItem("hotline_csrf");
    if (csrf) req.headers["X-CSRF-Token"] = csrf;
    return req;
  }},
  responseInterceptor: (res) => {{
    if (res.url.endsWith("/api/session") && res.ok && res.body && res.body.csrf_token) {{
      sessionStorage.setItem("hotline_csrf", res.body.csrf_token);
    }}
    return res;
  }},
}});
</script>
</body>
</html>
"""


class StaticPath(BaseModel):
    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


def declare(api: Api, hotline: Hotline) -> None:
    """The document, its page, and the page's files."""

    @api.route(
        "GET",
        "/api/openapi.json",
        access=Access.PUBLIC,
        summary="This API's OpenAPI 3.1 document",
        tags=["docs"],
        response=dict[str, Any],
    )
    async def openapi_document(call: ApiCall) -> dict[str, Any]:
        request = call.request
        return api.openapi(servers=[{"url": f"{request.scheme}://{request.host}"}])

    @api.route(
        "GET",
        "/api/docs",
        access=Access.PUBLIC,
        summary="The API's browsable documentation",
        tags=["docs"],
        raw=True,
        raw_content_type="text/html",
    )
    async def api_docs(call: ApiCall) -> web.StreamResponse:
        page = PAGE.format(title=html.escape(api.title), spec_url=json.dumps("/api/openapi.json"))
        return web.Response(text=page, content_type="text/html")

    @api.route(
        "GET",
        "/api/docs/static/{name}",
        access=Access.PUBLIC,
        summary="A file of the documentation page",
        tags=["docs"],
        path_model=StaticPath,
        raw=True,
        raw_content_type="application/octet-stream",
        errors=[404],
    )
    async def api_docs_file(call: ApiCall) -> web.StreamResponse:
        name = call.path.name
        if name not in SWAGGER_FILES:
            raise api_error(404, "not_found", f"no file {name!r}")
        path = SWAGGER_STATIC / name
        return web.FileResponse(
            path,
            headers={
                "Content-Type": _TYPES.get(path.suffix, "application/octet-stream"),
                "Cache-Control": "public, max-age=86400",
            },
        )
