"""1,100 idle TCP connections from one address to the SIP port and to the HTTP port of a running
``hotline serve`` with the usual 1,024 open-file limit (issue 11), inside a loopback-only
network namespace.

Before the limits, the flood took every descriptor: ``accept()`` failed for everyone, the HTTP
API and SIP over TCP stopped answering, and nothing was logged; half-sent messages stayed open
forever. Now the newest connection over the per-source cap is closed at once, the API and SIP
over TCP answer another address, half-sent messages are closed after the message timeout and
idle connections after the idle timeout, with one log line per source and limit.

The client half of this file runs inside the namespace (``python -m tests.interop.test_tcp_limits
PORTS``): it opens the connections, probes and reports JSON.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.harness import OPERATOR_TOKEN, Server, start_server

ROOT = Path(__file__).resolve().parents[2]
FLOOD = 1100
SIP_PER_SOURCE = 32
HTTP_PER_SOURCE = 48
MESSAGE_TIMEOUT = 2.0
IDLE_TIMEOUT = 4.0

LIMITS = f"""
[sip.tcp]
idle_timeout = {IDLE_TIMEOUT}
message_timeout = {MESSAGE_TIMEOUT}
max_connections_per_source = {SIP_PER_SOURCE}

[http.connections]
message_timeout = {MESSAGE_TIMEOUT}
max_connections_per_source = {HTTP_PER_SOURCE}
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test creates a network namespace and must run as root (CI does)")
    name = f"hl-tcp-{uuid.uuid4().hex[:8]}"
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
    srv = start_server(tmp_path, demo + LIMITS, netns=netns)
    try:
        # The usual limit of a service started by hand: 1,024 descriptors, hard limit too.
        subprocess.run(
            ["prlimit", "--pid", str(srv.proc.pid), "--nofile=1024:1024"], check=True, timeout=10
        )
        yield srv
    finally:
        srv.stop()


@pytest.mark.netns
@pytest.mark.interop
def test_1100_idle_connections_leave_the_api_and_sip_over_tcp_answering(
    server: Server, netns: str
) -> None:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            __name__,
            str(server.sip_port),
            str(server.http_port),
        ],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=ROOT,
        check=False,
        env={**os.environ, "HOTLINE_TEST_TOKEN": OPERATOR_TOKEN},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    # Another address is served while the flood holds its connections.
    assert result["healthz"] == 200
    assert result["signed_in"] == 200
    assert result["options_tcp"] == 200
    assert result["sipp_register_tcp"] == 0
    # The flood got at most its cap; the rest was closed at once.
    assert result["sip"]["kept"] <= SIP_PER_SOURCE
    assert result["http"]["kept"] <= HTTP_PER_SOURCE
    assert result["sip"]["opened"] == FLOOD and result["http"]["opened"] == FLOOD
    # Half-sent messages and idle connections are closed by the service.
    assert result["half_sent_sip_closed"] is True
    assert result["half_sent_http_closed"] is True
    assert result["idle_closed"] is True
    assert server.proc.poll() is None
    limited = [r for r in server.log_lines() if r.get("event") == "connection_limited"]
    episodes = sorted((r["server"], r["source"], r["reason"]) for r in limited)
    # One line per source and limit, not one per connection.
    assert episodes == sorted(
        [
            ("sip", "127.0.0.1", "per_source"),
            ("http", "127.0.0.1", "per_source"),
            ("sip", "127.0.0.1", "idle_timeout"),
            ("http", "127.0.0.1", "message_timeout"),
            ("sip", "127.0.0.3", "message_timeout"),
            ("http", "127.0.0.3", "message_timeout"),
        ]
    ), episodes
    # Every connection is counted: refused over the cap, or closed by a timeout later (slots
    # freed by the idle timeout admit later connections of the flood: a cap, not a quota).
    counted = result["metrics"]
    sip_refused = counted['reason="per_source",server="sip"']
    assert sip_refused + counted['reason="idle_timeout",server="sip"'] == FLOOD
    assert sip_refused >= FLOOD // 2
    assert counted['reason="message_timeout",server="sip"'] == 1  # the half-sent one
    http_refused = counted['reason="per_source",server="http"']
    assert http_refused + counted['reason="message_timeout",server="http"'] == FLOOD + 1
    assert http_refused >= FLOOD // 2
    assert "Traceback" not in server.log_path.read_text()


# -- the client, run inside the namespace --------------------------------------------------------


def _flood(port: int) -> list[socket.socket]:
    socks = []
    for _ in range(FLOOD):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    return socks


def _closed_by_peer(socks: list[socket.socket], want: int, timeout: float) -> set[socket.socket]:
    """Wait until ``want`` of ``socks`` are closed by the service (or ``timeout``)."""
    closed: set[socket.socket] = set()
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while len(closed) < want and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed.add(conn)
                sel.unregister(conn)
    sel.close()
    return closed


def _http(port: int, path: str, token: str | None = None) -> int:
    """A request from 127.0.0.2 (not the flooding address)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    s.close()
    return int(head.split(b" ", 2)[1]) if head else 0


def _options_tcp(port: int) -> int:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
    here = s.getsockname()
    msg = (
        f"OPTIONS sip:hotline@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP {here[0]}:{here[1]};branch=z9hG4bK-{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{here[0]}>;tag=p1\r\n"
        f"To: <sip:hotline@127.0.0.1:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@probe\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    s.sendall(msg.encode())
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    s.close()
    return int(head.split(b" ", 2)[1]) if head else 0


def _sipp_register(port: int) -> int:
    """SIPp registers bob over TCP from 127.0.0.2 (digest challenge and answer): its exit code."""
    sipp = shutil.which("sipp")
    assert sipp, "sipp is not installed: run scripts/bootstrap --test"
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        local = s.getsockname()[1]
    scenario = ROOT / "tests" / "interop" / "scenarios" / "register.xml"
    done = subprocess.run(
        [
            sipp,
            f"127.0.0.1:{port}",
            *("-i", "127.0.0.2", "-p", str(local), "-t", "t1"),
            *("-sf", str(scenario), "-s", "bob", "-au", "bob", "-ap", "bob-demo-1"),
            *("-m", "1", "-nostdin", "-timeout", "15s", "-timeout_error"),
        ],
        capture_output=True,
        timeout=40,
        cwd="/tmp",
        check=False,
    )
    return done.returncode


def _half_sent(port: int, start: bytes) -> bool:
    """A message started from 127.0.0.3 and never finished is closed by the service."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.3", 0))
    s.sendall(start)
    s.settimeout(MESSAGE_TIMEOUT + 15)
    try:
        closed = s.recv(4096) == b""
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        closed = False
    s.close()
    return closed


def _metrics(port: int, token: str) -> dict[str, float]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback, inside the namespace
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hotline_connections_limited_total{"):
            labels, value = line.split("{", 1)[1].rsplit("} ", 1)
            out[labels] = float(value)
    return out


def client(sip_port: int, http_port: int) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))
    token = os.environ["HOTLINE_TEST_TOKEN"]
    result: dict[str, Any] = {}
    sip = _flood(sip_port)
    http = _flood(http_port)
    sip_closed = _closed_by_peer(sip, FLOOD - SIP_PER_SOURCE, 20)
    http_closed = _closed_by_peer(http, FLOOD - HTTP_PER_SOURCE, 20)
    result["sip"] = {"opened": len(sip), "kept": len(sip) - len(sip_closed)}
    result["http"] = {"opened": len(http), "kept": len(http) - len(http_closed)}
    result["healthz"] = _http(http_port, "/healthz")
    result["signed_in"] = _http(http_port, "/api/debug/sip", token)
    result["options_tcp"] = _options_tcp(sip_port)
    result["sipp_register_tcp"] = _sipp_register(sip_port)
    result["half_sent_sip_closed"] = _half_sent(
        sip_port, b"OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.3:5\r\n"
    )
    result["half_sent_http_closed"] = _half_sent(
        http_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    )
    rest = [s for s in sip if s not in sip_closed] + [s for s in http if s not in http_closed]
    result["idle_closed"] = len(_closed_by_peer(rest, len(rest), IDLE_TIMEOUT + 20)) == len(rest)
    for s in sip + http:
        s.close()
    result["metrics"] = _metrics(http_port, token)
    return result


if __name__ == "__main__":
    print(json.dumps(client(int(sys.argv[1]), int(sys.argv[2]))))
