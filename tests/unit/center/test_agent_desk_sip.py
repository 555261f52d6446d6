"""The agents' desk on real SIP legs: the contact center on a real ``SipUserAgent`` (the UA
harness's in-memory wire, real local media), phones as peer SIP endpoints. Hold and resume are
re-INVITEs to the caller's phone (sendonly, then sendrecv) with music meanwhile; mute is the
media engine's; a blind transfer to a colleague's extension ends the agent's dialog with a BYE,
rings the colleague and joins the caller to them, media included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotline.center import ContactCenter
from hotline.config import parse_config
from media_gateway.session import CallSession
from media_gateway.sip import events as ev
from tests.unit.ua.harness import Phone, UaHarness, audio_direction

SITE = """
[server]
data_dir = "{data}"

[media]
process = false

[[agents]]
id = "alice"
password = "wonderland"
extension = "1001"
queues = ["sales"]

[[agents]]
id = "carol"
password = "c4rol-pw"
extension = "1002"
queues = ["sales"]

[entry_points]
"2000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"
wrap_up_seconds = 30
"""


class UaTelephony:
    """What the composition root gives the center (``hotline.server._Telephony``)."""

    def __init__(self, h: UaHarness) -> None:
        self.h = h

    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        return await self.h.ua.originate(
            target, ring_timeout=ring_timeout, caller=caller, display=display
        )

    def agent_reachable(self, agent_id: str) -> bool:
        return self.h.registrations.reachable(agent_id, self.h.loop.time())


@dataclass
class Site:
    h: UaHarness
    center: ContactCenter


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    h = await UaHarness().start()
    config = parse_config(SITE.format(data=tmp_path / "data"), file=str(tmp_path / "s.toml"))
    center = ContactCenter(config, UaTelephony(h))
    h.registrations.listeners.append(center.presence_changed)
    h.serve("2000", lambda s: center.handle_call(s, "queue", "sales"), kind="queue")
    await center.start()
    try:
        yield Site(h, center)
    finally:
        await h.close()
        await center.close()
    assert h.wire.errors == []


def answer_reinvite(phone: Phone, n: int, direction: str) -> str:
    """Answer the phone's ``n``-th re-INVITE (200 with ``direction``); the offer's direction."""
    reinvite = phone.of(ev.ReinviteReceived)[n]
    phone.endpoint.respond(
        reinvite.transaction,
        200,
        body=phone.offer(direction=direction, version=n + 1),
        headers=[("Content-Type", "application/sdp")],
        now=phone.h.loop.time(),
    )
    phone.h.pump()
    return audio_direction(reinvite.sdp)


async def test_hold_resume_mute_and_a_blind_transfer_on_real_sip_legs(site: Site) -> None:
    h, center = site.h, site.center
    desk = center.agents
    alice = h.registered_phone("alice")
    carol = h.registered_phone("carol")
    await h.settle()
    desk.pause("carol", "break", by="carol")
    caller = h.phone("dave")
    call = caller.call("2000")
    await h.until(lambda: alice.incoming(), within=5)
    alice.answer(alice.incoming()[0].call)
    await h.until(lambda: "alice" in desk._calls, within=5)
    assert caller.final_status(call) == 200
    live = desk._calls["alice"]
    server = h.media.server
    assert server is not None
    engine = server.engine
    assert engine.channels[live.caller.chan].peer is engine.channels[live.leg.chan]

    hold = asyncio.ensure_future(desk.hold("alice", by="alice"))
    await h.until(lambda: caller.of(ev.ReinviteReceived), within=5)
    assert answer_reinvite(caller, 0, "recvonly") == "sendonly"
    assert (await hold).held
    await h.until(lambda: engine.channels[live.caller.chan].play is not None)  # music

    resume = asyncio.ensure_future(desk.resume("alice", by="alice"))
    await h.until(lambda: len(caller.of(ev.ReinviteReceived)) == 2, within=5)
    assert answer_reinvite(caller, 1, "sendrecv") == "sendrecv"
    assert not (await resume).held
    assert engine.channels[live.caller.chan].play is None
    assert engine.channels[live.caller.chan].peer is engine.channels[live.leg.chan]

    await desk.mute("alice", True, by="alice")
    assert engine.channels[live.leg.chan].muted
    await desk.mute("alice", False, by="alice")
    assert not engine.channels[live.leg.chan].muted

    started = await desk.transfer("alice", "1002", "blind", by="alice")
    assert started.to == "carol"
    (alice_call,) = [i.call for i in alice.incoming()]
    await h.until(lambda: alice.for_call(alice_call, ev.CallEnded), within=5)  # our BYE
    await h.until(lambda: carol.incoming(), within=5)
    carol.answer(carol.incoming()[0].call)
    await h.until(lambda: live.caller.bridged_to is not None, within=5)
    carol_leg = live.caller.bridged_to
    assert carol_leg is not None and carol_leg.direction == "outbound"
    assert engine.channels[live.caller.chan].peer is engine.channels[carol_leg.chan]
    assert not caller.for_call(call, ev.CallEnded)  # the caller stayed on
    assert desk.view("alice").state == "wrap_up"

    caller.bye(call)
    carol_call = carol.incoming()[0].call
    await h.until(lambda: carol.for_call(carol_call, ev.CallEnded), within=5)
    await h.settle()
    trail = await center.case_trail(int(live.caller.vars["case_id"]))
    assert trail is not None
    kinds = [e.kind for e in trail.events]
    assert kinds.count("call_control") == 5  # hold, resume, mute, unmute, transfer
    assert [e.data.get("to") for e in trail.events if e.kind == "transferred"] == ["carol"]
    assert [(e.actor, e.data.get("agent")) for e in trail.events if e.kind == "hung_up"] == [
        ("caller", "carol")
    ]


async def test_an_attended_transfer_on_real_sip_legs(site: Site) -> None:
    h, center = site.h, site.center
    desk = center.agents
    alice = h.registered_phone("alice")
    carol = h.registered_phone("carol")
    await h.settle()
    desk.pause("carol", "break", by="carol")
    caller = h.phone("dave")
    call = caller.call("2000")
    await h.until(lambda: alice.incoming(), within=5)
    alice.answer(alice.incoming()[0].call)
    await h.until(lambda: "alice" in desk._calls, within=5)
    live = desk._calls["alice"]
    server = h.media.server
    assert server is not None
    engine = server.engine

    await desk.transfer("alice", "carol", "attended", by="alice")
    await h.until(lambda: caller.of(ev.ReinviteReceived), within=5)
    assert answer_reinvite(caller, 0, "recvonly") == "sendonly"  # the caller is held
    await h.until(lambda: carol.incoming(), within=5)
    carol.answer(carol.incoming()[0].call)
    await h.until(lambda: live.consult is not None and live.consult.state == "talking", 5)
    consult = live.consult
    assert consult is not None and consult.leg is not None
    assert engine.channels[live.leg.chan].peer is engine.channels[consult.leg.chan]
    assert engine.channels[live.caller.chan].play is not None  # music for the caller

    complete = asyncio.ensure_future(desk.complete_transfer("alice", by="alice"))
    await h.until(lambda: len(caller.of(ev.ReinviteReceived)) == 2, within=5)
    assert answer_reinvite(caller, 1, "sendrecv") == "sendrecv"
    await complete
    assert engine.channels[live.caller.chan].peer is engine.channels[consult.leg.chan]
    (alice_call,) = [i.call for i in alice.incoming()]
    await h.until(lambda: alice.for_call(alice_call, ev.CallEnded), within=5)
    await h.until(lambda: desk.view("alice").state == "wrap_up", within=5)
    assert not caller.for_call(call, ev.CallEnded)
    carol_call = carol.incoming()[0].call
    carol.bye(carol_call)  # the colleague ends the call: the caller gets our BYE
    await h.until(lambda: caller.for_call(call, ev.CallEnded), within=5)
