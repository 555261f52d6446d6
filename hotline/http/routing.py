"""Routing for supervisors: translation between HTTP and the center's routing desk.

GET  /api/routing                  the routing running now: version and the whole [acd] table
GET  /api/routing/versions         every version (number, time, who, comment, source)
GET  /api/routing/versions/{n}     one version with its [acd] table
POST /api/routing/validate         a proposal's mistakes (key paths) and what it changes
POST /api/routing/what-if          the proposal and the current routing through the simulator
POST /api/routing/apply            publish a proposal as the next version
POST /api/routing/rollback         publish an earlier version again
GET  /api/routing/explain          why a waiting call is (not) offered to an agent

The logic is in ``hotline/center/routing.py`` (:class:`~hotline.center.routing.RoutingDesk`);
docs/api.md ("Routing for supervisors") explains the rules.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, Field

from hotline.center.routing import (
    ApplyRequest,
    ExplainQuery,
    RollbackRequest,
    RoutingDesk,
    RoutingDeskError,
    RoutingExplanation,
    RoutingState,
    ValidateRequest,
    ValidationReport,
    VersionDetail,
    VersionInfo,
    WhatIfReport,
    WhatIfRequest,
)
from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import ApiError

if TYPE_CHECKING:
    from hotline.server import Hotline

T = TypeVar("T")

TAGS = ["routing"]


class VersionPath(BaseModel):
    version: int = Field(ge=1, le=2**53)


def declare(api: Api, hotline: Hotline) -> None:
    """The routing desk's routes."""
    add_routing_routes(api, hotline.center.routing)


def _error(exc: RoutingDeskError) -> ApiError:
    details = [
        {
            "path": i.path,
            "reason": i.reason if i.line is None else f"{i.reason} (line {i.line})",
            "type": "routing",
        }
        for i in exc.issues
    ]
    headers = {"Retry-After": "5"} if exc.status == 429 else None
    return ApiError(exc.status, exc.code, exc.message, details or None, headers=headers)


async def _answer(result: Awaitable[T]) -> T:
    try:
        return await result
    except RoutingDeskError as exc:
        raise _error(exc) from None


def add_routing_routes(api: Api, desk: RoutingDesk) -> None:
    """Declare the routing routes on ``api``, answered by ``desk``."""

    @api.route(
        "GET",
        "/api/routing",
        access=Access.SUPERVISOR,
        summary="The routing running now: its version and its [acd] table",
        tags=TAGS,
        response=RoutingState,
    )
    async def routing_state(call: ApiCall) -> RoutingState:
        return await desk.state()

    @api.route(
        "GET",
        "/api/routing/versions",
        access=Access.SUPERVISOR,
        summary="Every routing version, oldest first",
        tags=TAGS,
        response=list[VersionInfo],
    )
    async def routing_versions(call: ApiCall) -> list[VersionInfo]:
        return await desk.versions()

    @api.route(
        "GET",
        "/api/routing/versions/{version}",
        access=Access.SUPERVISOR,
        summary="One routing version with its [acd] table",
        tags=TAGS,
        path_model=VersionPath,
        response=VersionDetail,
        errors=[404],
    )
    async def routing_version(call: ApiCall) -> VersionDetail:
        return await _answer(desk.version(call.path.version))

    @api.route(
        "POST",
        "/api/routing/validate",
        access=Access.SUPERVISOR,
        summary="Check a proposed routing: its mistakes with their key paths, what it changes",
        description=(
            "Always 200 for a well-formed request: `valid` says whether the proposal could be "
            "applied; each issue names its key path (acd.queues.sales.max_wait) and, for TOML "
            "text, its line."
        ),
        tags=TAGS,
        body=ValidateRequest,
        response=ValidationReport,
    )
    async def routing_validate(call: ApiCall) -> ValidationReport:
        body: ValidateRequest = call.body
        return await desk.validate(body.proposed)

    @api.route(
        "POST",
        "/api/routing/what-if",
        access=Access.SUPERVISOR,
        summary="Simulate the proposed and the current routing on the same callers",
        description=(
            "Runs in a worker process, one what-if at a time per node (429 while one runs), "
            "bounded in simulated callers (422 what_if_too_big) and time (503)."
        ),
        tags=TAGS,
        body=WhatIfRequest,
        response=WhatIfReport,
        errors=[429, 503],
    )
    async def routing_what_if(call: ApiCall) -> WhatIfReport:
        body: WhatIfRequest = call.body
        return await _answer(desk.what_if(body))

    @api.route(
        "POST",
        "/api/routing/apply",
        access=Access.SUPERVISOR,
        summary="Apply a proposed routing as the next version (live, kept across restarts)",
        tags=TAGS,
        body=ApplyRequest,
        response=VersionDetail,
        errors=[409, 503],
    )
    async def routing_apply(call: ApiCall) -> VersionDetail:
        body: ApplyRequest = call.body
        return await _answer(
            desk.apply(
                body.proposed,
                user=call.user.user,
                comment=body.comment,
                expected_version=body.expected_version,
            )
        )

    @api.route(
        "POST",
        "/api/routing/rollback",
        access=Access.SUPERVISOR,
        summary="Apply an earlier routing version again (default: the one before the current)",
        tags=TAGS,
        body=RollbackRequest,
        response=VersionDetail,
        errors=[404, 409, 503],
    )
    async def routing_rollback(call: ApiCall) -> VersionDetail:
        body: RollbackRequest = call.body
        return await _answer(
            desk.rollback(user=call.user.user, version=body.version, comment=body.comment)
        )

    @api.route(
        "GET",
        "/api/routing/explain",
        access=Access.SUPERVISOR,
        summary="Why a waiting call is, or is not, offered to an agent",
        tags=TAGS,
        query=ExplainQuery,
        response=RoutingExplanation,
        errors=[404],
    )
    async def routing_explain(call: ApiCall) -> RoutingExplanation:
        query: ExplainQuery = call.query
        try:
            return desk.explain(query.call_id, query.agent_id)
        except RoutingDeskError as exc:
            raise _error(exc) from None
