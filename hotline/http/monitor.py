"""Supervisor monitoring of a live agent call: translation to ``hotline/center/monitor.py``.

``POST   /api/agents/{agent_id}/call/monitor``  ``{"mode": "listen"|"whisper"|"barge"}``: ring
                                                the supervisor's phone; it joins when answered
``PATCH  /api/agents/{agent_id}/call/monitor``  ``{"mode": ...}``: switch mode
``DELETE /api/agents/{agent_id}/call/monitor``  stop (the call goes on undisturbed)
``GET    /api/agents/{agent_id}/call/monitor``  the monitoring of that call now
``GET    /api/monitoring``                      every monitoring now

Supervisors and admins only (``Access.SUPERVISOR``), never on their own call. The feed
(``GET /api/events``) carries each change as a ``monitor`` event to supervisors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from hotline.center.agents import AgentDeskError
from hotline.center.monitor import Monitoring, monitor_desk
from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

TAGS = ["monitoring"]
PATH = "/api/agents/{agent_id}/call/monitor"


class MonitorPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=64)


class MonitorRequest(BaseModel):
    """How the supervisor joins the call."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["listen", "whisper", "barge"] = Field(
        description=(
            "listen: hear caller and agent, heard by neither; whisper: hear both, heard by "
            "the agent only; barge: a three-way conversation."
        )
    )


class MonitorInfo(BaseModel):
    """A supervisor monitoring an agent's call."""

    supervisor: str
    agent_id: str
    call_id: str
    case_id: int
    caller: str
    mode: Literal["listen", "whisper", "barge"]
    state: Literal["ringing", "active", "ended"]
    """``ringing``: the supervisor's phone rings; ``active``: their leg is in the call."""
    reason: str
    """Why it ended (``ended`` only): stopped, call_ended, transferred, supervisor_hung_up,
    no_answer, failed."""
    since: datetime
    answered_at: datetime | None


def _info(m: Monitoring) -> MonitorInfo:
    return MonitorInfo(
        supervisor=m.supervisor,
        agent_id=m.agent,
        call_id=m.call_id,
        case_id=m.case_id,
        caller=m.caller,
        mode=m.mode,
        state=m.state,
        reason=m.reason,
        since=datetime.fromtimestamp(m.since, UTC),
        answered_at=None if m.answered_at is None else datetime.fromtimestamp(m.answered_at, UTC),
    )


@contextlib.contextmanager
def _desk() -> Iterator[None]:
    try:
        yield
    except AgentDeskError as exc:
        raise api_error(exc.status, exc.code, exc.message) from None


def declare(api: Api, hotline: Hotline) -> None:
    """The monitoring routes."""
    desk = monitor_desk(hotline.center)

    @api.route(
        "POST",
        PATH,
        access=Access.SUPERVISOR,
        summary="Monitor an agent's call: listen, whisper or barge in",
        description=(
            "Rings the supervisor's own phone (registered SIP phone or browser phone); once "
            "answered their leg joins the call in the mode asked. Answers at once with state "
            "ringing. 403 own_call on one's own call; 409 no_call, already_monitored, "
            "monitoring_another, consulting, no_phone."
        ),
        tags=TAGS,
        path_model=MonitorPath,
        body=MonitorRequest,
        response=MonitorInfo,
        status=201,
        errors=[404, 409],
    )
    async def monitor_start(call: ApiCall) -> MonitorInfo:
        body: MonitorRequest = call.body
        with _desk():
            return _info(await desk.start(call.path.agent_id, body.mode, by=call.user.user))

    @api.route(
        "PATCH",
        PATH,
        access=Access.SUPERVISOR,
        summary="Switch the monitoring mode",
        description="Only the supervisor monitoring the call (403 not_yours otherwise).",
        tags=TAGS,
        path_model=MonitorPath,
        body=MonitorRequest,
        response=MonitorInfo,
        errors=[404, 409],
    )
    async def monitor_change(call: ApiCall) -> MonitorInfo:
        body: MonitorRequest = call.body
        with _desk():
            return _info(await desk.change(call.path.agent_id, body.mode, by=call.user.user))

    @api.route(
        "DELETE",
        PATH,
        access=Access.SUPERVISOR,
        summary="Stop monitoring (the call goes on undisturbed)",
        tags=TAGS,
        path_model=MonitorPath,
        response=MonitorInfo,
        errors=[404],
    )
    async def monitor_stop(call: ApiCall) -> MonitorInfo:
        with _desk():
            return _info(await desk.stop(call.path.agent_id, by=call.user.user))

    @api.route(
        "GET",
        PATH,
        access=Access.SUPERVISOR,
        summary="The monitoring of an agent's call now",
        tags=TAGS,
        path_model=MonitorPath,
        response=MonitorInfo,
        errors=[404],
    )
    async def monitor_get(call: ApiCall) -> MonitorInfo:
        with _desk():
            return _info(desk.of(call.path.agent_id))

    @api.route(
        "GET",
        "/api/monitoring",
        access=Access.SUPERVISOR,
        summary="Every monitoring now",
        tags=TAGS,
        response=list[MonitorInfo],
    )
    async def monitoring_list(call: ApiCall) -> list[MonitorInfo]:
        return [_info(m) for m in desk.all()]
