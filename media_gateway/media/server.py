"""The media process: the engine's asyncio shell (sockets, the 20 ms clock, control requests).

Run as ``python -m media_gateway.media.server`` by the signalling process (``client.py``),
which speaks JSON lines over the child's stdin/stdout: requests ``{"id": n, "op": ..., ...}``
get one reply ``{"id": n, "ok": true, ...}`` (or ``"ok": false, "error": ...``); events
(``dtmf``, ``play_done``, ``record_done``, ``rtp_timeout``) are lines without an ``id``. The
operations, replies and events are the typed classes of ``control.py``, which also owns their
wire encoding; ``MediaServer.handle`` takes an operation and returns its reply.
Runs on uvloop when installed: one core then carries about 100,000 packets/s.

The frame clock is drift-free: tick k runs at ``t0 + k * 20 ms`` on the loop's monotonic
clock (``loop.call_at``), so a late tick never delays the next; a tick more than three frames
late is counted and skipped rather than bursting audio.

RTP ports come in even/odd pairs (RTCP on port + 1, RFC 3550 §11); a datagram is only ever
sent to the address the peer's packets come from or the one its SDP named (an IP literal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ipaddress
import os
import random
import resource
import signal
import socket
import sys
import time
import wave
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

from media_gateway.audio import tones
from media_gateway.audio.wav import read_wav, write_wav
from media_gateway.media import control as mc
from media_gateway.media.engine import PTIME, RATE, Channel, MediaEngine, MediaError, Samples

EventSink = Callable[[mc.MediaEvent], None]
OpHandler = Callable[[Any], Awaitable[Any]]
"""Carries out one operation type (takes that operation, returns its reply)."""
R = TypeVar("R")
SampleSink = Callable[[Samples], None]


class RtpPortAllocator:
    """Hands out even RTP ports from ``[low, high)`` round-robin; RTCP is port + 1."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low + (low % 2)
        self.high = high
        self._next = self.low
        self.in_use: set[int] = set()

    def take(self) -> int:
        span = (self.high - self.low) // 2
        for _ in range(span):
            port = self._next
            self._next += 2
            if self._next >= self.high - 1:
                self._next = self.low
            if port not in self.in_use:
                self.in_use.add(port)
                return port
        # a MediaError is answered to the signalling side at once (503 there); anything else
        # escaped the request task: a traceback here, no answer, and a 10 s wait there
        raise MediaError("no free RTP port in the configured range")

    def release(self, port: int) -> None:
        self.in_use.discard(port)


class _RtpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("chan_id", "rtcp", "server", "transport")

    def __init__(self, server: MediaServer, chan_id: str, rtcp: bool) -> None:
        self.server = server
        self.chan_id = chan_id
        self.rtcp = rtcp
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        srv = self.server
        if self.rtcp:
            srv.engine.receive_rtcp(self.chan_id, data, addr[:2], srv.loop.time())
        else:
            srv.engine.receive(self.chan_id, data, addr[:2], srv.loop.time())
        srv.request_flush()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a peer that went away: RTP carries on


_FRAMES_PER_SECOND = round(1 / PTIME)


class _Part:
    __slots__ = ("writer", "written")

    def __init__(self, writer: CallWav) -> None:
        self.writer = writer
        self.written = 0
        """How many of the recording's chunks are in the file."""


class _Ports:
    __slots__ = ("port", "rtcp", "rtp")

    def __init__(
        self, port: int, rtp: asyncio.DatagramTransport, rtcp: asyncio.DatagramTransport
    ) -> None:
        self.port = port
        self.rtp = rtp
        self.rtcp = rtcp


class MediaServer:
    """Owns the sockets and the frame clock; ``handle`` carries out one control request."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port_min: int = 20000,
        port_max: int = 30000,
        prompt_dirs: list[str] | None = None,
        on_event: EventSink | None = None,
        rtp_timeout: float = 0.0,
        rtp_start_timeout: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.engine = MediaEngine(rng=rng, wallclock=time.time)
        self.ports = RtpPortAllocator(port_min, port_max)
        self.prompt_dirs = [Path(d) for d in (prompt_dirs or [])]
        self.on_event: EventSink = on_event or (lambda _e: None)
        self.rtp_timeout = rtp_timeout
        self.rtp_start_timeout = rtp_start_timeout
        """Seconds an answered call (``WatchRtp``) may go without any RTP; 0 = not watched."""
        self.watched: dict[str, float] = {}
        """Answered channels that have not sent RTP yet, with when they were answered."""
        self.record_parts: dict[str, _Part] = {}
        """Messages being recorded, streamed to their ``.part`` file each second, by op id."""
        self.sockets: dict[str, _Ports] = {}
        self.sample_sinks: dict[str, SampleSink] = {}
        self._flush_pending = False
        self._t0 = 0.0
        self._k = 0
        self._timer: asyncio.TimerHandle | None = None
        self._catalogue: Any = None
        self.late_ticks = 0
        self.write_tasks: set[asyncio.Task[None]] = set()
        self.call_wavs: dict[str, CallWav] = {}
        """Files of the conversations being recorded, by op id."""
        self.ops: dict[type[mc.MediaOp[Any]], OpHandler] = {
            mc.Open: self.op_open,
            mc.Update: self.op_update,
            mc.Close: self.op_close,
            mc.Play: self.op_play,
            mc.StopPlay: self.op_stop_play,
            mc.Record: self.op_record,
            mc.StopRecord: self.op_stop_record,
            mc.RecordCall: self.op_record_call,
            mc.StopRecordCall: self.op_stop_record_call,
            mc.Bridge: self.op_bridge,
            mc.Unbridge: self.op_unbridge,
            mc.Mute: self.op_mute,
            mc.Mix: self.op_mix,
            mc.Echo: self.op_echo,
            mc.SendDtmf: self.op_send_dtmf,
            mc.Digit: self.op_digit,
            mc.WatchRtp: self.op_watch_rtp,
            mc.GetStats: self.op_stats,
            mc.ServerStats: self.op_server_stats,
            mc.Ping: self.op_ping,
        }
        """What carries out each operation type; plug-ins add theirs (``webrtc_peer.install``
        adds the WebRTC legs' operations)."""
        self.close_hooks: list[Callable[[str], None]] = []
        """Called with a channel id when it closes (plug-ins drop their per-channel state)."""
        _install_plugins(self)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._t0 = self.loop.time()
        self._k = 0
        self._schedule()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for chan_id in list(self.engine.channels):
            self._close_channel(chan_id)
        self.flush()
        if self.write_tasks:
            await asyncio.gather(*self.write_tasks, return_exceptions=True)

    def _schedule(self) -> None:
        self._k += 1
        self._timer = self.loop.call_at(self._t0 + self._k * PTIME, self._on_tick)

    def _on_tick(self) -> None:
        now = self.loop.time()
        due = self._t0 + self._k * PTIME
        behind = int((now - due) / PTIME)
        if behind > 3:  # a stall: skip to the present instead of bursting
            self.late_ticks += behind
            self._k += behind
            due = self._t0 + self._k * PTIME
        self.engine.tick(due)
        if self._k % 50 == 0:
            if self.rtp_timeout > 0 or self.watched:
                self._check_timeouts(now)
            self._stream_recordings()
        self.flush()
        self._schedule()

    def _check_timeouts(self, now: float) -> None:
        for chan_id, since in list(self.watched.items()):
            ch = self.engine.channels.get(chan_id)
            if ch is None or ch.packets_in:
                del self.watched[chan_id]  # it sends: the rtp_timeout watches it from now on
            elif now - since > self.rtp_start_timeout:
                del self.watched[chan_id]
                ch.last_in_at = now  # (the rtp_timeout does not report it again)
                self.on_event(
                    mc.RtpTimeout(chan=chan_id, silent_seconds=now - since, no_media=True)
                )
        if self.rtp_timeout <= 0:
            return
        for ch in self.engine.channels.values():
            if (
                ch.kind == "rtp"
                and ch.direction == "sendrecv"
                and now - ch.last_in_at > self.rtp_timeout
            ):
                ch.last_in_at = now  # once per timeout period
                self.on_event(mc.RtpTimeout(chan=ch.id, silent_seconds=self.rtp_timeout))

    def _stream_recordings(self) -> None:
        """Append each message's new second to its ``.part`` file (a valid WAV after every
        append), so a message being left survives the media process dying (kill -9): the
        signalling side keeps what reached the disk (``session.recover_part``)."""
        for ch in self.engine.channels.values():
            rec = ch.recording
            if rec is None or not rec.path or len(rec.chunks) < _FRAMES_PER_SECOND:
                continue  # (under a second: a crash loses less than the streaming delay)
            part = self.record_parts.get(rec.op)
            if part is None:
                part = self.record_parts[rec.op] = _Part(CallWav(Path(rec.path), channels=1))
                self._after(part.writer, asyncio.to_thread(part.writer.open_quietly))
            if len(rec.chunks) > part.written:
                chunk = np.concatenate(rec.chunks[part.written :])
                part.written = len(rec.chunks)
                self._after(part.writer, asyncio.to_thread(part.writer.append, chunk))

    # -- sending ---------------------------------------------------------------------------

    def request_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        out, events, samples = self.engine.drain()
        sockets = self.sockets
        for ch, data, is_rtcp in out:
            ports = sockets.get(ch.id)
            if ports is None or ch.remote is None:
                continue
            if is_rtcp:
                dest = ch.rtcp_remote or (ch.remote[0], ch.remote[1] + 1)
                ports.rtcp.sendto(data, dest)
            else:
                ports.rtp.sendto(data, ch.remote)
        for ch, frame in samples:
            sink = self.sample_sinks.get(ch.id)
            if sink is not None:
                sink(frame)
        for event in events:
            self._emit(event)

    def _emit(self, event: dict[str, Any]) -> None:
        """The engine's events (plain dicts, it is a pure core) become typed ones here."""
        tag = event.get("event")
        if tag == "call_record_data" or tag == "call_record_done":
            self._call_record_event(event)
            return
        if tag == "record_done":
            samples = event.pop("samples")
            part = self.record_parts.pop(str(event.get("op")), None)
            if part is None:
                self._track(self._write_recording(event, samples))
            else:  # after its last append; then the complete file replaces the part
                self._after(part.writer, self._write_recording(event, samples, part.writer))
            return
        self.on_event(mc.decode_event(event))

    async def _write_recording(
        self, event: dict[str, Any], samples: Samples, part: CallWav | None = None
    ) -> None:
        path = event.get("path")
        if path:
            try:
                await asyncio.to_thread(_write_atomically, Path(path), samples)
            except OSError as exc:
                event["error"] = f"{path}: {exc.strerror or exc}"
        if part is not None:
            await asyncio.to_thread(part.discard)
        self.on_event(mc.decode_event(event))

    def _call_record_event(self, event: dict[str, Any]) -> None:
        """A recorded conversation's next second (appended to its file), or its end (the file
        is closed and renamed, then the ``RecordDone`` goes out); writes run in order."""
        op = event["op"]
        if event["event"] == "call_record_data":
            writer = self.call_wavs.get(op)
            if writer is not None:
                samples = event["samples"]
                self._after(writer, asyncio.to_thread(writer.append, samples))
            return
        writer = self.call_wavs.pop(op, None)
        done = {k: v for k, v in event.items() if k != "event"}
        done["event"] = "record_done"

        async def finish() -> None:
            if writer is not None:
                await asyncio.to_thread(writer.finish)
                if writer.error is not None:
                    done["error"] = writer.error
            else:
                done["error"] = f"{event['path']}: not open"
            self.on_event(mc.decode_event(done))

        if writer is None:
            self._track(finish())
        else:
            self._after(writer, finish())

    def _after(self, writer: CallWav, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` once the writer's previous work has finished (one file, in order)."""
        previous = writer.tail

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await work

        writer.tail = self._track(run())

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        self.write_tasks.add(task)
        task.add_done_callback(self.write_tasks.discard)
        return task

    # -- control ---------------------------------------------------------------------------

    async def handle(self, op: mc.MediaOp[R]) -> R:
        """Carry out one operation; returns its reply (raises MediaError on bad input)."""
        method = self.ops.get(type(op))
        if method is None:
            tag = getattr(op, "TAG", type(op).__name__)
            raise MediaError(f"operation {tag!r} is not available in this media server")
        reply: R = await method(op)
        self.flush()
        return reply

    async def op_open(self, op: mc.Open) -> mc.Opened:
        chan_id = op.chan
        remote = _remote(op.remote)
        now = self.loop.time()
        ch = self.engine.open(
            chan_id,
            now,
            kind=op.kind,
            codec=op.codec,
            pt=op.pt,
            te_pt=op.te_pt,
            remote=remote,
            inband=op.inband,
            direction=op.direction,
        )
        if op.kind != "rtp":
            return mc.Opened(chan=chan_id)
        try:
            ports = await self._bind_pair(chan_id)
        except Exception:
            self.engine.close(chan_id, now)
            raise
        self.sockets[chan_id] = ports
        return mc.Opened(chan=ch.id, port=ports.port, host=self.host)

    async def _bind_pair(self, chan_id: str) -> _Ports:
        last: OSError | None = None
        # Other programs hold ports in our range now and then (ephemeral ports of outgoing
        # sockets share it on Linux): skip them, up to the whole range once.
        for _ in range(max(16, (self.ports.high - self.ports.low) // 2)):
            port = self.ports.take()
            rtp_t: asyncio.DatagramTransport | None = None
            try:
                rtp_t, _ = await self.loop.create_datagram_endpoint(
                    lambda: _RtpProtocol(self, chan_id, False), local_addr=(self.host, port)
                )
                rtcp_t, _ = await self.loop.create_datagram_endpoint(
                    lambda: _RtpProtocol(self, chan_id, True), local_addr=(self.host, port + 1)
                )
            except OSError as exc:
                if rtp_t is not None:
                    rtp_t.close()
                self.ports.release(port)
                last = exc
                continue
            with contextlib.suppress(OSError):
                sock = rtp_t.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB8)  # DSCP EF
            return _Ports(port, rtp_t, rtcp_t)
        raise MediaError(f"could not bind an RTP port pair: {last}")

    async def op_update(self, op: mc.Update) -> mc.Ack:
        self.engine.update(
            op.chan,
            codec=op.codec,
            pt=op.pt,
            te_pt=op.te_pt,
            direction=op.direction,
            inband=op.te_pt is None if op.inband is None else op.inband,
            remote=_remote(op.remote),
            srtp=op.srtp,
        )
        return mc.Ack()

    async def op_close(self, op: mc.Close) -> mc.Closed:
        return mc.Closed(stats=self._close_channel(op.chan))

    def _close_channel(self, chan_id: str) -> mc.ChannelStats | None:
        raw = self.engine.close(chan_id, self.loop.time())
        self.flush()  # the RTCP BYE goes out before the sockets close
        ports = self.sockets.pop(chan_id, None)
        if ports is not None:
            ports.rtp.close()
            ports.rtcp.close()
            self.ports.release(ports.port)
        self.sample_sinks.pop(chan_id, None)
        self.watched.pop(chan_id, None)
        for hook in self.close_hooks:
            hook(chan_id)
        return None if raw is None else mc.ChannelStats(**raw)

    async def op_play(self, op: mc.Play) -> mc.Playing:
        self.engine.get(op.chan)
        samples = await self._audio(op)
        self.engine.play(
            op.chan,
            samples,
            self.loop.time(),
            op=op.op_id,
            interruptible=op.interruptible,
            loop=op.loop,
        )
        return mc.Playing(ms=round(samples.size * 1000 / RATE))

    async def _audio(self, op: mc.Play) -> Samples:
        """What to play: ``file`` (a WAV path), ``prompts`` (catalogue names/specs), ``spec``."""
        if op.file is not None:
            path = Path(op.file)
            try:
                audio = await asyncio.to_thread(read_wav, path)
            except (OSError, ValueError) as exc:
                raise MediaError(f"cannot play {path}: {exc}") from exc
            from media_gateway.audio.resample import resample

            samples = audio.samples
            if audio.rate != RATE:
                samples = resample(samples, audio.rate, RATE)
            return samples
        if op.prompts is not None:
            cat = self._prompts()
            try:
                return await asyncio.to_thread(cat.sequence, list(op.prompts), op.lang)
            except LookupError as exc:
                raise MediaError(str(exc)) from exc
        if op.spec is not None:
            return _spec(op.spec)
        raise MediaError("play needs file, prompts or spec")

    def _prompts(self) -> Any:
        if self._catalogue is None:
            from media_gateway.prompts import PromptCatalogue

            self._catalogue = PromptCatalogue(self.prompt_dirs)
        return self._catalogue

    async def op_stop_play(self, op: mc.StopPlay) -> mc.Ack:
        self.engine.stop_play(op.chan, self.loop.time())
        return mc.Ack()

    async def op_record(self, op: mc.Record) -> mc.Ack:
        await asyncio.to_thread(Path(op.path).parent.mkdir, parents=True, exist_ok=True)
        self.engine.record(
            op.chan,
            self.loop.time(),
            op=op.op_id,
            path=op.path,
            max_seconds=op.max_seconds,
            silence_seconds=op.silence_seconds,
            stop_digits=op.stop_digits,
        )
        return mc.Ack()

    async def op_stop_record(self, op: mc.StopRecord) -> mc.Ack:
        self.engine.stop_record(op.chan, self.loop.time())
        return mc.Ack()

    async def op_record_call(self, op: mc.RecordCall) -> mc.Ack:
        self.engine.get(op.a)
        self.engine.get(op.b)
        if op.op_id in self.call_wavs:
            raise MediaError(f"a conversation is already recorded as {op.op_id!r}")
        writer = CallWav(Path(op.path))
        try:
            await asyncio.to_thread(writer.open)
        except OSError as exc:
            raise MediaError(f"cannot record to {op.path}: {exc.strerror or exc}") from exc
        try:
            self.engine.record_call(
                op.a,
                op.b,
                self.loop.time(),
                op=op.op_id,
                path=op.path,
                max_seconds=op.max_seconds,
            )
        except MediaError:
            await asyncio.to_thread(writer.abort)
            raise
        self.call_wavs[op.op_id] = writer
        return mc.Ack()

    async def op_stop_record_call(self, op: mc.StopRecordCall) -> mc.Ack:
        self.engine.stop_record_call(op.chan, self.loop.time())
        return mc.Ack()

    async def op_bridge(self, op: mc.Bridge) -> mc.Ack:
        self.engine.bridge(op.a, op.b, self.loop.time())
        return mc.Ack()

    async def op_unbridge(self, op: mc.Unbridge) -> mc.Ack:
        self.engine.unbridge(op.chan)
        return mc.Ack()

    async def op_mute(self, op: mc.Mute) -> mc.Ack:
        self.engine.set_mute(op.chan, op.on)
        return mc.Ack()

    async def op_mix(self, op: mc.Mix) -> mc.Ack:
        self.engine.set_mix(op.chan, list(op.sources), self.loop.time())
        return mc.Ack()

    async def op_echo(self, op: mc.Echo) -> mc.Ack:
        self.engine.set_echo(op.chan, op.on, self.loop.time())
        return mc.Ack()

    async def op_send_dtmf(self, op: mc.SendDtmf) -> mc.DtmfSent:
        n = self.engine.send_dtmf(op.chan, op.digits, self.loop.time(), duration_ms=op.duration_ms)
        return mc.DtmfSent(packets=n)

    async def op_digit(self, op: mc.Digit) -> mc.Ack:
        """A key that came by signalling (SIP INFO): same event stream, same barge-in."""
        self.engine.receive_digit(op.chan, op.digit, op.method, self.loop.time())
        return mc.Ack()

    async def op_watch_rtp(self, op: mc.WatchRtp) -> mc.Ack:
        ch = self.engine.get(op.chan)
        if ch.kind == "rtp" and self.rtp_start_timeout > 0 and not ch.packets_in:
            self.watched[ch.id] = self.loop.time()
        return mc.Ack()

    async def op_stats(self, op: mc.GetStats) -> mc.Stats:
        raw = self.engine.channel_stats(self.engine.get(op.chan))
        return mc.Stats(stats=mc.ChannelStats(**raw))

    async def op_server_stats(self, op: mc.ServerStats) -> mc.ServerStatus:
        return mc.ServerStatus(
            channels=len(self.engine.channels),
            ticks=self.engine.ticks,
            late_ticks=self.late_ticks,
            ports_in_use=len(self.ports.in_use),
        )

    async def op_ping(self, op: mc.Ping) -> mc.Pong:
        return mc.Pong(pid=os.getpid())

    def channel(self, chan_id: str) -> Channel:
        return self.engine.get(chan_id)


def _install_plugins(server: MediaServer) -> None:
    """Optional legs: WebRTC when aiortc is importable."""
    try:
        plugin = importlib.import_module("media_gateway.media.webrtc_peer")
    except ImportError:
        return
    plugin.install(server)


def _remote(value: tuple[str, int] | None) -> tuple[str, int] | None:
    """A peer address from SDP: only IP literals are accepted (nothing is ever resolved)."""
    if value is None:
        return None
    try:
        host, port = str(value[0]), int(value[1])
        ipaddress.ip_address(host)
    except (ValueError, TypeError, IndexError) as exc:
        raise MediaError(f"remote address must be [IP literal, port], got {list(value)!r}") from exc
    if not 0 < port < 65536:
        raise MediaError(f"remote port {port} is out of range")
    return host, port


def _spec(spec: str) -> Samples:
    kind, _, rest = spec.partition(":")
    args = [a for a in rest.split(":") if a]
    try:
        if kind == "silence":
            return tones.silence(float(args[0]) / 1000)
        if kind == "tone":
            return tones.tone([float(args[0])], float(args[1]) / 1000)
        if kind == "beep":
            return tones.beep()
        if kind == "moh":
            return tones.music_on_hold(float(args[0]) if args else 30.0)
        if kind == "dtmf":
            return tones.dtmf_sequence(args[0])
    except (IndexError, ValueError) as exc:
        raise MediaError(f"bad audio spec {spec!r}: {exc}") from exc
    raise MediaError(f"unknown audio spec {spec!r}")


def part_path(path: Path) -> Path:
    """Where a recording is written until it is complete: ``.<name>.part`` beside ``path``
    (a valid WAV up to its last whole second, should the media process die meanwhile)."""
    return path.with_name(f".{path.name}.part")


class CallWav:
    """A recorded conversation's file: a stereo 16-bit WAV at 8 kHz written as the call goes.

    It is written to :func:`part_path` (``wave`` rewrites the header's sizes after each
    second appended, so the file is always a valid WAV), then flushed to disk and renamed to
    ``path`` when the conversation ends: the final name only ever holds a complete file.
    A write error is kept in ``error`` and ends the writing; what was written is kept."""

    def __init__(self, path: Path, *, channels: int = 2) -> None:
        self.path = path
        self.channels = channels
        """2 for a conversation; 1 for a message streamed to its part file."""
        self.part = part_path(path)
        self.error: str | None = None
        self.tail: asyncio.Task[None] | None = None
        """The last work queued for this file (each waits for the one before it)."""
        self._file: BinaryIO | None = None
        self._wav: wave.Wave_write | None = None

    def open(self) -> None:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        f = self.part.open("wb")
        try:
            w = wave.open(f, "wb")  # noqa: SIM115 - open for the whole call; finish() closes it
            w.setnchannels(self.channels)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(b"")  # the header: a valid (empty) WAV from the start
            f.flush()
        except BaseException:
            f.close()
            raise
        self._file, self._wav = f, w

    def append(self, samples: Samples) -> None:
        if self._wav is None or self._file is None or self.error is not None:
            return
        try:
            self._wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
            self._file.flush()
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"

    def finish(self) -> None:
        """Close, sync and rename (also after a write error: what was written is kept)."""
        f, w = self._file, self._wav
        self._file = self._wav = None
        if f is None or w is None:
            return
        try:
            try:
                w.close()  # patches the header; the file object stays ours
                f.flush()
                os.fsync(f.fileno())
            finally:
                f.close()
            os.replace(self.part, self.path)
        except OSError as exc:
            self.error = self.error or f"{self.path}: {exc.strerror or exc}"

    def open_quietly(self) -> None:
        """``open``, a failure kept in ``error`` (the complete file is still written at the
        end: the part file is only the insurance against a crash)."""
        try:
            self.open()
        except OSError as exc:
            self.error = f"{self.part}: {exc.strerror or exc}"

    def discard(self) -> None:
        """The complete file has been written elsewhere: close and delete the part file."""
        f, w = self._file, self._wav
        self._file = self._wav = None
        with contextlib.suppress(OSError):
            try:
                if w is not None:
                    w.close()
            finally:
                if f is not None:
                    f.close()
        with contextlib.suppress(OSError):
            self.part.unlink()

    def abort(self) -> None:
        """The recording did not start: nothing is kept."""
        f = self._file
        self._file = self._wav = None
        if f is not None:
            f.close()
        with contextlib.suppress(OSError):
            self.part.unlink()


def _write_atomically(path: Path, samples: Samples) -> None:
    tmp = path.with_name(f".{path.name}.part")
    write_wav(tmp, np.asarray(samples, dtype=np.int16), RATE)
    os.replace(tmp, path)


def raise_fd_limit() -> int:
    """Two sockets per call: lift the soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


# -- the process -----------------------------------------------------------------------------


async def _serve_stdio(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    w_transport, w_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)

    def send_event(event: mc.MediaEvent) -> None:
        writer.write(mc.encode_event(event))

    low, _, high = args.ports.partition("-")
    server = MediaServer(
        host=args.host,
        port_min=int(low),
        port_max=int(high),
        prompt_dirs=args.prompts or [],
        on_event=send_event,
        rtp_timeout=args.rtp_timeout,
        rtp_start_timeout=args.rtp_start_timeout,
    )
    server.start()
    send_event(mc.Ready(pid=os.getpid(), loop=type(loop).__module__))

    async def run(req: dict[str, Any]) -> None:
        rid = req.get("id")
        try:
            reply = await server.handle(mc.decode_request(req))
            writer.write(mc.encode_reply(rid, reply))
        except (MediaError, KeyError, ValueError, TypeError) as exc:
            writer.write(mc.encode_error(rid, str(exc) or type(exc).__name__))

    pending: set[asyncio.Task[None]] = set()
    while True:
        line = await reader.readline()
        if not line:
            break  # the signalling process went away: so do we
        try:
            req = mc.decode_line(line)
        except MediaError as exc:
            writer.write(mc.encode_error(None, f"bad request line: {exc}"))
            continue
        task = loop.create_task(run(req))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await server.close()
    with contextlib.suppress(Exception):
        await writer.drain()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media_gateway.media.server")
    parser.add_argument("--host", default="127.0.0.1", help="IP address RTP binds to")
    parser.add_argument("--ports", default="20000-30000", help="RTP port range LOW-HIGH")
    parser.add_argument("--prompts", action="append", help="prompt directory (repeatable)")
    parser.add_argument("--rtp-timeout", type=float, default=0.0)
    parser.add_argument("--rtp-start-timeout", type=float, default=0.0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    # The signalling process owns our lifetime: we exit when it closes our stdin (also when it
    # dies). A SIGTERM/SIGINT sent to the whole group (systemd stop, Ctrl-C) must not end media
    # before the parent has hung up its calls, nor make it restart us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve_stdio(args))
    return uvloop.run(_serve_stdio(args))


if __name__ == "__main__":
    sys.exit(main())
