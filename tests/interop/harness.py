"""Start real processes on 127.0.0.1 for interop tests: ``hotline serve`` and SIPp.

Everything is bounded: every subprocess has a timeout, SIPp gets ``-m`` (call count) and
``-timeout``, and servers are stopped by PID in the fixture teardown.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).parent / "scenarios"

OPERATOR_TOKEN = secrets.token_urlsafe(24)
"""Given to every ``hotline serve`` this harness starts (``HOTLINE_OPERATOR_TOKEN``):
``Server.api`` calls the API with it."""


def free_port(kind: int = socket.SOCK_DGRAM, *, pair: bool = False) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (and port+1 too when ``pair``)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if pair and port % 2:
            continue
        ok = True
        for p in (port, port + 1) if pair else (port,):
            for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, k) as t:
                    try:
                        t.bind(("127.0.0.1", p))
                    except OSError:
                        ok = False
        if ok:
            return port
    raise RuntimeError("no free port")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    sip_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    log_file: Any = None

    @property
    def sip(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def api(self, path: str, *, method: str = "GET", body: Any = None) -> Any:
        """Call the service's API with the operator token (admin rights)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {OPERATOR_TOKEN}",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            return json.loads(resp.read() or b"null")

    def wait_idle(self, timeout: float = 45.0) -> dict[str, Any]:
        """Poll until no call, dialog or transaction is left (or timeout); returns the counts."""
        deadline = time.monotonic() + timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = self.api("/api/debug/sip")
            if stats["active_calls"] == 0 and stats["transactions"] == 0:
                return stats
            time.sleep(0.5)
        return stats

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        return self.proc.returncode


def start_server(
    tmp: Path,
    config_text: str | None = None,
    *,
    extra_env: dict[str, str] | None = None,
    sip_port: int | None = None,
    netns: str | None = None,
) -> Server:
    sip_port = sip_port or free_port()
    http_port = free_port(socket.SOCK_STREAM)
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    ready = tmp / f"ready-{sip_port}"
    log_path = tmp / f"hotline-{sip_port}.log"
    cmd = [
        sys.executable,
        "-m",
        "hotline.cli",
        "serve",
        "--sip",
        f"127.0.0.1:{sip_port}",
        "--http",
        f"127.0.0.1:{http_port}",
        "--data",
        str(data),
        "--ready-file",
        str(ready),
    ]
    if config_text is not None:
        cfg = tmp / f"hotline-{sip_port}.toml"
        cfg.write_text(config_text)
        cmd[4:4] = ["--config", str(cfg)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    env = {
        **os.environ,
        "HOTLINE_LOG_FORMAT": "json",
        "HOTLINE_OPERATOR_TOKEN": OPERATOR_TOKEN,
        **(extra_env or {}),
    }
    log_file = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None:
            log_file.close()
            raise RuntimeError(f"hotline serve exited {proc.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log_file.close()
            raise RuntimeError(f"hotline serve did not become ready:\n{log_path.read_text()}")
        time.sleep(0.05)
    return Server(proc, sip_port, http_port, data, log_path, log_file)


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    retransmissions: int
    stats: dict[str, str]
    errors: str
    stdout: str


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError(
            "sipp is not installed: run scripts/bootstrap --test (Debian sip-tester)"
        )
    return path


def run_sipp(
    args: list[str],
    *,
    workdir: Path,
    target: str | None,
    timeout: float,
    local_port: int | None = None,
    netns: str | None = None,
) -> SippResult:
    """Run SIPp to completion (bounded by ``timeout`` seconds) and read its final statistics."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = local_port or free_port()
    stat_file = workdir / f"stats-{port}.csv"
    err_file = workdir / f"errors-{port}.log"
    cmd = [
        sipp_binary(),
        *([target] if target else []),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-trace_stat",
        "-stf",
        str(stat_file),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        str(err_file),
        *args,
    ]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout + 30)
    stats: dict[str, str] = {}
    if stat_file.exists():
        with stat_file.open() as f:
            rows = list(csv.reader(f, delimiter=";"))
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))

    def num(key: str) -> int:
        try:
            return int(stats.get(key, "0") or 0)
        except ValueError:
            return 0

    return SippResult(
        returncode=proc.returncode,
        successful=num("SuccessfulCall(C)"),
        failed=num("FailedCall(C)"),
        retransmissions=num("Retransmissions(C)"),
        stats=stats,
        errors=err_file.read_text(errors="replace") if err_file.exists() else "",
        stdout=proc.stdout[-4000:] + proc.stderr[-4000:],
    )


def as_center(
    service: Callable[[Any], Awaitable[None]],
) -> Callable[[Any, str, str], Awaitable[None]]:
    """Run ``service(session)`` for the contact center's entry kinds (hotline, queue...): how a
    test puts its own script on the hotline number (``hotline.switch.center = as_center(s)``)."""

    async def center(session: Any, kind: str, target: str) -> None:
        await service(session)

    return center
