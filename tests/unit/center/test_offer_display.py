"""What an agent's SIP phone shows for each offer: the queue, what it is, and who.

The center asks the Telephony port to ring with a display name (``sales: +33612345678``);
a message or a callback request says so (``sales: message ...``, ``sales: callback ...``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from center_harness import CenterHarness, until

from hotline.center.offers import offer_display
from hotline.center.waiting import QueueItem


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[CenterHarness]:
    harness = CenterHarness(tmp_path)
    yield harness
    await harness.close()


async def test_a_call_rings_with_the_queue_and_the_callers_number(h: CenterHarness) -> None:
    h.telephony.phone("alice")
    await h.start()
    caller = h.caller(caller="+33612345678")
    await h.call(caller)
    await until(lambda: caller.bridged_to is not None, "the caller bridged to alice")
    assert h.telephony.displays == ["sales: +33612345678"]
    caller.remote_hangup()
    await h.finished(caller)


async def test_a_message_rings_as_a_message(h: CenterHarness) -> None:
    await h.start()
    caller = h.caller(caller="+8613900000001", dialled="3000")
    await h.call(caller, kind="voicemail", target="sales")
    await h.finished(caller)
    phone = h.telephony.phone("alice", keys=["#"])
    h.center.presence_changed("alice", True)
    await until(lambda: bool(phone.legs), "the message offered to alice")
    assert h.telephony.displays == ["sales: message +8613900000001"]


async def test_a_callback_request_rings_as_a_callback(h: CenterHarness) -> None:
    await h.start()
    caller = h.caller(caller="+8613900000001")
    await h.call(caller)
    await h.advance(10)
    caller.press("2")
    await h.finished(caller)
    phone = h.telephony.phone("alice", keys=["#"])
    h.center.presence_changed("alice", True)
    await until(lambda: bool(phone.legs), "the callback request offered to alice")
    assert h.telephony.displays == ["sales: callback +8613900000001"]


def test_an_unknown_caller_shows_the_queue_alone() -> None:
    item = QueueItem(call_id="c", case_id=1, queue="support", enqueued_at=0.0, caller="")
    assert offer_display(item) == "support"
    item.kind = "voicemail"
    assert offer_display(item) == "support: message"
