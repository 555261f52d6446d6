"""A real ``hotline serve`` whose passwords were set with ``hotline passwd``: SIPp registers with
digest against the stored HA1 and the API signs in against the argon2 hash; then a REGISTER
brute force over UDP from 127.0.0.1 is locked after N failures, the right password is refused
while locked, an unknown user gets the same answers, and each lock is one log line."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from media_gateway.sip.auth import build_authorization, pick_challenge
from media_gateway.sip.message import SipResponse
from media_gateway.sip.parser import parse_message
from tests.interop.harness import SCENARIOS, Server, free_port, run_sipp, start_server

pytestmark = pytest.mark.interop

CONFIG = """
[server]
staff_file = "{staff}"

[security]
max_failures = 3
lockout_seconds = 300
source_max_failures = 50

[sip]
transports = ["udp"]
rtp_ports = [44100, 44300]

[media]
process = false

[[agents]]
id = "alice"
queues = ["sales"]

[[agents]]
id = "bob"
queues = ["sales"]

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.sales]
strategy = "longest-idle"
"""

ALICE = "alice-from-passwd"
PASSWD = [sys.executable, "-m", "hotline.cli", "passwd"]
REGISTER = ["-sf", str(SCENARIOS / "register.xml")]
_n = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("register-lockout")
    text = CONFIG.format(staff=tmp / "staff.toml")
    cfg = tmp / "site.toml"
    cfg.write_text(text)
    for user, password in (("alice", ALICE), ("bob", "bob-from-passwd")):
        done = subprocess.run(
            [*PASSWD, user, "--config", str(cfg), "--password-stdin"],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert ALICE not in (tmp / "staff.toml").read_text()
    srv = start_server(tmp, text)
    try:
        yield srv
    finally:
        srv.stop()


class UdpPhone:
    """A bare SIP client on 127.0.0.1: REGISTER, answer the challenge, read the final status."""

    def __init__(self, server: Server) -> None:
        self.target = ("127.0.0.1", server.sip_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def _send(self, user: str, authorization: str = "") -> SipResponse:
        n = next(_n)
        lines = [
            f"REGISTER sip:127.0.0.1:{self.target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-lock-{n};rport",
            f"From: <sip:{user}@127.0.0.1>;tag=t{n}",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: lockout-{user}-{self.port}",
            f"CSeq: {n} REGISTER",
            f"Contact: <sip:{user}@127.0.0.1:{self.port}>",
            "Max-Forwards: 70",
            "Expires: 60",
            *([f"Authorization: {authorization}"] if authorization else []),
            "Content-Length: 0",
            "",
            "",
        ]
        self.sock.sendto("\r\n".join(lines).encode(), self.target)
        while True:
            data, _ = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if isinstance(msg, SipResponse) and msg.status >= 200:
                return msg

    def register(self, user: str, password: str) -> int:
        first = self._send(user)
        assert first.status == 401, first.status
        challenge = pick_challenge(first.headers.get_list("WWW-Authenticate"))
        auth = build_authorization(
            challenge,
            method="REGISTER",
            uri=f"sip:127.0.0.1:{self.target[1]}",
            username=user,
            password=password,
            cnonce=f"cn{next(_n)}",
        )
        return self._send(user, auth).status


def sign_in(server: Server, user: str, password: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/api/session",
        data=json.dumps({"user": user, "password": password}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_passwords_set_by_hotline_passwd_work_for_sipp_register_and_the_api(
    server: Server, tmp_path: Path
) -> None:
    registered = run_sipp(
        [*REGISTER, "-s", "bob", "-au", "bob", "-ap", "bob-from-passwd", "-m", "1"],
        workdir=tmp_path / "register",
        target=server.sip,
        timeout=20,
    )
    assert registered.successful == 1, registered.stdout + registered.errors
    assert [r["agent"] for r in server.api("/api/registrations")] == ["bob"]
    assert sign_in(server, "bob", "bob-from-passwd") == 200
    assert sign_in(server, "bob", "not-bobs") == 401


def test_register_brute_force_is_locked_and_unknown_users_get_the_same_answers(
    server: Server,
) -> None:
    phone = UdpPhone(server)
    try:
        assert phone.register("alice", ALICE) == 200  # the right password works at first
        wrong = [phone.register("alice", f"guess-{i}") for i in range(3)]
        assert wrong == [401, 401, 401]
        assert phone.register("alice", ALICE) == 403  # locked: the right one is refused
        unknown = [phone.register("mallory", f"guess-{i}") for i in range(4)]
        assert unknown == [401, 401, 401, 403]  # the same answers for a name that is nobody
        assert phone.register("mallory", "anything") == 403
    finally:
        phone.close()
    # one lockout for every channel: the API refuses alice too, with her right password
    assert sign_in(server, "alice", ALICE) == 423
    locks = [line for line in server.log_lines() if line.get("event") == "sign_in_locked"]
    assert sorted((line["key"], line["channel"]) for line in locks) == [
        ("alice", "sip"),
        ("mallory", "sip"),
    ]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics") as resp:
        metrics = resp.read().decode()
    assert 'hotline_auth_lockouts_total{channel="sip",scope="account"} 2.0' in metrics
    assert 'hotline_registrations_total{outcome="locked"}' in metrics
