"""SIP calls per second that ``hotline serve`` holds, for the echo test and the hotline number.

    python -m bench.sip_cps [--targets echo,hotline] [--duration 10] [--start-rate 200]
                            [--max-rate 4000] [--max-steps 6] [--p99-target-ms 200]
                            [--budget 180]

SIPp's built-in ``uac`` scenario (INVITE with SDP, 200, ACK, BYE, 200) calls ``hotline serve``
(demo configuration) at one rate per step, ``duration`` seconds per step, dialling the echo
test (``*43``) and the hotline number (``1000``: the whole IVR path, with a case record per
call). A rate is *held* only when every call succeeded, the achieved rate (successful calls
over SIPp's elapsed time) is within 2 % of the offered one, and p99 INVITE-to-200 (SIPp's
``-trace_rtt``) is under ``--p99-target-ms``. Each number is searched for its highest held
rate: the rate doubles from ``--start-rate`` until a step is not held, then bisects between
the highest held and the lowest not held, at most ``--max-steps`` steps per number and within
``--budget`` seconds overall (half each).

Per step it reports the service's CPU per call (utime + stime from /proc of ``hotline serve``
and its media child, read before and after the step) beside SIPp's own CPU per call in the same
step: the load generator does the mirror image of the SIP work, so it is the baseline. The
service is pinned to CPU 0 and SIPp to CPU 1 (``taskset``) on a machine with 2 cores or more.

It prints a table, then one JSON line with the figures. All traffic is on 127.0.0.1; every step
is bounded by a call count and a timeout, and the search by a step count and a time budget.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.interop.harness import Server, free_port, start_server

NUMBERS = {"echo": "*43", "hotline": "1000"}
"""Target name -> the number SIPp dials on the demo configuration."""

ACHIEVED_SHARE = 0.98
"""A held rate achieves at least this share of the offered rate."""


@dataclass(frozen=True, slots=True)
class Step:
    """One rate offered to one number."""

    target: str
    rate: int
    calls: int
    successful: int
    failed: int
    failures: dict[str, int]
    """SIPp's reasons (FailedUnexpectedMessage(C): e.g. a 503; FailedMaxUDPRetrans(C): no
    answer...) and ``unfinished``: calls still open when the step ended."""
    retransmissions: int
    achieved_cps: float
    p50_ms: float | None
    p99_ms: float | None
    service_cpu_ms_per_call: float | None
    sipp_cpu_ms_per_call: float | None
    seconds: float
    held: bool
    why_not: str


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _family(pid: int) -> list[int]:
    """pid and all its descendants (the service and its media process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def _family_cpu(pid: int) -> dict[int, float]:
    return {p: cpu for p in _family(pid) if (cpu := _proc_cpu_seconds(p)) is not None}


def _children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _taskset(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def _pin(pid: int, cpu: int) -> None:
    if _taskset(cpu):
        for p in _family(pid):
            subprocess.run(["taskset", "-a", "-pc", str(cpu), str(p)], capture_output=True)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def why_not_held(
    step_failed: int, rate: int, achieved: float, p99: float | None, p99_target: float
) -> str:
    """Why a step does not hold its rate, every reason ("" when it does)."""
    reasons = []
    if step_failed:
        reasons.append(f"{step_failed} calls failed")
    if achieved < ACHIEVED_SHARE * rate:
        reasons.append(f"achieved {achieved:g} < {ACHIEVED_SHARE * rate:g}")
    if p99 is None:
        reasons.append("no INVITE-to-200 time measured")
    elif p99 >= p99_target:
        reasons.append(f"p99 {p99:g} ms >= {p99_target:g} ms")
    return "; ".join(reasons)


def run_step(
    server: Server, target: str, rate: int, duration: float, work: Path, p99_target: float
) -> Step:
    calls = max(1, int(rate * duration))
    port = free_port()
    run_dir = work / f"{target}-{rate}-{port}"
    run_dir.mkdir(parents=True)
    timeout = int(duration * 1.5 + 5)
    cmd = [
        *_taskset(1),
        "sipp",
        server.sip,
        "-sn",
        "uac",
        "-s",
        NUMBERS[target],
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
    service0 = _family_cpu(server.proc.pid)
    sipp0 = _children_cpu_seconds()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # SIPp's -timeout only starts a graceful quit that can take half a minute more
        proc.wait(timeout=timeout + 3)
    except subprocess.TimeoutExpired:
        proc.kill()  # the per-second statistics rows already hold the cumulative counts
        proc.wait()
    wall = time.monotonic() - t0
    sipp_cpu = _children_cpu_seconds() - sipp0
    service1 = _family_cpu(server.proc.pid)
    service_cpu = sum(cpu - service0.get(p, 0.0) for p, cpu in service1.items())

    stats: dict[str, str] = {}
    stats_file = run_dir / "stats.csv"
    if stats_file.exists():
        with stats_file.open() as f:
            rows = list(csv.reader(f, delimiter=";"))
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
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

    def epoch(key: str) -> float | None:
        parts = stats.get(key, "").split()
        try:
            return float(parts[-1])
        except (IndexError, ValueError):
            return None

    ok = num("SuccessfulCall(C)")
    start, end = epoch("StartTime"), epoch("CurrentTime")
    elapsed = end - start if start is not None and end is not None and end > start else wall
    achieved = round(ok / elapsed, 1)
    failed = calls - ok
    p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
    reasons = {
        k.removeprefix("Failed").removesuffix("(C)"): num(k)
        for k in stats
        if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and num(k)
    }
    if failed > num("FailedCall(C)"):
        reasons["unfinished"] = failed - num("FailedCall(C)")
    why_not = why_not_held(failed, rate, achieved, p99, p99_target)
    if failed:
        why_not += " (failed: " + ", ".join(f"{k} {v}" for k, v in reasons.items()) + ")"
    sipp_busy = round(100 * sipp_cpu / wall) if wall else 0
    if why_not and sipp_busy >= 90:
        why_not += f" (SIPp itself at {sipp_busy} % CPU: the load generator's limit)"
    return Step(
        target=target,
        rate=rate,
        calls=calls,
        successful=ok,
        failed=failed,
        failures=reasons,
        retransmissions=num("Retransmissions(C)"),
        achieved_cps=achieved,
        p50_ms=p50,
        p99_ms=p99,
        service_cpu_ms_per_call=round(1000 * service_cpu / ok, 3) if ok else None,
        sipp_cpu_ms_per_call=round(1000 * sipp_cpu / ok, 3) if ok else None,
        seconds=round(wall, 1),
        held=not why_not,
        why_not=why_not,
    )


def next_rate(
    held_rates: list[int], failed_rates: list[int], *, max_rate: int, min_gap: float = 0.1
) -> int | None:
    """The next rate to try: double until a rate is not held, then bisect; None when done."""
    lo = max(held_rates, default=None)
    hi = min((r for r in failed_rates if lo is None or r > lo), default=None)
    if hi is None:
        if lo is None or lo >= max_rate:
            return None
        return min(lo * 2, max_rate)
    if lo is None:
        nxt = hi // 2
        return nxt if nxt >= 10 else None
    if hi - lo <= max(10, min_gap * lo):
        return None
    mid = (lo + hi) // 2
    return max(lo + 1, round(mid, -1) if mid >= 100 else mid)


def search(
    measure: Callable[[int], Step],
    *,
    start_rate: int,
    max_rate: int,
    max_steps: int,
    deadline: float,
    step_seconds: float,
) -> list[Step]:
    """Bounded search for the highest held rate: at most max_steps steps, none started unless
    it can finish (step_seconds, a worst case) before the deadline."""
    steps: list[Step] = []
    rate: int | None = min(start_rate, max_rate)
    while rate is not None and len(steps) < max_steps:
        if time.monotonic() + step_seconds > deadline:
            break
        steps.append(measure(rate))
        rate = next_rate(
            [s.rate for s in steps if s.held],
            [s.rate for s in steps if not s.held],
            max_rate=max_rate,
        )
    return steps


def _settle(server: Server, timeout: float = 30.0) -> None:
    """Wait (bounded) until the service has no call left, then a second more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if server.api("/api/debug/sip")["active_calls"] == 0:
                break
        time.sleep(0.25)
    time.sleep(1.0)


_COLUMNS = (
    ("number", 8),
    ("offered", 8),
    ("calls", 7),
    ("failed", 7),
    ("retrans", 8),
    ("achieved", 9),
    ("p50 ms", 7),
    ("p99 ms", 7),
    ("svc ms/call", 12),
    ("sipp ms/call", 13),
    ("held", 0),
)


def _row(values: list[str]) -> str:
    return " ".join(f"{v:>{w}}" if w else v for v, (_, w) in zip(values, _COLUMNS, strict=True))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _step_row(s: Step) -> str:
    return _row(
        [
            NUMBERS[s.target],
            str(s.rate),
            str(s.calls),
            str(s.failed),
            str(s.retransmissions),
            f"{s.achieved_cps:g}",
            _fmt(s.p50_ms),
            _fmt(s.p99_ms),
            _fmt(s.service_cpu_ms_per_call),
            _fmt(s.sipp_cpu_ms_per_call),
            "yes" if s.held else f"no: {s.why_not}",
        ]
    )


def summarize(target: str, steps: list[Step]) -> dict[str, Any]:
    best = max((s for s in steps if s.held), key=lambda s: s.rate, default=None)
    lowest_not = min(
        (s.rate for s in steps if not s.held and (best is None or s.rate > best.rate)),
        default=None,
    )
    ratio = None
    if best and best.service_cpu_ms_per_call and best.sipp_cpu_ms_per_call:
        ratio = round(best.service_cpu_ms_per_call / best.sipp_cpu_ms_per_call, 1)
    return {
        "number": NUMBERS[target],
        "held_cps": best.rate if best else 0,
        "not_held_cps": lowest_not,
        "p50_ms": best.p50_ms if best else None,
        "p99_ms": best.p99_ms if best else None,
        "service_cpu_ms_per_call": best.service_cpu_ms_per_call if best else None,
        "sipp_cpu_ms_per_call": best.sipp_cpu_ms_per_call if best else None,
        "cpu_ratio_to_sipp": ratio,
        "steps": [{k: v for k, v in asdict(s).items() if k not in ("target",)} for s in steps],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--targets", default="echo,hotline", help="comma-separated: echo (*43), hotline (1000)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step (10)")
    parser.add_argument("--start-rate", type=int, default=200, help="first rate, calls/s (200)")
    parser.add_argument("--max-rate", type=int, default=4000, help="highest rate tried (4000)")
    parser.add_argument("--max-steps", type=int, default=6, help="steps per number (6)")
    parser.add_argument(
        "--p99-target-ms", type=float, default=200.0, help="p99 INVITE-to-200 bound (200 ms)"
    )
    parser.add_argument(
        "--budget", type=float, default=180.0, help="seconds for the whole search (180)"
    )
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in NUMBERS]
    if unknown or not targets:
        parser.error(f"--targets: expected some of {', '.join(NUMBERS)}, got {args.targets!r}")
    if min(args.duration, args.start_rate, args.max_rate, args.max_steps, args.budget) <= 0:
        parser.error("--duration, --start-rate, --max-rate, --max-steps, --budget must be > 0")
    if shutil.which("sipp") is None:
        print(
            "sipp is not installed (Debian package sip-tester): run scripts/bootstrap --test",
            file=sys.stderr,
        )
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-sip-cps-"))
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        server = start_server(work)
    except RuntimeError as exc:
        tail = "\n".join(str(exc).splitlines()[-5:])
        print(f"bench.sip_cps: hotline serve did not start:\n{tail}", file=sys.stderr)
        return 1
    results: dict[str, list[Step]] = {}
    step_worst = args.duration * 1.5 + 5 + 3 + 3  # SIPp timeout and kill, settling
    print(
        f"hotline serve pid {server.proc.pid} on {server.sip}; {args.duration:g} s per step; "
        f"held = no failed call, achieved >= {ACHIEVED_SHARE:.0%} of offered, "
        f"p99 < {args.p99_target_ms:g} ms",
        flush=True,
    )
    print(_row([name for name, _ in _COLUMNS]), flush=True)
    try:
        _pin(server.proc.pid, 0)
        for k, target in enumerate(targets):
            deadline = started + args.budget * (k + 1) / len(targets)

            def measure(rate: int, target: str = target) -> Step:
                step = run_step(server, target, rate, args.duration, work, args.p99_target_ms)
                print(_step_row(step), flush=True)
                _settle(server)
                return step

            results[target] = search(
                measure,
                start_rate=args.start_rate,
                max_rate=args.max_rate,
                max_steps=args.max_steps,
                deadline=deadline,
                step_seconds=step_worst,
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    summary: dict[str, Any] = {
        "bench": "sip_cps",
        "duration_s": args.duration,
        "p99_target_ms": args.p99_target_ms,
        "achieved_share": ACHIEVED_SHARE,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(load_after[0], 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    print()
    print(f"{'number':>8} {'held cps':>9} {'p50 ms':>7} {'p99 ms':>7} {'svc ms/call':>12} "
          f"{'sipp ms/call':>13} {'svc/sipp':>9}")  # fmt: skip
    for target, steps in results.items():
        s = summarize(target, steps)
        summary[target] = s
        print(
            f"{s['number']:>8} {s['held_cps']:>9} {_fmt(s['p50_ms']):>7} {_fmt(s['p99_ms']):>7} "
            f"{_fmt(s['service_cpu_ms_per_call']):>12} {_fmt(s['sipp_cpu_ms_per_call']):>13} "
            f"{_fmt(s['cpu_ratio_to_sipp']):>9}"
        )
    print(
        f"load average (1 min) {summary['loadavg_1m_before']} before, "
        f"{summary['loadavg_1m_after']} after, on {os.cpu_count()} CPUs; "
        f"{summary['seconds']:g} s in all"
    )
    print(json.dumps(summary, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
