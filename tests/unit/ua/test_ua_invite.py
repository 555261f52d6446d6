"""New INVITEs as a caller's phone sees them: refusals with the right status, or an answer."""

from __future__ import annotations

from typing import Any

import pytest
from harness import FakeTrunk, ServiceProbe, UaHarness, audio_direction

from media_gateway.sdp.session import SessionDescription
from media_gateway.sip import events as ev


async def refused_with(h: UaHarness, number: str, **call_kw: Any) -> ev.CallFailed:
    phone = h.phone("bob")
    call = phone.call(number, **call_kw)
    await h.settle()
    (failed,) = phone.for_call(call, ev.CallFailed)
    assert phone.for_call(call, ev.CallAnswered) == []
    assert h.ua.calls == {}, "a refused INVITE must leave no call record"
    assert h.rtp_endpoints() == 0
    return failed


async def test_unknown_number_gets_the_routers_404(ua_h: UaHarness) -> None:
    failed = await refused_with(ua_h, "999")
    assert failed.status == 404
    assert [c.number for c in ua_h.router.asked] == ["999"]


async def test_router_refusal_is_480_temporarily_unavailable(ua_h: UaHarness) -> None:
    ua_h.refuse("200", 480)
    failed = await refused_with(ua_h, "200")
    assert (failed.status, failed.reason) == (480, "Temporarily Unavailable")


async def test_accept_without_sdp_is_406(ua_h: UaHarness) -> None:
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    failed = await refused_with(ua_h, "100", headers=[("Accept", "text/html")])
    assert failed.status == 406
    assert probe.sessions == [] and ua_h.router.asked == []


async def test_accept_listing_sdp_among_others_is_fine(ua_h: UaHarness) -> None:
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    phone = ua_h.phone("bob")
    call = phone.call("100", headers=[("Accept", "text/html, application/sdp;q=0.5")])
    await ua_h.until(lambda: phone.final_status(call) is not None)
    assert phone.final_status(call) == 200


async def test_non_sdp_body_is_415_with_accept(ua_h: UaHarness) -> None:
    ua_h.serve("100", ServiceProbe())
    failed = await refused_with(
        ua_h, "100", body=b"hello", headers=[("Content-Type", "text/plain")]
    )
    assert failed.status == 415
    assert failed.response is not None
    assert failed.response.headers.get("Accept") == "application/sdp"


async def test_bad_sdp_is_400(ua_h: UaHarness) -> None:
    ua_h.serve("100", ServiceProbe())
    failed = await refused_with(ua_h, "100", body=b"this is not SDP\r\n")
    assert failed.status == 400
    assert failed.reason.startswith("Bad SDP")


async def test_no_common_codec_is_488(ua_h: UaHarness) -> None:
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    phone = ua_h.phone("bob")
    g729_only = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    call = phone.call("100", body=g729_only)
    await ua_h.until(lambda: phone.final_status(call) is not None)
    (failed,) = phone.for_call(call, ev.CallFailed)
    assert failed.status == 488
    assert failed.response is not None
    assert "no common codec" in (failed.response.headers.get("Warning") or "")
    assert probe.sessions == []
    await ua_h.settle()
    assert ua_h.ua.calls == {}
    assert ua_h.rtp_endpoints() == 0 and ua_h.media_channels() == 0


async def test_good_invite_runs_the_service_and_200_carries_an_sdp_answer(
    ua_h: UaHarness,
) -> None:
    probe = ServiceProbe()
    ua_h.serve("100", probe, kind="hotline")
    phone = ua_h.phone("bob")
    call = phone.call("100")
    await ua_h.until(lambda: phone.final_status(call) is not None)
    assert phone.final_status(call) == 200
    session = probe.session
    assert (session.caller, session.dialled, session.direction) == ("bob", "100", "inbound")
    assert session.state == "answered" and session.channel == "sip"
    assert session.vars["callback_uri"] == f"sip:bob@{phone.addr[0]}:{phone.addr[1]}"
    (asked,) = ua_h.router.asked
    assert (asked.number, asked.route, asked.caller, asked.source) == (
        "100",
        "dialled",
        "bob",
        phone.addr,
    )
    answer = SessionDescription.parse(phone.answered_sdp(call))
    (audio,) = answer.media
    assert audio.port != 0 and 41000 <= audio.port <= 41999
    assert answer.connection is not None and answer.connection.address == "127.0.0.1"
    assert audio.formats[0] in ("0", "8")  # a G.711 codec of the offer
    assert audio_direction(phone.answered_sdp(call)) == "sendrecv"
    (record,) = ua_h.ua.calls.values()
    assert (record.entry, record.caller, record.dialled) == ("hotline", "bob", "100")
    assert ua_h.rtp_endpoints() == 1


async def test_invite_without_offer_is_answered_with_our_offer(ua_h: UaHarness) -> None:
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    phone = ua_h.phone("bob")
    call = phone.call("100", no_body=True)
    await ua_h.until(lambda: phone.final_status(call) is not None)
    assert phone.final_status(call) == 200
    offer = SessionDescription.parse(phone.answered_sdp(call))
    assert {"0", "8"} <= set(offer.media[0].formats)


async def test_unknown_uri_scheme_is_416(ua_h: UaHarness) -> None:
    ua_h.serve("100", ServiceProbe())
    phone = ua_h.phone("bob")
    call = phone.endpoint.invite(
        "mailto:help@example.org",
        ("127.0.0.1", 5060),
        from_uri=phone.uri,
        sdp=phone.offer(),
        now=ua_h.loop.time(),
    )
    ua_h.pump()
    await ua_h.settle()
    failed = phone.for_call(call, ev.CallFailed)
    assert failed and failed[0].status == 416


@pytest.mark.parametrize(
    ("dialled", "number", "route"),
    [("+33123456789", "100", "trunk:carrier"), ("+33999", "+33999", "dialled")],
)
async def test_trunk_did_is_mapped_before_routing(dialled: str, number: str, route: str) -> None:
    h = await UaHarness(trunks=(FakeTrunk(),)).start()
    try:
        probe = ServiceProbe()
        h.serve("100", probe)
        carrier = h.phone("+4930123", FakeTrunk().address)
        call = carrier.call(dialled)
        await h.until(lambda: carrier.final_status(call) is not None)
        (asked,) = h.router.asked
        assert (asked.number, asked.route, asked.caller) == (number, route, "+4930123")
        if route.startswith("trunk:"):
            assert carrier.final_status(call) == 200
            assert probe.session.dialled == "100"
            assert probe.session.vars["callback_uri"] == "+4930123"
        else:
            assert carrier.final_status(call) == 404
    finally:
        await h.close()
    assert h.wire.errors == []


async def test_same_dialled_number_from_another_address_is_not_mapped() -> None:
    h = await UaHarness(trunks=(FakeTrunk(),)).start()
    try:
        phone = h.phone("bob", ("127.0.0.10", 5060))
        phone.call("+33123456789")
        await h.settle()
        (asked,) = h.router.asked
        assert (asked.number, asked.route) == ("+33123456789", "dialled")
    finally:
        await h.close()
