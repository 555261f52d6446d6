"""Issue 11, media resources: the ACKed-INVITE port flood, inside a loopback-only network
namespace.

One source (SIPp on 127.0.0.1) sends unauthenticated INVITEs to the public number, ACKs each
200 OK and then stays silent (no RTP at all). Before, each such call held its RTP ports for the
60 s ``rtp_timeout``: the ports ran out, a real caller waited 10 s for a 503 and the media
process wrote a traceback per refused call. Now the source holds at most
``max_calls_per_source`` calls (half the port pairs by default; past it 503 with Retry-After
and one log line, not one per call), and each silent call is hung up after
``rtp_start_timeout`` (case cause ``no_media``), freeing its ports; meanwhile a real caller
from another address (127.0.0.2) is answered on its first INVITE and completes its call.
Bounded: 300 flood calls at 50/s (6 s), a 200-port range (100 pairs), a 2 s start timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media_gateway.audio.tones import tone
from tests.interop.harness import SCENARIOS, run_sipp, start_server
from tests.interop.media_harness import pcmu_packets, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.serial, pytest.mark.timeout(120)]

FLOOD_CALLS = 300
PORT_PAIRS = 100

CONFIG = f"""
[sip]
transports = ["udp"]
max_loop_lag_ms = 3000  # a busy test machine's start-up lag is not what this tests
rtp_ports = [47000, {47000 + 2 * PORT_PAIRS}]

[media]
rtp_start_timeout = 2

[[agents]]
id = "bob"
password = "pw-bob-1"
queues = ["support"]

[entry_points]
"1000" = {{ kind = "queue", target = "support" }}

[acd.queues.support]
strategy = "longest-idle"
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test creates a network namespace and must run as root (CI does)")
    name = f"hl-flood-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        links = subprocess.run(
            ["ip", "netns", "exec", name, "ip", "-o", "link"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def case_events(db: Path) -> list[tuple[int, str, str, dict[str, Any]]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT case_id, kind, actor, data FROM case_events ORDER BY seq")
        return [(int(c), k, a, json.loads(d)) for c, k, a, d in rows.fetchall()]


async def until(predicate: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.1)


async def test_silent_acked_invites_do_not_keep_a_real_caller_out(
    tmp_path: Path, netns: str
) -> None:
    server = start_server(tmp_path, CONFIG, sip_port=5060, netns=netns)
    try:
        flood = asyncio.create_task(
            asyncio.to_thread(
                run_sipp,
                [
                    *("-sf", str(SCENARIOS / "flood_silent_invite.xml"), "-s", "1000"),
                    *("-m", str(FLOOD_CALLS), "-r", "50", "-l", str(FLOOD_CALLS)),
                    *("-mp", "6000"),
                ],
                workdir=tmp_path / "flood",
                target=server.sip,
                timeout=60,
                netns=netns,
            )
        )
        # The flood's source reached its limit (its calls hold half the ports)...
        await until(
            lambda: any(r.get("event") == "calls_per_source_limited" for r in server.log_lines()),
            "the flood source limited",
        )
        # ...and a real caller from another address is answered on its first INVITE (a 503
        # or any failure fails its scenario), talks and hangs up.
        real_dir = tmp_path / "real"
        real_dir.mkdir()
        write_rtp_pcap(real_dir / "caller.pcap", pcmu_packets(tone([440.0], 2.0), ssrc=0x7777))
        real = await asyncio.to_thread(
            run_sipp,
            [
                *("-sf", str(SCENARIOS / "flood_real_caller.xml"), "-s", "1000"),
                *("-m", "1", "-i", "127.0.0.2", "-mp", "6100"),
            ],
            workdir=real_dir,
            target=server.sip,
            timeout=30,
            netns=netns,
        )
        assert (real.successful, real.failed) == (1, 0), real.stdout + real.errors
        result = await flood
        # Every flood call ended: answered ones by our BYE (the start timeout), the rest 503.
        assert result.successful == FLOOD_CALLS, result.stdout + result.errors
        db = server.data_dir / "cases.sqlite3"

        def no_media() -> list[tuple[int, str, str, dict[str, Any]]]:
            return [e for e in case_events(db) if e[3].get("cause") == "no_media"]

        # (the server's API is inside the namespace: the case store tells what happened)
        # More than the source's limit: ports freed by the start timeout served the flood again.
        await until(lambda: len(no_media()) > PORT_PAIRS // 2, "silent calls ended")
        ended = no_media()
        assert all(actor == "system" for _, _, actor, _ in ended), ended[:3]
    finally:
        rc = server.stop()
    assert rc == 0
    lines = server.log_lines()
    limited = [r for r in lines if r.get("event") == "calls_per_source_limited"]
    refused = FLOOD_CALLS - len(ended)
    assert refused > len(limited) * 10, "one log line per source limited, not one per call"
    assert "Traceback" not in server.log_path.read_text()
