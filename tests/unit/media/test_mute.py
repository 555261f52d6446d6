"""Muting a channel (an agent muted towards the caller): its far end's voice and keys reach the
bridged peer as silence in an unbroken stream, the other direction is untouched, and unmuting
brings the voice back. Through the media engine and a real CallSession on in-process media."""

from __future__ import annotations

import itertools
import random
import struct

from media_gateway.audio import tones
from media_gateway.media import control as mc
from media_gateway.media.engine import FRAME, MediaEngine
from media_gateway.rtp import g711
from media_gateway.rtp.packet import RtpPacket

CALLER = ("127.0.0.1", 40000)
AGENT = ("127.0.0.1", 40002)


def rtp(seq: int, ts: int, payload: bytes, *, pt: int = 0, ssrc: int = 0x1234) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload
    ).to_bytes()


def sent(out: list, chan: str) -> list[RtpPacket]:
    return [RtpPacket.parse(d) for ch, d, is_rtcp in out if ch.id == chan and not is_rtcp]


def test_a_muted_channel_passes_silence_and_no_keys_to_its_peer() -> None:
    eng = MediaEngine(rng=random.Random(4))
    eng.open("caller", 0.0, remote=CALLER, te_pt=101, codec="PCMA")
    eng.open("agent", 0.0, remote=AGENT, te_pt=101)
    eng.bridge("caller", "agent", 0.0)
    voice = g711.encode(tones.tone([500.0], 0.02), "PCMU").tobytes()
    heard = g711.encode(tones.tone([700.0], 0.02), "PCMA").tobytes()
    key = struct.pack("!BBH", 5, 0x80 | 10, 800)

    def talk(seq: int, t: float) -> None:
        eng.receive("agent", rtp(seq, seq * FRAME, voice, ssrc=9), AGENT, t)
        eng.receive("caller", rtp(seq, seq * FRAME, heard, pt=8, ssrc=3), CALLER, t)

    talk(1, 0.00)
    eng.set_mute("agent", True)
    talk(2, 0.02)
    eng.receive("agent", rtp(3, 3 * FRAME, key, pt=101, ssrc=9), AGENT, 0.03)  # a key: dropped
    talk(4, 0.04)
    eng.set_mute("agent", False)
    talk(5, 0.06)
    out, _, _ = eng.drain()
    to_caller, to_agent = sent(out, "caller"), sent(out, "agent")
    assert [p.payload_type for p in to_caller] == [8, 8, 8, 8]  # no telephone-event
    silence = bytes((g711.ALAW_SILENCE,)) * FRAME
    assert [p.payload == silence for p in to_caller] == [False, True, True, False]
    assert to_caller[3].payload == g711.ulaw_to_alaw(voice)
    seqs = [p.sequence_number for p in to_caller]
    # one stream (the dropped key leaves a gap, as for a peer that takes no telephone-events)
    assert [(y - x) & 0xFFFF for x, y in itertools.pairwise(seqs)] == [1, 2, 1]
    assert len({p.ssrc for p in to_caller}) == 1
    assert [p.payload for p in to_agent] == [g711.alaw_to_ulaw(heard)] * 4  # she still hears


async def test_a_session_mutes_through_the_media_server() -> None:
    from media_gateway.media.client import LocalMedia

    media = LocalMedia(host="127.0.0.1", port_min=41600, port_max=41699)
    await media.start()
    try:
        await media.request(mc.Open(chan="m1"))
        assert await media.request(mc.Mute(chan="m1", on=True)) == mc.Ack()
        server = media.server
        assert server is not None and server.engine.channels["m1"].muted
        await media.request(mc.Mute(chan="m1", on=False))
        assert not server.engine.channels["m1"].muted
        await media.request(mc.Close(chan="m1"))
    finally:
        await media.close()
