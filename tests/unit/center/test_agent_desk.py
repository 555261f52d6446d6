"""The agents' desk on a real ContactCenter and ACD engine (scripted sessions, no SIP): state
changes, the call in hand (hold, mute, keys, transfers, hang-up), skills, tasks; every change
goes through the engine and every action on a call lands in its case."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acd.model import CallState
from hotline.center.agents import AgentDeskError
from tests.unit.center.desk_harness import DeskHarness, DeskSession, settle, until


def kinds_of(
    events: list[tuple[str, str, dict[str, object]]], kind: str
) -> list[dict[str, object]]:
    return [d for k, _, d in events if k == kind]


async def connected(h: DeskHarness, agent: str = "alice") -> tuple[DeskSession, DeskSession]:
    """A caller in sales, answered by ``agent``: (caller, agent leg)."""
    caller = h.caller()
    await h.call(caller)
    await until(lambda: agent in h.center.agents._calls, f"{agent} talks to the caller")
    (leg,) = [leg for leg in h.legs(agent) if leg.state != "ended"]
    assert caller.bridged_to is leg
    return caller, leg


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[DeskHarness]:
    harness = DeskHarness(tmp_path)
    yield harness
    await harness.close()


def state(h: DeskHarness, agent: str = "alice") -> tuple[str, str, str]:
    v = h.center.agents.view(agent)
    return v.status, v.state, v.reason


# -- state -----------------------------------------------------------------------------------


async def test_pause_with_a_configured_reason_then_ready_gets_the_waiting_call(
    h: DeskHarness,
) -> None:
    await h.start("alice")
    desk = h.center.agents
    assert state(h) == ("available", "idle", "")
    with pytest.raises(AgentDeskError) as refused:
        desk.pause("alice", "coffee", by="alice")
    assert (refused.value.status, refused.value.code) == (422, "unknown_pause_reason")
    assert desk.pause("alice", "lunch", by="alice").reason == "lunch"
    assert state(h) == ("paused", "paused", "lunch")
    caller = h.caller()
    await h.call(caller)
    assert h.telephony.rung == []  # a paused agent is not offered the call
    await h.advance(30)
    view = desk.ready("alice", by="sam")  # a supervisor sets her ready
    assert view.status == "available"
    await until(lambda: caller.bridged_to is not None, "alice takes the waiting call")
    assert h.telephony.rung == ["alice"]
    assert desk.view("alice").state == "on_call"
    assert desk.view("alice").call_id == caller.id
    assert desk.view("alice").case_id == int(caller.vars["case_id"])
    with pytest.raises(AgentDeskError) as unknown:
        desk.view("mallory")
    assert (unknown.value.status, unknown.value.code) == (404, "no_such_agent")


async def test_wrap_up_extended_then_ended_early(h: DeskHarness) -> None:
    await h.start("alice")
    desk = h.center.agents
    with pytest.raises(AgentDeskError) as idle:
        desk.end_wrap_up("alice", by="alice")
    assert (idle.value.status, idle.value.code) == (409, "not_in_wrap_up")
    caller, _ = await connected(h)
    caller.remote_hangup()
    await until(lambda: desk.view("alice").state == "wrap_up", "alice in wrap-up")
    ends = desk.view("alice").wrap_up_ends
    assert ends == h.clock.now + 30
    view = desk.extend_wrap_up("alice", 60, by="alice")
    assert view.wrap_up_ends == ends + 60
    await h.advance(45)  # past the first end: still wrapping up
    assert desk.view("alice").state == "wrap_up"
    # a caller waits meanwhile; ending the wrap-up offers it at once
    second = h.caller()
    await h.call(second)
    assert h.telephony.rung == ["alice"]
    desk.end_wrap_up("alice", by="alice")
    await until(lambda: second.bridged_to is not None, "the next call is offered at once")
    events = await h.events(caller)
    assert kinds_of(events, "wrap_up_done") == [{"agent": "alice"}]


async def test_logout_keeps_the_agent_out_until_ready_whatever_the_phone_does(
    h: DeskHarness,
) -> None:
    await h.start("alice")
    desk = h.center.agents
    view = desk.logout("alice", by="alice")
    assert (view.status, view.signed_off) == ("logged_out", True)
    h.center.presence_changed("alice", False)
    h.center.presence_changed("alice", True)  # the phone registers again: still out
    assert state(h) == ("logged_out", "logged_out", "")
    caller = h.caller()
    await h.call(caller)
    assert h.telephony.rung == []
    h.telephony.phones["alice"].reachable = False
    with pytest.raises(AgentDeskError) as no_phone:
        desk.ready("alice", by="alice")
    assert (no_phone.value.status, no_phone.value.code) == (409, "no_phone")
    h.telephony.phones["alice"].reachable = True
    assert desk.pause("alice", "training", by="alice").status == "paused"  # back, paused
    assert not desk.view("alice").signed_off
    desk.ready("alice", by="alice")
    await until(lambda: caller.bridged_to is not None, "alice takes the call")
    h.center.presence_changed("alice", False)  # presence works as before once back
    assert desk.view("alice").status == "logged_out"


async def test_skills_changed_live_route_the_waiting_call(h: DeskHarness) -> None:
    await h.start("alice")
    desk = h.center.agents
    caller = h.caller()
    await h.call(caller, queue="french")  # needs fr >= 5: alice has none
    await h.advance(5)
    assert h.telephony.rung == []
    view = await desk.set_skills("alice", {"fr": 6, "en": 3}, by="sam")
    assert dict(view.skills) == {"fr": 6, "en": 3}
    await until(lambda: caller.bridged_to is not None, "the French caller reaches alice")
    versions = await h.center.routing.versions()
    assert versions[-1].user == "sam" and "fr=6" in versions[-1].comment
    same = await desk.set_skills("alice", {"en": 3, "fr": 6}, by="sam")  # no new version
    assert dict(same.skills) == {"fr": 6, "en": 3}
    assert len(await h.center.routing.versions()) == len(versions)


# -- the call in hand --------------------------------------------------------------------------


async def test_hold_resume_mute_keys_and_hang_up_are_written_to_the_case(
    h: DeskHarness,
) -> None:
    await h.start("alice")
    desk = h.center.agents
    with pytest.raises(AgentDeskError) as none:
        desk.call("alice")
    assert (none.value.status, none.value.code) == (404, "no_call")
    caller, leg = await connected(h)
    caller.vars["customer"] = "gold"
    view = desk.call("alice")
    assert (view.call_id, view.caller, view.queue) == (caller.id, caller.caller, "sales")
    assert view.vars["customer"] == "gold"
    assert (await desk.hold("alice", by="alice")).held and caller.held
    assert not (await desk.resume("alice", by="alice")).held and not caller.held
    assert (await desk.mute("alice", True, by="alice")).muted and leg.muted
    await desk.mute("alice", True, by="alice")  # no change, nothing written
    await desk.mute("alice", False, by="sam")
    assert await desk.keys("alice", "12#", by="alice") == "caller"
    assert caller.keys_sent == ["12#"]
    await desk.hangup("alice", by="alice")
    await until(lambda: caller.state == "ended", "the caller is hung up too")
    await until(lambda: desk.view("alice").state == "wrap_up", "alice in wrap-up")
    with pytest.raises(AgentDeskError) as after:
        await desk.hold("alice", by="alice")
    assert (after.value.status, after.value.code) == (409, "no_call")
    await settle()
    events = await h.events(caller)
    controls = [(d["action"], d.get("by")) for d in kinds_of(events, "call_control")]
    assert controls == [
        ("hold", None),
        ("resume", None),
        ("mute", None),
        ("unmute", "sam"),
        ("keys", None),
        ("hangup", None),
    ]
    keys = kinds_of(events, "call_control")[4]
    assert keys["count"] == 3 and "12#" not in str(keys)  # the digits are not kept
    assert [a for k, a, _ in events if k == "hung_up"] == ["alice"]


async def test_blind_transfer_to_a_colleague(h: DeskHarness) -> None:
    await h.start("alice", "bob")
    desk = h.center.agents
    caller, leg = await connected(h, "alice")  # longest idle: alice logged in first
    with pytest.raises(AgentDeskError) as to_self:
        await desk.transfer("alice", "201", "blind", by="alice")  # her own extension
    assert to_self.value.code == "same_agent"
    with pytest.raises(AgentDeskError) as unknown:
        await desk.transfer("alice", "nobody", "blind", by="alice")
    assert (unknown.value.status, unknown.value.code) == (422, "unknown_target")
    started = await desk.transfer("alice", "202", "blind", by="alice")  # bob's extension
    assert (started.to, started.target, started.state) == ("bob", "agent", "transferring")
    await until(lambda: leg.state == "ended", "alice's leg ends at once")
    await until(lambda: caller.bridged_to is not None, "the caller reaches bob")
    (bob_leg,) = h.legs("bob")
    assert caller.bridged_to is bob_leg and caller.state != "ended"
    assert desk.view("alice").state == "wrap_up"
    assert "moh" in caller.heard  # music while bob's phone rang
    caller.remote_hangup()
    await until(lambda: bob_leg.state == "ended", "bob is hung up with the caller")
    await settle()
    events = await h.events(caller)
    assert kinds_of(events, "transferred")[-1]["to"] == "bob"
    assert kinds_of(events, "call_control")[-1]["mode"] == "blind"
    assert [(a, d.get("agent")) for k, a, d in events if k == "hung_up"] == [("caller", "bob")]


async def test_blind_transfer_unanswered_queues_the_caller_again(h: DeskHarness) -> None:
    await h.start("alice")
    h.telephony.phone("bob", "busy")  # bob's phone is there but nobody answers
    desk = h.center.agents
    h.center.agents.pause("bob", "break", by="bob")  # so the ACD does not ring him
    caller, _ = await connected(h, "alice")
    await desk.transfer("alice", "bob", "blind", by="alice")
    await until(lambda: h.center.engine.call_state(caller.id) is CallState.WAITING, "queued")
    assert h.center.engine.call_queue(caller.id) == "sales"
    await until(lambda: "please_hold" in caller.heard, "the caller is asked to hold again")
    assert caller.state != "ended"
    events = await h.events(caller)
    assert [d["action"] for d in kinds_of(events, "call_control")] == [
        "transfer",
        "transfer_failed",
    ]
    desk.end_wrap_up("alice", by="alice")  # alice is free again: the caller comes back
    await until(lambda: caller.bridged_to is not None, "alice takes the caller again")


async def test_blind_transfer_to_a_queue(h: DeskHarness) -> None:
    await h.start("alice", "carol")
    desk = h.center.agents
    caller, leg = await connected(h, "alice")
    with pytest.raises(AgentDeskError) as attended:
        await desk.transfer("alice", "support", "attended", by="alice")
    assert attended.value.code == "attended_to_queue"
    started = await desk.transfer("alice", "support", "blind", by="alice")
    assert (started.target, started.to) == ("queue", "support")
    await until(lambda: leg.state == "ended", "alice's leg ends")
    await until(lambda: caller.bridged_to is not None, "carol (support) takes the caller")
    assert caller.bridged_to is h.legs("carol")[0]
    assert desk.call("carol").queue == "support"
    case = await h.center.cases.case(int(caller.vars["case_id"]))
    assert case is not None and case.queue == "support"
    caller.remote_hangup()
    await settle()
    events = await h.events(caller)
    answered = [d["agent"] for d in kinds_of(events, "answered")]
    assert answered == ["alice", "carol"]


async def test_attended_transfer_completed(h: DeskHarness) -> None:
    await h.start("alice", "bob")
    h.center.agents.pause("bob", "break", by="bob")
    desk = h.center.agents
    caller, leg = await connected(h, "alice")
    started = await desk.transfer("alice", "bob", "attended", by="alice")
    assert started.state == "ringing"
    await until(lambda: desk.call("alice").consult is not None, "consulting")
    await until(lambda: desk.call("alice").consult.state == "talking", "bob answered")  # type: ignore[union-attr]
    (bob_leg,) = h.legs("bob")
    assert caller.held and leg.bridged_to is bob_leg and caller.bridged_to is None
    assert await desk.keys("alice", "5", by="alice") == "colleague"
    with pytest.raises(AgentDeskError) as busy:
        await desk.hold("alice", by="alice")
    assert busy.value.code == "consulting"
    await desk.complete_transfer("alice", by="alice")
    assert caller.bridged_to is bob_leg and not caller.held
    await until(lambda: leg.state == "ended", "alice leaves")
    await until(lambda: desk.view("alice").state == "wrap_up", "alice in wrap-up")
    await settle()
    assert caller.state != "ended" and bob_leg.state != "ended"
    caller.remote_hangup()
    await until(lambda: bob_leg.state == "ended", "bob is hung up with the caller")
    await settle()
    events = await h.events(caller)
    assert [d["action"] for d in kinds_of(events, "call_control")] == [
        "transfer",
        "keys",
        "transfer_completed",
    ]
    assert kinds_of(events, "transferred")[-1]["from_agent"] == "alice"


async def test_attended_transfer_cancelled_returns_to_the_caller(h: DeskHarness) -> None:
    await h.start("alice", "bob")
    h.center.agents.pause("bob", "break", by="bob")
    desk = h.center.agents
    caller, leg = await connected(h, "alice")
    await desk.transfer("alice", "bob", "attended", by="alice")
    await until(lambda: desk.call("alice").consult.state == "talking", "bob answered")  # type: ignore[union-attr]
    (bob_leg,) = h.legs("bob")
    view = await desk.cancel_transfer("alice", by="alice")
    assert view.consult is None and not view.held
    assert bob_leg.state == "ended" and caller.bridged_to is leg and not caller.held
    with pytest.raises(AgentDeskError) as nothing:
        await desk.complete_transfer("alice", by="alice")
    assert nothing.value.code == "no_transfer"
    assert desk.view("alice").state == "on_call"


async def test_the_colleague_not_answering_leaves_the_caller_held_until_resume(
    h: DeskHarness,
) -> None:
    await h.start("alice")
    h.telephony.phone("bob", "busy")
    desk = h.center.agents
    caller, leg = await connected(h, "alice")
    await desk.transfer("alice", "bob", "attended", by="alice")
    await until(lambda: desk.call("alice").consult.state == "failed", "nobody answered")  # type: ignore[union-attr]
    assert caller.held
    with pytest.raises(AgentDeskError) as not_there:
        await desk.complete_transfer("alice", by="alice")
    assert not_there.value.code == "colleague_not_connected"
    view = await desk.resume("alice", by="alice")
    assert view.consult is None and not caller.held and caller.bridged_to is leg


# -- tasks -------------------------------------------------------------------------------------


async def test_voicemail_tasks_queued_then_delivered(h: DeskHarness) -> None:
    await h.start("alice")
    desk = h.center.agents
    desk.pause("alice", "break", by="alice")
    caller = h.caller(message_seconds=2.5)
    await h.call(caller)
    caller.press("1")  # leave a message instead of waiting
    await until(lambda: any(i.kind == "voicemail" for i in h.center.waiting.values()), "queued")
    (task,) = await desk.tasks("alice")
    assert (task.kind, task.state, task.caller, task.queue) == (
        "voicemail",
        "queued",
        caller.caller,
        "sales",
    )
    assert task.duration == 2.5 and task.has_audio and task.recorded_at is not None
    assert task.case_id == int(caller.vars["case_id"])
    path = await desk.task_audio("alice", task.id)
    assert path.read_bytes().startswith(b"RIFF")
    assert await desk.tasks("carol") == []  # not her queue
    with pytest.raises(AgentDeskError) as other:
        await desk.task_audio("carol", task.id)
    assert other.value.code == "no_such_task"
    h.telephony.phones["alice"].keys = [""]  # she listens, presses nothing
    desk.ready("alice", by="alice")  # the message is delivered
    await until(lambda: any(t.state == "done" for t in desk._done.get("alice", ())), "delivered")
    (done,) = await desk.tasks("alice")
    assert (done.id, done.state, done.agent) == (task.id, "done", "alice")
    assert done.delivered_at is not None and done.finished_at is not None
    assert (await desk.task_audio("alice", task.id)) == path
