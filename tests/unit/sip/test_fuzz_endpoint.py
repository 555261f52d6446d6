"""The SIP parser and the sans-IO endpoint under mutated input (issue 11's fuzz target, short
run): for every message, a reply, a drop, or a counted parse error; never an exception.

The mutator and the endpoint sequence are bench/fuzz_sip.py's (its long run is
``python -m bench.fuzz_sip``, figures in docs/benchmarks.md); here hypothesis drives them, so a
failure shrinks to a small example. Seeds: the RFC 4475 torture messages and the project's own.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_sip import SOURCES, Case, mutate, own_seeds, rfc4475_seeds, seeds

POOL = seeds()
OUTCOMES = {"reply", "parse_error", "event", "drop"}


def test_the_seeds_are_there() -> None:
    assert len(rfc4475_seeds()) >= 40, "shared/rfc4475 is missing"
    assert len(POOL) == len(own_seeds()) + len(rfc4475_seeds())


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    rng=st.randoms(use_true_random=False),
    picks=st.lists(
        st.tuples(
            st.integers(0, len(POOL) - 1),
            st.integers(0, 5),
            st.integers(0, len(SOURCES) - 1),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_messages_get_a_reply_a_drop_or_a_counted_parse_error(
    rng: random.Random, picks: list[tuple[int, int, int]]
) -> None:
    case = Case(random.Random(rng.getrandbits(32)))
    for seed, rounds, source in picks:
        data = mutate(POOL[seed], rng, POOL, rounds)
        errors = case.ep.stats["parse_errors"]
        outcome = case.feed(data, SOURCES[source])  # an exception fails the test
        assert outcome in OUTCOMES
        if outcome == "parse_error":
            assert case.ep.stats["parse_errors"] == errors + 1


def test_every_seed_unmutated_is_handled() -> None:
    outcomes = []
    for data in POOL:
        case = Case(random.Random(1))
        outcomes.append(case.feed(data, SOURCES[0]))
    assert set(outcomes) <= OUTCOMES
    assert outcomes.count("reply") > len(POOL) // 2
