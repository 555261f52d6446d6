"""More wrap-up time (``WrapUpExtended``): the agent's wrap-up ends later, stays agent-wide, and
the waiting call is offered at the new end, not the old one."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from acd.actions import OfferCall
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    CallArrived,
    CallEnded,
    Event,
    OfferAnswered,
    Tick,
    WrapUpDone,
    WrapUpExtended,
)
from acd.model import AgentState
from tests.property.test_acd_props import AGENTS, AcdMachine


def engine(wrap: float = 30.0) -> AcdEngine:
    cfg = AcdConfig.from_dict(
        {
            "queues": {"q": {"wrap_up_seconds": wrap}, "r": {}},
            "agents": {"a1": {"queues": ["q", "r"]}},
        }
    )
    e = AcdEngine(cfg, rng=random.Random(1), now=0.0)
    e.handle(AgentLoggedIn(at=0.0, agent_id="a1"))
    return e


def talk_and_hang_up(e: AcdEngine, *, ended: float = 60.0) -> None:
    e.handle(CallArrived(at=1.0, call_id="c1", queue="q"))
    e.handle(OfferAnswered(at=2.0, call_id="c1", agent_id="a1"))
    e.handle(CallEnded(at=ended, call_id="c1"))
    assert e.agent_state("a1")[1] is AgentState.WRAP_UP
    assert e.wrap_up_ends("a1") == ended + 30.0


def offers(actions: Sequence[object]) -> list[tuple[str, str]]:
    return [(a.call_id, a.agent_id) for a in actions if isinstance(a, OfferCall)]


def test_an_extension_moves_the_end_of_wrap_up_and_the_next_offer() -> None:
    e = engine()
    talk_and_hang_up(e)
    assert e.handle(CallArrived(at=70.0, call_id="c2", queue="r")) == []  # wrap-up: agent-wide
    e.handle(WrapUpExtended(at=80.0, agent_id="a1", seconds=45.0))
    assert e.wrap_up_ends("a1") == 135.0
    assert e.next_deadline() == 135.0  # the old end (90) is no deadline any more
    assert e.handle(Tick(at=100.0)) == []
    assert e.agent_status("a1").state == "wrap_up"
    e.handle(WrapUpExtended(at=120.0, agent_id="a1", seconds=5.0))  # extensions add up
    assert e.wrap_up_ends("a1") == 140.0
    assert offers(e.handle(Tick(at=140.0))) == [("c2", "a1")]
    assert e.wrap_up_ends("a1") is None
    e.check_invariants()


def test_an_extended_wrap_up_can_still_be_ended_early() -> None:
    e = engine()
    talk_and_hang_up(e)
    e.handle(CallArrived(at=61.0, call_id="c2", queue="q"))
    e.handle(WrapUpExtended(at=62.0, agent_id="a1", seconds=300.0))
    assert offers(e.handle(WrapUpDone(at=70.0, agent_id="a1"))) == [("c2", "a1")]
    e.handle(OfferAnswered(at=71.0, call_id="c2", agent_id="a1"))
    e.handle(CallEnded(at=380.0, call_id="c2"))  # the next wrap-up: until 410
    e.handle(Tick(at=395.0))  # the extended one's timer (390) is dead: it ends nothing
    assert e.agent_status("a1").state == "wrap_up"
    assert e.wrap_up_ends("a1") == 410.0
    e.check_invariants()


@pytest.mark.parametrize("seconds", [0.0, -5.0, math.nan, math.inf])
def test_nonsense_extensions_change_nothing(seconds: float) -> None:
    e = engine()
    talk_and_hang_up(e)
    assert e.handle(WrapUpExtended(at=61.0, agent_id="a1", seconds=seconds)) == []
    assert e.wrap_up_ends("a1") == 90.0
    assert e.next_deadline() == 90.0


def test_outside_wrap_up_or_for_strangers_it_is_ignored() -> None:
    e = engine()
    ignored: list[Event] = [
        WrapUpExtended(at=1.0, agent_id="a1", seconds=30.0),  # idle
        WrapUpExtended(at=1.0, agent_id="nobody", seconds=30.0),
    ]
    for ev in ignored:
        assert e.handle(ev) == []
    assert e.wrap_up_ends("a1") is None
    assert e.next_deadline() is None
    talk_and_hang_up(e)
    e.handle(AgentLoggedOut(at=61.0, agent_id="a1"))  # logging out ends wrap-up
    assert e.handle(WrapUpExtended(at=62.0, agent_id="a1", seconds=30.0)) == []
    assert e.wrap_up_ends("a1") is None
    with pytest.raises(KeyError):
        e.wrap_up_ends("nobody")


def test_the_same_events_give_the_same_decisions() -> None:
    """Deterministic: two engines fed the same events agree step by step."""

    def run() -> list[object]:
        e = engine()
        out: list[object] = []
        events: list[Event] = [
            CallArrived(at=1.0, call_id="c1", queue="q"),
            OfferAnswered(at=2.0, call_id="c1", agent_id="a1"),
            CallArrived(at=3.0, call_id="c2", queue="q"),
            CallEnded(at=10.0, call_id="c1"),
            WrapUpExtended(at=20.0, agent_id="a1", seconds=15.0),
            Tick(at=60.0),
        ]
        for ev in events:
            out += e.handle(ev)
            out.append(e.next_deadline())
        out += e.drain_log()
        return out

    assert run() == run()


# -- the engine's invariants with extensions among every other event ----------------------------


class WrapUpMachine(AcdMachine):
    """The property tests' state machine (single assignment, no lost call, order, statistics
    against the log ...) with wrap-up extensions added to its random events."""

    @rule(agent=st.sampled_from(AGENTS), seconds=st.floats(0.5, 60))
    def wrap_up_extended(self, agent: str, seconds: float) -> None:
        ends = self.engine.wrap_up_ends(agent)
        self.feed(WrapUpExtended(at=self.t, agent_id=agent, seconds=seconds))
        after = self.engine.wrap_up_ends(agent)
        if ends is None:
            assert after is None
        elif after is not None:  # (None: the old end was due at this instant and fired first)
            assert after == max(ends, self.t) + seconds


TestWrapUpMachine = WrapUpMachine.TestCase
TestWrapUpMachine.settings = settings(
    max_examples=25,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
