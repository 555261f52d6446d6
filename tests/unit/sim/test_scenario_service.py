"""``hotline sim run`` takes the configuration the service runs: its queues and agents, with
the callers to simulate from a workload file; without one it says what to add."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from acd.config import ConfigError
from hotline.config import load_config
from sim.run import simulate
from sim.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "hotline" / "demo.toml"
FIXTURES = ROOT / "tests" / "fixtures" / "config"

WORKLOAD = """
[simulation]
duration_hours = 1
replications = 2
seed = 7

[[arrivals]]
queue = "sales"
rate_per_hour = 30
handle_time = { distribution = "exponential", mean_seconds = 120 }
"""


def test_service_config_without_workload_says_what_to_add() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(DEMO)
    assert "--workload" in str(info.value) and "[[arrivals]]" in str(info.value)
    proc = subprocess.run(
        [sys.executable, "-m", "hotline.cli", "sim", "run", str(DEMO), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--workload" in proc.stderr and "unknown key" not in proc.stderr


def test_service_config_runs_with_a_workload(tmp_path: Path) -> None:
    workload = tmp_path / "calls.toml"
    workload.write_text(WORKLOAD)
    sc = load_scenario(DEMO, workload=workload)
    assert sc.acd == load_config(DEMO).acd  # the routing the service runs, unchanged
    assert sorted(a for g in sc.groups for a in g.agent_ids()) == ["alice", "bob", "carol", "dave"]
    result = simulate(sc)
    assert result.figures["all"]["offered"].mean > 0


def test_sim_run_command_with_workload(tmp_path: Path) -> None:
    workload = tmp_path / "calls.toml"
    workload.write_text(WORKLOAD)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotline.cli",
            "sim",
            "run",
            str(DEMO),
            "--workload",
            str(workload),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "queue sales" in proc.stdout


def test_workload_mistakes_name_the_workload_file_and_line(tmp_path: Path) -> None:
    workload = tmp_path / "calls.toml"
    workload.write_text(WORKLOAD.replace("rate_per_hour = 30", "rate_per_hour = -30"))
    with pytest.raises(ConfigError) as info:
        load_scenario(DEMO, workload=workload)
    assert str(info.value).startswith(f"{workload}:9: arrivals[0].rate_per_hour: expected a")


def test_scenario_file_mistakes_are_all_reported_at_their_lines() -> None:
    path = FIXTURES / "scenario_mistakes.toml"
    want = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if "# expect: " in line:
            want.append((n, line.split("# expect: ")[1].strip()))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert [(i.line, i.path) for i in info.value.issues] == want
