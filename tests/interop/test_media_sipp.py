"""Real SIPp peers against the media path of an in-process Hotline on 127.0.0.1.

What a caller or an agent would notice, each through SIPp's signalling and real RTP:

1. keys sent as RFC 4733 events (SIPp replays its sample captures) cut a prompt short and are
   collected exactly;
2. the same key by SIP INFO (``application/dtmf-relay`` and ``application/dtmf``);
3. keys as in-band tones when the caller's SDP has no telephone-event;
4. a prompt reaches the phone complete and on time (count, numbering, one SSRC, pacing);
5. a recording of a generated 440 Hz tone stops on silence and sounds like the tone;
6. two SIPp legs bridged by the gateway hear each other, each in its own SSRC;
7. hold: the caller gets a sendonly re-INVITE and music instead of the agent; unhold resumes.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_gateway.audio import tones
from media_gateway.audio.wav import read_wav
from media_gateway.media.client import LocalMedia
from media_gateway.session import (
    CallSession,
    CollectResult,
    Dtmf,
    HoldChanged,
    PlayDone,
    RecordDone,
)
from media_gateway.sip_leg import SipLeg
from tests.interop.harness import free_port
from tests.interop.media_harness import (
    SAMPLE_PCAPS,
    Rtp,
    concat_pcaps,
    drain_events,
    first_of,
    install_handler,
    pcap_digits,
    pcmu_packets,
    rtp_packet,
    rtp_socket,
    running_gateway,
    send_paced,
    sip_address,
    sipp,
    write_rtp_pcap,
)

pytestmark = [pytest.mark.interop, pytest.mark.serial, pytest.mark.timeout(60)]

NO_TELEPHONE_EVENT = {"fmts": "0", "attr": "a=ptime:20"}


def _dtmf(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.digit, e.method) for e in events if isinstance(e, Dtmf)]


async def _collect_and_hang_up(
    session: CallSession, **collect: Any
) -> tuple[CollectResult, list[Any]]:
    await session.answer()
    got = await session.collect(**collect)
    await session.hangup()
    return got, await drain_events(session)


# -- 1. RFC 4733 -----------------------------------------------------------------------------


async def test_rfc4733_keys_from_sipp_pcaps_are_collected(tmp_path: Path) -> None:
    pcaps = [SAMPLE_PCAPS / f"dtmf_2833_{n}.pcap" for n in ("1", "5", "9", "pound")]
    expected = "".join(pcap_digits(p) for p in pcaps)
    assert expected == "159#"  # what Debian's sample captures carry, one key each
    work = tmp_path / "caller"
    work.mkdir()
    concat_pcaps(pcaps, work / "caller.pcap", gap=0.3)

    async def script(session: CallSession) -> tuple[PlayDone, CollectResult, list[Any]]:
        await session.answer()
        # A long menu prompt: the first key cuts it short and stays for collect (type-ahead).
        played = await session.play("tone:425:8000")
        got = await session.collect(
            max_digits=10, timeout=10, terminator="#", inter_digit_timeout=5
        )
        await session.hangup()
        return played, got, await drain_events(session)

    async with running_gateway(tmp_path, process=False) as gw:
        fut = install_handler(gw, script)
        async with sipp("media_caller_pcap.xml", workdir=work, target=sip_address(gw)) as run:
            played, got, events = await asyncio.wait_for(fut, 20)
            rc = await run.wait(20)
    assert (played.reason, played.digit) == ("dtmf", expected[0])
    assert played.played_ms < 4000
    assert got == CollectResult(expected[:-1], "terminator")
    assert _dtmf(events) == [(d, "rfc4733") for d in expected]
    assert rc == 0, run.report()


# -- 2. SIP INFO -----------------------------------------------------------------------------


async def test_sip_info_keys_are_collected(tmp_path: Path) -> None:
    async def script(session: CallSession) -> tuple[CollectResult, list[Any]]:
        return await _collect_and_hang_up(session, max_digits=2, timeout=10)

    async with rtp_socket() as phone, running_gateway(tmp_path, process=False) as gw:
        fut = install_handler(gw, script)
        async with sipp(
            "media_caller_info.xml",
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": phone.port},
        ) as run:
            got, events = await asyncio.wait_for(fut, 20)
            rc = await run.wait(20)
    # Signal=5 by application/dtmf-relay, then 5 by application/dtmf.
    assert got == CollectResult("55", "max_digits")
    assert _dtmf(events) == [("5", "info"), ("5", "info")]
    assert rc == 0, run.report()


# -- 3. in-band tones ------------------------------------------------------------------------


async def test_inband_tones_are_detected_without_telephone_event(tmp_path: Path) -> None:
    work = tmp_path / "caller"
    work.mkdir()
    audio = np.concatenate([tones.silence(0.3), tones.dtmf_sequence("147#"), tones.silence(0.5)])
    write_rtp_pcap(work / "caller.pcap", pcmu_packets(audio, ssrc=0x1470147))

    async def script(session: CallSession) -> tuple[CollectResult, list[Any]]:
        return await _collect_and_hang_up(
            session, max_digits=10, timeout=10, terminator="#", inter_digit_timeout=5
        )

    async with running_gateway(tmp_path, process=False) as gw:
        fut = install_handler(gw, script)
        async with sipp(
            "media_caller_pcap.xml", workdir=work, target=sip_address(gw), keys=NO_TELEPHONE_EVENT
        ) as run:
            got, events = await asyncio.wait_for(fut, 20)
            rc = await run.wait(20)
    assert got == CollectResult("147", "terminator")
    assert _dtmf(events) == [(d, "inband") for d in "147#"]
    assert rc == 0, run.report()


# -- 4. a prompt, complete and on time -------------------------------------------------------


async def test_prompt_arrives_complete_and_paced(tmp_path: Path) -> None:
    prompt_ms = 2000
    marks: dict[str, float] = {}

    async def script(session: CallSession) -> PlayDone:
        loop = asyncio.get_running_loop()
        await session.answer()
        marks["start"] = loop.time()
        done = await session.play(f"tone:1000:{prompt_ms}", interruptible=False)
        marks["end"] = loop.time()
        await asyncio.sleep(0.3)  # the last packets are on their way
        await session.hangup()
        return done

    async with rtp_socket() as phone, running_gateway(tmp_path, process=True) as gw:
        fut = install_handler(gw, script)
        async with sipp(
            "media_caller.xml",
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": phone.port},
        ) as run:
            done = await asyncio.wait_for(fut, 20)
            rc = await run.wait(20)
        received = phone.rtp()
    assert rc == 0, run.report()
    assert (done.reason, done.played_ms) == ("finished", prompt_ms)
    audio = [(at, r) for at, r in received if r.pt == 0]
    assert len(audio) == len(received), "only PCMU was sent to the phone"
    expected = prompt_ms // 20
    assert abs(len(audio) - expected) <= 1, len(audio)
    packets = [r for _, r in audio]
    assert len({r.ssrc for r in packets}) == 1
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))
    assert all((b.ts - a.ts) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(packets))
    arrivals = [at for at, _ in audio]
    span = arrivals[-1] - arrivals[0]
    nominal = (len(audio) - 1) * 0.02
    assert abs(span - nominal) <= 0.1 * prompt_ms / 1000, span
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) <= 0.060, max(gaps)
    # The prompt's audio is what was asked for: a 1 kHz tone.
    assert _dominant_hz(_decode_pcmu(packets)) == pytest.approx(1000, abs=10)


# -- 5. recording ----------------------------------------------------------------------------


async def test_recording_of_a_tone_stops_on_silence_and_matches_it(tmp_path: Path) -> None:
    tone_s = 1.2
    work = tmp_path / "caller"
    work.mkdir()
    audio = np.concatenate([tones.tone([440.0], tone_s, dbfs=-12.0), tones.silence(1.6)])
    write_rtp_pcap(work / "caller.pcap", pcmu_packets(audio, ssrc=0x440440))
    wav = tmp_path / "rec" / "message.wav"

    async def script(session: CallSession) -> RecordDone:
        await session.answer()
        rec = await session.record(str(wav), max_seconds=10, silence_seconds=1.0)
        await session.hangup()
        return rec

    async with running_gateway(tmp_path, process=True) as gw:
        fut = install_handler(gw, script)
        async with sipp("media_caller_pcap.xml", workdir=work, target=sip_address(gw)) as run:
            rec = await asyncio.wait_for(fut, 20)
            rc = await run.wait(20)
    assert rc == 0, run.report()
    assert rec.reason == "silence", rec
    assert rec.error is None and rec.heard_sound
    recorded = read_wav(wav)
    assert recorded.rate == 8000
    seconds = recorded.samples.size / 8000
    print(f"recorded {seconds:.3f} s, reported {rec.seconds}")
    assert seconds == pytest.approx(tone_s, abs=0.15)
    assert _dominant_hz(recorded.samples) == pytest.approx(440, abs=5)


def _decode_pcmu(packets: list[Rtp]) -> np.ndarray:
    from media_gateway.rtp import g711

    return g711.decode(b"".join(r.payload for r in packets), "PCMU")


def _dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * rate / x.size


# -- 6. a bridge between two SIPp legs -------------------------------------------------------

N_PACKETS = 40  # 0.8 s of media each way per phase


def _tagged(tag: bytes, ssrc: int, *, n: int = N_PACKETS, seq: int = 100) -> list[bytes]:
    """PCMU packets whose payload starts with ``tag`` and the packet's index (recognisable
    after any header rewriting; the gateway relays payloads as they are between PCMU legs)."""
    fill = b"\xff" * (160 - len(tag) - 2)
    return [
        rtp_packet(
            tag + i.to_bytes(2, "big") + fill,
            pt=0,
            seq=seq + i,
            ts=8000 + 160 * i,
            ssrc=ssrc,
            marker=i == 0,
        )
        for i in range(n)
    ]


def _with_tag(received: list[tuple[float, Rtp]], tag: bytes) -> list[Rtp]:
    return [r for _, r in received if r.pt == 0 and r.payload.startswith(tag)]


def _indices(packets: list[Rtp], tag: bytes) -> list[int]:
    return [int.from_bytes(r.payload[len(tag) : len(tag) + 2], "big") for r in packets]


def _leg_port(session: CallSession) -> tuple[str, int]:
    assert isinstance(session.leg, SipLeg)
    return ("127.0.0.1", session.leg.local_port)


SSRC_A, SSRC_B = 0xAAAA0001, 0xBBBB0002


async def test_two_sipp_legs_bridged_exchange_media_both_ways(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    agent_port = free_port()
    bridged: asyncio.Future[tuple[CallSession, CallSession, dict[str, int]]] = loop.create_future()
    finish = asyncio.Event()

    async def script(session: CallSession) -> None:
        await session.answer()
        other = await gw.ua.originate(f"sip:agent@127.0.0.1:{agent_port}", ring_timeout=10)
        assert other is not None, "the SIPp agent did not answer"
        try:
            await session.bridge(other)
            assert isinstance(gw.media, LocalMedia) and gw.media.server is not None
            engine = gw.media.server.engine
            ssrcs = {"a": engine.get(session.chan).ssrc, "b": engine.get(other.chan).ssrc}
            bridged.set_result((session, other, ssrcs))
            await asyncio.wait_for(finish.wait(), 20)
        finally:
            await other.hangup()
        await session.hangup()

    async with (
        rtp_socket() as phone_a,
        rtp_socket() as phone_b,
        running_gateway(tmp_path, process=False) as gw,
    ):
        fut = install_handler(gw, script)
        async with (
            sipp(
                "media_callee.xml",
                workdir=tmp_path / "agent",
                target=None,
                local_port=agent_port,
                keys={"rtp_port": phone_b.port},
            ) as agent,
            sipp(
                "media_caller.xml",
                workdir=tmp_path / "caller",
                target=sip_address(gw),
                keys={"rtp_port": phone_a.port},
            ) as caller,
        ):
            session, other, ssrcs = await first_of(bridged, fut, 20)
            await asyncio.gather(
                send_paced(phone_a, _tagged(b"AAA", SSRC_A), _leg_port(session)),
                send_paced(phone_b, _tagged(b"BBB", SSRC_B), _leg_port(other)),
            )
            await asyncio.sleep(0.3)
            finish.set()
            await asyncio.wait_for(fut, 20)
            rc_caller = await caller.wait(20)
            rc_agent = await agent.wait(20)
        at_a, at_b = phone_a.rtp(), phone_b.rtp()
    assert rc_caller == 0, caller.report()
    assert rc_agent == 0, agent.report()
    for received, tag, sent_ssrc, own_ssrc in (
        (at_b, b"AAA", SSRC_A, ssrcs["b"]),
        (at_a, b"BBB", SSRC_B, ssrcs["a"]),
    ):
        relayed = _with_tag(received, tag)
        # Every packet the other phone sent, in order, none lost on loopback.
        assert _indices(relayed, tag) == list(range(N_PACKETS)), _indices(relayed, tag)
        # Rewritten into this leg's own stream: the gateway's SSRC for the leg, not the sender's.
        assert {r.ssrc for r in relayed} == {own_ssrc}
        assert own_ssrc != sent_ssrc
        assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in itertools.pairwise(relayed))
        assert all((b.ts - a.ts) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(relayed))
    assert ssrcs["a"] != ssrcs["b"]


# -- 7. hold and unhold ----------------------------------------------------------------------


async def test_hold_sends_sendonly_reinvite_and_music_then_unhold_resumes(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    agent_port = free_port()
    bridged: asyncio.Future[tuple[CallSession, CallSession]] = loop.create_future()
    steps: asyncio.Queue[str] = asyncio.Queue()
    acks: asyncio.Queue[str] = asyncio.Queue()

    async def script(session: CallSession) -> list[Any]:
        await session.answer()
        other = await gw.ua.originate(f"sip:agent@127.0.0.1:{agent_port}", ring_timeout=10)
        assert other is not None, "the SIPp agent did not answer"
        try:
            await session.bridge(other)
            bridged.set_result((session, other))
            for _ in range(3):
                step = await asyncio.wait_for(steps.get(), 20)
                if step == "hold":
                    await session.hold()
                elif step == "unhold":
                    await session.unhold()
                else:
                    break
                await acks.put(step)
        finally:
            await other.hangup()
        await session.hangup()
        return await drain_events(session)

    async def phase(step: str | None) -> tuple[float, float]:
        if step is not None:
            await steps.put(step)
            assert await asyncio.wait_for(acks.get(), 20) == step
        start = loop.time()
        await asyncio.gather(
            send_paced(phone_a, _tagged(b"A" + tag, SSRC_A, seq=seq), _leg_port(session)),
            send_paced(phone_b, _tagged(b"B" + tag, SSRC_B, seq=seq), _leg_port(other)),
        )
        await asyncio.sleep(0.3)
        return start, loop.time()

    async with (
        rtp_socket() as phone_a,
        rtp_socket() as phone_b,
        running_gateway(tmp_path, process=True) as gw,
    ):
        fut = install_handler(gw, script)
        async with (
            sipp(
                "media_callee.xml",
                workdir=tmp_path / "agent",
                target=None,
                local_port=agent_port,
                keys={"rtp_port": phone_b.port},
            ) as agent,
            sipp(
                "media_caller_hold.xml",
                workdir=tmp_path / "caller",
                target=sip_address(gw),
                keys={"rtp_port": phone_a.port},
            ) as caller,
        ):
            session, other = await first_of(bridged, fut, 20)
            tag, seq = b"1", 100
            await phase(None)
            tag, seq = b"2", 200
            held = await phase("hold")
            tag, seq = b"3", 300
            await phase("unhold")
            await steps.put("done")
            events = await asyncio.wait_for(fut, 20)
            rc_caller = await caller.wait(20)
            rc_agent = await agent.wait(20)
        at_a, at_b = phone_a.rtp(), phone_b.rtp()
    assert rc_caller == 0, caller.report()  # the scenario checked a=sendonly, then a=sendrecv
    assert rc_agent == 0, agent.report()

    def window(received: list[tuple[float, Rtp]], w: tuple[float, float]) -> list[Rtp]:
        return [r for at, r in received if w[0] <= at < w[1] and r.pt == 0]

    # Talking: both ways.
    assert len(_with_tag(at_a, b"B1")) >= N_PACKETS - 2
    assert len(_with_tag(at_b, b"A1")) >= N_PACKETS - 2
    # On hold: the caller hears music, not the agent, and the agent does not hear the caller.
    during_hold = window(at_a, held)
    assert not _with_tag(at_a, b"B2")
    assert not _with_tag(at_b, b"A2")
    assert len(during_hold) >= 0.8 * (held[1] - held[0]) / 0.02, len(during_hold)
    music = _decode_pcmu(during_hold).astype(np.float64)
    assert np.sqrt(np.mean(music**2)) > 100, "music on hold is audible, not silence"
    # Unheld: the bridge resumes both ways.
    assert len(_with_tag(at_a, b"B3")) >= N_PACKETS - 2
    assert len(_with_tag(at_b, b"A3")) >= N_PACKETS - 2
    # The caller's phone sees one stream through talk, music and talk again: one SSRC,
    # no sequence gap, timestamps moving forward.
    stream = [r for _, r in at_a if r.pt == 0]
    assert len({r.ssrc for r in stream}) == 1
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in itertools.pairwise(stream))
    assert all(0 < (b.ts - a.ts) & 0xFFFFFFFF < 1 << 31 for a, b in itertools.pairwise(stream))
    assert [(e.held, e.by) for e in events if isinstance(e, HoldChanged)] == [
        (True, "local"),
        (False, "local"),
    ]
