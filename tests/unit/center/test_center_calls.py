"""The contact center on a scripted phone system: what callers hear and wait, which agents
ring, what lands in the case, and the one log line each call leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from center_harness import CenterHarness, FakeSession, until
from structlog.testing import capture_logs


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[CenterHarness]:
    harness = CenterHarness(tmp_path)
    yield harness
    await harness.close()


def call_line(logs: Sequence[MutableMapping[str, Any]], session: FakeSession) -> Mapping[str, Any]:
    """The canonical ``call_handled`` line of one call (exactly one)."""
    lines = [e for e in logs if e["event"] == "call_handled" and e["call_id"] == session.id]
    assert len(lines) == 1, lines
    return lines[0]


async def test_a_free_agent_rings_at_once_and_the_case_tells_the_story(
    h: CenterHarness,
) -> None:
    h.telephony.phone("alice")
    await h.start()
    arrival = h.clock.now
    caller = h.caller()
    with capture_logs() as logs:
        await h.call(caller)
        await until(lambda: caller.bridged_to is not None, "the caller bridged to alice")
        # Rung at once: no "please hold" (nor music) before the agent's phone rang.
        assert h.telephony.rung == ["alice"]
        assert caller.heard == []
        agent_leg = h.telephony.phones["alice"].legs[0]
        assert caller.bridged_to is agent_leg
        h.clock.now += 95  # they talk
        caller.remote_hangup()
        await h.finished(caller)
    assert agent_leg.state == "ended"  # the agent's leg goes with the caller
    events = await h.trail(caller)
    assert [e.kind for e in events] == [
        "opened",
        "entered",
        "queued",
        "offered",
        "answered",
        "owner_changed",
        "status_changed",
        "hung_up",
    ]
    answered = events[4]
    assert answered.actor == "alice"
    assert answered.data["owner"] == "alice"
    assert answered.data["waited"] == 0
    assert [(e.actor, e.data["to"]) for e in events[5:7]] == [
        ("alice", "alice"),
        ("alice", "in_progress"),
    ]
    assert events[7].actor == "caller"
    line = call_line(logs, caller)
    assert line["outcome"] == "answered"
    assert (line["agent"], line["queue"], line["entry"]) == ("alice", "sales", "queue")
    assert line["case_id"] == int(caller.vars["case_id"])
    assert line["waited"] == 0
    assert line["talk"] == 95
    assert h.clock.now - arrival == 95
    assert h.center.waiting == {}


async def test_an_unanswered_agent_is_passed_over_for_the_next(h: CenterHarness) -> None:
    h.telephony.phone("alice", "ring")
    await h.start()
    await h.advance(5)  # alice has been idle longest: she is rung first
    h.telephony.phone("bob")
    h.center.presence_changed("bob", True)
    caller = h.caller()
    await h.call(caller)
    assert h.telephony.rung == ["alice"]
    await h.advance(20)  # alice's ring timeout
    await until(lambda: caller.bridged_to is not None, "the caller bridged to bob")
    assert h.telephony.rung == ["alice", "bob"]
    assert caller.bridged_to is h.telephony.phones["bob"].legs[0]
    caller.remote_hangup()
    await h.finished(caller)
    trail = [
        (e.kind, e.data.get("agent"))
        for e in await h.trail(caller)
        if e.kind in ("offered", "rona", "answered")
    ]
    assert trail == [
        ("offered", "alice"),
        ("rona", "alice"),
        ("offered", "bob"),
        ("answered", "bob"),
    ]


async def test_nobody_free_within_the_wait_limit_leaves_a_message_for_the_next_agent(
    h: CenterHarness,
) -> None:
    await h.start()  # nobody has a phone
    arrival = h.clock.now
    caller = h.caller()
    with capture_logs() as logs:
        await h.call(caller)
        assert caller.heard == ["please_hold", "moh"]
        await h.advance(121)  # past the queue's max_wait of 120 s: overflow to voicemail
        await h.finished(caller)
    assert caller.heard[2:] == ["voicemail_intro", "beep", "voicemail_saved"]
    assert call_line(logs, caller)["outcome"] == "voicemail"
    # The message waits in the queue in the caller's place.
    [work] = h.center.waiting.values()
    assert (work.kind, work.enqueued_at, work.queue) == ("voicemail", arrival, "sales")
    assert h.center.queue_status("sales").waiting == 1
    kinds = await h.kinds(caller)
    assert kinds[-4:] == ["transferred", "voicemail_left", "queued", "hung_up"]

    # The next agent who logs in gets it: the message is played, then the callback offer.
    phone = h.telephony.phone("alice", keys=[""])
    h.center.presence_changed("alice", True)
    await until(lambda: bool(phone.legs) and phone.legs[0].state == "ended", "delivered")
    leg = phone.legs[0]
    assert leg.heard[:2] == ["agent_voicemail", "beep"]
    assert leg.heard[2] == work.recording
    assert "agent_callback" in leg.heard
    await until(lambda: not h.center.waiting, "the message is done")
    events = await h.trail(caller)
    answered = next(e for e in events if e.kind == "answered")
    assert (answered.actor, answered.data["kind"]) == ("alice", "voicemail")
    assert events[-1].kind == "hung_up"
    assert h.center.queue_status("sales").waiting == 0


async def test_key_1_while_waiting_leaves_a_message_that_keeps_the_callers_place(
    h: CenterHarness,
) -> None:
    await h.start()
    arrival = h.clock.now
    first, second = h.caller(), h.caller(caller="+8613900000002")
    with capture_logs() as logs:
        await h.call(first)
        await h.advance(10)
        await h.call(second)
        await h.advance(20)
        first.press("1")
        await h.finished(first)
    assert "voicemail_saved" in first.heard
    assert call_line(logs, first)["outcome"] == "voicemail"
    work = next(w for w in h.center.waiting.values() if w.kind == "voicemail")
    assert work.enqueued_at == arrival
    assert h.center.queue_status("sales").waiting == 2  # the message and the second caller

    # The message was first in the queue, so it goes ahead of the caller who came later.
    h.telephony.phone("alice", "ring")
    h.center.presence_changed("alice", True)
    await until(lambda: h.telephony.rung == ["alice"], "alice rung")
    assert "offered" in await h.kinds(first)
    assert "offered" not in await h.kinds(second)


async def test_key_2_while_waiting_books_a_callback_and_the_agent_calls_back(
    h: CenterHarness,
) -> None:
    await h.start()
    arrival = h.clock.now
    caller = h.caller(caller="+8613900000001")
    with capture_logs() as logs:
        await h.call(caller)
        await h.advance(10)
        caller.press("2")
        await h.finished(caller)
    assert caller.heard[-1] == "callback_confirmed"
    assert call_line(logs, caller)["outcome"] == "callback"
    [work] = h.center.waiting.values()
    assert (work.kind, work.enqueued_at, work.callback) == ("callback", arrival, "+8613900000001")
    notes = [e.data["text"] for e in await h.trail(caller) if e.kind == "note"]
    assert notes == ["callback requested"]

    phone = h.telephony.phone("alice", keys=["1"])  # 1 = call the customer back
    h.center.presence_changed("alice", True)
    await until(lambda: bool(phone.legs) and phone.legs[0].transfers != [], "called back")
    assert phone.legs[0].transfers == ["+8613900000001"]
    assert "agent_callback_request" in phone.legs[0].heard
    phone.legs[0].remote_hangup()
    await until(lambda: not h.center.waiting, "the callback is done")
    events = await h.trail(caller)
    back = next(e for e in events if e.kind == "transferred" and e.data.get("kind") == "callback")
    assert (back.actor, back.data["ok"]) == ("alice", True)


async def test_a_caller_who_hangs_up_while_waiting_is_an_abandon(h: CenterHarness) -> None:
    await h.start()
    caller = h.caller()
    with capture_logs() as logs:
        await h.call(caller)
        assert h.center.queue_status("sales").waiting == 1
        await h.advance(42)
        caller.remote_hangup()
        await h.finished(caller)
    assert h.center.waiting == {}
    assert h.center.queue_status("sales").waiting == 0  # the engine was told
    events = await h.trail(caller)
    assert events[-1].kind == "abandoned"
    assert events[-1].data["waited"] == 42
    line = call_line(logs, caller)
    assert (line["outcome"], line["waited"], line["agent"]) == ("abandoned", 42, "")


async def test_a_caller_who_hangs_up_in_the_ivr_is_logged_as_an_ivr_hangup(
    h: CenterHarness,
) -> None:
    await h.start()
    caller = h.caller()
    with capture_logs() as logs:
        await h.call(caller, kind="hotline", target="")
        assert caller.heard == ["main_menu"]
        caller.remote_hangup()
        await h.finished(caller)
    line = call_line(logs, caller)
    assert (line["outcome"], line["entry"], line["queue"]) == ("ivr_hangup", "hotline", "")
    events = await h.trail(caller)
    assert (events[-1].kind, events[-1].data["stage"]) == ("hung_up", "ivr")
    assert h.center.queue_status("sales").waiting == 0


async def test_the_ivr_hands_the_caller_to_the_queue_it_chose(h: CenterHarness) -> None:
    h.telephony.phone("bob")
    await h.start()
    caller = h.caller()
    caller.press("1")  # type-ahead: "sales" before the menu is over
    await h.call(caller, kind="hotline", target="")
    await until(lambda: caller.bridged_to is not None, "bridged to bob")
    caller.remote_hangup()
    await h.finished(caller)
    kinds = await h.kinds(caller)
    assert kinds[:4] == ["opened", "entered", "ivr_input", "queued"]


async def test_a_busy_phone_goes_back_to_the_engine_and_the_caller_keeps_waiting(
    h: CenterHarness,
) -> None:
    h.telephony.phone("alice", "fail")
    await h.start()
    caller = h.caller()
    await h.call(caller)
    await until(lambda: "moh" in caller.heard, "music once nobody is rung")
    assert h.telephony.rung == ["alice"]
    assert caller.heard == ["please_hold", "moh"]
    assert h.center.queue_status("sales").waiting == 1
    await h.advance(31)  # alice's busy delay is over: she is rung again and answers
    await until(lambda: caller.bridged_to is not None, "bridged to alice")
    assert h.telephony.rung == ["alice", "alice"]


async def test_a_voicemail_entry_point_records_and_queues_the_message(h: CenterHarness) -> None:
    await h.start()
    caller = h.caller(dialled="3000")
    with capture_logs() as logs:
        await h.call(caller, kind="voicemail", target="sales")
        await h.finished(caller)
    assert caller.heard == ["voicemail_intro", "beep", "voicemail_saved"]
    assert caller.state == "ended"
    line = call_line(logs, caller)
    assert (line["outcome"], line["entry"], line["dialled"]) == ("voicemail", "voicemail", "3000")
    [work] = h.center.waiting.values()
    assert work.kind == "voicemail"


async def test_a_call_for_a_queue_the_engine_refuses_hears_all_busy(h: CenterHarness) -> None:
    await h.start()
    caller = h.caller()
    with capture_logs() as logs:
        await h.call(caller, kind="queue", target="no-such-queue")
        await h.finished(caller)
    assert caller.heard == ["all_busy", "goodbye"]
    assert call_line(logs, caller)["outcome"] == "rejected"
    assert h.center.waiting == {}
    hung_up = [e for e in await h.trail(caller) if e.kind == "hung_up"]
    assert hung_up[0].data["reason"] == "rejected:unknown_queue"
