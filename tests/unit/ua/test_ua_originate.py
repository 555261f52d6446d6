"""Outbound calls (``originate``): the registered phone rings, answers, or does not."""

from __future__ import annotations

import asyncio

import pytest
from harness import UaHarness

from media_gateway.sdp.session import SessionDescription
from media_gateway.sip import events as ev


async def test_originate_rings_the_registered_phone_and_answers(ua_h: UaHarness) -> None:
    other = ua_h.registered_phone("carol")  # another user's phone must stay quiet
    phone = ua_h.registered_phone("alice")
    task = asyncio.ensure_future(ua_h.ua.originate("1001", ring_timeout=2.0, caller="bob"))
    await ua_h.until(lambda: phone.incoming())
    (invite,) = phone.incoming()
    assert other.incoming() == []
    req = invite.request
    assert req.uri == phone.uri  # the binding's Contact, sent to its source address
    assert "sip:bob@" in (req.headers.get("From") or "")
    offer = SessionDescription.parse(req.body)
    assert 41000 <= offer.media[0].port <= 41999
    phone.answer(invite.call)
    session = await asyncio.wait_for(task, 2.0)
    assert session is not None
    assert (session.state, session.direction) == ("answered", "outbound")
    (record,) = ua_h.ua.calls.values()
    assert record.agent == "alice" and record.answered_at is not None
    assert ua_h.rtp_endpoints() == 1
    await session.hangup("normal")
    await ua_h.settle()
    assert phone.for_call(invite.call, ev.CallEnded)[0].by == "remote"
    assert ua_h.ua.calls == {} and ua_h.rtp_endpoints() == 0 and ua_h.media_channels() == 0


async def test_no_answer_within_ring_timeout_cancels_and_returns_none(ua_h: UaHarness) -> None:
    phone = ua_h.registered_phone("alice")
    task = asyncio.ensure_future(ua_h.ua.originate("alice", ring_timeout=0.2))
    await ua_h.until(lambda: phone.incoming())
    (invite,) = phone.incoming()
    phone.ring(invite.call)
    assert await asyncio.wait_for(task, 2.0) is None
    await ua_h.settle()
    assert phone.requests("CANCEL")
    assert phone.of(ev.CancelReceived)
    assert phone.for_call(invite.call, ev.CallEnded)[0].reason == "cancelled"
    assert ua_h.ua.calls == {}
    assert ua_h.rtp_endpoints() == 0 and ua_h.media_channels() == 0


async def test_phone_declining_returns_none(ua_h: UaHarness) -> None:
    phone = ua_h.registered_phone("alice")
    task = asyncio.ensure_future(ua_h.ua.originate("alice", ring_timeout=2.0))
    await ua_h.until(lambda: phone.incoming())
    phone.endpoint.respond(phone.incoming()[0].call, 486, now=ua_h.loop.time())
    ua_h.pump()
    assert await asyncio.wait_for(task, 2.0) is None
    await ua_h.settle()
    assert ua_h.ua.calls == {} and ua_h.rtp_endpoints() == 0


async def test_originate_to_unregistered_user_is_lookup_error(ua_h: UaHarness) -> None:
    with pytest.raises(LookupError):
        await ua_h.ua.originate("carol", ring_timeout=0.5)
    assert ua_h.ua.calls == {} and ua_h.wire.log == []


async def test_originate_to_a_name_is_value_error_and_nothing_is_sent(ua_h: UaHarness) -> None:
    with pytest.raises(ValueError):
        await ua_h.ua.originate("sip:bob@pbx.example.com", ring_timeout=0.5)
    with pytest.raises(ValueError):
        await ua_h.ua.originate("mailto:bob@example.com", ring_timeout=0.5)
    assert ua_h.ua.calls == {} and ua_h.wire.log == [] and ua_h.wire.undelivered == []


async def test_originate_to_an_ip_uri_goes_to_that_address(ua_h: UaHarness) -> None:
    phone = ua_h.phone("desk", ("127.0.0.20", 5070))
    task = asyncio.ensure_future(ua_h.ua.originate("sip:desk@127.0.0.20:5070", ring_timeout=2.0))
    await ua_h.until(lambda: phone.incoming())
    phone.answer(phone.incoming()[0].call)
    session = await asyncio.wait_for(task, 2.0)
    assert session is not None and session.state == "answered"
