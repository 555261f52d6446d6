"""The discrete-event kernel: a virtual clock and a heap of ``(time, seq, kind, payload)``.

``seq`` breaks ties in insertion order, so the run is deterministic. Kinds are small integers and
payloads plain values: no per-event objects beyond the tuple (the call-centre model in
``sim.model`` inlines the same loop for speed).

:func:`drive` is the simulator's side of "one routing code path, two drivers": it feeds a timeline
of engine events to an :class:`acd.engine.AcdEngine` on virtual time, firing
``Tick(at=engine.next_deadline())`` whenever a deadline falls before the next event, exactly as
``acd.service`` does with ``loop.call_at`` on the wall clock.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from acd.actions import Action
from acd.events import Event, Tick


class Engine(Protocol):
    """What the kernel needs from the ACD engine."""

    def handle(self, event: Event) -> list[Action]: ...

    def next_deadline(self) -> float | None: ...


class EventQueue:
    """A heap of ``(time, seq, kind, payload)`` with a virtual clock ``now``."""

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self, start: float = 0.0) -> None:
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self.now = start

    def push(self, at: float, kind: int, payload: Any = None) -> int:
        """Schedule; returns the entry's sequence number (usable as a cancellation token)."""
        if at < self.now:
            raise ValueError(f"cannot schedule in the past: {at} < now {self.now}")
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, payload))
        return self._seq

    def pop(self) -> tuple[float, int, int, Any]:
        """The earliest entry; advances ``now``."""
        entry = heapq.heappop(self._heap)
        self.now = entry[0]
        return entry

    def peek_time(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def __len__(self) -> int:
        return len(self._heap)


def drive(
    engine: Engine,
    events: Iterable[Event],
    *,
    until: float | None = None,
    on_actions: Callable[[float, Event, list[Action]], None] | None = None,
) -> list[tuple[float, Action]]:
    """Feed ``events`` (sorted by ``at``) to ``engine`` on a virtual clock; return every action
    as ``(virtual time, action)`` in order. Deadlines due before an event (and, after the last
    one, up to ``until``) are fired first with ``Tick``; the kernel holds one pending tick and
    re-arms it after every step, like the live shell's single ``call_at``."""
    out: list[tuple[float, Action]] = []

    def step(ev: Event) -> None:
        actions = engine.handle(ev)
        if on_actions is not None:
            on_actions(ev.at, ev, actions)
        out.extend((ev.at, a) for a in actions)

    def fire_until(t: float) -> None:
        for _ in range(1_000_000):  # bounded: each tick must move a deadline forward
            d = engine.next_deadline()
            if d is None or d > t:
                return
            step(Tick(at=d))
        raise RuntimeError("engine deadline did not advance after a million ticks")

    for ev in events:
        fire_until(ev.at)
        step(ev)
    if until is not None:
        fire_until(until)
    return out
