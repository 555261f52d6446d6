"""Trunk registration against our own digest server, DID matching and caller-id rules."""

from __future__ import annotations

import random

import pytest

from media_gateway.sip.auth import DigestAuthenticator
from media_gateway.sip.message import Headers
from media_gateway.sip.trunk import (
    BACKOFF_MAX,
    MAX_STALE_RETRIES,
    CallerIdRule,
    SendRegister,
    TrunkRegistration,
    apply_caller_id,
    match_did,
    normalise_number,
)

SECRET = b"carrier-secret-0123456789abcdef!"


def carrier(**kw: object) -> DigestAuthenticator:
    return DigestAuthenticator(
        realm="carrier.example",
        credentials_lookup={"acct42": "pw"}.get,
        secret=SECRET,
        **kw,  # type: ignore[arg-type]
    )


def trunk(password: str = "pw", expires: int = 600) -> TrunkRegistration:
    return TrunkRegistration(
        name="pstn",
        registrar=("203.0.113.5", 5060),
        username="acct42",
        password=password,
        expires=expires,
        local_host="192.0.2.1",
        local_port=5070,
        rng=random.Random(7),
    )


def hdr(send: SendRegister, name: str) -> str | None:
    return Headers(send.headers).get(name)


def challenge_headers(server: DigestAuthenticator, now: float, stale: bool = False) -> Headers:
    return Headers([("WWW-Authenticate", c) for c in server.challenge(now, stale=stale)])


def test_register_challenge_answer_and_refresh() -> None:
    server = carrier()
    t = trunk()
    assert t.state == "idle" and t.next_deadline() == 0.0
    (first,) = t.poll(0.0)
    assert t.state == "registering" and t.poll(0.0) == [] and t.next_deadline() is None
    assert first.uri == "sip:203.0.113.5:5060"
    assert hdr(first, "To") == "<sip:acct42@203.0.113.5:5060>"
    assert hdr(first, "Contact") == "<sip:acct42@192.0.2.1:5070>"
    assert hdr(first, "Expires") == "600"
    assert hdr(first, "Authorization") is None
    assert t.on_response(100, None, 0.01) == []
    (second,) = t.on_response(401, challenge_headers(server, 0.0), 0.1)
    assert second.call_id == first.call_id and second.cseq == first.cseq + 1
    authz = hdr(second, "Authorization")
    assert authz is not None and "SHA-256" in authz
    assert server.verify("REGISTER", authz, 0.2, request_uri=second.uri).ok
    ok = Headers([("Contact", "<sip:acct42@192.0.2.1:5070>;expires=300"), ("Expires", "900")])
    assert t.on_response(200, ok, 0.2) == []
    assert t.state == "registered" and t.granted == 300
    assert t.next_deadline() == pytest.approx(0.2 + 240.0)
    assert t.poll(200.0) == []
    (refresh,) = t.poll(240.2)
    assert refresh.call_id == first.call_id and refresh.cseq == second.cseq + 1


def test_granted_expiry_from_expires_header_and_short_grants() -> None:
    t = trunk()
    t.poll(0.0)
    t.on_response(200, Headers([("Expires", "60")]), 0.0)
    assert t.granted == 60 and t.next_deadline() == 30.0  # 30 s before the end beats 80 %
    t.poll(30.0)
    t.on_response(200, Headers(), 30.0)
    assert t.granted == 600 and t.next_deadline() == 30.0 + 480.0


def test_proxy_challenge_uses_proxy_authorization() -> None:
    server = carrier()
    t = trunk()
    t.poll(0.0)
    h = Headers([("Proxy-Authenticate", c) for c in server.challenge(0.0)])
    (retry,) = t.on_response(407, h, 0.0)
    assert hdr(retry, "Authorization") is None
    value = hdr(retry, "Proxy-Authorization")
    assert value is not None and server.verify("REGISTER", value, 1.0).ok


def test_wrong_password_fails_with_exponential_backoff_capped() -> None:
    server = carrier()
    t = trunk(password="nope")
    now = 0.0
    delays = []
    for _ in range(8):
        assert len(t.poll(now)) == 1
        (retry,) = t.on_response(401, challenge_headers(server, now), now)
        value = hdr(retry, "Authorization")
        assert value is not None and not server.verify("REGISTER", value, now).ok
        assert t.on_response(401, challenge_headers(server, now), now) == []
        assert t.state == "failed"
        due = t.next_deadline()
        assert due is not None
        delays.append(due - now)
        now = due
    assert delays[:5] == [30.0, 60.0, 120.0, 240.0, 480.0]
    assert delays[5:] == [BACKOFF_MAX] * 3


def test_stale_nonce_is_answered_again_but_not_forever() -> None:
    server = carrier()
    t = trunk()
    t.poll(0.0)
    t.on_response(401, challenge_headers(server, 0.0), 0.0)
    for i in range(MAX_STALE_RETRIES):
        (again,) = t.on_response(401, challenge_headers(server, i + 1.0, stale=True), i + 1.0)
        assert hdr(again, "Authorization") is not None
    assert t.on_response(401, challenge_headers(server, 9.0, stale=True), 9.0) == []
    assert t.state == "failed"


def test_timeout_and_server_errors_back_off_then_success_resets() -> None:
    t = trunk()
    t.poll(0.0)
    t.on_response(408, None, 0.0)
    assert t.state == "failed" and t.next_deadline() == 30.0
    t.poll(30.0)
    t.on_response(503, Headers(), 30.0)
    assert t.next_deadline() == 90.0
    t.poll(90.0)
    t.on_response(200, Headers(), 90.0)
    assert t.failures == 0 and t.state == "registered"


def test_interval_too_brief_retries_with_min_expires() -> None:
    t = trunk(expires=60)
    t.poll(0.0)
    (retry,) = t.on_response(423, Headers([("Min-Expires", "1800")]), 0.0)
    assert hdr(retry, "Expires") == "1800"
    assert t.on_response(423, Headers([("Min-Expires", "1800")]), 0.0) == []
    assert t.state == "failed"


def test_unregister_sends_expires_zero_and_stops_refreshing() -> None:
    server = carrier()
    t = trunk()
    assert t.unregister() == []  # never registered: nothing to remove
    t = trunk()
    t.poll(0.0)
    t.on_response(200, Headers(), 0.0)
    (bye,) = t.unregister()
    assert hdr(bye, "Expires") == "0" and t.state == "unregistering"
    (again,) = t.on_response(401, challenge_headers(server, 1.0), 1.0)
    assert hdr(again, "Expires") == "0" and hdr(again, "Authorization") is not None
    assert t.on_response(200, Headers(), 1.0) == []
    assert t.state == "idle" and t.next_deadline() is None and t.poll(10_000.0) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+1 (800) 555-0100", "+18005550100"),
        ("tel:+44-20-7946-0000;phone-context=x", "+442079460000"),
        ("sip:+861065529988@carrier.example;user=phone", "+861065529988"),
        ("0800.123.456", "0800123456"),
        ("*21#", "*21#"),
    ],
)
def test_normalise_number(text: str, expected: str) -> None:
    assert normalise_number(text) == expected


DIDS = {
    "+18005550100": "sales",
    "+1 800 555 01*": "support",
    "+1800*": "general",
    "4000": "internal",
}


@pytest.mark.parametrize(
    ("dialled", "entry"),
    [
        ("+18005550100", "sales"),
        ("tel:+1-800-555-0100", "sales"),
        ("+18005550199", "support"),
        ("+18009990000", "general"),
        ("4000", "internal"),
        ("40001", None),
        ("+44123", None),
        ("", None),
    ],
)
def test_match_did_exact_then_longest_prefix(dialled: str, entry: str | None) -> None:
    assert match_did(DIDS, dialled) == entry


def test_caller_id_rules() -> None:
    assert apply_caller_id(CallerIdRule(), "+8610 5555 1234", "Ann") == (
        "+861055551234",
        "Ann",
        [],
    )
    rewrite = CallerIdRule(strip_prefix="+86", add_prefix="0")
    assert apply_caller_id(rewrite, "+861055551234", None) == ("01055551234", None, [])
    forced = CallerIdRule(number="+18005550100", display="Hotline")
    assert apply_caller_id(forced, "1001", "Agent 7") == ("+18005550100", "Hotline", [])
    hidden = CallerIdRule(number="+18005550100", withhold=True)
    number, display, extra = apply_caller_id(hidden, "1001", "Agent 7")
    assert (number, display) == ("anonymous", "Anonymous")
    assert ("Privacy", "id") in extra
    assert ("P-Asserted-Identity", "<tel:+18005550100>") in extra
