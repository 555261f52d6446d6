"""``hotline load``'s agents and queued work (a caller's message, a callback request).

The service offers queued work to an agent's phone like a call, its From's display name saying
what it is (``sales: message 7700000012``). The generator's agents take it (refusing it had the
engine offer it to every agent in turn and pause each for ring-no-answer: bench.load's steps
after the first message lost most of their agents), and the three counts still agree: the
engine counts the delivery as a call taken and answered in its queue, the caller's case says
voicemail.
"""

from __future__ import annotations

from sim.load.agents import is_work, work_queue
from sim.load.service import Snapshot, agreement, case_outcome


def test_queued_work_is_told_from_a_caller_by_the_display_name() -> None:
    assert is_work('"sales: message 7700000012" <sip:7700000012@127.0.0.1>;tag=a')
    assert is_work('"support: callback +33612345678" <sip:hotline@127.0.0.1>;tag=b')
    assert not is_work('"sales: 7700000012" <sip:7700000012@127.0.0.1>;tag=c')
    assert not is_work("<sip:7700000012@127.0.0.1>;tag=d")
    assert not is_work("not a name-addr <")
    assert work_queue('"complaints: message 7700000003" <sip:x@127.0.0.1>') == "complaints"


def _case(call_id: str, *kinds: tuple[str, dict[str, object]]) -> dict[str, object]:
    return {"id": 1, "call_id": call_id, "events": [{"kind": k, "data": d} for k, d in kinds]}


def test_a_message_left_then_delivered_is_a_voicemail_case() -> None:
    case = _case(
        "c1",
        ("queued", {"queue": "sales"}),
        ("voicemail_left", {"queue": "sales"}),
        ("queued", {"queue": "sales", "kind": "voicemail"}),
        ("answered", {"agent": "sales3"}),
    )
    assert case_outcome(case) == ("voicemail", "sales")


def test_the_counts_agree_with_the_work_the_agents_took() -> None:
    calls = [
        {"i": 0, "call_id": "c0", "queue": "sales", "queued_at": 1.0, "outcome": "answered",
         "sip_status": 200},
        {"i": 1, "call_id": "c1", "queue": "sales", "queued_at": 1.0, "outcome": "voicemail",
         "sip_status": 200},
    ]  # fmt: skip
    before = Snapshot({"sales": dict.fromkeys(("offered", "answered", "abandoned",
                                                "voicemail"), 0.0)}, {"sales3": 0})  # fmt: skip
    after = Snapshot(
        {"sales": {"offered": 2.0, "answered": 2.0, "abandoned": 0.0, "voicemail": 1.0}},
        {"sales3": 2},
    )
    cases = [
        _case("c0", ("queued", {"queue": "sales"}), ("answered", {})),
        _case("c1", ("queued", {"queue": "sales"}), ("voicemail_left", {}),
              ("queued", {"queue": "sales", "kind": "voicemail"}), ("answered", {})),
    ]  # fmt: skip
    got = agreement(calls, before, after, cases, work_taken={"sales": 1})
    assert got["agree"], got
    assert got["work_taken"] == 1
    # without the work taken, the engine's extra answer is a disagreement
    assert not agreement(calls, before, after, cases)["agree"]
