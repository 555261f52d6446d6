"""The cluster end to end (issue 15): calls per second and calls held at once through the edge
(Kamailio) in front of 1, 2 and 3 ``hotline serve --cluster`` nodes, each routing its calls
through the one routing brain in PostgreSQL, beside one node on its own (SQLite, no edge, no
brain); then the brain's own capacity in events per second (``bench.cluster_brain``).

    python -m bench.cluster [--calls 400] [--concurrency 20] [--hold 150] [--hold-seconds 8]

Every "host" is a network namespace (tests/cluster/netns.py): the edge, three nodes, PostgreSQL
and a SIPp caller, all on this machine's cores. A call dials the sales queue (1100), is answered
by the node (music on hold), enters the ACD through the brain (``CallArrived`` in the log) and
hangs up after ``-d`` (``CallAbandoned``): the brain is on every call's path. ``calls/s``: a
closed loop of ``--concurrency`` calls; ``held``: ``--hold`` calls placed at 25/s and kept
``--hold-seconds``, counted when every one was answered and ended cleanly. More nodes do not add
cores here (2 on the machine of docs/benchmarks.md): the figures show what the edge and the brain
cost and that the calls spread, not how far a bigger machine goes.

Root only. It prints a table and ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cluster.netns import hosts
from tests.cluster.pg_host import postgres
from tests.cluster.test_edge import CALLER, SIP, Cluster, Node, wait_for
from tests.interop.test_overload_sources import demo_config

NODES = ("node1", "node2", "node3")
NO_PIKE = 1_000_000
"""pike's per-source allowance (one SIPp host is every caller here)."""


def node_config(edge: str, db: str | None, node: str) -> str:
    config = demo_config().replace("process = true", "process = false", 1)
    config += f'\n[sip.limits]\ntrusted = ["{edge}"]\n'
    if db is not None:
        config += (
            f'\n[database]\nurl = "{db}"\nnode = "{node}"\n'
            f'\n[cluster]\nedge = "{edge}:{SIP}"\nlease_seconds = 3\n'
        )
    return config


def closed_loop(cluster: Cluster, target: str, count: int, concurrency: int) -> dict[str, Any]:
    started = time.monotonic()
    result = cluster.sipp(
        "caller", target, "-sf", str(CALLER), "-s", "1100", "-d", "200",
        "-m", str(count), "-l", str(concurrency), "-r", "100000", timeout=180,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    ok = int(result["ok"])
    return {
        "ok": ok,
        "failed": int(result["failed"]),
        "calls_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
    }


def held(cluster: Cluster, target: str, count: int, seconds: float) -> dict[str, Any]:
    result = cluster.sipp(
        "caller", target, "-sf", str(CALLER), "-s", "1100", "-d", str(int(seconds * 1000)),
        "-m", str(count), "-l", str(count), "-r", "25", timeout=count / 25 + seconds + 60,
    )  # fmt: skip
    return {"placed": count, "ok": int(result["ok"]), "failed": int(result["failed"])}


def start(nodes: dict[str, Node], config: Any) -> None:
    for name, node in nodes.items():
        node.start(config(name))
    for node in nodes.values():
        wait_for(node.ready, f"{node.host.name} ready", timeout=120)


def brain_capacity() -> dict[str, Any]:
    """``bench.cluster_brain``'s figures (its own PostgreSQL on 127.0.0.1), its last line."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cluster_brain", "--concurrency", "1", "64",
         "--calls", "1500"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stdout + done.stderr)[-1500:]}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--hold", type=int, default=150)
    parser.add_argument("--hold-seconds", type=float, default=8.0)
    parser.add_argument("--skip-brain", action="store_true", help="leave out bench.cluster_brain")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("network namespaces need root")
    out: dict[str, Any] = {}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # PostgreSQL runs as its own user
        with hosts("edge", *NODES, "pg", "caller") as net:
            edge_ip = net["edge"].address
            # one node on its own: SQLite, no edge, no brain
            alone = {"node1": Node(net["node1"], tmp / "alone")}
            cluster = Cluster(net, alone, tmp, "")
            try:
                start(alone, lambda name: node_config(edge_ip, None, name))
                direct = f"{net['node1'].address}:{SIP}"
                out["one_node_alone"] = closed_loop(cluster, direct, args.calls, args.concurrency)
                out["one_node_alone"]["held"] = held(cluster, direct, args.hold, args.hold_seconds)
            finally:
                alone["node1"].stop()
            with postgres(net["pg"], tmp / "pg", durable=True) as db:
                nodes = {name: Node(net[name], tmp / name) for name in NODES}
                cluster = Cluster(net, nodes, tmp, "")
                try:
                    start(nodes, lambda name: node_config(edge_ip, db, name))
                    edge = cluster.edge_address()
                    for k in (1, 2, 3):
                        with cluster.edge(*NODES[:k], pike_density=NO_PIKE):
                            row = closed_loop(cluster, edge, args.calls, args.concurrency)
                            row["held"] = held(cluster, edge, args.hold, args.hold_seconds)
                            out[f"edge_{k}_nodes_brain"] = row
                finally:
                    for node in nodes.values():
                        node.stop()
    if not args.skip_brain:
        out["brain"] = brain_capacity()
    print(f"{'path':<24} {'calls/s':>8} {'ok':>6} {'failed':>6}   held (placed/ok/failed)")
    for name, row in out.items():
        if name == "brain":
            continue
        h = row["held"]
        print(f"{name:<24} {row['calls_per_s']:>8} {row['ok']:>6} {row['failed']:>6}   "
              f"{h['placed']}/{h['ok']}/{h['failed']}")  # fmt: skip
    if "brain" in out:
        print(f"brain (bench.cluster_brain): {json.dumps(out['brain'])[:600]}")
    summary = {
        "bench": "cluster",
        "date": date,
        "machine": f"{os.cpu_count()} CPUs",
        "concurrency": args.concurrency,
        "hold_seconds": args.hold_seconds,
        **out,
    }
    print(json.dumps(summary, allow_nan=False))


if __name__ == "__main__":
    main()
