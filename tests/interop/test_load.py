"""``hotline load`` against a real ``hotline serve`` on 127.0.0.1, through the demo's IVR.

The service runs the demo configuration's entry points, IVR and queues (their strategies,
skills and overflows), with more agents than the demo's four and a short wrap-up so that a few
hundred time-accelerated calls fit in seconds. Two runs on one service:

* a few hundred calls into all four queues, each caller keying its way through the IVR
  (language, menu, the complaints account number and its confirmation) with RFC 4733 events,
  some with in-band tones or SIP INFO: no call fails, and the generator's counts, the engine's
  (``/metrics``, ``/api/acd``) and the case records (``/api/cases``) agree call by call;
* a small scenario whose callers the simulator models as the IVR treats them: every live
  figure lies inside the simulator's interval for one run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.harness import OPERATOR_TOKEN, Server, start_server

pytestmark = [pytest.mark.interop, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "hotline" / "demo.toml"

# (group, skills, queues): six agents each; the operator queue rings the sales agents too
AGENTS = [
    ("sales", {"en": 8, "sales": 7}, ["sales", "operator"]),
    ("support", {"en": 6, "support": 8}, ["support"]),
    ("complaints", {"en": 5, "complaints": 9}, ["complaints"]),
    ("operator", {"en": 7, "sales": 4}, ["operator"]),
]


def service_config(per_group: int = 6) -> str:
    """The demo's entry points, IVR and queues; ``per_group`` agents in each of the four groups
    (24 by default), with plain passwords; wrap-up shortened to 0.2 s (the service's timers are
    not accelerated, the callers are). bench/load.py uses it too."""
    demo = DEMO.read_text(encoding="utf-8")
    entry = demo[demo.index("[entry_points]") : demo.index("# A PSTN trunk")]
    queues = demo[demo.index("[acd.queues.sales]") : demo.index("# -- The IVR")]
    queues = re.sub(r"wrap_up_seconds = \d+", "wrap_up_seconds = 0.2", queues)
    ivr = demo[demo.index("\n[ivr]\n") :]
    agents = []
    for name, skills, member_of in AGENTS:
        for k in range(per_group):
            aid = f"{name}{k + 1}"
            table = ", ".join(f"{s} = {v}" for s, v in skills.items())
            agents.append(
                f'[[agents]]\nid = "{aid}"\npassword = "{aid}-pw-1"\nskills = {{ {table} }}\n'
                f"queues = {json.dumps(member_of)}\n"
            )
    return "\n".join(
        [
            '[sip]\nrealm = "hotline"\nauth_algorithms = ["MD5"]\n',
            "[media]\nprocess = true\n",
            *agents,
            entry,
            queues,
            ivr,
        ]
    )


WORKLOAD = """
[simulation]
duration_hours = {hours}
replications = 20
seed = {seed}
service_level_seconds = 20

{arrivals}

[load]
speedup = 60

[load.agents]
answer_seconds = {{ distribution = "exponential", mean_seconds = 3 }}
"""

ALL_QUEUES = """
[[arrivals]]
queue = "sales"
rate_per_hour = 360
ivr_time = 45
handle_time = { distribution = "exponential", mean_seconds = 30 }
patience = { distribution = "exponential", mean_seconds = 240 }
skills = { en = 4 }

[[arrivals]]
queue = "support"
rate_per_hour = 240
ivr_time = 45
handle_time = { distribution = "exponential", mean_seconds = 30 }
patience = { distribution = "exponential", mean_seconds = 240 }
skills = { en = 4, support = 3 }

[[arrivals]]
queue = "complaints"
rate_per_hour = 150
ivr_time = 45
handle_time = { distribution = "exponential", mean_seconds = 30 }
patience = { distribution = "exponential", mean_seconds = 240 }
skills = { en = 4 }
priority = 2

[[arrivals]]
queue = "operator"
rate_per_hour = 150
ivr_time = 45
handle_time = { distribution = "exponential", mean_seconds = 30 }
skills = { en = 4 }

[[load.paths]]
queue = "sales"
keys = ["1", "1"]
share = 3
[[load.paths]]
queue = "sales"
keys = ["1", "1"]
dtmf = "inband"
[[load.paths]]
queue = "support"
keys = ["1", "2", "1"]
[[load.paths]]
queue = "support"
keys = ["1", "2", "1"]
dtmf = "info"
[[load.paths]]
queue = "complaints"
keys = ["1", "3", "4321#", "1"]
[[load.paths]]
queue = "operator"
keys = ["1", "0"]
"""

SMALL = """
[[arrivals]]
queue = "sales"
rate_per_hour = 300
handle_time = { distribution = "exponential", mean_seconds = 40 }
patience = { distribution = "exponential", mean_seconds = 60 }
ivr_time = 45
skills = { en = 4 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("load")
    srv = start_server(tmp, service_config())
    try:
        yield srv
    finally:
        srv.stop()


def _files(tmp: Path, arrivals: str, *, seconds: float, seed: int) -> None:
    """The service's configuration and a workload of ``seconds`` live seconds at x60."""
    (tmp / "service.toml").write_text(service_config(), encoding="utf-8")
    hours = seconds * 60 / 3600  # speedup 60
    (tmp / "workload.toml").write_text(
        WORKLOAD.format(hours=hours, seed=seed, arrivals=arrivals), encoding="utf-8"
    )


def _load_command(tmp: Path, *args: str, token: str | None = OPERATOR_TOKEN) -> list[str]:
    return [sys.executable, "-m", "hotline.cli", "load", str(tmp / "service.toml"),
            "--workload", str(tmp / "workload.toml"), "--json", str(tmp / "load.json"),
            *args]  # fmt: skip


def _env(token: str | None = OPERATOR_TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HOTLINE_OPERATOR_TOKEN"}
    if token:
        env["HOTLINE_OPERATOR_TOKEN"] = token
    return env


def test_a_few_hundred_calls_through_the_demo_ivr(server: Server, tmp_path: Path) -> None:
    """``hotline load`` (the command, two caller processes): ~230 callers in 16 s through every
    queue's IVR path; no call fails, the three counts agree for every call, and callers heard
    no loss."""
    _files(tmp_path, ALL_QUEUES, seconds=16.0, seed=11)
    cmd = _load_command(tmp_path, "--target", server.sip, "--http",
                        f"127.0.0.1:{server.http_port}", "--quiet", "--workers", "2",
                        "--max-seconds", "75")  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=100, cwd=ROOT)
    out = tmp_path / "load.json"
    assert out.exists(), proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    calls = doc["calls"]
    assert doc["stopped"] == "done", (doc["stopped"], proc.stderr[-2000:])
    assert 200 <= calls["placed"] <= 400, calls
    assert calls["reported"] == calls["placed"] == calls["planned"], calls
    assert calls["failed"] == 0, (calls["failure_causes"], calls["failed_calls"][:5])
    assert calls["outcomes"].get("unfinished", 0) == 0, calls
    assert doc["event_stream"]["following"] is True, doc["event_stream"]
    agreement = doc["agreement"]
    assert agreement["agree"] is True, json.dumps(agreement, indent=1)[:4000]
    queues = {r["queue"] for r in agreement["rows"] if r["count"] == "answered"}
    assert queues == {"sales", "support", "complaints", "operator"}
    assert agreement["cases_read"] == calls["placed"]
    assert doc["rtp_callers_heard"]["loss"] < 0.001
    assert doc["agents"]["heard_wrong_caller"] == 0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_live_lands_inside_the_prediction(server: Server, tmp_path: Path) -> None:
    """A small scenario (one queue through the IVR, callers modelled with the skills the IVR
    gives): every live figure inside the simulator's interval for one run.

    The run plays the scenario's own draw of callers (replication 0 of the simulator). Its seed
    is one whose draw is a typical one (every figure of replication 0 well inside the interval:
    asserted first), so what is tested is the live engine against the model, not the luck of
    the draw."""
    from sim.load.compare import compare
    from sim.load.profile import build_plan
    from sim.load.runner import run_load

    _files(tmp_path, SMALL, seconds=10.0, seed=23)
    plan = build_plan(
        tmp_path / "service.toml",
        workload=tmp_path / "workload.toml",
        target=server.sip,
        http=f"127.0.0.1:{server.http_port}",
    )
    result = run_load(plan, workers=1, token=OPERATOR_TOKEN, max_seconds=45)
    assert result.stopped == "done"
    assert result.service["agree"] is True, result.service
    assert not [c for c in result.calls if c["outcome"] == "failed"]
    cmp = compare(result, replications=30)
    assert all(r["replication_0_inside"] for r in cmp["figures"]), cmp["figures"]
    outside = [(r["name"], r["live"], r["interval"], r.get("why")) for r in cmp["figures"]
               if not r["inside"]]  # fmt: skip
    assert not outside, outside
    assert cmp["evidence"]["model_gaps"] == []


class BlackHole:
    """A misbehaving service on 127.0.0.1: it accepts REGISTERs (200, no challenge) and
    answers nothing else, so every call it is sent hangs at its INVITE."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.invites = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            if text.startswith("INVITE "):
                self.invites += 1
            if not text.startswith("REGISTER "):
                continue
            keep = [
                line
                for line in text.split("\r\n")
                if line.split(":", 1)[0].strip().lower()
                in ("via", "from", "to", "call-id", "cseq", "contact")
            ]
            keep = [f"{h};tag=bh" if h.lower().startswith("to:") else h for h in keep]
            reply = "\r\n".join(["SIP/2.0 200 OK", *keep, "Expires: 3600",
                                   "Content-Length: 0", "", ""])  # fmt: skip
            self.sock.sendto(reply.encode(), addr)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    bh = BlackHole()
    try:
        yield bh
    finally:
        bh.close()


def test_the_time_limit_ends_a_run_the_service_never_answers(
    black_hole: BlackHole, tmp_path: Path
) -> None:
    """Against a service that never answers an INVITE, ``--max-seconds`` still ends the run
    on time, with a report of every call placed (unfinished) and exit code 1."""
    _files(tmp_path, SMALL, seconds=60.0, seed=23)
    began = time.monotonic()
    proc = subprocess.run(
        _load_command(tmp_path, "--target", f"127.0.0.1:{black_hole.port}", "--quiet",
                      "--workers", "1", "--max-seconds", "10"),
        env=_env(None), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    took = time.monotonic() - began
    doc = json.loads((tmp_path / "load.json").read_text())
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert doc["stopped"] == "time limit"
    assert doc["total_seconds"] <= 11.0, doc["total_seconds"]
    assert took < 25.0, took  # start-up (imports, processes) included
    calls = doc["calls"]
    assert calls["placed"] > 0 and black_hole.invites >= calls["placed"]
    assert calls["reported"] == calls["placed"], calls
    assert calls["outcomes"] == {"unfinished": calls["placed"]}, calls


def test_ctrl_c_stops_the_run_with_a_report(black_hole: BlackHole, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops the run within
    seconds: every caller hangs up, the report of what it had is written, exit code 130."""
    _files(tmp_path, SMALL, seconds=60.0, seed=23)
    proc = subprocess.Popen(
        _load_command(tmp_path, "--target", f"127.0.0.1:{black_hole.port}", "--workers", "1"),
        env=_env(None), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the progress line: calls are being placed
            if "hotline load: placed" in line:
                break
        deadline = time.monotonic() + 20
        while black_hole.invites < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        interrupted = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert took < 10.0, took
    assert "Traceback" not in err, err[-3000:]
    doc = json.loads((tmp_path / "load.json").read_text())
    assert doc["stopped"] == "interrupted"
    assert doc["calls"]["placed"] >= 3
    assert doc["calls"]["reported"] == doc["calls"]["placed"]
    assert "interrupted" in out


def test_the_sim_contract_names_every_simulator_module() -> None:
    """pyproject's "sim" contract lists sim's modules one by one (all but sim.load, which has
    its own): a new module must be added there."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    listed = set(next(c for c in contracts if c["id"] == "sim")["source_modules"])
    modules = {f"sim.{p.stem}" for p in (ROOT / "sim").glob("*.py") if p.stem != "__init__"}
    assert modules == listed
