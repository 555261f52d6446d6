"""Issue 15, the edge: Kamailio (hotline/cluster/edge/kamailio.cfg) in front of real
``hotline serve`` nodes, each "host" a network namespace with its own address (tests/cluster/
netns.py), SIPp as callers, a phone, and a node ringing a phone.

- Calls through the edge's one address spread round-robin over three nodes; ACK and BYE follow
  the dialog's Record-Route to the node that answered (every call completes).
- A node whose link is cut is taken out by the OPTIONS probes (calls go to the others, all
  answered), and put back when the link is mended.
- kill -9 a node: new calls all go to the survivors and are all answered (the first ones sent to
  the dead node fail over when it gives no answer), and it is taken out.
- A node answering every INVITE with 503 + Retry-After (a stand-in: the hotline sheds load that
  way) is skipped: the calls are answered by the next node.
- A phone registers through the edge (the node authenticates it with the staff file's HA1 and
  logs the agent in); an INVITE a node sends to the edge for that agent rings the phone.
- A source flooding the edge with INVITEs is refused (pike) while another caller gets through.

Each node runs standalone with its own SQLite data directory (the shared record is another part
of issue 15).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotline.cluster.edge import CONFIG, EdgeSettings, dispatcher_list, prepare
from media_gateway.relayed import real_source
from tests.cluster.netns import Host, hosts
from tests.interop.harness import OPERATOR_TOKEN, SCENARIOS
from tests.interop.test_overload_sources import demo_config

ROOT = Path(__file__).resolve().parents[2]
CALLER = Path(__file__).parent / "scenarios" / "edge_caller.xml"
PHONE = Path(__file__).parent / "scenarios" / "edge_phone.xml"
SIP = 5060
NODES = ("node1", "node2", "node3")

# Three nodes and Kamailio on two cores: these run alone, after the parallel part.
pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.serial]


def require(tool: str) -> str:
    """The tool's path; skip without it, but fail in CI (``CI=true``), which installs it."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        reason = f"{tool} is not installed: run scripts/bootstrap --test"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- units: the module that starts the edge -------------------------------------------------


def test_dispatcher_list_and_settings() -> None:
    assert dispatcher_list(["10.0.0.2:5060", "10.0.0.3:5070"]).splitlines()[1:] == [
        "1 sip:10.0.0.2:5060 0 0",
        "1 sip:10.0.0.3:5070 0 0",
    ]
    for bad in ("10.0.0.2", "host:5060", "10.0.0.2:0", "10.0.0.2:x"):
        with pytest.raises(ValueError):
            dispatcher_list([bad])
    with pytest.raises(ValueError, match="at least one node"):
        EdgeSettings(listen="10.0.0.1:5060", nodes=())
    with pytest.raises(ValueError, match="pike_density"):
        EdgeSettings(listen="10.0.0.1:5060", nodes=("10.0.0.2:5060",), pike_density=0)


def test_real_source_trusts_the_header_from_an_edge_only() -> None:
    edges = {"10.0.0.1"}
    assert real_source(("10.0.0.1", 5060), "192.0.2.7:5062", edges) == ("192.0.2.7", 5062)
    assert real_source(("10.0.0.1", 5060), "[2001:db8::1]:5060", edges) == ("2001:db8::1", 5060)
    # From anyone else the header is a forgery; a malformed one counts as none.
    assert real_source(("192.0.2.9", 5060), "10.9.9.9:5060", edges) == ("192.0.2.9", 5060)
    for bad in ("", "10.0.0.9", "host:5060", "10.0.0.9:0", "10.0.0.9:99999", "1.2.3:5060"):
        assert real_source(("10.0.0.1", 5060), bad, edges) == ("10.0.0.1", 5060), bad
    assert real_source(("10.0.0.1", 5060), None, edges) == ("10.0.0.1", 5060)


def test_shipped_config_passes_kamailios_check(tmp_path: Path) -> None:
    binary = require("kamailio")
    settings = EdgeSettings(listen="127.0.0.1:5060", nodes=("127.0.0.1:5070", "127.0.0.1:5080"))
    cmd = prepare(settings, tmp_path, binary=binary)
    assert cmd[cmd.index("-f") + 1] == str(CONFIG)
    done = subprocess.run([*cmd, "-c"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config file ok" in (done.stdout + done.stderr).lower()
    # The command line the docs show, with --check.
    done = subprocess.run(
        [sys.executable, "-m", "hotline.cluster.edge", "--listen", "127.0.0.1:5060",
         "--node", "127.0.0.1:5070", "--run-dir", str(tmp_path / "cli"), "--check"],
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sip:127.0.0.1:5070" in (tmp_path / "cli" / "dispatcher.list").read_text()


# --- the cluster ---------------------------------------------------------------------------


@dataclass
class Node:
    host: Host
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "hotline.log"

    def start(self, config: str) -> None:
        """Start ``hotline serve`` on the host's address (returns at once; see :meth:`ready`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "ready").unlink(missing_ok=True)
        cfg = self.workdir / "site.toml"
        cfg.write_text(config, encoding="utf-8")
        cmd = self.host.cmd(
            sys.executable, "-m", "hotline.cli", "serve", "--config", str(cfg),
            "--sip", f"{self.host.address}:{SIP}", "--http", "127.0.0.1:8080",
            "--data", str(self.workdir / "data"), "--ready-file", str(self.workdir / "ready"),
        )  # fmt: skip
        env = {
            **os.environ,
            "HOTLINE_LOG_FORMAT": "json",
            "HOTLINE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.host.name} exited:\n{self.log.read_text()[-3000:]}")
        return (self.workdir / "ready").exists()

    def events(self, name: str) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if isinstance(row, dict) and row.get("event") == name:
                    out.append(row)
        return out

    def calls(self, run: str) -> int:
        """Calls of one SIPp run (its Call-IDs start with ``run``) this node has handled."""
        return sum(
            1 for e in self.events("call_handled") if str(e.get("call_id", "")).startswith(run)
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@dataclass
class Edge:
    host: Host
    run_dir: Path
    proc: subprocess.Popen[bytes]

    def destinations(self) -> dict[str, str]:
        """The dispatcher's view: node address -> flags (``AP`` active, ``IP`` inactive and
        probed)."""
        done = self.host.run(
            "kamcmd", "-s", str(self.run_dir / "kamailio_ctl"), "dispatcher.list", timeout=10
        )
        out: dict[str, str] = {}
        uri = ""
        for line in done.stdout.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "URI":
                uri = value.strip().removeprefix("sip:")
            elif key == "FLAGS" and uri:
                out[uri] = value.strip()
        return out

    def log(self) -> str:
        return (self.run_dir / "kamailio.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class Cluster:
    net: dict[str, Host]
    nodes: dict[str, Node]
    tmp: Path
    config: str

    def edge_address(self) -> str:
        return f"{self.net['edge'].address}:{SIP}"

    @contextlib.contextmanager
    def edge(
        self,
        *names: str,
        pike_density: int = 1000,
        location_db: str | None = None,
        trusted: tuple[str, ...] = (),
    ) -> Iterator[Edge]:
        """Kamailio on the edge host in front of the named hosts (port 5060 each). The tests'
        callers send tens of requests a second, so pike allows them more than its default,
        but for the flood test."""
        host = self.net["edge"]
        run_dir = self.tmp / f"edge-{time.monotonic_ns()}"
        cfg = EdgeSettings(
            listen=self.edge_address(),
            nodes=tuple(f"{self.net[n].address}:{SIP}" for n in names),
            pike_density=pike_density,
            ping_interval=1,  # the nodes are out and back sooner than with the default 2 s
            location_db=location_db,
            trusted=trusted,
        )
        cmd = host.cmd(*prepare(cfg, run_dir, binary=require("kamailio")))
        with (run_dir / "kamailio.log").open("wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        edge = Edge(host, run_dir, proc)
        try:
            wait_for(
                lambda: (
                    proc.poll() is None
                    and list(edge.destinations().values()) == ["AP"] * len(names)
                ),
                "kamailio up and every node answering its first probe",
            )
            yield edge
        finally:
            edge.stop()

    def sipp(
        self,
        host: str,
        target: str,
        *args: str,
        port: int = SIP,
        timeout: float = 40,
    ) -> dict[str, int | str]:
        """SIPp from ``host`` (its address, ``port``) to ``target``: its final counts."""
        h = self.net[host]
        workdir = self.tmp / f"sipp-{host}-{time.monotonic_ns()}"
        workdir.mkdir()
        done = h.run(
            require("sipp"), *([target] if target else []), "-i", h.address, "-p", str(port),
            "-nostdin",
            "-timeout", f"{int(timeout)}s", "-trace_stat", "-stf", str(workdir / "stat.csv"),
            "-trace_err", "-error_file", str(workdir / "errors.log"), *args,
            timeout=timeout + 30, cwd=workdir,
        )  # fmt: skip
        rows = [r.split(";") for r in (workdir / "stat.csv").read_text().splitlines()]
        stats = dict(zip(rows[0], rows[-1], strict=False)) if len(rows) >= 2 else {}
        errors = workdir / "errors.log"
        return {
            "ok": int(stats.get("SuccessfulCall(C)", "0") or 0),
            "failed": int(stats.get("FailedCall(C)", "0") or 0),
            "rc": done.returncode,
            "out": done.stdout[-2500:]
            + done.stderr[-1500:]
            + (errors.read_text(errors="replace")[-2500:] if errors.exists() else ""),
        }

    def call(self, calls: int, rate: int = 10, *, host: str = "caller") -> dict[str, int | str]:
        """``calls`` calls from ``host`` to the hotline number through the edge; ``run`` in the
        result names their Call-IDs' prefix (for :meth:`took`)."""
        run = f"run{time.monotonic_ns()}-"
        result = self.sipp(
            host, self.edge_address(), "-sf", str(CALLER), "-s", "1000",
            "-m", str(calls), "-r", str(rate), "-d", "100", "-cid_str", f"{run}%u-%p@%s",
        )  # fmt: skip
        return {**result, "run": run}

    def took(self, result: dict[str, int | str], total: int | None = None) -> dict[str, int]:
        """How many of the run's calls each node handled, once they add up to ``total`` (the
        run's answered calls by default): a node logs a call when it has ended it."""
        run, want = str(result["run"]), int(result["ok"]) if total is None else total

        def counts() -> dict[str, int]:
            return {name: node.calls(run) for name, node in self.nodes.items()}

        wait_for(lambda: sum(counts().values()) == want, f"{want} calls logged by the nodes")
        return counts()


@contextlib.contextmanager
def running_cluster(
    tmp: Path, nodes: tuple[str, ...] = NODES, others: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """Hosts "edge", ``nodes`` (each running ``hotline serve``) and ``others``."""
    require("kamailio")
    require("kamcmd")
    require("sipp")
    with hosts("edge", *nodes, *others) as net:
        edge_ip = net["edge"].address
        # The nodes see every caller as the edge: its address is exempt from the per-source
        # limits (the edge limits per source itself, with pike).
        config = demo_config() + f'\n[sip.limits]\ntrusted = ["{edge_ip}"]\n'
        # RTP on each node's signalling loop: the calls here are short, and a node starts in
        # half the time without its media process.
        config = config.replace("process = true", "process = false", 1)
        running = {name: Node(net[name], tmp / name) for name in nodes}
        try:
            for node in running.values():
                node.start(config)
            for node in running.values():
                wait_for(node.ready, f"{node.host.name} ready", timeout=60)
            yield Cluster(net, running, tmp, config)
        finally:
            for node in running.values():
                node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("edge")
    with running_cluster(tmp, others=("shed", "caller", "flooder", "phone")) as cluster:
        yield cluster


def test_calls_spread_across_three_nodes(cluster: Cluster) -> None:
    with cluster.edge(*NODES):
        result = cluster.call(30, rate=15)
        assert (result["ok"], result["failed"]) == (30, 0), result["out"]
        took = cluster.took(result)
    assert took == {"node1": 10, "node2": 10, "node3": 10}, took  # round-robin


def test_cut_node_is_taken_out_and_put_back_when_mended(cluster: Cluster) -> None:
    node2 = cluster.nodes["node2"]
    addr2 = f"{node2.host.address}:{SIP}"
    with cluster.edge(*NODES) as edge:
        node2.host.cut()
        try:
            wait_for(lambda: edge.destinations()[addr2].startswith("I"), "node2 taken out")
            result = cluster.call(6, rate=6)
            assert (result["ok"], result["failed"]) == (6, 0), result["out"]
            assert cluster.took(result)["node2"] == 0
        finally:
            node2.host.mend()
        wait_for(lambda: edge.destinations()[addr2] == "AP", "node2 put back")
        result = cluster.call(6, rate=6)
        assert (result["ok"], result["failed"]) == (6, 0), result["out"]
        assert cluster.took(result)["node2"] == 2  # round-robin over three


SHEDDING_NODE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5060))
print("ready", flush=True)
while True:
    data, src = s.recvfrom(65535)
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    method = head[0].split(" ", 1)[0]
    if method in ("ACK", "SIP/2.0"):
        continue
    keep = [h for h in head[1:] if h.split(":", 1)[0].strip().lower()
            in ("via", "from", "to", "call-id", "cseq")]
    keep = [h + ";tag=shed" if h.lower().startswith("to:") else h for h in keep]
    if method == "INVITE":
        status = "503 Service Unavailable\r\nRetry-After: 5"
        source = [h.split(":", 1)[1].strip() for h in head if h.startswith("X-Hotline-Source:")]
        print("INVITE", *source, flush=True)
    else:
        status = "200 OK"
    reply = "SIP/2.0 " + status + "\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
    s.sendto(reply.encode(), src)
"""


def test_node_answering_503_is_skipped(cluster: Cluster) -> None:
    """The stand-in answers OPTIONS (so the edge keeps it in) and sheds every INVITE with 503 +
    Retry-After, as a hotline node past its set-up bound does."""
    shed = cluster.net["shed"]
    proc = subprocess.Popen(
        shed.cmd(sys.executable, "-c", SHEDDING_NODE, shed.address),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with cluster.edge("shed", "node1") as edge:
            result = cluster.call(8, rate=8)
            assert (result["ok"], result["failed"]) == (8, 0), result["out"]
            assert cluster.took(result)["node1"] == 8
            # Still in: it answers the probes; only its INVITEs are passed over.
            assert edge.destinations()[f"{shed.address}:{SIP}"] == "AP"
        with cluster.edge("shed"):
            # No other node: the caller gets the edge's own 503 with Retry-After.
            alone = cluster.call(1)
            assert alone["failed"] == 1, alone["out"]
            assert "503 No Hotline Node" in str(alone["out"]), alone["out"]
            assert "Retry-After: 5" in str(alone["out"]), alone["out"]
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    invites = [line for line in out.splitlines() if line.startswith("INVITE")]
    assert len(invites) >= 5, out  # round-robin offered it half of the 8 first, and the last
    # Each carried its caller's real address, set by the edge (one value, from the edge only).
    caller = cluster.net["caller"].address
    assert {line.split()[1].rpartition(":")[0] for line in invites} == {caller}, invites
    assert all(len(line.split()) == 2 for line in invites), invites


PHONE_PORT = 5062


def register_phone(cluster: Cluster) -> None:
    """alice's phone (host "phone", port ``PHONE_PORT``) registers through the edge."""
    registered = cluster.sipp(
        "phone", cluster.edge_address(), "-sf", str(SCENARIOS / "register.xml"), "-s", "alice",
        "-au", "alice", "-ap", "alice-demo-1", "-m", "1",
        port=PHONE_PORT, timeout=20,
    )  # fmt: skip
    assert registered["ok"] == 1, registered["out"]


def ring_phone(cluster: Cluster, ringer: str) -> tuple[dict[str, int | str], dict[str, int | str]]:
    """The host ``ringer`` sends the edge an INVITE for alice while the phone (SIPp on its
    registered port) waits to answer: (the ringer's result, the phone's)."""
    phone: dict[str, dict[str, int | str]] = {}
    uas = threading.Thread(
        target=lambda: phone.setdefault(
            "r",
            cluster.sipp("phone", "", "-sf", str(PHONE), "-m", "1", port=PHONE_PORT, timeout=20),
        )
    )
    uas.start()
    phone_host = cluster.net["phone"]
    wait_for(
        lambda: f":{PHONE_PORT} " in phone_host.run("ss", "-Hnul", timeout=10).stdout,
        "the phone's SIPp listening",
    )
    rang = cluster.sipp(
        ringer, cluster.edge_address(), "-sf", str(CALLER), "-s", "alice", "-m", "1",
        "-d", "200", port=5070, timeout=20,
    )  # fmt: skip
    uas.join(timeout=60)  # the phone's SIPp gives up after 20 s when no INVITE came
    return rang, phone.get("r", {"ok": 0, "out": "no result"})


def test_phone_registered_through_edge_is_rung_by_a_node(cluster: Cluster) -> None:
    with cluster.edge(*NODES):
        # Not registered yet: a node's INVITE for the agent gets 404 from the edge.
        early = cluster.sipp(
            "node2", cluster.edge_address(), "-sf", str(CALLER), "-s", "alice", "-m", "1",
            port=5070, timeout=10,
        )  # fmt: skip
        assert early["failed"] == 1 and "404" in str(early["out"]), early["out"]

        register_phone(cluster)
        # The node the edge chose authenticated the phone and logged the agent in.
        logged_in = [
            name
            for name, node in cluster.nodes.items()
            if any(e.get("agent") == "alice" for e in node.events("device_registration"))
        ]
        assert len(logged_in) == 1, logged_in

        # The phone is rung by an INVITE a node sends to the edge for "alice" (a node other
        # than the one that authenticated it).
        ringer = next(n for n in NODES if n not in logged_in)
        rang, phone = ring_phone(cluster, ringer)
        assert (rang["ok"], rang["failed"]) == (1, 0), rang["out"]
        assert phone["ok"] == 1, phone["out"]


def test_flooding_source_is_refused_while_another_caller_gets_through(cluster: Cluster) -> None:
    results: dict[str, dict[str, int | str]] = {}
    with cluster.edge(*NODES, pike_density=40) as edge:
        flood = threading.Thread(
            target=lambda: results.setdefault(
                "flood",
                cluster.sipp(
                    "flooder", cluster.edge_address(), "-sf", str(CALLER), "-s", "1000",
                    "-m", "300", "-r", "200", "-recv_timeout", "2000", timeout=30,
                ),
            )
        )  # fmt: skip
        flood.start()
        wait_for(lambda: "edge_source_limited" in edge.log(), "the flood to be limited")
        results["caller"] = cluster.call(4, rate=4)
        flood.join(timeout=60)
        log = edge.log()
    caller, flooder = results["caller"], results["flood"]
    print(f"flood: {flooder['ok']} answered, {flooder['failed']} refused; caller: {caller['ok']}")
    assert (caller["ok"], caller["failed"]) == (4, 0), caller["out"]
    assert int(flooder["failed"]) > int(flooder["ok"]), flooder
    limited = [line for line in log.splitlines() if "edge_source_limited" in line]
    assert all(cluster.net["flooder"].address in line for line in limited), limited[:5]


def test_trusted_source_is_not_limited(cluster: Cluster) -> None:
    """A trunk (many callers behind one address) listed as trusted: 40 calls at 20/s (60
    requests a second, three times pike's 40 per 2 s) are all answered."""
    with cluster.edge(*NODES, pike_density=40, trusted=(cluster.net["caller"].address,)) as edge:
        result = cluster.call(40, rate=20)
        log = edge.log()
    assert (result["ok"], result["failed"]) == (40, 0), result["out"]
    assert "edge_source_limited" not in log


def test_killed_node_is_taken_out(cluster: Cluster) -> None:
    """Last in this file: node3 stays dead (a node put back is the cut test's)."""
    node3 = cluster.nodes["node3"]
    addr3 = f"{node3.host.address}:{SIP}"
    with cluster.edge(*NODES) as edge:
        assert set(edge.destinations().values()) == {"AP"}
        node3.stop(signal.SIGKILL)
        result = cluster.call(12, rate=6)
        assert (result["ok"], result["failed"]) == (12, 0), result["out"]
        took = cluster.took(result)
        assert took["node3"] == 0 and took["node1"] > 0 and took["node2"] > 0, took
        # Taken out: by the failed INVITE, or by the OPTIONS probe, whichever came first.
        wait_for(lambda: edge.destinations()[addr3].startswith("I"), "node3 taken out")
        # The calls round-robin sent to node3 (the 3rd goes 0.3 s after SIPp starts, before a
        # probe sent after the kill can time out: 2 s) waited for its first answer and went on.
        assert f"edge_node_silent node=sip:{addr3}" in edge.log(), edge.log()[-3000:]
