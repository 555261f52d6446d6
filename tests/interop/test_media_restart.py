"""kill -9 of the media process while a caller is leaving a voicemail message (issue 11, "lost
on a crash"): the service starts a new media process, the message recorded so far is kept
(the media process streams it to a ``.part`` file each second; the signalling side turns
that into the message) and offered to an agent, whose phone rings and plays it; the case
names the real cause (``media_lost``), not the caller hanging up.

Before, the recording lived only in the media process's memory until it ended: the message
was lost and the case said the caller hung up. Real processes: ``hotline serve`` with its
media process, SIPp as the caller (pcap audio) and as the agent's phone."""

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
from media_gateway.audio.wav import Audio, read_wav
from tests.interop.harness import SCENARIOS, free_port, run_sipp, start_server
from tests.interop.media_harness import pcmu_packets, sipp, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

CONFIG = """
[sip]
transports = ["udp"]
max_loop_lag_ms = 3000  # a busy test machine's start-up lag is not what this tests
rtp_ports = [45200, 45398]

[media]
process = true

[voicemail]
silence_seconds = 3
max_seconds = 60

[[agents]]
id = "bob"
password = "pw-bob-1"
skills = { support = 5 }
queues = ["support"]

[entry_points]
"1000" = { kind = "voicemail", target = "support" }

[acd.queues.support]
strategy = "longest-idle"
ring_timeout = 15
"""

REGISTER = ["-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob"]
BYTES_PER_SECOND = 8000 * 2


def case_events(db: Path) -> list[tuple[int, str, str, dict[str, Any]]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT case_id, kind, actor, data FROM case_events ORDER BY seq")
        return [(int(c), k, a, json.loads(d)) for c, k, a, d in rows.fetchall()]


async def until(predicate: Any, what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(sqlite3.Error, OSError):
            got = predicate()
            if got:
                return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.1)


def media_pids(lines: list[dict[str, Any]]) -> list[int]:
    return [int(r["pid"]) for r in lines if r.get("event") == "media_process_started"]


def part_with_voice(data_dir: Path) -> Path | None:
    """The message being recorded, once its part file holds 1.5 s of audio."""
    for part in data_dir.rglob(".case-*.wav.part"):
        if part.stat().st_size > 44 + 1.5 * BYTES_PER_SECOND:
            return part
    return None


async def test_kill_9_of_media_during_a_message_keeps_it_and_offers_it_to_an_agent(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, CONFIG)
    db = server.data_dir / "cases.sqlite3"
    try:
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
        agent_dir = tmp_path / "agent"
        agent_dir.mkdir()
        write_rtp_pcap(agent_dir / "phone.pcap", pcmu_packets(silence(4.0), ssrc=0xB0B))
        caller_dir = tmp_path / "caller"
        caller_dir.mkdir()
        # Silence through the greeting and the beep, then a long voice (cut by the kill).
        spoken = np.concatenate([silence(2.0), tone([440.0], 14.0), silence(4.0)])
        write_rtp_pcap(caller_dir / "caller.pcap", pcmu_packets(spoken, ssrc=0x4444))
        async with (
            sipp(
                "agent_answer_hangup.xml",
                workdir=agent_dir,
                target=None,
                local_port=phone_port,
                timeout=60,
                extra=["-d", "3000"],
            ) as agent,
            sipp(
                "media_caller_pcap.xml", workdir=caller_dir, target=server.sip, timeout=60
            ) as caller,
        ):
            [first] = await until(lambda: media_pids(server.log_lines()), "media started")
            part = await until(lambda: part_with_voice(server.data_dir), "recording", 40)
            os.kill(first, signal.SIGKILL)  # the media process dies mid-message
            # A new media process; the caller is told the call is over (BYE, answered).
            await until(lambda: len(media_pids(server.log_lines())) == 2, "media restarted")
            assert await caller.wait(30) == 0
            # The message is offered to bob: his phone rings, answers, hears it, hangs up.
            assert await agent.wait(40) == 0
        await until(
            lambda: any(k == "hung_up" and a == "bob" for _, k, a, _ in case_events(db)),
            "the message delivered to bob",
        )
        trail = [(k, a, d) for _, k, a, d in case_events(db)]
    finally:
        rc = server.stop()
    assert rc == 0
    [left] = [d for k, _, d in trail if k == "voicemail_left"]
    assert left["stopped_by"] == "media_lost"  # the case names the real cause
    assert left["seconds"] >= 1.5
    message = await asyncio.to_thread(read_message, Path(left["path"]), part)
    assert message.seconds >= 1.5
    assert np.abs(message.samples.astype(np.int32)).max() > 3000  # the caller's voice is in it
    answered = [d for k, a, d in trail if k == "answered" and a == "bob"]
    assert answered and answered[0]["kind"] == "voicemail"
    assert not [(k, a) for k, a, _ in trail if k in ("hung_up", "abandoned") and a == "caller"]
    assert "Traceback" not in server.log_path.read_text()


def read_message(path: Path, part: Path) -> Audio:
    """The kept message (a complete WAV where its part file was)."""
    assert not part.exists()
    return read_wav(path)
