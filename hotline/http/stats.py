"""Live statistics: translation between HTTP and the center's ``StatsView`` (hotline/center/stats.py).

``GET /api/stats/queues``                          every queue now and today (supervisors)
``GET /api/stats/queues/{queue}/intervals?date=``  one queue's day per 15-minute interval
``GET /api/stats/intervals?date=``                 all queues together, per interval
``GET /api/agents/{agent_id}/today``               an agent's own figures today (the agent,
                                                   or a supervisor)

"Today" is the server's local calendar day; the figures come from the stored engine log, so
they survive a restart. Definitions: docs/api.md ("Live statistics").
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from hotline.center import ContactCenter
from hotline.center.stats import AgentToday, DayIntervals, StatsNow
from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline


class DayQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date | None = Field(default=None, ge=dt.date(1971, 1, 1), le=dt.date(2999, 12, 31))
    """The local calendar day (``YYYY-MM-DD``, 1971 to 2999); today when absent."""


class QueuePath(BaseModel):
    queue: str = Field(min_length=1, max_length=64)


class AgentPath(BaseModel):
    agent_id: str = Field(min_length=1, max_length=64)


def declare(api: Api, hotline: Hotline) -> None:
    """The statistics routes."""
    add_stats_routes(api, hotline.center)


def add_stats_routes(api: Api, center: ContactCenter) -> None:
    view = center.stats_view

    @api.route(
        "GET",
        "/api/stats/queues",
        access=Access.SUPERVISOR,
        summary="Every queue now: waiting, agents by state, and today's figures",
        tags=["stats"],
        response=StatsNow,
    )
    async def stats_queues(call: ApiCall) -> StatsNow:
        """Per queue: calls waiting and the longest wait now, the member agents by state, and
        today's figures since local midnight (offered, answered, service level against the
        queue's ``service_level_seconds``, ASA, abandon rate, AHT, occupancy ...); ``total``
        for all queues together."""
        return await view.snapshot()

    @api.route(
        "GET",
        "/api/stats/queues/{queue}/intervals",
        access=Access.SUPERVISOR,
        summary="One queue's figures per 15-minute interval of a day",
        tags=["stats"],
        path_model=QueuePath,
        query=DayQuery,
        response=DayIntervals,
        errors=[404],
    )
    async def stats_queue_intervals(call: ApiCall) -> DayIntervals:
        """Calls count in the interval they entered the queue; agent time is split across the
        intervals it spans. Today's intervals go up to the current one."""
        queue: str = call.path.queue
        result = await view.intervals(call.query.date, queue)
        if not view.known_queue(queue):
            raise api_error(404, "no_such_queue", f"no queue {queue!r}")
        return result

    @api.route(
        "GET",
        "/api/stats/intervals",
        access=Access.SUPERVISOR,
        summary="All queues' figures together per 15-minute interval of a day",
        tags=["stats"],
        query=DayQuery,
        response=DayIntervals,
    )
    async def stats_intervals(call: ApiCall) -> DayIntervals:
        return await view.intervals(call.query.date, None)

    @api.route(
        "GET",
        "/api/agents/{agent_id}/today",
        access=Access.SELF,
        summary="An agent's own figures today: calls, talk, wrap-up, pauses, occupancy",
        tags=["stats", "agents"],
        path_model=AgentPath,
        response=AgentToday,
        errors=[404],
    )
    async def agent_today(call: ApiCall) -> AgentToday:
        agent_id: str = call.path.agent_id
        if agent_id not in center.settings.agents:
            raise api_error(404, "no_such_agent", f"no agent {agent_id!r}")
        return await view.agent_today(agent_id)
