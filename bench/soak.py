"""Issue 11's soak: ``hotline serve`` under steady calls through the IVR and the queues.

    python -m bench.soak [--minutes 10] [--rate R] [--sample-seconds 5] [--tracemalloc]

Starts ``hotline serve`` as ``bench.load`` does (the demo's entry points, IVR and queues, 240
agents, the service pinned to CPU 0 and the generator to CPU 1) and drives it with
``hotline load`` (the same callers as ``bench.load``'s call-rate search: keys through the IVR
over 2 s in three ways, a 0.3 s mean ring, 1 s mean talk, RTP both ways) at ``--rate`` calls/s
for ``--minutes``: by default 80 % of the highest clean call rate ``bench.load`` measured
(:data:`CLEAN_RATE`, docs/benchmarks.md). Every ``--sample-seconds`` it reads the resident set
size (``VmRSS``, /proc) of the service's process and of its media process.

It reports the calls (failed ones with their causes), the caller-heard RTP loss, whether the
generator's, the engine's and the case records' counts agree, and whether memory is flat after
warm-up: over the last two thirds of the run, the least-squares slope of each process's RSS
in kB/min and the growth it amounts to over that window, in % of the RSS where the window
begins (*flat*: under :data:`FLAT_GROWTH_PERCENT`). Ends with one JSON line. Everything on
127.0.0.1, bounded: the calls by the minutes, the run by ``hotline load``'s wall-clock cap.

``--tracemalloc`` (a diagnostic: tracing slows the service down a lot) starts the service with
``bench/tracemalloc_hook`` on its ``PYTHONPATH``: it and its media process take allocation
snapshots every sixth of the run and count the call sessions still alive after their call
ended; the report lists, per process, what grew from the first snapshot after warm-up to the
last (``HOTLINE_TRACEMALLOC_FRAMES=0``: the count only, no tracing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load as bench_load
from bench import sip_cps

CLEAN_RATE = 30.0
"""Highest call rate ``bench.load`` held with no failed call (docs/benchmarks.md)."""
SOAK_SHARE = 0.8
FLAT_GROWTH_PERCENT = 2.0
"""RSS growth over the last two thirds of the run below which memory counts as flat."""
CALL_FIELDS = ("planned", "placed", "reported", "lost", "outcomes", "failed", "failure_causes")
HOOK = Path(__file__).resolve().parent / "tracemalloc_hook"
HANDLE = '{ distribution = "exponential", mean_seconds = 1 }'


def rss_kb(pid: int) -> int | None:
    """``VmRSS`` of ``pid`` in kB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass(slots=True)
class Sampler:
    """RSS of the service and of its media process every ``every`` seconds, in a thread."""

    pid: int
    every: float
    t0: float = field(default_factory=time.monotonic)
    wall0: float = field(default_factory=time.time)
    samples: list[tuple[float, int | None, int | None]] = field(default_factory=list)
    """(seconds since start, service kB, media kB)."""
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.sample()
            if self.stop.wait(self.every):
                return

    def sample(self) -> None:
        media = [p for p in sip_cps._family(self.pid) if p != self.pid]
        media_kb = sum(kb for p in media if (kb := rss_kb(p)) is not None) if media else None
        self.samples.append((time.monotonic() - self.t0, rss_kb(self.pid), media_kb))

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.sample()

    def latest(self) -> tuple[int | None, int | None]:
        return self.samples[-1][1:] if self.samples else (None, None)


def trend(points: list[tuple[float, float]]) -> dict[str, Any]:
    """Least-squares line through ``(seconds, kB)``: slope in kB/min, the growth it amounts to
    over the span in % of the fitted start, first/last/max kB."""
    if len(points) < 3:
        return {"samples": len(points), "slope_kb_per_min": None, "growth_percent": None}
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    slope = sum((t - mx) * (v - my) for t, v in points) / sxx if sxx > 0 else 0.0
    span = points[-1][0] - points[0][0]
    start = my + slope * (points[0][0] - mx)
    return {
        "samples": n,
        "from_seconds": round(points[0][0], 1),
        "to_seconds": round(points[-1][0], 1),
        "first_kb": int(points[0][1]),
        "last_kb": int(points[-1][1]),
        "max_kb": int(max(v for _, v in points)),
        "slope_kb_per_min": round(slope * 60, 1),
        "growth_percent": round(100 * slope * span / start, 2) if start > 0 else None,
    }


def memory_verdict(
    samples: list[tuple[float, int | None, int | None]], begin: float, end: float
) -> dict[str, Any]:
    """Per process, the trend over the last two thirds of [begin, end] (the calls' time)."""
    warm = begin + (end - begin) / 3
    out: dict[str, Any] = {"window_seconds": [round(warm, 1), round(end, 1)]}
    flat = True
    for k, name in ((1, "service"), (2, "media")):
        pts = [(s[0], float(v)) for s in samples if warm <= s[0] <= end and (v := s[k]) is not None]
        whole = [s[k] for s in samples if s[k] is not None]
        t = trend(pts)
        t["start_kb"] = whole[0] if whole else None
        late = begin + 2 * (end - begin) / 3  # the last third alone: still growing at the end?
        last = trend([(s[0], float(v)) for s in samples if late <= s[0] <= end
                      and (v := s[k]) is not None])  # fmt: skip
        t["last_third_slope_kb_per_min"] = last["slope_kb_per_min"]
        t["last_third_growth_percent"] = last["growth_percent"]
        g = t["growth_percent"]
        t["flat"] = g is not None and g < FLAT_GROWTH_PERCENT
        flat = flat and bool(t["flat"])
        out[name] = t
    out["flat"] = flat
    return out


def allocations_grown(directory: Path, top: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Per traced process (``tracemalloc_hook``): what grew between its second snapshot (the
    first after warm-up) and its last, by allocation site (the 3 innermost frames, innermost
    first)."""
    import tracemalloc

    out: dict[str, list[dict[str, Any]]] = {}
    for argv in sorted(directory.glob("*.argv")):
        pid = argv.stem
        snaps = sorted(directory.glob(f"{pid}-*.snap"))
        if len(snaps) < 3:
            continue
        first = tracemalloc.Snapshot.load(str(snaps[1]))
        last = tracemalloc.Snapshot.load(str(snaps[-1]))
        name = "media" if "media_gateway.media.server" in argv.read_text() else "service"
        rows = []
        for d in last.compare_to(first, "traceback")[:top]:
            frames = [f"{f.filename.split('/site-packages/')[-1].split('/work/main/')[-1]}:"
                      f"{f.lineno}" for f in list(d.traceback)[::-1][:3]]  # fmt: skip
            rows.append({"size_diff_kb": round(d.size_diff / 1024, 1),
                         "count_diff": d.count_diff, "where": " < ".join(frames)})  # fmt: skip
        out[f"{name} ({pid}, {snaps[1].stem} -> {snaps[-1].stem})"] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="calls for this long (10)")
    parser.add_argument("--rate", type=float, default=SOAK_SHARE * CLEAN_RATE,
                        help=f"calls/s (default {SOAK_SHARE * 100:g} %% of {CLEAN_RATE:g}, "
                        "bench.load's highest clean rate)")  # fmt: skip
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS every (5 s)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true",
                        help="keep the service's data directory and logs (printed) to look "
                        "into failed calls' case trails")  # fmt: skip
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the service's and the media process's allocations and "
                        "report what grew (slow: a diagnostic)")  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.minutes, args.rate, args.sample_seconds) <= 0:
        parser.error("every figure must be > 0")
    from sim.load.report import live_figures
    from sim.load.runner import run_load
    from tests.interop.harness import OPERATOR_TOKEN

    seconds = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    env: dict[str, str] | None = None
    if args.tracemalloc:
        (work / "tracemalloc").mkdir()
        env = {
            "PYTHONPATH": os.pathsep.join([str(HOOK), os.environ.get("PYTHONPATH", "")]),
            "HOTLINE_TRACEMALLOC_DIR": str(work / "tracemalloc"),
            "HOTLINE_TRACEMALLOC_EVERY": str(max(10.0, seconds / 6)),
        }
    try:
        server, pinned = bench_load.start_service(work, env)
    except RuntimeError as exc:
        print(f"bench.soak: hotline serve did not start:\n{exc}"[-2000:], file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 1
    sampler = Sampler(server.proc.pid, args.sample_seconds)
    loads: list[float] = []
    try:
        sampler.start()
        plan = bench_load.make_plan(server, work / "soak", rate=args.rate, seconds=seconds,
                                    handle=HANDLE, seed=args.seed)  # fmt: skip
        print(f"hotline serve pid {server.proc.pid} on {server.sip}; {len(plan.callers)} calls "
              f"at {args.rate:g}/s for {args.minutes:g} min; RSS every "
              f"{args.sample_seconds:g} s", flush=True)  # fmt: skip
        last = [0.0]

        def progress(t: dict[str, int], final: int = 0) -> None:
            now = time.monotonic()
            if final or now - last[0] >= 30:
                last[0] = now
                svc, media = sampler.latest()
                loads.append(os.getloadavg()[0])
                print(f"{now - started:6.0f} s placed {t['placed']} done {t['done']} failed "
                      f"{t['failed']} in progress {t['ivr'] + t['waiting'] + t['talking']}; "
                      f"RSS service {svc} kB, media {media} kB; load {loads[-1]:.2f}",
                      flush=True)  # fmt: skip

        verify = max(30.0, len(plan.callers) / 150)  # reading every case's trail
        result = run_load(plan, token=OPERATOR_TOKEN, progress=progress,
                          max_seconds=plan.horizon + 60.0 + verify, verify_seconds=verify)  # fmt: skip
        calls_from = result.started_wall - sampler.wall0  # the agents registered by then
        calls_to = calls_from + result.elapsed
        sampler.finish()
        grown = allocations_grown(work / "tracemalloc") if args.tracemalloc else None
    finally:
        sampler.stop.set()
        server.stop()
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    figs = live_figures(result)
    memory = memory_verdict(sampler.samples, calls_from, calls_to)
    heard = figs["rtp_callers_heard"]
    summary: dict[str, Any] = {
        "bench": "soak",
        "date": date,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "pinned": pinned,
        "minutes": args.minutes,
        "rate": args.rate,
        "clean_rate": CLEAN_RATE,
        "calls": {k: figs["calls"][k] for k in CALL_FIELDS},
        "failed_calls": figs["calls"]["failed_calls"][:10],
        "failures_by_path": dict(
            Counter(
                f"{c.get('path')}: {c.get('cause')}"
                for c in result.calls
                if c["outcome"] == "failed"
            )
        ),
        "notes": figs["calls"]["notes"],
        "stopped": result.stopped,
        "loss": heard["loss"],
        "setup_p95_ms": bench_load._ms(figs["timings"]["setup_seconds"]["p95"]),
        "peak_concurrent": bench_load.peak_concurrent(result.calls),
        "agree": result.service.get("agree"),
        "agreement_errors": result.service.get("errors"),
        "rows_disagreeing": [r for r in result.service.get("rows", []) if not r["agree"]],
        "calls_disagreeing": result.service.get("mismatched_calls"),
        "service_idle_after": result.service.get("service_idle"),
        "cases_read": result.service.get("cases_read"),
        "memory": memory,
        "tracemalloc": grown,
        "rss_samples": len(sampler.samples),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_during_max": round(max(loads, default=0.0), 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    c = summary["calls"]
    print()
    print(f"calls: {c['placed']} placed of {c['planned']}, outcomes {c['outcomes']}, "
          f"{c['failed']} failed {c['failure_causes'] or ''}, lost {c['lost']}; "
          f"stopped: {result.stopped}; caller-heard loss {heard['loss']:.3%}; counts agree: "
          f"{summary['agree']}")  # fmt: skip
    for name in ("service", "media"):
        m = memory[name]
        print(f"RSS {name}: {m.get('start_kb')} kB at start, {m.get('first_kb')} -> "
              f"{m.get('last_kb')} kB over the last 2/3 (max {m.get('max_kb')}), slope "
              f"{m['slope_kb_per_min']} kB/min, growth {m['growth_percent']} % "
              f"({'flat' if m['flat'] else 'NOT flat'}); the last third alone "
              f"{m['last_third_slope_kb_per_min']} kB/min, {m['last_third_growth_percent']} %")  # fmt: skip
    for proc, top in (grown or {}).items():
        print(f"allocations grown in {proc} (tracemalloc, after warm-up to the end):")
        for row in top:
            print(f"  {row['size_diff_kb']:>+9.1f} kB {row['count_diff']:>+8} blocks  "
                  f"{row['where']}")  # fmt: skip
    print(f"load average (1 min) {summary['loadavg_1m_before']} before, max "
          f"{summary['loadavg_1m_during_max']} during, {summary['loadavg_1m_after']} after; "
          f"{summary['seconds']:g} s in all")  # fmt: skip
    print(json.dumps(summary, allow_nan=False, default=str))
    ok = c["failed"] == 0 and result.stopped == "done" and memory["flat"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
