"""How the signalling process drives media: a child process, or the same loop in tests.

Both clients offer ``request(op) -> reply``, typed by ``control.py`` (``await
media.request(Open(chan="c1"))`` is an ``Opened``), and deliver typed events (``DtmfReceived``,
``PlayDone``...) to the handler registered for their channel (``subscribe``). ``MediaProcess`` is the production form: the
media server runs in its own process on uvloop (``python -m media_gateway.media.server``),
so RTP pacing never waits behind SIP parsing or the ACD, and a second core is used.
``LocalMedia`` runs the same ``MediaServer`` on the caller's loop (unit tests, tiny setups).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from media_gateway.media import control as mc
from media_gateway.media.engine import MediaError
from media_gateway.media.server import MediaServer

log = structlog.get_logger("hotline.media")

EventHandler = Callable[[mc.ChannelEvent], None]
R = TypeVar("R")


class MediaClient(abc.ABC):
    """Common part: event routing by channel id."""

    def __init__(self) -> None:
        self._handlers: dict[str, EventHandler] = {}
        self.fallback: EventHandler = lambda _e: None

    def subscribe(self, chan_id: str, handler: EventHandler) -> None:
        self._handlers[chan_id] = handler

    def unsubscribe(self, chan_id: str) -> None:
        self._handlers.pop(chan_id, None)

    def dispatch(self, event: mc.MediaEvent) -> None:
        if not isinstance(event, mc.ChannelEvent):
            return  # process-level (ready): the client's own business
        handler = self._handlers.get(event.chan, self.fallback)
        try:
            handler(event)
        except Exception:
            log.exception("media_event_handler_failed", media_event=event.TAG)

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def request(self, op: mc.MediaOp[R]) -> R:
        """Carry out ``op`` in the media process; its reply, or MediaError."""


class LocalMedia(MediaClient):
    """The media server on this loop (no process boundary)."""

    def __init__(self, **server_args: Any) -> None:
        super().__init__()
        self._args = server_args
        self.server: MediaServer | None = None

    async def start(self) -> None:
        self.server = MediaServer(on_event=self._on_server_event, **self._args)
        self.server.start()

    def _on_server_event(self, event: mc.MediaEvent) -> None:
        # Delivered on the next loop pass, as from a process: handlers never run inside the
        # engine's own call stack.
        asyncio.get_running_loop().call_soon(self.dispatch, event)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def request(self, op: mc.MediaOp[R]) -> R:
        if self.server is None:
            raise MediaError("media is not running")
        try:
            return await self.server.handle(op)
        except (KeyError, ValueError, TypeError) as exc:
            raise MediaError(str(exc) or type(exc).__name__) from exc


class MediaProcess(MediaClient):
    """The media server as a child process, JSON lines over its stdin/stdout."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port_min: int = 20000,
        port_max: int = 30000,
        prompt_dirs: list[str] | None = None,
        rtp_timeout: float = 0.0,
        rtp_start_timeout: float = 0.0,
        python: str = sys.executable,
    ) -> None:
        super().__init__()
        self.argv = [
            python,
            "-m",
            "media_gateway.media.server",
            "--host",
            host,
            "--ports",
            f"{port_min}-{port_max}",
            "--rtp-timeout",
            str(rtp_timeout),
            "--rtp-start-timeout",
            str(rtp_start_timeout),
        ]
        for d in prompt_dirs or []:
            self.argv += ["--prompts", d]
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[mc.Ready] | None = None
        self._closing = False
        self.pid = 0
        self.restarts = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._reader = loop.create_task(self._read())
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), 30)
        except TimeoutError as exc:
            raise MediaError("the media process did not start within 30 s") from exc
        self.pid = ready.pid
        log.info("media_process_started", pid=self.pid, loop=ready.loop)

    async def _read(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                msg = mc.decode_line(line)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    elif msg["id"] is None:
                        log.warning("media_refused_line", error=msg.get("error"))
                    continue
                event = mc.decode_event(msg)
            except (MediaError, TypeError) as exc:
                log.warning(
                    "media_bad_line",
                    error=str(exc),
                    line=line[:200].decode("utf-8", "replace"),
                )
                continue
            if isinstance(event, mc.Ready):
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(event)
            else:
                self.dispatch(event)
        # The process is gone: nothing pending will be answered.
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MediaError("the media process exited"))
        self._pending.clear()
        if not self._closing:
            code = await proc.wait()
            log.error("media_process_exited", pid=self.pid, returncode=code)
            for chan in list(self._handlers):
                self.dispatch(mc.MediaLost(chan=chan, reason="process_exited"))
            self.restarts += 1
            with contextlib.suppress(Exception):
                await self.start()

    async def request(self, op: mc.MediaOp[R]) -> R:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise MediaError("the media process is not running")
        rid = next(self._ids)
        line = mc.encode_request(rid, op)  # before registering: a bad op raises here
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        proc.stdin.write(line)
        try:
            reply = await asyncio.wait_for(fut, 10)
        except TimeoutError as exc:
            self._pending.pop(rid, None)
            raise MediaError(f"media request {op.TAG} timed out") from exc
        if reply.pop("ok", None) is not True:
            raise MediaError(str(reply.get("error", "media request failed")))
        reply.pop("id", None)
        return mc.decode_reply(op, reply)

    async def close(self) -> None:
        self._closing = True
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        self.proc = None
