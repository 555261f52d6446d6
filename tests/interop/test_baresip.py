"""baresip, a real softphone, against ``hotline serve`` on 127.0.0.1.

- it registers with digest authentication and the gateway then rings it: baresip answers
  (auto-answer) and the call completes;
- the same softphone with a wrong password is refused and never appears as registered;
- it dials the ``*43`` echo test and its audio comes back.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media_gateway.audio.tones import tone
from media_gateway.audio.wav import write_wav
from tests.interop.harness import Server, free_port, start_server

pytestmark = pytest.mark.interop


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path)
    yield srv
    assert srv.stop() == 0


def _baresip(
    tmp: Path, server: Server, user: str, password: str, commands: list[str], seconds: int
) -> subprocess.Popen[str]:
    binary = shutil.which("baresip")
    assert binary, "baresip is not installed: run scripts/bootstrap --test"
    conf = tmp / f"baresip-{user}-{password}"
    conf.mkdir()
    # An 8 kHz tone as the microphone (baresip's ausine only makes 48 kHz audio).
    source = conf / "mic.wav"
    write_wav(source, tone([440.0], float(seconds)))
    port = free_port()
    (conf / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{server.sip_port};transport=udp>;auth_pass={password};"
        f"regint=120;answermode=auto;audio_codecs=PCMU,PCMA\n"
    )
    (conf / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{port}",
                "net_interface 127.0.0.1",
                "audio_player aufile,/dev/null",
                f"audio_source aufile,{source}",
                "audio_alert aufile,/dev/null",
                "rtp_ports 40000-40999",
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
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )


def _wait_registered(server: Server, user: str, timeout: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        regs = [r for r in server.api("/api/registrations") if r["agent"] == user]
        if regs:
            return regs
        time.sleep(0.2)
    return []


def test_baresip_registers_with_digest_and_answers(server: Server, tmp_path: Path) -> None:
    phone = _baresip(tmp_path, server, "bob", "bob-demo-1", [], seconds=20)
    try:
        regs = _wait_registered(server, "bob")
        assert regs, "baresip did not register"
        outcome = server.api("/api/dial", method="POST", body={"agent": "bob", "hold_seconds": 1})
        assert outcome["outcome"] == "answered", outcome
    finally:
        phone.terminate()
        out, _ = phone.communicate(timeout=15)
    assert "Call established" in out, out[-2000:]


def test_baresip_wrong_password_is_refused(server: Server, tmp_path: Path) -> None:
    phone = _baresip(tmp_path, server, "bob", "not-the-password", [], seconds=6)
    out, _ = phone.communicate(timeout=30)
    assert server.api("/api/registrations") == []
    refused = [line for line in server.log_lines() if line.get("event") == "register_refused"]
    assert refused and refused[0]["user"] == "bob", server.log_path.read_text()[-2000:]
    assert refused[0]["reason"] == "wrong credentials"
    # baresip answers each challenge again with the same wrong password: the first answers get 401,
    # then the lockout answers 403 to every try, and baresip prints only the last refusal.
    assert "401 Unauthorized" in out or "403 Forbidden" in out, out[-2000:]


def test_baresip_echo_test_returns_its_audio(server: Server, tmp_path: Path) -> None:
    phone = _baresip(
        tmp_path,
        server,
        "alice",
        "alice-demo-1",
        [f"/dial sip:*43@127.0.0.1:{server.sip_port}"],
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
    media = _wait_for_line(server, "call_media", ended[0]["call_id"])
    # About 50 packets/s for the few seconds the call lasted, every one sent back.
    assert media["rtp_in"] >= 50
    assert media["rtp_out"] == media["rtp_in"]
    assert media["lost"] == 0


def _wait_for_line(server: Server, event: str, call_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        for line in server.log_lines():
            if line.get("event") == event and line.get("call_id") == call_id:
                return line
        assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
        time.sleep(0.1)
