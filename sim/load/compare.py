"""Live versus predicted: the same scenario through the simulator, beside the load run.

Two predictions, both on the engine configuration the service runs and the scenario
accelerated as the run was (``sim.load.profile.accelerated``):

* **the scenario's** (``predicted``): ``replications`` independent runs of the accelerated
  scenario on its seed, cut where the run stopped placing calls. A live run is *one* draw, so
  the interval it is checked against is the 95 % range of one run's figure (mean ± t·s·√(1+1/n)
  over the replications), not the confidence interval of the mean. Replication 0 draws exactly
  the callers the run placed (same seed, same streams: ``sim.workload``), so its figure is
  given too;
* **the same callers'** (``same_callers``): the callers as they really reached their queues
  live (queue entry instants, handle times, patience) replayed through the simulator, with
  the agents' ring delays and misses drawn anew per replication. What remains between it and
  live is the engine and the service against the simulator's model of them.

A figure outside its interval is explained with the evidence: whether the same-caller
prediction agrees with live (then this draw of callers is unusual, not the engine), how the
callers' outcomes differ call by call between live and the same-caller replay, what live
adds that the model has not (routing delay, late agent audio, lost answers, failed calls),
and where the scenario's callers differ from what the IVR makes of them (skills, priority).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sim.distributions import Distribution
from sim.load.profile import accelerated, model_gaps
from sim.load.report import CALLER_FIGURES, caller_figures, measured
from sim.load.runner import LoadResult
from sim.run import simulate
from sim.scenario import Replay, Scenario
from sim.stats import OUTCOMES, SHARES, RunResult, t_quantile_975
from sim.stats import caller_figures as sim_caller_figures

MIN_REPLICATIONS = 20


def prediction_interval(
    values: Sequence[float], *, share: bool
) -> tuple[float, float | None, float | None]:
    """(mean, low, high): where one more run's figure falls with 95 % probability."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, None, None
    m = float(arr.mean())
    if arr.size < 2:
        return m, None, None
    half = t_quantile_975(arr.size - 1) * float(arr.std(ddof=1)) * math.sqrt(1 + 1 / arr.size)
    lo, hi = m - half, m + half
    if share:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return m, max(0.0, lo), hi


def same_callers_scenario(
    result: LoadResult, acc: Scenario
) -> tuple[Scenario, list[dict[str, Any]]]:
    """The accelerated scenario with the live callers (as they reached their queues) in place
    of its arrivals; and the live calls in the order the simulator's rows come."""
    calls = [c for c in result.calls if c.get("queued_at") is not None]
    arrivals = []
    ordered: list[dict[str, Any]] = []
    zero = Distribution("constant", mean=0.0)
    for idx, src in enumerate(acc.arrivals):
        rows = sorted((c for c in calls if c.get("source", 0) == idx), key=lambda c: c["queued_at"])
        if not rows:
            continue
        ordered += rows
        arrivals.append(
            replace(
                src,
                rate_per_hour=None,
                curve=None,
                ivr=zero,
                replay=Replay(
                    at=tuple(c["queued_at"] for c in rows),
                    handle=tuple(c["handle"] for c in rows),
                    patience=tuple(_served(c) for c in rows),
                    queue=tuple(c["queue"] for c in rows),
                ),
            )
        )
    horizon = max((c["queued_at"] for c in calls), default=0.0) + 1e-6
    sim = acc.simulation
    duration = max(horizon / 3600.0 - sim.warmup_hours, 1e-9)
    scenario = replace(
        acc,
        name=f"{acc.name} (the live callers)",
        arrivals=tuple(arrivals),
        simulation=replace(sim, duration_hours=duration),
    )
    entries = np.asarray([c["queued_at"] for c in ordered])
    order = np.argsort(entries, kind="stable")
    return scenario, [ordered[k] for k in order.tolist()]


def _served(call: Mapping[str, Any]) -> float:
    """The patience the caller really had (a floor applies: ``callers.QUEUE_SETTLE``)."""
    v = call.get("patience_served", call.get("patience"))
    return math.inf if v is None else float(v)


def _window_mask(run: RunResult, lo: float, hi: float) -> np.ndarray:
    return (run.entry >= lo) & (run.entry < hi)


def compare(result: LoadResult, *, replications: int | None = None) -> dict[str, Any]:
    """Both predictions beside the live figures (see module doc); plain data for JSON."""
    plan = result.plan
    reps = max(replications or plan.scenario.simulation.replications, 2)
    acc = accelerated(plan.scenario, plan.speedup, horizon=result.horizon)
    threshold = acc.simulation.service_level_seconds
    lo, hi = plan.window[0], min(plan.window[1], result.horizon)
    live_calls = measured(result)
    live = caller_figures(live_calls, threshold)
    predicted = simulate(acc, replications=reps)
    same_scn, ordered = same_callers_scenario(result, acc)
    same_runs: list[RunResult] = []
    same_figs: list[dict[str, float]] = []
    if ordered:
        same = simulate(same_scn, replications=reps)
        same_runs = same.runs
        for run in same.runs:
            same_figs.append(sim_caller_figures(_window_mask(run, lo, hi), run, threshold))
    per_rep = [p["all"] for p in predicted.per_replication]
    rows = []
    for name in CALLER_FIGURES:
        share = name in SHARES
        mean, plo, phi = prediction_interval([p[name] for p in per_rep], share=share)
        smean, slo, shi = prediction_interval([f[name] for f in same_figs], share=share)
        value = live[name]
        finite = value is not None and math.isfinite(value)
        inside = (plo is not None and phi is not None and finite and plo <= value <= phi) or (
            not finite and not math.isfinite(mean)
        )
        same_inside = slo is not None and shi is not None and finite and slo <= value <= shi
        rows.append(
            {
                "name": name,
                "live": value if finite else None,
                "predicted": mean if math.isfinite(mean) else None,
                "interval": [plo, phi],
                "difference": (value - mean) if finite and math.isfinite(mean) else None,
                "replication_0": _finite(per_rep[0].get(name)) if per_rep else None,
                "replication_0_inside": bool(
                    per_rep
                    and plo is not None
                    and phi is not None
                    and _finite(per_rep[0].get(name)) is not None
                    and plo <= per_rep[0][name] <= phi
                ),
                "same_callers": smean if math.isfinite(smean) else None,
                "same_callers_interval": [slo, shi],
                "inside": bool(inside),
                "same_callers_inside": bool(same_inside),
            }
        )
    evidence = _evidence(result, ordered, same_runs, lo, hi)
    for r in rows:
        if not r["inside"]:
            r["why"] = _why(r, evidence)
    return {
        "replications": reps,
        "seed": acc.simulation.seed,
        "service_level_seconds": threshold,
        "window_seconds": [lo, hi],
        "interval": "95 % range of one run's figure over the replications "
        "(mean ± t·s·sqrt(1 + 1/n))",
        "figures": rows,
        "all_inside": all(r["inside"] for r in rows),
        "evidence": evidence,
    }


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _evidence(
    result: LoadResult,
    ordered: Sequence[Mapping[str, Any]],
    runs: Sequence[RunResult],
    lo: float,
    hi: float,
) -> dict[str, Any]:
    """Call-by-call differences between live and the same-caller replay (its first
    replication), and what the live run adds to the model."""
    out: dict[str, Any] = {"model_gaps": model_gaps(result.plan)}
    if runs and ordered:
        run = runs[0]
        sel = _window_mask(run, lo, hi)
        moved: Counter[str] = Counter()
        waits = []
        for k in np.flatnonzero(sel).tolist():
            c = ordered[k]
            sim_outcome = OUTCOMES[int(run.outcome[k])]
            if c["outcome"] != sim_outcome:
                moved[f"{sim_outcome} in the simulator, {c['outcome']} live"] += 1
            elif sim_outcome == "answered" and c.get("wait") is not None:
                waits.append(c["wait"] - float(run.wait[k]))
        out["outcome_changes"] = dict(moved.most_common())
        # callers the model offers to an agent the instant they join: what live took
        at_once = [
            ordered[k]["first_offer_at"] - ordered[k]["queued_at"]
            for k in np.flatnonzero(sel & ~run.waited).tolist()
            if ordered[k].get("first_offer_at") is not None
        ]
        out["offer_latency_seconds"] = (
            {
                "mean": float(np.mean(at_once)),
                "p95": float(np.percentile(at_once, 95)),
                "calls": len(at_once),
            }
            if at_once
            else None
        )
        out["wait_difference_answered_seconds"] = (
            {
                "mean": float(np.mean(waits)),
                "p95": float(np.percentile(waits, 95)),
                "calls": len(waits),
            }
            if waits
            else None
        )
    calls = result.calls
    heard = [c["heard_at"] - c["answered_at"] for c in calls
             if c.get("heard_at") is not None and c.get("answered_at") is not None]  # fmt: skip
    out["agent_heard_after_answer_seconds"] = (
        {"mean": float(np.mean(heard)), "p95": float(np.percentile(heard, 95))} if heard else None
    )
    offers = result.offers
    out["answers_lost"] = sum(1 for o in offers if o.get("result") == "answer_lost")
    out["late_misses"] = sum(1 for o in offers if o.get("late"))
    out["failed_calls"] = sum(1 for c in calls if c["outcome"] == "failed")
    return out


def _why(row: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    """Which side the difference is on, and the evidence, in a sentence or three."""
    parts: list[str] = []
    if row["same_callers_inside"]:
        parts.append(
            f"on the callers this run really had the simulator predicts {_num(row['same_callers'])}"
            f" {_iv(row['same_callers_interval'])}, which holds the live {_num(row['live'])}: "
            "the engine behaved as the model says; this draw of callers is unusual "
            f"(replication 0, the same draw, gives {_num(row['replication_0'])}), not a defect"
        )
        return "; ".join(parts)
    parts.append(
        f"even on the same callers the simulator predicts {_num(row['same_callers'])} "
        f"{_iv(row['same_callers_interval'])} against {_num(row['live'])} live: the live "
        "engine and the simulator's model differ"
    )
    if ev.get("model_gaps"):
        parts.append("the scenario's model of the callers is not what the IVR makes of them: "
                     + "; ".join(ev["model_gaps"]))  # fmt: skip
    if ev.get("outcome_changes"):
        changes = ", ".join(f"{n} {k}" for k, n in list(ev["outcome_changes"].items())[:3])
        parts.append(f"call by call: {changes}")
    w = ev.get("wait_difference_answered_seconds")
    if w:
        parts.append(f"answered calls waited {w['mean'] * 1000:+.0f} ms longer live on average")
    rd = ev.get("offer_latency_seconds")
    if rd and rd["p95"] > 0.05:
        parts.append(
            f"callers the model offers to an agent at once waited live {rd['mean'] * 1000:.0f} ms "
            f"(p95 {rd['p95'] * 1000:.0f} ms) for the agent's phone to ring, which the model "
            "takes as 0: the service's signalling side"
        )
    heard = ev.get("agent_heard_after_answer_seconds")
    if heard and heard["p95"] > 0.1:
        parts.append(f"callers heard their agent {heard['mean'] * 1000:.0f} ms after the answer "
                     f"(p95 {heard['p95'] * 1000:.0f} ms): the media path")  # fmt: skip
    for key, text in (("answers_lost", "agents' answers the service did not take"),
                      ("late_misses", "offers left to ring out because the ring delay reached "
                       "the ring timeout's guard"),
                      ("failed_calls", "failed calls")):  # fmt: skip
        if ev.get(key):
            parts.append(f"{ev[key]} {text}")
    return "; ".join(parts)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def _iv(iv: Sequence[Any]) -> str:
    return f"[{_num(iv[0])}, {_num(iv[1])}]"


def comparison_text(cmp: Mapping[str, Any]) -> str:
    lines = [
        f"live versus predicted ({cmp['replications']} replications, seed {cmp['seed']}; "
        f"interval: {cmp['interval']})",
        f"  {'figure':<18} {'live':>10} {'predicted':>10} {'difference':>11}  "
        f"{'interval':<22} {'same callers':>12}  inside",
    ]
    for r in cmp["figures"]:
        lines.append(
            f"  {r['name']:<18} {_num(r['live']):>10} {_num(r['predicted']):>10} "
            f"{_num(r['difference']):>11}  {_iv(r['interval']):<22} {_num(r['same_callers']):>12}"
            f"  {'yes' if r['inside'] else 'NO'}"
        )
    for r in cmp["figures"]:
        if not r["inside"]:
            lines.append(f"  {r['name']} outside: {r['why']}")
    for gap in cmp["evidence"].get("model_gaps", []):
        lines.append(f"  note: {gap}")
    return "\n".join(lines)


__all__ = ["compare", "comparison_text", "prediction_interval", "same_callers_scenario"]
