"""acd/codec.py: every event and action type survives JSON (the cluster's wire and log)."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd import actions as A
from acd import events as E
from acd.codec import (
    CodecError,
    config_to_table,
    decode_action,
    decode_event,
    encode_action,
    encode_event,
)
from acd.config import DEFAULT_PAUSE_REASONS, AcdConfig
from routing.strategy import strategy_names
from routing.weights import WEIGHT_KEYS

times = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
durations = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
ids = st.text(min_size=1, max_size=12)
words = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
skills = st.dictionaries(words, st.integers(1, 10), max_size=3)


@st.composite
def acd_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``[acd]`` table, with most keys of queues and agents drawn."""
    names = draw(st.lists(words, min_size=1, max_size=3, unique=True))
    queues: dict[str, Any] = {}
    for name in names:
        q: dict[str, Any] = {
            "strategy": draw(st.sampled_from(strategy_names())),
            "skills": draw(skills),
            "groups": draw(st.lists(words, max_size=2)),
            "priority": draw(st.integers(-5, 5)),
            "ring_timeout": draw(durations),
            "wrap_up_seconds": draw(st.sampled_from([0.0, 5.0, 12.5])),
            "when_no_agents": draw(st.sampled_from(["join", "refuse", "leave"])),
            "weights": draw(st.dictionaries(st.sampled_from(WEIGHT_KEYS), durations, max_size=2)),
            "widening": [
                {"after_seconds": t, "relax_levels": r, "add_groups": g}
                for t, r, g in sorted(
                    draw(
                        st.lists(
                            st.tuples(durations, st.integers(0, 9), st.lists(words, max_size=1)),
                            max_size=2,
                        )
                    )
                )
            ],
            "record": draw(st.booleans()),
        }
        if draw(st.booleans()):
            q["max_len"] = draw(st.integers(1, 50))
            q["max_wait"] = draw(durations)
            q["announce_every"] = draw(durations)
        others = [n for n in names if n != name]
        overflow = draw(st.sampled_from([None, "voicemail", *(f"queue:{n}" for n in others)]))
        if overflow is not None:
            q["overflow"] = overflow
        queues[name] = q
    agents: dict[str, Any] = {}
    for aid in draw(st.lists(ids, max_size=3, unique=True)):
        a: dict[str, Any] = {
            "skills": draw(skills),
            "queues": {
                n: {"penalty": draw(st.integers(0, 3)), "weight": draw(durations)}
                for n in draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
            },
            "max_misses": draw(st.integers(0, 5)),
            "priority": draw(st.integers(0, 10)),
        }
        if draw(st.booleans()):
            a["name"] = draw(ids)
            a["wrap_up_seconds"] = draw(durations)
        agents[aid] = a
    return {
        "queues": queues,
        "agents": agents,
        "max_overflow_hops": draw(st.integers(0, 9)),
        "pause_reasons": list(DEFAULT_PAUSE_REASONS),
    }


configs = acd_tables().map(AcdConfig.from_dict)

EVENT_STRATEGIES: list[st.SearchStrategy[Any]] = [
    st.builds(
        E.CallArrived,
        at=times,
        call_id=ids,
        queue=words,
        priority=st.integers(-(2**40), 2**40),
        skills=skills,
        caller=st.text(max_size=20),
        data=st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3),
        enqueued_at=st.none() | times,
        kind=st.sampled_from(["call", "voicemail", "callback"]),
    ),
    st.builds(E.CallAbandoned, at=times, call_id=ids),
    st.builds(E.CallEnded, at=times, call_id=ids),
    st.builds(E.AgentLoggedIn, at=times, agent_id=ids, paused_reason=st.none() | words),
    st.builds(E.AgentLoggedOut, at=times, agent_id=ids),
    st.builds(E.AgentReady, at=times, agent_id=ids),
    st.builds(E.AgentPaused, at=times, agent_id=ids, reason=words),
    st.builds(E.OfferAnswered, at=times, call_id=ids, agent_id=ids),
    st.builds(E.OfferRejected, at=times, call_id=ids, agent_id=ids),
    st.builds(E.OfferTimedOut, at=times, call_id=ids, agent_id=ids),
    st.builds(E.OfferFailed, at=times, call_id=ids, agent_id=ids, reason=words),
    st.builds(E.WrapUpDone, at=times, agent_id=ids),
    st.builds(E.WrapUpExtended, at=times, agent_id=ids, seconds=durations),
    st.builds(E.ConfigChanged, at=times, config=configs),
    st.builds(E.ConfigRolledBack, at=times, version=st.integers(1, 1000)),
    st.builds(E.Tick, at=times),
]
events: st.SearchStrategy[E.Event] = st.one_of(EVENT_STRATEGIES)

reasons = st.sampled_from(["max_wait", "no_agents", "queue_full"])
ACTION_STRATEGIES: list[st.SearchStrategy[Any]] = [
    st.builds(A.OfferCall, call_id=ids, agent_id=ids, queue=words, ring_timeout=durations),
    st.builds(
        A.CancelOffer, call_id=ids, agent_id=ids, reason=st.sampled_from(get_args(A.CancelReason))
    ),
    st.builds(A.BridgeCall, call_id=ids, agent_id=ids, queue=words),
    st.builds(
        A.RefuseAnswer,
        call_id=ids,
        agent_id=ids,
        reason=st.sampled_from(["already_answered", "offer_withdrawn"]),
    ),
    st.builds(A.SendToVoicemail, call_id=ids, queue=words, reason=reasons),
    st.builds(A.Overflow, call_id=ids, from_queue=words, to_queue=words, reason=reasons),
    st.builds(
        A.RejectCall, call_id=ids, queue=words, reason=st.sampled_from(get_args(A.RejectReason))
    ),
    st.builds(
        A.AnnouncePosition,
        call_id=ids,
        queue=words,
        position=st.integers(1, 999),
        ewt_seconds=times,
    ),
    st.builds(A.PauseAgent, agent_id=ids, reason=words),
]
actions: st.SearchStrategy[A.Action] = st.one_of(ACTION_STRATEGIES)


@settings(max_examples=1, deadline=None)
@given(st.data())
def test_the_strategies_cover_every_type(data: st.DataObject) -> None:
    """A new event or action type must be added to these strategies too."""
    assert {type(data.draw(s)) for s in EVENT_STRATEGIES} == set(get_args(E.Event))
    assert {type(data.draw(s)) for s in ACTION_STRATEGIES} == set(get_args(A.Action))


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_event_round_trips(event: E.Event) -> None:
    text = encode_event(event)
    assert decode_event(text) == event
    assert json.loads(text)["type"] == type(event).__name__


@settings(max_examples=200, deadline=None)
@given(actions)
def test_every_action_round_trips(action: A.Action) -> None:
    assert decode_action(encode_action(action)) == action


@settings(max_examples=100, deadline=None)
@given(configs)
def test_a_configuration_round_trips_through_its_table(config: AcdConfig) -> None:
    table = json.loads(json.dumps(config_to_table(config)))
    assert AcdConfig.from_dict(table) == config


def test_the_demo_configuration_round_trips() -> None:
    from hotline.config import load_config

    cfg = load_config(None).acd
    assert AcdConfig.from_dict(config_to_table(cfg)) == cfg


def test_unknown_or_malformed_messages_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="unknown event type"):
        decode_event('{"type": "Explode", "at": 1}')
    with pytest.raises(CodecError, match="bad CallEnded"):
        decode_event('{"type": "CallEnded", "at": 1}')
    with pytest.raises(CodecError, match="unknown action type"):
        decode_action('{"type": "OfferCall2"}')
    with pytest.raises(CodecError, match="JSON object"):
        decode_event("[1, 2]")
    with pytest.raises(ValueError):  # jsonb has no NaN: refused on the way out
        encode_event(E.Tick(at=float("nan")))
