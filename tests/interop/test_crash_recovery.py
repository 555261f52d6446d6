"""kill -9 of ``hotline serve`` with a voicemail message queued, then a start on the same data
directory (issue 11, "lost on a crash"): the message is delivered to the agent after the
restart, by ringing the phone the agent registered before the crash (no new REGISTER), and
every case is closed. Real processes: ``hotline serve`` (with its media process) and SIPp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_gateway.audio.tones import silence, tone
from tests.interop.harness import SCENARIOS, free_port, run_sipp, start_server
from tests.interop.media_harness import pcmu_packets, sipp, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

CONFIG = """
[sip]
transports = ["udp"]
rtp_ports = [45000, 45998]

[media]
process = true
rtp_timeout = 10

[voicemail]
silence_seconds = 1.5

[[agents]]
id = "bob"
password = "pw-bob-1"
skills = { support = 5 }
queues = ["support"]

[entry_points]
"1000" = { kind = "voicemail", target = "support" }

[acd.queues.support]
strategy = "longest-idle"
ring_timeout = 10
"""


REGISTER = ["-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def events(db: Path) -> list[tuple[int, str, str, dict[str, Any]]]:
    """Every case event on disk: (case, kind, actor, data), in order (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT case_id, kind, actor, data FROM case_events ORDER BY seq")
        return [(int(c), k, a, json.loads(d)) for c, k, a, d in rows.fetchall()]


async def until_event(db: Path, match: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            if any(match(e) for e in events(db)):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}; events: {events(db)}")


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    return []


async def test_kill_9_with_a_message_queued_then_the_agent_gets_it_after_restart(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, CONFIG)
    db = server.data_dir / "cases.sqlite3"
    try:
        # bob's phone registers (then nothing listens there until after the crash).
        phone_port = free_port()
        reg = await asyncio.to_thread(
            run_sipp,
            [*REGISTER, "-ap", "pw-bob-1", "-m", "1"],
            workdir=tmp_path / "register",
            target=server.sip,
            timeout=20,
            local_port=phone_port,
        )
        assert reg.successful == 1, reg.stdout + reg.errors
        # A caller leaves a message: the greeting, then 2 s of voice, then silence.
        caller_dir = tmp_path / "caller"
        caller_dir.mkdir()
        spoken = np.concatenate([silence(7.5), tone([440.0], 2.0), silence(8.0)])
        write_rtp_pcap(caller_dir / "caller.pcap", pcmu_packets(spoken, ssrc=0x4444))
        async with sipp("media_caller_pcap.xml", workdir=caller_dir, target=server.sip, timeout=40):
            await until_event(
                db,
                lambda e: e[1] == "queued" and e[3].get("kind") == "voicemail",
                "the message queued",
            )
            # kill -9 while bob's phone is rung for it (nobody answers there yet).
            media = children(server.proc.pid)
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=10)
            for pid in media:  # the media process goes with its parent's pipes
                deadline = time.monotonic() + 5
                while alive(pid) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        server.stop()
        [(case_id, *_)] = [e for e in events(db) if e[1] == "opened"]

        # bob's phone is back on the same port; the service restarts on the same data.
        agent_dir = tmp_path / "agent"
        agent_dir.mkdir()
        write_rtp_pcap(agent_dir / "phone.pcap", pcmu_packets(silence(4.0), ssrc=0xB0B))
        (tmp_path / f"ready-{server.sip_port}").unlink()
        async with sipp(
            "agent_answer_hangup.xml",
            workdir=agent_dir,
            target=None,
            local_port=phone_port,
            timeout=40,
            extra=["-d", "3000"],
        ) as agent:
            server = start_server(tmp_path, CONFIG, sip_port=server.sip_port)
            await until_event(
                db,
                lambda e: e[0] == case_id and e[1] == "answered" and e[2] == "bob",
                "the message delivered to bob",
            )
            assert await agent.wait(30) == 0
        await until_event(
            db,
            lambda e: e[0] == case_id and e[1] == "hung_up" and e[2] == "bob",
            "the delivery ended",
        )
        trail = [(k, a, d) for c, k, a, d in events(db) if c == case_id]
        kinds = [k for k, _, _ in trail]
        assert kinds[:2] == ["opened", "entered"]
        restored = [d for k, _, d in trail if k == "queued" and d.get("restored")]
        assert len(restored) == 1 and restored[0]["kind"] == "voicemail"
        answered = next(d for k, _, d in trail if k == "answered")
        assert answered["kind"] == "voicemail"
        lines = server.log_lines()
        assert any(
            r.get("event") == "registrations_restored" and r.get("restored") == 1 for r in lines
        )
        assert not any(r.get("event") == "device_registration" for r in lines)  # no REGISTER
    finally:
        server.stop()
