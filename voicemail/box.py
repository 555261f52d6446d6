"""Voicemail: record a caller's message, play it to the agent who takes it, keep it for a while.

The contact center decides *when* (the queue's wait limit, the caller's key); this module
does the caller's and the agent's side of it on ``CallSession``s, and nothing else: no
routing, no case records (the caller of these functions writes those).

* :func:`record_message`: greeting, beep, recording with a maximum length, a silence stop
  and a ``#`` stop; hanging up ends the message (most callers do) and keeps it. Returns
  None when nothing was said (no audio above the silence level, or under half a second).
* :func:`deliver`: to an agent: an announcement, the message, then "1 to call back, 2 to hear
  it again"; returns what the agent chose.
* :func:`expire`: delete messages older than ``keep_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from media_gateway.media.engine import MediaError
from media_gateway.session import CallSession, SessionEnded

MIN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Message:
    path: str
    seconds: float
    stopped_by: str
    """``dtmf`` (the caller pressed #), ``silence``, ``max_length`` or ``hangup``."""


@dataclass(frozen=True, slots=True)
class Settings:
    max_seconds: float = 120.0
    silence_seconds: float = 5.0
    stop_digits: str = "#"
    keep_days: float = 30.0
    greeting: tuple[str, ...] = ("voicemail_intro",)


async def record_message(
    session: CallSession, path: Path, settings: Settings, *, greeting: list[str] | None = None
) -> Message | None:
    """Record a message from the caller into ``path`` (8 kHz WAV)."""
    await session.play(greeting or list(settings.greeting), interruptible=True)
    session.flush_digits()  # a key that cut the greeting short does not end the message
    rec = await session.record(
        str(path),
        max_seconds=settings.max_seconds,
        silence_seconds=settings.silence_seconds,
        stop_digits=settings.stop_digits,
        beep=True,
    )
    if rec.error is not None or rec.seconds < MIN_SECONDS or not rec.heard_sound:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return None
    if session.state != "ended":
        with contextlib.suppress(SessionEnded, MediaError):
            await session.play("voicemail_saved", interruptible=False)
    return Message(path=str(path), seconds=rec.seconds, stopped_by=rec.reason)


async def deliver(agent_leg: CallSession, message_path: str | None, *, prompt: str) -> str:
    """Play a queued message (or a callback request) to the agent who took it.

    Returns ``callback`` (the agent pressed 1), or ``done`` (no choice, or hung up)."""
    with contextlib.suppress(SessionEnded):  # the agent hung up: nothing chosen
        if message_path:
            await agent_leg.play(["agent_voicemail", "beep"], interruptible=False)
            await agent_leg.play(file=message_path, interruptible=True)
        for _ in range(3):
            await agent_leg.play(prompt)
            got = await agent_leg.collect(1, timeout=8, terminator="")
            if got.digits == "1":
                return "callback"
            if got.digits == "2" and message_path:
                await agent_leg.play(file=message_path, interruptible=True)
                continue
            if not got.digits:
                break
    return "done"


def expire(directory: Path, keep_days: float, *, now: float | None = None) -> list[Path]:
    """Delete messages (``case-*.wav``) older than ``keep_days``; returns what was deleted."""
    cutoff = (now if now is not None else time.time()) - keep_days * 86400
    removed: list[Path] = []
    for p in directory.glob("case-*.wav"):
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
    return removed
