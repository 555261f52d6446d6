"""Two hotline nodes on one PostgreSQL record (issue 15, "the record"): each sees the other's
cases, and a node restarting after kill -9 closes the calls it cut off, never its neighbour's.
Real parts: two ``hotline serve`` processes with their media processes, SIPp callers, the
suite's PostgreSQL server (scripts/pg-test-server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from acd.store.testing import pg_dsn_for_tests
from media_gateway.audio.tones import silence
from tests.interop.harness import Server, start_server
from tests.interop.media_harness import pcmu_packets, sipp, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.postgres, pytest.mark.timeout(150)]

CONFIG = """
[sip]
transports = ["udp"]

[media]
process = true
rtp_timeout = 20

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
max_wait = 600
"""


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "shared_" + uuid.uuid4().hex[:12]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def events(dsn: str, schema: str) -> list[tuple[int, str, str, dict[str, Any]]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        rows = conn.execute("SELECT case_id, kind, actor, data FROM case_events ORDER BY seq")
        return [(int(c), k, a, d) for c, k, a, d in rows.fetchall()]


def case_of(dsn: str, schema: str, call_id_part: str) -> int | None:
    for case_id, kind, _actor, data in events(dsn, schema):
        if kind == "opened" and call_id_part in str(data.get("call_id", "")):
            return case_id
    return None


async def until(check: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error):
            got = check()
            if got:
                return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def kill_9(server: Server) -> None:
    """SIGKILL the service and its media process (as a crash of the machine would)."""
    pid = server.proc.pid
    kids: list[int] = []
    with contextlib.suppress(OSError):
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    for kid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kid, signal.SIGKILL)
    server.stop()


async def test_two_nodes_share_the_record_and_a_crashed_node_closes_only_its_own_calls(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    dirs = {n: tmp_path / n for n in ("a", "b")}
    for d in dirs.values():
        d.mkdir()
    nodes = {
        n: start_server(d, CONFIG.format(dsn=dsn, schema=name, node=n)) for n, d in dirs.items()
    }
    try:
        callers = {}
        async with contextlib.AsyncExitStack() as stack:
            for n, server in nodes.items():
                work = tmp_path / f"caller-{n}"
                work.mkdir()
                write_rtp_pcap(work / "caller.pcap", pcmu_packets(silence(12.0), ssrc=0x100))
                callers[n] = await stack.enter_async_context(
                    sipp("hotline_caller.xml", workdir=work, target=server.sip, timeout=60,
                         extra=["-cid_str", f"node-{n}-%u-%p@x"])
                )  # fmt: skip
            # Both calls wait in the support queue (nobody is logged in): a case each.
            case_a = await until(lambda: case_of(dsn, name, "node-a-"), "node a's case")
            case_b = await until(lambda: case_of(dsn, name, "node-b-"), "node b's case")
            # Either node's API shows both cases: one record.
            for server in nodes.values():
                found = {c["id"] for c in server.api("/api/cases?status=open")["items"]}
                assert {case_a, case_b} <= found

            # Node a dies with its call up, and comes back on the same record.
            kill_9(nodes["a"])
            (dirs["a"] / f"ready-{nodes['a'].sip_port}").unlink()
            nodes["a"] = start_server(
                dirs["a"],
                CONFIG.format(dsn=dsn, schema=name, node="a"),
                sip_port=nodes["a"].sip_port,
            )

            def closed(case_id: int) -> list[dict[str, Any]]:
                return [d for c, k, _a, d in events(dsn, name) if c == case_id and k == "hung_up"]

            [gone] = await until(lambda: closed(case_a), "node a's cut-off call closed")
            assert gone["cause"] == "service_restart"
            # Node b's call is not node a's to close: it goes on, and ends as the caller ends it.
            assert closed(case_b) == []
            assert nodes["b"].api("/api/debug/sip")["active_calls"] == 1
            assert await callers["b"].wait(40) == 0
            [(actor, left)] = await until(
                lambda: [
                    (a, d) for c, k, a, d in events(dsn, name) if c == case_b and k == "abandoned"
                ],
                "node b's caller hung up while waiting",
            )
            assert actor == "caller" and left["queue"] == "support"
            assert closed(case_b) == []  # never closed by node a's restart
    finally:
        for server in nodes.values():
            server.stop()
