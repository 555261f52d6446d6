"""Property: over random loss patterns, every SIP call ends exactly once on each side and the
endpoints forget every transaction, dialog and timer once the timers have run out."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.sip import events as ev

_PATH = Path(__file__).resolve().parents[1] / "unit" / "sip" / "test_endpoint.py"
_spec = importlib.util.spec_from_file_location("_sip_endpoint_pair", _PATH)
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
sys.modules["_sip_endpoint_pair"] = _mod
_spec.loader.exec_module(_mod)
UacUasPair = _mod.UacUasPair
UAS_ADDR = _mod.UAS_ADDR
SDP = _mod.SDP

PLANS = ("answer_uac_bye", "answer_uas_bye", "reject", "cancel")


class LossPattern:
    """Drops messages following a drawn pattern, never more than 3 in a row (a call whose every
    BYE retransmission is lost stays up on the peer; see the endpoint's known limits)."""

    def __init__(self, pattern: list[bool]) -> None:
        self.pattern = pattern or [False]
        self.i = 0
        self.run = 0

    def __call__(self, direction: str, data: bytes) -> bool:
        drop = self.pattern[self.i % len(self.pattern)]
        self.i += 1
        if drop and self.run < 3:
            self.run += 1
            return True
        self.run = 0
        return False


def _drive(pair: Any, plans: dict[int, str], drop: LossPattern) -> None:
    seen_uac: set[int] = set()
    seen_uas: set[int] = set()
    for _ in range(20_000):
        pair.transfer(drop)
        acted = False
        for e in pair.uas_events[len(seen_uas) :]:
            seen_uas.add(len(seen_uas))
            if isinstance(e, ev.InviteReceived):
                plan = plans[id(_by_call_id(pair, e.call.call_id))]
                if plan == "reject":
                    pair.uas.respond(e.call, 486, now=pair.now)
                elif plan != "cancel":
                    pair.uas.respond(e.call, 180, now=pair.now)
                    pair.uas.respond(e.call, 200, body=SDP, now=pair.now)
                else:
                    pair.uas.respond(e.call, 180, now=pair.now)
                acted = True
            elif isinstance(e, ev.AckReceived):
                if plans[id(_by_call_id(pair, e.call.call_id))] == "answer_uas_bye":
                    pair.uas.bye(e.call, now=pair.now)
                    acted = True
            elif isinstance(e, ev.AckTimedOut):
                pair.uas.bye(e.call, now=pair.now)
                acted = True
        for e in pair.uac_events[len(seen_uac) :]:
            seen_uac.add(len(seen_uac))
            uac_plan = plans.get(id(getattr(e, "call", None)))
            if isinstance(e, ev.CallAnswered) and uac_plan in ("answer_uac_bye", "cancel"):
                pair.uac.bye(e.call, now=pair.now)
                acted = True
            elif isinstance(e, ev.CallProgress) and uac_plan == "cancel":
                pair.uac.cancel(e.call, now=pair.now)
                acted = True
        if acted:
            continue
        if not pair.advance(drop):
            return
    raise AssertionError("flows did not settle")


_CALLS: dict[str, Any] = {}


def _by_call_id(pair: Any, call_id: str) -> Any:
    return _CALLS[call_id]


@settings(max_examples=100, deadline=None)
@given(
    plans=st.lists(st.sampled_from(PLANS), min_size=1, max_size=6),
    pattern=st.lists(st.booleans(), min_size=1, max_size=40),
    transport=st.sampled_from(["udp", "udp", "tcp"]),
)
def test_every_call_ends_once_and_nothing_leaks(
    plans: list[str], pattern: list[bool], transport: str
) -> None:
    pair = UacUasPair(transport=transport)
    drop = LossPattern(pattern if transport == "udp" else [False])
    by_handle: dict[int, str] = {}
    _CALLS.clear()
    for n, plan in enumerate(plans):
        call = pair.uac.invite(
            f"sip:{n}@127.0.0.2",
            UAS_ADDR,
            from_uri="sip:a@127.0.0.1",
            sdp=SDP,
            now=pair.now,
        )
        by_handle[id(call)] = plan
        _CALLS[call.call_id] = call
    _drive(pair, by_handle, drop)
    # The one thing loss may leave behind (a documented limit): when every copy of the UAS's
    # BYE was lost, the UAC's call is still up; only media timeouts can end it. Each such call
    # is counted by the UAS and ended there.
    stranded = pair.uac.active_calls()
    assert len(stranded) <= pair.uas.stats["bye_timeouts"]
    for call in stranded:
        ended_at_uas = [e for e in pair.of("uas", ev.CallEnded) if e.call.call_id == call.call_id]
        assert [e.reason for e in ended_at_uas] == ["bye"]
        pair.uac.bye(call, now=pair.now)
    _drive(pair, by_handle, drop)
    pair.assert_no_leaks()
    uac_ended = [id(e.call) for e in pair.of("uac", ev.CallEnded)]
    assert sorted(uac_ended) == sorted(by_handle)  # once per call
    uas_seen = [e.call for e in pair.of("uas", ev.InviteReceived)]
    uas_ended = [e.call for e in pair.of("uas", ev.CallEnded)]
    assert len({id(c) for c in uas_seen}) == len(uas_seen)  # no duplicate calls
    assert sorted(map(id, uas_ended)) == sorted(map(id, uas_seen))
    # BYE/CANCEL responses are the endpoint's business, not the TU's.
    assert pair.of("uac", ev.ResponseReceived) == pair.of("uas", ev.ResponseReceived) == []


_WIRE = [
    (
        b"INVITE sip:100@127.0.0.2 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:100@y>\r\n"
        b"Call-ID: fz1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@10.0.0.1>\r\n"
        b"Record-Route: <sip:p1;lr>\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0"
    ),
    (
        b"BYE sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKdef\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:100@y>;tag=2\r\nCall-ID: fz1\r\nCSeq: 2 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    ),
    (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKxyz\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:100@y>;tag=2\r\nCall-ID: fz1\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:b@10.0.0.2>\r\nContent-Length: 0\r\n\r\n"
    ),
]


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, len(_WIRE) - 1),
    edits=st.lists(
        st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=4)), min_size=1, max_size=5
    ),
)
def test_mutated_input_never_raises_and_replies_only_to_the_source(
    which: int, edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(_WIRE[which])
    for pos, chunk in edits:
        pos = min(pos, len(data))
        data[pos : pos + len(chunk)] = chunk
    pair = UacUasPair()
    ep = pair.uas
    source = ("192.0.2.9", 40001)
    ep.receive(bytes(data), source, 0.0)
    ep.receive(bytes(data), source, 0.1)  # and its retransmission
    for e in ep.events():
        if isinstance(e, ev.InviteReceived):
            ep.respond(e.call, 200, body=b"v=0", now=0.2)
    for out in ep.datagrams_to_send():
        assert out.dest == source
    pair.now = 0.2
    pair.run_out(lambda d, data: True)
    for e in pair.of("uas", ev.AckTimedOut):
        ep.bye(e.call, now=pair.now)
    pair.run_out(lambda d, data: True)
    assert ep.transaction_count() == 0 and ep.active_calls() == []
