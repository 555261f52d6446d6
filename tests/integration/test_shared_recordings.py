"""Two hotline nodes sharing one recordings directory and one PostgreSQL record (issue 15): a
conversation recorded on node a is listed and played through node b's API, though b started
before it was recorded; when both nodes expire it at once, the files go, the case is told once
and neither node logs an error. Real parts: two ``hotline serve`` processes with their media
processes, SIPp (a caller, bob's phone), the suite's PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from acd.store.testing import pg_dsn_for_tests
from media_gateway.audio.tones import tone
from tests.interop.harness import (
    OPERATOR_TOKEN,
    SCENARIOS,
    Server,
    free_port,
    run_sipp,
    start_server,
)
from tests.interop.media_harness import pcmu_packets, sipp, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.postgres, pytest.mark.timeout(150)]

CONFIG = """
[server]
log_level = "{log_level}"

[sip]
transports = ["udp"]

[media]
process = true
rtp_timeout = 20
recordings_dir = "{shared}"

[database]
url = "{dsn}"
schema = "{schema}"
node = "{node}"

[[agents]]
id = "bob"
password = "pw-bob-1"
skills = {{ support = 5 }}
queues = ["support"]

[entry_points]
"1000" = {{ kind = "queue", target = "support" }}

[acd.queues.support]
strategy = "longest-idle"
ring_timeout = 10
max_wait = 600
record = true
consent_prompt = ""
recording_keep_days = {keep_days}
"""


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "recshared_" + uuid.uuid4().hex[:12]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def events(dsn: str, schema: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        rows = conn.execute(
            "SELECT case_id, data FROM case_events WHERE kind = %s ORDER BY seq", (kind,)
        )
        return [(int(c), d) for c, d in rows.fetchall()]


async def until(check: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error):
            got = check()
            if got:
                return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def fetch(server: Server, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` with the operator token (admin): status, content type, body."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def swept(server: Server) -> bool:
    """The node's recordings sweep ran (its debug line)."""
    return any(line.get("event") == "recordings_swept" for line in server.log_lines())


def complaints(server: Server) -> list[str]:
    """The node's log lines at warning level or above, and any traceback."""
    text = server.log_path.read_text(errors="replace")
    bad = [ln for ln in text.splitlines() if "Traceback" in ln]
    for line in server.log_lines():
        if str(line.get("level", "")).lower() in ("warning", "error", "critical", "exception"):
            bad.append(json.dumps(line))
    return bad


async def test_a_recording_made_on_one_node_is_served_by_another_and_expired_by_both(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    shared = tmp_path / "shared-recordings"
    dirs = {n: tmp_path / n for n in ("a", "b")}
    for d in dirs.values():
        d.mkdir()

    def config(node: str, keep_days: float, log_level: str = "info") -> str:
        return CONFIG.format(
            dsn=dsn, schema=name, node=node, shared=shared, keep_days=keep_days, log_level=log_level
        )

    nodes: dict[str, Server] = {}
    try:
        # Both nodes run before anything is recorded.
        for n, d in dirs.items():
            nodes[n] = start_server(d, config(n, 30))

        # bob's phone registers with node a; a caller reaches him there; a records the call.
        phone_port = free_port()
        reg = await asyncio.to_thread(
            run_sipp,
            [*("-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob"),
             *("-ap", "pw-bob-1", "-m", "1")],
            workdir=tmp_path / "register",
            target=nodes["a"].sip,
            timeout=20,
            local_port=phone_port,
        )  # fmt: skip
        assert reg.successful == 1, reg.stdout + reg.errors
        agent_dir, caller_dir = tmp_path / "agent", tmp_path / "caller"
        for d in (agent_dir, caller_dir):
            d.mkdir()
        write_rtp_pcap(agent_dir / "phone.pcap", pcmu_packets(tone([1000.0], 4.0), ssrc=0xB0B))
        write_rtp_pcap(caller_dir / "caller.pcap", pcmu_packets(tone([440.0], 8.0), ssrc=0x100))
        async with (
            sipp("agent_answer_hangup.xml", workdir=agent_dir, target=None,
                 local_port=phone_port, timeout=60, extra=["-d", "3000"]) as phone,
            sipp("hotline_caller.xml", workdir=caller_dir, target=nodes["a"].sip, timeout=60),
        ):  # fmt: skip
            assert await phone.wait(50) == 0, phone.report()
        [(case_id, made)] = await until(
            lambda: events(dsn, name, "recording"), "node a attached the recording to the case"
        )
        rec_id, wav = made["recording_id"], Path(made["file"])
        assert wav.parent == shared / "calls" and made["agent"] == "bob"
        original = await asyncio.to_thread(wav.read_bytes)
        assert len(original) > 44 + 8000 * 4  # a stereo WAV of more than a quarter second

        # Node b lists it in the case and plays it: the same bytes.
        status, _type, body = await asyncio.to_thread(
            fetch, nodes["b"], f"/api/cases/{case_id}/recordings"
        )
        assert status == 200, body
        [listed] = json.loads(body)
        assert (listed["id"], listed["agent"], listed["ended_at"] is not None) == (
            rec_id,
            "bob",
            True,
        )
        status, content_type, audio = await asyncio.to_thread(
            fetch, nodes["b"], f"/api/recordings/{rec_id}"
        )
        assert (status, content_type) == (200, "audio/wav")
        assert audio == original
        for server in nodes.values():
            assert complaints(server) == []

        # Both nodes restart at once with a retention already past: both sweep the same files.
        for server in nodes.values():
            server.stop()
        for d in dirs.values():
            for ready in d.glob("ready-*"):
                ready.unlink()
        ports = {n: s.sip_port for n, s in nodes.items()}
        started = await asyncio.gather(
            *(
                asyncio.to_thread(start_server, d, config(n, 0.00001, "debug"), sip_port=ports[n])
                for n, d in dirs.items()
            )
        )
        nodes = dict(zip(dirs, started, strict=True))
        [(expired_case, expired)] = await until(
            lambda: events(dsn, name, "recording_expired"), "the recording expired"
        )
        assert (expired_case, expired["recording_id"]) == (case_id, rec_id)
        assert sorted(p.name for p in (shared / "calls").iterdir()) == []
        for server in nodes.values():
            status, _type, _body = await asyncio.to_thread(
                fetch, server, f"/api/recordings/{rec_id}"
            )
            assert status == 404
        for server in nodes.values():  # each node's first sweep is over
            await until(functools.partial(swept, server), "the node swept its recordings")
        assert len(events(dsn, name, "recording_expired")) == 1  # the case is told once
        for server in nodes.values():
            assert complaints(server) == []
    finally:
        for server in nodes.values():
            server.stop()
