"""Smoke test of ``bench.media``: it runs end to end and reports sane figures (no performance
assertion: the thresholds here only catch a broken benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

RUN_KEYS = {
    "mode",
    "calls",
    "media_cpu_pct",
    "baseline_cpu_pct",
    "cpu_ratio",
    "rss_per_call_kb",
    "loss_pct",
    "baseline_loss_pct",
    "jitter_p99_ms",
    "baseline_jitter_p99_ms",
    "added_jitter_p99_ms",
    "packets_sent",
    "ok",
}


@pytest.mark.slow
def test_bench_media_quick_runs_and_ends_with_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.media", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["bench"] == "media"
    assert summary.keys() >= {"driver", "seconds", "load_average", "target_met", "runs"}
    assert {r["mode"] for r in summary["runs"]} == {"echo", "bridge"}
    for run in summary["runs"]:
        assert run.keys() >= RUN_KEYS, run
        assert run["calls"] == 50
        assert run["packets_sent"] > 0
        assert run["loss_pct"] is not None and run["loss_pct"] < 5.0, run
        assert run["baseline_loss_pct"] is not None and run["baseline_loss_pct"] < 5.0, run
