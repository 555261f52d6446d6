"""SIP calls per second through ``hotline serve``, beside SIPp-against-SIPp in the same run.

    python -m bench.sip_cps [--rates 500,1000,1500,2000] [--duration 30] [--uvloop/--no-uvloop]

For each rate, SIPp's built-in ``uac`` scenario (INVITE, 200, ACK, BYE, 200) runs for
``duration`` seconds against (a) ``hotline serve`` on the demo configuration, dialling the
hotline number, and (b) SIPp's ``uas`` scenario: the ceiling on this machine. The server is
pinned to CPU 0 and the load generator to CPU 1 (``taskset``) when the machine has 2 cores.

Printed per rate and target: calls offered, successful, failed, SIPp retransmissions, achieved
calls/s, INVITE-to-200 latency p50/p99 (from SIPp's ``-trace_rtt``) and the server's CPU.
The last line is one JSON object with the highest rate held with no failed call for each target.
All traffic is on 127.0.0.1; every run is bounded by a call count and a timeout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.interop.harness import free_port, start_server


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _taskset(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def run_load(
    target: str, rate: int, duration: float, work: Path, server_pid: int
) -> dict[str, Any]:
    calls = int(rate * duration)
    port = free_port()
    run_dir = work / f"{target.replace(':', '_')}-{rate}-{port}"
    run_dir.mkdir(parents=True)
    timeout = int(duration + 40)
    cmd = [
        *_taskset(1),
        "sipp",
        target,
        "-sn",
        "uac",
        "-s",
        "1000",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-nostdin",
        "-timeout",
        f"{timeout}s",
        "-trace_stat",
        "-stf",
        "stats.csv",
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-max_socket",
        "1000",
    ]
    cpu0 = _cpu_seconds(server_pid)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, timeout=timeout + 30)
    wall = time.monotonic() - t0
    cpu = _cpu_seconds(server_pid) - cpu0
    with (run_dir / "stats.csv").open() as f:
        rows = list(csv.reader(f, delimiter=";"))
    stats = dict(zip(rows[0], rows[-1], strict=False)) if len(rows) >= 2 else {}
    latencies: list[float] = []
    for rtt in run_dir.glob("*_rtt.csv"):
        with rtt.open() as f:
            for row in csv.reader(f, delimiter=";"):
                if len(row) >= 2 and row[1] and row[1][0].isdigit():
                    latencies.append(float(row[1]))

    def num(key: str) -> int:
        try:
            return int(stats.get(key, "0") or 0)
        except ValueError:
            return 0

    ok = num("SuccessfulCall(C)")
    return {
        "rate": rate,
        "calls": calls,
        "successful": ok,
        "failed": num("FailedCall(C)") + (calls - ok - num("FailedCall(C)")),
        "retransmissions": num("Retransmissions(C)"),
        "achieved_cps": round(ok / wall, 1) if wall else 0.0,
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "server_cpu_pct": round(100 * cpu / wall, 1) if wall else 0.0,
        "sipp_rc": proc.returncode,
    }


def _start_sipp_uas(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *_taskset(0),
            "sipp",
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-nostdin",
            "-timeout",
            "3600s",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", default="250,500,1000,1500,2000", help="comma-separated calls/s to try, rising"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("sipp") is None:
        print(
            "sipp is not installed (Debian package sip-tester): run scripts/bootstrap --test",
            file=sys.stderr,
        )
        return 2
    rates = [int(r) for r in args.rates.split(",") if r]
    work = Path(tempfile.mkdtemp(prefix="bench-sip-cps-"))
    results: dict[str, list[dict[str, Any]]] = {"hotline": [], "sipp_uas": []}

    server = start_server(work)
    try:
        if _taskset(0):
            subprocess.run(
                ["taskset", "-pc", "0", str(server.proc.pid)], capture_output=True, check=False
            )
        for rate in rates:
            r = run_load(server.sip, rate, args.duration, work, server.proc.pid)
            results["hotline"].append(r)
            print(
                f"hotline   {rate:>5} cps: ok {r['successful']}/{r['calls']} failed {r['failed']} "
                f"retrans {r['retransmissions']} achieved {r['achieved_cps']} cps "
                f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms server CPU {r['server_cpu_pct']} %",
                flush=True,
            )
            server.wait_idle(timeout=60)
            if r["failed"]:
                break
    finally:
        server.stop()

    if not args.skip_baseline:
        uas, port = _start_sipp_uas(work)
        try:
            for rate in rates:
                r = run_load(f"127.0.0.1:{port}", rate, args.duration, work, uas.pid)
                results["sipp_uas"].append(r)
                print(
                    f"sipp uas  {rate:>5} cps: ok {r['successful']}/{r['calls']} failed "
                    f"{r['failed']} achieved {r['achieved_cps']} cps p50 {r['p50_ms']} ms "
                    f"p99 {r['p99_ms']} ms server CPU {r['server_cpu_pct']} %",
                    flush=True,
                )
                if r["failed"]:
                    break
        finally:
            uas.send_signal(signal.SIGTERM)
            try:
                uas.wait(timeout=10)
            except subprocess.TimeoutExpired:
                uas.kill()

    def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
        clean = [r for r in rows if r["failed"] == 0]
        return max(clean, key=lambda r: r["rate"]) if clean else {}

    h, b = best(results["hotline"]), best(results["sipp_uas"])
    summary = {
        "bench": "sip_cps",
        "duration_s": args.duration,
        "hotline_max_clean_cps": h.get("rate", 0),
        "hotline_p50_ms": h.get("p50_ms"),
        "hotline_p99_ms": h.get("p99_ms"),
        "hotline_server_cpu_pct": h.get("server_cpu_pct"),
        "baseline_sipp_uas_max_clean_cps": b.get("rate", 0),
        "baseline_p99_ms": b.get("p99_ms"),
        "ratio_to_baseline": round(h.get("rate", 0) / b["rate"], 3) if b.get("rate") else None,
        "runs": results,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
