"""A load run's figures: what the callers lived through, as JSON, a table and plots.

Per call (``sim.load.callers`` records, live seconds):

* ``setup_seconds``: INVITE to 200 OK; ``post_dial_delay_seconds``: INVITE to the first 18x
  (or the 200 when none came);
* ``ivr_seconds``: the IVR's answer to the end of the last key (the queue entry);
* ``routing_delay_seconds``: queue entry to the first ring of an agent's phone;
* ``wait_seconds``: queue entry to the agent's answer (answered), to the hang-up (abandoned),
  to voicemail; ``heard_after_answer_seconds``: the agent's answer to the first frame of the
  agent's voice the caller heard;
* RTP as the callers heard it: packets lost / expected (RFC 3550), interarrival jitter.

And over the callers whose queue entry falls in the measured window (the scenario's warm-up
divided by the speedup, to the end of arrivals), the simulator's definitions (``sim.stats``):
``offered``, ``answered``, ``abandoned``, ``voicemail``, ``rejected``, ``service_level``
(answered within the threshold / offered), ``asa_seconds``, ``mean_wait_seconds``,
``abandon_rate``; per queue too. Failed calls are listed with their causes (SIP status).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sim.load.runner import LoadResult

CALLER_FIGURES = (
    "offered",
    "answered",
    "abandoned",
    "voicemail",
    "rejected",
    "service_level",
    "asa_seconds",
    "mean_wait_seconds",
    "abandon_rate",
)
"""The figures a load run and the simulator both give (same definitions)."""


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.floating | np.integer):
        return _clean(v.item())
    return v


def summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """count, mean, p50, p95, max (seconds)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {
        "count": int(arr.size),
        "mean": float(arr.mean()),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


def measured(result: LoadResult) -> list[dict[str, Any]]:
    """The calls whose queue entry is in the measured window."""
    lo, hi = result.plan.window
    hi = min(hi, result.horizon) if result.stopped != "done" else hi
    return [c for c in result.calls if c.get("queued_at") is not None and lo <= c["queued_at"] < hi]


def caller_figures(calls: Sequence[Mapping[str, Any]], threshold: float) -> dict[str, float]:
    """The simulator's caller figures (``sim.stats.caller_figures``) over live calls."""
    out = Counter(c["outcome"] for c in calls)
    offered = len(calls)
    waits = [c["wait"] for c in calls if c["outcome"] == "answered"]
    finished = [c["wait"] for c in calls
                if c["outcome"] in ("answered", "abandoned", "voicemail", "rejected")
                and c.get("wait") is not None]  # fmt: skip
    within = sum(1 for w in waits if w <= threshold)
    return {
        "offered": float(offered),
        "answered": float(out["answered"]),
        "abandoned": float(out["abandoned"]),
        "voicemail": float(out["voicemail"]),
        "rejected": float(out["rejected"]),
        "service_level": within / offered if offered else math.nan,
        "asa_seconds": float(np.mean(waits)) if waits else math.nan,
        "mean_wait_seconds": float(np.mean(finished)) if finished else math.nan,
        "abandon_rate": out["abandoned"] / offered if offered else math.nan,
    }


def rtp_figures(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rtp = [r["rtp"] for r in records if r.get("rtp")]
    expected = sum(x["expected"] for x in rtp)
    lost = sum(x["lost"] for x in rtp)
    return {
        "calls": len(rtp),
        "packets_expected": expected,
        "packets_lost": lost,
        "loss": lost / expected if expected else 0.0,
        "worst_call_loss": max(
            (x["lost"] / x["expected"] for x in rtp if x["expected"]), default=0.0
        ),
        "jitter_ms": summary([x["jitter_ms"] for x in rtp if x["received"]]),
    }


def live_figures(result: LoadResult) -> dict[str, Any]:
    """Everything the report shows (see module doc)."""
    plan = result.plan
    calls = result.calls
    window = measured(result)
    threshold = plan.service_level_seconds
    offered = [c for c in calls if c.get("first_offer_at") is not None and c.get("queued_at")]
    answered = [c for c in calls if c["outcome"] == "answered"]
    failed = [c for c in calls if c["outcome"] == "failed"]
    causes = Counter(c.get("cause") or "unknown" for c in failed)
    queues = sorted({c["queue"] for c in window})
    return {
        "calls": {
            "planned": len(plan.callers),
            "placed": len(calls) + result.lost,
            "reported": len(calls),
            "lost": result.lost,
            "outcomes": dict(Counter(c["outcome"] for c in calls)),
            "failed": len(failed),
            "failure_causes": dict(causes),
            "failed_calls": [
                {k: c.get(k) for k in ("i", "call_id", "sip_status", "cause", "queue", "path")}
                for c in failed[:50]
            ],
            "notes": dict(Counter(c["cause_hint"] for c in calls if c.get("cause_hint"))),
        },
        "timings": {
            "setup_seconds": summary([c.get("setup") for c in calls]),
            "post_dial_delay_seconds": summary([c.get("pdd") for c in calls]),
            "ivr_seconds": summary([c.get("ivr_seconds") for c in calls]),
            "routing_delay_seconds": summary(
                [c["first_offer_at"] - c["queued_at"] for c in offered]
            ),
            "wait_seconds": {
                o: summary([c.get("wait") for c in calls if c["outcome"] == o])
                for o in ("answered", "abandoned", "voicemail")
            },
            "heard_after_answer_seconds": summary(
                [
                    c["heard_at"] - c["answered_at"]
                    for c in answered
                    if c.get("heard_at") is not None and c.get("answered_at") is not None
                ]
            ),
            "talk_seconds": summary([c.get("talk") for c in answered]),
        },
        "service_level_seconds": threshold,
        "window_seconds": [plan.window[0], min(plan.window[1], result.horizon)],
        "figures": {
            "all": caller_figures(window, threshold),
            "queues": {
                q: caller_figures([c for c in window if c["queue"] == q], threshold) for q in queues
            },
        },
        "rtp_callers_heard": rtp_figures(calls),
        "rtp_agents_heard": rtp_figures([o for o in result.offers if o.get("rtp")]),
        "agents": {
            "offers": len(result.offers),
            "answered": sum(1 for o in result.offers if o.get("result") == "talked"),
            "missed": sum(1 for o in result.offers if o.get("decision") == "miss"),
            "answers_lost": sum(1 for o in result.offers if o.get("result") == "answer_lost"),
            "heard_wrong_caller": sum(
                1
                for o in result.offers
                if o.get("result") == "talked" and o.get("heard_right_caller") is False
            ),
            "heard_no_caller": sum(
                1
                for o in result.offers
                if o.get("result") == "talked" and o.get("heard_right_caller") is None
            ),
            "forced_hangups": sum(1 for o in result.offers if o.get("forced_hangup")),
            "work_delivered": sum(1 for o in result.offers if o.get("result") == "delivered"),
        },
    }


def result_json(result: LoadResult, comparison: Mapping[str, Any] | None = None) -> dict[str, Any]:
    plan = result.plan
    doc: dict[str, Any] = {
        "scenario": plan.scenario.name,
        "source": plan.source,
        "seed": plan.scenario.simulation.seed,
        "speedup": plan.speedup,
        "target": f"{plan.sip_target[0]}:{plan.sip_target[1]}",
        "workers": result.workers,
        "stopped": result.stopped,
        "elapsed_seconds": result.elapsed,
        "total_seconds": result.total_seconds,
        "run_tag": result.run_tag,
        "queue_entries": (
            "the service's (its event stream)"
            if result.watch and result.watch.get("following")
            else "the end of the caller's last key (no event stream)"
        ),
        "event_stream": result.watch,
        "horizon_seconds": result.horizon,
        "paths": [p.describe() for p in plan.paths],
        **live_figures(result),
        "agreement": result.service,
    }
    if comparison is not None:
        doc["comparison"] = comparison
    return _clean(doc)


def _f(v: Any, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if unit == "%":
        return f"{v * 100:.2f} %"
    if unit == "ms":
        return f"{v * 1000:.1f} ms"
    return f"{v:g}" if isinstance(v, int) else f"{v:.3f}"


def result_text(doc: Mapping[str, Any]) -> str:
    """The table ``hotline load`` prints (from :func:`result_json`'s document)."""
    calls = doc["calls"]
    lines = [
        f"hotline load: {doc['scenario']} x{doc['speedup']:g} against {doc['target']}: "
        f"{calls['placed']} of {calls['planned']} calls placed in {doc['elapsed_seconds']:.1f} s "
        f"({doc['stopped']}; {doc['total_seconds']:.1f} s in all), {doc['workers']} caller "
        f"process(es)",
        "  outcomes           "
        + ", ".join(f"{k} {v}" for k, v in sorted(calls["outcomes"].items())),
    ]
    if calls["lost"]:
        lines.append(f"  lost               {calls['lost']} calls placed whose record never came "
                     "back (their process was stopped)")  # fmt: skip
    lines.append(f"  queue entries      {doc['queue_entries']}")
    t = doc["timings"]
    for name, key in (("call set-up", "setup_seconds"), ("post-dial delay", "post_dial_delay_seconds"),
                      ("time in IVR", "ivr_seconds"), ("routing delay", "routing_delay_seconds"),
                      ("agent heard after", "heard_after_answer_seconds")):  # fmt: skip
        s = t[key]
        lines.append(f"  {name:<18} mean {_f(s['mean'], 'ms')}  p50 {_f(s['p50'], 'ms')}  "
                     f"p95 {_f(s['p95'], 'ms')}  max {_f(s['max'], 'ms')}  (n={s['count']})")  # fmt: skip
    for o, s in t["wait_seconds"].items():
        if s["count"]:
            lines.append(f"  wait ({o})".ljust(21) + f"mean {_f(s['mean'])} s  p95 {_f(s['p95'])} s"
                         f"  (n={s['count']})")  # fmt: skip
    f = doc["figures"]["all"]
    lines += [
        f"  service level      {_f(f['service_level'], '%')}  (answered within "
        f"{doc['service_level_seconds']:.3g} s / offered)",
        f"  ASA                {_f(f['asa_seconds'])} s",
        f"  abandon rate       {_f(f['abandon_rate'], '%')}",
    ]
    r = doc["rtp_callers_heard"]
    lines.append(
        f"  RTP callers heard  loss {_f(r['loss'], '%')} ({r['packets_lost']}/"
        f"{r['packets_expected']}), jitter mean {_f(r['jitter_ms']['mean'])} ms, "
        f"p95 {_f(r['jitter_ms']['p95'])} ms"
    )
    for note, n in sorted(calls["notes"].items(), key=lambda x: -x[1]):
        lines.append(f"  note               {n} call(s): {note}")
    if calls["failed"]:
        lines.append(f"  FAILED             {calls['failed']} calls:")
        for cause, n in sorted(calls["failure_causes"].items(), key=lambda x: -x[1]):
            lines.append(f"    {n:>5}  {cause}")
    a = doc.get("agreement") or {}
    if a.get("agree") is None:
        lines.append(f"  counts check       skipped: {a.get('skipped', '')}")
    else:
        lines.append(
            "  counts check       "
            + (
                "generator = engine = case records, every call"
                if a["agree"]
                else "DISAGREE (see below)"
            )
        )
        for row in a.get("rows", []):
            mark = "" if row["agree"] else "   <-- differs"
            lines.append(f"    {row['queue']:<12} {row['count']:<10} generator {row['generator']:>5}"
                         f"  engine {row['engine']:>5}  cases {row['cases']:>5}{mark}")  # fmt: skip
        work = a.get("work_taken") or 0
        if a.get("agents_calls_taken") != (a.get("generator_answered") or 0) + work:
            lines.append(f"    agents' calls taken {a.get('agents_calls_taken')} vs answered "
                         f"{a.get('generator_answered')}"
                         + (f" + queued work {work}" if work else ""))  # fmt: skip
        for m in a.get("calls_without_agreement", [])[:10]:
            lines.append(f"    call {m}")
        for e in a.get("errors", []):
            lines.append(f"    error: {e}")
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------


def plot_result(result: LoadResult, path: str, comparison: Mapping[str, Any] | None = None) -> None:
    """Four panels: calls in progress over time (IVR, waiting, talking), waits by outcome,
    set-up / routing delay distributions, and live vs predicted when compared."""
    from sim.report import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    calls = result.calls
    end = max((c.get("ended_at") or 0.0 for c in calls), default=1.0)
    grid = np.linspace(0.0, max(end, 1e-3), 400)

    def count(start: str, stop: str) -> np.ndarray:
        out = np.zeros_like(grid)
        for c in calls:
            a, b = c.get(start), c.get(stop)
            if a is not None:
                out += (grid >= a) & (grid < (b if b is not None else end))
        return out

    ax = axes[0][0]
    for c in calls:
        c["_ivr_start"] = None if c.get("setup") is None else c["invite_at"] + c["setup"]
        c["_wait_end"] = c.get("answered_at") or c.get("ended_at")
        c["_talk_end"] = c.get("ended_at")
    ax.plot(grid, count("_ivr_start", "queued_at"), label="in IVR")
    ax.plot(grid, count("queued_at", "_wait_end"), label="waiting")
    ax.plot(grid, count("answered_at", "_talk_end"), label="talking")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("calls")
    ax.set_title("calls in progress")
    ax.legend()
    ax = axes[0][1]
    for o in ("answered", "abandoned", "voicemail"):
        w = [c["wait"] for c in calls if c["outcome"] == o and c.get("wait") is not None]
        if w:
            ax.hist(w, bins=30, alpha=0.6, label=f"{o} ({len(w)})")
    ax.set_xlabel("wait (s)")
    ax.set_title("waits by outcome")
    ax.legend()
    ax = axes[1][0]
    heard = [(c["heard_at"] - c["answered_at"]) * 1000 for c in calls
             if c.get("heard_at") is not None and c.get("answered_at") is not None]  # fmt: skip
    for values, label in (
        ([c["setup"] * 1000 for c in calls if c.get("setup") is not None], "set-up"),
        ([c["pdd"] * 1000 for c in calls if c.get("pdd") is not None], "post-dial delay"),
        (heard, "agent heard after the answer"),
    ):
        if values:
            ax.hist(values, bins=30, alpha=0.6, label=label)
    ax.set_xlabel("ms")
    ax.set_title("signalling delays")
    ax.legend()
    ax = axes[1][1]
    if comparison is not None:
        rows = [r for r in comparison["figures"] if r["name"] in
                ("service_level", "abandon_rate")]  # fmt: skip
        for k, r in enumerate(rows):
            lo, hi = r["interval"]
            if lo is not None and hi is not None:
                ax.plot([k, k], [lo, hi], color="grey", linewidth=6, alpha=0.5)
            if r["predicted"] is not None:
                ax.plot(k, r["predicted"], "o", color="grey")
            if r["live"] is not None:
                ax.plot(k, r["live"], "x", color="red", markersize=10)
        ax.set_xticks(range(len(rows)), [r["name"] for r in rows])
        ax.set_title("live (x) vs predicted (o, 95 % range of one run)")
    else:
        ax.axis("off")
    fig.suptitle(f"hotline load: {result.plan.scenario.name} x{result.plan.speedup:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    for c in calls:
        for key in ("_ivr_start", "_wait_end", "_talk_end"):
            c.pop(key, None)


__all__ = ["CALLER_FIGURES", "caller_figures", "live_figures", "measured", "plot_result",
           "result_json", "result_text"]  # fmt: skip
