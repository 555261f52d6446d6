"""Reports: JSON documents, readable tables and plots (matplotlib, Agg backend; optional extra
``hotline[plots]``, imported only when a plot is drawn).

The JSON of ``hotline sim run`` (docs/simulator.md has the field list)::

    {"scenario": ..., "replications": 10, "seed": 1, "service_level_seconds": 20,
     "window_seconds": [3600, 32400], "interval_minutes": 30,
     "figures": {"all": {"service_level": {"mean": 0.81, "ci95": [0.79, 0.83]}, ...},
                 "queues": {"sales": {...}}, "skills": {...},
                 "intervals": [{"start_seconds": 0, "offered": {...}, ...}, ...]},
     "checks": {"little_law_max_abs_error": 1e-9, "flow_balance": true},
     "performance": {"calls": ..., "events": ..., "seconds": ..., "calls_per_second": ...}}
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sim.run import Comparison, SimulationResult
from sim.scenario import ArrivalSource
from sim.stats import ANSWERED, FIGURES, OUTCOMES, UNFINISHED, Estimate, RunResult


def _est_dict(figs: Mapping[str, Estimate]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, e in figs.items():
        if k == "start_seconds":
            out[k] = e.mean
        else:
            out[k] = e.to_dict()
    return out


def flow_balanced(run: RunResult) -> bool:
    """Every caller has exactly one outcome, and the callers still waiting at the end are
    exactly those with no outcome."""
    counts = np.bincount(run.outcome, minlength=len(OUTCOMES))
    finished_waits = ~np.isnan(run.wait[run.outcome != UNFINISHED])
    answered_by_agent = run.agent_idx[run.outcome == ANSWERED] >= 0
    return (
        int(counts.sum()) == len(run.entry)
        and bool(finished_waits.all())
        and bool(answered_by_agent.all())
    )


def little_error(run: RunResult) -> float:
    """|integral of queue length - sum of queue times| (seconds); 0 up to rounding when every
    caller left the queue before the run stopped (Little's law as a sample-path identity)."""
    unfinished = run.outcome == UNFINISHED
    open_time = float((run.end_time - run.entry[unfinished]).sum())
    return abs(run.queue_area_total - (run.wait_total + open_time))


def checks(result: SimulationResult) -> dict[str, Any]:
    errors = [little_error(r) for r in result.runs]
    scale = max(1.0, max((r.wait_total for r in result.runs), default=1.0))
    return {
        "little_law_max_abs_error": max(errors, default=0.0),
        "little_law_holds": max(errors, default=0.0) <= 1e-6 * scale,
        "flow_balance": all(flow_balanced(r) for r in result.runs),
    }


def result_json(result: SimulationResult) -> dict[str, Any]:
    sc = result.scenario
    sim = sc.simulation
    figs = result.figures
    calls = result.calls
    return {
        "scenario": sc.name,
        "source": sc.source,
        "replications": len(result.runs),
        "seed": sim.seed,
        "service_level_seconds": sim.service_level_seconds,
        "window_seconds": [sim.warmup_hours * 3600.0, sim.horizon],
        "interval_minutes": sim.interval_minutes,
        "figures": {
            "all": _est_dict(figs["all"]),
            "queues": {q: _est_dict(f) for q, f in figs["queues"].items()},
            "skills": {s: _est_dict(f) for s, f in figs["skills"].items()},
            "intervals": [_est_dict(f) for f in figs["intervals"]],
        },
        "checks": checks(result),
        "performance": {
            "calls": calls,
            "events": sum(r.events for r in result.runs),
            "engine_calls": sum(r.engine_calls for r in result.runs),
            "seconds": result.elapsed_seconds,
            "calls_per_second": calls / result.elapsed_seconds if result.elapsed_seconds else None,
        },
    }


def _arrival_key(a: ArrivalSource) -> tuple[Any, ...]:
    return (a.name, a.queue, a.rate_per_hour, a.curve, a.replay, dict(a.skills), a.priority)


def _workload_aspects(base: SimulationResult, other: SimulationResult) -> list[str]:
    """What of the callers differs between two runs: their arrivals (sources, rates, queues,
    skills, duration), handle times, patience, IVR times, seed or number of replications."""
    a, b = base.scenario, other.scenario
    sa, sb = a.simulation, b.simulation
    out: list[str] = []
    same_sources = len(a.arrivals) == len(b.arrivals)
    if (
        not same_sources
        or [_arrival_key(x) for x in a.arrivals] != [_arrival_key(y) for y in b.arrivals]
        or (sa.duration_hours, sa.warmup_hours) != (sb.duration_hours, sb.warmup_hours)
    ):
        out.append("arrivals")
    for aspect, attr in (
        ("handle times", "handle"),
        ("patience", "patience"),
        ("IVR times", "ivr"),
    ):
        if not same_sources or any(
            getattr(x, attr) != getattr(y, attr)
            for x, y in zip(a.arrivals, b.arrivals, strict=True)
        ):
            out.append(aspect)
    if sa.seed != sb.seed:
        out.append("seeds")
    if len(base.runs) != len(other.runs):
        out.append("replications")
    return out


def workload_differences(cmp: Comparison) -> dict[str, list[str]]:
    """Scenario name -> what of its callers differs from the baseline's (only those that do).
    Empty: every scenario saw exactly the same callers."""
    base = cmp.results[0]
    out = {}
    for res in cmp.results[1:]:
        aspects = _workload_aspects(base, res)
        if aspects:
            out[res.scenario.name] = aspects
    return out


def comparison_json(cmp: Comparison) -> dict[str, Any]:
    names = [r.scenario.name for r in cmp.results]
    differ = workload_differences(cmp)
    return {
        "scenarios": names,
        "baseline": names[0],
        "replications": len(cmp.results[0].runs),
        "seed": cmp.results[0].scenario.simulation.seed,
        "same_callers": not differ,
        "workload_differences": differ,
        "figures": {
            r.scenario.name: {
                "all": _est_dict(r.figures["all"]),
                "queues": {q: _est_dict(f) for q, f in r.figures["queues"].items()},
            }
            for r in cmp.results
        },
        "differences": {
            r.scenario.name: {
                "all": _est_dict(d["all"]),
                "queues": {q: _est_dict(f) for q, f in d["queues"].items()},
            }
            for r, d in zip(cmp.results[1:], cmp.differences[1:], strict=True)
        },
    }


# --- text ----------------------------------------------------------------------------------

_SHARES = {"prob_wait", "service_level", "abandon_rate", "occupancy", "occupancy_spread",
           "occupancy_range"}  # fmt: skip
_COUNTS = {"offered", "answered", "abandoned", "voicemail", "rejected"}


def fmt(name: str, e: Estimate) -> str:
    """``81.2 % [79.0, 83.4]`` / ``12.3 s [...]`` / ``1234.5 [...]``."""
    if not math.isfinite(e.mean):
        return "-"
    lo, hi = e.low, e.high
    if name in _SHARES:
        lo = lo * 100 if lo is not None else None
        hi = hi * 100 if hi is not None else None
        text = f"{e.mean * 100:.1f} %"
    elif name.endswith("_seconds"):
        text = f"{e.mean:.1f} s"
    else:
        text = f"{e.mean:.1f}"
    if lo is not None and hi is not None:
        text += f" [{lo:.1f}, {hi:.1f}]"
    return text


def fmt_diff(name: str, e: Estimate) -> str:
    scale = 100.0 if name in _SHARES else 1.0
    unit = " pt" if name in _SHARES else (" s" if name.endswith("_seconds") else "")
    if not math.isfinite(e.mean):
        return "-"
    text = f"{e.mean * scale:+.2f}{unit}"
    if e.low is not None and e.high is not None:
        text += f" [{e.low * scale:+.2f}, {e.high * scale:+.2f}]"
        if e.low > 0 or e.high < 0:
            text += " *"
    return text


_TABLE_FIGURES = (
    "offered", "answered", "abandoned", "prob_wait", "service_level", "asa_seconds",
    "abandon_rate", "occupancy", "occupancy_spread",
)  # fmt: skip


def result_text(result: SimulationResult) -> str:
    sc = result.scenario
    sim = sc.simulation
    lines = [
        f"scenario {sc.name}: {len(result.runs)} replications, seed {sim.seed}, "
        f"{sim.duration_hours:g} h measured after {sim.warmup_hours:g} h warm-up, "
        f"service level = answered within {sim.service_level_seconds:g} s / offered",
        "figures are means over replications with 95 % confidence intervals [low, high]",
    ]
    scopes: list[tuple[str, Mapping[str, Estimate]]] = [("all", result.figures["all"])]
    scopes += [(f"queue {q}", f) for q, f in result.figures["queues"].items()]
    scopes += [(f"skill {s}", f) for s, f in result.figures["skills"].items()]
    for title, figs in scopes:
        lines.append("")
        lines.append(title)
        for name in _TABLE_FIGURES:
            if name in figs:
                lines.append(f"  {name:<18} {fmt(name, figs[name])}")
    c = checks(result)
    lines.append("")
    lines.append(
        f"checks: Little's law {'holds' if c['little_law_holds'] else 'FAILS'}, "
        f"flow balance {'holds' if c['flow_balance'] else 'FAILS'}; "
        f"{result.calls} calls in {result.elapsed_seconds:.1f} s"
    )
    return "\n".join(lines)


def comparison_text(cmp: Comparison) -> str:
    base = cmp.results[0].scenario.name
    reps = len(cmp.results[0].runs)
    seed = cmp.results[0].scenario.simulation.seed
    differ = workload_differences(cmp)
    if not differ:
        lines = [
            f"{reps} replications, the same callers through every scenario (seed {seed}); "
            f"differences are paired, vs {base};"
        ]
    else:
        what = "; ".join(f"{name}: {', '.join(aspects)}" for name, aspects in differ.items())
        lines = [
            f"{reps} replications (seed {seed}); the workloads differ from {base}'s ({what}),",
            "so the callers are not the same and the differences mix routing with workload;",
            f"differences are paired replication by replication, vs {base};",
        ]
    lines.append("* marks a difference whose 95 % interval excludes 0")
    for res, diff in zip(cmp.results, cmp.differences, strict=True):
        lines.append("")
        lines.append(f"{res.scenario.name}")
        for name in _TABLE_FIGURES:
            row = f"  {name:<18} {fmt(name, res.figures['all'][name]):<34}"
            if diff:
                row += f" {fmt_diff(name, diff['all'][name])}"
            lines.append(row.rstrip())
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------


def plots_available() -> bool:
    """Whether matplotlib (the ``plots`` extra) is installed."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a half-imported or blocked module
        return False


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(
    result: SimulationResult, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interval series with the last step repeated at the window's end (for ``step``)."""
    sim = result.scenario.simulation
    ints = result.figures["intervals"]
    width = sim.interval_minutes / 60.0
    hours = [max(f["start_seconds"].mean / 3600.0, sim.warmup_hours) for f in ints]
    hours.append(min(sim.horizon / 3600.0, hours[-1] + width) if hours else sim.horizon / 3600.0)
    mean = [f[name].mean for f in ints]
    low = [f[name].low if f[name].low is not None else np.nan for f in ints]
    high = [f[name].high if f[name].high is not None else np.nan for f in ints]
    for series in (mean, low, high):
        series.append(series[-1] if series else np.nan)
    lo = np.asarray(low, dtype=float)
    if name != "service_level":
        lo = np.maximum(lo, 0.0)
    return np.asarray(hours), np.asarray(mean, dtype=float), lo, np.asarray(high, dtype=float)


def plot_result(result: SimulationResult, path: str) -> None:
    """Four panels: service level and queue length over the day, the wait distribution of
    answered callers, and each agent's occupancy."""
    plt = _pyplot()
    sim = result.scenario.simulation
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0][0]
    h, m, lo, hi = _series(result, "service_level")
    ax.step(h, m, where="post", label="service level")
    ax.fill_between(h, lo, hi, step="post", alpha=0.25, label="95 % CI")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Service level ({sim.service_level_seconds:g} s) per interval")
    ax.set_xlabel("hour")
    ax.legend(loc="lower left")
    ax = axes[0][1]
    h, m, lo, hi = _series(result, "mean_queue_length")
    ax.step(h, m, where="post")
    ax.fill_between(h, lo, hi, step="post", alpha=0.25)
    ax.set_title("Mean number of callers waiting")
    ax.set_xlabel("hour")
    ax = axes[1][0]
    waits = np.concatenate([r.wait[r.measured & (r.outcome == ANSWERED)] for r in result.runs])
    if waits.size:
        ax.hist(waits, bins=60, color="tab:blue", alpha=0.8)
        ax.axvline(sim.service_level_seconds, color="tab:red", linestyle="--", label="threshold")
        ax.legend()
    ax.set_yscale("log")
    ax.set_title("Wait of answered callers (s)")
    ax = axes[1][1]
    staffed = sum(r.staffed for r in result.runs)
    busy = sum(r.busy for r in result.runs)
    with np.errstate(invalid="ignore", divide="ignore"):
        occ = np.where(staffed > 0, busy / staffed, np.nan)
    names = result.runs[0].agents
    ax.bar(range(len(names)), occ)
    ax.set_ylim(0, 1.02)
    ax.set_title("Occupancy per agent")
    ax.set_xlabel("agent")
    if len(names) <= 30:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    fig.suptitle(f"{result.scenario.name}: {len(result.runs)} replications")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_comparison(cmp: Comparison, path: str) -> None:
    """Service level over the day for each scenario, and the paired differences vs the first."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    for res in cmp.results:
        h, m, lo, hi = _series(res, "service_level")
        ax.step(h, m, where="post", label=res.scenario.name)
        ax.fill_between(h, lo, hi, step="post", alpha=0.15)
    ax.set_ylim(0, 1.02)
    ax.set_title("Service level per interval")
    ax.set_xlabel("hour")
    ax.legend()
    ax = axes[1]
    names = ["service_level", "prob_wait", "abandon_rate", "occupancy"]
    width = 0.8 / max(1, len(cmp.results) - 1)
    for k, (res, diff) in enumerate(zip(cmp.results[1:], cmp.differences[1:], strict=True)):
        means = [diff["all"][n].mean * 100 for n in names]
        errs = [
            (diff["all"][n].high - diff["all"][n].mean) * 100
            if diff["all"][n].high is not None
            else 0.0
            for n in names
        ]
        xs = np.arange(len(names)) + k * width
        ax.bar(xs, means, width, yerr=errs, capsize=4, label=f"{res.scenario.name} - "
               f"{cmp.results[0].scenario.name}")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("difference (percentage points), 95 % CI")
    same = not workload_differences(cmp)
    ax.set_title("Paired differences" + (" (same callers)" if same else " (workloads differ)"))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure_names() -> Sequence[str]:
    return FIGURES
