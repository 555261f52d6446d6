"""SRTP in the media engine: a phone with keys (a pylibsrtp peer) talks to a channel.

The peer protects what it sends and checks what it gets with libsrtp itself, so these tests
say what a real SRTP phone would notice: it hears our prompts and relayed audio, its keys and
voice reach the recorder, the key detector and the bridged party, and a forged, replayed or
wrongly keyed packet changes nothing.
"""

from __future__ import annotations

import base64
import random

import numpy as np
import pylibsrtp
import pytest

from media_gateway.audio import tones
from media_gateway.media import control as mc
from media_gateway.media.engine import FRAME, MediaEngine, MediaError
from media_gateway.rtp import g711
from media_gateway.rtp.dtmf import DtmfSender
from media_gateway.rtp.packet import RtpPacket
from media_gateway.rtp.rtcp import parse_compound

PHONE = ("127.0.0.1", 40000)
AGENT = ("127.0.0.1", 40002)
SUITE = "AES_CM_128_HMAC_SHA1_80"
OUR_KEY = bytes(range(30))
PHONE_KEY = bytes(range(40, 70))


def keys(tx: bytes = OUR_KEY, rx: bytes = PHONE_KEY, suite: str = SUITE) -> mc.SrtpKeys:
    return mc.SrtpKeys(
        suite=suite, tx_key=base64.b64encode(tx).decode(), rx_key=base64.b64encode(rx).decode()
    )


class Phone:
    """The far end: protects with its key, checks with ours."""

    def __init__(self, suite: str = SUITE, *, key: bytes = PHONE_KEY, ours: bytes = OUR_KEY):
        profile = {
            "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        }[suite]
        self.tx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
            )
        )
        self.rx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=ours, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
            )
        )
        self.seq = 100
        self.ts = 8000

    def rtp(self, payload: bytes, *, pt: int = 0, marker: bool = False) -> bytes:
        self.seq += 1
        self.ts += FRAME
        return self.tx.protect(
            RtpPacket(
                payload_type=pt,
                sequence_number=self.seq,
                timestamp=self.ts,
                ssrc=0xABCD,
                marker=marker,
                payload=payload,
            ).to_bytes()
        )

    def hear(self, data: bytes) -> RtpPacket:
        return RtpPacket.parse(self.rx.unprotect(data))


def srtp_channel(eng: MediaEngine, chan: str = "c", *, remote=PHONE) -> None:
    eng.open(chan, 0.0, remote=remote)
    eng.update(chan, srtp=keys())


def test_the_phone_hears_our_prompt_through_srtp_and_rtcp_is_protected_too() -> None:
    eng = MediaEngine(rng=random.Random(1), rtcp_interval=0.1)
    srtp_channel(eng)
    phone = Phone()
    prompt = tones.tone([1000.0], 0.4)
    eng.play("c", prompt, 0.0, op="p")
    rtp_out: list[bytes] = []
    rtcp_out: list[bytes] = []
    for k in range(1, 25):
        eng.tick(k * 0.02)
        out, _, _ = eng.drain()
        for _, data, is_rtcp in out:
            (rtcp_out if is_rtcp else rtp_out).append(data)
    assert len(rtp_out) == 20
    # on the wire it is not the audio: the payload is encrypted and a 10-byte tag follows
    plain_payload = g711.encode(prompt[:FRAME], "PCMU").tobytes()
    assert rtp_out[0][12 : 12 + FRAME] != plain_payload
    assert all(len(d) == 12 + FRAME + 10 for d in rtp_out)
    heard = b"".join(phone.hear(d).payload for d in rtp_out)
    decoded = g711.decode(heard, "PCMU")
    assert np.corrcoef(decoded.astype(float), prompt.astype(float))[0, 1] > 0.99
    assert rtcp_out
    for data in rtcp_out:
        assert parse_compound(phone.rx.unprotect_rtcp(data))  # authentic SRTCP


def test_the_phones_voice_and_keys_reach_the_recorder_and_the_key_detector() -> None:
    eng = MediaEngine(rng=random.Random(2))
    srtp_channel(eng)
    phone = Phone()
    eng.record("c", 0.0, op="r", path="/tmp/unused.wav", max_seconds=0.5)
    voice = tones.tone([440.0], 0.6)
    t = 0.0
    for i in range(0, voice.size - FRAME + 1, FRAME):
        eng.receive("c", phone.rtp(g711.encode(voice[i : i + FRAME], "PCMU").tobytes()), PHONE, t)
        eng.tick(t)
        t += 0.02
    sender = DtmfSender(payload_type=101, ssrc=0xABCD)
    for sp in sender.packets("7", seq=phone.seq + 1, timestamp=phone.ts + FRAME, duration_ms=100):
        phone.seq = sp.packet.sequence_number
        eng.receive("c", phone.tx.protect(sp.packet.to_bytes()), PHONE, t)
        t += 0.02
        eng.tick(t)
    for _ in range(10):
        t += 0.02
        eng.tick(t)
    _, events, _ = eng.drain()
    done = next(e for e in events if e["event"] == "record_done")
    assert done["heard_sound"] and done["seconds"] == pytest.approx(0.5)
    spectrum = np.abs(np.fft.rfft(done["samples"].astype(float)))
    assert abs(np.argmax(spectrum) * 8000 / done["samples"].size - 440) < 10
    assert [e["digit"] for e in events if e["event"] == "dtmf"] == ["7"]
    stats = eng.channel_stats(eng.get("c"))
    assert stats["srtp_failed"] == 0 and stats["packets_in"] > 20


def test_a_bridge_between_an_srtp_phone_and_a_plain_one_carries_audio_both_ways() -> None:
    eng = MediaEngine(rng=random.Random(3))
    srtp_channel(eng, "caller")
    eng.open("agent", 0.0, remote=AGENT)
    eng.bridge("caller", "agent", 0.0)
    phone = Phone()
    payload = g711.encode(tones.tone([500.0], 0.02), "PCMU").tobytes()
    eng.receive("caller", phone.rtp(payload, marker=True), PHONE, 0.01)
    out, _, _ = eng.drain()
    (to_agent,) = [d for ch, d, r in out if ch.id == "agent" and not r]
    assert RtpPacket.parse(to_agent).payload == payload  # plain to the plain side
    agent_payload = g711.encode(tones.tone([700.0], 0.02), "PCMU").tobytes()
    plain = RtpPacket(
        payload_type=0, sequence_number=5, timestamp=160, ssrc=0x77, payload=agent_payload
    )
    eng.receive("agent", plain.to_bytes(), AGENT, 0.02)
    out, _, _ = eng.drain()
    (to_phone,) = [d for ch, d, r in out if ch.id == "caller" and not r]
    assert phone.hear(to_phone).payload == agent_payload  # protected to the SRTP phone


def test_forged_replayed_and_wrongly_keyed_packets_are_dropped_and_counted() -> None:
    eng = MediaEngine(rng=random.Random(4))
    srtp_channel(eng)
    eng.set_echo("c", True, 0.0)
    phone = Phone()
    good = phone.rtp(b"\xff" * FRAME)
    eng.receive("c", good, PHONE, 0.0)
    out, _, _ = eng.drain()
    assert len([d for _, d, r in out if not r]) == 1  # the echo of an authentic packet
    stranger = ("127.0.0.1", 45000)
    forged = bytearray(phone.rtp(b"\xff" * FRAME))
    forged[20] ^= 0x01
    eng.receive("c", bytes(forged), stranger, 0.02)  # a bit flipped: fails authentication
    eng.receive("c", good, stranger, 0.04)  # replayed
    other_key = Phone(key=bytes(30))
    eng.receive("c", other_key.rtp(b"\xff" * FRAME), stranger, 0.06)
    eng.receive("c", b"\x80\x00" + bytes(10), stranger, 0.08)  # too short for a tag
    eng.receive_rtcp("c", b"\x80\xc8\x00\x01" + bytes(30), stranger, 0.1)  # unauthenticated
    out, _, _ = eng.drain()
    assert not [d for _, d, r in out if not r]  # nothing echoed
    ch = eng.get("c")
    assert ch.remote == PHONE and ch.rtcp_remote is None  # a forgery moved nothing
    assert eng.channel_stats(ch)["srtp_failed"] == 5
    assert ch.packets_in == 1


def test_the_32_bit_tag_suite_works_too() -> None:
    eng = MediaEngine(rng=random.Random(5))
    eng.open("c", 0.0, remote=PHONE)
    eng.update("c", srtp=keys(suite="AES_CM_128_HMAC_SHA1_32"))
    phone = Phone("AES_CM_128_HMAC_SHA1_32")
    eng.set_echo("c", True, 0.0)
    eng.receive("c", phone.rtp(b"\x55" * FRAME), PHONE, 0.0)
    out, _, _ = eng.drain()
    (echoed,) = [d for _, d, r in out if not r]
    assert len(echoed) == 12 + FRAME + 4
    assert phone.hear(echoed).payload == b"\x55" * FRAME


def test_keys_follow_updates_and_bad_keys_are_refused() -> None:
    eng = MediaEngine(rng=random.Random(6))
    srtp_channel(eng)
    streams = eng.get("c").srtp
    assert streams is not None
    eng.update("c", srtp=keys(), direction="sendonly")  # a hold: same keys, same streams
    assert eng.get("c").srtp is streams
    eng.update("c", srtp=keys(tx=bytes(30)))  # re-keyed
    assert eng.get("c").srtp is not streams
    eng.update("c", srtp=None)
    assert eng.get("c").srtp is None
    with pytest.raises(MediaError, match="not supported"):
        eng.update("c", srtp=keys(suite="AEAD_AES_256_GCM"))
    with pytest.raises(MediaError, match="has 5 bytes"):
        eng.update("c", srtp=keys(tx=bytes(5)))
    bad = mc.SrtpKeys(suite=SUITE, tx_key="***", rx_key=keys().rx_key)
    with pytest.raises(MediaError, match="not base64"):
        eng.update("c", srtp=bad)


def test_the_keys_cross_the_control_protocol() -> None:
    op = mc.Update(chan="c", codec="PCMU", pt=0, te_pt=101, direction="sendrecv", srtp=keys())
    line = mc.encode_request(3, op)
    assert mc.decode_request(mc.decode_line(line)) == op
    plain = mc.Update(chan="c", codec="PCMU", pt=0, te_pt=None, direction="sendrecv")
    assert mc.decode_request(mc.decode_line(mc.encode_request(4, plain))) == plain
    with pytest.raises(MediaError, match="srtp"):
        mc.decode_request(
            {"op": "update", "chan": "c", "codec": "PCMU", "pt": 0, "te_pt": None,
             "direction": "sendrecv", "srtp": {"suite": SUITE, "tx_key": "x"}}
        )  # fmt: skip


def _hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(float) * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * 8000 / x.size


def test_an_srtp_call_is_recorded_and_a_supervisor_hears_it() -> None:
    """Two SRTP phones bridged: the stereo recording has each voice on its side, and a plain
    supervisor leg mixing both hears both (their audio is used after decryption)."""
    eng = MediaEngine(rng=random.Random(7))
    caller_key, agent_key = bytes(range(60, 90)), bytes(range(90, 120))
    eng.open("caller", 0.0, remote=PHONE)
    eng.update("caller", srtp=keys(rx=caller_key))
    eng.open("agent", 0.0, remote=AGENT)
    eng.update("agent", srtp=keys(tx=bytes(range(1, 31)), rx=agent_key))
    eng.open("sup", 0.0, remote=("127.0.0.1", 40004))
    eng.bridge("caller", "agent", 0.0)
    eng.record_call("caller", "agent", 0.0, op="rc", path="/rec/x.wav")
    eng.set_mix("sup", ["caller", "agent"], 0.0)
    caller, agent = Phone(key=caller_key), Phone(key=agent_key)
    voice_c, voice_a = tones.tone([400.0], 1.2), tones.tone([1200.0], 1.2)
    heard_by_sup: list[bytes] = []
    t = 0.0
    for i in range(0, voice_c.size - FRAME + 1, FRAME):
        for chan, phone, voice, addr in (
            ("caller", caller, voice_c, PHONE),
            ("agent", agent, voice_a, AGENT),
        ):
            payload = g711.encode(voice[i : i + FRAME], "PCMU").tobytes()
            eng.receive(chan, phone.rtp(payload), addr, t)
        t += 0.02
        eng.tick(t)
        out, _, _ = eng.drain()
        heard_by_sup += [d for ch, d, r in out if ch.id == "sup" and not r]
    eng.stop_record_call("caller", t)
    _, events, _ = eng.drain()
    chunks = [e["samples"] for e in events if e["event"] == "call_record_data"]
    stereo = np.concatenate(chunks)[4 * FRAME :]  # past the playout buffer's start
    assert abs(_hz(stereo[:, 0]) - 400) < 20 and abs(_hz(stereo[:, 1]) - 1200) < 20
    mixed = g711.decode(b"".join(RtpPacket.parse(d).payload for d in heard_by_sup), "PCMU")
    spectrum = np.abs(np.fft.rfft(mixed[8 * FRAME :].astype(float)))
    freqs = np.fft.rfftfreq(mixed[8 * FRAME :].size, 1 / 8000)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(top_two[0] - 400) < 20 and abs(top_two[1] - 1200) < 20


def test_srtcp_multiplexed_on_the_rtp_port_is_accepted() -> None:
    from media_gateway.rtp.rtcp import ReceiverReport, build_compound, cname_sdes

    eng = MediaEngine(rng=random.Random(8))
    srtp_channel(eng)
    phone = Phone()
    report = build_compound([ReceiverReport(ssrc=0xABCD, reports=()), cname_sdes(0xABCD, "p")])
    eng.receive("c", phone.tx.protect_rtcp(report), PHONE, 0.0)  # rtcp-mux (RFC 5761)
    eng.receive("c", report, PHONE, 0.02)  # the same, unprotected: dropped
    assert eng.channel_stats(eng.get("c"))["srtp_failed"] == 1
    assert eng.get("c").bad_packets == 0
