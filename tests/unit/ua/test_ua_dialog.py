"""Inside an answered call: the phone's hold/unhold re-INVITEs, INFO keys, and its BYE."""

from __future__ import annotations

from harness import Phone, ServiceProbe, UaHarness, audio_direction

from media_gateway.sdp.session import SessionDescription
from media_gateway.session import CallSession, Dtmf, HoldChanged, SessionEvent
from media_gateway.sip import events as ev
from media_gateway.sip.dialog import CallHandle


async def answered_call(
    h: UaHarness, probe: ServiceProbe | None = None
) -> tuple[Phone, CallHandle, CallSession]:
    probe = probe or ServiceProbe()
    h.serve("100", probe)
    phone = h.phone("bob")
    call = phone.call("100")
    await h.until(lambda: phone.final_status(call) == 200)
    return phone, call, probe.session


def watching(seen: list[SessionEvent]) -> ServiceProbe:
    """A service that answers and records what ``session.events()`` yields."""

    async def body(session: CallSession) -> None:
        async for event in session.events():
            seen.append(event)

    return ServiceProbe(body=body)


async def test_hold_is_answered_recvonly_and_unhold_sendrecv(ua_h: UaHarness) -> None:
    seen: list[SessionEvent] = []
    phone, call, session = await answered_call(ua_h, watching(seen))
    first_answer = phone.answered_sdp(call)

    phone.reinvite(call, "sendonly", version=1)
    await ua_h.until(lambda: session.remote_held)
    (hold,) = phone.reinvite_answers(call)
    assert hold.status == 200
    assert audio_direction(hold.sdp) == "recvonly"
    assert _port(hold.sdp) == _port(first_answer)  # same RTP port (RFC 3264 §8)

    phone.reinvite(call, "sendrecv", version=2)
    await ua_h.until(lambda: not session.remote_held)
    unhold = phone.reinvite_answers(call)[-1]
    assert unhold.status == 200 and audio_direction(unhold.sdp) == "sendrecv"
    assert session.state == "answered"
    await ua_h.settle()
    assert [(e.held, e.by) for e in seen if isinstance(e, HoldChanged)] == [
        (True, "remote"),
        (False, "remote"),
    ]


async def test_reinvite_with_no_common_codec_is_488_and_the_call_stays(ua_h: UaHarness) -> None:
    phone, call, session = await answered_call(ua_h)
    body = (
        b"v=0\r\no=- 4242 3 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        b"m=audio 40002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    phone.endpoint.reinvite(call, body, now=ua_h.loop.time())
    ua_h.pump()
    await ua_h.settle()
    (answer,) = phone.reinvite_answers(call)
    assert answer.status == 488
    assert session.state == "answered" and not session.remote_held


async def test_info_keys_reach_the_session(ua_h: UaHarness) -> None:
    got: list[str] = []

    async def collect(session: CallSession) -> None:
        result = await session.collect(3, timeout=2.0, terminator="#")
        got.append(result.digits)

    phone, call, _ = await answered_call(ua_h, ServiceProbe(body=collect))
    for key in "12#":
        response = phone.info(call, key)
        assert isinstance(response, ev.ResponseReceived) and response.response.status == 200
    await ua_h.until(lambda: got)
    assert got == ["12"]


async def test_info_key_appears_in_session_events(ua_h: UaHarness) -> None:
    seen: list[SessionEvent] = []
    phone, call, _ = await answered_call(ua_h, watching(seen))
    phone.info(call, "*")
    await ua_h.until(lambda: any(isinstance(e, Dtmf) for e in seen))
    (dtmf,) = [e for e in seen if isinstance(e, Dtmf)]
    assert dtmf.digit == "*"


async def test_bye_from_the_phone_ends_the_session_without_leaks(ua_h: UaHarness) -> None:
    probe = ServiceProbe()
    phone, call, session = await answered_call(ua_h, probe)
    assert ua_h.rtp_endpoints() == 1 and ua_h.media_channels() == 1
    phone.bye(call)
    await ua_h.until(lambda: session.ended.is_set() and probe.finished.is_set())
    await ua_h.settle()
    assert session.state == "ended"
    assert (session.ended_by, session.cause) == ("remote", "answered")
    assert ua_h.ua.calls == {}
    counts = ua_h.ua.debug_counts()
    assert counts["rtp_endpoints"] == 0 and counts["gateway_calls"] == 0
    assert counts["active_calls"] == 0
    assert ua_h.media_channels() == 0  # the media channel was closed too
    assert phone.for_call(call, ev.CallEnded)[0].by == "local"


async def test_service_hanging_up_sends_bye(ua_h: UaHarness) -> None:
    async def hang_up(session: CallSession) -> None:
        await session.hangup("normal")

    phone, call, _ = await answered_call(ua_h, ServiceProbe(body=hang_up))
    await ua_h.until(lambda: phone.for_call(call, ev.CallEnded))
    assert phone.for_call(call, ev.CallEnded)[0].by == "remote"
    assert phone.requests("BYE")
    await ua_h.settle()
    assert ua_h.ua.calls == {} and ua_h.rtp_endpoints() == 0


def _port(sdp: bytes) -> int:
    return SessionDescription.parse(sdp).media[0].port
