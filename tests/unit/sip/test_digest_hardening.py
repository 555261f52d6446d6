"""Issue 11, digest hardening: nonces unique and bound to realm, use and source; qop=auth
required; nonce counts tracked; an unknown user answered like a wrong password. Through
``Registrations.register`` (what the SIP endpoint calls) on a clock the test sets."""

from __future__ import annotations

import itertools

from media_gateway.registrations import Registrations, RegistrationSettings
from media_gateway.sip.auth import (
    build_authorization,
    digest_ha1,
    format_challenge,
    parse_auth_header,
    pick_challenge,
)
from media_gateway.sip.message import SipRequest
from media_gateway.sip.parser import parse_message

REALM = "hotline"
PASSWORDS = {f"10{n:02d}": f"pw-{n}" for n in range(1, 5)}
STORED = {
    (user, a): digest_ha1(a, user, REALM, pw)
    for user, pw in PASSWORDS.items()
    for a in ("MD5", "SHA-256")
}
_seq = itertools.count(1)


def make() -> Registrations:
    return Registrations(
        RegistrationSettings(realm=REALM, algorithms=("SHA-256", "MD5")),
        ha1_for=lambda user, algorithm: STORED.get((user, algorithm)),
    )


def request(user: str, authorization: str = "", host: str = "10.0.0.5") -> SipRequest:
    n = next(_seq)
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:5062;branch=z9hG4bK-{n}",
        f"From: <sip:{user}@127.0.0.1>;tag={n}",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: reg-{user}-{host}",
        f"CSeq: {n} REGISTER",
        f"Contact: <sip:{user}@{host}:5062>",
        "Expires: 600",
        *([f"Authorization: {authorization}"] if authorization else []),
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, SipRequest)
    return msg


def challenge_of(headers: list[tuple[str, str]]) -> str:
    return pick_challenge([v for k, v in headers if k == "WWW-Authenticate"])


def nonce_of(challenge: str) -> str:
    return parse_auth_header(challenge)[1]["nonce"]


def answer(
    challenge: str, user: str, password: str, *, nc: int = 1, method: str = "REGISTER"
) -> str:
    return build_authorization(
        challenge,
        method=method,
        uri="sip:127.0.0.1",
        username=user,
        password=password,
        cnonce=f"c{next(_seq)}",
        nc=nc,
    )


def test_four_lines_challenged_in_the_same_instant_all_register() -> None:
    regs = make()
    src = ("10.0.0.5", 5062)
    firsts = {
        u: regs.register(request(u), source=src, transport="udp", now=100.0) for u in PASSWORDS
    }
    challenges = {u: challenge_of(r.headers) for u, r in firsts.items()}
    assert len({nonce_of(c) for c in challenges.values()}) == 4  # not a millisecond clock
    for user, challenge in challenges.items():
        reply = regs.register(
            request(user, answer(challenge, user, PASSWORDS[user])),
            source=src,
            transport="udp",
            now=100.0,
        )
        assert reply.status == 200, user
    assert all(regs.contacts(u, 101.0) for u in PASSWORDS)


def test_a_captured_register_resent_from_another_address_is_refused() -> None:
    regs = make()
    first = regs.register(request("1001"), source=("10.0.0.5", 5062), transport="udp", now=0.0)
    captured = answer(challenge_of(first.headers), "1001", PASSWORDS["1001"])
    replayed = regs.register(
        request("1001", captured, host="10.6.6.6"),
        source=("10.6.6.6", 5062),
        transport="udp",
        now=1.0,
    )
    assert replayed.status == 401 and challenge_of(replayed.headers)  # a new challenge
    assert not regs.contacts("1001", 1.0)  # the attacker's contact was not bound
    # the phone itself still registers with the same answer
    ok = regs.register(
        request("1001", captured), source=("10.0.0.5", 5062), transport="udp", now=1.0
    )
    assert ok.status == 200


def test_a_replayed_nonce_count_is_refused() -> None:
    regs = make()
    src = ("10.0.0.5", 5062)
    first = regs.register(request("1001"), source=src, transport="udp", now=0.0)
    value = answer(challenge_of(first.headers), "1001", PASSWORDS["1001"])
    assert regs.register(request("1001", value), source=src, transport="udp", now=1.0).status == 200
    again = regs.register(request("1001", value), source=src, transport="udp", now=2.0)
    assert again.status == 401


def test_an_answer_without_qop_is_refused_with_a_new_challenge() -> None:
    regs = make()
    src = ("10.0.0.5", 5062)
    first = regs.register(request("1001"), source=src, transport="udp", now=0.0)
    legacy = format_challenge(realm=REALM, nonce=nonce_of(challenge_of(first.headers)), qop=None)
    value = answer(legacy, "1001", PASSWORDS["1001"])
    assert "qop" not in parse_auth_header(value)[1]
    reply = regs.register(request("1001", value), source=src, transport="udp", now=1.0)
    assert reply.status == 401
    assert 'qop="auth"' in challenge_of(reply.headers)


def test_a_register_nonce_does_not_serve_an_invite() -> None:
    regs = make()
    first = regs.register(request("1001"), source=("10.0.0.5", 5062), transport="udp", now=0.0)
    value = answer(challenge_of(first.headers), "1001", PASSWORDS["1001"], method="INVITE")
    assert not regs.auth.verify("INVITE", value, 1.0, source="10.0.0.5").ok
    invite_nonce = regs.auth.challenge(0.0, use="INVITE", source="10.0.0.5")[0]
    value = answer(invite_nonce, "1001", PASSWORDS["1001"], method="INVITE")
    assert regs.auth.verify("INVITE", value, 1.0, source="10.0.0.5").ok


def test_nonces_expire() -> None:
    regs = make()
    src = ("10.0.0.5", 5062)
    first = regs.register(request("1001"), source=src, transport="udp", now=0.0)
    value = answer(challenge_of(first.headers), "1001", PASSWORDS["1001"])
    late = regs.register(
        request("1001", value), source=src, transport="udp", now=regs.settings.nonce_ttl + 1
    )
    assert late.status == 401 and "stale=true" in challenge_of(late.headers)


def test_unknown_user_and_wrong_password_get_the_same_answer() -> None:
    regs = make()
    src = ("10.0.0.5", 5062)

    def wrong(user: str) -> tuple[int, list[str]]:
        first = regs.register(request(user), source=src, transport="udp", now=0.0)
        reply = regs.register(
            request(user, answer(challenge_of(first.headers), user, "guess")),
            source=src,
            transport="udp",
            now=0.5,
        )
        return reply.status, [k for k, _ in reply.headers]

    known, unknown = wrong("1001"), wrong("9999")
    assert known == unknown and known[0] == 401 and "WWW-Authenticate" in known[1]
