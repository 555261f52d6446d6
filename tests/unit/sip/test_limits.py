"""Per-source accounting and the set-up bound (media_gateway/sip/limits.py), pure and on a
virtual clock, then through the sans-IO endpoint: one source resending an OPTIONS 60 times a
second is limited alone, and another source's INVITE is still taken."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from media_gateway.sip import events as ev
from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.sip.limits import LimitsConfig, SourceLimits

GLOBAL_RETRANSMISSION_THRESHOLD = 50.0
"""``SipTransport.max_retransmissions``: the global overload signal's threshold."""


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=400),
)
def test_one_source_cannot_raise_the_global_retransmission_signal(gaps: list[float]) -> None:
    limits = SourceLimits()
    now = 10.0
    for gap in gaps:
        now += gap
        limits.retransmission("203.0.113.9", now)
        assert limits.retransmission_rate(now) < GLOBAL_RETRANSMISSION_THRESHOLD


def test_many_sources_retransmitting_do_raise_it() -> None:
    limits = SourceLimits()
    now = 0.0
    for k in range(200):
        now += 0.004
        assert limits.retransmission(f"198.51.100.{k % 20}", now)
    assert limits.retransmission_rate(now) > GLOBAL_RETRANSMISSION_THRESHOLD


def test_a_resending_source_is_limited_alone_and_logged_once() -> None:
    limits = SourceLimits(LimitsConfig(hold=5.0))
    now = 0.0
    answered = 0
    for _ in range(180):  # 60/s for 3 s
        now += 1 / 60
        answered += limits.retransmission("203.0.113.9", now)
    assert answered < 60  # the burst and 10/s, not all of them
    refusal = limits.admit_request("203.0.113.9", now)
    assert refusal is not None and refusal[0] == "retransmission_rate"
    assert limits.admit_request("198.51.100.7", now) is None
    assert limits.admit_invite("198.51.100.7", now) is None
    changes = limits.take_changes()
    assert [(c.source, c.limited) for c in changes] == [("203.0.113.9", True)]
    assert limits.refused["retransmission_rate"] > 100
    # it stops: after the hold, one recovery line, and it is served again
    limits.poll(now + 5.1)
    (recovered,) = limits.take_changes()
    assert not recovered.limited and recovered.refused > 100
    assert limits.admit_request("203.0.113.9", now + 5.2) is None


def test_a_busy_source_on_a_lossy_link_is_not_limited() -> None:
    """A trunk at 200 requests/s (100 calls/s: INVITE and BYE) with about 5 % of our answers
    lost: 10 to 20 retransmissions a second, in proportion to its requests."""
    limits = SourceLimits()
    rng = random.Random(3)
    now = 0.0
    for _ in range(10_000):  # 50 s
        now += 0.005
        assert limits.admit_request("192.0.2.50", now) is None
        if rng.random() < 0.05:
            assert limits.retransmission("192.0.2.50", now)
        if rng.random() < 0.01:  # a loss burst: three retransmissions at once
            for _ in range(3):
                assert limits.retransmission("192.0.2.50", now)
    assert limits.take_changes() == []
    assert limits.retransmission_rate(now) <= 20


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=300),
)
def test_one_line_when_limited_and_one_when_recovered(gaps: list[float]) -> None:
    limits = SourceLimits(LimitsConfig(request_rate=5.0, request_burst=5.0, hold=1.0))
    now = 0.0
    changes = []
    for gap in gaps:
        now += gap
        limits.admit_request("203.0.113.9", now)
        limits.poll(now)
        changes.extend(limits.take_changes())
    limits.poll(now + 10)
    changes.extend(limits.take_changes())
    states = [c.limited for c in changes]
    # strictly alternating limited / recovered, ending recovered
    assert states == [True, False] * (len(states) // 2)
    refused = sum(c.refused for c in changes if not c.limited)
    assert refused == limits.refused["request_rate"]


def test_request_rate_per_source() -> None:
    limits = SourceLimits(LimitsConfig(request_rate=10.0, request_burst=20.0, hold=2.0))
    served = sum(limits.admit_request("203.0.113.9", 0.0) is None for _ in range(50))
    assert served == 20
    refusal = limits.admit_request("203.0.113.9", 1.0)
    assert refusal == ("request_rate", 1.0)  # seconds left of the hold
    assert limits.admit_request("192.0.2.1", 1.0) is None
    # a source that keeps flooding stays limited: the hold runs from its last excess
    now = 1.0
    for _ in range(400):
        now += 0.01  # 100/s against 10/s
        refusal = limits.admit_request("203.0.113.9", now)
        assert refusal is not None
    assert refusal[1] > 1.9


def test_calls_in_setup_and_up_per_source() -> None:
    limits = SourceLimits(
        LimitsConfig(calls_in_setup_per_source=2, calls_up_per_source=3, max_calls_in_setup=0)
    )
    for k in range(2):
        assert limits.admit_invite("203.0.113.9", 0.0) is None
        limits.setup_started(("a", k), "203.0.113.9", 0.0)
    refusal = limits.admit_invite("203.0.113.9", 0.0)
    assert refusal is not None and refusal[0] == "source_calls_in_setup"
    assert limits.admit_invite("192.0.2.1", 0.0) is None
    for k in range(2):
        limits.setup_done(("a", k))
        limits.call_up(("a", k), "203.0.113.9")
    assert limits.calls_in_setup == 0 and limits.calls_up == 2
    limits.poll(100.0)
    limits.setup_started(("a", 2), "203.0.113.9", 100.0)
    limits.call_up(("a", 2), "203.0.113.9")
    limits.setup_done(("a", 2))
    refusal = limits.admit_invite("203.0.113.9", 100.0)
    assert refusal is not None and refusal[0] == "source_calls_up"
    for k in range(3):
        limits.call_ended(("a", k))
        limits.call_ended(("a", k))  # idempotent
    assert limits.calls_up == 0 and limits._calls == {}


def test_a_calls_cap_refuses_invites_only_while_the_source_is_at_it() -> None:
    limits = SourceLimits(LimitsConfig(calls_in_setup_per_source=1, max_calls_in_setup=0))
    limits.setup_started("first", "203.0.113.9", 0.0)
    assert limits.admit_invite("203.0.113.9", 0.0) == ("source_calls_in_setup", 1.0)
    assert limits.admit_request("203.0.113.9", 0.1) is None  # a REGISTER, an OPTIONS: served
    limits.setup_done("first")
    assert limits.admit_invite("203.0.113.9", 0.2) is None  # at once, no hold
    limits.poll(5.0)
    assert [c.limited for c in limits.take_changes()] == [True, False]


def test_a_trusted_source_such_as_a_trunk_is_not_limited_but_the_setup_bound_holds() -> None:
    trunk = "198.51.100.7"  # a carrier: every PSTN caller comes from this one address
    limits = SourceLimits(
        LimitsConfig(
            packet_rate=10.0,
            packet_burst=10.0,
            request_rate=10.0,
            request_burst=10.0,
            calls_in_setup_per_source=2,
            max_calls_in_setup=50,
            trusted=frozenset({trunk}),
        )
    )
    assert all(limits.admit_packet(trunk, 0.0) for _ in range(100))
    assert all(limits.admit_request(trunk, 0.0) is None for _ in range(100))
    for k in range(50):
        assert limits.admit_invite(trunk, 0.0) is None
        limits.setup_started(k, trunk, 0.0)
    assert limits.admit_invite(trunk, 0.0) == ("calls_in_setup", 1.0)  # the global bound
    assert limits.limited(0.0) == []
    # an untrusted source with the same traffic is limited
    assert sum(limits.admit_request("203.0.113.9", 0.0) is None for _ in range(100)) == 10


def test_setup_bound_by_count_and_by_age() -> None:
    limits = SourceLimits(LimitsConfig(max_calls_in_setup=3, max_setup_age=1.0))
    for k in range(3):
        assert limits.admit_invite(f"192.0.2.{k}", 0.0) is None
        limits.setup_started(k, f"192.0.2.{k}", 0.01 * k)
    assert limits.admit_invite("192.0.2.50", 0.1) == ("calls_in_setup", 1.0)
    limits.setup_done(0)
    limits.setup_done(1)
    # one left, 0.5 s old: taken
    assert limits.admit_invite("192.0.2.50", 0.5) is None
    # the backlog's oldest waits past the bound: refused at once
    assert limits.admit_invite("192.0.2.50", 1.2) == ("setup_age", 1.0)
    changes = limits.take_changes()
    assert [(c.source, c.limited, c.reason) for c in changes] == [
        ("*", True, "calls_in_setup"),
        ("*", False, "calls_in_setup"),
        ("*", True, "setup_age"),
    ]


def test_one_stuck_invite_is_overtaken_and_does_not_close_the_door() -> None:
    limits = SourceLimits(LimitsConfig(max_setup_age=1.0))
    limits.setup_started("stuck", "192.0.2.1", 0.0)  # never answered
    for k in range(100):
        t = 0.5 + k * 0.1
        assert limits.admit_invite("192.0.2.2", t) is None, t
        limits.setup_started(k, "192.0.2.2", t)
        limits.setup_done(k)
    assert limits.calls_in_setup == 1
    assert limits.setup_age(20.0) == 0.0


def test_memory_is_bounded_and_sources_with_calls_are_kept() -> None:
    limits = SourceLimits(LimitsConfig(max_sources=100))
    limits.setup_started("call", "192.0.2.1", 0.0)
    for k in range(5000):
        limits.admit_request(f"10.{k // 65536}.{k // 256 % 256}.{k % 256}", k * 0.001)
    assert limits.tracked_sources <= 100
    assert limits._calls["192.0.2.1"].setup == 1


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["start", "ring", "answer", "end"]),
            st.integers(0, 9),
            st.sampled_from(["192.0.2.1", "192.0.2.2"]),
        ),
        max_size=80,
    )
)
def test_call_counts_return_to_zero(ops: list[tuple[str, int, str]]) -> None:
    limits = SourceLimits()
    started: dict[int, str] = {}
    for op, key, ip in ops:
        if op == "start" and key not in started:
            limits.setup_started(key, ip, 0.0)
            started[key] = ip
        elif op == "ring" and key in started:
            limits.setup_done(key)
        elif op == "answer" and key in started:
            limits.setup_done(key)
            limits.call_up(key, started[key])
        elif op == "end":
            limits.call_ended(key)
            started.pop(key, None)
        per_source = sum(c.setup + c.up for c in limits._calls.values())
        assert per_source == limits.calls_in_setup + limits.calls_up
    for key in list(started):
        limits.call_ended(key)
    assert limits.calls_in_setup == 0 and limits.calls_up == 0 and limits._calls == {}


# -- through the sans-IO endpoint ----------------------------------------------------------------


def _options(branch: str) -> bytes:
    return (
        "OPTIONS sip:hotline@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.9:5099;branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.9>;tag=p1\r\n"
        "To: <sip:hotline@127.0.0.1>\r\nCall-ID: trickle@127.0.0.9\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _invite(n: int) -> bytes:
    return (
        "INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK-call-{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.2>;tag=c{n}\r\n"
        f"To: <sip:1000@127.0.0.1>\r\nCall-ID: call-{n}@127.0.0.2\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_endpoint_options_trickle_limits_its_source_only() -> None:
    ep = SipEndpoint(EndpointConfig(), rng=random.Random(7))
    now = 0.0
    replies_to_trickle = 0
    taken = 0
    for k in range(240):  # 60/s for 4 s, one fixed branch
        now += 1 / 60
        ep.receive(_options("z9hG4bK-fixed"), ("127.0.0.9", 5099), now)
        ep.handle_timer(now)
        if k % 20 == 0:
            ep.receive(_invite(k), ("127.0.0.2", 5070), now)
        for event in ep.events():
            if isinstance(event, ev.InviteReceived):
                taken += 1
                ep.respond(event.call, 486, now=now)
        for out in ep.datagrams_to_send():
            if out.dest[0] == "127.0.0.9":
                replies_to_trickle += 1
            else:
                assert not out.data.startswith(b"SIP/2.0 503")
        # the global signal the shell reads never reaches its threshold
        assert ep.limits.retransmission_rate(now) < GLOBAL_RETRANSMISSION_THRESHOLD
    assert taken == 12
    # the first answer, the burst and 10/s: a quarter of what it sent
    assert replies_to_trickle <= 1 + 20 + 2 + 10 * 4
    assert ep.stats["retransmissions_dropped"] > 150
    # a new request from the limited source is refused with 503 and the seconds left
    ep.receive(_options("z9hG4bK-new"), ("127.0.0.9", 5099), now)
    (reply,) = ep.datagrams_to_send()
    assert reply.data.startswith(b"SIP/2.0 503") and b"Retry-After: 5" in reply.data


def test_endpoint_refuses_invites_when_answering_falls_behind() -> None:
    config = EndpointConfig(limits=LimitsConfig(max_calls_in_setup=5, max_setup_age=1.0))
    ep = SipEndpoint(config, rng=random.Random(7))
    for n in range(8):  # nobody answers: five taken, three refused at once
        ep.receive(_invite(n), (f"127.0.0.{10 + n}", 5070), 0.01 * n)
    statuses = [out.data.split(b" ", 2)[1] for out in ep.datagrams_to_send()]
    assert statuses.count(b"100") == 5 and statuses.count(b"503") == 3
    # answer them; the next is taken again, and the calls up are counted
    for event in ep.events():
        if isinstance(event, ev.InviteReceived):
            ep.respond(event.call, 486, now=0.2)
    ep.datagrams_to_send()
    ep.receive(_invite(99), ("127.0.0.99", 5070), 0.3)
    (trying,) = ep.datagrams_to_send()
    assert trying.data.startswith(b"SIP/2.0 100")
    assert ep.limits.calls_in_setup == 1 and ep.limits.refused["calls_in_setup"] == 3


def test_endpoint_drops_a_datagram_flood_from_one_source_before_parsing() -> None:
    config = EndpointConfig(limits=LimitsConfig(packet_rate=100.0, packet_burst=200.0))
    ep = SipEndpoint(config, rng=random.Random(7))
    garbage = b"NOT SIP AT ALL\r\n\r\n"
    for k in range(5000):  # 5,000 datagrams in 0.5 s from one address
        ep.receive(garbage, ("203.0.113.66", 4000 + k % 50), k * 0.0001)
    assert ep.stats["parse_errors"] <= 260  # the burst and 0.5 s of the rate, no more parsed
    assert ep.stats["packets_dropped"] >= 4700
    assert ep.limits.refused["packet_rate"] == ep.stats["packets_dropped"]
    ep.datagrams_to_send()
    ep.receive(_invite(1), ("127.0.0.2", 5070), 0.5)  # another source is served
    assert any(isinstance(e, ev.InviteReceived) for e in ep.events())
    (change,) = ep.limits.take_changes()
    assert (change.source, change.limited, change.reason) == ("203.0.113.66", True, "packet_rate")


def test_refusals_are_a_prometheus_counter_by_reason_without_addresses() -> None:
    from prometheus_client import generate_latest

    from hotline.telemetry import HotlineMetrics

    limits = SourceLimits(LimitsConfig(request_rate=1.0, request_burst=1.0))
    for k in range(50):
        limits.admit_request(f"203.0.113.{k % 5}", 0.0)
    metrics = HotlineMetrics(process=False, sip_limited=lambda: limits.refused)
    text = generate_latest(metrics.registry).decode()
    assert 'hotline_sip_limited_total{reason="request_rate"} 45.0' in text
    assert "203.0.113" not in text
