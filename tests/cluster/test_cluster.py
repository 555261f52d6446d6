"""Issue 15 end to end: Kamailio at the edge, three ``hotline serve --cluster`` nodes with a
routing brain each (one active, two standbys), PostgreSQL as the record and the brain's log, each
"host" a network namespace (tests/cluster/netns.py); SIPp callers and agents' phones outside.

- Calls through the edge spread over the three nodes, and the one agent, whose phone registered
  through the edge with whichever node the edge chose, is rung for the calls of every node.
- An agent transfers a call (staff API, blind) to a colleague whose phone registered through
  another node: the colleague's phone is rung through the edge and talks to the caller.
- The link of the active brain's node is cut (from PostgreSQL too) with a caller waiting there:
  it steps down by itself, a standby takes the lease (no entry of the old epoch after the new),
  finds the node lost and closes the case (``node_lost``); new calls go to the survivors; mended,
  the node is back at the edge and in the cluster.
- kill -9 of the node alice's phone registered through, a caller waiting there and alice
  talking to a caller on another node: the other call carries on to its end, the waiting
  caller's case is closed, and new calls still ring alice's phone through the edge.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
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
from tests.interop.harness import OPERATOR_TOKEN, SCENARIOS
from tests.interop.test_overload_sources import demo_config

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.serial]

NODES = ("node1", "node2", "node3")


def node_config(edge: str, db: str, node: str) -> str:
    # SIPp's callers and phones here send no RTP: no "no media" hang-up in the first minute
    config = demo_config().replace("process = true", "process = false\nrtp_start_timeout = 60", 1)
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
            hosts("edge", *NODES, "pg", "caller", "phone", "phone2") as net,
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


def api(c: Cluster, node: str, method: str, path: str, body: object = None) -> object:
    """The node's staff API (on the host's own 127.0.0.1), with the operator's token."""
    script = (
        "import json, sys, urllib.error, urllib.request\n"
        "req = urllib.request.Request('http://127.0.0.1:8080' + sys.argv[1], method=sys.argv[2],"
        " data=sys.argv[3].encode() or None, headers={'Content-Type': 'application/json',"
        " 'Authorization': 'Bearer ' + sys.argv[4]})\n"
        "try:\n"
        "    print(urllib.request.urlopen(req, timeout=10).read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    sys.exit(f'HTTP {e.code}: {e.read().decode()}')\n"
    )
    done = c.nodes[node].host.run(
        sys.executable, "-c", script, path, method, json.dumps(body) if body else "",
        OPERATOR_TOKEN, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout or "null")


def bridged(c: Cluster, node: str) -> int:
    """Conversations alice had on ``node`` so far (its ``bridged`` log lines)."""
    return sum(1 for e in c.nodes[node].events("bridged") if e.get("agent") == "alice")


def registered_at(c: Cluster, agent: str) -> str:
    [name] = [
        n
        for n, node in c.nodes.items()
        if any(e.get("agent") == agent for e in node.events("device_registration"))
    ] or [""]
    return name


def test_an_agent_transfers_a_call_to_a_colleague_registered_through_another_node(
    cluster: tuple[Cluster, str],
) -> None:
    c = cluster[0]
    with c.edge(*NODES):
        register_phone(c)  # alice, host "phone"
        bob = c.sipp(
            "phone2", c.edge_address(), "-sf", str(SCENARIOS / "register.xml"), "-s", "bob",
            "-au", "bob", "-ap", "bob-demo-1", "-m", "1", port=PHONE_PORT, timeout=20,
        )  # fmt: skip
        assert bob["ok"] == 1, bob["out"]
        bobs = registered_at(c, "bob")
        wait_for(
            lambda: bool(sql(cluster, "SELECT 1 FROM acd_input WHERE body->>'type' ="
                                      " 'AgentLoggedIn' AND body->>'agent_id' = 'bob'")),
            "bob logged in with the brain",
        )  # fmt: skip
        # The caller's call is held by a node other than the one bob registered through (it
        # calls that node directly: which node holds a call is the edge's choice otherwise).
        holder = next(n for n in NODES if n not in (bobs, registered_at(c, "alice")))
        results: dict[str, dict[str, int | str]] = {}
        bob_phone = threading.Thread(
            target=lambda: results.setdefault(
                "bob", c.sipp("phone2", "", "-sf", str(PHONE), "-m", "1", port=PHONE_PORT,
                              timeout=60),
            )
        )  # fmt: skip
        bob_phone.start()
        bridged_before = bridged(c, holder)
        with phone_answering(c, 1) as alice:
            caller = threading.Thread(
                target=lambda: results.setdefault(
                    "caller",
                    c.sipp("caller", f"{c.nodes[holder].host.address}:{SIP}", "-sf", str(CALLER),
                           "-s", "1100", "-m", "1", "-d", "12000", port=5071, timeout=60),
                )
            )  # fmt: skip
            caller.start()
            wait_for(lambda: bridged(c, holder) > bridged_before, "alice talking to the caller")
            started = api(c, holder, "POST", "/api/agents/alice/call/transfer", {"to": "bob"})
            assert isinstance(started, dict) and started["state"] == "transferring", started
            wait_for(
                lambda: any(e.get("to") == "bob" for e in c.nodes[holder].events("transferred")),
                "the caller bridged to bob",
            )
            caller.join(timeout=90)
        bob_phone.join(timeout=90)
        assert alice.get("ok") == 1, alice.get("out")  # her leg ended by the node
        assert results["bob"]["ok"] == 1, results["bob"]["out"]  # bob answered, then the BYE
        assert results["caller"]["ok"] == 1, results["caller"]["out"]
        kinds: list[str] = []

        def closed() -> bool:
            kinds[:] = [
                row[0]
                for row in sql(cluster, "SELECT kind FROM case_events WHERE case_id ="
                                        " (SELECT max(case_id) FROM case_events) ORDER BY seq")
            ]  # fmt: skip
            return bool(kinds) and kinds[-1] == "hung_up"

        wait_for(closed, "the transferred call's case closed")
        assert "transferred" in kinds and kinds[-1] == "hung_up", kinds


def waiting_caller(c: Cluster, node: str, port: int) -> threading.Thread:
    """A support caller (1200: bob serves it, never logged in here) waiting at ``node`` (called
    directly: which node takes a call is the edge's choice otherwise); its BYE after 8 s may
    find the node gone: SIPp's own timeout ends it."""
    target = f"{c.nodes[node].host.address}:{SIP}"
    thread = threading.Thread(
        target=lambda: c.sipp(
            "caller", target, "-sf", str(CALLER), "-s", "1200",
            "-m", "1", "-d", "8000", port=port, timeout=16,
        )
    )  # fmt: skip
    thread.start()
    return thread


def talking_caller(c: Cluster, node: str, port: int, out: dict[str, object]) -> threading.Thread:
    """A sales caller at ``node`` (directly) whom alice answers; hangs up after 6 s."""
    target = f"{c.nodes[node].host.address}:{SIP}"
    thread = threading.Thread(
        target=lambda: out.update(
            c.sipp("caller", target, "-sf", str(CALLER), "-s", "1100",
                   "-m", "1", "-d", "6000", port=port, timeout=45)
        )
    )  # fmt: skip
    thread.start()
    return thread


def holding_node(cluster: tuple[Cluster, str]) -> tuple[str, str]:
    """(node, case id) of the one call in progress the record knows."""
    rows: list[list[str]] = []

    def one() -> bool:
        rows[:] = sql(cluster, "SELECT node, case_id FROM live_calls")
        return len(rows) == 1

    wait_for(one, "the waiting call in the record")
    return rows[0][0], rows[0][1]


def closed_as_lost(cluster: tuple[Cluster, str], case_id: str) -> bool:
    return bool(
        sql(cluster, "SELECT 1 FROM case_events WHERE kind = 'hung_up'"
                     f" AND case_id = {case_id} AND data->>'cause' = 'node_lost'")
    )  # fmt: skip


def test_the_active_brains_node_cut_off_steps_down_is_lost_and_comes_back_when_mended(
    cluster: tuple[Cluster, str],
) -> None:
    c = cluster[0]
    with c.edge(*NODES) as edge:
        register_phone(c)  # a new edge process: its bindings were in memory
        # The node of the active brain is cut off (from PostgreSQL too), a caller waiting there.
        [[lost]] = sql(cluster, "SELECT holder FROM acd_lease WHERE expires_at > now()")
        waiting = waiting_caller(c, lost, 5072)
        try:
            held_by, case_id = holding_node(cluster)
            assert held_by == lost
            host = c.nodes[lost].host
            before = answered_by_node(c)
            host.cut()
            try:
                wait_for(lambda: closed_as_lost(cluster, case_id), "its case closed", timeout=40)
                [[active]] = sql(cluster, "SELECT holder FROM acd_lease WHERE expires_at > now()")
                assert active != lost  # a standby took the lease
                # The cut-off brain stepped down by itself (it could not renew), and the log
                # has no entry of its epoch after the new one began: no split brain.
                roles = [e.get("role") for e in c.nodes[lost].events("acd brain role")]
                assert roles[-1] == "standby", roles
                epochs = [
                    int(e) for [e] in sql(cluster, "SELECT epoch FROM acd_input ORDER BY seq")
                ]
                assert epochs == sorted(epochs)
                wait_for(lambda: edge.destinations()[f"{host.address}:{SIP}"].startswith("I"),
                         "the cut node taken out")  # fmt: skip
                with phone_answering(c, 2) as phone:
                    callers = call_sales(c, 2)
                assert (callers["ok"], callers["failed"]) == (2, 0), callers["out"]
                assert phone.get("ok") == 2, phone.get("out")
                wait_for(lambda: sum(answered_by_node(c).values()) == sum(before.values()) + 2,
                         "the 2 calls' ends logged")  # fmt: skip
                after = answered_by_node(c)
                assert after[lost] == before[lost]  # the survivors took them
                assert sum(after.values()) - sum(before.values()) == 2
            finally:
                host.mend()
            # Mended: the edge puts it back, and it is a node again (its heartbeat).
            wait_for(lambda: edge.destinations()[f"{host.address}:{SIP}"] == "AP",
                     "the node back at the edge")  # fmt: skip
            wait_for(
                lambda: bool(sql(cluster, "SELECT 1 FROM cluster_nodes WHERE node ="
                                          f" '{lost}' AND lost_at IS NULL")),
                "the node back in the cluster",
            )  # fmt: skip
        finally:
            waiting.join(timeout=60)


def test_kill_9_of_a_node_mid_call(cluster: tuple[Cluster, str]) -> None:
    """Last in this file: the node stays dead. The node alice's phone registered through is
    killed with a caller waiting there, while alice talks to a caller on another node: the
    other node's call carries on to its end, the waiting caller's case is closed
    (``node_lost``), and new calls through the edge still ring alice's phone."""
    c = cluster[0]
    with c.edge(*NODES) as edge:
        register_phone(c)  # a new edge process: its bindings were in memory
        lost = registered_at(c, "alice")
        other = next(n for n in NODES if n != lost)
        waiting = waiting_caller(c, lost, 5070)
        talking: dict[str, object] = {}
        try:
            _, case_id = holding_node(cluster)
            base = sum(answered_by_node(c).values())
            bridged_before = bridged(c, other)
            with phone_answering(c, 3) as phone:
                talker = talking_caller(c, other, 5071, talking)
                wait_for(lambda: bridged(c, other) > bridged_before, "alice talking elsewhere")
                c.nodes[lost].stop(signal.SIGKILL)
                wait_for(lambda: closed_as_lost(cluster, case_id), "its case closed", timeout=40)
                wait_for(lambda: edge.destinations()[f"{c.nodes[lost].host.address}:{SIP}"]
                         .startswith("I"), "the dead node taken out")  # fmt: skip
                talker.join(timeout=60)
                assert talking.get("ok") == 1, talking.get("out")  # carried on, untouched
                wait_for(lambda: sum(answered_by_node(c).values()) == base + 1, "its end logged")
                before = answered_by_node(c)
                callers = call_sales(c, 2)
            assert (callers["ok"], callers["failed"]) == (2, 0), callers["out"]
            assert phone.get("ok") == 3, phone.get("out")
            wait_for(lambda: sum(answered_by_node(c).values()) == sum(before.values()) + 2,
                     "the 2 calls' ends logged")  # fmt: skip
            after = answered_by_node(c)
            assert after[lost] == before[lost]
            assert sum(after.values()) - sum(before.values()) == 2
        finally:
            waiting.join(timeout=60)  # its BYE goes to the dead node: SIPp's own timeout ends it
