"""The way back from the automatic (RONA) pause, and the engine's typed read API
(``queue_status`` / ``agent_status``) that the composition root and wallboards read."""

from __future__ import annotations

import random
from typing import Any

import pytest

from acd.actions import AnnouncePosition, OfferCall, PauseAgent
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReady,
    CallArrived,
    CallEnded,
    OfferAnswered,
    Tick,
)
from acd.model import AgentStatusView, QueueStatus


def engine(queues: dict[str, Any], agents: dict[str, Any]) -> AcdEngine:
    cfg = AcdConfig.from_dict({"queues": queues, "agents": agents})
    return AcdEngine(cfg, rng=random.Random(1), now=0.0)


def offers(actions: list[Any]) -> list[tuple[str, str]]:
    return [(a.call_id, a.agent_id) for a in actions if isinstance(a, OfferCall)]


def rona_paused() -> AcdEngine:
    """a1 (the only agent, ``max_misses`` 2) lets two offers ring out and is paused; c1 and c2
    wait."""
    e = engine(
        {"q": {"ring_timeout": 10}},
        {"a1": {"queues": ["q"], "max_misses": 2, "no_answer_delay_seconds": 0}},
    )
    e.handle(AgentLoggedIn(at=0.0, agent_id="a1"))
    assert offers(e.handle(CallArrived(at=1.0, call_id="c1", queue="q"))) == [("c1", "a1")]
    e.handle(CallArrived(at=2.0, call_id="c2", queue="q"))
    assert offers(e.handle(Tick(at=11.0))) == [("c1", "a1")]  # first miss: rung again
    acts = e.handle(Tick(at=21.0))  # second miss
    assert PauseAgent(agent_id="a1", reason="rona") in acts
    assert offers(acts) == []
    return e


def test_an_auto_paused_agent_stays_paused_until_ready_then_takes_the_next_call_at_once() -> None:
    e = rona_paused()
    # nothing else brings a1 back: time passing, more calls
    assert offers(e.handle(Tick(at=500.0))) == []
    assert offers(e.handle(CallArrived(at=501.0, call_id="c3", queue="q"))) == []
    st = e.agent_status("a1")
    assert (st.state, st.reason, st.since, st.routable) == ("paused", "rona", 21.0, False)
    # the "ready" button: offered the first waiting call in the same handle
    acts = e.handle(AgentReady(at=600.0, agent_id="a1"))
    assert offers(acts) == [("c1", "a1")]
    st = e.agent_status("a1")
    assert (st.state, st.reason, st.call_id, st.misses, st.since) == (
        "reserved",
        "",
        "c1",
        0,
        600.0,
    )


def test_ready_resets_the_miss_count_so_one_more_miss_does_not_pause_again() -> None:
    e = rona_paused()
    e.handle(AgentReady(at=600.0, agent_id="a1"))
    acts = e.handle(Tick(at=610.0))  # one miss after coming back
    assert not [a for a in acts if isinstance(a, PauseAgent)]
    assert offers(acts) == [("c1", "a1")]


def test_a_phone_re_registering_does_not_end_the_auto_pause() -> None:
    """``AgentLoggedIn`` of an agent already logged in (their phone registering again) changes
    nothing: the RONA pause came from that very phone ringing unanswered."""
    e = rona_paused()
    assert e.handle(AgentLoggedIn(at=30.0, agent_id="a1")) == []
    assert e.agent_status("a1").state == "paused"
    # logging out and in again (e.g. the device unregistered) starts fresh
    e.handle(AgentLoggedOut(at=40.0, agent_id="a1"))
    assert offers(e.handle(AgentLoggedIn(at=41.0, agent_id="a1"))) == [("c1", "a1")]


def test_queue_status_counts_and_expected_wait_match_the_announcement() -> None:
    e = engine(
        {
            "q": {"default_handle_seconds": 120, "announce_every": 60},
            "other": {},
        },
        {"a1": {"queues": ["q"]}, "a2": {"queues": ["q"]}, "a3": {"queues": ["other"]}},
    )
    assert e.queue_status("q") == QueueStatus(
        queue="q", waiting=0, routable=0, logged_in=0, longest_wait=0.0, ewt_seconds=120.0
    )
    e.handle(AgentLoggedIn(at=0.0, agent_id="a1"))
    e.handle(AgentLoggedIn(at=0.0, agent_id="a2"))
    assert e.queue_status("q").routable == 2
    e.handle(CallArrived(at=1.0, call_id="c1", queue="q"))  # rings a1 or a2
    e.handle(CallArrived(at=2.0, call_id="c2", queue="q"))  # rings the other
    e.handle(AgentPaused(at=3.0, agent_id="a2", reason="lunch"))  # c2's offer withdrawn
    st = e.queue_status("q")
    assert (st.waiting, st.routable, st.logged_in) == (2, 0, 2)
    assert st.longest_wait == 2.0  # c1, waiting since 1.0
    # a call joining now: position 3, one staffed agent (a1; a2 is paused)
    assert st.ewt_seconds == 3 * 120.0 / 1
    acts = e.handle(CallArrived(at=3.0, call_id="c3", queue="q"))
    announced = [a for a in acts if isinstance(a, AnnouncePosition)]
    assert [(a.position, a.ewt_seconds) for a in announced] == [(3, st.ewt_seconds)]
    assert e.queue_status("other").logged_in == 0
    with pytest.raises(KeyError):
        e.queue_status("nope")


def test_agent_status_follows_an_agent_through_a_call() -> None:
    e = engine({"q": {"wrap_up_seconds": 5}, "r": {}}, {"a1": {"queues": ["q", "r"]}})
    assert e.agent_status("a1") == AgentStatusView(
        agent_id="a1",
        state="logged_out",
        reason="",
        since=0.0,
        call_id="",
        queues=("q", "r"),
        routable=False,
        misses=0,
    )
    e.handle(AgentLoggedIn(at=1.0, agent_id="a1"))
    assert (e.agent_status("a1").state, e.agent_status("a1").since) == ("idle", 1.0)
    assert e.agent_status("a1").routable
    e.handle(CallArrived(at=2.0, call_id="c1", queue="q"))
    assert e.agent_status("a1")[1:5] == ("reserved", "", 2.0, "c1")
    e.handle(OfferAnswered(at=3.0, call_id="c1", agent_id="a1"))
    e.handle(AgentPaused(at=4.0, agent_id="a1", reason="training"))  # starts after the call
    assert e.agent_status("a1")[1:5] == ("on_call", "training", 3.0, "c1")
    e.handle(CallEnded(at=10.0, call_id="c1"))
    assert e.agent_status("a1")[1:5] == ("wrap_up", "training", 10.0, "")
    e.handle(Tick(at=15.0))
    assert e.agent_status("a1")[1:5] == ("paused", "training", 15.0, "")
    with pytest.raises(KeyError):
        e.agent_status("nobody")
