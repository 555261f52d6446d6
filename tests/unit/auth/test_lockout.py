"""The brute-force lockout (media_gateway/sip/lockout.py) on a clock the test moves."""

from __future__ import annotations

import pytest

from media_gateway.sip.lockout import Locked, Lockout, LockoutPolicy

POLICY = LockoutPolicy(
    max_failures=3,
    lockout_seconds=300.0,
    source_max_failures=10,
    window_seconds=900.0,
    slow_after=1,
    delay_seconds=0.25,
    max_delay_seconds=1.0,
)


def lockout() -> tuple[Lockout, list[Locked]]:
    heard: list[Locked] = []
    return Lockout(POLICY, on_lock=heard.append), heard


def test_an_account_is_locked_after_n_failures_and_released_after_the_configured_time() -> None:
    lk, heard = lockout()
    for i in range(2):
        verdict = lk.failed("alice", "10.0.0.1", 100.0 + i, channel="http")
        assert not verdict.locked
        assert not lk.check("alice", "10.0.0.1", 100.0 + i).locked
    third = lk.failed("alice", "10.0.0.1", 102.0, channel="http")
    assert third.locked and third.scope == "account"
    check = lk.check("alice", "10.0.0.9", 103.0)  # from anywhere: the account is locked
    assert check.locked and check.scope == "account" and check.retry_after == pytest.approx(299.0)
    assert len(heard) == 1 and (heard[0].scope, heard[0].key) == ("account", "alice")
    assert heard[0].channel == "http" and heard[0].until == 402.0
    # still locked one moment before the end, free at the end, and the count starts again
    assert lk.check("alice", "10.0.0.1", 401.9).locked
    assert not lk.check("alice", "10.0.0.1", 402.0).locked
    assert not lk.failed("alice", "10.0.0.1", 403.0).locked
    assert not lk.failed("alice", "10.0.0.1", 404.0).locked
    assert lk.failed("alice", "10.0.0.1", 405.0).locked


def test_an_unknown_name_locks_exactly_like_a_real_one() -> None:
    """The lockout knows nothing of which names exist: both get the same verdicts."""
    lk, _ = lockout()
    for name, source in (("alice", "10.0.0.1"), ("nobody-here", "10.0.0.2")):
        verdicts = [lk.failed(name, source, 10.0 + i) for i in range(4)]
        assert [(v.locked, v.delay) for v in verdicts] == [
            (False, 0.0),
            (False, 0.25),
            (True, 0.5),
            (True, 1.0),
        ]
        assert lk.check(name, source, 20.0).retry_after == pytest.approx(292.0)


def test_attempts_while_locked_do_not_extend_the_lock_nor_log_again() -> None:
    lk, heard = lockout()
    for i in range(3):
        lk.failed("bob", "", float(i))
    for t in range(3, 300, 10):
        lk.failed("bob", "", float(t))
    assert len(heard) == 1
    assert lk.check("bob", "", 301.9).locked
    assert not lk.check("bob", "", 302.0).locked


def test_one_address_trying_many_names_is_locked_as_a_source() -> None:
    lk, heard = lockout()
    for i in range(10):
        lk.failed(f"user{i}", "203.0.113.7", float(i))
    verdict = lk.check("somebody-else", "203.0.113.7", 11.0)
    assert verdict.locked and verdict.scope == "source"
    assert not lk.check("somebody-else", "203.0.113.8", 11.0).locked
    assert [(h.scope, h.key) for h in heard] == [("source", "203.0.113.7")]


def test_a_success_clears_the_account_count_but_not_the_source_count() -> None:
    lk, _ = lockout()
    lk.failed("carol", "10.0.0.1", 1.0)
    lk.failed("carol", "10.0.0.1", 2.0)
    lk.succeeded("carol", "10.0.0.1", 3.0)
    lk.failed("carol", "10.0.0.1", 4.0)
    lk.failed("carol", "10.0.0.1", 5.0)
    assert not lk.check("carol", "10.0.0.1", 6.0).locked  # 2 since the success, not 4
    for i in range(6):  # the source had 4; 6 more reach its limit of 10
        lk.failed(f"x{i}", "10.0.0.1", 7.0 + i)
    assert lk.check("dave", "10.0.0.1", 20.0).scope == "source"


def test_old_failures_are_forgotten_after_the_window() -> None:
    lk, _ = lockout()
    lk.failed("dave", "", 0.0)
    lk.failed("dave", "", 1.0)
    assert not lk.failed("dave", "", 1000.0).locked  # 999 s later: a fresh count of 1
    assert not lk.failed("dave", "", 1001.0).locked
    assert lk.failed("dave", "", 1002.0).locked


def test_failed_answers_are_slowed_down_before_the_lock_up_to_a_cap() -> None:
    lk = Lockout(LockoutPolicy(max_failures=50, slow_after=2, max_delay_seconds=2.0))
    delays = [lk.failed("eve", "", float(i)).delay for i in range(8)]
    assert delays == [0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_the_table_stays_bounded_and_forgets_unlocked_counts_first() -> None:
    lk = Lockout(LockoutPolicy(max_failures=5), max_tracked=10)
    for i in range(5):
        lk.failed("victim", "", float(i))
    for i in range(100):  # a spray of names, one guess each
        lk.failed(f"spray{i}", "", 10.0 + i)
    assert len(lk._counts) <= 10
    assert lk.check("victim", "", 200.0).locked  # the lock outlived the spray


def test_a_policy_must_make_sense() -> None:
    with pytest.raises(ValueError):
        LockoutPolicy(max_failures=0)
    with pytest.raises(ValueError):
        LockoutPolicy(lockout_seconds=0)
