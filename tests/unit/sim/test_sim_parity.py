"""The same event sequence gives the same decisions in the simulator and in the live service.

A recorded sequence of outside-world events (arrivals, answers, abandonments, hang-ups, log-ins,
breaks...) is taken from a simulated day. It is then fed to fresh engines three ways:

1. the simulator's model (where it was recorded),
2. ``sim.kernel.drive``: the simulator's heap kernel on virtual time,
3. ``acd.service.AcdService``: the live asyncio shell, which re-arms one ``loop.call_at`` for the
   engine's next deadline, on an event loop whose clock jumps over idle time (Trio's
   ``MockClock(autojump_threshold=0)`` idea), so a simulated hour takes milliseconds.

All three must produce the same actions, in the same order, at the same instants.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from typing import Any

from acd.actions import Action
from acd.engine import AcdEngine
from acd.events import Event, Tick
from acd.service import AcdService
from sim.kernel import drive
from sim.model import run_replication
from sim.scenario import Scenario, scenario_from_dict


class _AutojumpSelector(selectors.SelectSelector):
    """A selector that, instead of sleeping ``timeout`` seconds, advances the loop's clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout > 0:
            self.now += timeout
        return super().select(0)


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _AutojumpSelector()
        super().__init__(selector=self._virtual)

    def time(self) -> float:
        return self._virtual.now


def _scenario() -> Scenario:
    return scenario_from_dict(
        {
            "simulation": {"duration_hours": 1, "warmup_hours": 0, "replications": 1, "seed": 8},
            "queues": [
                {
                    "name": "en",
                    "skills": {"en": 3},
                    "ring_timeout": 12,
                    "wrap_up_seconds": 7,
                    "announce_every": 45,
                },
                {
                    "name": "fr",
                    "strategy": "skills-best-match",
                    "skills": {"fr": 5},
                    "max_wait": 120,
                    "overflow": "queue:en",
                    "widening": [{"after_seconds": 40, "relax_levels": 2}],
                },
            ],
            "agent_groups": [
                {
                    "name": "en",
                    "count": 4,
                    "queues": ["en"],
                    "skills": {"en": 6, "fr": 3},
                    "ring_no_answer": 0.2,
                    "max_misses": 2,
                    "rona_ready_seconds": 50,
                    "answer_seconds": {
                        "distribution": "uniform",
                        "low_seconds": 0.5,
                        "high_seconds": 4,
                    },
                },
                {
                    "name": "bi",
                    "count": 2,
                    "queues": ["en", "fr"],
                    "skills": {"en": 6, "fr": 8},
                    "answer_seconds": 1.5,
                    "shift": {"start_hours": 0.1, "end_hours": 0.8},
                    "breaks": [{"at_hours": 0.4, "minutes": 5, "stagger_minutes": 3}],
                },
            ],
            "arrivals": [
                {
                    "queue": "en",
                    "rate_per_hour": 70,
                    "handle_time": {"distribution": "lognormal", "mean_seconds": 150, "cv": 0.8},
                    "patience": {"distribution": "exponential", "mean_seconds": 90},
                },
                {
                    "queue": "fr",
                    "rate_per_hour": 30,
                    "handle_time": {"distribution": "exponential", "mean_seconds": 150},
                    "patience": {"distribution": "exponential", "mean_seconds": 200},
                },
            ],
        }
    )


def _engine(sc: Scenario) -> AcdEngine:
    return AcdEngine(sc.acd, rng=random.Random(3), now=0.0, record_log=False)


def _recorded(sc: Scenario) -> tuple[list[Event], list[tuple[float, Action]]]:
    trace: list[tuple[float, Event, list[Any]]] = []
    run_replication(
        sc,
        0,
        engine_factory=lambda s, _rng: _engine(s),
        trace=trace,
    )
    events: list[Event] = [ev for _, ev, _ in trace if type(ev) is not Tick]
    actions = [(at, a) for at, _, acts in trace for a in acts]
    return events, actions


def _live(sc: Scenario, events: list[Event]) -> list[tuple[float, Action]]:
    loop = _VirtualTimeLoop()
    out: list[tuple[float, Action]] = []
    try:
        service = AcdService(
            _engine(sc),
            on_action=lambda a: out.append((loop.time(), a)),
            clock=loop.time,
            loop=loop,
        )
        for ev in events:
            loop.call_at(ev.at, service.handle, ev)
        end = events[-1].at + 600.0
        loop.run_until_complete(asyncio.sleep(end))
        service.close()
    finally:
        loop.close()
    return out


def test_recorded_sequence_same_decisions_in_kernel_and_live_service() -> None:
    sc = _scenario()
    events, simulated = _recorded(sc)
    assert len(events) > 200
    kinds = {type(e).__name__ for e in events}
    assert {"CallArrived", "OfferAnswered", "CallEnded", "CallAbandoned", "AgentPaused",
            "AgentReady", "AgentLoggedIn", "AgentLoggedOut"} <= kinds  # fmt: skip
    end = events[-1].at + 600.0
    kernel = drive(_engine(sc), events, until=end)
    live = _live(sc, events)
    # the model stops once every caller has left; compare what it saw
    assert kernel[: len(simulated)] == simulated
    assert [a for _, a in live] == [a for _, a in kernel]
    assert [round(t, 9) for t, _ in live] == [round(t, 9) for t, _ in kernel]
    action_kinds = {type(a).__name__ for _, a in kernel}
    assert {"OfferCall", "BridgeCall", "CancelOffer", "AnnouncePosition"} <= action_kinds


def test_drive_fires_deadlines_between_events() -> None:
    sc = _scenario()
    events, _ = _recorded(sc)
    ticks: list[float] = []

    def spy(at: float, ev: Event, actions: list[Action]) -> None:
        if isinstance(ev, Tick):
            ticks.append(at)

    drive(_engine(sc), events[:50], on_actions=spy)
    assert ticks == sorted(ticks) and ticks
