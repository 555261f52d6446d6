"""The service's word on queue entries: its live event stream, followed during a load run.

A caller that presses its last key is not in the queue yet: the service still has to hear the
key, finish the IVR and put the call in its queue, which takes milliseconds usually and much
longer on a loaded machine. A caller that gave up in that gap would be an IVR hang-up to the
service and an abandoned call to the generator. So the generator takes the service's word:
:class:`QueueWatch` follows ``GET /api/events`` (a WebSocket, with the operator token: admins
see every event) and writes each ``call_queued`` of a call of this run to the board
(``Board.svc_queued_at``); a caller starts its patience there.

The run's calls are recognised by their SIP Call-ID (``call_id(tag, i)``: the run's tag and the
caller's index). A dropped socket is reopened with ``?after=<seq>&stream=<stream>`` so no event
is lost; the watch reports itself not following (``Board.watching`` 0) while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any

from sim.load.shared import Board

CONNECT_TIMEOUT = 5.0


def call_id(tag: str, i: int) -> str:
    """The SIP Call-ID of caller ``i`` of the run tagged ``tag``."""
    return f"{tag}-{i}@127.0.0.1"


def caller_of(tag: str, cid: str) -> int | None:
    """Caller index from a Call-ID of this run (None: another call)."""
    head, _, host = cid.partition("@")
    prefix = f"{tag}-"
    if host != "127.0.0.1" or not head.startswith(prefix):
        return None
    rest = head[len(prefix) :]
    return int(rest) if rest.isdigit() else None


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class QueueWatch:
    """Follows the service's event stream; see the module doc."""

    def __init__(self, base: str, token: str, board: Board, tag: str, callers: int) -> None:
        self.url = base.replace("http://", "ws://", 1).rstrip("/") + "/api/events"
        self.token = token
        self.board = board
        self.tag = tag
        self.callers = callers
        self.connected = asyncio.Event()
        self.after: int | None = None
        self.stream: str | None = None
        self.queued = 0
        self.reconnects = 0
        self.lost = False
        """A resume failed (``reset`` after events were missed): some entries may be unknown."""
        self.error = ""
        # epoch seconds -> this machine's monotonic clock (the board's)
        self.offset = time.time() - time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                url = self.url
                if self.after is not None and self.stream is not None:
                    url += f"?after={self.after}&stream={self.stream}"
                try:
                    async with session.ws_connect(url, headers=headers, heartbeat=10.0) as ws:
                        await self._read(ws, stop)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.error = f"{type(exc).__name__}: {exc}"[:200]
                self.board.watching.value = 0
                if stop.is_set():
                    break
                self.reconnects += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

    async def _read(self, ws: Any, stop: asyncio.Event) -> None:
        import aiohttp

        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receive = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait(
                    {receive, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if receive not in done:
                    receive.cancel()
                    return
                msg = receive.result()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                self.handle(json.loads(msg.data))
        finally:
            stopper.cancel()

    def handle(self, m: dict[str, Any]) -> None:
        kind = m.get("kind")
        data = m.get("data") or {}
        if kind == "reset":
            if self.after is not None:
                self.lost = True
            self.stream = str(data.get("stream") or "") or None
            self._connected()
        elif kind == "resumed":
            self._connected()
        elif kind == "call_queued" and data.get("kind", "call") == "call":
            i = caller_of(self.tag, str(data.get("call_id") or ""))
            if i is not None and 0 <= i < self.callers and not self.board.svc_queued_at[i]:
                self.board.svc_queued_at[i] = _epoch(str(m["at"])) - self.offset
                self.queued += 1
        seq = m.get("seq")
        if isinstance(seq, int) and kind not in ("heartbeat", "closing"):
            self.after = seq

    def _connected(self) -> None:
        self.board.watching.value = 1
        self.connected.set()

    def summary(self) -> dict[str, Any]:
        return {
            "queued_events": self.queued,
            "reconnects": self.reconnects,
            "events_lost": self.lost,
            "error": self.error,
        }


__all__ = ["QueueWatch", "call_id", "caller_of"]
