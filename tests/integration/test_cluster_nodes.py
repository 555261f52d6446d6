"""Two ``hotline serve --cluster`` nodes, one routing brain (issue 15): the node holding a call
carries out the brain's offer, and when the node running the active brain dies (kill -9) the
other node's standby brain takes over and routes the next call. Real parts: two services with
their media processes, SIPp (a caller, an agent's phone), the suite's PostgreSQL server."""

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
from tests.interop.harness import SCENARIOS, Server, free_port, run_sipp, start_server
from tests.interop.media_harness import pcmu_packets, sipp, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.postgres, pytest.mark.timeout(180)]

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

[cluster]
lease_seconds = 2
node_timeout_seconds = 4

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
"""


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "cluster_" + uuid.uuid4().hex[:12]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def query(dsn: str, schema: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return conn.execute(sql).fetchall()


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


async def test_the_brain_routes_calls_of_every_node_and_its_standby_takes_over_after_kill_9(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    nodes: dict[str, Server] = {}
    try:
        for n in ("a", "b"):
            (tmp_path / n).mkdir()
            nodes[n] = start_server(
                tmp_path / n,
                CONFIG.format(dsn=dsn, schema=name, node=n),
            )
        [(active,)] = await until(
            lambda: query(dsn, name, "SELECT holder FROM acd_lease WHERE expires_at > now()"),
            "an active brain",
        )
        standby = "b" if active == "a" else "a"
        survivor = nodes[standby]

        # bob's phone registers with the standby's node; the engine (on the other node) hears
        # of it through the log.
        phone_port = free_port()
        reg = await asyncio.to_thread(
            run_sipp,
            [*("-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob"),
             *("-ap", "pw-bob-1", "-m", "1")],
            workdir=tmp_path / "register",
            target=survivor.sip,
            timeout=20,
            local_port=phone_port,
        )  # fmt: skip
        assert reg.successful == 1, reg.stdout + reg.errors

        # The active brain's node dies; the standby takes the lease.
        kill_9(nodes[active])
        await until(
            lambda: query(
                dsn,
                name,
                f"SELECT 1 FROM acd_lease WHERE holder = '{standby}' AND expires_at > now()",
            ),
            "the standby took over",
            within=20,
        )

        # A caller on the surviving node is offered to bob by the new active brain.
        agent_dir, caller_dir = tmp_path / "agent", tmp_path / "caller"
        for d in (agent_dir, caller_dir):
            d.mkdir()
        write_rtp_pcap(agent_dir / "phone.pcap", pcmu_packets(silence(3.0), ssrc=0xB0B))
        write_rtp_pcap(caller_dir / "caller.pcap", pcmu_packets(silence(10.0), ssrc=0x100))
        async with (
            sipp("agent_answer_hangup.xml", workdir=agent_dir, target=None,
                 local_port=phone_port, timeout=60, extra=["-d", "2000"]) as phone,
            sipp("hotline_caller.xml", workdir=caller_dir, target=survivor.sip, timeout=60),
        ):  # fmt: skip
            assert await phone.wait(50) == 0
        answered = await until(
            lambda: query(
                dsn,
                name,
                "SELECT e.actor FROM case_events e WHERE e.kind = 'answered'",
            ),
            "the call answered",
        )
        assert answered == [("bob",)]
        # One engine input for both nodes, in the new active's epoch from the takeover on
        # (an event the dead active had not taken yet waited in the inbox for its successor).
        epochs = [e for (e,) in query(dsn, name, "SELECT epoch FROM acd_input ORDER BY seq")]
        assert epochs == sorted(epochs) and epochs[-1] >= 2
    finally:
        for server in nodes.values():
            server.stop()


async def test_a_lost_nodes_waiting_call_leaves_the_queue_and_its_case_is_closed(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    nodes: dict[str, Server] = {}
    try:
        for n in ("a", "b"):
            (tmp_path / n).mkdir()
            nodes[n] = start_server(tmp_path / n, CONFIG.format(dsn=dsn, schema=name, node=n))
        [(active,)] = await until(
            lambda: query(dsn, name, "SELECT holder FROM acd_lease WHERE expires_at > now()"),
            "an active brain",
        )
        other = "b" if active == "a" else "a"
        caller_dir = tmp_path / "caller"
        caller_dir.mkdir()
        write_rtp_pcap(caller_dir / "caller.pcap", pcmu_packets(silence(12.0), ssrc=0x100))
        async with sipp("hotline_caller.xml", workdir=caller_dir, target=nodes[other].sip,
                        timeout=60, extra=["-cid_str", "lost-%u-%p@x"]):  # fmt: skip
            # The caller waits in the queue (nobody is logged in), held by the other node.
            [(call_id,)] = await until(
                lambda: query(
                    dsn,
                    name,
                    "SELECT body->>'call_id' FROM acd_input WHERE body->>'type' = 'CallArrived'",
                ),
                "the call in the engine",
            )
            kill_9(nodes[other])
            # The active brain finds the node lost, ends its call in the engine, and its own
            # node closes the case.
            ended = await until(
                lambda: query(
                    dsn,
                    name,
                    "SELECT node FROM acd_input WHERE body->>'type' = 'CallEnded'"
                    f" AND body->>'call_id' = '{call_id}'",
                ),
                "the lost node's call ended in the engine",
                within=30,
            )
            assert ended == [(other,)]
            [(data,)] = await until(
                lambda: query(dsn, name, "SELECT data FROM case_events WHERE kind = 'hung_up'"),
                "the lost node's case closed",
            )
            assert data["cause"] == "node_lost" and data["node"] == other
            assert query(dsn, name, "SELECT count(*) FROM live_calls") == [(0,)]
    finally:
        for server in nodes.values():
            server.stop()
