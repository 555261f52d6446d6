"""Nothing lost on a crash (issue 11), on the real SQLite store and the real center: queued
work and live calls are kept by the store (migration 0005) and a restart on the same data
puts the work back in its callers' order and closes the calls the crash cut off; the
registrations file brings agents' phones back."""

from __future__ import annotations

import shutil
from pathlib import Path

from acd.cases import NewCase
from acd.store.sqlite import SQLiteCaseStore
from acd.store.work import StoredWork
from hotline.center.recovery import RESTART_CAUSE
from media_gateway.registrations import Registrations, RegistrationSettings
from media_gateway.sip.headers import parse_contact_list
from tests.unit.center.center_harness import CenterHarness, until


def test_the_store_keeps_work_in_arrival_order_and_live_calls_until_their_end(
    tmp_path: Path,
) -> None:
    store = SQLiteCaseStore(tmp_path / "cases.sqlite3")
    a = store.open_case(NewCase(caller_number="100", at=1.0, call_id="c-a"), live=True)
    b = store.open_case(NewCase(caller_number="200", at=2.0, call_id="c-b"), live=True)
    for call_id, case, at in (("vm-2", b, 20.0), ("cb-1", a, 10.0)):
        store.save_work(
            StoredWork(
                call_id=call_id, case_id=case.id, kind="voicemail", queue="q", enqueued_at=at
            )
        )
    assert [w.call_id for w in store.queued_work()] == ["cb-1", "vm-2"]  # by original arrival
    assert [c.call_id for c in store.live_calls()] == ["c-a", "c-b"]
    assert store.end_call(a.id) and not store.end_call(a.id)
    assert store.drop_work("cb-1") and not store.drop_work("cb-1")
    store.close()
    again = SQLiteCaseStore(tmp_path / "cases.sqlite3")  # what a restart reads
    assert [c.call_id for c in again.live_calls()] == ["c-b"]
    assert [w.call_id for w in again.queued_work()] == ["vm-2"]
    again.close()


async def test_a_restart_delivers_the_kept_messages_and_closes_the_calls_it_cut_off(
    tmp_path: Path,
) -> None:
    first = CenterHarness(tmp_path / "before")
    await first.start()  # nobody has a phone: messages wait
    early, late, waiting = first.caller(), first.caller(), first.caller()
    await first.call(early)
    await first.advance(30)
    await first.call(late)
    await first.advance(95)  # early is past the 120 s wait limit: a message
    await first.finished(early)
    await first.advance(30)  # and late too
    await first.finished(late)
    await first.call(waiting)  # a caller still on the line at the crash
    work = sorted(first.center.waiting.values(), key=lambda w: w.enqueued_at)
    messages = [w for w in work if w.kind == "voicemail"]
    assert len(messages) == 2
    await first.center.writer.flush()
    # kill -9 now: what is on disk is all a restart has (the files, copied as they are).
    shutil.copytree(tmp_path / "before" / "data", tmp_path / "after" / "data")
    waiting_case = int(waiting.vars["case_id"])

    second = CenterHarness(tmp_path / "after")
    phone = second.telephony.phone("alice", keys=["", ""])
    await second.start()
    restored = second.center.recovered
    assert [w.call_id for w in restored.restored] == [m.call_id for m in messages]
    assert [c.case_id for c in restored.closed] == [waiting_case]
    second.center.presence_changed("alice", True)
    await until(
        lambda: len(phone.legs) == 2 and all(leg.state == "ended" for leg in phone.legs),
        "both messages delivered",
        seconds=10,
    )
    # In the callers' original order, each message's own recording (from the restarted node's
    # recordings directory, where the files are now: WaitingRoom.message_file).
    here = second.center.room.recordings
    assert [leg.heard[2] for leg in phone.legs] == [
        str(here / Path(m.recording).name) for m in messages
    ]
    for m in messages:
        events = await second.trail(m.case_id)
        kinds = [e.kind for e in events]
        assert "entered" in kinds
        restored_queued = next(e for e in events if e.data.get("restored"))
        assert restored_queued.data["enqueued_at"] == m.enqueued_at
        answered = next(e for e in events if e.kind == "answered")
        assert (answered.actor, answered.data["kind"]) == ("alice", "voicemail")
        assert kinds[-1] == "hung_up"
    closed = await second.trail(waiting_case)
    assert [e.kind for e in closed][:2] == ["opened", "entered"]
    assert closed[-1].kind == "hung_up" and closed[-1].data["cause"] == RESTART_CAUSE
    await until(lambda: not second.center.waiting, "nothing left")
    await second.center.writer.flush()
    assert await second.center.writer.run(lambda s: s.queued_work()) == []
    assert await second.center.writer.run(lambda s: s.live_calls()) == []
    await second.close()
    await first.close()


def _registrations(path: Path) -> Registrations:
    regs = Registrations(RegistrationSettings(), password_for=lambda user: "pw")
    regs.state_file = path
    return regs


def test_registrations_survive_a_restart_and_expired_ones_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "registrations.json"
    before = _registrations(path)
    for user, expires, port in (("alice", 600, 5070), ("bob", 61, 5072)):
        contacts = parse_contact_list([f"<sip:{user}@127.0.0.1:{port}>"])
        reg = before.registrar.register(
            user,
            contacts,
            expires,
            f"cid-{user}",
            2,
            100.0,
            source=("127.0.0.1", port),
            transport="udp",
        )
        assert reg.status == 200
    before.save(100.0, wall=1_000_000.0)
    assert not path.with_name(f".{path.name}.tmp").exists()  # renamed over: atomic
    # A restart 120 s later (a new loop clock): bob's 61 s registration has expired.
    after = _registrations(path)
    assert after.restore(5000.0 + 120, wall=1_000_120.0) == 1
    assert after.reachable("alice", 5000.0 + 120)
    assert not after.reachable("bob", 5000.0 + 120)
    [binding] = after.contacts("alice", 5000.0 + 120)
    assert binding.source == ("127.0.0.1", 5070)
    assert 470 <= binding.expires_at - (5000.0 + 120) <= 481


async def test_a_media_process_crash_is_named_in_the_case_not_blamed_on_the_caller(
    tmp_path: Path,
) -> None:
    h = CenterHarness(tmp_path)
    await h.start()  # nobody has a phone: the caller waits
    caller = h.caller()
    await h.call(caller)
    caller._end("local", "media_lost")  # what the session does on the client's MediaLost
    await h.finished(caller)
    last = (await h.trail(caller))[-1]
    assert (last.kind, last.actor, last.data["cause"]) == ("hung_up", "system", "media_lost")
    await h.close()
