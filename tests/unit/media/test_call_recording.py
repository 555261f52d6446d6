"""Recording a conversation: the engine's ``record_call`` and the file the shell writes.

What a quality reviewer would notice: the caller on the left, the agent on the right, both in
step with the call's clock; silence (not the hold music, not a gap) while the parties are not
connected; the recording ends with the conversation (hang-up, transfer, stop, length limit)
and the file under the final name is always complete.
"""

from __future__ import annotations

import random
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_gateway.audio import tones
from media_gateway.media.engine import CALL_CHUNK_FRAMES, FRAME, MediaEngine, MediaError
from media_gateway.media.server import CallWav, part_path
from media_gateway.rtp import g711
from tests.unit.media.test_media_engine import rtp

CALLER = ("127.0.0.1", 40000)
AGENT = ("127.0.0.1", 40002)
OTHER = ("127.0.0.1", 40004)


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * 8000 / x.size


class Call:
    """Two phones talking through the engine, one 20 ms packet each per tick."""

    def __init__(self, eng: MediaEngine) -> None:
        self.eng = eng
        self.t = 0.0
        self.k = 0
        self.events: list[dict[str, Any]] = []
        self.voice = {
            "a": tones.tone([440.0], 60.0, dbfs=-12.0),
            "b": tones.tone([1000.0], 60.0, dbfs=-12.0),
            "c": tones.tone([2000.0], 60.0, dbfs=-12.0),
        }
        self.addr = {"a": CALLER, "b": AGENT, "c": OTHER}

    def talk(self, seconds: float, who: tuple[str, ...] = ("a", "b")) -> None:
        for _ in range(round(seconds / 0.02)):
            for chan in who:
                if chan not in self.eng.channels:
                    continue
                frame = self.voice[chan][self.k * FRAME : (self.k + 1) * FRAME]
                payload = g711.encode(frame, "PCMU").tobytes()
                packet = rtp(self.k + 1, self.k * FRAME, payload, ssrc=hash(chan) & 0xFFFF)
                self.eng.receive(chan, packet, self.addr[chan], self.t)
            self.k += 1
            self.t += 0.02
            self.eng.tick(self.t)
            self.events += self.eng.drain()[1]

    def recorded(self, op: str = "rc1") -> tuple[np.ndarray, dict[str, Any]]:
        """The stereo samples handed to the shell, and the final event."""
        chunks = [e["samples"] for e in self.events if e["event"] == "call_record_data"]
        done = [e for e in self.events if e["event"] == "call_record_done" and e["op"] == op]
        assert len(done) == 1, [e["event"] for e in self.events]
        return np.concatenate(chunks), done[0]


def two_party_call(seed: int = 1) -> Call:
    eng = MediaEngine(rng=random.Random(seed))
    for chan, addr in (("a", CALLER), ("b", AGENT)):
        eng.open(chan, 0.0, remote=addr)
    eng.bridge("a", "b", 0.0)
    return Call(eng)


def test_both_sides_are_recorded_side_by_side_until_a_hang_up() -> None:
    call = two_party_call()
    call.eng.record_call("a", "b", 0.0, op="rc1", path="/rec/x.wav")
    call.talk(3.0)
    call.eng.close("b", call.t)  # the agent hangs up
    call.events += call.eng.drain()[1]
    stereo, done = call.recorded()
    assert done["reason"] == "hangup" and done["chan"] == "a" and done["path"] == "/rec/x.wav"
    assert done["heard_sound"] is True
    assert stereo.dtype == np.int16 and stereo.shape == (150 * FRAME, 2)
    assert done["seconds"] == pytest.approx(3.0)
    # A second at a time reaches the shell (then the rest at the end).
    sizes = [e["samples"].shape[0] for e in call.events if e["event"] == "call_record_data"]
    assert sizes == [CALL_CHUNK_FRAMES * FRAME] * 3
    # What each phone sent, each on its own side (after the playout buffer's start-up delay).
    left, right = stereo[FRAME * 10 :, 0], stereo[FRAME * 10 :, 1]
    assert dominant_hz(left) == pytest.approx(440, abs=3)
    assert dominant_hz(right) == pytest.approx(1000, abs=3)
    sent_a = call.voice["a"][: 150 * FRAME].astype(np.float64)
    lag = int(np.argmax(np.correlate(stereo[:, 0].astype(np.float64), sent_a[:800], "valid")))
    assert 0 <= lag <= 5 * FRAME  # at most the playout buffer's few frames behind the call
    # The conversation keeps flowing: nothing else changed for the bridged phones.
    assert call.eng.get("a").call_rec is None and call.eng.call_recordings == {}


def test_on_hold_both_sides_are_silent_and_the_timeline_goes_on() -> None:
    call = two_party_call(2)
    call.eng.record_call("a", "b", 0.0, op="rc1", path="/rec/x.wav")
    call.talk(1.0)
    call.eng.play("a", tones.music_on_hold(5.0), call.t, op="moh", loop=True)  # hold
    call.talk(1.0)
    call.eng.stop_play("a", call.t)
    call.eng.bridge("a", "b", call.t)  # unhold
    call.talk(1.0)
    call.eng.stop_record_call("b", call.t)
    call.events += call.eng.drain()[1]
    stereo, done = call.recorded()
    assert done["reason"] == "stopped"
    assert stereo.shape[0] == 150 * FRAME  # three seconds: the hold is in the timeline
    held = stereo[50 * FRAME : 100 * FRAME]
    assert not held.any(), "silence on both sides while on hold"
    assert np.abs(stereo[110 * FRAME :, 0]).max() > 1000  # talking again, both sides
    assert np.abs(stereo[110 * FRAME :, 1]).max() > 1000


def test_a_transfer_ends_the_recording_and_the_new_conversation_is_not_in_it() -> None:
    call = two_party_call(3)
    call.eng.open("c", 0.0, remote=OTHER)
    call.eng.record_call("a", "b", 0.0, op="rc1", path="/rec/x.wav")
    call.talk(1.0, who=("a", "b", "c"))
    call.eng.bridge("a", "c", call.t)  # the caller goes on with someone else
    call.talk(1.0, who=("a", "b", "c"))
    stereo, done = call.recorded()
    assert done["reason"] == "transferred"
    assert stereo.shape[0] == 50 * FRAME
    assert all(call.eng.get(c).call_rec is None for c in "abc")


def test_the_recording_stops_at_its_length_limit() -> None:
    call = two_party_call(4)
    call.eng.record_call("a", "b", 0.0, op="rc1", path="/rec/x.wav", max_seconds=1.5)
    call.talk(2.0)
    stereo, done = call.recorded()
    assert done["reason"] == "max_length"
    assert stereo.shape[0] == 75 * FRAME


def test_refusals_name_the_problem() -> None:
    call = two_party_call(5)
    call.eng.open("c", 0.0, remote=OTHER)
    with pytest.raises(MediaError, match="two different channels"):
        call.eng.record_call("a", "a", 0.0, op="rc1", path="/x.wav")
    with pytest.raises(MediaError, match="no channel"):
        call.eng.record_call("a", "zz", 0.0, op="rc1", path="/x.wav")
    with pytest.raises(MediaError, match="positive"):
        call.eng.record_call("a", "b", 0.0, op="rc1", path="/x.wav", max_seconds=0)
    call.eng.record_call("a", "b", 0.0, op="rc1", path="/x.wav")
    with pytest.raises(MediaError, match="already in a recorded conversation"):
        call.eng.record_call("b", "c", 0.0, op="rc2", path="/y.wav")
    call.eng.stop_record_call("c", 0.0)  # not recorded: nothing happens
    assert set(call.eng.call_recordings) == {"rc1"}


def test_unrecorded_bridges_keep_the_relay_only_path() -> None:
    """A bridge between two RTP phones decodes nothing (no playout buffer) unless recorded;
    the buffers go again when the recording ends."""
    call = two_party_call(6)
    a, b = call.eng.get("a"), call.eng.get("b")
    assert a.jitter is None and b.jitter is None
    call.eng.record_call("a", "b", 0.0, op="rc1", path="/x.wav")
    assert a.jitter is not None and b.jitter is not None
    call.talk(0.2)
    call.eng.stop_record_call("a", call.t)
    assert a.jitter is None and b.jitter is None and not a.listens


def test_the_file_is_a_valid_wav_while_written_and_appears_complete(tmp_path: Path) -> None:
    path = tmp_path / "calls" / "r.wav"
    writer = CallWav(path)
    writer.open()
    second = np.zeros((8000, 2), dtype=np.int16)
    second[:, 0] = tones.tone([440.0], 1.0)
    second[:, 1] = tones.tone([1000.0], 1.0)
    writer.append(second)
    assert not path.exists()
    with wave.open(str(part_path(path))) as w:  # what is left if the media process dies now
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert w.getnframes() == 8000
    writer.append(second[:4000])
    writer.finish()
    assert path.exists() and not part_path(path).exists()
    with wave.open(str(path)) as w:
        assert w.getnframes() == 12000
        frames = np.frombuffer(w.readframes(12000), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(frames[:8000], second)
    assert writer.error is None


def test_a_recording_that_could_not_start_leaves_nothing(tmp_path: Path) -> None:
    writer = CallWav(tmp_path / "r.wav")
    writer.open()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_browser_side_delivering_uneven_frames_stays_in_step() -> None:
    """A WebRTC leg (a ``samples`` channel) hands over audio in bursts (two frames, then
    none): the recording still gets one frame per tick for it, nothing lost or doubled."""
    eng = MediaEngine(rng=random.Random(7))
    eng.open("a", 0.0, remote=CALLER)
    eng.open("w", 0.0, kind="samples")
    eng.bridge("a", "w", 0.0)
    eng.record_call("a", "w", 0.0, op="rc1", path="/x.wav")
    voice = tones.tone([1000.0], 3.0, dbfs=-12.0)
    events: list[dict[str, Any]] = []
    t = 0.0
    for k in range(100):
        if k % 2 == 0:  # 40 ms of audio every other tick
            eng.receive_samples("w", voice[k * FRAME : (k + 2) * FRAME], t)
        t += 0.02
        eng.tick(t)
        events += eng.drain()[1]
    eng.stop_record_call("a", t)
    events += eng.drain()[1]
    stereo = np.concatenate([e["samples"] for e in events if e["event"] == "call_record_data"])
    assert stereo.shape == (100 * FRAME, 2)
    right = stereo[:, 1]
    assert np.array_equal(right, voice[: 100 * FRAME])  # every sample, in order, on time
    assert not stereo[:, 0].any()  # the phone said nothing
