"""Wallboard and case routes of the contact center: translation between HTTP and the center.

``GET /api/acd`` (live queues and agents), ``GET /api/cases[?caller=]``,
``GET /api/cases/{id}`` (a case with its event trail) and ``POST /api/ivr/reload`` (re-read
the configuration file's flows without a restart; a bad edit is refused with file, line and
key, and the running flows stay). No store logic here: the center answers, these handlers
only shape requests and responses.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from acd.cases import Case
from hotline.center import ContactCenter, NoConfigFile
from hotline.config import ConfigError
from hotline.http.middleware import api_error

CASES_LIMIT = 50
"""Cases listed by ``GET /api/cases`` (newest first)."""


def add_center_routes(app: web.Application, center: ContactCenter) -> None:
    """Mount the contact center's routes on ``app``."""

    async def acd(request: web.Request) -> web.Response:
        return web.json_response(center.acd_snapshot())

    async def cases(request: web.Request) -> web.Response:
        found = await center.list_cases(caller=request.query.get("caller"), limit=CASES_LIMIT)
        return web.json_response([case_dict(c) for c in found])

    async def case(request: web.Request) -> web.Response:
        try:
            case_id = int(request.match_info["case_id"])
        except ValueError:
            raise api_error(400, "bad_case_id", "case id must be a number") from None
        trail = await center.case_trail(case_id)
        if trail is None:
            raise api_error(404, "no_such_case", f"no case {case_id}")
        body = case_dict(trail.case)
        body["events"] = [
            {"at": e.at, "kind": e.kind, "actor": e.actor, "data": e.data} for e in trail.events
        ]
        return web.json_response(body)

    async def reload_ivr(request: web.Request) -> web.Response:
        try:
            version = await center.reload_ivr_from_file()
        except NoConfigFile as exc:
            raise api_error(409, "no_config_file", str(exc)) from None
        except ConfigError as exc:
            raise api_error(422, "invalid_flows", str(exc)) from None
        return web.json_response({"ok": True, "version": version})

    app.router.add_get("/api/acd", acd)
    app.router.add_get("/api/cases", cases)
    app.router.add_get("/api/cases/{case_id}", case)
    app.router.add_post("/api/ivr/reload", reload_ivr)


def case_dict(c: Case) -> dict[str, Any]:
    """A case as the API shows it."""
    return {
        "id": c.id,
        "caller": c.caller_number,
        "dialled": c.dialled,
        "channel": c.channel,
        "call_id": c.call_id,
        "type": c.case_type,
        "status": c.status,
        "owner": c.owner,
        "created_at": c.created_at,
    }
