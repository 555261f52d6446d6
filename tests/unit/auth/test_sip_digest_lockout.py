"""REGISTER digests checked against stored HA1s, under the brute-force lockout, on a clock the
test moves (``Registrations.register`` takes ``now``); the browser phone's login too."""

from __future__ import annotations

import itertools

from media_gateway.registrations import Registrations, RegistrationSettings
from media_gateway.sip.auth import build_authorization, digest_ha1, pick_challenge
from media_gateway.sip.lockout import Locked, Lockout, LockoutPolicy
from media_gateway.sip.message import SipRequest
from media_gateway.sip.parser import parse_message

REALM = "hotline"
PASSWORD = "correct horse"
STORED = {
    ("alice", a): digest_ha1(a, "alice", REALM, PASSWORD) for a in ("MD5", "SHA-256")
}  # what the staff file keeps: no password anywhere below
_seq = itertools.count(1)


def registrations(**policy: float) -> tuple[Registrations, list[Locked]]:
    heard: list[Locked] = []
    lockout = Lockout(
        LockoutPolicy(max_failures=3, lockout_seconds=60.0, **policy),  # type: ignore[arg-type]
        on_lock=heard.append,
    )
    regs = Registrations(
        RegistrationSettings(realm=REALM, algorithms=("SHA-256", "MD5")),
        ha1_for=lambda user, algorithm: STORED.get((user, algorithm)),
        lockout=lockout,
    )
    return regs, heard


def request(user: str, authorization: str = "") -> SipRequest:
    n = next(_seq)
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-{n}",
        f"From: <sip:{user}@127.0.0.1>;tag={n}",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: reg-{user}",
        f"CSeq: {n} REGISTER",
        f"Contact: <sip:{user}@10.0.0.5:5062>",
        "Expires: 600",
        "Max-Forwards: 70",
        *([f"Authorization: {authorization}"] if authorization else []),
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, SipRequest)
    return msg


def attempt(
    regs: Registrations, user: str, password: str, now: float, source: str = "10.0.0.5"
) -> int:
    """A phone's REGISTER: challenged, then answered with ``password``; the final status."""
    first = regs.register(request(user), source=(source, 5062), transport="udp", now=now)
    assert first.status == 401
    challenge = pick_challenge([v for k, v in first.headers if k == "WWW-Authenticate"])
    auth = build_authorization(
        challenge,
        method="REGISTER",
        uri="sip:127.0.0.1",
        username=user,
        password=password,
        cnonce=f"c{next(_seq)}",
    )
    reply = regs.register(request(user, auth), source=(source, 5062), transport="udp", now=now)
    return reply.status


def test_the_right_password_registers_against_the_stored_ha1() -> None:
    regs, _ = registrations()
    assert attempt(regs, "alice", PASSWORD, 0.0) == 200
    assert regs.contacts("alice", 1.0)


def test_locked_after_n_wrong_passwords_right_one_refused_then_released() -> None:
    regs, heard = registrations()
    assert [attempt(regs, "alice", "guess", float(t)) for t in range(3)] == [401, 401, 401]
    assert len(heard) == 1 and heard[0].channel == "sip" and heard[0].key == "alice"
    # locked: 403 without looking at the credentials, the right password included
    assert attempt(regs, "alice", PASSWORD, 10.0) == 403
    assert attempt(regs, "alice", "guess", 20.0) == 403
    assert not regs.contacts("alice", 21.0)
    # the lock ends after lockout_seconds (60 s from the third failure, at t=2)
    assert attempt(regs, "alice", PASSWORD, 61.9) == 403
    assert attempt(regs, "alice", PASSWORD, 62.0) == 200
    assert len(heard) == 1  # one lock, one line


def test_an_unknown_user_gets_the_same_answers() -> None:
    regs, heard = registrations()
    assert [attempt(regs, "mallory", "guess", float(t)) for t in range(4)] == [401, 401, 401, 403]
    assert [(h.scope, h.key) for h in heard] == [("account", "mallory")]


def test_one_address_guessing_many_names_is_refused_for_every_name() -> None:
    regs, heard = registrations(source_max_failures=4)
    for i in range(4):
        assert attempt(regs, f"name{i}", "guess", float(i), source="198.51.100.9") == 401
    assert attempt(regs, "alice", PASSWORD, 5.0, source="198.51.100.9") == 403
    assert attempt(regs, "alice", PASSWORD, 5.0, source="10.0.0.5") == 200  # elsewhere: fine
    assert ("source", "198.51.100.9") in [(h.scope, h.key) for h in heard]


def test_a_stale_nonce_or_a_missing_header_is_not_a_guess() -> None:
    regs, heard = registrations()
    for t in range(10):  # phones that REGISTER without credentials first are not guessing
        reply = regs.register(request("alice"), source=("10.0.0.5", 5062), transport="udp", now=t)
        assert reply.status == 401
    assert heard == []
    assert attempt(regs, "alice", PASSWORD, 11.0) == 200


def test_the_browser_phone_login_shares_the_lockout() -> None:
    regs, heard = registrations()
    assert regs.login("alice", PASSWORD, source="10.0.0.7", now=0.0).ok
    failures = [regs.login("alice", "guess", source="10.0.0.7", now=float(t)) for t in range(3)]
    assert [f.ok for f in failures] == [False, False, False]
    assert failures[-1].delay > 0  # slowed down before the lock
    assert heard[0].channel == "browser_phone"
    locked = regs.login("alice", PASSWORD, source="10.0.0.7", now=5.0)
    assert not locked.ok and locked.locked
    # the same lockout refuses the phone's REGISTER too
    assert attempt(regs, "alice", PASSWORD, 6.0) == 403
    assert regs.login("alice", PASSWORD, source="10.0.0.7", now=63.0).ok


def test_check_password_uses_the_ha1_and_says_nothing_more_for_unknown_users() -> None:
    regs, _ = registrations()
    assert regs.check_password("alice", PASSWORD)
    assert not regs.check_password("alice", PASSWORD + "x")
    assert not regs.check_password("nobody", PASSWORD)


EDGE = ("10.200.0.1", 5060)


def through_edge(regs: Registrations, user: str, password: str, now: float, client: str) -> int:
    """A phone's REGISTER relayed by a cluster's edge: every packet comes from the edge, which
    names the phone's own address (``X-Hotline-Source``, read by the user agent)."""
    first = regs.register(request(user), source=EDGE, transport="udp", now=now,
                          client=(client, 5062))  # fmt: skip
    assert first.status == 401
    challenge = pick_challenge([v for k, v in first.headers if k == "WWW-Authenticate"])
    auth = build_authorization(challenge, method="REGISTER", uri="sip:127.0.0.1",
                               username=user, password=password, cnonce=f"c{next(_seq)}")  # fmt: skip
    reply = regs.register(request(user, auth), source=EDGE, transport="udp", now=now,
                          client=(client, 5062))  # fmt: skip
    return reply.status


def test_behind_a_cluster_edge_a_guesser_locks_out_its_own_address_not_the_edge() -> None:
    regs, heard = registrations(source_max_failures=4)
    for i in range(4):  # one address guessing many names, behind the edge
        assert through_edge(regs, f"name{i}", "guess", float(i), "198.51.100.9") == 401
    assert through_edge(regs, "alice", PASSWORD, 5.0, "198.51.100.9") == 403
    assert ("source", "198.51.100.9") in [(h.scope, h.key) for h in heard]
    # alice's phone, behind the same edge, is not locked out with the guesser
    assert through_edge(regs, "alice", PASSWORD, 5.0, "10.0.0.5") == 200
    [binding] = regs.contacts("alice", 6.0)
    assert binding.source == EDGE  # and is reached through the edge
