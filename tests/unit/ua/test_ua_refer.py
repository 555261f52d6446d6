"""Transfers a phone asks for with REFER: blind to a colleague, or attended with Replaces."""

from __future__ import annotations

from urllib.parse import quote

from harness import Phone, ServiceProbe, UaHarness

from media_gateway.session import CallSession
from media_gateway.sip import events as ev
from media_gateway.sip.dialog import CallHandle

UA_URI = "127.0.0.1:5060"


def bridge_to(h: UaHarness, user: str) -> ServiceProbe:
    """A service that answers, calls ``user``'s phone and bridges the caller to it."""

    async def body(session: CallSession) -> None:
        other = await h.ua.originate(user, ring_timeout=2.0, caller=session.caller)
        assert other is not None
        await session.bridge(other)

    return ServiceProbe(body=body)


async def caller_with_alice(
    h: UaHarness,
) -> tuple[Phone, CallHandle, Phone, CallHandle, CallSession]:
    """bob calls 100, which rings alice; alice answers: bob <-> alice, bridged."""
    alice = h.registered_phone("alice", ("127.0.0.3", 5062))
    probe = bridge_to(h, "alice")
    h.serve("100", probe)
    bob = h.phone("bob", ("127.0.0.2", 5062))
    bob_call = bob.call("100")
    await h.until(lambda: alice.incoming())
    alice_call = alice.incoming()[0].call
    alice.answer(alice_call)
    await h.until(lambda: probe.sessions and probe.session.bridged_to is not None)
    assert bob.final_status(bob_call) == 200
    return bob, bob_call, alice, alice_call, probe.session


def is_up(phone: Phone, call: CallHandle) -> bool:
    return not phone.for_call(call, ev.CallEnded)


async def test_blind_refer_rings_the_colleague_and_notifies_the_referrer(
    ua_h: UaHarness,
) -> None:
    carol = ua_h.registered_phone("carol", ("127.0.0.4", 5062))
    bob, bob_call, alice, alice_call, bob_session = await caller_with_alice(ua_h)
    alice_session = bob_session.bridged_to
    assert alice_session is not None

    assert alice.refer(alice_call, f"sip:carol@{UA_URI}") == 202
    await ua_h.until(lambda: carol.incoming())
    (ring,) = carol.incoming()
    assert ring.request.uri == carol.uri
    carol.answer(ring.call)
    await ua_h.until(lambda: alice.notifies and not is_up(alice, alice_call))

    (frag,) = alice.notifies
    assert frag.startswith(b"SIP/2.0 200")
    (notify,) = alice.requests("NOTIFY")
    assert notify.headers.get("Event") == "refer"
    assert (notify.headers.get("Content-Type") or "").startswith("message/sipfrag")
    assert alice.for_call(alice_call, ev.CallEnded)[0].by == "remote"  # we sent the BYE
    assert alice_session.state == "ended"
    carol_session = bob_session.bridged_to
    assert carol_session is not None and carol_session.direction == "outbound"
    assert carol_session.bridged_to is bob_session
    assert is_up(bob, bob_call) and is_up(carol, ring.call)
    await ua_h.settle()
    assert len(ua_h.ua.calls) == 2  # bob's call and carol's: alice's is gone
    assert ua_h.rtp_endpoints() == 2

    bob.bye(bob_call)
    await ua_h.until(lambda: bob_session.state == "ended")


async def test_attended_refer_with_replaces_joins_the_other_two(ua_h: UaHarness) -> None:
    carol = ua_h.registered_phone("carol", ("127.0.0.4", 5062))
    bob, bob_call, alice, alice_call, bob_session = await caller_with_alice(ua_h)
    consult_probe = bridge_to(ua_h, "carol")
    ua_h.serve("1002", consult_probe)
    consult_call = alice.call("1002")  # alice's consultation call to carol
    await ua_h.until(lambda: carol.incoming())
    (carol_ring,) = carol.incoming()
    carol.answer(carol_ring.call)
    await ua_h.until(
        lambda: consult_probe.sessions and consult_probe.session.bridged_to is not None
    )
    consult_session = consult_probe.session
    carol_session = consult_session.bridged_to
    assert carol_session is not None

    dialog = consult_call.dialog
    assert dialog is not None
    replaces = f"{consult_call.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"
    refer_to = f"sip:carol@{UA_URI}?Replaces={quote(replaces, safe='')}"
    assert alice.refer(alice_call, refer_to) == 202
    await ua_h.until(
        lambda: alice.notifies and not is_up(alice, alice_call) and not is_up(alice, consult_call)
    )
    assert alice.notifies[0].startswith(b"SIP/2.0 200")
    assert carol_session.bridged_to is bob_session
    assert bob_session.bridged_to is carol_session
    assert consult_session.state == "ended"
    assert len(carol.incoming()) == 1  # carol was not rung again: her call was joined
    assert is_up(bob, bob_call) and is_up(carol, carol_ring.call)
    await ua_h.settle()
    assert len(ua_h.ua.calls) == 2 and ua_h.rtp_endpoints() == 2


async def test_refer_outside_a_bridge_is_603(ua_h: UaHarness) -> None:
    probe = ServiceProbe()
    ua_h.serve("100", probe)
    bob = ua_h.phone("bob")
    call = bob.call("100")
    await ua_h.until(lambda: bob.final_status(call) == 200)
    assert bob.refer(call, f"sip:carol@{UA_URI}") == 603
    assert is_up(bob, call) and probe.session.state == "answered"


async def test_refer_to_an_unknown_user_notifies_failure_and_keeps_the_call(
    ua_h: UaHarness,
) -> None:
    bob, bob_call, alice, alice_call, bob_session = await caller_with_alice(ua_h)
    assert alice.refer(alice_call, f"sip:nobody@{UA_URI}") == 202
    await ua_h.until(lambda: alice.notifies, within=1.0)
    assert alice.notifies[0].startswith(b"SIP/2.0 503")
    assert is_up(alice, alice_call) and is_up(bob, bob_call)
    assert bob_session.bridged_to is not None
