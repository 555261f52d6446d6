"""Issue 11, media resources: a call holds RTP ports only while it earns them.

An answered call that never sends a single RTP packet is hung up after ``[media]
rtp_start_timeout`` (cause ``no_media``, BYE to the phone, ports freed) instead of holding its
ports for the whole 60 s ``rtp_timeout``; a caller that sends RTP, and a call not answered
yet, are left alone. One source IP holds at most ``max_calls_per_source`` calls: the next gets
503 with Retry-After, one log line per source, while another address still gets through.

Real user agent and media server on this loop (``tests/unit/ua/harness.py``), real RTP sockets.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from media_gateway.media.client import LocalMedia
from media_gateway.sip import events as ev
from media_gateway.sip.message import SipResponse
from tests.unit.ua.harness import RTP_PORTS, UA_ADDR, ServiceProbe, UaHarness


@pytest.fixture
async def harness() -> AsyncIterator[UaHarness]:
    h = UaHarness()
    h.media = LocalMedia(
        host="127.0.0.1", port_min=RTP_PORTS[0], port_max=RTP_PORTS[1], rtp_start_timeout=0.5
    )
    await h.start()
    try:
        yield h
    finally:
        await h.close()
    assert h.wire.errors == []


def _rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + b"\xff" * 160


def _media_port(sdp: bytes) -> int:
    line = next(x for x in sdp.decode().splitlines() if x.startswith("m=audio"))
    return int(line.split()[1])


async def test_an_answered_call_without_any_rtp_is_hung_up_with_no_media(
    harness: UaHarness,
) -> None:
    answered = ServiceProbe()
    harness.serve("100", answered)
    ringing = ServiceProbe(answer=False)
    harness.serve("200", ringing)
    silent = harness.phone("mallory")
    talking = harness.phone("carol")
    waiting = harness.phone("dave")

    waiting.call("200")  # rings (not answered): not watched
    await harness.until(lambda: ringing.sessions)
    talker = talking.call("100")
    await harness.until(lambda: talking.final_status(talker) == 200)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    try:
        dest = (UA_ADDR[0], _media_port(talking.answered_sdp(talker)))
        for seq in range(5):
            rtp.sendto(_rtp(seq), dest)
        talking_session = answered.session
        mute = silent.call("100")
        await harness.until(lambda: silent.final_status(mute) == 200)
        silent_session = answered.session
        assert silent_session is not talking_session
        await harness.until(lambda: silent_session.state == "ended", within=6.0)
    finally:
        rtp.close()
    assert (silent_session.ended_by, silent_session.cause) == ("local", "no_media")
    assert silent.requests("BYE"), "the silent caller is told the call is over"
    # The start timeout has passed for the caller that talked too (answered earlier): kept.
    assert talking_session.state == "answered"
    assert talking.requests("BYE") == []
    assert ringing.session.state == "ringing"
    assert harness.media_channels() == 2  # the silent call's ports are free again


async def test_one_source_holds_at_most_max_calls_per_source(harness: UaHarness) -> None:
    harness.ua.settings = dataclasses.replace(harness.ua.settings, max_calls_per_source=2)
    probe = ServiceProbe()
    harness.serve("100", probe)
    flood = harness.phone("mallory")
    caller = harness.phone("carol")

    first, second = flood.call("100"), flood.call("100")
    await harness.until(lambda: flood.final_status(first) == flood.final_status(second) == 200)
    with capture_logs() as logs:
        refused = [flood.call("100") for _ in range(3)]
        await harness.until(lambda: all(flood.final_status(c) == 503 for c in refused))
        real = caller.call("100")  # another address: connects at once
        await harness.until(lambda: caller.final_status(real) == 200)
    limited = [e for e in logs if e["event"] == "calls_per_source_limited"]
    assert len(limited) == 1, "one log line per source, not one per refused call"
    assert limited[0]["source"] == flood.addr[0]
    failed = [e for e in flood.of(ev.CallFailed) if e.status == 503]
    response = failed[0].response
    assert isinstance(response, SipResponse)
    assert response.headers.get("Retry-After")

    flood.bye(first)  # a call ends: the source may place another
    await harness.until(lambda: harness.media_channels() == 2)
    again = flood.call("100")
    await harness.until(lambda: flood.final_status(again) == 200)
