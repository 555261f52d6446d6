"""The board: each caller's state, shared by every process of a load run.

A caller and the agent who takes it usually live in different processes, and the two must never
both act on the same call at the same moment: an agent answering while the caller gives up
would make the generator count one thing and the engine another. So the decision is taken once,
here, under one lock: :meth:`Board.try_answer` (an agent) and :meth:`Board.try_leave` (a caller
abandoning, or going to voicemail) move a *waiting* caller on, and whichever comes second sees
that it is too late (the agent lets the offer ring until the service cancels it; the caller
keeps talking). Clocks are ``time.monotonic()`` (system-wide on Linux, so comparable across the
processes).

The service's own word on when a caller joined its queue (``call_queued`` on its event stream,
read by the agents' process: :mod:`sim.load.watch`) is written here too, so a caller starts its
patience at the instant the service counts it queued, never while the service still holds it
in the IVR.

Progress counters (calls placed, in the IVR, waiting, talking, done, failed) live here too: one
row per worker, written by that worker only, summed by the parent for the progress line.
"""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import Any

NEW, IVR, WAITING, ANSWERED, ABANDONED, VOICEMAIL, DONE, FAILED = range(8)
"""Caller states on the board."""

COUNTERS = ("placed", "ivr", "waiting", "talking", "done", "failed")
"""Progress counters, per worker (``ivr``, ``waiting`` and ``talking`` are gauges)."""


class Board:
    """Per-caller shared arrays (``multiprocessing`` raw arrays) and one lock; picklable into
    the worker processes when they are created."""

    def __init__(self, ctx: BaseContext, callers: int, workers: int) -> None:
        n = max(1, callers)
        self.lock: Any = ctx.Lock()
        self.state: Any = ctx.RawArray("b", n)
        self.queued_at: Any = ctx.RawArray("d", n)
        """When the caller's last key ended (its queue entry as the caller knows it)."""
        self.first_offer_at: Any = ctx.RawArray("d", n)
        """When an agent's phone first rang for the caller."""
        self.answered_at: Any = ctx.RawArray("d", n)
        self.answered_by: Any = ctx.RawArray("i", n)
        """Index of the answering agent + 1 (0: none)."""
        self.ringing: Any = ctx.RawArray("i", n)
        """Agents' phones ringing for the caller now."""
        self.ring_end_at: Any = ctx.RawArray("d", n)
        self.offers: Any = ctx.RawArray("i", n)
        self.svc_queued_at: Any = ctx.RawArray("d", n)
        """When the service put the caller in its first queue (its ``call_queued`` event, on
        this machine's monotonic clock); 0 until known."""
        self.watching: Any = ctx.RawValue("b", 0)
        """1 while the service's event stream is followed (``svc_queued_at`` is filled)."""
        self.progress: Any = ctx.RawArray("q", max(1, workers) * len(COUNTERS))
        self.start_at: Any = ctx.RawValue("d", 0.0)
        """The run's clock 0 (monotonic); 0 until the agents are registered."""
        self.stop: Any = ctx.RawValue("b", 0)
        """Set by the parent: stop placing calls, hang up, report."""

    # -- decisions -------------------------------------------------------------------------

    def try_answer(self, i: int, agent: int, now: float) -> bool:
        """An agent takes waiting caller ``i``; False when the caller has moved on."""
        with self.lock:
            if self.state[i] != WAITING:
                return False
            self.state[i] = ANSWERED
            self.answered_by[i] = agent + 1
            self.answered_at[i] = now
            return True

    def undo_answer(self, i: int, agent: int) -> bool:
        """The agent's answer did not take (the service had withdrawn the offer): the caller
        waits again."""
        with self.lock:
            if self.state[i] != ANSWERED or self.answered_by[i] != agent + 1:
                return False
            self.state[i] = WAITING
            self.answered_by[i] = 0
            self.answered_at[i] = 0.0
            return True

    def try_leave(self, i: int, to: int) -> int:
        """A waiting caller leaves (``ABANDONED`` or ``VOICEMAIL``); returns the state it was
        in (only ``WAITING`` means it left)."""
        with self.lock:
            old = int(self.state[i])
            if old == WAITING:
                self.state[i] = to
            return old

    def set_state(self, i: int, state: int) -> None:
        with self.lock:
            self.state[i] = state

    def ring(self, i: int, now: float, delta: int) -> None:
        """An agent's phone starts (+1) or stops (-1) ringing for caller ``i``."""
        with self.lock:
            self.ringing[i] += delta
            if delta > 0:
                self.offers[i] += 1
                if not self.first_offer_at[i]:
                    self.first_offer_at[i] = now
            else:
                self.ring_end_at[i] = now

    # -- progress --------------------------------------------------------------------------

    def add(self, worker: int, counter: int, delta: int = 1) -> None:
        self.progress[worker * len(COUNTERS) + counter] += delta

    def totals(self) -> dict[str, int]:
        n = len(COUNTERS)
        rows = len(self.progress) // n
        return {
            name: sum(int(self.progress[w * n + k]) for w in range(rows))
            for k, name in enumerate(COUNTERS)
        }


PLACED, IN_IVR, IN_QUEUE, TALKING, FINISHED, FAILED_CALLS = range(len(COUNTERS))
