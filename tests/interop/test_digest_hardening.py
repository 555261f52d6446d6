"""Issue 11, digest hardening, against a real ``hotline serve`` inside a loopback-only network
namespace (the hostile traffic never leaves it): four phones challenged in the same instant all
register; a captured REGISTER resent from another address is refused; one source guessing over
many names is locked while the same user from another address still registers; a colleague's
extension called from a stranger's socket at a registered phone's address is challenged (407).

The SIP clients run inside the namespace too: this module is also their entry point
(``python -m tests.interop.test_digest_hardening SCENARIO SIP_PORT``, prints JSON).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from media_gateway.sip.auth import build_authorization, pick_challenge
from media_gateway.sip.message import SipResponse
from media_gateway.sip.parser import parse_message
from tests.interop.harness import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {u: f"{u}-demo-1" for u in ("alice", "bob", "carol", "dave")}
_n = itertools.count(1)


# -- the client, run inside the namespace ---------------------------------------------------


class Phone:
    def __init__(self, port: int, host: str = "127.0.0.1", bind_port: int = 0) -> None:
        self.target = ("127.0.0.1", port)
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, bind_port))
        self.sock.settimeout(6.0)
        self.port = self.sock.getsockname()[1]

    def request(self, user: str, authorization: str = "") -> bytes:
        n = next(_n)
        lines = [
            f"REGISTER sip:127.0.0.1:{self.target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK-dh-{n}-{self.port};rport",
            f"From: <sip:{user}@127.0.0.1>;tag=t{n}",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: dh-{user}-{self.port}",
            f"CSeq: {n} REGISTER",
            f"Contact: <sip:{user}@{self.host}:{self.port}>",
            "Max-Forwards: 70",
            "Expires: 60",
            *([f"Authorization: {authorization}"] if authorization else []),
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    def invite(self, extension: str, proxy_authorization: str = "") -> bytes:
        n = next(_n)
        lines = [
            f"INVITE sip:{extension}@127.0.0.1:{self.target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK-inv-{n}-{self.port};rport",
            f"From: <sip:stranger@{self.host}>;tag=s{n}",
            f"To: <sip:{extension}@127.0.0.1>",
            f"Call-ID: stranger-{self.port}",
            f"CSeq: {n} INVITE",
            f"Contact: <sip:stranger@{self.host}:{self.port}>",
            "Max-Forwards: 70",
            *([f"Proxy-Authorization: {proxy_authorization}"] if proxy_authorization else []),
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def final(self) -> SipResponse:
        while True:
            data, _ = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if isinstance(msg, SipResponse) and msg.status >= 200:
                return msg

    def answer(self, challenge: SipResponse, user: str, password: str) -> bytes:
        value = build_authorization(
            pick_challenge(challenge.headers.get_list("WWW-Authenticate")),
            method="REGISTER",
            uri=f"sip:127.0.0.1:{self.target[1]}",
            username=user,
            password=password,
            cnonce=f"cn{next(_n)}",
        )
        return self.request(user, value)

    def register(self, user: str, password: str) -> int:
        self.send(self.request(user))
        first = self.final()
        if first.status != 401:
            return first.status
        self.send(self.answer(first, user, password))
        return self.final().status


def _rebranch(data: bytes) -> bytes:
    """The same REGISTER as a new transaction (new branch and CSeq), credentials untouched."""
    text = data.decode()
    text = re.sub(r"branch=z9hG4bK-[^;\r]+", "branch=z9hG4bK-replay", text)
    return re.sub(r"CSeq: \d+", "CSeq: 99999", text).encode()


def client(scenario: str, port: int) -> dict[str, object]:
    if scenario == "four":
        phones = {u: Phone(port) for u in PASSWORDS}
        for user, phone in phones.items():  # four REGISTERs in the same instant
            phone.send(phone.request(user))
        challenges = {u: p.final() for u, p in phones.items()}
        nonces = {c.headers.get("WWW-Authenticate") for c in challenges.values()}
        for user, phone in phones.items():
            phone.send(phone.answer(challenges[user], user, PASSWORDS[user]))
        return {
            "distinct_challenges": len(nonces),
            "statuses": {u: p.final().status for u, p in phones.items()},
        }
    if scenario == "replay":
        phone, thief = Phone(port, "127.0.0.1"), Phone(port, "127.0.0.2")
        phone.send(phone.request("alice"))
        captured = phone.answer(phone.final(), "alice", PASSWORDS["alice"])
        phone.send(captured)
        first = phone.final().status
        thief.sock.sendto(_rebranch(captured), thief.target)  # within the nonce's life
        replayed = thief.final()
        return {
            "phone": first,
            "replayed": replayed.status,
            "rechallenged": bool(replayed.headers.get_list("WWW-Authenticate")),
        }
    if scenario == "source":
        guesser, colleague = Phone(port, "127.0.0.3"), Phone(port, "127.0.0.4")
        guesses = [guesser.register(f"nobody{i}", "guess") for i in range(5)]
        return {
            "guesses": guesses,
            "right_from_guesser": guesser.register("dave", PASSWORDS["dave"]),
            "right_from_elsewhere": colleague.register("dave", PASSWORDS["dave"]),
        }
    if scenario == "stranger":
        phone = Phone(port, "127.0.0.5")
        assert phone.register("dave", PASSWORDS["dave"]) == 200
        address = phone.port
        phone.sock.close()  # the phone goes quiet; its registration stays
        stranger = Phone(port, "127.0.0.5", bind_port=address)  # a stranger's socket there
        stranger.send(stranger.invite("1002"))
        asked = stranger.final()
        value = build_authorization(
            pick_challenge(asked.headers.get_list("Proxy-Authenticate")),
            method="INVITE",
            uri=f"sip:1002@127.0.0.1:{port}",
            username="dave",
            password=PASSWORDS["dave"],
            cnonce="cn-colleague",
        )
        stranger.send(stranger.invite("1002", value))
        return {"unauthenticated": asked.status, "with_daves_password": stranger.final().status}
    raise SystemExit(f"unknown scenario {scenario}")


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test creates a network namespace and must run as root (CI does)")
    name = f"hl-digest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def server(tmp_path: Path, netns: str) -> Iterator[Server]:
    demo = (ROOT / "hotline" / "demo.toml").read_text()
    demo = demo.replace('"demo-staff.toml"', json.dumps(str(ROOT / "hotline" / "demo-staff.toml")))
    text = demo + "\n[security]\nmax_failures = 5\nsource_max_failures = 4\n"
    srv = start_server(tmp_path, text, netns=netns)
    try:
        yield srv
    finally:
        srv.stop()


def run_client(netns: str, server: Server, scenario: str) -> dict[str, object]:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            __name__,
            scenario,
            str(server.sip_port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.netns
@pytest.mark.interop
def test_four_lines_registering_in_the_same_instant_are_all_accepted(
    server: Server, netns: str
) -> None:
    result = run_client(netns, server, "four")
    assert result["statuses"] == dict.fromkeys(PASSWORDS, 200)
    assert result["distinct_challenges"] == 4
    assert "Traceback" not in server.log_path.read_text()


@pytest.mark.netns
@pytest.mark.interop
def test_a_captured_register_resent_from_another_address_is_refused(
    server: Server, netns: str
) -> None:
    result = run_client(netns, server, "replay")
    assert result == {"phone": 200, "replayed": 401, "rechallenged": True}
    refused = [r for r in server.log_lines() if r.get("event") == "register_refused"]
    assert [r["source"].split(":")[0] for r in refused] == ["127.0.0.2"]


@pytest.mark.netns
@pytest.mark.interop
def test_one_source_guessing_many_names_is_locked_not_the_user_elsewhere(
    server: Server, netns: str
) -> None:
    result = run_client(netns, server, "source")
    assert result["guesses"] == [401, 401, 401, 401, 403]  # locked by source, not by name
    assert result["right_from_guesser"] == 403
    assert result["right_from_elsewhere"] == 200
    locks = [r for r in server.log_lines() if r.get("event") == "sign_in_locked"]
    assert [(r["scope"], r["key"]) for r in locks] == [("source", "127.0.0.3")]


@pytest.mark.netns
@pytest.mark.interop
def test_a_colleague_call_from_a_strangers_socket_at_a_registered_address_is_challenged(
    server: Server, netns: str
) -> None:
    result = run_client(netns, server, "stranger")
    # challenged, not rung: the address alone proves nothing
    assert result["unauthenticated"] == 407
    # a colleague's password gets through the challenge (bob has no phone here: 480)
    assert result["with_daves_password"] == 480


if __name__ == "__main__":
    print(json.dumps(client(sys.argv[1], int(sys.argv[2]))))
