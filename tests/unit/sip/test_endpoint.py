"""SipEndpoint flows through an in-memory UAC/UAS pair: no sockets, timers by time travel."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from media_gateway.sip import events as ev
from media_gateway.sip.dialog import CallHandle
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.errors import TransactionError
from media_gateway.sip.message import SipResponse
from media_gateway.sip.parser import parse_message

Drop = Callable[[str, bytes], bool]
UAC_ADDR = ("127.0.0.1", 5070)
UAS_ADDR = ("127.0.0.2", 5060)


class UacUasPair:
    def __init__(self, *, transport: str = "udp", seed: int = 1, **cfg: object) -> None:
        self.transport = transport
        self.uac = SipEndpoint(
            EndpointConfig(host=UAC_ADDR[0], port=UAC_ADDR[1], transport=transport, **cfg),  # type: ignore[arg-type]
            rng=random.Random(seed),
        )
        self.uas = SipEndpoint(
            EndpointConfig(host=UAS_ADDR[0], port=UAS_ADDR[1], transport=transport, **cfg),  # type: ignore[arg-type]
            rng=random.Random(seed + 1000),
        )
        self.now = 0.0
        self.uac_events: list[ev.SipEvent] = []
        self.uas_events: list[ev.SipEvent] = []
        self.sent: list[tuple[str, bytes]] = []

    def transfer(self, drop: Callable[[str, bytes], bool] | None = None) -> int:
        """Move every pending message across; ``drop(direction, data)`` may lose some."""
        moved = 0
        for _ in range(1000):
            progressed = False
            for name, src, dst, src_addr in (
                ("uac->uas", self.uac, self.uas, UAC_ADDR),
                ("uas->uac", self.uas, self.uac, UAS_ADDR),
            ):
                for out in src.datagrams_to_send():
                    progressed = True
                    self.sent.append((name, out.data))
                    if drop is not None and drop(name, out.data):
                        continue
                    moved += 1
                    dst.receive(out.data, src_addr, self.now, transport=self.transport)
            self.uac_events.extend(self.uac.events())
            self.uas_events.extend(self.uas.events())
            if not progressed:
                return moved
        raise AssertionError("transfer did not settle")

    def advance(self, drop: Callable[[str, bytes], bool] | None = None) -> bool:
        """Jump to the next deadline of either side and fire it; False when none is left."""
        deadlines = [
            d for d in (self.uac.next_deadline(), self.uas.next_deadline()) if d is not None
        ]
        if not deadlines:
            return False
        self.now = max(self.now, min(deadlines))
        self.uac.handle_timer(self.now)
        self.uas.handle_timer(self.now)
        self.transfer(drop)
        return True

    def run_out(
        self, drop: Callable[[str, bytes], bool] | None = None, limit: int = 10_000
    ) -> None:
        for _ in range(limit):
            if not self.advance(drop):
                return
        raise AssertionError("timers never ran out")

    def of(self, side: str, kind: type) -> list[Any]:
        events = self.uac_events if side == "uac" else self.uas_events
        return [e for e in events if isinstance(e, kind)]

    def assert_no_leaks(self) -> None:
        self.run_out()
        assert self.uac.transaction_count() == 0
        assert self.uas.transaction_count() == 0
        assert self.uac.active_calls() == []
        assert self.uas.active_calls() == []
        assert self.uac.next_deadline() is None
        assert self.uas.next_deadline() is None
        assert self.uac.unanswered_server_transactions() == 0
        assert self.uas.unanswered_server_transactions() == 0


def first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode()


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def start_call(pair: UacUasPair, drop: Drop | None = None) -> CallHandle:
    call = pair.uac.invite(
        "sip:100@127.0.0.2",
        UAS_ADDR,
        from_uri="sip:a@127.0.0.1",
        to_uri="sip:100@127.0.0.2",
        sdp=SDP,
        now=pair.now,
    )
    pair.transfer(drop)
    return call


def answer(pair: UacUasPair, drop: Drop | None = None) -> CallHandle:
    inv = pair.of("uas", ev.InviteReceived)[-1]
    pair.uas.respond(inv.call, 180, now=pair.now)
    pair.transfer(drop)
    pair.uas.respond(inv.call, 200, body=SDP, now=pair.now)
    pair.transfer(drop)
    return inv.call


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_full_call_and_no_leak(transport: str) -> None:
    pair = UacUasPair(transport=transport)
    call = start_call(pair)
    assert [first_line(d) for _, d in pair.sent][:2] == [
        "INVITE sip:100@127.0.0.2 SIP/2.0",
        "SIP/2.0 100 Trying",
    ]
    uas_call = answer(pair)
    assert [e.status for e in pair.of("uac", ev.CallProgress)] == [180]
    (answered,) = pair.of("uac", ev.CallAnswered)
    assert answered.call is call and answered.sdp == SDP
    assert len(pair.of("uas", ev.AckReceived)) == 1
    assert uas_call.state == "confirmed" and call.state == "confirmed"
    pair.uac.bye(call, now=pair.now)
    pair.transfer()
    (end_uac,) = pair.of("uac", ev.CallEnded)
    (end_uas,) = pair.of("uas", ev.CallEnded)
    assert (end_uac.by, end_uas.by, end_uas.reason) == ("local", "remote", "bye")
    if transport == "tcp":  # reliable: no retransmission timers, D/K/J zero
        assert not any(first_line(d).startswith("INVITE") for _, d in pair.sent[1:])
    pair.assert_no_leaks()
    assert len(pair.of("uac", ev.CallEnded)) == 1 and len(pair.of("uas", ev.CallEnded)) == 1


def test_lost_200_is_retransmitted_by_uas_core() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    lost = {"n": 0}

    def drop_first_200(direction: str, data: bytes) -> bool:
        if direction == "uas->uac" and data.startswith(b"SIP/2.0 200") and lost["n"] == 0:
            lost["n"] += 1
            return True
        return False

    answer(pair, drop_first_200)
    assert pair.of("uac", ev.CallAnswered) == []
    pair.advance()  # T1 later the UAS re-sends the 2xx (§13.3.1.4)
    assert len(pair.of("uac", ev.CallAnswered)) == 1
    assert len(pair.of("uas", ev.AckReceived)) == 1
    pair.uas.bye(pair.of("uas", ev.InviteReceived)[0].call, now=pair.now)
    pair.transfer()
    assert pair.of("uac", ev.CallEnded)[0].call is call
    pair.assert_no_leaks()


def test_lost_ack_gets_reacked_on_2xx_retransmission() -> None:
    pair = UacUasPair()
    start_call(pair)
    acks = {"n": 0}

    def drop_first_ack(direction: str, data: bytes) -> bool:
        if data.startswith(b"ACK") and acks["n"] == 0:
            acks["n"] += 1
            return True
        return False

    answer(pair, drop_first_ack)
    assert pair.of("uas", ev.AckReceived) == []
    pair.advance()
    assert len(pair.of("uas", ev.AckReceived)) == 1
    assert pair.uac.stats["retransmissions_absorbed"] >= 1
    assert len(pair.of("uac", ev.CallAnswered)) == 1
    pair.uac.bye(pair.of("uac", ev.CallAnswered)[0].call, now=pair.now)
    pair.transfer()
    pair.assert_no_leaks()


def test_ack_never_arrives_reports_ack_timed_out() -> None:
    pair = UacUasPair()
    start_call(pair)
    answer(pair, lambda d, data: data.startswith(b"ACK"))
    for _ in range(100):
        if pair.of("uas", ev.AckTimedOut):
            break
        pair.advance(lambda d, data: data.startswith(b"ACK"))
    (timed_out,) = pair.of("uas", ev.AckTimedOut)
    assert pair.now == pytest.approx(32.0)
    pair.uas.bye(timed_out.call, now=pair.now)
    pair.transfer()
    assert len(pair.of("uac", ev.CallEnded)) == 1
    pair.assert_no_leaks()


def test_lost_bye_is_retransmitted_and_retransmitted_bye_absorbed() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    answer(pair)
    pair.uac.bye(call, now=pair.now)
    pair.transfer(lambda d, data: data.startswith(b"BYE") and pair.now == 0.0)
    assert pair.of("uas", ev.CallEnded) == []
    pair.advance()  # Timer E
    assert len(pair.of("uas", ev.CallEnded)) == 1
    pair.assert_no_leaks()


def test_retransmitted_invite_is_not_a_second_call() -> None:
    pair = UacUasPair()
    start_call(pair, lambda d, data: d == "uas->uac")  # 100 Trying lost: Timer A fires
    pair.advance(lambda d, data: d == "uas->uac")
    assert len(pair.of("uas", ev.InviteReceived)) == 1
    assert pair.uas.stats["retransmissions_absorbed"] == 1
    assert len(pair.uas.active_calls()) == 1


def test_timer_b_fails_the_call_with_408() -> None:
    pair = UacUasPair()
    start_call(pair, lambda d, data: True)
    pair.run_out(lambda d, data: True)
    (failed,) = pair.of("uac", ev.CallFailed)
    assert failed.status == 408 and pair.now == pytest.approx(32.0)
    sent_invites = [d for name, d in pair.sent if d.startswith(b"INVITE")]
    assert len(sent_invites) == 7  # 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 (Timer A doubling)
    assert len(pair.of("uac", ev.CallEnded)) == 1
    pair.assert_no_leaks()


def test_rejected_call_acked_by_transaction() -> None:
    pair = UacUasPair()
    start_call(pair)
    inv = pair.of("uas", ev.InviteReceived)[0]
    pair.uas.respond(inv.call, 486, now=pair.now)
    pair.transfer()
    (failed,) = pair.of("uac", ev.CallFailed)
    assert failed.status == 486
    ack = next(d for _, d in pair.sent if d.startswith(b"ACK"))
    invite = next(d for _, d in pair.sent if d.startswith(b"INVITE"))
    branch = parse_message(invite).headers.get("Via").split("branch=")[1].split(";")[0]  # type: ignore[union-attr]
    assert branch in parse_message(ack).headers.get("Via")  # type: ignore[operator]
    assert pair.of("uas", ev.CallEnded)[0].reason == "rejected:486"
    pair.assert_no_leaks()


def test_cancel_flow_gives_487() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    inv = pair.of("uas", ev.InviteReceived)[0]
    pair.uas.respond(inv.call, 180, now=pair.now)
    pair.transfer()
    pair.uac.cancel(call, now=pair.now)
    pair.transfer()
    assert len(pair.of("uas", ev.CancelReceived)) == 1
    (failed,) = pair.of("uac", ev.CallFailed)
    assert failed.status == 487
    lines = [first_line(d) for _, d in pair.sent]
    assert "SIP/2.0 487 Request Terminated" in lines
    assert pair.of("uac", ev.CallEnded)[0].reason == "cancelled"
    assert pair.of("uas", ev.CallEnded)[0].reason == "cancelled"
    pair.assert_no_leaks()


def test_cancel_before_provisional_waits_for_it() -> None:
    pair = UacUasPair()
    call = start_call(pair)  # 100 Trying arrives: PROCEEDING
    pair.uac.cancel(call, now=pair.now)
    pair.transfer()
    assert pair.of("uac", ev.CallFailed)[0].status == 487
    pair.assert_no_leaks()


def test_unmatched_cancel_and_bye_get_481() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    answer(pair)
    pair.uac.bye(call, now=pair.now)
    pair.transfer()
    # The same BYE with a new branch: dialog gone -> 481.
    bye = parse_message(next(d for _, d in pair.sent if d.startswith(b"BYE")))
    via = bye.headers.get("Via") or ""
    bye.headers.set("Via", via.replace("branch=z9hG4bK", "branch=z9hG4bKx"))
    pair.uas.receive(bye.to_bytes(), ("127.0.0.1", 5070), pair.now)
    (out,) = pair.uas.datagrams_to_send()
    assert first_line(out.data) == "SIP/2.0 481 Call/Transaction Does Not Exist"
    cancel = bye.to_bytes().replace(b"BYE", b"CANCEL")
    cancel = cancel.replace(b";tag=", b";xtag=", 0)
    pair.uas.receive(cancel, ("127.0.0.1", 5070), pair.now)
    assert first_line(pair.uas.datagrams_to_send()[0].data).startswith("SIP/2.0 481")
    pair.assert_no_leaks()


def test_reinvite_and_glare() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    uas_call = answer(pair)
    pair.uac.reinvite(call, SDP, now=pair.now)
    pair.uas.reinvite(uas_call, SDP, now=pair.now)  # both at once: glare
    pair.transfer()
    statuses = sorted(
        e.status
        for e in pair.of("uac", ev.ReinviteResponded) + pair.of("uas", ev.ReinviteResponded)
    )
    assert statuses == [491, 491]
    pair.uac.reinvite(call, SDP, now=pair.now)
    pair.transfer()
    (rx,) = pair.of("uas", ev.ReinviteReceived)
    assert rx.sdp == SDP
    pair.uas.respond(rx.transaction, 200, body=SDP, now=pair.now)
    pair.transfer()
    assert pair.of("uac", ev.ReinviteResponded)[-1].status == 200
    assert len(pair.of("uas", ev.AckReceived)) == 2
    pair.uac.reinvite(call, SDP, now=pair.now)
    with pytest.raises(TransactionError):  # §14.1: one INVITE transaction at a time
        pair.uac.reinvite(call, SDP, now=pair.now)
    pair.transfer()
    pair.uas.respond(pair.of("uas", ev.ReinviteReceived)[-1].transaction, 488, now=pair.now)
    pair.transfer()
    pair.uac.bye(call, now=pair.now)
    pair.transfer()
    pair.assert_no_leaks()


def test_info_dtmf_and_in_dialog_notify() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    answer(pair)
    tx = pair.uac.in_dialog_request(
        call,
        "INFO",
        body=b"Signal=5\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
        now=pair.now,
    )
    pair.transfer()
    assert [e.transaction for e in pair.of("uac", ev.ResponseReceived)] == [tx]
    (info,) = pair.of("uas", ev.InfoReceived)
    assert info.content_type == "application/dtmf-relay" and info.body.startswith(b"Signal=5")
    pair.uac.bye(call, now=pair.now)
    pair.transfer()
    pair.assert_no_leaks()


def test_options_answered_and_unknown_method_501() -> None:
    pair = UacUasPair()
    h = pair.uac.request("OPTIONS", "sip:127.0.0.2", UAS_ADDR, now=0.0)
    h2 = pair.uac.request("FOO", "sip:127.0.0.2", UAS_ADDR, now=0.0)
    pair.transfer()
    got = {id(e.transaction): e.response for e in pair.of("uac", ev.ResponseReceived)}
    assert got[id(h)].status == 200
    assert "application/sdp" in (got[id(h)].headers.get("Accept") or "")
    assert got[id(h2)].status == 501
    pair.assert_no_leaks()


def test_register_goes_to_tu_and_auth_retry_keeps_call_id() -> None:
    pair = UacUasPair()
    h = pair.uac.request("REGISTER", "sip:127.0.0.2", UAS_ADDR, now=0.0, call_id="reg-1", cseq=1)
    pair.transfer()
    (rx,) = pair.of("uas", ev.RequestReceived)
    pair.uas.respond(
        rx.transaction, 401, headers=[("WWW-Authenticate", 'Digest realm="x"')], now=pair.now
    )
    pair.transfer()
    assert pair.of("uac", ev.ResponseReceived)[0].transaction is h
    h2 = pair.uac.request(
        "REGISTER",
        "sip:127.0.0.2",
        UAS_ADDR,
        now=0.0,
        call_id="reg-1",
        cseq=2,
        headers=[("Authorization", "Digest x")],
    )
    pair.transfer()
    rx2 = pair.of("uas", ev.RequestReceived)[1]
    assert (
        rx2.request.headers.get("Call-ID") == "reg-1"
        and rx2.request.headers.get("CSeq") == "2 REGISTER"
    )
    pair.uas.respond(rx2.transaction, 200, now=pair.now)
    pair.transfer()
    assert pair.of("uac", ev.ResponseReceived)[1].transaction is h2
    pair.assert_no_leaks()


def test_request_timeout() -> None:
    pair = UacUasPair()
    h = pair.uac.request("MESSAGE", "sip:127.0.0.2", UAS_ADDR, now=0.0, body=b"hi")
    pair.run_out(lambda d, data: True)
    assert [e.transaction for e in pair.of("uac", ev.RequestTimedOut)] == [h]
    pair.assert_no_leaks()


def test_overload_503_but_in_dialog_flows() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    answer(pair)
    pair.uas.overloaded = True
    second = start_call(pair)
    pair.uas.overloaded = False
    failed = [e for e in pair.of("uac", ev.CallFailed) if e.call is second]
    assert failed[0].status == 503
    assert failed[0].response is not None and failed[0].response.headers.get("Retry-After") == "5"
    pair.uac.bye(call, now=pair.now)
    pair.transfer()
    assert len(pair.of("uas", ev.CallEnded)) == 1
    pair.assert_no_leaks()


def test_max_forwards_zero_as_a_ua_is_processed() -> None:
    # RFC 4475 §3.3.11: a UA answers Max-Forwards: 0 normally; 483 is the proxy rule.
    ep = SipEndpoint(EndpointConfig(), rng=random.Random(3))
    ep.receive(
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5090;branch=z9hG4bK7\r\n"
        b"Max-Forwards: 0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c7\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ("192.0.2.7", 40000),
        0.0,
    )
    assert [first_line(o.data) for o in ep.datagrams_to_send()] == ["SIP/2.0 200 OK"]


def test_unknown_request_uri_scheme_gets_416() -> None:
    ep = SipEndpoint(EndpointConfig(), rng=random.Random(3))
    ep.receive(
        b"OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.9:5090;branch=z9hG4bK8\r\nMax-Forwards: 70\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c8\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ("192.0.2.7", 40000),
        0.0,
    )
    assert [first_line(o.data) for o in ep.datagrams_to_send()] == [
        "SIP/2.0 416 Unsupported URI Scheme"
    ]


def test_max_forwards_zero_and_require() -> None:
    ep = SipEndpoint(EndpointConfig(reject_max_forwards_zero=True), rng=random.Random(3))
    base = (
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5090;branch=z9hG4bK{b};rport\r\n"
        "Max-Forwards: {mf}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c{b}\r\n"
        "CSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    ep.receive(base.format(b=1, mf=0, extra="").encode(), ("192.0.2.7", 40000), 0.0)
    ep.receive(
        base.format(b=2, mf=70, extra="Require: 100rel\r\n").encode(), ("192.0.2.7", 40000), 0.0
    )
    out = ep.datagrams_to_send()
    assert [first_line(o.data) for o in out] == [
        "SIP/2.0 483 Too Many Hops",
        "SIP/2.0 420 Bad Extension",
    ]
    resp = parse_message(out[1].data)
    assert isinstance(resp, SipResponse) and resp.headers.get("Unsupported") == "100rel"
    # RFC 3581: received + rport stamped, reply to the packet's source
    via = resp.headers.get("Via") or ""
    assert "received=192.0.2.7" in via and "rport=40000" in via
    assert out[1].dest == ("192.0.2.7", 40000)


def test_garbage_answered_400_or_dropped() -> None:
    ep = SipEndpoint(EndpointConfig(), rng=random.Random(3))
    bad = (
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 99\r\n\r\nshort"
    )
    ep.receive(bad, ("192.0.2.7", 5060), 0.0)
    (out,) = ep.datagrams_to_send()
    assert first_line(out.data) == "SIP/2.0 400 Bad Request"
    assert b"Warning: 399" in out.data and out.dest == ("192.0.2.7", 5060)
    ep.receive(b"\x00\x01garbage", ("192.0.2.7", 5060), 0.0)
    assert ep.datagrams_to_send() == []
    assert ep.stats["parse_errors"] == 2 and ep.transaction_count() == 0


def test_tu_that_never_answers_does_not_leak() -> None:
    pair = UacUasPair()
    start_call(pair)
    pair.run_out()
    assert pair.of("uas", ev.CallEnded)[0].reason == "timeout"
    assert pair.of("uac", ev.CallFailed)[0].status == 408
    pair.assert_no_leaks()


def test_answer_after_cancel_is_a_harmless_no_op() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    inv = pair.of("uas", ev.InviteReceived)[0]
    pair.uas.respond(inv.call, 180, now=pair.now)
    pair.transfer()
    pair.uac.cancel(call, now=pair.now)
    pair.transfer()
    assert pair.uas.respond(inv.call, 200, body=SDP, now=pair.now) is False
    assert pair.uas.datagrams_to_send() == []
    assert len(pair.of("uas", ev.CallEnded)) == 1
    pair.assert_no_leaks()


def test_bye_crossing_lost_ack_ends_the_call_once() -> None:
    pair = UacUasPair()
    call = start_call(pair)
    answer(pair, lambda d, data: data.startswith(b"ACK"))
    pair.uac.bye(call, now=pair.now)
    pair.transfer()
    assert [e.reason for e in pair.of("uas", ev.CallEnded)] == ["bye"]
    pair.assert_no_leaks()
    assert pair.of("uas", ev.AckTimedOut) == []


def test_max_server_transactions_counts_only_unanswered() -> None:
    pair = UacUasPair(max_server_transactions=1)
    first = start_call(pair)  # unanswered: 1 pending
    second = start_call(pair)
    assert [e.call for e in pair.of("uac", ev.CallFailed)] == [second]
    answer(pair)  # first answered: the limit frees up although its transaction lingers
    third = start_call(pair)
    assert pair.uas.transaction_count() >= 1
    assert [e.call for e in pair.of("uac", ev.CallFailed)] == [second]
    assert len(pair.of("uas", ev.InviteReceived)) == 2
    pair.uas.respond(pair.of("uas", ev.InviteReceived)[1].call, 486, now=pair.now)
    pair.transfer()
    pair.uac.bye(first, now=pair.now)
    pair.transfer()
    assert third.ended
    pair.assert_no_leaks()


def test_uas_bye_before_ack_waits_for_the_ack() -> None:
    pair = UacUasPair()
    start_call(pair)
    inv = pair.of("uas", ev.InviteReceived)[0]
    pair.uas.respond(inv.call, 200, body=SDP, now=pair.now)
    pair.uas.bye(inv.call, now=pair.now)  # §15: held until the ACK
    out = pair.uas.datagrams_to_send()
    assert [first_line(o.data) for o in out] == ["SIP/2.0 200 OK"]
    for o in out:
        pair.uac.receive(o.data, UAS_ADDR, pair.now)
    pair.transfer()
    assert [e.reason for e in pair.of("uac", ev.CallEnded)] == ["bye"]
    assert [e.by for e in pair.of("uas", ev.CallEnded)] == ["local"]
    pair.assert_no_leaks()
