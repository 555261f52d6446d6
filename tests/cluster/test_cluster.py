"""Issue 15 end to end: Kamailio at the edge, three ``hotline serve --cluster`` nodes with a
routing brain each (one active, two standbys), PostgreSQL as the record and the brain's log, each
"host" a network namespace (tests/cluster/netns.py); SIPp callers and an agent's phone outside.

- Calls through the edge spread over the three nodes, and the one agent, whose phone registered
  through the edge with whichever node the edge chose, is rung for the calls of every node.
- A node killed with a caller waiting: the active brain finds it lost, its case is closed with
  cause ``node_lost`` in the shared record; new calls go to the survivors and are answered by the
  agent, whose phone is still rung.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.netns import hosts
from tests.cluster.pg_host import postgres, psql
from tests.cluster.test_edge import (
    CALLER,
    PHONE,
    PHONE_PORT,
    SIP,
    Cluster,
    Node,
    register_phone,
    require,
    wait_for,
)
from tests.interop.test_overload_sources import demo_config

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.serial]

NODES = ("node1", "node2", "node3")


def node_config(edge: str, db: str, node: str) -> str:
    config = demo_config().replace("process = true", "process = false", 1)
    # alice (sales) takes the next call at once: no wrap-up in the test
    config = config.replace("wrap_up_seconds = 10", "wrap_up_seconds = 0", 1)
    # a number that queues for support, which only bob (never logged in here) serves
    config = config.replace(
        '"1100" = {', '"1200" = { kind = "queue", target = "support" }\n"1100" = {', 1
    )
    return config + (
        f'\n[sip.limits]\ntrusted = ["{edge}"]\n'
        f'\n[database]\nurl = "{db}"\nnode = "{node}"\n'
        f'\n[cluster]\nedge = "{edge}:{SIP}"\nlease_seconds = 2\nnode_timeout_seconds = 4\n'
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    require("kamailio")
    require("sipp")
    tmp = tmp_path_factory.mktemp("cluster")
    pg_dir = Path(tempfile.mkdtemp(prefix="hl-cluster-pg-"))  # the postgres user must enter it
    pg_dir.chmod(0o755)
    try:
        with (
            hosts("edge", *NODES, "pg", "caller", "phone") as net,
            postgres(net["pg"], pg_dir / "pg", durable=False) as db,
        ):
            running = {name: Node(net[name], tmp / name) for name in NODES}
            try:
                for name, node in running.items():
                    node.start(node_config(net["edge"].address, db, name))
                for node in running.values():
                    wait_for(node.ready, f"{node.host.name} ready", timeout=90)
                yield Cluster(net, running, tmp, ""), db
            finally:
                for node in running.values():
                    node.stop()
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)


def sql(cluster: tuple[Cluster, str], query: str) -> list[list[str]]:
    net, db = cluster[0].net, cluster[1]
    out = psql(net["pg"], db, "-At", "-F", "|", "-c", query).stdout
    return [line.split("|") for line in out.splitlines() if line]


@contextlib.contextmanager
def phone_answering(c: Cluster, calls: int, timeout: float = 60) -> Iterator[dict[str, object]]:
    """alice's phone (SIPp on its registered port) answers ``calls`` calls meanwhile."""
    result: dict[str, object] = {}
    uas = threading.Thread(
        target=lambda: result.update(
            c.sipp(
                "phone", "", "-sf", str(PHONE), "-m", str(calls), port=PHONE_PORT, timeout=timeout
            )
        )
    )
    uas.start()
    phone = c.net["phone"]
    wait_for(
        lambda: f":{PHONE_PORT} " in phone.run("ss", "-Hnul", timeout=10).stdout,
        "the phone's SIPp listening",
    )
    try:
        yield result
    finally:
        uas.join(timeout=timeout + 40)


def call_sales(c: Cluster, calls: int, *, talk_ms: int = 1000) -> dict[str, int | str]:
    """``calls`` callers of the sales queue (1100), one a second, through the edge."""
    return c.sipp(
        "caller", c.edge_address(), "-sf", str(CALLER), "-s", "1100",
        "-m", str(calls), "-r", "1", "-d", str(talk_ms), timeout=90,
    )  # fmt: skip


def answered_by_node(c: Cluster) -> dict[str, int]:
    """Calls each node held that an agent answered (its ``call_handled`` log lines)."""
    return {
        name: sum(1 for e in node.events("call_handled") if e.get("agent") == "alice")
        for name, node in c.nodes.items()
    }


def test_the_agent_is_rung_for_calls_held_by_every_node(cluster: tuple[Cluster, str]) -> None:
    c = cluster[0]
    with c.edge(*NODES):
        register_phone(c)
        registered_at = [
            name
            for name, node in c.nodes.items()
            if any(e.get("agent") == "alice" for e in node.events("device_registration"))
        ]
        assert len(registered_at) == 1, registered_at
        # The brain has her logged in (one engine input log for all nodes).
        wait_for(
            lambda: bool(sql(cluster, "SELECT 1 FROM acd_input WHERE body->>'type' ="
                                      " 'AgentLoggedIn' AND body->>'agent_id' = 'alice'")),
            "alice logged in with the brain",
        )  # fmt: skip
        with phone_answering(c, 3) as phone:
            callers = call_sales(c, 3)
        assert (callers["ok"], callers["failed"]) == (3, 0), callers["out"]
        assert phone.get("ok") == 3, phone.get("out")
        wait_for(lambda: sum(answered_by_node(c).values()) == 3, "3 answered calls logged")
        # One call on each node (the edge's round-robin), all answered by the phone that
        # registered through one of them.
        assert answered_by_node(c) == dict.fromkeys(NODES, 1)
        answered = sql(cluster, "SELECT actor FROM case_events WHERE kind = 'answered'")
        assert answered == [["alice"]] * 3


def test_a_killed_nodes_waiting_caller_is_closed_and_new_calls_reach_the_agent(
    cluster: tuple[Cluster, str],
) -> None:
    c = cluster[0]
    with c.edge(*NODES) as edge:
        register_phone(c)  # a new edge process: its bindings were in memory
        # A support caller waits (bob is not logged in: nobody is rung); find its node.
        waiting = threading.Thread(
            target=lambda: c.sipp(
                "caller", c.edge_address(), "-sf", str(CALLER), "-s", "1200",
                "-m", "1", "-d", "15000", port=5070, timeout=30,
            )
        )  # fmt: skip
        waiting.start()
        try:
            rows: list[list[str]] = []

            def holder() -> bool:
                rows[:] = sql(cluster, "SELECT node, case_id FROM live_calls")
                return len(rows) == 1

            wait_for(holder, "the waiting call in the record")
            [[lost, case_id]] = rows
            c.nodes[lost].stop(signal.SIGKILL)
            wait_for(
                lambda: bool(sql(cluster, "SELECT 1 FROM case_events WHERE kind = 'hung_up'"
                                          f" AND case_id = {case_id}"
                                          " AND data->>'cause' = 'node_lost'")),
                "the lost node's case closed",
                timeout=40,
            )  # fmt: skip
            wait_for(lambda: edge.destinations()[f"{c.nodes[lost].host.address}:{SIP}"]
                     .startswith("I"), "the dead node taken out")  # fmt: skip
            before = answered_by_node(c)
            with phone_answering(c, 2) as phone:
                callers = call_sales(c, 2)
            assert (callers["ok"], callers["failed"]) == (2, 0), callers["out"]
            assert phone.get("ok") == 2, phone.get("out")
            after = answered_by_node(c)
            assert after[lost] == before[lost]
            assert sum(after.values()) - sum(before.values()) == 2
        finally:
            waiting.join(timeout=60)  # its BYE goes to the dead node: SIPp's own timeout ends it
