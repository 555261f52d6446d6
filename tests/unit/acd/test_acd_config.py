"""Configuration validation: errors name the key path."""

from __future__ import annotations

import pytest

from acd.config import AcdConfig, ConfigError, Membership, WideningStep


def test_full_example_parses() -> None:
    cfg = AcdConfig.from_dict(
        {
            "agent_defaults": {"no_answer_delay_seconds": 2},
            "queues": {
                "sales": {
                    "strategy": "weighted",
                    "weights": {"skill": 2, "idle": 1},
                    "skills": {"fr": 5},
                    "groups": ["tier1"],
                    "widening": [
                        {"after_seconds": 30, "relax_levels": 2, "add_groups": ["backup"]}
                    ],
                    "max_len": 50,
                    "max_wait": 300,
                    "overflow": "queue:support",
                    "when_no_agents": "refuse",
                    "ring_timeout": 15,
                    "wrap_up_seconds": 10,
                    "announce_every": 60,
                    "service_level_seconds": 30,
                    "short_abandon_seconds": 4,
                },
                "support": {"overflow": "voicemail"},
            },
            "agents": {
                "a17": {
                    "name": "Ana",
                    "skills": {"fr": 7},
                    "groups": ["tier1"],
                    "queues": {"sales": {"penalty": 1, "position": 3}},
                    "max_misses": 2,
                    "wrap_up_seconds": 5,
                    "priority": 5,
                },
                "a18": {"queues": ["support"], "no_answer_delay_seconds": 9},
            },
        }
    )
    s = cfg.queues["sales"]
    assert s.widening == (WideningStep(after_seconds=30, relax_levels=2, add_groups=("backup",)),)
    assert s.when_no_agents == "refuse" and s.overflow == "queue:support"
    a = cfg.agents["a17"]
    assert a.queues["sales"] == Membership(penalty=1, position=3)
    assert a.no_answer_delay_seconds == 2  # from agent_defaults
    assert cfg.agents["a18"].no_answer_delay_seconds == 9
    assert cfg.agents["a18"].queues == {"support": Membership()}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"queues": {"sales": {"max_wait": -5}}},
            "acd.queues.sales.max_wait: expected seconds > 0, got -5",
        ),
        (
            {"queues": {"sales": {"strategy": "psychic"}}},
            "acd.queues.sales.strategy: unknown strategy",
        ),
        (
            {"queues": {"sales": {"overflow": "queue:nowhere"}}},
            "acd.queues.sales.overflow: expected",
        ),
        (
            {"queues": {"sales": {"overflow": "queue:sales"}}},
            "acd.queues.sales.overflow: a queue cannot",
        ),
        (
            {"queues": {"sales": {"skills": {"fr": 11}}}},
            "acd.queues.sales.skills.fr: expected a skill level 1-10, got 11",
        ),
        ({"queues": {"sales": {"when_no_agents": "wait"}}}, "acd.queues.sales.when_no_agents"),
        ({"queues": {"sales": {"colour": "red"}}}, "acd.queues.sales.colour: unknown key"),
        (
            {"queues": {"sales": {"weights": {"luck": 1}}}},
            "acd.queues.sales.weights.luck: unknown key",
        ),
        (
            {"queues": {"s": {"widening": [{"after_seconds": 60}, {"after_seconds": 30}]}}},
            "acd.queues.s.widening: steps must be sorted",
        ),
        (
            {"queues": {"s": {"widening": [{"relax_levels": 1}]}}},
            "acd.queues.s.widening[0].after_seconds: is required",
        ),
        ({"agents": {"a1": {"queues": ["nope"]}}}, "acd.agents.a1.queues.nope: unknown queue"),
        ({"agents": {"a1": {"priority": 11}}}, "acd.agents.a1.priority"),
        ({"agents": {"a1": {"max_misses": True}}}, "acd.agents.a1.max_misses: expected an integer"),
        ({"queues": []}, "acd.queues: expected a table"),
    ],
)
def test_errors_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        AcdConfig.from_dict(table)
    assert str(err.value).startswith(message)


def test_with_queue_and_agent_copies() -> None:
    cfg = AcdConfig.from_dict({"queues": {"q": {}}})
    cfg2 = cfg.with_queue(cfg.queues["q"].__class__(name="r"))
    assert set(cfg2.queues) == {"q", "r"} and set(cfg.queues) == {"q"}
