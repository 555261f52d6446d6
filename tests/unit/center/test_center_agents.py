"""Agents coming and going: phones logging agents in, the automatic pause after missed offers
and the agent's way back."""

from __future__ import annotations

from pathlib import Path

from center_harness import CenterHarness, until


async def test_an_agent_paused_for_missed_offers_gets_calls_again_once_ready(
    tmp_path: Path,
) -> None:
    h = CenterHarness(tmp_path, max_misses=1)
    try:
        h.telephony.phone("alice", "ring")
        await h.start()
        caller = h.caller()
        await h.call(caller)
        assert h.telephony.rung == ["alice"]
        await h.advance(20)  # not answered: one miss is alice's limit, she is paused
        alice = h.center.agent_status("alice")
        assert (alice.state, alice.reason) == ("paused", "rona")
        await until(lambda: "moh" in caller.heard, "the caller waits again, with music")
        await h.advance(60)
        assert h.telephony.rung == ["alice"]  # a paused agent is not rung

        h.center.agent_ready("alice")
        assert h.center.agent_status("alice").state != "paused"
        await until(lambda: caller.bridged_to is not None, "alice takes the call")
        assert h.telephony.rung == ["alice", "alice"]
        caller.remote_hangup()
        await h.finished(caller)
    finally:
        await h.close()


async def test_agents_with_a_phone_at_start_are_logged_in_and_phones_follow_presence(
    tmp_path: Path,
) -> None:
    h = CenterHarness(tmp_path)
    try:
        h.telephony.phone("alice")
        await h.start()
        assert h.center.queue_status("sales").logged_in == 1
        h.center.presence_changed("bob", True)
        assert h.center.queue_status("sales").logged_in == 2
        h.center.presence_changed("alice", False)
        h.center.presence_changed("mallory", True)  # not an agent: ignored
        assert h.center.queue_status("sales").logged_in == 1
    finally:
        await h.close()


class RecordedMetrics:
    """The queue metrics, as (method, queue, value) rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float | str | None]] = []

    def queue_offered(self, queue: str) -> None:
        self.rows.append(("offered", queue, None))

    def queue_first_offer(self, queue: str, delay_seconds: float) -> None:
        self.rows.append(("first_offer", queue, delay_seconds))

    def queue_answered(self, queue: str, waited_seconds: float) -> None:
        self.rows.append(("answered", queue, waited_seconds))

    def queue_abandoned(self, queue: str, waited_seconds: float) -> None:
        self.rows.append(("abandoned", queue, waited_seconds))

    def queue_voicemail(self, queue: str, waited_seconds: float | None = None) -> None:
        self.rows.append(("voicemail", queue, waited_seconds))

    def offer_ended(self, queue: str, outcome: str, ring_seconds: float) -> None:
        self.rows.append((f"offer_{outcome}", queue, ring_seconds))


async def test_queue_metrics_and_statistics_follow_the_engine(tmp_path: Path) -> None:
    metrics = RecordedMetrics()
    h = CenterHarness(tmp_path, metrics=metrics)
    try:
        h.telephony.phone("alice", "ring")
        await h.start()
        await h.advance(5)
        h.telephony.phone("bob")
        h.center.presence_changed("bob", True)
        caller = h.caller()
        await h.call(caller)
        await h.advance(20)  # alice does not answer; bob does
        await until(lambda: caller.bridged_to is not None, "bridged to bob")
        caller.remote_hangup()
        await h.finished(caller)
        assert metrics.rows == [
            ("offered", "sales", None),
            ("first_offer", "sales", 0.0),
            ("offer_no_answer", "sales", 20.0),
            ("offer_answered", "sales", 0.0),
            ("answered", "sales", 20.0),
        ]
        assert h.center.stats.queues["sales"].answered == 1
        assert h.center.queue_members() == {"sales": ["alice", "bob"]}
    finally:
        await h.close()


async def test_the_ivr_asks_the_engine_about_free_agents(tmp_path: Path) -> None:
    h = CenterHarness(tmp_path)
    try:
        await h.start()
        assert h.center.agents_available("sales") == 0
        assert h.center.agents_available("nonexistent") == 0
        h.center.presence_changed("alice", True)
        assert h.center.agents_available("sales") == 1
        assert h.center.ewt_seconds("sales") == h.center.queue_status("sales").ewt_seconds
    finally:
        await h.close()
