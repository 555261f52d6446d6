"""Recorded conversations: the consent prompt, the recording, its case event, its expiry.

A queue with ``record = true`` (``acd.config.QueueConfig``) records its answered calls:

1. the caller hears the queue's ``consent_prompt`` ("this call may be recorded...") after the
   agent answered and before they are connected (the agent hears silence meanwhile);
2. once bridged, the media process records the conversation into one stereo WAV, 8 kHz 16-bit:
   **the caller on the left, the agent on the right** (``media.control.RecordCall``). Two
   channels rather than a mix, so a reviewer can listen to either side alone, and the talk-over
   and silence of each side can be measured;
3. when it ends (either side hangs up, a transfer, the media lost) the file is complete and a
   ``recording`` event goes into the case: id, file, duration, started, ended, agent, queue;
4. it is deleted after the queue's ``recording_keep_days`` (the retention of the queue as it is
   configured at the time of the check, or the one it was recorded with when the queue is gone),
   by the same hourly sweep as voicemail's ``keep_days``; the case gets ``recording_expired``.

On disk: ``<recordings>/calls/<id>.wav`` and ``<id>.json`` beside it (who, when, which case:
what the API needs to decide who may fetch it, without reading the case store). The JSON is
written when the recording starts and again when it ends, so a recording interrupted by a crash
is found at the next start and completed from its ``.part`` file (a valid WAV up to its last
second); the same happens at once when the media process dies during a call.

Only supervisors and the agent who took the call may list, play or download a recording
(``hotline/http/recordings.py``).

Several nodes may share one recordings directory (docs/cluster.md, "Recordings and voicemail
audio"): each node indexes what it finds there at start-up, in its hourly sweep and, when the API
asks for a recording its index lacks, by reading that one ``<id>.json`` (:meth:`CallRecorder.find`).
A recording's files are always ``<directory>/<id>.wav`` and ``.json``, whatever path the node that
made it had for the directory. A node completes (after a crash) only its own unfinished recordings
(``Recording.node``): another node's is still being recorded, unless its audio has not been
written for ``ABANDONED_SECONDS`` (that node stopped and stayed away: the sweep completes it). Two
nodes expiring the same recording both end fine: the one that removes its JSON tells the case,
the other says nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from acd.config import QueueConfig
from hotline.center.caselog import CaseLog
from hotline.center.waiting import Spawn
from media_gateway.media.engine import MediaError
from media_gateway.media.server import part_path
from media_gateway.session import CallSession, RecordDone, SessionEnded

log = structlog.get_logger("hotline.center.recordings")

RECORDING_ID = re.compile(r"[0-9a-f]{16}")
"""A recording's id: 16 hex digits, random (never a path)."""
CHANNELS = ("caller", "agent")
"""Who is on the file's left and right channel."""
SWEEP_SECONDS = 3600.0
"""How often expired recordings are looked for (voicemail's rhythm)."""
ABANDONED_SECONDS = 600.0
"""Another node's unfinished recording whose file has not grown for this long was abandoned
(its node stopped; the media process appends to it every second while it records): the sweep
completes it, as that node would have at its next start."""
UNCONSENTED = "recording_unconsented"
"""Set in a caller's ``session.vars`` when their consent prompt could not be played."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    """One recorded conversation (the ``<id>.json`` beside its file)."""

    id: str
    case_id: int
    call_id: str
    queue: str
    agent: str
    """The agent who took the call: with supervisors, the only one who may fetch it."""
    file: str
    started: float
    """Epoch seconds."""
    keep_days: float
    """The queue's retention when it was recorded (used when the queue is gone)."""
    ended: float | None = None
    """None while it is being recorded."""
    seconds: float = 0.0
    reason: str = ""
    """Why it ended: hangup, transferred, stopped, max_length, or recovered (after a crash)."""
    error: str | None = None
    node: str = ""
    """The node that recorded it (``[database] node``; '' for a single node): only it completes
    the recording after a crash."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recording:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class RecordingStore:
    """The recordings on disk, indexed in memory by id.

    Two kinds of methods: the file methods (``read_all``, ``write``, ``delete_files``,
    ``recover_file``) are synchronous and run in a thread; the index (``add``, ``discard``,
    ``get``, ``for_case``, ``due``...) is only touched on the event loop."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._index: dict[str, Recording] = {}

    def new_id(self) -> str:
        return secrets.token_hex(8)

    def wav_path(self, rec_id: str) -> Path:
        return self.dir / f"{rec_id}.wav"

    def _meta_path(self, rec_id: str) -> Path:
        return self.dir / f"{rec_id}.json"

    # -- files (in a thread) ---------------------------------------------------------------

    def read_all(self) -> list[Recording]:
        """Every recording's JSON in the directory (``OSError`` when it cannot be listed)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        found = []
        for meta in sorted(self.dir.glob("*.json")):
            if not RECORDING_ID.fullmatch(meta.stem):
                continue
            try:
                found.append(Recording.from_dict(json.loads(meta.read_text())))
            except FileNotFoundError:  # expired meanwhile by another node sharing the directory
                continue
            except (OSError, ValueError, TypeError) as exc:
                log.warning("recording_unreadable", path=str(meta), error=str(exc))
        return found

    def read_one(self, rec_id: str) -> Recording | None:
        """The recording's JSON, or None when there is none (never made, or expired)."""
        if not RECORDING_ID.fullmatch(rec_id):
            return None
        meta = self._meta_path(rec_id)
        try:
            rec = Recording.from_dict(json.loads(meta.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("recording_unreadable", path=str(meta), error=str(exc))
            return None
        return rec if rec.id == rec_id else None

    def write(self, rec: Recording) -> None:
        """Write the recording's JSON (atomically)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self._meta_path(rec.id)
        tmp = meta.with_name(f".{meta.name}.part")
        tmp.write_text(json.dumps(rec.to_dict(), sort_keys=True))
        os.replace(tmp, meta)

    def delete_files(self, rec: Recording) -> bool:
        """Delete the recording's files, its JSON last (so a failure leaves it to be found and
        tried again). True when this call removed the JSON; False when another node sharing
        the directory was first (not an error). Other ``OSError``s are raised."""
        path = self.wav_path(rec.id)
        for p in (path, part_path(path), self.dir / f".{rec.id}.recovering"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        try:
            self._meta_path(rec.id).unlink()
        except FileNotFoundError:
            return False
        return True

    def last_written(self, rec_id: str) -> float | None:
        """When the recording's audio (its ``.part`` file, or the complete file) was last
        written (epoch seconds); None when there is neither."""
        path = self.wav_path(rec_id)
        times = []
        for p in (path, part_path(path)):
            with contextlib.suppress(FileNotFoundError):
                times.append(p.stat().st_mtime)
        return max(times) if times else None

    def recover_abandoned(self, rec: Recording, *, now: float) -> Recording | None:
        """Complete another node's abandoned recording, unless a third node does: the claim is
        a ``.<id>.recovering`` file created exclusively (left in place: it also keeps a node
        that read the JSON before the recovery from doing it again). None when another node
        claimed it first or it was completed meanwhile."""
        claim = self.dir / f".{rec.id}.recovering"
        try:
            claim.open("x").close()
        except FileExistsError:
            return None
        latest = self.read_one(rec.id)
        if latest is None or latest.ended is not None:
            return None
        return self.recover_file(latest, now=now)

    def recover_file(self, rec: Recording, *, now: float) -> Recording:
        """Complete a recording whose media process stopped before it closed the file: the
        ``.part`` file (valid up to its last whole second) becomes the recording."""
        path = self.wav_path(rec.id)
        part = part_path(path)
        if part.exists() and not path.exists():
            os.replace(part, path)
        seconds = 0.0
        with contextlib.suppress(OSError, wave.Error, EOFError), wave.open(str(path)) as w:
            seconds = w.getnframes() / w.getframerate()
        done = dataclasses.replace(
            rec,
            ended=min(now, rec.started + seconds) if seconds else now,
            seconds=round(seconds, 3),
            reason="recovered",
        )
        self.write(done)
        return done

    # -- the index (on the loop) -----------------------------------------------------------

    def add(self, rec: Recording) -> None:
        self._index[rec.id] = rec

    def discard(self, rec_id: str) -> None:
        self._index.pop(rec_id, None)

    def get(self, rec_id: str) -> Recording | None:
        return self._index.get(rec_id) if RECORDING_ID.fullmatch(rec_id) else None

    def for_case(self, case_id: int) -> list[Recording]:
        """A case's recordings, oldest first."""
        return sorted(
            (r for r in self._index.values() if r.case_id == case_id), key=lambda r: r.started
        )

    def all(self) -> list[Recording]:
        return list(self._index.values())

    def due(self, keep_days: Callable[[Recording], float], *, now: float) -> list[Recording]:
        """The finished recordings past their retention (``keep_days(rec)`` days after the
        end of the call)."""
        return [
            r
            for r in self._index.values()
            if r.ended is not None and now >= r.ended + keep_days(r) * 86400
        ]


class CallRecorder:
    """What the center does for recording queues (``offers.py`` calls :meth:`consent` before
    the bridge and :meth:`start` after it)."""

    def __init__(
        self,
        store: RecordingStore,
        *,
        queue_config: Callable[[str], QueueConfig | None],
        cases: CaseLog,
        clock: Callable[[], float],
        spawn: Spawn,
        node: str | None = None,
    ) -> None:
        self.store = store
        self._queue_config = queue_config
        """The queue's live configuration (a supervisor's change applies to the next call)."""
        self._cases = cases
        self._clock = clock
        self._spawn = spawn
        self.node = node if node is not None else str(getattr(cases.writer.store, "node", ""))
        """This node's name (the case store's ``[database] node``), written in its recordings."""

    def records(self, queue: str) -> QueueConfig | None:
        """The queue's configuration when it records its calls, else None."""
        cfg = self._queue_config(queue)
        return cfg if cfg is not None and cfg.record else None

    async def consent(self, caller: CallSession, queue: str) -> None:
        """Tell the caller the call may be recorded (before the agent is connected). A prompt
        that cannot be played (a name missing from the catalogue) is logged and the call goes
        on, unrecorded: nobody is recorded without having been told. A hang-up raises
        ``SessionEnded``."""
        cfg = self.records(queue)
        if cfg is None or not cfg.consent_prompt:
            return
        try:
            await caller.play(cfg.consent_prompt, interruptible=False)
        except MediaError as exc:
            caller.vars[UNCONSENTED] = True
            log.error(
                "consent_prompt_failed", prompt=cfg.consent_prompt, error=str(exc), recorded=False
            )

    async def find(self, rec_id: str) -> Recording | None:
        """The recording ``rec_id``, made by this node or by another sharing the directory:
        from the index, else from its ``<id>.json`` on disk (read in a thread, then indexed).
        Another node's recording still being recorded is read again each time (its end is
        written by that node). None when there is no such recording (or it expired)."""
        if not RECORDING_ID.fullmatch(rec_id):
            return None
        known = self.store.get(rec_id)
        if known is not None and (known.ended is not None or known.node == self.node):
            return known
        rec = await asyncio.to_thread(self.store.read_one, rec_id)
        if rec is None:
            if known is not None:  # another node expired it
                self.store.discard(rec_id)
            return None
        self.store.add(rec)
        log.debug("recording_found_on_disk", recording=rec_id, node=rec.node)
        return rec

    async def for_case(self, case_id: int, named: Iterable[str] = ()) -> list[Recording]:
        """A case's recordings, oldest first: those indexed, and those ``named`` (the ids its
        trail's ``recording`` events give) found on disk though this node did not index them."""
        found = {r.id: r for r in self.store.for_case(case_id)}
        for rec_id in named:
            if rec_id not in found:
                rec = await self.find(rec_id)
                if rec is not None and rec.case_id == case_id:
                    found[rec_id] = rec
        return sorted(found.values(), key=lambda r: r.started)

    async def start(
        self, caller: CallSession, leg: CallSession, *, case_id: int, queue: str, agent: str
    ) -> Recording | None:
        """Record the bridged conversation of ``caller`` and ``leg`` when ``queue`` records;
        followed to its end in a task of its own. None when not recorded (or it could not
        start: the call goes on, unrecorded, and the log says why)."""
        cfg = self.records(queue)
        if cfg is None or caller.vars.pop(UNCONSENTED, False):
            return None
        rec_id = self.store.new_id()
        rec = Recording(
            id=rec_id,
            case_id=case_id,
            call_id=caller.id,
            queue=queue,
            agent=agent,
            file=str(self.store.wav_path(rec_id)),
            started=self._clock(),
            keep_days=cfg.recording_keep_days,
            node=self.node,
        )
        try:
            await asyncio.to_thread(self.store.write, rec)
            self.store.add(rec)
            done = await caller.record_call(leg, rec.file)
        except (MediaError, OSError, SessionEnded) as exc:
            log.error(
                "recording_failed",
                recording=rec_id,
                directory=str(self.store.dir),
                error=str(exc),
                recorded=False,
            )
            self.store.discard(rec_id)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.store.delete_files, rec)
            return None
        log.info("recording_started", recording=rec_id, case_id=case_id, agent=agent)
        self._spawn(self._follow(rec, done))
        return rec

    async def _follow(self, rec: Recording, done: asyncio.Future[RecordDone]) -> None:
        """Wait for the file to be complete; index it and tell the case."""
        try:
            result = await asyncio.wait_for(asyncio.shield(done), 24 * 3600.0)
        except (SessionEnded, MediaError, TimeoutError):
            finished = await asyncio.to_thread(self.store.recover_file, rec, now=self._clock())
            log.warning("recording_recovered", recording=rec.id, seconds=finished.seconds)
        else:
            finished = dataclasses.replace(
                rec,
                ended=self._clock(),
                seconds=result.seconds,
                reason=result.reason,
                error=result.error,
            )
            await asyncio.to_thread(self.store.write, finished)
        self.store.add(finished)
        self._tell_case(finished)
        log.info(
            "recording_ended",
            recording=rec.id,
            case_id=rec.case_id,
            seconds=finished.seconds,
            reason=finished.reason,
            error=finished.error,
        )

    def _tell_case(self, rec: Recording) -> None:
        self._cases.recording(
            rec.case_id,
            recording_id=rec.id,
            file=rec.file,
            seconds=rec.seconds,
            started=rec.started,
            ended=rec.ended if rec.ended is not None else rec.started,
            agent=rec.agent,
            queue=rec.queue,
            reason=rec.reason,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Index the recordings on disk; complete those a crash of this node interrupted. An
        unreachable directory is logged (calls go on, unrecorded) and tried again hourly."""
        try:
            found = await asyncio.to_thread(self.store.read_all)
        except OSError as exc:
            log.error("recordings_unreachable", directory=str(self.store.dir), error=str(exc))
            return
        for rec in found:
            if rec.ended is None and rec.node in ("", self.node):  # we stopped during the call
                rec = await asyncio.to_thread(self.store.recover_file, rec, now=self._clock())
                self._tell_case(rec)
                log.warning("recording_recovered", recording=rec.id, seconds=rec.seconds)
            self.store.add(rec)

    def keep_days(self, rec: Recording) -> float:
        """The retention that applies to ``rec`` now: its queue's, or the one it had."""
        cfg = self._queue_config(rec.queue)
        return cfg.recording_keep_days if cfg is not None else rec.keep_days

    async def rescan(self) -> None:
        """Bring the index in line with the directory, which other nodes may share: index the
        recordings they made, forget the finished ones whose JSON is gone (expired by another
        node). An unreachable directory is logged and the index kept as it is."""
        try:
            found = await asyncio.to_thread(self.store.read_all)
        except OSError as exc:
            log.error("recordings_unreachable", directory=str(self.store.dir), error=str(exc))
            return
        on_disk = {rec.id: rec for rec in found}
        for rec in on_disk.values():
            known = self.store.get(rec.id)
            if known is None or (known.ended is None and rec.ended is not None):
                self.store.add(rec)
        for known in self.store.all():
            if known.id not in on_disk and known.ended is not None:
                self.store.discard(known.id)

    async def complete_abandoned(self) -> list[Recording]:
        """Complete the unfinished recordings of other nodes whose files have not been written
        for ``ABANDONED_SECONDS`` (their node stopped and has not come back); each case is
        told once (by the node that claimed it)."""
        now = self._clock()
        completed = []
        for rec in self.store.all():
            if rec.ended is not None or rec.node in ("", self.node):
                continue
            try:
                written = await asyncio.to_thread(self.store.last_written, rec.id)
                if written is None or now - written < ABANDONED_SECONDS:
                    continue
                done = await asyncio.to_thread(self.store.recover_abandoned, rec, now=now)
            except OSError as exc:
                log.warning("recording_not_recovered", recording=rec.id, error=str(exc))
                continue
            if done is None:  # another node completed it
                continue
            self.store.add(done)
            self._tell_case(done)
            log.warning(
                "recording_recovered",
                recording=rec.id,
                seconds=done.seconds,
                abandoned_by=rec.node,
            )
            completed.append(done)
        return completed

    async def expire(self) -> list[Recording]:
        """Delete the recordings past their queue's retention, whichever node made them; each
        case is told once (by the node that removed the files). Other nodes' abandoned
        recordings are completed first."""
        await self.rescan()
        await self.complete_abandoned()
        due = self.store.due(self.keep_days, now=self._clock())
        removed = []
        for rec in due:
            self.store.discard(rec.id)  # gone for the API at once; the files next
            try:
                mine = await asyncio.to_thread(self.store.delete_files, rec)
            except OSError as exc:  # tried again at the next sweep (the JSON is there)
                log.warning("recording_not_deleted", recording=rec.id, error=str(exc))
                continue
            if not mine:
                log.debug("recording_expired_elsewhere", recording=rec.id, case_id=rec.case_id)
                continue
            self._cases.recording_expired(rec.case_id, recording_id=rec.id)
            log.info("recording_expired", recording=rec.id, case_id=rec.case_id)
            removed.append(rec)
        log.debug("recordings_swept", indexed=len(self.store.all()), expired=len(removed))
        return removed

    async def expire_recordings(self) -> None:
        """Delete expired recordings, hourly (voicemail's ``expire_messages`` rhythm)."""
        while True:
            await self.expire()
            await asyncio.sleep(SWEEP_SECONDS)
