"""The live event stream's core (hotline/center/feed.py) on its own: numbering, resuming from
the ring, ``reset`` instead of a silent skip, filtering by role, slow readers dropped without
holding up the publisher; and a hypothesis state machine over any interleaving of publishing,
reading, disconnecting and resuming. Then the center's publishers on a scripted center: what
alice, bob and a supervisor each see of one call."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acd.cases import NewCase
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import AgentLoggedIn, CallArrived, Event, OfferAnswered
from hotline.center.feed import (
    SUPERVISORS,
    Audience,
    CenterEvents,
    EventFeed,
    FeedClosed,
    FeedEvent,
    Subscription,
    Viewer,
)
from tests.unit.center.center_harness import CenterHarness, until

SUPERVISOR = Viewer("sam", everything=True)
ALICE = Viewer("alice", queues=frozenset({"sales"}))
BOB = Viewer("bob", queues=frozenset({"support"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


def drain(sub: Subscription) -> list[FeedEvent]:
    out = []
    while (event := sub.poll()) is not None:
        out.append(event)
    return out


def seqs(events: list[FeedEvent]) -> list[int]:
    return [e.seq for e in events]


def to(agent: str) -> Audience:
    return Audience(agents=frozenset({agent}))


def members(queue: str) -> Audience:
    return Audience(queues=frozenset({queue}))


# -- the feed ----------------------------------------------------------------------------------


def test_events_are_numbered_from_one_and_carry_time_kind_and_data() -> None:
    clock = Clock()
    feed = EventFeed(clock=clock)
    a = feed.publish("agent_state", {"agent": "alice", "state": "idle"}, to("alice"))
    clock.now += 1.5
    b = feed.publish("queue", {"queue": "sales", "waiting": 1}, members("sales"))
    assert (a.seq, b.seq, feed.head) == (1, 2, 2)
    assert b.message() == {
        "seq": 2,
        "at": "2026-05-28T20:26:41.500000Z",
        "kind": "queue",
        "data": {"queue": "sales", "waiting": 1},
    }
    assert b.text() == (
        '{"seq":2,"at":"2026-05-28T20:26:41.500000Z","kind":"queue",'
        '"data":{"queue":"sales","waiting":1}}'
    )


def test_a_resume_gets_every_missed_event_in_order_once() -> None:
    feed = EventFeed(clock=Clock())
    sub = feed.subscribe(SUPERVISOR)
    assert (sub.reason, sub.reset, sub.start) == ("new", True, 0)
    for i in range(3):
        feed.publish("e", {"i": i})
    got = drain(sub)
    assert seqs(got) == [1, 2, 3]
    sub.close()
    for i in range(3, 7):
        feed.publish("e", {"i": i})
    again = feed.subscribe(SUPERVISOR, after=got[-1].seq, stream=feed.stream)
    assert (again.reason, again.reset, again.start) == ("resumed", False, 3)
    feed.publish("e", {"i": 7})  # live events follow the replay
    assert seqs(drain(again)) == [4, 5, 6, 7, 8]


def test_a_resume_the_ring_no_longer_covers_is_a_reset_not_a_skip() -> None:
    feed = EventFeed(clock=Clock(), capacity=4)
    for i in range(10):
        feed.publish("e", {"i": i})
    assert (feed.oldest, feed.head) == (7, 10)
    assert feed.subscribe(SUPERVISOR, after=6).reason == "resumed"  # 7..10 are held
    late = feed.subscribe(SUPERVISOR, after=5)  # 6 is gone
    assert (late.reason, late.reset, late.start) == ("too_old", True, 10)
    assert drain(late) == []
    feed.publish("e", {})
    assert seqs(drain(late)) == [11]
    assert feed.subscribe(SUPERVISOR, after=99).reason == "ahead"  # another process's number
    assert feed.subscribe(SUPERVISOR, after=8, stream="elsewhere").reason == "other_stream"


def test_each_viewer_gets_only_what_they_may_see() -> None:
    feed = EventFeed(clock=Clock())
    subs = {v.user: feed.subscribe(v) for v in (SUPERVISOR, ALICE, BOB)}
    feed.publish("offer", {"agent": "alice", "caller": "+4930111"}, to("alice"))
    feed.publish("agent_state", {"agent": "bob"}, to("bob"))
    feed.publish("queue", {"queue": "sales"}, members("sales"))
    feed.publish("call_queued", {"queue": "sales"}, SUPERVISORS)
    feed.publish("case", {"case_id": 1}, Audience(agents=frozenset({"alice", "bob"})))
    assert seqs(drain(subs["sam"])) == [1, 2, 3, 4, 5]
    assert seqs(drain(subs["alice"])) == [1, 3, 5]
    assert seqs(drain(subs["bob"])) == [2, 5]


def test_a_slow_reader_is_dropped_with_a_reason_and_can_catch_up() -> None:
    feed = EventFeed(clock=Clock(), max_pending=3)
    slow = feed.subscribe(SUPERVISOR)
    fast = feed.subscribe(SUPERVISOR)
    feed.publish("e", {})
    assert seqs(drain(fast)) == [1]
    assert slow.poll() is not None  # took seq 1, then stops reading
    for _ in range(4):
        feed.publish("e", {})  # never blocks: the 4th finds slow's queue full
        drain(fast)
    assert slow.closed == "slow_consumer"
    assert feed.subscribers == 1
    with pytest.raises(FeedClosed) as ended:
        slow.poll()
    assert ended.value.reason == "slow_consumer"
    assert slow.position == 1  # the pending events were dropped, not delivered
    back = feed.subscribe(SUPERVISOR, after=slow.position, stream=feed.stream)
    assert back.reason == "resumed"
    assert seqs(drain(back)) == [2, 3, 4, 5]
    assert fast.closed is None


def test_a_filtered_readers_position_keeps_up_with_the_head() -> None:
    """An agent who saw nothing for a while resumes from the head, not from their last event,
    so a quiet agent is not sent a needless reset."""
    feed = EventFeed(clock=Clock(), capacity=5)
    sub = feed.subscribe(BOB)
    for _ in range(20):
        feed.publish("e", {}, to("alice"))
    assert drain(sub) == []
    assert sub.position == 20
    sub.close()
    assert feed.subscribe(BOB, after=20).reason == "resumed"


async def test_next_waits_for_an_event_or_times_out() -> None:
    feed = EventFeed(clock=Clock())
    sub = feed.subscribe(ALICE)
    assert await sub.next(0.01) is None
    loop = asyncio.get_running_loop()
    loop.call_soon(feed.publish, "offer", {}, to("alice"))
    event = await sub.next(5)
    assert event is not None and event.seq == 1
    loop.call_soon(feed.close)
    with pytest.raises(FeedClosed) as ended:
        await sub.next(5)
    assert ended.value.reason == "shutdown"


def test_polling_pages_through_the_ring() -> None:
    feed = EventFeed(clock=Clock(), capacity=50)
    for i in range(30):
        feed.publish("e", {}, to("alice") if i % 3 == 0 else to("bob"))  # alice: 1, 4, ... 28
    start, page, position, more = feed.since(ALICE, 0, limit=4)
    assert (start, seqs(page), position, more) == ("resumed", [1, 4, 7, 10], 10, True)
    start, page, position, more = feed.since(ALICE, position, limit=100)
    assert (start, seqs(page), position, more) == ("resumed", [13, 16, 19, 22, 25, 28], 30, False)
    start, page, position, more = feed.since(ALICE, None, limit=2)  # the latest two
    assert (start, seqs(page), position, more) == ("new", [25, 28], 30, False)
    for _ in range(50):
        feed.publish("e", {})
    assert feed.since(ALICE, position, limit=10) == ("resumed", [], 80, False)  # 31..80 held
    feed.publish("e", {})
    assert feed.since(ALICE, position, limit=10) == ("too_old", [], 81, False)


# -- any interleaving --------------------------------------------------------------------------

AUDIENCES = st.sampled_from(
    [SUPERVISORS, to("alice"), to("bob"), members("sales"), members("support"), to("carol")]
)


class Reader:
    """A client as the model sees it: what it got since its current start."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.sub: Subscription | None = None
        self.start = 0
        self.got: list[int] = []
        self.last: int | None = None
        """The position it would resume after (None: never connected)."""


class FeedMachine(RuleBasedStateMachine):
    """Readers connect, read some, drop or get dropped, resume; whatever the order, each
    reader's events since its start are exactly the events it may see, in order, once, and a
    start other than a resume happens only when the ring no longer holds what it missed."""

    @initialize(capacity=st.integers(1, 8), max_pending=st.integers(1, 6))
    def setup(self, capacity: int, max_pending: int) -> None:
        self.feed = EventFeed(clock=Clock(), capacity=capacity, max_pending=max_pending)
        self.published: list[FeedEvent] = []
        self.readers = [Reader(v) for v in (SUPERVISOR, ALICE, BOB)]

    def expected(self, reader: Reader, upto: int) -> list[int]:
        return [
            e.seq for e in self.published if reader.start < e.seq <= upto and reader.viewer.sees(e)
        ]

    @rule(audience=AUDIENCES)
    def publish(self, audience: Audience) -> None:
        self.published.append(self.feed.publish("e", {}, audience))

    @rule(i=st.integers(0, 2), resume=st.booleans())
    def connect(self, i: int, resume: bool) -> None:
        r = self.readers[i]
        if r.sub is not None and r.sub.closed is None:
            return
        after = r.last if resume else None
        sub = self.feed.subscribe(r.viewer, after=after, stream=self.feed.stream)
        if after is None:
            assert sub.reason == "new"
        else:
            assert after <= self.feed.head
            lost = after < self.feed.head - self.feed.capacity  # the ring held `capacity`
            assert sub.reason == ("too_old" if lost else "resumed")
        if sub.reset:
            r.start, r.got = sub.start, []
        r.sub = sub
        # A client resumes after the last position it saw: a fresh stream's start counts
        # (hypothesis found the model resuming from a closed stream's older position).
        r.last = sub.position

    @rule(i=st.integers(0, 2), n=st.integers(1, 10))
    def read(self, i: int, n: int) -> None:
        r = self.readers[i]
        if r.sub is None:
            return
        for _ in range(n):
            try:
                event = r.sub.poll()
            except FeedClosed as closed:
                assert closed.reason in ("slow_consumer", "closed")
                break
            if event is None:
                break
            r.got.append(event.seq)
        r.last = r.sub.position

    @rule(i=st.integers(0, 2))
    def disconnect(self, i: int) -> None:
        r = self.readers[i]
        if r.sub is not None:
            r.sub.close()
            r.last = r.sub.position

    @precondition(lambda self: hasattr(self, "feed"))
    @invariant()
    def each_reader_has_exactly_its_filtered_sequence(self) -> None:
        for r in self.readers:
            if r.sub is None:
                continue
            upto = r.sub.position
            assert r.got == self.expected(r, upto), (r.viewer.user, r.start, upto)
            if r.sub.closed is None:
                pending = r.sub.pending
                assert pending == len(self.expected(r, self.feed.head)) - len(r.got)
                assert pending <= self.feed.capacity + self.feed.max_pending


TestFeedMachine = FeedMachine.TestCase
TestFeedMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


# -- what the center publishes -----------------------------------------------------------------

ACD = {
    "queues": {"sales": {"ring_timeout": 20}, "support": {}},
    "agents": {"alice": {"queues": ["sales"]}, "bob": {"queues": ["support"]}},
}


async def test_engine_records_go_to_the_agent_concerned_and_queue_summaries_to_members() -> None:
    clock = Clock()
    engine = AcdEngine(AcdConfig.from_dict(ACD), rng=random.Random(0), now=clock())
    feed = EventFeed(clock=clock)
    events = CenterEvents(feed, engine)
    subs = {
        v.user: feed.subscribe(events.viewer(v.user, everything=v.everything))
        for v in (SUPERVISOR, ALICE, BOB)
    }
    assert subs["alice"].viewer.queues == frozenset({"sales"})

    def handle(ev: Event) -> None:
        engine.handle(ev)
        events.engine_log(engine.drain_log())

    handle(AgentLoggedIn(at=clock(), agent_id="alice"))
    handle(AgentLoggedIn(at=clock(), agent_id="bob"))
    handle(CallArrived(at=clock(), call_id="c1", queue="sales", caller="+4930111"))
    handle(OfferAnswered(at=clock() + 2, call_id="c1", agent_id="alice"))
    await asyncio.sleep(0)  # the queue summaries: once per loop turn
    kinds = {
        u: [(e.kind, e.data.get("agent") or e.data.get("queue")) for e in drain(s)]
        for u, s in subs.items()
    }
    assert ("call_offered", "alice") in kinds["alice"]
    assert ("call_answered", "alice") in kinds["alice"]
    assert not any(agent == "bob" for _, agent in kinds["alice"])
    assert ("call_queued", "sales") not in kinds["alice"]  # supervisors: per-call queue records
    assert [k for k in kinds["alice"] if k[0] == "queue"] == [("queue", "sales")]
    assert kinds["bob"] == [("agent_state", "bob"), ("queue", "support")]
    assert ("call_queued", "sales") in kinds["sam"]
    assert {k for k in kinds["sam"] if k[0] == "queue"} == {
        ("queue", "sales"),
        ("queue", "support"),
    }
    state = events.state(subs["alice"].viewer)
    assert list(state["queues"]) == ["sales"] and list(state["agents"]) == ["alice"]
    assert state["agents"]["alice"]["state"] == "on_call"
    assert set(events.state(SUPERVISOR)["agents"]) == {"alice", "bob"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[CenterHarness]:
    harness = CenterHarness(tmp_path)
    yield harness
    await harness.close()


async def test_one_call_as_alice_bob_and_a_supervisor_see_it(h: CenterHarness) -> None:
    h.telephony.phone("alice", "busy")  # the first offer rings out, the second is answered
    h.telephony.phone("bob")  # bob serves sales too
    h.telephony.phones["bob"].reachable = False  # bob has no phone: never offered
    await h.start()
    feed, events = h.center.feed, h.center.events
    sam = feed.subscribe(events.viewer("sam", everything=True))
    alice = feed.subscribe(events.viewer("alice", everything=False))
    bob = feed.subscribe(events.viewer("bob", everything=False))
    caller = h.caller(caller="+4930111")
    await h.call(caller, kind="hotline", target="main")
    caller.press("1")  # the IVR menu: sales
    await until(lambda: "moh" in caller.heard, "music once alice's phone rang out")
    await h.advance(31)  # alice's no-answer delay is over: she is rung again and answers
    await until(lambda: caller.bridged_to is not None, "the caller bridged to alice")
    caller.remote_hangup()
    await h.finished(caller)
    case_id = int(caller.vars["case_id"])

    got_alice = drain(alice)
    offers = [e.data for e in got_alice if e.kind == "offer"]
    states = [o["state"] for o in offers]  # each offer rings, then ends once
    assert states[0::2] == ["ringing"] * (len(states) // 2)
    assert states[1::2][:-1] == ["timed_out"] * (len(states) // 2 - 1)
    assert states[-1] == "answered"
    ringing = offers[0]
    assert (ringing["caller"], ringing["queue"], ringing["case_id"]) == (
        "+4930111",
        "sales",
        case_id,
    )
    assert ringing["ivr"] == [{"node": "menu", "digits": "1", "to": "sales"}]
    case_events = [e.data["event"] for e in got_alice if e.kind == "case"]
    assert "answered" in case_events and "hung_up" in case_events
    assert "opened" not in case_events  # before alice had anything to do with it
    assert all(e.data.get("agent") in (None, "alice") for e in got_alice if e.kind != "case")

    got_bob = drain(bob)
    assert not [e for e in got_bob if e.kind in ("offer", "case")]
    assert not [e for e in got_bob if e.data.get("agent") == "alice"]
    assert not [e for e in got_bob if "+4930111" in e.text()]

    got_sam = drain(sam)
    assert {e.seq for e in got_alice} | {e.seq for e in got_bob} <= {e.seq for e in got_sam}
    sam_kinds = {e.kind for e in got_sam}
    assert {"offer", "case", "call_queued", "call_answered", "agent_state", "queue"} <= sam_kinds
    assert [e.data["event"] for e in got_sam if e.kind == "case"][:2] == ["opened", "entered"]


async def test_case_changes_by_people_reach_the_old_and_the_new_owner(h: CenterHarness) -> None:
    await h.start()
    feed, events = h.center.feed, h.center.events
    alice = feed.subscribe(events.viewer("alice", everything=False))
    bob = feed.subscribe(events.viewer("bob", everything=False))
    new = NewCase(caller_number="+4930222", at=h.clock.now)
    case = await h.center.writer.run(lambda store: store.open_case(new))
    await h.center.cases.change(case.id, {"owner": "alice"}, actor="sam")
    await h.center.cases.add_note(case.id, "alice", "called back, no answer")
    await h.center.cases.change(case.id, {"owner": "bob"}, actor="sam")
    got_alice = [(e.data["event"], e.data["data"].get("owner")) for e in drain(alice)]
    got_bob = [(e.data["event"], e.data["data"].get("owner")) for e in drain(bob)]
    assert got_alice == [("changed", "alice"), ("note", None), ("changed", "bob")]
    assert got_bob == [("changed", "bob")]


async def test_statistics_ticks_go_to_each_queues_members_while_somebody_reads(
    h: CenterHarness,
) -> None:
    h.telephony.phone("alice")
    await h.start()
    feed, events = h.center.feed, h.center.events
    ticks = asyncio.get_running_loop().create_task(
        events.stats_ticks(h.center.stats_view.snapshot, every=0.01)
    )
    try:
        await asyncio.sleep(0.05)
        assert "stats" not in {e.kind for e in feed.since(SUPERVISOR, None, limit=100)[1]}
        sam = feed.subscribe(events.viewer("sam", everything=True))
        alice = feed.subscribe(events.viewer("alice", everything=False))
        outsider = feed.subscribe(Viewer("carol", queues=frozenset({"support"})))
        await until(lambda: sam.pending >= 2, "a statistics tick")
    finally:
        ticks.cancel()
    got_sam = [e.data for e in drain(sam) if e.kind == "stats"]
    got_alice = [e.data for e in drain(alice) if e.kind == "stats"]
    assert [d["queue"] for d in got_sam[:2]] == ["sales", None]
    assert got_sam[0]["agents"]["ready"] == 1 and "today" in got_sam[0]  # alice's phone is up
    assert set(got_sam[1]) == {"queue", "day", "timezone", "today"}
    assert got_alice and all(d["queue"] == "sales" for d in got_alice)
    assert drain(outsider) == []
