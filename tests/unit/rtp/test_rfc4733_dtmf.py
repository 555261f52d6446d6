"""RFC 4733 telephone-event codec, receiver state machine, sender train; SIP INFO bodies."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.rtp.dtmf import (
    DtmfDigit,
    DtmfReceiver,
    DtmfSender,
    DtmfStarted,
    TelephoneEvent,
    build_dtmf_relay,
    event_code,
    parse_info_body,
)
from media_gateway.rtp.packet import RtpPacket

PT = 101


def pkt(
    event: int, *, ts: int, seq: int, end: bool = False, duration: int = 0, ssrc: int = 1
) -> RtpPacket:
    ev = TelephoneEvent(event=event, end=end, volume=10, duration=duration)
    return RtpPacket(
        payload_type=PT, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=ev.to_bytes()
    )


def digits(events: list[DtmfDigit | DtmfStarted]) -> list[str]:
    return [e.digit for e in events if isinstance(e, DtmfDigit)]


def test_payload_codec() -> None:
    data = TelephoneEvent(event=11, end=True, volume=7, duration=800).to_bytes()
    assert data == bytes([11, 0x87, 0x03, 0x20])
    ev = TelephoneEvent.parse(data)
    assert (ev.event, ev.end, ev.volume, ev.duration, ev.digit) == (11, True, 7, 800, "#")
    assert TelephoneEvent(event=16).digit is None
    with pytest.raises(ValueError, match="shorter than 4 bytes"):
        TelephoneEvent.parse(b"\x01\x02")
    with pytest.raises(ValueError, match=re.escape("volume must be 0..63, got 64")):
        TelephoneEvent(event=1, volume=64).to_bytes()
    assert [event_code(d) for d in "0*#Ad"] == [0, 10, 11, 12, 15]
    with pytest.raises(ValueError, match="not a DTMF digit: 'X'"):
        event_code("X")


def test_typical_train_reports_once_with_duration() -> None:
    rx = DtmfReceiver()
    out: list[DtmfDigit | DtmfStarted] = []
    t = 10.0
    for i, dur in enumerate((400, 800, 1200)):
        out += rx.feed(pkt(5, ts=16000, seq=i, duration=dur), t + 0.05 * i)
    for i in range(3):  # three end packets
        out += rx.feed(pkt(5, ts=16000, seq=3 + i, end=True, duration=1280), t + 0.16 + 0.02 * i)
    assert out[0] == DtmfStarted(digit="5", at=10.0)
    assert out[1:] == [DtmfDigit(digit="5", method="rfc4733", at=10.0, duration_ms=160.0)]
    assert rx.next_deadline() is None
    assert rx.poll(100.0) == []


def test_same_digit_twice_is_two_events() -> None:
    rx = DtmfReceiver()
    out = []
    for ts, base in ((0, 0.0), (2400, 0.3)):
        out += rx.feed(pkt(1, ts=ts, seq=int(base * 100), duration=400), base)
        for k in range(3):
            out += rx.feed(
                pkt(1, ts=ts, seq=int(base * 100) + 1 + k, end=True, duration=800), base + 0.1
            )
    assert digits(out) == ["1", "1"]


def test_lost_end_packets_reported_by_timeout() -> None:
    rx = DtmfReceiver(end_timeout=0.25)
    out = rx.feed(pkt(9, ts=0, seq=1, duration=400), 1.0)
    out += rx.feed(pkt(9, ts=0, seq=2, duration=800), 1.05)
    assert digits(out) == []
    assert rx.next_deadline() == pytest.approx(1.30)
    assert rx.poll(1.29) == []
    (d,) = rx.poll(1.30)
    assert (d.digit, d.at, d.duration_ms) == ("9", 1.0, 100.0)
    # a straggling end packet of the same event is absorbed
    assert rx.feed(pkt(9, ts=0, seq=3, end=True, duration=960), 1.4) == []


def test_lost_end_then_next_event_finishes_previous() -> None:
    rx = DtmfReceiver()
    out = rx.feed(pkt(2, ts=0, seq=1, duration=400), 0.0)
    out += rx.feed(pkt(3, ts=1600, seq=2, duration=400), 0.2)
    assert digits(out) == ["2"]
    out = rx.feed(pkt(3, ts=1600, seq=3, end=True, duration=800), 0.25)
    assert digits(out) == ["3"]


def test_only_end_packets_arrive() -> None:
    rx = DtmfReceiver()
    out = rx.feed(pkt(12, ts=480, seq=1, end=True, duration=640), 2.0)
    assert digits(out) == ["A"]
    assert rx.feed(pkt(12, ts=480, seq=2, end=True, duration=640), 2.02) == []


def test_late_packet_of_older_event_ignored_and_non_dtmf_events() -> None:
    rx = DtmfReceiver()
    rx.feed(pkt(4, ts=8000, seq=10, duration=400), 1.0)
    assert rx.feed(pkt(7, ts=4000, seq=5, duration=400), 1.01) == []  # older timestamp
    assert rx.feed(pkt(16, ts=9000, seq=11, duration=400), 1.02) == []  # flash: not a digit
    bad = RtpPacket(payload_type=PT, sequence_number=12, timestamp=9000, ssrc=1, payload=b"\x01")
    assert rx.feed(bad, 1.03) == []


def test_ssrc_change_is_new_event() -> None:
    rx = DtmfReceiver()
    out = rx.feed(pkt(1, ts=0, seq=1, end=True, duration=800, ssrc=1), 0.0)
    out += rx.feed(pkt(1, ts=0, seq=1, end=True, duration=800, ssrc=2), 0.1)
    assert digits(out) == ["1", "1"]


def test_sender_train_shape() -> None:
    tx = DtmfSender(payload_type=PT, ssrc=77, interval_ms=50)
    train = tx.packets("#", seq=65534, timestamp=123456, duration_ms=120)
    offsets = [round(p.offset * 1000) for p in train]
    assert offsets == [0, 50, 100, 120, 140, 160]
    assert [p.packet.sequence_number for p in train] == [65534, 65535, 0, 1, 2, 3]
    assert {p.packet.timestamp for p in train} == {123456}
    assert [p.packet.marker for p in train] == [True] + [False] * 5
    evs = [TelephoneEvent.parse(p.packet.payload) for p in train]
    assert [e.duration for e in evs] == [400, 800, 960, 960, 960, 960]
    assert [e.end for e in evs] == [False, False, False, True, True, True]
    assert {e.event for e in evs} == {11}
    with pytest.raises(ValueError, match="duration must be positive"):
        tx.packets("1", seq=0, timestamp=0, duration_ms=0)


@settings(max_examples=60, deadline=None)
@given(
    keys=st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_sender_to_receiver_with_loss_and_duplicates(keys: str, seed: int) -> None:
    """Whatever subset of the train survives (at least one packet), each key is reported once."""
    rng = random.Random(seed)
    tx = DtmfSender(payload_type=PT, ssrc=5)
    rx = DtmfReceiver()
    got: list[str] = []
    seq, ts, t0 = 100, 0, 0.0
    for k in keys:
        train = tx.packets(k, seq=seq, timestamp=ts, duration_ms=rng.choice([60, 100, 250]))
        keep = [p for p in train if rng.random() > 0.3] or [rng.choice(train)]
        keep += [p for p in keep if rng.random() < 0.3]  # duplicates
        keep.sort(key=lambda p: p.offset)
        for p in keep:
            now = t0 + p.offset
            for ev in rx.poll(now) + rx.feed(p.packet, now):
                if isinstance(ev, DtmfDigit):
                    got.append(ev.digit)
        seq += len(train)
        ts += 8000
        t0 += 1.0
    deadline = rx.next_deadline()
    if deadline is not None:
        got += [d.digit for d in rx.poll(deadline)]
    assert "".join(got) == keys


def test_info_bodies() -> None:
    d = parse_info_body("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", at=3.0)
    assert d == DtmfDigit(digit="5", method="info", at=3.0, duration_ms=160.0)
    assert (
        parse_info_body("Application/DTMF-Relay; charset=x", "signal= #\nduration=250", at=0).digit
        == "#"
    )
    assert parse_info_body("application/dtmf-relay", "Signal=11\r\n", at=0).digit == "#"
    assert parse_info_body("application/dtmf", b"*\r\n", at=1.0).digit == "*"
    assert parse_info_body("application/dtmf", "10", at=1.0).digit == "*"
    with pytest.raises(ValueError, match="dtmf-relay body has no Signal line"):
        parse_info_body("application/dtmf-relay", "Duration=100", at=0)
    with pytest.raises(ValueError, match="dtmf-relay Duration is not a number: 'x'"):
        parse_info_body("application/dtmf-relay", "Signal=1\r\nDuration=x", at=0)
    with pytest.raises(ValueError, match="not a DTMF digit: 'Q'"):
        parse_info_body("application/dtmf", "Q", at=0)
    with pytest.raises(ValueError, match="not a DTMF INFO content type: 'text/plain'"):
        parse_info_body("text/plain", "5", at=0)
    ctype, body = build_dtmf_relay("a", 100)
    assert (ctype, body) == ("application/dtmf-relay", b"Signal=A\r\nDuration=100\r\n")
    assert parse_info_body(ctype, body, at=0).digit == "A"


def test_a_key_held_down_is_reported_once_while_held_not_only_at_its_release() -> None:
    from media_gateway.rtp.dtmf import DtmfDigit, DtmfReceiver, TelephoneEvent
    from media_gateway.rtp.packet import RtpPacket

    rx = DtmfReceiver()
    reported: list[tuple[str, float]] = []
    for i in range(150):  # 3 s of updates every 20 ms, no end bit yet
        payload = TelephoneEvent(event=1, duration=160 * (i + 1)).to_bytes()
        pkt = RtpPacket(
            payload_type=101, sequence_number=i, timestamp=4000, ssrc=9, payload=payload
        )
        reported += [
            (d.digit, i * 0.02) for d in rx.feed(pkt, i * 0.02) if isinstance(d, DtmfDigit)
        ]
    end = TelephoneEvent(event=1, end=True, duration=24000).to_bytes()
    for j in range(3):
        pkt = RtpPacket(
            payload_type=101, sequence_number=150 + j, timestamp=4000, ssrc=9, payload=end
        )
        reported += [(d.digit, 3.0) for d in rx.feed(pkt, 3.0) if isinstance(d, DtmfDigit)]
    assert [d for d, _ in reported] == ["1"]
    assert reported[0][1] <= 0.5


def test_a_new_key_at_a_reused_timestamp_is_a_new_event() -> None:
    # A sender whose clock stalled between two keys (found by the soak: "4321#" lost keys)
    # sends the second key's train with the first one's timestamp: still two keys.
    rx = DtmfReceiver()
    out: list[DtmfDigit | DtmfStarted] = []
    for code, base in ((4, 0.0), (3, 0.16)):
        out += rx.feed(pkt(code, ts=800, seq=int(base * 100), duration=400), base)
        for k in range(3):
            out += rx.feed(pkt(code, ts=800, seq=int(base * 100) + 1 + k, end=True, duration=800),
                           base + 0.1 + 0.02 * k)  # fmt: skip
    assert digits(out) == ["4", "3"]
    # a straggling end packet of the first key is still absorbed
    assert rx.feed(pkt(4, ts=800, seq=40, end=True, duration=800), 0.4) == []
