"""Recorded conversations: list a case's recordings, play or download one.

``GET /api/cases/{case_id}/recordings``   a case's recordings (newest last)
``GET /api/recordings/{recording_id}``    the audio: a stereo WAV, 8 kHz 16-bit, the caller
                                          on the left, the agent on the right
                                          (``?download=true``: as an attachment)

Who may: supervisors and admins, and the agent who took the recorded call; any other agent
gets 403 (the routes are ``Access.SIGNED_IN``, and this module checks the rest: the recording
names its agent). An agent who took a call of the case but whose conversation was not recorded
lists nothing. Every fetch of a recording's audio is logged (who, which recording). The center
owns the recordings (``hotline/center/recordings.py``); these handlers only translate.

Nodes sharing the recordings directory serve each other's recordings: a recording this node
did not index is looked up on disk (``CallRecorder.find``), and a case's list adds those its
trail names (its ``recording`` events, less the ``recording_expired`` ones).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field

from hotline.center import CaseTrail, ContactCenter
from hotline.center.recordings import CHANNELS, Recording
from hotline.http.api import Access, Api, ApiCall, Principal, Role
from hotline.http.middleware import api_error

if TYPE_CHECKING:
    from hotline.server import Hotline

log = structlog.get_logger("hotline.http.recordings")

WAV_FORMAT = "audio/wav; 8000 Hz, 16-bit PCM, 2 channels"


class CaseRecordingsPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: int = Field(ge=1, le=2**62)


class RecordingPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recording_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    """16 hex digits."""


class RecordingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    download: bool = False
    """Answer as an attachment (``Content-Disposition: attachment``) rather than for playing."""


class RecordingInfo(BaseModel):
    """A recorded conversation."""

    id: str
    case_id: int
    call_id: str
    queue: str
    agent: str
    """The agent who took the call."""
    started_at: datetime
    ended_at: datetime | None
    """None while the conversation is still being recorded."""
    seconds: float
    reason: str
    """Why it ended: hangup, transferred, stopped, max_length, recovered (after a crash)."""
    channels: list[str]
    """Who is on each channel, left first: ``["caller", "agent"]``."""
    format: str
    url: str
    """Where to fetch the audio (``GET``)."""
    expires_at: datetime | None
    """When the queue's retention deletes it."""


def declare(api: Api, hotline: Hotline) -> None:
    """The recording routes."""
    add_recording_routes(api, hotline.center)


def _supervises(principal: Principal) -> bool:
    return principal.role.at_least(Role.SUPERVISOR)


def add_recording_routes(api: Api, center: ContactCenter) -> None:
    recorder = center.recordings

    def info(rec: Recording) -> RecordingInfo:
        return RecordingInfo(
            id=rec.id,
            case_id=rec.case_id,
            call_id=rec.call_id,
            queue=rec.queue,
            agent=rec.agent,
            started_at=_utc(rec.started),
            ended_at=None if rec.ended is None else _utc(rec.ended),
            seconds=rec.seconds,
            reason=rec.reason,
            channels=list(CHANNELS),
            format=WAV_FORMAT,
            url=f"/api/recordings/{rec.id}",
            expires_at=(
                None if rec.ended is None else _utc(rec.ended + recorder.keep_days(rec) * 86400)
            ),
        )

    @api.route(
        "GET",
        "/api/cases/{case_id}/recordings",
        access=Access.SIGNED_IN,
        summary="A case's recorded conversations (supervisors, and the agent who took the call)",
        tags=["recordings"],
        path_model=CaseRecordingsPath,
        response=list[RecordingInfo],
        errors=[403, 404],
    )
    async def case_recordings(call: ApiCall) -> list[RecordingInfo]:
        case_id: int = call.path.case_id
        principal = call.user
        trail = await center.case_trail(case_id)
        found = await recorder.for_case(case_id, named=[] if trail is None else named(trail))
        if not _supervises(principal):
            found = [r for r in found if r.agent == principal.user]
        if found:
            return [info(r) for r in found]
        if trail is None:
            raise api_error(404, "no_such_case", f"no case {case_id}")
        took_it = any(
            e.kind == "answered" and principal.user in (e.data.get("agent"), e.actor)
            for e in trail.events
        )
        if not _supervises(principal) and not took_it:
            raise api_error(
                403, "forbidden", "only supervisors and the agent who took the call may"
            )
        return []

    @api.route(
        "GET",
        "/api/recordings/{recording_id}",
        access=Access.SIGNED_IN,
        summary="A recording's audio: WAV, caller left, agent right",
        description=(
            "A stereo WAV (8 kHz, 16-bit PCM): the caller on the left channel, the agent on "
            "the right. Supervisors, and the agent who took the call; 409 while the "
            "conversation is still being recorded, 404 once its retention deleted it."
        ),
        tags=["recordings"],
        path_model=RecordingPath,
        query=RecordingQuery,
        raw=True,
        raw_content_type="audio/wav",
        errors=[403, 404, 409],
    )
    async def recording_audio(call: ApiCall) -> web.StreamResponse:
        rec_id: str = call.path.recording_id
        principal = call.user
        rec = await recorder.find(rec_id)
        if rec is None:
            raise api_error(404, "no_such_recording", f"no recording {rec_id}")
        if not _supervises(principal) and rec.agent != principal.user:
            raise api_error(
                403, "forbidden", "only supervisors and the agent who took the call may"
            )
        if rec.ended is None:
            raise api_error(409, "still_recording", "the conversation is still being recorded")
        path = recorder.store.wav_path(rec.id)  # the file's place on this node
        if not await asyncio.to_thread(path.is_file):
            raise api_error(404, "no_such_recording", f"recording {rec_id} is gone")
        disposition = "attachment" if call.query.download else "inline"
        log.info(
            "recording_fetched",
            recording=rec_id,
            case_id=rec.case_id,
            user=principal.user,
            role=principal.role.value,
            download=call.query.download,
        )
        return web.FileResponse(
            path,
            headers={
                hdrs.CONTENT_TYPE: "audio/wav",
                hdrs.CONTENT_DISPOSITION: f'{disposition}; filename="recording-{rec_id}.wav"',
                hdrs.CACHE_CONTROL: "private, no-store",
            },
        )


def named(trail: CaseTrail) -> list[str]:
    """The recordings a case's trail names and does not say expired."""
    made = [str(e.data.get("recording_id", "")) for e in trail.events if e.kind == "recording"]
    gone = {str(e.data.get("recording_id")) for e in trail.events if e.kind == "recording_expired"}
    return [r for r in made if r and r not in gone]


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
