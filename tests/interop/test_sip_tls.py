"""SIP over TLS (issue 11) against ``hotline serve`` on 127.0.0.1, with a certificate made for
the test (``cryptography``, into tmp_path; nothing leaves loopback).

- baresip registers over TLS (``;transport=tls``, its CA file the test's certificate) and the
  gateway rings it over the connection the phone opened: baresip answers, the call completes;
- baresip calls the echo test over TLS: the call is answered over the same connection;
- a ``sips:`` OPTIONS over TLS is answered on the same connection, with ``transport=tls`` and
  the TLS port in our Contact; a half-sent message over TLS is closed after the message
  timeout, as over TCP.

Debian's SIPp (``SIPp v3.6.1-SCTP-PCAP-RTPSTREAM``) is built without TLS (``-t l1`` is
refused), so the peers here are baresip and Python's ``ssl``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from media_gateway.audio.tones import tone
from media_gateway.audio.wav import write_wav
from tests.interop.harness import Server, free_port, start_server

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "sip-cert.pem", tmp / "sip-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, int, Path]]:
    cert, key = _self_signed(tmp_path)
    tls_port = free_port(socket.SOCK_STREAM)
    demo = (ROOT / "hotline" / "demo.toml").read_text()
    demo = demo.replace('"demo-staff.toml"', json.dumps(str(ROOT / "hotline" / "demo-staff.toml")))
    text = (
        demo
        + f"\n[sip.tls]\nport = {tls_port}\ncert = {json.dumps(str(cert))}\n"
        + f"key = {json.dumps(str(key))}\n"
        + f"\n[sip.tcp]\nmessage_timeout = {MESSAGE_TIMEOUT}\nidle_timeout = {IDLE_TIMEOUT}\n"
    )
    srv = start_server(tmp_path, text)
    try:
        _settled(srv)
        yield srv, tls_port, cert
    finally:
        assert srv.stop() == 0


def _settled(server: Server, timeout: float = 15.0) -> None:
    """Wait out an overload flag raised by the loop lag of a busy machine just after start-up
    (new INVITEs would get 503 + Retry-After for its hold time)."""
    time.sleep(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flags = [r["overloaded"] for r in server.log_lines() if r.get("event") == "overload"]
        if not flags or flags[-1] is False:
            return
        time.sleep(0.2)


def _baresip(
    tmp: Path, tls_port: int, ca: Path, user: str, password: str, commands: list[str], seconds: int
) -> subprocess.Popen[str]:
    binary = shutil.which("baresip")
    assert binary, "baresip is not installed: run scripts/bootstrap --test"
    conf = tmp / f"baresip-tls-{user}"
    conf.mkdir()
    source = conf / "mic.wav"  # an 8 kHz tone as the microphone
    write_wav(source, tone([440.0], float(seconds)))
    (conf / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{tls_port};transport=tls>;auth_pass={password};"
        "regint=120;answermode=auto;audio_codecs=PCMU,PCMA\n"
    )
    (conf / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{free_port(pair=True)}",  # TLS listens on port + 1
                f"sip_cafile {ca}",
                "net_interface 127.0.0.1",
                "audio_player aufile,/dev/null",
                f"audio_source aufile,{source}",
                "audio_alert aufile,/dev/null",
                "rtp_ports 41000-41999",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module_app account.so",
                "module_app menu.so",
                "",
            ]
        )
    )
    cmd = [binary, "-f", str(conf), "-t", str(seconds)]
    for c in commands:
        cmd += ["-e", c]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        stdin=subprocess.DEVNULL,
    )


def _wait_registered(server: Server, user: str, timeout: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        regs = [r for r in server.api("/api/registrations") if r["agent"] == user]
        if regs:
            return regs
        time.sleep(0.2)
    return []


def test_baresip_registers_over_tls_and_answers_a_call_over_its_connection(
    tls_server: tuple[Server, int, Path], tmp_path: Path
) -> None:
    server, tls_port, cert = tls_server
    phone = _baresip(tmp_path, tls_port, cert, "bob", "bob-demo-1", [], seconds=30)
    outcome: dict[str, object] = {}
    try:
        regs = _wait_registered(server, "bob", timeout=20)
        if regs:
            assert "transport=tls" in str(regs[0]["contact"]).lower()
            # Quiet for longer than the idle timeout: the registration keeps its connection.
            time.sleep(IDLE_TIMEOUT + 1.5)
            outcome = server.api(
                "/api/dial", method="POST", body={"agent": "bob", "hold_seconds": 1}
            )
    finally:
        phone.terminate()
        out, _ = phone.communicate(timeout=15)
    assert regs, out[-3000:]
    assert outcome.get("outcome") == "answered", (outcome, out[-3000:])
    assert "Call established" in out, out[-2000:]
    assert "tls_no_connection" not in server.log_path.read_text()


def test_baresip_calls_the_echo_test_over_tls(
    tls_server: tuple[Server, int, Path], tmp_path: Path
) -> None:
    server, tls_port, cert = tls_server
    phone = _baresip(
        tmp_path,
        tls_port,
        cert,
        "alice",
        "alice-demo-1",
        [f"/dial sip:*43@127.0.0.1:{tls_port};transport=tls"],
        seconds=5,
    )
    out, _ = phone.communicate(timeout=30)
    assert "Call established" in out, out[-2000:]
    ended = [
        line
        for line in server.log_lines()
        if line.get("event") == "sip_call_ended" and line.get("entry") == "echo"
    ]
    assert len(ended) == 1, server.log_path.read_text()[-3000:]


def _tls_connect(tls_port: int, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_message(s: ssl.SSLSocket, buf: bytearray) -> str:
    """One SIP message from the TLS stream (headers, and the body by Content-Length)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "closed before the answer"
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = buf[:end].decode()
    length = next(
        (
            int(v)
            for k, _, v in (h.partition(":") for h in head.split("\r\n"))
            if k.lower() in ("content-length", "l")
        ),
        0,
    )
    while len(buf) < end + length:
        buf += s.recv(4096)
    del buf[: end + length]
    return head


def _request(
    method: str, uri: str, here: tuple[str, int], call_id: str, cseq: int, **kw: str
) -> bytes:
    body = kw.get("body", "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/TLS {here[0]}:{here[1]};branch=z9hG4bK-{uuid.uuid4().hex}",
        "Max-Forwards: 70",
        "From: <sips:probe@127.0.0.1>;tag=t1",
        f"To: <{uri}>" + (f";tag={kw['to_tag']}" if kw.get("to_tag") else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {'INVITE' if method == 'ACK' else method}",
        f"Contact: <sips:probe@{here[0]}:{here[1]}>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


SDP = (
    "v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 42000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def test_a_sips_call_over_tls_is_answered_on_its_connection_and_a_half_sent_one_closed(
    tls_server: tuple[Server, int, Path],
) -> None:
    _, tls_port, cert = tls_server
    uri = f"sips:*43@127.0.0.1:{tls_port}"
    buf = bytearray()
    with _tls_connect(tls_port, cert) as s:
        here = s.getsockname()
        for _ in range(5):  # a 503 + Retry-After from a busy machine's overload flag: again
            call_id = f"{uuid.uuid4().hex}@probe"
            s.sendall(_request("INVITE", uri, here, call_id, 1, body=SDP))
            head = _read_message(s, buf)
            while head.startswith("SIP/2.0 1"):
                head = _read_message(s, buf)
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (h.partition(":") for h in head.split("\r\n")[1:] if h)
            }
            if not head.startswith("SIP/2.0 503"):
                break
            to_tag = fields["to"].split("tag=")[1].split(";")[0]
            s.sendall(_request("ACK", uri, here, call_id, 1, to_tag=to_tag))
            time.sleep(1.5)
        assert head.startswith("SIP/2.0 200"), head
        # Our Contact names the TLS port and transport (RFC 3261 §26.2): in-dialog requests
        # come back over TLS.
        assert f"127.0.0.1:{tls_port};transport=tls" in fields["contact"]
        to_tag = fields["to"].split("tag=")[1].split(";")[0]
        s.sendall(_request("ACK", uri, here, call_id, 1, to_tag=to_tag))
        s.sendall(_request("BYE", uri, here, call_id, 2, to_tag=to_tag))
        head = _read_message(s, buf)
        assert head.startswith("SIP/2.0 200") and "CSeq: 2 BYE" in head, head
    # A message started and never finished: closed after the message timeout, as over TCP.
    with _tls_connect(tls_port, cert) as s:
        s.sendall(b"OPTIONS sips:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5\r\n")
        s.settimeout(MESSAGE_TIMEOUT + 15)
        try:
            closed = s.recv(4096) == b""
        except (ConnectionResetError, ssl.SSLError):
            closed = True
    assert closed
