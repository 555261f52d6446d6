"""The media engine without sockets: what a caller would hear, and what the session is told."""

from __future__ import annotations

import itertools
import math
import random
import struct

import numpy as np
import pytest

from media_gateway.audio import tones
from media_gateway.media.engine import FRAME, MediaEngine
from media_gateway.rtp import g711
from media_gateway.rtp.dtmf import DtmfSender
from media_gateway.rtp.packet import RtpPacket

CALLER = ("127.0.0.1", 40000)
AGENT = ("127.0.0.1", 40002)


def rtp(
    seq: int, ts: int, payload: bytes, *, pt: int = 0, ssrc: int = 0x1234, marker: bool = False
) -> bytes:
    return RtpPacket(
        payload_type=pt,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        marker=marker,
        payload=payload,
    ).to_bytes()


def feed_audio(
    eng: MediaEngine,
    chan: str,
    samples: np.ndarray,
    start: float,
    *,
    addr=CALLER,
    seq0: int = 1,
    ts0: int = 0,
    codec: str = "PCMU",
) -> float:
    """Send ``samples`` as 20 ms packets, one engine tick per packet; returns the end time."""
    t = start
    for i in range(0, samples.size - FRAME + 1, FRAME):
        payload = g711.encode(samples[i : i + FRAME], codec).tobytes()
        eng.receive(
            chan, rtp(seq0 + i // FRAME, ts0 + i, payload, pt=0 if codec == "PCMU" else 8), addr, t
        )
        eng.tick(t)
        t += 0.02
    return t


def sent(out: list, chan: str) -> list[RtpPacket]:
    return [RtpPacket.parse(d) for ch, d, is_rtcp in out if ch.id == chan and not is_rtcp]


def test_play_sends_every_frame_paced_with_continuous_numbering() -> None:
    eng = MediaEngine(rng=random.Random(1))
    eng.open("c", 0.0, remote=CALLER)
    prompt = tones.tone([440.0], 1.0)  # 50 frames
    eng.play("c", prompt, 0.0, op="p1")
    packets = []
    events = []
    for k in range(1, 60):
        eng.tick(k * 0.02)
        out, ev, _ = eng.drain()
        packets += sent(out, "c")
        events += ev
    assert len(packets) == 50
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    tss = [p.timestamp for p in packets]
    assert all((b - a) & 0xFFFFFFFF == FRAME for a, b in itertools.pairwise(tss))
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    heard = g711.decode(b"".join(p.payload for p in packets), "PCMU")
    assert np.corrcoef(heard.astype(float), prompt.astype(float))[0, 1] > 0.99
    assert [e["reason"] for e in events if e["event"] == "play_done"] == ["finished"]


def test_rfc4733_key_interrupts_an_interruptible_prompt_and_is_reported_once() -> None:
    eng = MediaEngine(rng=random.Random(2))
    eng.open("c", 0.0, remote=CALLER, te_pt=101)
    eng.play("c", tones.tone([440.0], 5.0), 0.0, op="menu")
    sender = DtmfSender(payload_type=101, ssrc=0x99)
    t = 0.1
    for sp in sender.packets("5", seq=10, timestamp=800, duration_ms=120):
        eng.receive("c", sp.packet.to_bytes(), CALLER, t + sp.offset)
    eng.tick(0.5)
    _, events, _ = eng.drain()
    kinds = [(e["event"], e.get("reason"), e.get("digit")) for e in events]
    assert ("play_done", "dtmf", "5") in kinds
    assert [e["digit"] for e in events if e["event"] == "dtmf"] == ["5"]
    assert eng.get("c").play is None


def test_inband_keys_are_detected_when_no_telephone_event_was_negotiated() -> None:
    eng = MediaEngine(rng=random.Random(3))
    eng.open("c", 0.0, remote=CALLER, te_pt=None)
    audio = np.concatenate(
        [tones.silence(0.2), tones.dtmf_sequence("19#", on=0.1, off=0.1), tones.silence(0.3)]
    )
    feed_audio(eng, "c", audio, 0.0)
    _, events, _ = eng.drain()
    digits = [e for e in events if e["event"] == "dtmf"]
    assert "".join(e["digit"] for e in digits) == "19#"
    assert {e["method"] for e in digits} == {"inband"}


def keys_heard_with_delays(keys: str, delays: dict[int, float], *, gap: float = 0.06) -> str:
    """In-band ``keys`` (100 ms tones, ``gap`` s apart, as the load generator presses them)
    after 1 s of silence, one packet every 20 ms; packet ``k`` arrives ``delays[k]`` s late
    (``inf``: lost; packets arriving at the same moment come in sequence order). The engine
    ticks every 20 ms; returns the keys it reported."""
    eng = MediaEngine(rng=random.Random(7))
    eng.open("c", 0.0, remote=CALLER, te_pt=None)
    audio = np.concatenate(
        [tones.silence(1.0), tones.dtmf_sequence(keys, on=0.1, off=gap), tones.silence(0.6)]
    )
    arrivals: list[tuple[float, int, bytes]] = []
    for k in range(audio.size // FRAME):
        payload = g711.encode(audio[k * FRAME : (k + 1) * FRAME], "PCMU").tobytes()
        at = k * 0.02 + 0.001 + delays.get(k, 0.0)
        if not math.isinf(at):
            arrivals.append((round(at, 6), k, rtp(k + 1, k * FRAME, payload, marker=k == 0)))
    arrivals.sort()
    got = ""
    for tick in range(audio.size // FRAME + 20):
        now = tick * 0.02 + 0.01
        while arrivals and arrivals[0][0] <= now:
            at, _, data = arrivals.pop(0)
            eng.receive("c", data, CALLER, at)
        eng.tick(now)
        _, events, _ = eng.drain()
        got += "".join(e["digit"] for e in events if e["event"] == "dtmf")
    return got


TONE = 50
"""The first packet of the first key's tone in ``keys_heard_with_delays``."""


def stall(first: int, seconds: float) -> dict[int, float]:
    """The sender stops for ``seconds`` before packet ``first``, then sends what it owes at
    once (a loaded caller's or media process's loop)."""
    owed = math.ceil(seconds / 0.02 - 1e-9)
    return {first + j: seconds - j * 0.02 for j in range(owed)}


@pytest.mark.parametrize(
    ("keys", "delays"),
    [
        pytest.param("1", {TONE + 2: 0.05}, id="a packet of the tone 50 ms late"),
        pytest.param("1", {TONE: 0.09}, id="the first packet of the tone 90 ms late"),
        pytest.param("1", {TONE - 1: 0.09}, id="the packet before the tone 90 ms late"),
        pytest.param("1", stall(TONE + 2, 0.06), id="a 60 ms stall in the tone"),
        pytest.param("1", stall(TONE + 2, 0.15), id="a 150 ms stall in the tone"),
        pytest.param("1", stall(TONE + 3, 0.2), id="a 200 ms stall late in the tone"),
        pytest.param("1", stall(TONE, 0.12), id="a 120 ms stall as the tone starts"),
        pytest.param("1", stall(TONE + 1, 0.3), id="a 300 ms stall in the tone"),
        pytest.param("11", stall(TONE + 8, 0.12), id="a 120 ms stall at the second tone"),
        pytest.param("11", stall(TONE + 6, 0.06), id="a 60 ms stall in the pause"),
        pytest.param("11", {TONE + 6: math.inf}, id="a packet of the pause lost"),
    ],
)
def test_inband_keys_are_heard_once_each_whatever_the_packets_timing(
    keys: str, delays: dict[int, float]
) -> None:
    # docs/load.md, "A key taken twice": the detector used to hear the playout buffer's frames,
    # in which a late packet is a lost frame followed by frames of nothing while the buffer
    # grows its delay; fed as silence, they split one tone into two presses, or left too
    # little of it to be heard.
    assert keys_heard_with_delays(keys, delays) == keys


def test_a_late_packet_or_a_stall_anywhere_around_an_inband_key_gives_it_once() -> None:
    for pos in range(-2, 7):
        for late in (0.03, 0.05, 0.07, 0.09, 0.12, 0.2):
            assert keys_heard_with_delays("1", {TONE + pos: late}) == "1", (pos, late)
            assert keys_heard_with_delays("1", stall(TONE + pos, late)) == "1", (pos, late)


def test_inband_keys_from_a_sample_leg_in_uneven_batches_are_heard() -> None:
    # A WebRTC leg's frames come as the browser's packets do: two in one tick, none in the next.
    eng = MediaEngine(rng=random.Random(8))
    eng.open("w", 0.0, kind="samples", te_pt=None, inband=True)
    audio = np.concatenate(
        [tones.silence(0.2), tones.dtmf_sequence("1#1", on=0.1, off=0.1), tones.silence(0.2)]
    )
    got = ""
    for tick, start in enumerate(range(0, audio.size - 2 * FRAME + 1, 2 * FRAME)):
        now = tick * 0.04
        eng.receive_samples("w", audio[start : start + FRAME], now)
        eng.receive_samples("w", audio[start + FRAME : start + 2 * FRAME], now)
        eng.tick(now)
        eng.tick(now + 0.02)
        _, events, _ = eng.drain()
        got += "".join(e["digit"] for e in events if e["event"] == "dtmf")
    assert got == "1#1"


def test_an_inband_stop_key_ends_a_recording_without_its_tone_and_with_all_the_speech() -> None:
    eng = MediaEngine(rng=random.Random(9))
    eng.open("c", 0.0, remote=CALLER, te_pt=None)
    eng.record("c", 0.0, op="r", path="x.wav", max_seconds=30, silence_seconds=0)
    speech = tones.tone([300.0], 1.0, dbfs=-12.0)
    lead = tones.silence(0.2)
    feed_audio(
        eng,
        "c",
        np.concatenate([lead, speech, tones.dtmf_sequence("#", on=0.1, off=0.1)]),
        0.0,
    )
    _, events, _ = eng.drain()
    (done,) = [e for e in events if e["event"] == "record_done"]
    assert done["reason"] == "dtmf"
    extra = done["samples"].size - (lead.size + speech.size)
    assert 0 <= extra <= 2 * FRAME  # the speech whole, at most two frames of the key


def test_recording_matches_what_was_sent_and_stops_on_silence() -> None:
    eng = MediaEngine(rng=random.Random(4))
    eng.open("c", 0.0, remote=CALLER)
    eng.record("c", 0.0, op="r1", path="/nonexistent/r.wav", max_seconds=30, silence_seconds=0.5)
    speech = tones.tone([300.0], 1.0, dbfs=-12.0)
    feed_audio(eng, "c", np.concatenate([speech, tones.silence(1.0)]), 0.0)
    # then nothing arrives at all: silence is still counted as time passes
    for k in range(40):
        eng.tick(2.0 + k * 0.02)
    _, events, _ = eng.drain()
    (done,) = [e for e in events if e["event"] == "record_done"]
    assert done["reason"] == "silence"
    rec = done["samples"]
    # the playout buffer delays by a few frames; the tone is all there and trailing silence cut
    assert abs(rec.size - speech.size) <= 4 * FRAME
    ref = speech[:4000].astype(float)
    best = max(
        np.corrcoef(rec[lag : lag + 4000].astype(float), ref)[0, 1] for lag in range(0, 8 * FRAME)
    )
    assert best > 0.99


def test_recording_stops_at_max_length_and_on_the_stop_key() -> None:
    eng = MediaEngine(rng=random.Random(5))
    eng.open("c", 0.0, remote=CALLER)
    eng.record("c", 0.0, op="r", path="x.wav", max_seconds=0.4)
    feed_audio(eng, "c", tones.tone([300.0], 1.0), 0.0)
    _, events, _ = eng.drain()
    (done,) = [e for e in events if e["event"] == "record_done"]
    assert (done["reason"], done["seconds"]) == ("max_length", 0.4)

    eng.record("c", 1.0, op="r2", path="y.wav", max_seconds=10, stop_digits="#")
    eng.receive_digit("c", "#", "info", 1.1)
    _, events, _ = eng.drain()
    assert [e["reason"] for e in events if e["event"] == "record_done"] == ["dtmf"]


def test_bridge_relays_both_ways_in_each_legs_own_numbering_and_passes_keys() -> None:
    eng = MediaEngine(rng=random.Random(6))
    a = eng.open("a", 0.0, remote=CALLER, te_pt=101)
    b = eng.open("b", 0.0, remote=AGENT, te_pt=96, codec="PCMA")
    eng.bridge("a", "b", 0.0)
    voice = g711.encode(tones.tone([500.0], 0.02), "PCMU").tobytes()
    for i in range(5):
        eng.receive("a", rtp(100 + i, 1000 + i * FRAME, voice, ssrc=7), CALLER, 0.02 * i)
        eng.receive(
            "b", rtp(9 + i, 50 + i * FRAME, g711.ulaw_to_alaw(voice), pt=8, ssrc=8), AGENT, 0.02 * i
        )
    eng.receive(
        "a", rtp(105, 2000, struct.pack("!BBH", 5, 0x80 | 10, 800), pt=101, ssrc=7), CALLER, 0.11
    )
    out, _, _ = eng.drain()
    to_b, to_a = sent(out, "b"), sent(out, "a")
    assert len(to_b) == 6 and len(to_a) == 5
    assert {p.ssrc for p in to_b} == {b.ssrc} and {p.ssrc for p in to_a} == {a.ssrc}
    assert [p.payload_type for p in to_b] == [8] * 5 + [96]  # PCMU->PCMA, telephone-event PT mapped
    assert to_b[0].payload == g711.ulaw_to_alaw(voice)
    assert to_b[0].marker
    seqs = [p.sequence_number for p in to_b]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    # unbridge: nothing more is relayed
    eng.unbridge("a")
    eng.receive("a", rtp(106, 2160, voice, ssrc=7), CALLER, 0.2)
    out, _, _ = eng.drain()
    assert sent(out, "b") == []


def test_symmetric_rtp_answers_where_packets_come_from() -> None:
    eng = MediaEngine(rng=random.Random(7))
    eng.open("c", 0.0, remote=("127.0.0.1", 40000))
    eng.set_echo("c", True, 0.0)
    nat = ("127.0.0.9", 55555)
    eng.receive("c", rtp(1, 0, bytes(160)), nat, 0.0)
    out, _, _ = eng.drain()
    assert [ch.remote for ch, _, _ in out] == [nat]


def test_garbage_datagrams_are_counted_not_fatal() -> None:
    eng = MediaEngine(rng=random.Random(8))
    eng.open("c", 0.0, remote=CALLER)
    for junk in (b"", b"\x00" * 5, b"\xff" * 40, b"\x80\x00\x00"):
        eng.receive("c", junk, CALLER, 0.0)
    eng.receive_rtcp("c", b"\x81\xc8\x00\x10garbage", CALLER, 0.0)
    eng.tick(0.02)
    assert eng.get("c").bad_packets >= 3


def test_rtcp_reports_go_out_and_peer_reports_are_read() -> None:
    eng = MediaEngine(rng=random.Random(9), rtcp_interval=1.0)
    eng.open("c", 0.0, remote=CALLER)
    eng.set_echo("c", True, 0.0)
    for i in range(100):
        if i % 10 != 3:  # 10 % loss
            eng.receive("c", rtp(i, i * FRAME, bytes(160)), CALLER, i * 0.02)
        eng.tick(i * 0.02)
    out, _, _ = eng.drain()
    reports = [d for _, d, is_rtcp in out if is_rtcp]
    assert reports
    from media_gateway.rtp.rtcp import SenderReport, parse_compound

    srs = [p for d in reports for p in parse_compound(d) if isinstance(p, SenderReport)]
    assert srs and srs[-1].reports and srs[-1].reports[0].cumulative_lost >= 5
    assert eng.channel_stats(eng.get("c"))["lost"] == 10


def test_keys_are_sent_as_rfc4733_events_or_as_tones_when_none_was_negotiated() -> None:
    from media_gateway.rtp.dtmf import DtmfReceiver

    eng = MediaEngine(rng=random.Random(10))
    eng.open("c", 0.0, remote=CALLER, te_pt=101)
    n = eng.send_dtmf("c", "12", 0.0)
    out, _, _ = eng.drain()
    packets = sent(out, "c")
    assert n == len(packets) > 6 and {p.payload_type for p in packets} == {101}
    rx = DtmfReceiver()
    got = [d.digit for p in packets for d in rx.feed(p, 0.0) if hasattr(d, "duration_ms")]
    assert got == ["1", "2"]
    # Without telephone-event the keys are played as tones in the audio.
    eng.open("t", 0.0, remote=AGENT, te_pt=None)
    eng.send_dtmf("t", "5", 0.0)
    frames = []
    for k in range(1, 20):
        eng.tick(k * 0.02)
        out, _, _ = eng.drain()
        frames += sent(out, "t")
    audio = g711.decode(b"".join(p.payload for p in frames), "PCMU")
    spectrum = np.abs(np.fft.rfft(audio.astype(float)))
    freqs = np.fft.rfftfreq(audio.size, 1 / 8000)
    top = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(top[0] - 770) < 20 and abs(top[1] - 1336) < 20
