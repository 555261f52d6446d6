"""``CallSession``: the one kind of call the IVR, the ACD and voicemail work with.

Whatever the channel (a SIP phone, a PSTN trunk, a WebRTC page), a session is: an id, the
caller and the number dialled, a state, a media channel in the media process, and a *leg*
that speaks the channel's signalling (``Leg``: SIP in ``sip_leg.py``, WebRTC in
``webrtc.py``). Services call::

    await s.answer()
    r = await s.play(["welcome", "main_menu"], lang="en")       # barge-in on a key
    got = await s.collect(max_digits=1, timeout=5)             # type-ahead kept
    rec = await s.record(path, max_seconds=120, silence_seconds=5)
    await s.bridge(agent_session); await s.hold(); await s.unhold()
    await s.transfer("sip:2000@10.0.0.5") ; await s.hangup("normal")
    async for event in s.events(): ...

When the far end hangs up, every pending ``play``/``collect``/``record`` raises
:class:`SessionEnded`, so a service's flow stops where it stands without checking states.

Keys arrive by any method (RFC 4733, SIP INFO, in-band tones, a WebRTC data message); all go
through the media process, so barge-in and the digit buffer behave the same for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from media_gateway.audio.wav import write_wav
from media_gateway.media import control as mc
from media_gateway.media.client import MediaClient
from media_gateway.media.engine import RATE, SILENCE_DBFS, MediaError
from media_gateway.media.server import part_path

_op_ids = itertools.count(1)

MEDIA_CAUSES = frozenset({"media_lost", "no_media"})
"""Causes of a hangup by us that are not the caller's doing: the media process died
(``media_lost``), or no RTP at all came after the answer (``no_media``, ``[media]
rtp_start_timeout``: a flood's silent call or a broken phone, not a caller who gave up).
(``media_timeout``, RTP that stopped, is the caller's side going away: an abandon.)"""


class SessionEnded(Exception):
    """The call ended (hangup by either side, or media lost) while an operation waited."""

    def __init__(self, by: str, cause: str) -> None:
        super().__init__(f"call ended by {by}: {cause}")
        self.by = by
        self.cause = cause


# -- events (the session's async stream) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    method: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class Hangup:
    by: str
    cause: str


@dataclass(frozen=True, slots=True)
class PlayDone:
    op: str
    reason: str
    """``finished``, ``dtmf`` (barge-in), ``stopped``, ``replaced``, ``bridged``, ``closed``."""
    digit: str | None = None
    played_ms: int = 0


@dataclass(frozen=True, slots=True)
class RecordDone:
    op: str
    path: str
    reason: str
    """``max_length``, ``silence``, ``dtmf``, ``stopped``, ``hangup``."""
    seconds: float
    heard_sound: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HoldChanged:
    held: bool
    by: str
    """``local`` (we held the caller) or ``remote`` (the phone put us on hold)."""


@dataclass(frozen=True, slots=True)
class MediaStats:
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    silent_seconds: float


SessionEvent = Dtmf | Hangup | PlayDone | RecordDone | HoldChanged | MediaStats | MediaTimeout


@dataclass(frozen=True, slots=True)
class CollectResult:
    digits: str
    reason: str
    """``max_digits``, ``terminator``, ``timeout`` (nothing pressed), ``inter_digit_timeout``."""


class Leg(Protocol):
    """The signalling side of a session (SIP dialog, WebRTC peer connection)."""

    channel: str
    """``sip``, ``trunk`` or ``webrtc``."""

    async def answer(self, session: CallSession) -> None: ...

    async def hangup(self, session: CallSession, cause: str) -> None: ...

    async def set_direction(self, session: CallSession, direction: str) -> None:
        """Tell the far end what we do now (re-INVITE with sendonly/sendrecv)."""

    async def refer(self, session: CallSession, target: str) -> bool:
        """Blind transfer by the far end (REFER); False when it cannot be done that way."""


Rerouter = Callable[["CallSession", str], Awaitable[bool]]


class CallSession:
    """One call leg with media. Create through the gateway, not directly."""

    def __init__(
        self,
        *,
        session_id: str,
        leg: Leg,
        media: MediaClient,
        chan: str,
        caller: str = "",
        dialled: str = "",
        direction: str = "inbound",
        lang: str | None = None,
        rerouter: Rerouter | None = None,
        event_buffer: int = 512,
    ) -> None:
        self.id = session_id
        self.leg = leg
        self.channel = leg.channel
        self.media = media
        self.chan = chan
        self.caller = caller
        self.dialled = dialled
        self.direction = direction
        self.lang = lang
        self.rerouter = rerouter
        self.state = "ringing"
        self.ended_by: str | None = None
        self.cause: str | None = None
        self.bridged_to: CallSession | None = None
        self.held = False
        self.remote_held = False
        self.muted = False
        """What the far end says is not passed on to the bridged party (:meth:`mute`)."""
        self.vars: dict[str, Any] = {}
        self.final_stats: dict[str, Any] | None = None
        self.transferring: asyncio.Future[bool] | None = None
        """Set while this session is being transferred (the old peer may hang up meanwhile)."""
        self.hangup_on_media_timeout = True
        """Hang up when the media process reports no RTP for ``[media] rtp_timeout`` seconds."""
        self._record_paths: dict[str, str] = {}
        """Messages being recorded (op id -> path): kept from the part file if media dies."""
        self._digits: deque[str] = deque(maxlen=64)
        self._digit_arrived = asyncio.Event()
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._events: deque[SessionEvent] = deque(maxlen=event_buffer)
        self._event_ready = asyncio.Event()
        self.ended = asyncio.Event()
        media.subscribe(chan, self._on_media_event)

    def __repr__(self) -> str:
        return f"<CallSession {self.id} {self.channel} {self.caller}->{self.dialled} {self.state}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def answer(self) -> None:
        if self.state == "answered":
            return
        self._check()
        await self.leg.answer(self)
        self.state = "answered"
        if self.hangup_on_media_timeout:
            # No RTP at all within [media] rtp_start_timeout ends the call (cause no_media):
            # a caller that never sends media does not hold its ports for the rtp_timeout.
            with contextlib.suppress(MediaError):
                await self.media.request(mc.WatchRtp(chan=self.chan))

    async def hangup(self, cause: str = "normal") -> None:
        if self.state == "ended":
            return
        await self.leg.hangup(self, cause)
        await self.ended_by_signalling("local", cause)

    async def ended_by_signalling(self, by: str, cause: str) -> None:
        """The leg reports the call is over (BYE, CANCEL, failure, timeout)."""
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_by, self.cause = by, cause
        peer = self.bridged_to
        self.bridged_to = None
        if peer is not None and peer.bridged_to is self:
            peer.bridged_to = None
            if peer.state != "ended" and peer.remote_held is False:
                peer._push(Hangup(by="bridge", cause="peer_hung_up"))
        err = SessionEnded(by, cause)
        # A recording in progress is kept: hanging up is how most callers end a message. Its
        # waiter gets the RecordDone (reason "hangup") once the media process has written it.
        recordings = {
            op: f for op, f in self._waiters.items() if op.startswith("r") and not f.done()
        }
        for op, fut in self._waiters.items():
            if op not in recordings and not fut.done():
                fut.set_exception(err)
        self._digit_arrived.set()
        self._push(Hangup(by=by, cause=cause))
        self.ended.set()
        closed_ok = False
        with contextlib.suppress(MediaError):
            closed = await self.media.request(mc.Close(chan=self.chan))
            self.final_stats = None if closed.stats is None else closed.stats.as_dict()
            closed_ok = closed.stats is not None
        if recordings and closed_ok:  # (the channel is gone with its process: no RecordDone)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wait(recordings.values()), 10)
        for fut in recordings.values():
            if not fut.done():
                fut.set_exception(err)
        self._waiters.clear()
        self.media.unsubscribe(self.chan)

    # -- media operations ----------------------------------------------------------------

    async def play(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        lang: str | None = None,
        file: str | None = None,
        interruptible: bool = True,
        loop: bool = False,
        wait: bool = True,
    ) -> PlayDone:
        """Play catalogue prompts (names or specs such as ``silence:500``) or a WAV file.

        With ``interruptible``, a key stops the prompt at once (barge-in) and stays in the digit
        buffer for ``collect``; keys typed before the prompt started skip it entirely.
        """
        self._check()
        op = f"p{next(_op_ids)}"
        if interruptible and not loop and self._digits:
            return PlayDone(op=op, reason="dtmf", digit=self._digits[0])
        if file is not None:
            request = mc.Play(
                chan=self.chan, op_id=op, file=file, interruptible=interruptible, loop=loop
            )
        elif prompt is not None:
            request = mc.Play(
                chan=self.chan,
                op_id=op,
                prompts=(prompt,) if isinstance(prompt, str) else tuple(prompt),
                lang=lang or self.lang,
                interruptible=interruptible,
                loop=loop,
            )
        else:
            raise ValueError("play needs a prompt or a file")
        fut = self._expect(op)
        try:
            await self.media.request(request)
        except BaseException:
            self._waiters.pop(op, None)
            raise
        if not wait:
            self._waiters.pop(op, None)
            return PlayDone(op=op, reason="started")
        return await self._wait(op, fut)

    async def stop_play(self) -> None:
        self._check()
        await self.media.request(mc.StopPlay(chan=self.chan))

    async def collect(
        self,
        max_digits: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the IVR's first-digit timeout, not a cancel scope
        terminator: str = "#",
        inter_digit_timeout: float = 3.0,
    ) -> CollectResult:
        """Keys from the buffer and as they come: until ``max_digits``, the terminator (not
        included), ``timeout`` before the first key, or ``inter_digit_timeout`` between keys."""
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        got: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._digits:
                d = self._digits.popleft()
                if terminator and d in terminator:
                    return CollectResult("".join(got), "terminator")
                got.append(d)
                if len(got) >= max_digits:
                    return CollectResult("".join(got), "max_digits")
                deadline = loop.time() + inter_digit_timeout
            self._check()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return CollectResult("".join(got), "inter_digit_timeout" if got else "timeout")
            self._digit_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._digit_arrived.wait(), remaining)

    def flush_digits(self) -> str:
        """Drop type-ahead (returns what was dropped)."""
        out = "".join(self._digits)
        self._digits.clear()
        return out

    async def record(
        self,
        path: str,
        *,
        max_seconds: float = 120.0,
        silence_seconds: float = 5.0,
        stop_digits: str = "#",
        beep: bool = False,
    ) -> RecordDone:
        """Record what the caller says into a WAV file (8 kHz, 16-bit); returns why it stopped."""
        self._check()
        if beep:
            await self.play("beep", interruptible=False)
        op = f"r{next(_op_ids)}"
        fut = self._expect(op)
        self._record_paths[op] = path
        fut.add_done_callback(lambda _f: self._record_paths.pop(op, None))
        try:
            await self.media.request(
                mc.Record(
                    chan=self.chan,
                    op_id=op,
                    path=path,
                    max_seconds=max_seconds,
                    silence_seconds=silence_seconds,
                    stop_digits=stop_digits,
                )
            )
        except BaseException:
            self._waiters.pop(op, None)
            raise
        result: RecordDone = await self._wait(op, fut)
        if result.reason == "hangup":
            return result  # the message is kept; the call is over (state "ended")
        # The stop key is not left in the buffer for the next collect.
        if result.reason == "dtmf" and self._digits and self._digits[-1] in stop_digits:
            self._digits.pop()
        return result

    async def record_call(
        self, other: CallSession, path: str, *, max_seconds: float = 4 * 3600.0
    ) -> asyncio.Future[RecordDone]:
        """Record this session's conversation with ``other`` into a stereo WAV (this side's
        voice left, ``other``'s right; see ``media.control.RecordCall``). Returns at once with
        a future that gets the ``RecordDone`` once the file is complete: the recording ends when
        either side hangs up, either is bridged elsewhere (``transferred``), on
        :meth:`stop_call_recording` or at ``max_seconds``. The future fails with
        ``SessionEnded`` when the media process died meanwhile (the ``.part`` file is left)."""
        self._check()
        other._check()
        op = f"rc{next(_op_ids)}"  # an "r" op: a hangup waits for its file (ended_by_signalling)
        fut = self._expect(op)
        try:
            await self.media.request(
                mc.RecordCall(
                    a=self.chan, b=other.chan, path=path, op_id=op, max_seconds=max_seconds
                )
            )
        except BaseException:
            self._waiters.pop(op, None)
            raise
        fut.add_done_callback(lambda _f: self._waiters.pop(op, None))
        return fut

    async def stop_call_recording(self) -> None:
        """End the recorded conversation this session is a side of (if any)."""
        if self.state != "ended":
            await self.media.request(mc.StopRecordCall(chan=self.chan))

    async def send_dtmf(self, digits: str) -> None:
        self._check()
        await self.media.request(mc.SendDtmf(chan=self.chan, digits=digits))

    async def bridge(self, other: CallSession) -> None:
        """Media both ways with ``other`` (whatever its channel); prompts stop."""
        self._check()
        other._check()
        if self.bridged_to is not None and self.bridged_to is not other:
            await self.unbridge()
        await self.media.request(mc.Bridge(a=self.chan, b=other.chan))
        old = other.bridged_to
        if old is not None and old is not self and old.bridged_to is other:
            old.bridged_to = None  # other leaves its previous conversation (attended transfer)
        self.bridged_to, other.bridged_to = other, self

    async def unbridge(self) -> None:
        peer = self.bridged_to
        self.bridged_to = None
        if peer is not None and peer.bridged_to is self:
            peer.bridged_to = None
        if self.state != "ended":
            with contextlib.suppress(MediaError):
                await self.media.request(mc.Unbridge(chan=self.chan))

    async def mute(self, on: bool = True) -> None:
        """Stop (``on``) or resume passing this far end's voice and keys on to whoever it is
        bridged to, now or later (the party hears silence); the far end still hears them."""
        self._check()
        await self.media.request(mc.Mute(chan=self.chan, on=on))
        self.muted = on

    async def hear(self, sources: Sequence[CallSession]) -> None:
        """This far end hears the mix of what ``sources``' far ends say (monitoring: a
        supervisor hears caller and agent; a whisper: the agent hears caller and supervisor),
        in place of the session it is bridged to; ``[]`` goes back to that session alone.
        The sources' own conversations are not disturbed."""
        self._check()
        chans = tuple(s.chan for s in sources if s.state != "ended")
        await self.media.request(mc.Mix(chan=self.chan, sources=chans))

    async def hold(self, music: str | None = "moh") -> None:
        """Put this caller on hold: the far end is told we only send, and hears ``music``."""
        self._check()
        if self.held:
            return
        self.held = True
        await self.leg.set_direction(self, "sendonly")
        if music:
            await self.play(music, interruptible=False, loop=True, wait=False)
        else:
            await self.media.request(mc.Unbridge(chan=self.chan))
        self._push(HoldChanged(held=True, by="local"))

    async def unhold(self) -> None:
        self._check()
        if not self.held:
            return
        self.held = False
        await self.media.request(mc.StopPlay(chan=self.chan))
        await self.leg.set_direction(self, "sendrecv")
        peer = self.bridged_to
        if peer is not None and peer.state != "ended":
            await self.media.request(mc.Bridge(a=self.chan, b=peer.chan))
        self._push(HoldChanged(held=False, by="local"))

    async def remote_hold_changed(self, held: bool) -> None:
        """The far end put us on hold (re-INVITE sendonly/inactive) or took us off it: the
        party bridged to this one hears music meanwhile."""
        if held == self.remote_held or self.state == "ended":
            return
        self.remote_held = held
        self._push(HoldChanged(held=held, by="remote"))
        peer = self.bridged_to
        if peer is None or peer.state == "ended":
            return
        with contextlib.suppress(MediaError):
            if held:
                await peer.play("moh", interruptible=False, loop=True, wait=False)
            else:
                await self.media.request(mc.StopPlay(chan=peer.chan))
                await self.media.request(mc.Bridge(a=self.chan, b=peer.chan))

    async def transfer(self, target: str, *, mode: str = "auto") -> bool:
        """Send the caller elsewhere: ``refer`` (blind REFER, the phone places the new call),
        ``reroute`` (we place it and bridge, or hand the call to a queue), or ``auto`` (REFER,
        re-routing when the far end refuses it). True when the transfer went ahead."""
        self._check()
        if mode not in ("auto", "refer", "reroute"):
            raise ValueError(f"transfer mode {mode!r} is not auto, refer or reroute")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transferring = done
        ok = False
        try:
            if mode in ("auto", "refer") and await self.leg.refer(self, target):
                ok = True
            elif mode != "refer" and self.rerouter is not None:
                ok = await self.rerouter(self, target)
            return ok
        finally:
            self.transferring = None
            done.set_result(ok)

    async def stats(self) -> dict[str, Any]:
        if self.state == "ended":
            return self.final_stats or {}
        reply = await self.media.request(mc.GetStats(chan=self.chan))
        return reply.stats.as_dict()

    # -- event stream --------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event from now on, ending after the Hangup."""
        while True:
            while self._events:
                event = self._events.popleft()
                yield event
                if isinstance(event, Hangup) and event.by != "bridge":
                    return
            if self.ended.is_set() and not self._events:
                return
            self._event_ready.clear()
            await self._event_ready.wait()

    # -- internals -----------------------------------------------------------------------

    def _check(self) -> None:
        if self.state == "ended":
            raise SessionEnded(self.ended_by or "local", self.cause or "ended")

    def _expect(self, op: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[op] = fut
        return fut

    async def _wait(self, op: str, fut: asyncio.Future[Any]) -> Any:
        try:
            return await fut
        finally:
            self._waiters.pop(op, None)

    def _push(self, event: SessionEvent) -> None:
        self._events.append(event)
        self._event_ready.set()

    def digit_from_signalling(self, digit: str, method: str = "info") -> None:
        """A key that came in a SIP INFO (or a WebRTC data message)."""
        if self.state != "ended":
            asyncio.get_running_loop().create_task(self._send_digit(digit, method))

    async def _send_digit(self, digit: str, method: str) -> None:
        with contextlib.suppress(MediaError):
            await self.media.request(mc.Digit(chan=self.chan, digit=digit, method=method))

    def _on_media_event(self, event: mc.ChannelEvent) -> None:
        match event:
            case mc.DtmfReceived(digit=digit, method=method, duration_ms=duration_ms):
                self._digits.append(digit)
                self._digit_arrived.set()
                self._push(Dtmf(digit=digit, method=method, duration_ms=duration_ms))
            case mc.PlayDone():
                done = PlayDone(
                    op=event.op, reason=event.reason, digit=event.digit, played_ms=event.played_ms
                )
                self._push(done)
                self._resolve(done.op, done)
            case mc.RecordDone():
                rec = RecordDone(
                    op=event.op,
                    path=event.path,
                    reason=event.reason,
                    seconds=event.seconds,
                    heard_sound=event.heard_sound,
                    error=event.error,
                )
                self._push(rec)
                self._resolve(rec.op, rec)
            case mc.RtpTimeout(silent_seconds=silent, no_media=no_media):
                self._push(MediaTimeout(silent_seconds=silent))
                if self.hangup_on_media_timeout and self.state != "ended":
                    cause = "no_media" if no_media else "media_timeout"
                    asyncio.get_running_loop().create_task(self._media_timeout(cause))
            case mc.MediaLost():
                asyncio.get_running_loop().create_task(self._media_lost())

    async def _media_timeout(self, cause: str) -> None:
        with contextlib.suppress(Exception):
            await self.hangup(cause)

    async def _media_lost(self) -> None:
        # A message being recorded is kept: what reached its part file (a second at most is
        # lost) becomes the message, ended for the reason "media_lost".
        kept: list[tuple[asyncio.Future[Any], RecordDone]] = []
        for op, path in list(self._record_paths.items()):
            fut = self._waiters.get(op)
            if fut is None or fut.done():
                continue
            seconds, sound = await asyncio.to_thread(recover_part, Path(path))
            kept.append((fut, RecordDone(op, path, "media_lost", seconds, heard_sound=sound)))
        with contextlib.suppress(Exception):
            await self.leg.hangup(self, "media_lost")
        for fut, done in kept:
            if not fut.done():
                self._push(done)
                fut.set_result(done)
        await self.ended_by_signalling("local", "media_lost")

    def _resolve(self, op: str, value: Any) -> None:
        fut = self._waiters.get(op)
        if fut is not None and not fut.done():
            fut.set_result(value)


def recover_part(path: Path) -> tuple[float, bool]:
    """Turn what the media process streamed to ``path``'s part file before it died into
    ``path`` (its header rewritten from the data actually there); returns its seconds and
    whether it holds sound. ``(0.0, False)`` when there is nothing."""
    part = part_path(path)
    try:
        data = part.read_bytes()
    except OSError:
        return 0.0, False
    raw = data[_WAV_HEADER:]
    raw = raw[: len(raw) - len(raw) % 2]
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if samples.size == 0:
        with contextlib.suppress(OSError):
            part.unlink()
        return 0.0, False
    write_wav(path, samples, RATE)
    with contextlib.suppress(OSError):
        part.unlink()
    sound = bool(np.abs(samples.astype(np.int32)).max() > _SOUND_PEAK)
    return round(samples.size / RATE, 3), sound


_WAV_HEADER = 44
"""A PCM WAV header as the ``wave`` module writes it (RIFF, fmt, data chunk headers)."""
_SOUND_PEAK = int(32768 * 10 ** (SILENCE_DBFS / 20))
"""A sample above this is sound (the media engine's silence level)."""


async def keep_bridged(a: CallSession, b: CallSession) -> str:
    """Supervise a conversation until it is over: when either side hangs up, the other is hung
    up too, unless the side that stays has meanwhile been bridged to someone else (a transfer),
    in which case the new pair is supervised. Returns ``a`` or ``b``: who stayed last."""
    while True:
        peer = a.bridged_to or b
        waits = [asyncio.ensure_future(a.ended.wait()), asyncio.ensure_future(peer.ended.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if a.state == "ended":
            replacement = peer.bridged_to
            if peer.state != "ended" and replacement is not None and replacement.state != "ended":
                a, b = peer, replacement  # a was transferred away: the new pair goes on
                continue
            if peer.state != "ended":
                with contextlib.suppress(Exception):
                    await peer.hangup("normal")
            return "b"
        now_peer = a.bridged_to
        pending = a.transferring
        if (now_peer is None or now_peer is peer) and pending is not None:
            # The old peer left while a transfer of ``a`` is under way (phones often hang up
            # right after their REFER is accepted): wait for where it lands.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pending), 60)
            now_peer = a.bridged_to
        if (
            a.state != "ended"
            and now_peer is not None
            and now_peer is not peer
            and now_peer.state != "ended"
        ):
            b = now_peer  # peer was replaced (a transfer): keep going with the new one
            continue
        with contextlib.suppress(Exception):
            await a.hangup("normal")
        return "a"
