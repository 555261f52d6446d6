"""The load generator's RFC 4733 keys: each key its own event, however late the generator's loop."""

from __future__ import annotations

import itertools
import random

from media_gateway.rtp.dtmf import DtmfDigit, DtmfReceiver, TelephoneEvent
from media_gateway.rtp.packet import RtpPacket
from sim.load.sipua import RtpStream


def test_keys_pressed_before_a_tick_get_their_own_timestamps_and_are_all_heard() -> None:
    stream = RtpStream(b"\xff" * 160, rng=random.Random(7))
    stream.dtmf_pt = 101
    for digit in "4321#":  # the generator's loop late: five keys before one frame went out
        stream.send_event(digit)
    packets = [RtpPacket.parse(p) for p in stream.queue if isinstance(p, bytes)]
    starts: dict[str | None, int] = {}
    for p in packets:
        starts.setdefault(TelephoneEvent.parse(p.payload).digit, p.timestamp)
    assert len(set(starts.values())) == 5
    ts = list(starts.values())
    # each event starts when its first packet goes out, after the previous one's 8 packets
    assert [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(ts)] == [160 * 8] * 4
    assert len({p.sequence_number for p in packets}) == len(packets)
    rx = DtmfReceiver()
    heard = [d.digit for i, p in enumerate(packets) for d in rx.feed(p, i * 0.02)
             if isinstance(d, DtmfDigit)]  # fmt: skip
    assert heard == list("4321#")
