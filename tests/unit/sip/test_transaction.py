"""RFC 3261 §17 transaction machines driven directly, with a recording transaction user."""

from __future__ import annotations

import itertools

import pytest

from media_gateway.sip.builders import make_response
from media_gateway.sip.errors import TransactionError
from media_gateway.sip.message import Headers, SipRequest, SipResponse
from media_gateway.sip.timers import TimerHeap, TimerValues
from media_gateway.sip.transaction import (
    TRANSITIONS,
    ClientTransaction,
    ServerTransaction,
    State,
    Transaction,
    server_key,
)


class Recorder:
    """A TransactionUser that records sends and runs timers on its own heap."""

    def __init__(self) -> None:
        self.timer_values = TimerValues()
        self.sent: list[tuple[float, bytes]] = []
        self.responses: list[int] = []
        self.timeouts = 0
        self.terminated: list[Transaction] = []
        self.heap = TimerHeap()
        self.now = 0.0

    def tx_send(self, tx: Transaction, data: bytes) -> None:
        self.sent.append((self.now, data))

    def tx_set_timer(self, tx: Transaction, name: str, when: float) -> None:
        self.heap.set(tx, name, when)

    def tx_cancel_timer(self, tx: Transaction, name: str) -> None:
        self.heap.cancel(tx, name)

    def tx_response(self, tx: ClientTransaction, response: SipResponse, now: float) -> None:
        self.responses.append(response.status)

    def tx_timeout(self, tx: Transaction, now: float) -> None:
        self.timeouts += 1

    def tx_terminated(self, tx: Transaction) -> None:
        self.terminated.append(tx)

    def run(self, until: float = 1e9) -> None:
        for _ in range(10_000):
            when = self.heap.next_deadline()
            if when is None or when > until:
                return
            self.now = when
            due = self.heap.pop_due(when)
            assert due is not None
            owner, name = due
            owner.on_timer(name, when)  # type: ignore[attr-defined]


def request(method: str, branch: str = "z9hG4bK1") -> SipRequest:
    return SipRequest(
        method=method,
        uri="sip:b@127.0.0.2",
        headers=Headers(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport"),
                ("From", "<sip:a@x>;tag=a"),
                ("To", "<sip:b@y>"),
                ("Call-ID", "c1"),
                ("CSeq", f"1 {method}"),
            ]
        ),
    )


def test_timer_values_follow_t1() -> None:
    tv = TimerValues(t1=0.1, t2=1.0, t4=2.0)
    assert (tv.timer_b, tv.timer_f, tv.timer_h, tv.timer_j(False)) == (6.4, 6.4, 6.4, 6.4)
    assert tv.timer_d(False) == 32.0 and tv.timer_d(True) == 0.0
    assert (tv.timer_i(True), tv.timer_k(True), tv.timer_j(True)) == (0.0, 0.0, 0.0)
    assert tv.timer_k(False) == 2.0


def test_every_transition_targets_a_state_of_its_machine() -> None:
    for (kind, state, event), new in TRANSITIONS.items():
        assert kind in ("ict", "nict", "ist", "nist")
        assert isinstance(state, State) and isinstance(new, State)
        assert state is not State.TERMINATED
        assert event in ("1xx", "2xx", "final", "request", "ack") or event.startswith("timer_")


def test_invite_client_timer_a_doubles_until_b() -> None:
    tu = Recorder()
    tx = ClientTransaction(
        tu, ("z9hG4bK1", "INVITE"), request("INVITE"), ("127.0.0.2", 5060), "udp"
    )
    tx.start(0.0)
    tu.run()
    assert [t for t, _ in tu.sent] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tu.timeouts == 1 and tx.state is State.TERMINATED and tu.terminated == [tx]


def test_invite_client_over_tcp_never_retransmits() -> None:
    tu = Recorder()
    tx = ClientTransaction(tu, ("b", "INVITE"), request("INVITE"), ("127.0.0.2", 5060), "tcp")
    tx.start(0.0)
    tu.run()
    assert len(tu.sent) == 1 and tu.timeouts == 1


def test_invite_client_acks_non_2xx_with_same_branch_and_reacks_retransmissions() -> None:
    tu = Recorder()
    inv = request("INVITE")
    tx = ClientTransaction(tu, ("z9hG4bK1", "INVITE"), inv, ("127.0.0.2", 5060), "udp")
    tx.start(0.0)
    resp = make_response(inv, 486, to_tag="t")
    tx.receive_response(make_response(inv, 180, to_tag="t"), 0.1)
    tx.receive_response(resp, 0.2)
    tx.receive_response(resp, 0.3)
    acks = [d for _, d in tu.sent if d.startswith(b"ACK")]
    assert len(acks) == 2 and b"branch=z9hG4bK1" in acks[0] and b"CSeq: 1 ACK" in acks[0]
    assert b"tag=t" in acks[0]
    assert tu.responses == [180, 486]  # the retransmitted 486 is absorbed
    tu.run()
    assert tu.now == pytest.approx(32.2) and tx.state is State.TERMINATED


def test_non_invite_client_timer_e_caps_at_t2() -> None:
    tu = Recorder()
    tx = ClientTransaction(tu, ("b", "BYE"), request("BYE"), ("127.0.0.2", 5060), "udp")
    tx.start(0.0)
    tu.run()
    times = [t for t, _ in tu.sent]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and max(gaps) == 4.0
    assert tu.timeouts == 1 and tu.now == 32.0


def test_non_invite_client_final_then_timer_k() -> None:
    tu = Recorder()
    req = request("OPTIONS")
    tx = ClientTransaction(tu, ("b", "OPTIONS"), req, ("127.0.0.2", 5060), "udp")
    tx.start(0.0)
    tx.receive_response(make_response(req, 200, to_tag="x"), 0.2)
    tu.run()
    assert tu.responses == [200] and tu.now == pytest.approx(5.2)
    assert len(tu.sent) == 1 and tx.state is State.TERMINATED


def test_invite_server_timer_g_until_ack_then_i() -> None:
    tu = Recorder()
    inv = request("INVITE")
    tx = ServerTransaction(tu, ("k",), inv, ("127.0.0.1", 5070), "udp")
    tx.send_response(make_response(inv, 100), 0.0)
    tx.receive_retransmission()  # re-sends the 100
    tx.send_response(make_response(inv, 486, to_tag="t"), 0.0)
    tu.run(until=2.0)
    statuses = [d.split(b" ")[1] for _, d in tu.sent]
    assert statuses == [b"100", b"100", b"486", b"486", b"486"]  # G at 0.5, 1.5
    assert tx.receive_ack(2.0) is True and tx.state is State.CONFIRMED
    assert tx.receive_ack(2.1) is False
    tu.run()
    assert tx.state.value == "Terminated" and tu.now == pytest.approx(7.0)
    with pytest.raises(TransactionError):
        tx.send_response(make_response(inv, 200), 8.0)


def test_invite_server_timer_h_without_ack() -> None:
    tu = Recorder()
    inv = request("INVITE")
    tx = ServerTransaction(tu, ("k",), inv, ("127.0.0.1", 5070), "udp")
    tx.send_response(make_response(inv, 500, to_tag="t"), 0.0)
    tu.run()
    assert tu.timeouts == 1 and tu.now == 32.0 and tx.state is State.TERMINATED


def test_non_invite_server_caches_final_for_timer_j() -> None:
    tu = Recorder()
    req = request("BYE")
    tx = ServerTransaction(tu, ("k",), req, ("127.0.0.1", 5070), "udp")
    tx.receive_retransmission()  # nothing to re-send yet
    assert tu.sent == []
    tx.send_response(make_response(req, 200), 0.0)
    tx.receive_retransmission()
    assert len(tu.sent) == 2 and tu.sent[0][1] == tu.sent[1][1]
    tu.run()
    assert tu.now == 32.0 and tx.state is State.TERMINATED


def test_server_key_maps_ack_to_invite_and_keeps_cancel_apart() -> None:
    inv, ack, cancel = request("INVITE"), request("ACK"), request("CANCEL")
    k = server_key("z9hG4bK1", "127.0.0.1:5070", "INVITE", inv, "v")
    assert server_key("z9hG4bK1", "127.0.0.1:5070", "ACK", ack, "v") == k
    assert server_key("z9hG4bK1", "127.0.0.1:5070", "CANCEL", cancel, "v") != k
    assert server_key("z9hG4bK1", "10.0.0.1:5070", "INVITE", inv, "v") != k
    # RFC 2543 peers (no magic cookie): Call-ID, From tag, CSeq number, top Via
    old = server_key("1234", "h", "INVITE", inv, "SIP/2.0/UDP h")
    assert old[0] == "2543" and old == server_key(None, "h", "ACK", ack, "SIP/2.0/UDP h")


def test_timer_heap_lazy_deletion() -> None:
    tu = Recorder()
    tx = ClientTransaction(tu, ("b", "BYE"), request("BYE"), ("127.0.0.2", 5060), "udp")
    heap = TimerHeap()
    heap.set(tx, "timer_e", 1.0)
    heap.set(tx, "timer_e", 2.0)  # re-armed: the 1.0 entry is stale
    heap.set(tx, "timer_f", 3.0)
    heap.cancel(tx, "timer_f")
    assert heap.next_deadline() == 2.0
    assert heap.pop_due(1.5) is None
    assert heap.pop_due(2.0) == (tx, "timer_e")
    assert heap.next_deadline() is None
