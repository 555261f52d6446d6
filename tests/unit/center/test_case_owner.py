"""Who owns a call's case: the agent who answers it, from the answer on, with the change on the
trail; the case is filed under the queue the caller waited in; abandoned calls stay unowned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from center_harness import CenterHarness, until

from acd.cases import CaseSearch


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[CenterHarness]:
    harness = CenterHarness(tmp_path)
    yield harness
    await harness.close()


async def test_the_answering_agent_owns_the_case_and_works_on_it(h: CenterHarness) -> None:
    h.telephony.phone("alice")
    await h.start()
    caller = h.caller()
    await h.call(caller)
    await until(lambda: caller.bridged_to is not None, "the caller bridged to alice")
    case_id = int(caller.vars["case_id"])
    assert h.center.cases.current_case("alice") == case_id  # her call now
    case = await h.center.cases.case(case_id)
    assert case is not None
    assert (case.owner, case.status, case.queue) == ("alice", "in_progress", "sales")

    caller.remote_hangup()
    await h.finished(caller)
    assert h.center.cases.current_case("alice") is None  # the call is over
    case = await h.center.cases.case(case_id)
    assert case is not None
    assert (case.owner, case.status) == ("alice", "in_progress")  # until someone resolves it
    trail = await h.trail(caller)
    queued = [e for e in trail if e.kind in ("queued", "queue_changed")]
    assert [e.kind for e in queued] == ["queued"]  # the event itself files it under sales
    answered = next(i for i, e in enumerate(trail) if e.kind == "answered")
    changes = [(e.kind, e.actor, e.data["from"], e.data["to"]) for e in trail[answered + 1 :][:2]]
    assert changes == [
        ("owner_changed", "alice", "", "alice"),
        ("status_changed", "alice", "open", "in_progress"),
    ]
    mine = await h.center.cases.search(CaseSearch(owner="alice", queue="sales"))
    assert [c.id for c in mine.cases] == [case_id]


async def test_a_message_delivered_to_an_agent_makes_them_the_owner(h: CenterHarness) -> None:
    await h.start()  # nobody has a phone: the caller leaves a message
    caller = h.caller()
    await h.call(caller, kind="voicemail", target="sales")
    await h.finished(caller)
    case_id = int(caller.vars["case_id"])
    case = await h.center.cases.case(case_id)
    assert case is not None and (case.owner, case.status) == ("", "open")

    phone = h.telephony.phone("bob", keys=[""])
    h.center.presence_changed("bob", True)
    await until(lambda: bool(phone.legs) and phone.legs[0].state == "ended", "delivered")
    await until(lambda: not h.center.waiting, "the message is done")
    case = await h.center.cases.case(case_id)
    assert case is not None and (case.owner, case.status) == ("bob", "in_progress")
    assert h.center.cases.current_case("bob") is None


async def test_an_abandoned_call_leaves_an_open_case_nobody_owns(h: CenterHarness) -> None:
    await h.start()
    caller = h.caller()
    await h.call(caller)
    await h.advance(5)
    caller.remote_hangup()
    await h.finished(caller)
    case = await h.center.cases.case(int(caller.vars["case_id"]))
    assert case is not None
    assert (case.owner, case.status, case.queue) == ("", "open", "sales")
    kinds = await h.kinds(caller)
    assert "owner_changed" not in kinds and kinds[-1] == "abandoned"
