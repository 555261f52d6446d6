"""The command line: ``sim run|compare`` and ``erlang c|a|staff`` in the exact forms users type."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest

from sim.cli import ProgressBar, add_commands, main

EXAMPLES = Path(__file__).parents[3] / "examples" / "scenarios"

_SMALL = """
[simulation]
duration_hours = 1
warmup_hours = 0.25
replications = 3
seed = 5
service_level_seconds = 20
interval_minutes = 15

[[queues]]
name = "sales"
strategy = "{strategy}"

[[agent_groups]]
name = "g"
count = 4
queues = ["sales"]

[[arrivals]]
name = "callers"
queue = "sales"
rate_per_hour = {rate}
handle_time = {{ distribution = "exponential", mean_seconds = {aht} }}
patience = {{ distribution = "exponential", mean_seconds = 120 }}
"""


def _small(strategy: str, *, rate: float = 60, aht: float = 180) -> str:
    return _SMALL.format(strategy=strategy, rate=rate, aht=aht)


@pytest.fixture
def scenarios(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text(_small("longest-idle"), encoding="utf-8")
    b.write_text(_small("random"), encoding="utf-8")
    return a, b


def test_add_commands_registers_on_a_foreign_parser() -> None:
    parser = argparse.ArgumentParser(prog="hotline")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(["erlang", "c", "--rate", "200", "--aht", "180", "--agents", "14"])
    assert callable(args.func)
    args = parser.parse_args(["sim", "run", "x.toml", "--replications", "3", "--seed", "4"])
    assert args.replications == 3 and args.seed == 4 and callable(args.func)


def test_erlang_c_text(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["erlang", "c", "--rate", "200", "--aht", "180", "--agents", "14", "--target", "20"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "17.41 %" in out and "88.84 %" in out and "7.84 s" in out


def test_erlang_a_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "erlang",
            "a",
            "--rate",
            "200",
            "--aht",
            "180",
            "--agents",
            "14",
            "--patience",
            "300",
            "--target",
            "20",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["model"] == "A"
    assert doc["abandon_prob"] == pytest.approx(0.013984, abs=1e-6)
    assert doc["service_level"] == pytest.approx(0.916792, abs=1e-6)


def test_erlang_staff(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "erlang",
            "staff",
            "--rate",
            "200",
            "--aht",
            "180",
            "--target",
            "20",
            "--service-level",
            "0.8",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["agents"] == 14
    code = main(["erlang", "staff", "--rate", "200", "--aht", "180", "--shrinkage", "0.3"])
    out = capsys.readouterr().out
    assert code == 0 and "agents needed: 14" in out and "schedule" in out and "20" in out


def test_erlang_unstable_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["erlang", "c", "--rate", "400", "--aht", "180", "--agents", "20"]) == 0
    assert "unstable" in capsys.readouterr().out
    assert main(["erlang", "c", "--rate", "0", "--aht", "180", "--agents", "20"]) == 2
    assert "--rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["erlang", "a", "--rate", "10", "--aht", "180", "--agents", "2"])  # no --patience


def test_sim_run_json_and_plot(
    scenarios: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "out.json"
    out_png = tmp_path / "out.png"
    code = main(
        [
            "sim",
            "run",
            str(scenarios[0]),
            "--replications",
            "2",
            "--seed",
            "9",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    text = capsys.readouterr()
    assert code == 0
    assert "service_level" in text.out and "Little's law holds" in text.out
    assert text.err == ""  # no progress bar off a tty for a short run
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["replications"] == 2 and doc["seed"] == 9
    sl = doc["figures"]["queues"]["sales"]["service_level"]
    assert 0.0 <= sl["ci95"][0] <= sl["mean"] <= sl["ci95"][1] <= 1.0
    for name in ("offered", "answered", "abandoned", "prob_wait", "asa_seconds", "abandon_rate",
                 "occupancy", "occupancy_spread"):  # fmt: skip
        assert name in doc["figures"]["all"]
    assert len(doc["figures"]["intervals"]) == 4  # 1 h measured after warm-up, 15 min each
    assert doc["checks"]["flow_balance"] and doc["checks"]["little_law_holds"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sim_compare(
    scenarios: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "cmp.json"
    out_png = tmp_path / "cmp.png"
    code = main(
        [
            "sim",
            "compare",
            str(scenarios[0]),
            str(scenarios[1]),
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "paired" in text and "the same callers through every scenario" in text
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    names = doc["scenarios"]
    assert len(names) == 2 and names[0] != names[1]  # same file stem "a"/"b"
    diff = doc["differences"][names[1]]["all"]["offered"]
    assert diff["mean"] == 0.0  # the same callers through both
    assert out_png.exists()


def test_sim_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_small("fastest"), encoding="utf-8")
    assert main(["sim", "run", str(bad)]) == 2
    assert "queues[0].strategy: unknown strategy 'fastest'" in capsys.readouterr().err
    assert main(["sim", "compare", str(bad)]) == 2


def test_example_runs_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "run", str(EXAMPLES / "single_queue.toml"), "--replications", "2"])
    assert code == 0
    assert "queue sales" in capsys.readouterr().out


def test_erlang_staff_max_abandon_needs_patience(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["erlang", "staff", "--rate", "200", "--aht", "180", "--max-abandon", "0.05"]
    assert main(base) == 2
    captured = capsys.readouterr()
    assert "--max-abandon needs --patience" in captured.err and captured.out == ""
    assert main([*base, "--patience", "120"]) == 0
    out = capsys.readouterr().out
    assert "Erlang A" in out and "abandonment <= 5 %" in out


@pytest.mark.parametrize("option", ["--plot", "--json"])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_unwritable_output_fails_before_the_run(
    option: str,
    command: str,
    scenarios: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = [str(scenarios[0])] if command == "run" else [str(s) for s in scenarios]
    bad = tmp_path / "missing" / "out.file"
    code = main(["sim", command, *files, "--replications", "50", option, str(bad)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == (
        f"hotline sim {command}: {option} {bad}: directory {bad.parent} does not exist"
    )
    assert captured.out == ""  # refused before simulating anything
    assert main(["sim", command, *files, option, str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_plot_without_matplotlib_fails_at_once(
    scenarios: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    code = main(["sim", "run", str(scenarios[0]), "--plot", str(tmp_path / "out.png")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "hotline[plots]" in captured.err and "matplotlib" in captured.err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("rate", "aht", "aspect"), [(90, 180, "arrivals"), (60, 240, "handle times")]
)
def test_compare_says_when_the_workloads_differ(
    rate: float,
    aht: float,
    aspect: str,
    scenarios: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "busier.toml"
    other.write_text(_small("random", rate=rate, aht=aht), encoding="utf-8")
    out_json = tmp_path / "cmp.json"
    code = main(
        ["sim", "compare", str(scenarios[0]), str(other), "--replications", "2", "--json",
         str(out_json)]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "the same callers" not in text
    assert "the workloads differ" in text and f"busier: {aspect}" in text
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["same_callers"] is False
    assert doc["workload_differences"] == {"busier": [aspect]}


def test_progress_redrawn_on_a_tty_and_a_line_per_step_off_it() -> None:
    tty = io.StringIO()
    bar = ProgressBar("day", tty, tty=True)
    for done in (1, 2, 3):
        bar(done, 3)
    drawn = tty.getvalue()
    assert "\r" in drawn and "day" in drawn and "3/3" in drawn
    assert drawn.count("\n") <= 1  # redrawn in place, not a line per step

    log = io.StringIO()
    bar = ProgressBar("day", log, tty=False)
    for done in (1, 2, 3):
        bar(done, 3)
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "day: 1/3 replications",
        "day: 2/3 replications",
        "day: 3/3 replications",
    ]
