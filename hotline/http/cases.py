"""Wallboard and case routes of the contact center: translation between HTTP and the center.

``GET /api/acd`` (live queues and agents), ``GET /api/cases[?caller=]``,
``GET /api/cases/{id}`` (a case with its event trail) and ``POST /api/ivr/reload`` (re-read
the configuration file's flows without a restart; a bad edit is refused with file, line and
key, and the running flows stay). No store logic here: the center answers, these handlers
only shape requests and responses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from acd.cases import Case
from hotline.center import ContactCenter, NoConfigFile
from hotline.config import ConfigError
from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

CASES_LIMIT = 50
"""Cases listed by ``GET /api/cases`` (newest first)."""


def declare(api: Api, hotline: Hotline) -> None:
    """The contact center's routes."""
    add_center_routes(api, hotline.center)


def add_center_routes(api: Api, center: ContactCenter) -> None:
    """Declare the contact center's routes on ``api``."""

    @api.route(
        "GET",
        "/api/acd",
        access=Access.SUPERVISOR,
        summary="Live queues and agents (the engine's snapshot)",
        tags=["floor"],
        response=dict[str, Any],
    )
    async def acd(call: ApiCall) -> dict[str, Any]:
        return center.acd_snapshot()

    @api.route(
        "GET",
        "/api/cases",
        access=Access.SIGNED_IN,
        summary="Cases, newest first",
        tags=["cases"],
        query=CaseQuery,
        response=list[dict[str, Any]],
    )
    async def cases(call: ApiCall) -> list[dict[str, Any]]:
        query: CaseQuery = call.query
        found = await center.list_cases(caller=query.caller, limit=CASES_LIMIT)
        return [case_dict(c) for c in found]

    @api.route(
        "GET",
        "/api/cases/{case_id}",
        access=Access.SIGNED_IN,
        summary="A case with its event trail",
        tags=["cases"],
        path_model=CasePath,
        response=dict[str, Any],
        errors=[404],
    )
    async def case(call: ApiCall) -> dict[str, Any]:
        case_id = call.path.case_id
        trail = await center.case_trail(case_id)
        if trail is None:
            raise api_error(404, "no_such_case", f"no case {case_id}")
        body = case_dict(trail.case)
        body["events"] = [
            {"at": e.at, "kind": e.kind, "actor": e.actor, "data": e.data} for e in trail.events
        ]
        return body

    @api.route(
        "POST",
        "/api/ivr/reload",
        access=Access.ADMIN,
        summary="Re-read the IVR flows from the configuration file",
        tags=["routing"],
        response=dict[str, Any],
        errors=[409],
    )
    async def reload_ivr(call: ApiCall) -> dict[str, Any]:
        try:
            version = await center.reload_ivr_from_file()
        except NoConfigFile as exc:
            raise api_error(409, "no_config_file", str(exc)) from None
        except ConfigError as exc:
            raise api_error(422, "invalid_flows", str(exc)) from None
        return {"ok": True, "version": version}


class CaseQuery(BaseModel):
    caller: str | None = Field(default=None, max_length=64)
    """The caller's number."""


class CasePath(BaseModel):
    case_id: int = Field(ge=1, le=2**62)


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
