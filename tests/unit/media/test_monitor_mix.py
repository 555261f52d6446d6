"""Mixing for supervisor monitoring, in the sans-IO media engine and through the control path.

Three RTP legs: the caller (440 Hz), the agent (1 kHz, bridged to the caller) and a supervisor
(1.7 kHz). Each tick every phone sends one 20 ms frame and the engine sends what it sends; the
test decodes what reached each phone and asks which tones are in it:

* listen: the supervisor hears caller + agent; caller and agent hear only each other;
* whisper: the agent hears caller + supervisor; the caller hears only the agent;
* barge: each hears the other two;
* stopping brings the plain relay back; every leg keeps one SSRC and an unbroken sequence
  across the switches; loud sources clip instead of wrapping round.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from media_gateway.audio import tones
from media_gateway.media import control as mc
from media_gateway.media.client import LocalMedia
from media_gateway.media.engine import FRAME, MediaEngine, MediaError
from media_gateway.rtp import g711
from media_gateway.rtp.packet import RtpPacket

CALLER, AGENT, SUPERVISOR = ("127.0.0.1", 40000), ("127.0.0.1", 40002), ("127.0.0.1", 40004)
HZ = {"caller": 440.0, "agent": 1000.0, "sup": 1700.0}
ADDR = {"caller": CALLER, "agent": AGENT, "sup": SUPERVISOR}
SSRC = {"caller": 0xCA11, "agent": 0xA6E7, "sup": 0x5C9}


class Call:
    """The engine with three open legs, caller and agent bridged; phones that talk."""

    def __init__(self) -> None:
        self.eng = MediaEngine(rng=random.Random(7))
        for name in ("caller", "agent", "sup"):
            self.eng.open(name, 0.0, remote=ADDR[name], te_pt=101)
        self.eng.bridge("caller", "agent", 0.0)
        self.voice = {n: tones.tone([hz], 30.0, dbfs=-12.0) for n, hz in HZ.items()}
        self.k = 0
        self.heard: dict[str, list[RtpPacket]] = {n: [] for n in ADDR}

    def talk(self, seconds: float, *, loud: bool = False) -> dict[str, np.ndarray]:
        """Every phone sends ``seconds`` of its tone; what each phone received meanwhile."""
        got: dict[str, list[RtpPacket]] = {n: [] for n in ADDR}
        for _ in range(round(seconds / 0.02)):
            now = self.k * 0.02
            for name in ADDR:
                frame = self.voice[name][self.k * FRAME : (self.k + 1) * FRAME]
                if loud:
                    frame = np.full(FRAME, 30000, dtype=np.int16)
                packet = RtpPacket(
                    payload_type=0,
                    sequence_number=self.k,
                    timestamp=self.k * FRAME,
                    ssrc=SSRC[name],
                    payload=g711.encode(frame, "PCMU").tobytes(),
                    marker=self.k == 0,
                )
                self.eng.receive(name, packet.to_bytes(), ADDR[name], now)
            self.eng.tick(now + 0.01)
            out, _, _ = self.eng.drain()
            for ch, data, is_rtcp in out:
                if not is_rtcp:
                    got[ch.id].append(RtpPacket.parse(data))
            self.k += 1
        for name, packets in got.items():
            self.heard[name].extend(packets)
        return {
            n: g711.decode(b"".join(p.payload for p in ps[10:]), "PCMU") if ps else np.zeros(0)
            for n, ps in got.items()
        }


def tones_in(x: np.ndarray) -> set[str]:
    """Which of the three voices are in ``x`` (each at least 30 dB above the floor)."""
    if x.size < 800:
        return set()
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    total = float(spectrum.sum())
    return {
        name
        for name, hz in HZ.items()
        if float(spectrum[np.abs(freqs - hz) <= 15].sum()) > total * 1e-3
    }


def test_listen_the_supervisor_hears_both_and_nobody_hears_the_supervisor() -> None:
    call = Call()
    call.eng.set_mix("sup", ["caller", "agent"], 0.0)
    heard = call.talk(1.0)
    assert tones_in(heard["sup"]) == {"caller", "agent"}
    assert tones_in(heard["caller"]) == {"agent"}
    assert tones_in(heard["agent"]) == {"caller"}


def test_whisper_only_the_agent_hears_the_supervisor() -> None:
    call = Call()
    call.eng.set_mix("sup", ["caller", "agent"], 0.0)
    call.eng.set_mix("agent", ["caller", "sup"], 0.0)
    heard = call.talk(1.0)
    assert tones_in(heard["sup"]) == {"caller", "agent"}
    assert tones_in(heard["agent"]) == {"caller", "sup"}
    assert tones_in(heard["caller"]) == {"agent"}


def test_barge_everyone_hears_the_other_two() -> None:
    call = Call()
    call.eng.set_mix("sup", ["caller", "agent"], 0.0)
    call.eng.set_mix("agent", ["caller", "sup"], 0.0)
    call.eng.set_mix("caller", ["agent", "sup"], 0.0)
    heard = call.talk(1.0)
    assert tones_in(heard["sup"]) == {"caller", "agent"}
    assert tones_in(heard["agent"]) == {"caller", "sup"}
    assert tones_in(heard["caller"]) == {"agent", "sup"}


def test_switching_modes_and_stopping_keep_each_stream_unbroken() -> None:
    call = Call()
    call.talk(0.4)  # plain call
    call.eng.set_mix("sup", ["caller", "agent"], call.k * 0.02)
    call.talk(0.4)  # listen
    call.eng.set_mix("agent", ["caller", "sup"], call.k * 0.02)
    call.talk(0.4)  # whisper
    call.eng.set_mix("caller", ["agent", "sup"], call.k * 0.02)
    call.talk(0.4)  # barge
    call.eng.set_mix("caller", [], call.k * 0.02)
    call.talk(0.4)  # back to whisper
    call.eng.set_mix("agent", [], call.k * 0.02)
    call.eng.set_mix("sup", [], call.k * 0.02)
    after = call.talk(1.0)  # stopped: the plain call again
    assert tones_in(after["caller"]) == {"agent"}
    assert tones_in(after["agent"]) == {"caller"}
    assert after["sup"].size == 0  # the supervisor's phone gets nothing more
    for name in ("caller", "agent"):
        packets = call.heard[name]
        assert len({p.ssrc for p in packets}) == 1, name
        steps = {
            (b.sequence_number - a.sequence_number) & 0xFFFF for a, b in itertools.pairwise(packets)
        }
        assert steps == {1}, (name, steps)
        ts_steps = [
            (b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)
        ]
        assert all(0 < d < 8 * FRAME for d in ts_steps), name  # forward, never a jump back


def test_loud_sources_clip_rather_than_wrap() -> None:
    call = Call()
    call.eng.set_mix("sup", ["caller", "agent"], 0.0)
    heard = call.talk(0.6, loud=True)
    # two sources at +30000: the sum clips at the top of the scale (a wrap would go negative)
    assert heard["sup"].size and int(heard["sup"].min()) > 28000


def test_a_source_that_hangs_up_leaves_the_mix_and_the_rest_goes_on() -> None:
    call = Call()
    call.eng.set_mix("sup", ["caller", "agent"], 0.0)
    call.talk(0.2)
    call.eng.close("agent", call.k * 0.02)
    heard = call.talk(0.6)
    assert tones_in(heard["sup"]) == {"caller"}
    call.eng.close("sup", call.k * 0.02)
    assert call.eng.channels["caller"].mixed_by == 0
    assert call.eng.channels["caller"].jitter is None  # nobody needs its audio decoded now


def test_bad_mixes_are_refused() -> None:
    call = Call()
    with pytest.raises(MediaError, match="itself"):
        call.eng.set_mix("sup", ["sup", "caller"], 0.0)
    with pytest.raises(MediaError, match="once"):
        call.eng.set_mix("sup", ["caller", "caller"], 0.0)
    with pytest.raises(MediaError, match="no channel"):
        call.eng.set_mix("sup", ["nobody"], 0.0)
    assert call.eng.channels["sup"].mix is None


async def test_the_mix_operation_crosses_the_control_path() -> None:
    media = LocalMedia(host="127.0.0.1", port_min=41700, port_max=41799)
    await media.start()
    try:
        for chan in ("c", "a", "s"):
            await media.request(mc.Open(chan=chan))
        await media.request(mc.Bridge(a="c", b="a"))
        assert await media.request(mc.Mix(chan="s", sources=("c", "a"))) == mc.Ack()
        server = media.server
        assert server is not None
        eng = server.engine
        assert [ch.id for ch in eng.channels["s"].mix or []] == ["c", "a"]
        assert eng.channels["c"].mixed_by == eng.channels["a"].mixed_by == 1
        with pytest.raises(MediaError, match="itself"):
            await media.request(mc.Mix(chan="s", sources=("s",)))
        await media.request(mc.Mix(chan="s"))
        assert eng.channels["s"].mix is None and eng.channels["c"].mixed_by == 0
    finally:
        await media.close()


def test_a_browser_phone_supervisor_hears_and_whispers_through_sample_frames() -> None:
    """The supervisor's leg is a ``samples`` channel (WebRTC): the mix goes out as frames,
    and the frames it delivers (in uneven sizes, as aiortc does) are whispered to the agent."""
    eng = MediaEngine(rng=random.Random(3))
    eng.open("caller", 0.0, remote=CALLER, te_pt=101)
    eng.open("agent", 0.0, remote=AGENT, te_pt=101)
    eng.open("sup", 0.0, kind="samples")
    eng.bridge("caller", "agent", 0.0)
    eng.set_mix("sup", ["caller", "agent"], 0.0)
    eng.set_mix("agent", ["caller", "sup"], 0.0)
    voice = {n: tones.tone([hz], 2.0, dbfs=-12.0) for n, hz in HZ.items()}
    to_sup: list[np.ndarray] = []
    to_agent: list[RtpPacket] = []
    sup_pos = 0
    for k in range(60):
        now = k * 0.02
        for name in ("caller", "agent"):
            frame = voice[name][k * FRAME : (k + 1) * FRAME]
            packet = RtpPacket(
                payload_type=0,
                sequence_number=k,
                timestamp=k * FRAME,
                ssrc=SSRC[name],
                payload=g711.encode(frame, "PCMU").tobytes(),
            )
            eng.receive(name, packet.to_bytes(), ADDR[name], now)
        size = (120, 200)[k % 2]  # 320 samples every two ticks, unevenly cut
        eng.receive_samples("sup", voice["sup"][sup_pos : sup_pos + size], now)
        sup_pos += size
        eng.tick(now + 0.01)
        out, _, frames = eng.drain()
        to_sup += [s for ch, s in frames if ch.id == "sup"]
        to_agent += [RtpPacket.parse(d) for ch, d, rtcp in out if ch.id == "agent" and not rtcp]
    assert all(s.size == FRAME for s in to_sup)
    assert tones_in(np.concatenate(to_sup[10:])) == {"caller", "agent"}
    agent_heard = g711.decode(b"".join(p.payload for p in to_agent[10:]), "PCMU")
    assert tones_in(agent_heard) == {"caller", "sup"}
