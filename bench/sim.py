"""Simulator benchmark: hotline (the real ACD engine on the sim kernel) vs an equivalent SimPy model.

    python -m bench.sim [--calls 200000] [--repeat 3] [--profile] [--no-pure]

Two scenarios, each simulated by both in the same run on the *same callers* (identical arrival
instants, handle times and patience, drawn once by ``sim.workload``):

* ``single``: one queue, 50 agents, 900 calls/h, exponential handle (180 s) and patience (300 s);
* ``multi``: two queues with skills (English, French), English-only, French-only and bilingual
  agents, lognormal handle times, impatient callers.

The SimPy models are what one would write by hand: ``simpy.Resource`` (FCFS) for the single queue;
a ``FilterStore`` of idle agents (skill filter, longest-idle first) for the multi-skill one; a
caller process waits for ``get | timeout(patience)``. They report answered/abandoned counts so the
two can be checked against each other. Each model runs ``--repeat`` times, alternately, and its
best wall-clock time counts (the machine is shared: a burst of load hits both alike); CPU
(process) time is reported beside it. Prints simulated calls per second for both and the ratio,
then ONE JSON line with the figures.

hotline runs its routing core as installed: compiled with mypyc when ``scripts/bootstrap`` built it
(``hotline/native.py``), which is what the service and ``hotline sim`` run. Unless ``--no-pure``,
the same benchmark also runs in a child process on the pure-Python source
(``HOTLINE_PURE_PYTHON=1``), with its own SimPy baseline, and both are reported.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import simpy

from hotline import native_hook
from sim.distributions import Streams
from sim.model import run_replication
from sim.scenario import Scenario, scenario_from_dict, single_queue
from sim.stats import ABANDONED, ANSWERED
from sim.workload import Callers, draw_callers, expected_calls


def single_scenario() -> Scenario:
    return single_queue(
        rate_per_hour=900,
        aht_seconds=180,
        agents=50,
        patience_seconds=300,
        duration_hours=1.0,
        warmup_hours=0.0,
        replications=1,
        seed=123,
    )


def multi_scenario() -> Scenario:
    return scenario_from_dict(
        {
            "simulation": {"duration_hours": 1.0, "replications": 1, "seed": 321},
            "queues": [
                {"name": "en", "skills": {"en": 3}},
                {"name": "fr", "skills": {"fr": 3}},
            ],
            "agent_groups": [
                {"name": "en", "count": 30, "queues": ["en"], "skills": {"en": 6}},
                {"name": "fr", "count": 12, "queues": ["fr"], "skills": {"fr": 6}},
                {"name": "bi", "count": 10, "queues": ["en", "fr"], "skills": {"en": 6, "fr": 6}},
            ],
            "arrivals": [
                {
                    "queue": "en",
                    "rate_per_hour": 600,
                    "handle_time": {"distribution": "lognormal", "mean_seconds": 180, "cv": 0.8},
                    "patience": {"distribution": "exponential", "mean_seconds": 240},
                },
                {
                    "queue": "fr",
                    "rate_per_hour": 330,
                    "handle_time": {"distribution": "lognormal", "mean_seconds": 180, "cv": 0.8},
                    "patience": {"distribution": "exponential", "mean_seconds": 240},
                },
            ],
        },
        name="multi",
    )


def sized(sc: Scenario, calls: int) -> Scenario:
    """Stretch the scenario's duration so it offers about ``calls`` callers."""
    per_hour = expected_calls(sc) / sc.simulation.horizon * 3600.0
    hours = calls / per_hour
    return replace(
        sc, simulation=replace(sc.simulation, duration_hours=hours, warmup_hours=0.0, drain=True)
    )


# --- SimPy models -------------------------------------------------------------------------------


def simpy_single(callers: Callers, agents: int) -> dict[str, int]:
    env = simpy.Environment()
    staff = simpy.Resource(env, capacity=agents)
    counts = {"answered": 0, "abandoned": 0}

    def caller(handle: float, patience: float) -> Any:
        req = staff.request()
        res = yield req | env.timeout(patience)
        if req in res:
            counts["answered"] += 1
            yield env.timeout(handle)
            staff.release(req)
        else:
            req.cancel()
            counts["abandoned"] += 1

    def source() -> Any:
        for t, h, p in zip(
            callers.entry.tolist(), callers.handle.tolist(), callers.patience.tolist(), strict=True
        ):
            if t > env.now:
                yield env.timeout(t - env.now)
            env.process(caller(h, p))

    env.process(source())
    env.run()
    return counts


def simpy_multi(callers: Callers, sc: Scenario) -> dict[str, int]:
    env = simpy.Environment()
    idle = simpy.FilterStore(env)
    for g in sc.groups:
        skills = frozenset(g.agent.get("skills", {}))
        for aid in g.agent_ids():
            idle.items.append((aid, skills))
    counts = {"answered": 0, "abandoned": 0}

    def caller(skill: str, handle: float, patience: float) -> Any:
        get = idle.get(lambda a: skill in a[1])
        res = yield get | env.timeout(patience)
        if get in res:
            counts["answered"] += 1
            agent = res[get]
            yield env.timeout(handle)
            yield idle.put(agent)  # back at the end: longest idle is served first
        else:
            get.cancel()
            counts["abandoned"] += 1

    def source() -> Any:
        for t, q, h, p in zip(
            callers.entry.tolist(),
            callers.queue,
            callers.handle.tolist(),
            callers.patience.tolist(),
            strict=True,
        ):
            if t > env.now:
                yield env.timeout(t - env.now)
            env.process(caller(q, h, p))

    env.process(source())
    env.run()
    return counts


# --- runs ---------------------------------------------------------------------------------------


def _timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    """``fn(*args)`` with its wall-clock and CPU (process) seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_one(name: str, sc: Scenario, calls: int, profile: bool, repeat: int) -> dict[str, Any]:
    """Hotline and SimPy on the same callers, alternately ``repeat`` times; the best (lowest)
    time of each counts, so a burst of load from other processes hits both alike."""
    sc = sized(sc, calls)
    callers = draw_callers(sc, Streams(sc.simulation.seed, 0))
    n = len(callers)

    def simpy_run() -> dict[str, int]:
        if name == "single":
            return simpy_single(callers, sc.groups[0].count)
        return simpy_multi(callers, sc)

    if profile:
        prof = cProfile.Profile()
        prof.runcall(run_replication, sc, 0)
        print(f"--- cProfile, hotline, {name} (top 20 by own time) ---", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    hotline_s = hotline_cpu = simpy_s = simpy_cpu = math.inf
    for _ in range(max(1, repeat)):
        run, wall, cpu = _timed(run_replication, sc, 0)
        hotline_s, hotline_cpu = min(hotline_s, wall), min(hotline_cpu, cpu)
        del run
        counts, wall, cpu = _timed(simpy_run)
        simpy_s, simpy_cpu = min(simpy_s, wall), min(simpy_cpu, cpu)
    run = run_replication(sc, 0)

    answered = int((run.outcome == ANSWERED).sum())
    abandoned = int((run.outcome == ABANDONED).sum())
    return {
        "scenario": name,
        "calls": n,
        "hotline_seconds": round(hotline_s, 3),
        "simpy_seconds": round(simpy_s, 3),
        "hotline_cpu_seconds": round(hotline_cpu, 3),
        "simpy_cpu_seconds": round(simpy_cpu, 3),
        "hotline_calls_per_second": round(n / hotline_s),
        "simpy_calls_per_second": round(n / simpy_s),
        "ratio": round(simpy_s / hotline_s, 3),
        "cpu_ratio": round(simpy_cpu / hotline_cpu, 3),
        "hotline_abandon_rate": round(abandoned / n, 4),
        "simpy_abandon_rate": round(counts["abandoned"] / n, 4),
        "hotline_answered": answered,
        "simpy_answered": counts["answered"],
    }


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(title)
    print(
        f"{'scenario':<8} {'calls':>9} {'hotline calls/s':>16} {'simpy calls/s':>14} {'ratio':>6}"
        f" {'cpu ratio':>9}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<8} {r['calls']:>9} {r['hotline_calls_per_second']:>16} "
            f"{r['simpy_calls_per_second']:>14} {r['ratio']:>6.2f} {r['cpu_ratio']:>9.2f}"
        )
        print(
            f"         abandon rate: hotline {r['hotline_abandon_rate']:.4f}, "
            f"simpy {r['simpy_abandon_rate']:.4f}"
        )


def _pure_run(args: argparse.Namespace) -> dict[str, Any]:
    """The same benchmark in a child process on the pure-Python routing core."""
    env = dict(os.environ, **{native_hook.PURE_ENV: "1"})
    cmd = [sys.executable, "-m", "bench.sim", "--no-pure"]
    cmd += ["--calls", str(args.calls), "--repeat", str(args.repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=3600)
    summary: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if summary.get("routing_core") != "pure":
        raise RuntimeError("the child process did not run the pure-Python routing core")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000, help="callers per scenario")
    parser.add_argument("--profile", action="store_true", help="cProfile the hotline runs")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each model, alternately; the best counts"
    )
    parser.add_argument(
        "--no-pure",
        action="store_true",
        help="skip the second run on the pure-Python routing core",
    )
    args = parser.parse_args(argv)
    rows = [
        bench_one("single", single_scenario(), args.calls, args.profile, args.repeat),
        bench_one("multi", multi_scenario(), args.calls, args.profile, args.repeat),
    ]
    native = native_hook.active()
    core = "compiled (mypyc)" if native else "pure Python"
    _print_rows(f"routing core: {core}", rows)
    total_calls = sum(r["calls"] for r in rows)
    total_s = sum(r["hotline_seconds"] for r in rows)
    total_cpu = sum(r["hotline_cpu_seconds"] for r in rows)
    pure = None if args.no_pure or not native else _pure_run(args)
    if pure is not None:
        _print_rows(
            "routing core: pure Python (child process, its own SimPy baseline)", pure["rows"]
        )
        for r, p in zip(rows, pure["rows"], strict=True):
            speedup = p["hotline_cpu_seconds"] / r["hotline_cpu_seconds"]
            print(f"{r['scenario']:<8} compiled / pure Python (CPU): {speedup:.2f}x")
            r["speedup_vs_pure_python"] = round(speedup, 3)
    summary = {
        "bench": "sim",
        "routing_core": "compiled" if native else "pure",
        "calls": args.calls,
        "repeat": args.repeat,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
        "hotline_calls_per_second": round(total_calls / total_s) if total_s else None,
        "seconds_per_million_calls": round(total_s / total_calls * 1e6, 2) if total_calls else None,
        "cpu_seconds_per_million_calls": (
            round(total_cpu / total_calls * 1e6, 2) if total_calls else None
        ),
        "min_ratio_vs_simpy": min(r["ratio"] for r in rows),
        "meets_10s_per_million": bool(total_s / total_calls * 1e6 < 10.0) if total_calls else False,
        "meets_2x_simpy": all(r["ratio"] >= 2.0 for r in rows),
        "pure_python": None
        if pure is None
        else {
            "rows": pure["rows"],
            "seconds_per_million_calls": pure["seconds_per_million_calls"],
            "min_ratio_vs_simpy": pure["min_ratio_vs_simpy"],
        },
    }
    print(json.dumps(summary, allow_nan=False, default=lambda o: None if o is math.nan else o))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
