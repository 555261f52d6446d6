"""The asyncio shell around :class:`acd.engine.AcdEngine` (aioquic's ``transmit()`` pattern).

It holds the engine, feeds it events, hands every returned action to ``on_action``, passes the log
records to ``on_log`` (the store persists them; statistics fold them) and keeps exactly one
``loop.call_at`` armed for ``engine.next_deadline()``. It knows nothing about SIP: the composition
root translates ``OfferCall`` into an agent leg and reports ``OfferAnswered`` & co. back.

Time: events carry ``at`` on the injected ``clock`` (wall time by default, so log timestamps and
statistics intervals are real times); the timer converts an engine deadline to the loop's clock.

Re-entrancy: an ``on_action`` callback may call :meth:`AcdService.handle` (e.g. an agent leg that
fails at once); the event is queued and handled after the current one, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog

from acd.actions import Action
from acd.engine import AcdEngine
from acd.events import Event, Tick
from acd.model import LogRecord

_log = structlog.get_logger("acd.service")


class AcdService:
    """Drives one engine on one event loop."""

    def __init__(
        self,
        engine: AcdEngine,
        *,
        on_action: Callable[[Action], None],
        on_log: Callable[[list[LogRecord]], None] | None = None,
        clock: Callable[[], float] = time.time,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.engine = engine
        self._on_action = on_action
        self._on_log = on_log
        self._clock = clock
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._queue: deque[Event] = deque()
        self._busy = False
        self._closed = False

    def now(self) -> float:
        """The injected clock, for building events (``CallArrived(at=service.now(), ...)``)."""
        return self._clock()

    def handle(self, event: Event) -> None:
        """Feed one event (queued if called from inside an action callback)."""
        if self._closed:
            raise RuntimeError("AcdService is closed")
        self._queue.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                ev = self._queue.popleft()
                actions = self.engine.handle(ev)
                records = self.engine.drain_log()
                if records and self._on_log is not None:
                    self._on_log(records)
                for action in actions:
                    try:
                        self._on_action(action)
                    except Exception:
                        _log.exception("acd action failed", action=type(action).__name__)
        finally:
            self._busy = False
            self._rearm()

    def close(self) -> None:
        """Cancel the timer; further events are refused."""
        self._closed = True
        self._timer_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def timer_at(self) -> float | None:
        """The engine deadline the armed timer is for (None if idle)."""
        return self._timer_at

    def _rearm(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None or self._closed:
            return
        loop = self._loop or asyncio.get_running_loop()
        delay = max(0.0, deadline - self._clock())
        self._timer = loop.call_at(loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._timer_at
        self._timer_at = None
        if self._closed:
            return
        now = self._clock()
        self.handle(Tick(at=max(now, deadline) if deadline is not None else now))
