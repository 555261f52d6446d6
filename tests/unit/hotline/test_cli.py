"""The hotline command as a new user meets it: a busy port, --help and --version."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from hotline.cli import build_parser, main

HOTLINE = Path(sys.executable).parent / "hotline"


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(sip_port: int, http_port: int, data: Path) -> subprocess.CompletedProcess[str]:
    command = [str(HOTLINE), "serve", "--sip", f"127.0.0.1:{sip_port}"]
    command += ["--http", f"127.0.0.1:{http_port}", "--data", str(data)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("held", "listener"),
    [("sip-udp", "SIP over UDP"), ("sip-tcp", "SIP over TCP"), ("http", "HTTP")],
)
def test_serve_on_a_busy_port_says_which_in_one_line(
    held: str, listener: str, tmp_path: Path
) -> None:
    kind = socket.SOCK_DGRAM if held == "sip-udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        busy = int(holder.getsockname()[1])
        other = _free_tcp_port()
        sip_port, http_port = (other, busy) if held == "http" else (busy, other)
        result = _serve(sip_port, http_port, tmp_path)
    expected = f"hotline: cannot listen on 127.0.0.1:{busy} ({listener}): address already in use"
    assert result.returncode == 1
    assert expected in result.stderr.splitlines()
    assert "Traceback" not in result.stderr + result.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hotline {version('hotline')}"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_help_text_is_plain() -> None:
    seen = 0
    for parser in _parsers(build_parser()):
        text = parser.format_help()
        seen += 1
        assert "``" not in text and ":func:" not in text, parser.prog
    assert seen >= 8  # hotline, serve, check-config, sim run/compare, erlang c/a/staff
