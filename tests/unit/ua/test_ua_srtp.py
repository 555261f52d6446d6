"""The SRTP policy as phones and trunks see it: which offers are answered, what we offer, and
the keys the media channel gets (real local media, peer endpoints as phones)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator

import pytest
from harness import FakeTrunk, Phone, ServiceProbe, UaHarness

from media_gateway.sdp.crypto import SUITES, CryptoAttribute, offer_crypto
from media_gateway.sdp.offer_answer import answer_offer, make_offer
from media_gateway.sdp.session import SessionDescription
from media_gateway.sip import events as ev
from media_gateway.sip.dialog import CallHandle

PHONE_KEYS = {suite: bytes([i]) * 30 for i, suite in enumerate(SUITES, start=7)}


@dataclasses.dataclass(frozen=True, slots=True)
class SrtpTrunk(FakeTrunk):
    srtp: str = "required"


def srtp_offer(ip: str, port: int) -> bytes:
    return make_offer(local_ip=ip, local_port=port, crypto=offer_crypto(PHONE_KEYS)).to_bytes()


def policy(h: UaHarness, srtp: str, *, plain_sip: bool = True) -> None:
    h.ua.settings = dataclasses.replace(h.ua.settings, srtp=srtp, srtp_over_plain_sip=plain_sip)


def only_channel_keys(h: UaHarness) -> tuple[bytes, bytes] | None:
    assert h.media.server is not None
    (channel,) = h.media.server.engine.channels.values()
    if channel.srtp is None:
        return None
    return channel.srtp.keys.tx, channel.srtp.keys.rx


async def final(h: UaHarness, phone: Phone, call: CallHandle) -> ev.SipEvent:
    await h.until(lambda: phone.final_status(call) is not None)
    answered = phone.for_call(call, ev.CallAnswered)
    return answered[0] if answered else phone.for_call(call, ev.CallFailed)[0]


async def test_required_refuses_a_plain_offer_with_488_and_the_reason(ua_h: UaHarness) -> None:
    policy(ua_h, "required")
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    phone = ua_h.phone("bob")
    failed = await final(ua_h, phone, phone.call("100"))
    assert isinstance(failed, ev.CallFailed) and failed.status == 488
    assert failed.response is not None
    assert "SRTP is required" in (failed.response.headers.get("Warning") or "")
    assert probe.sessions == []
    await ua_h.settle()
    assert ua_h.ua.calls == {} and ua_h.media_channels() == 0


async def test_an_srtp_offer_is_answered_with_our_key_and_the_channel_gets_both(
    ua_h: UaHarness,
) -> None:
    policy(ua_h, "optional")
    ua_h.serve("100", ServiceProbe())
    phone = ua_h.phone("bob")
    answered = await final(ua_h, phone, phone.call("100", body=srtp_offer(phone.addr[0], 40000)))
    assert isinstance(answered, ev.CallAnswered)
    m = SessionDescription.parse(answered.sdp).media[0]
    assert m.proto == "RTP/SAVP"
    (value,) = m.attribute_values("crypto")
    ours = CryptoAttribute.parse(value)
    assert ours.suite == "AES_CM_128_HMAC_SHA1_80" and ours.key != PHONE_KEYS[ours.suite]
    await ua_h.until(lambda: only_channel_keys(ua_h) is not None)
    assert only_channel_keys(ua_h) == (ours.key, PHONE_KEYS[ours.suite])


async def test_keys_never_cross_plain_sip_unless_allowed(ua_h: UaHarness) -> None:
    policy(ua_h, "required", plain_sip=False)
    ua_h.serve("100", ServiceProbe())
    phone = ua_h.phone("bob")
    failed = await final(ua_h, phone, phone.call("100", body=srtp_offer(phone.addr[0], 40000)))
    assert isinstance(failed, ev.CallFailed) and failed.status == 488
    assert "TLS" in (failed.response.headers.get("Warning") or "")  # type: ignore[union-attr]
    # optional over plain SIP is off: an SRTP-only offer is refused, a plain one answered
    policy(ua_h, "optional", plain_sip=False)
    other = ua_h.phone("carol")
    refused = await final(ua_h, other, other.call("100", body=srtp_offer(other.addr[0], 40002)))
    assert isinstance(refused, ev.CallFailed) and refused.status == 488
    plain = ua_h.phone("dave")
    assert isinstance(await final(ua_h, plain, plain.call("100")), ev.CallAnswered)


@pytest.fixture
async def trunk_h() -> AsyncIterator[UaHarness]:
    h = await UaHarness(trunks=(SrtpTrunk(),)).start()
    try:
        yield h
    finally:
        await h.close()


async def test_a_trunk_that_requires_srtp_is_held_to_it_and_phones_are_not(
    trunk_h: UaHarness,
) -> None:
    policy(trunk_h, "off")
    trunk_h.serve("100", ServiceProbe())
    carrier = trunk_h.phone("carrier", ("127.0.0.9", 5060))
    failed = await final(trunk_h, carrier, carrier.call("+33123456789"))
    assert isinstance(failed, ev.CallFailed) and failed.status == 488
    call = carrier.call("+33123456789", body=srtp_offer("127.0.0.9", 40000))
    assert isinstance(await final(trunk_h, carrier, call), ev.CallAnswered)
    phone = trunk_h.phone("bob")
    assert isinstance(await final(trunk_h, phone, phone.call("100")), ev.CallAnswered)


async def test_calling_a_phone_that_requires_srtp_offers_rtp_savp(ua_h: UaHarness) -> None:
    policy(ua_h, "required")
    phone = ua_h.registered_phone("alice")
    task = asyncio.ensure_future(ua_h.ua.originate("1001", ring_timeout=2.0))
    await ua_h.until(lambda: phone.incoming())
    (invite,) = phone.incoming()
    offer = SessionDescription.parse(invite.request.body)
    assert offer.media[0].proto == "RTP/SAVP"
    offered = [CryptoAttribute.parse(v) for v in offer.media[0].attribute_values("crypto")]
    assert [a.suite for a in offered] == list(SUITES)
    answer = answer_offer(
        offer, local_ip=phone.addr[0], local_port=40000, srtp="required", srtp_keys=PHONE_KEYS
    )
    phone.endpoint.respond(
        invite.call,
        200,
        body=answer.to_bytes(),
        headers=[("Content-Type", "application/sdp")],
        now=ua_h.loop.time(),
    )
    ua_h.pump()
    session = await asyncio.wait_for(task, 2.0)
    assert session is not None
    chosen = offered[0]  # the phone took our first suite
    assert only_channel_keys(ua_h) == (chosen.key, PHONE_KEYS[chosen.suite])
    await session.hangup("normal")
    await ua_h.settle()


async def test_calling_a_phone_that_requires_srtp_over_plain_sip_is_refused(
    ua_h: UaHarness,
) -> None:
    policy(ua_h, "required", plain_sip=False)
    phone = ua_h.registered_phone("alice")
    with pytest.raises(ValueError, match="SRTP is required"):
        await ua_h.ua.originate("1001", ring_timeout=1.0)
    assert phone.incoming() == [] and ua_h.media_channels() == 0


def test_keys_in_the_control_protocol_are_base64_of_the_sdp_keys() -> None:
    from media_gateway.sdp.crypto import SrtpParams
    from media_gateway.sip_leg import MediaUpdate

    update = MediaUpdate(
        codec="PCMU",
        pt=0,
        te_pt=101,
        direction="sendrecv",
        remote=None,
        held=False,
        srtp=SrtpParams("AES_CM_128_HMAC_SHA1_32", local_key=b"a" * 30, remote_key=b"b" * 30),
    ).op("c1")
    assert update.srtp is not None
    assert base64.b64decode(update.srtp.tx_key) == b"a" * 30
    assert base64.b64decode(update.srtp.rx_key) == b"b" * 30


async def test_a_hold_keeps_the_keys_and_a_plain_reinvite_is_refused_when_required(
    ua_h: UaHarness,
) -> None:
    policy(ua_h, "required")
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    phone = ua_h.phone("bob")
    call = phone.call("100", body=srtp_offer(phone.addr[0], 40000))
    assert isinstance(await final(ua_h, phone, call), ev.CallAnswered)
    first = CryptoAttribute.parse(
        SessionDescription.parse(phone.answered_sdp(call)).media[0].attribute_values("crypto")[0]
    )
    assert ua_h.media.server is not None
    await ua_h.until(lambda: only_channel_keys(ua_h) is not None)
    (channel,) = ua_h.media.server.engine.channels.values()
    streams = channel.srtp
    hold = make_offer(
        local_ip=phone.addr[0],
        local_port=40000,
        direction="sendonly",
        version=1,
        crypto=offer_crypto(PHONE_KEYS),
    )
    phone.endpoint.reinvite(call, hold.to_bytes(), now=ua_h.loop.time())
    await ua_h.until(lambda: probe.session.remote_held)
    (answer,) = phone.reinvite_answers(call)
    assert answer.status == 200
    (value,) = SessionDescription.parse(answer.sdp).media[0].attribute_values("crypto")
    assert CryptoAttribute.parse(value).key == first.key  # no re-keying for a hold
    await ua_h.settle()
    assert channel.srtp is streams  # same keys: the streams (and their counters) go on
    plain = make_offer(local_ip=phone.addr[0], local_port=40000, version=2)
    phone.endpoint.reinvite(call, plain.to_bytes(), now=ua_h.loop.time())
    ua_h.pump()
    await ua_h.until(lambda: len(phone.reinvite_answers(call)) == 2)
    assert phone.reinvite_answers(call)[-1].status == 488
    assert probe.session.state == "answered" and channel.srtp is streams


async def test_a_call_through_a_trunk_that_requires_srtp_offers_rtp_savp(
    trunk_h: UaHarness,
) -> None:
    policy(trunk_h, "off")  # phones stay plain; the trunk's own policy decides
    carrier = trunk_h.phone("carrier", ("127.0.0.9", 5060))
    task = asyncio.ensure_future(trunk_h.ua.originate("+33612345678", ring_timeout=0.5))
    await trunk_h.until(lambda: carrier.incoming())
    (invite,) = carrier.incoming()
    offer = SessionDescription.parse(invite.request.body)
    assert offer.media[0].proto == "RTP/SAVP" and offer.media[0].attribute_values("crypto")
    assert await asyncio.wait_for(task, 5.0) is None  # nobody answered: cancelled
    await trunk_h.settle()
