"""The agents' API: their state, the call in hand, their voicemail and callback tasks.

``GET  /api/agents``                                  every agent now (supervisors)
``GET  /api/agents/{agent_id}``                       one agent: status, state, pause reason,
                                                      time in state, current call, wrap-up left
``POST /api/agents/{agent_id}/ready``                 available (ends a pause; logs in)
``POST /api/agents/{agent_id}/pause``                 ``{"reason": ...}`` from ``[acd] pause_reasons``
``POST /api/agents/{agent_id}/wrap-up/end``           end wrap-up now
``POST /api/agents/{agent_id}/wrap-up/extend``        ``{"seconds": ...}`` more wrap-up
``POST /api/agents/{agent_id}/logout``                out of the ACD until ``ready``/``pause``
``PUT  /api/agents/{agent_id}/skills``                ``{"skills": {...}}`` live (supervisors)
``GET  /api/agents/{agent_id}/call``                  the call in hand
``POST /api/agents/{agent_id}/call/hold|resume|hangup``
``POST /api/agents/{agent_id}/call/mute``             ``{"muted": true}``
``POST /api/agents/{agent_id}/call/keys``             ``{"digits": "123#"}`` (RFC 4733)
``POST /api/agents/{agent_id}/call/transfer``         ``{"to": ..., "mode": "blind"|"attended"}``
``POST /api/agents/{agent_id}/call/transfer/complete|cancel``
``GET  /api/agents/{agent_id}/tasks``                 voicemail and callback work
``GET  /api/agents/{agent_id}/tasks/{task_id}/audio`` a message's WAV

Every ``{agent_id}`` route is the agent's own (``Access.SELF``: supervisors and admins may act
for anyone), except the skills, which only supervisors change. The center's agent desk
(``hotline/center/agents.py``) does the work and says what it refuses: 404 for an unknown
agent, 409 with a code word when the agent's state does not allow it (``not_in_wrap_up``,
``no_call``, ``no_phone``, ``consulting``...). Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field, create_model

from hotline.center import ContactCenter
from hotline.center.agents import AgentDeskError, AgentView, CallView, TaskView
from hotline.http.api import Access, Api, ApiCall
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

TAGS = ["agents"]


class AgentPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=64)


class TaskPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=64)
    task_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,80}$")


# -- requests ----------------------------------------------------------------------------------


class WrapUpExtension(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(gt=0, le=3600, description="More wrap-up seconds (at most an hour).")


SkillName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
SkillLevel = Annotated[int, Field(ge=1, le=10)]


class SkillsRequest(BaseModel):
    """The agent's skills, all of them (replaced as a whole; ``{}`` for none)."""

    model_config = ConfigDict(extra="forbid")

    skills: dict[SkillName, SkillLevel] = Field(max_length=50)


class MuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    muted: bool = Field(description="True: the caller no longer hears the agent.")


class KeysRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digits: str = Field(
        pattern=r"^[0-9*#A-D]{1,32}$", description="Keys to send (RFC 4733): 0-9 * # A-D."
    )


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(
        min_length=1, max_length=64, description="A colleague's id or extension, or a queue."
    )
    mode: Literal["blind", "attended"] = "blind"


# -- responses ---------------------------------------------------------------------------------


class CallRef(BaseModel):
    call_id: str
    case_id: int | None
    caller: str


class AgentInfo(BaseModel):
    """An agent now."""

    agent_id: str
    name: str
    status: Literal["logged_out", "available", "paused"]
    """The person's choice."""
    state: Literal["logged_out", "idle", "paused", "reserved", "on_call", "wrap_up"]
    """The engine's word: ``idle`` is ready for calls, ``reserved`` an offer ringing."""
    reason: str
    """The pause reason while paused, else ``""``."""
    since: datetime
    seconds_in_state: float
    queues: list[str]
    skills: dict[str, int]
    phone: bool
    """A registered phone or an open browser phone."""
    signed_off: bool
    """Logged out through the API: their phones do not log them in until ``ready``."""
    call: CallRef | None
    wrap_up_ends: datetime | None
    wrap_up_remaining: float | None
    routable: bool
    misses: int


class TransferState(BaseModel):
    """An attended transfer under way."""

    to: str
    state: Literal["ringing", "talking", "ended", "failed"]
    since: datetime


class CallInfo(BaseModel):
    """The call in an agent's hands."""

    call_id: str
    case_id: int
    caller: str
    """The caller's number (or SIP user)."""
    queue: str
    since: datetime
    """When the agent was connected."""
    arrived_at: datetime
    """When the caller joined the queue (their original arrival)."""
    waited: float
    ivr: dict[str, str]
    """What the caller chose in the IVR (its variables)."""
    held: bool
    muted: bool
    transfer: TransferState | None


class KeysSent(BaseModel):
    keys: int
    to: Literal["caller", "colleague"]


class TransferStartedInfo(BaseModel):
    mode: Literal["blind", "attended"]
    to: str
    """The agent's id or the queue."""
    target: Literal["agent", "queue"]
    state: Literal["transferring", "ringing"]


class TaskInfo(BaseModel):
    """A voicemail message or a callback request, waiting in the agent's queues or delivered
    to them."""

    id: str
    kind: Literal["voicemail", "callback"]
    caller: str
    queue: str
    case_id: int
    state: Literal["queued", "offered", "delivering", "done", "called_back", "callback_failed"]
    arrived_at: datetime
    """When the caller called."""
    recorded_at: datetime | None
    """When the message was saved (voicemail, while kept)."""
    duration: float | None
    callback_to: str
    agent: str
    offered_to: list[str]
    delivered_at: datetime | None
    finished_at: datetime | None
    audio_url: str | None


class DirectoryEntry(BaseModel):
    """A colleague in the directory."""

    agent_id: str
    name: str
    extension: str
    state: Literal["logged_out", "idle", "paused", "reserved", "on_call", "wrap_up"]
    free: bool
    """Ready for a call now, with a phone (registered or the browser's)."""
    phone: bool
    queues: list[str]


class Directory(BaseModel):
    """``GET /api/directory``: whom to transfer to, and the configured pause reasons."""

    agents: list[DirectoryEntry]
    queues: list[str]
    pause_reasons: list[str]


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _opt(t: float | None) -> datetime | None:
    return None if t is None else _utc(t)


@contextlib.contextmanager
def _desk() -> Iterator[None]:
    try:
        yield
    except AgentDeskError as exc:
        raise api_error(exc.status, exc.code, exc.message) from None


def declare(api: Api, hotline: Hotline) -> None:
    """The agents' routes."""
    add_agent_routes(api, hotline.center)


def add_agent_routes(api: Api, center: ContactCenter) -> None:
    desk = center.agents
    reasons: Any = Literal[desk.pause_reasons]
    PauseRequest = create_model(
        "PauseRequest",
        __config__=ConfigDict(extra="forbid"),
        reason=(reasons, Field(description="One of the configured pause reasons.")),
    )

    def agent_info(v: AgentView) -> AgentInfo:
        now = center.acd.now()
        return AgentInfo(
            agent_id=v.agent_id,
            name=v.name,
            status=v.status,
            state=v.state,
            reason=v.reason,
            since=_utc(v.since),
            seconds_in_state=round(max(0.0, now - v.since), 3),
            queues=list(v.queues),
            skills=dict(v.skills),
            phone=v.phone,
            signed_off=v.signed_off,
            call=CallRef(call_id=v.call_id, case_id=v.case_id, caller=v.caller)
            if v.call_id
            else None,
            wrap_up_ends=_opt(v.wrap_up_ends),
            wrap_up_remaining=None
            if v.wrap_up_ends is None
            else round(max(0.0, v.wrap_up_ends - now), 3),
            routable=v.routable,
            misses=v.misses,
        )

    def call_info(v: CallView) -> CallInfo:
        c = v.consult
        return CallInfo(
            call_id=v.call_id,
            case_id=v.case_id,
            caller=v.caller,
            queue=v.queue,
            since=_utc(v.since),
            arrived_at=_utc(v.arrived_at),
            waited=round(v.waited, 3),
            ivr=dict(v.vars),
            held=v.held,
            muted=v.muted,
            transfer=None
            if c is None
            else TransferState(to=c.target, state=c.state, since=_utc(c.started)),
        )

    def task_info(agent_id: str, t: TaskView) -> TaskInfo:
        return TaskInfo(
            id=t.id,
            kind=t.kind,
            caller=t.caller,
            queue=t.queue,
            case_id=t.case_id,
            state=t.state,
            arrived_at=_utc(t.arrived_at),
            recorded_at=_opt(t.recorded_at),
            duration=t.duration,
            callback_to=t.callback_to,
            agent=t.agent,
            offered_to=list(t.offered_to),
            delivered_at=_opt(t.delivered_at),
            finished_at=_opt(t.finished_at),
            audio_url=f"/api/agents/{agent_id}/tasks/{t.id}/audio" if t.has_audio else None,
        )

    def own(call: ApiCall) -> tuple[str, str]:
        """The path's agent and who asks."""
        return call.path.agent_id, call.user.user

    # -- state -----------------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/agents",
        access=Access.SUPERVISOR,
        summary="Every agent now: status, state, reason, since, current call",
        tags=TAGS,
        response=list[AgentInfo],
    )
    async def agents_list(call: ApiCall) -> list[AgentInfo]:
        return [agent_info(v) for v in desk.views()]

    @api.route(
        "GET",
        "/api/agents/{agent_id}",
        access=Access.SELF,
        summary="An agent now: status, state, pause reason, time in state, call, wrap-up left",
        tags=TAGS,
        path_model=AgentPath,
        response=AgentInfo,
        errors=[404],
    )
    async def agent_get(call: ApiCall) -> AgentInfo:
        agent_id, _ = own(call)
        with _desk():
            return agent_info(desk.view(agent_id))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/ready",
        access=Access.SELF,
        summary="Ready for calls: ends a pause, or logs the agent in",
        description=(
            "Ends any pause (the automatic one after missed offers too). A logged-out agent "
            "is logged in (409 no_phone without a registered phone or open browser phone)."
        ),
        tags=TAGS,
        path_model=AgentPath,
        response=AgentInfo,
        errors=[404, 409],
    )
    async def agent_ready(call: ApiCall) -> AgentInfo:
        agent_id, by = own(call)
        with _desk():
            return agent_info(desk.ready(agent_id, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/pause",
        access=Access.SELF,
        summary="Pause with a configured reason",
        description=(
            "A call in progress goes on (the pause starts when it ends); a ringing offer is "
            "withdrawn. A logged-out agent is logged in paused. Reasons: [acd] pause_reasons."
        ),
        tags=TAGS,
        path_model=AgentPath,
        body=PauseRequest,
        response=AgentInfo,
        errors=[404, 409],
    )
    async def agent_pause(call: ApiCall) -> AgentInfo:
        agent_id, by = own(call)
        with _desk():
            return agent_info(desk.pause(agent_id, call.body.reason, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/wrap-up/end",
        access=Access.SELF,
        summary="End wrap-up now",
        tags=TAGS,
        path_model=AgentPath,
        response=AgentInfo,
        errors=[404, 409],
    )
    async def wrap_up_end(call: ApiCall) -> AgentInfo:
        agent_id, by = own(call)
        with _desk():
            return agent_info(desk.end_wrap_up(agent_id, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/wrap-up/extend",
        access=Access.SELF,
        summary="More wrap-up time",
        tags=TAGS,
        path_model=AgentPath,
        body=WrapUpExtension,
        response=AgentInfo,
        errors=[404, 409],
    )
    async def wrap_up_extend(call: ApiCall) -> AgentInfo:
        agent_id, by = own(call)
        with _desk():
            return agent_info(desk.extend_wrap_up(agent_id, call.body.seconds, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/logout",
        access=Access.SELF,
        summary="Log out of the ACD until ready (or pause) again",
        description=(
            "The agent gets no more offers (a ringing one is withdrawn; a call in progress "
            "goes on). Their phones registering again do not log them back in: ready or "
            "pause does."
        ),
        tags=TAGS,
        path_model=AgentPath,
        response=AgentInfo,
        errors=[404],
    )
    async def agent_logout(call: ApiCall) -> AgentInfo:
        agent_id, by = own(call)
        with _desk():
            return agent_info(desk.logout(agent_id, by=by))

    @api.route(
        "PUT",
        "/api/agents/{agent_id}/skills",
        access=Access.SUPERVISOR,
        summary="Replace an agent's skills, live (a new routing version)",
        tags=TAGS,
        path_model=AgentPath,
        body=SkillsRequest,
        response=AgentInfo,
        errors=[404, 409, 503],
    )
    async def agent_skills(call: ApiCall) -> AgentInfo:
        agent_id, by = own(call)
        with _desk():
            return agent_info(await desk.set_skills(agent_id, call.body.skills, by=by))

    # -- the call in hand ------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/agents/{agent_id}/call",
        access=Access.SELF,
        summary="The call in the agent's hands: caller, queue, case, IVR choices",
        tags=TAGS,
        path_model=AgentPath,
        response=CallInfo,
        errors=[404],
    )
    async def call_get(call: ApiCall) -> CallInfo:
        agent_id, _ = own(call)
        with _desk():
            return call_info(desk.call(agent_id))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/hold",
        access=Access.SELF,
        summary="Hold the caller (music)",
        tags=TAGS,
        path_model=AgentPath,
        response=CallInfo,
        errors=[404, 409, 503],
    )
    async def call_hold(call: ApiCall) -> CallInfo:
        agent_id, by = own(call)
        with _desk():
            return call_info(await desk.hold(agent_id, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/resume",
        access=Access.SELF,
        summary="Back to the caller",
        tags=TAGS,
        path_model=AgentPath,
        response=CallInfo,
        errors=[404, 409, 503],
    )
    async def call_resume(call: ApiCall) -> CallInfo:
        agent_id, by = own(call)
        with _desk():
            return call_info(await desk.resume(agent_id, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/mute",
        access=Access.SELF,
        summary="Mute (or unmute) the agent towards the caller",
        tags=TAGS,
        path_model=AgentPath,
        body=MuteRequest,
        response=CallInfo,
        errors=[404, 409, 503],
    )
    async def call_mute(call: ApiCall) -> CallInfo:
        agent_id, by = own(call)
        with _desk():
            return call_info(await desk.mute(agent_id, call.body.muted, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/keys",
        access=Access.SELF,
        summary="Send keys (RFC 4733) to the caller, or to the colleague while consulting",
        tags=TAGS,
        path_model=AgentPath,
        body=KeysRequest,
        response=KeysSent,
        errors=[404, 409, 503],
    )
    async def call_keys(call: ApiCall) -> KeysSent:
        agent_id, by = own(call)
        digits: str = call.body.digits
        with _desk():
            to = await desk.keys(agent_id, digits, by=by)
        return KeysSent(keys=len(digits), to=to)  # type: ignore[arg-type]

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/transfer",
        access=Access.SELF,
        summary="Transfer the caller to a colleague or a queue, blind or attended",
        description=(
            "blind: the agent's leg ends now; the caller hears music while the colleague "
            "rings (queued again in the call's queue if nobody answers), or waits in the "
            "queue named. attended: the caller is held, the colleague rung; then "
            "call/transfer/complete joins them, call/transfer/cancel returns to the caller."
        ),
        tags=TAGS,
        path_model=AgentPath,
        body=TransferRequest,
        response=TransferStartedInfo,
        status=202,
        errors=[404, 409, 503],
    )
    async def call_transfer(call: ApiCall) -> TransferStartedInfo:
        agent_id, by = own(call)
        body: TransferRequest = call.body
        with _desk():
            started = await desk.transfer(agent_id, body.to, body.mode, by=by)
        return TransferStartedInfo(
            mode=started.mode,
            to=started.to,
            target=started.target,
            state=started.state,  # type: ignore[arg-type]
        )

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/transfer/complete",
        access=Access.SELF,
        summary="Complete an attended transfer: caller and colleague talk, the agent leaves",
        tags=TAGS,
        path_model=AgentPath,
        status=204,
        errors=[404, 409, 503],
    )
    async def call_transfer_complete(call: ApiCall) -> None:
        agent_id, by = own(call)
        with _desk():
            await desk.complete_transfer(agent_id, by=by)

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/transfer/cancel",
        access=Access.SELF,
        summary="Cancel an attended transfer: back to the caller",
        tags=TAGS,
        path_model=AgentPath,
        response=CallInfo,
        errors=[404, 409, 503],
    )
    async def call_transfer_cancel(call: ApiCall) -> CallInfo:
        agent_id, by = own(call)
        with _desk():
            return call_info(await desk.cancel_transfer(agent_id, by=by))

    @api.route(
        "POST",
        "/api/agents/{agent_id}/call/hangup",
        access=Access.SELF,
        summary="Hang up the call (the caller too)",
        tags=TAGS,
        path_model=AgentPath,
        status=204,
        errors=[404, 409, 503],
    )
    async def call_hangup(call: ApiCall) -> None:
        agent_id, by = own(call)
        with _desk():
            await desk.hangup(agent_id, by=by)

    # -- tasks -----------------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/agents/{agent_id}/tasks",
        access=Access.SELF,
        summary="Voicemail and callback work: waiting in the agent's queues or delivered",
        tags=TAGS,
        path_model=AgentPath,
        response=list[TaskInfo],
        errors=[404],
    )
    async def agent_tasks(call: ApiCall) -> list[TaskInfo]:
        agent_id, _ = own(call)
        with _desk():
            return [task_info(agent_id, t) for t in await desk.tasks(agent_id)]

    @api.route(
        "GET",
        "/api/agents/{agent_id}/tasks/{task_id}/audio",
        access=Access.SELF,
        summary="A voicemail task's message (WAV)",
        tags=TAGS,
        path_model=TaskPath,
        raw=True,
        raw_content_type="audio/wav",
        errors=[404],
    )
    async def agent_task_audio(call: ApiCall) -> web.StreamResponse:
        agent_id, _ = own(call)
        task_id: str = call.path.task_id
        with _desk():
            path = await desk.task_audio(agent_id, task_id)
        return web.FileResponse(
            path,
            headers={
                hdrs.CONTENT_TYPE: "audio/wav",
                hdrs.CONTENT_DISPOSITION: f'inline; filename="{task_id}.wav"',
                hdrs.CACHE_CONTROL: "private, no-store",
            },
        )

    # -- the directory (the agent desktop's transfer list) ---------------------------------

    @api.route(
        "GET",
        "/api/directory",
        access=Access.SIGNED_IN,
        summary="Colleagues (who is free), queues and pause reasons: for transfers and pauses",
        description=(
            "For every signed-in staff member (an agent's desk lists whom to transfer to): "
            "each agent's id, name, extension, the engine's state word and whether they are "
            "free (ready, nothing ringing) and reachable; the queue names; the pause reasons."
        ),
        tags=TAGS,
        response=Directory,
    )
    async def directory(call: ApiCall) -> Directory:
        entries = []
        for v in desk.views():
            account = center.config.agent(v.agent_id)
            entries.append(
                DirectoryEntry(
                    agent_id=v.agent_id,
                    name=v.name,
                    extension=account.extension if account is not None else "",
                    state=v.state,
                    free=v.state == "idle" and v.phone,
                    phone=v.phone,
                    queues=list(v.queues),
                )
            )
        return Directory(
            agents=entries,
            queues=sorted(center.engine.config.queues),
            pause_reasons=list(desk.pause_reasons),
        )
