"""Calls and REGISTERs per second through the edge (Kamailio, hotline/cluster/edge) in front of
1, 2 and 3 hotline nodes, beside one node without the edge; and REGISTERs per second with
Kamailio itself as the registrar (auth_db against a table of HA1s, usrloc written through to
PostgreSQL), the alternative the edge does not take (docs/cluster.md, "The edge").

    python -m bench.cluster_edge [--calls 600] [--registers 1000] [--concurrency 20]

Every "host" is a network namespace (tests/cluster/netns.py): the edge, three nodes (the demo
configuration, standalone, each with its own SQLite data directory), PostgreSQL, and a SIPp
caller. Each figure is a closed loop: SIPp keeps ``--concurrency`` calls (or registrations) open
and starts the next as one ends, so the rate is what the path sustains and the mean time per
call is concurrency / rate. Calls dial the hotline number (1000, the IVR path) and hang up after
the ACK; a registration is REGISTER, 401, REGISTER with digest, 200. All of it shares the
machine's cores (2 here): more nodes do not add cores, so this measures the edge's overhead and
that it spreads, not how far it scales on bigger hardware.

Root only. It prints a table, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.cluster.netns import Host, hosts
from tests.cluster.pg_host import postgres, psql
from tests.cluster.test_edge import CALLER, NODES, SIP, Cluster, Node, wait_for
from tests.interop.harness import SCENARIOS
from tests.interop.test_overload_sources import demo_config

REGISTRAR_CFG = Path(__file__).with_name("cluster_edge_registrar.cfg")
"""The measured alternative: Kamailio as the registrar (not shipped as the edge's)."""

NO_PIKE = 1_000_000
"""pike's per-source allowance in the measurements (one SIPp is the only source)."""


def closed_loop(
    cluster: Cluster, target: str, count: int, concurrency: int, *args: str
) -> dict[str, float]:
    started = time.monotonic()
    result = cluster.sipp(
        "caller", target, *args, "-m", str(count), "-l", str(concurrency), "-r", "100000",
        timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    ok = int(result["ok"])
    rate = ok / elapsed if elapsed > 0 else 0.0
    return {
        "ok": ok,
        "failed": int(result["failed"]),
        "per_s": round(rate, 1),
        "mean_ms": round(1000 * concurrency / rate, 1) if rate else 0.0,
    }


def calls(cluster: Cluster, target: str, n: int, concurrency: int) -> dict[str, float]:
    return closed_loop(cluster, target, n, concurrency, "-sf", str(CALLER), "-s", "1000", "-d", "0")


def registers(cluster: Cluster, target: str, n: int, concurrency: int) -> dict[str, float]:
    return closed_loop(
        cluster, target, n, concurrency, "-sf", str(SCENARIOS / "register.xml"),
        "-s", "alice", "-au", "alice", "-ap", "alice-demo-1",
    )  # fmt: skip


@contextlib.contextmanager
def registrar_db(host: Host, workdir: Path) -> Iterator[str]:
    """PostgreSQL on ``host`` with Kamailio's auth_db and usrloc tables and alice's HA1 (realm
    hotline): the database URL."""
    with postgres(host, workdir, "kamailio") as url:
        schemas = Path("/usr/share/kamailio/postgres")
        for name in ("standard", "auth_db", "usrloc"):
            psql(host, url, "-f", str(schemas / f"{name}-create.sql"))
        ha1 = hashlib.md5(b"alice:hotline:alice-demo-1").hexdigest()  # the digest HA1 (RFC 2617)
        psql(
            host, url, "-c",
            "INSERT INTO subscriber (username, domain, password, ha1, ha1b) "
            f"VALUES ('alice', 'hotline', '', '{ha1}', '')",
        )  # fmt: skip
        yield url


@contextlib.contextmanager
def kamailio_registrar(cluster: Cluster, db_url: str) -> Iterator[None]:
    host = cluster.net["edge"]
    run_dir = cluster.tmp / "registrar"
    run_dir.mkdir()
    cmd = host.cmd(
        "kamailio", "-f", str(REGISTRAR_CFG), "-DD", "-E", "-l", f"udp:{host.address}:{SIP}",
        "-Y", str(run_dir), "-w", str(run_dir), "-m", "64", "-M", "8",
        "-A", f'DBURL="{db_url}"',
    )  # fmt: skip
    with (run_dir / "kamailio.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (run_dir / "kamailio_ctl").exists(), "kamailio registrar")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_edge")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--registers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    n_calls, n_regs, conc = args.calls, args.registers, args.concurrency
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # PostgreSQL runs as its own user
        with hosts("edge", *NODES, "pg", "caller") as net:
            edge_ip = net["edge"].address
            config = demo_config() + f'\n[sip.limits]\ntrusted = ["{edge_ip}"]\n'
            nodes = {name: Node(net[name], tmp / name) for name in NODES}
            cluster = Cluster(net, nodes, tmp, config)
            try:
                for node in nodes.values():
                    node.start(config)
                for node in nodes.values():
                    wait_for(node.ready, f"{node.host.name} ready", timeout=90)
                node1 = f"{net['node1'].address}:{SIP}"
                edge = cluster.edge_address()
                out["calls_direct_1_node"] = calls(cluster, node1, n_calls, conc)
                for k in (1, 2, 3):
                    with cluster.edge(*NODES[:k], pike_density=NO_PIKE):
                        out[f"calls_edge_{k}_nodes"] = calls(cluster, edge, n_calls, conc)
                out["registers_direct_1_node"] = registers(cluster, node1, n_regs, conc)
                for k in (1, 3):
                    with cluster.edge(*NODES[:k], pike_density=NO_PIKE):
                        out[f"registers_edge_{k}_nodes"] = registers(cluster, edge, n_regs, conc)
            finally:
                for node in nodes.values():
                    node.stop()
            with registrar_db(net["pg"], tmp / "pg") as db_url, kamailio_registrar(cluster, db_url):
                out["registers_kamailio_registrar_pg"] = registers(cluster, edge, n_regs, conc)
    print(f"{'path':<36} {'ok':>6} {'failed':>6} {'per s':>8} {'mean ms':>8}")
    for name, row in out.items():
        print(f"{name:<36} {row['ok']:>6} {row['failed']:>6} {row['per_s']:>8} {row['mean_ms']:>8}")
    print(json.dumps({"concurrency": conc, **out}, allow_nan=False))


if __name__ == "__main__":
    main()
