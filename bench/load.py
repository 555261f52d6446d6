"""Calls through the IVR and the queues that ``hotline serve`` holds, driven by ``hotline load``.

    python -m bench.load [--step-seconds 10] [--start-rate 20] [--max-rate 320]
                         [--start-concurrency 50] [--max-concurrency 400] [--budget 300]

The service runs the demo's entry points, IVR and queues (``tests/interop/test_load.py``'s
configuration) with 60 agents per group (240), each an agent's phone of the load generator.
Every caller dials 1000, keys its way through the IVR (RFC 4733, in-band tones, SIP INFO, in
the test's proportions, over 2 s) to the sales, support or complaints queue (not the ring-all operator
queue: see ``SHARES``), talks to an agent (RTP both ways) and hangs up; nobody abandons. Three searches, each for the highest figure *held*:

* **call rate**: arrivals at R calls/s for ``--step-seconds`` with 1 s mean talk; R doubles from
  ``--start-rate`` until a step is not held, then bisects;
* **concurrent calls**: C calls up at once (arrivals at a fixed rate, talk C/rate seconds less
  the IVR's, the plateau held for ``--step-seconds``); C doubles, then bisects;
* **SIPp's own ceiling**, the same service and number (1000; SIPp's ``uac``: INVITE, 200, ACK,
  BYE, no keys, no agent), ``bench.sip_cps``'s search.

A step is held when every call was placed on time and finished (``done``), every caller was
answered by an agent (none failed, none sent to voicemail or left unfinished), callers heard
less than 0.1 % RTP loss, and the generator's counts, the engine's and the case records agreed
for every call. Per step it reports the service's CPU (``hotline serve`` and its media process,
from /proc) and the generator's (its processes), per call and in cores (CPU seconds per second
of calls, ``svc c`` and ``gen c``): on one machine the generator competes with the service, and
a step the generator could not keep up with (its CPU near 100 % of a core per process) says so,
as does one where the service used its whole core. The calls not answered are listed by path
(keys and how they were sent). The service is pinned to CPU 0, the generator
and SIPp to CPU 1, on 2 cores or more. Everything is on 127.0.0.1 and bounded: each step by its
calls and ``hotline load``'s wall-clock cap, the whole by ``--budget``. A table, then one JSON
line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import sip_cps
from tests.interop.harness import OPERATOR_TOKEN, Server, start_server
from tests.interop.test_load import service_config

if TYPE_CHECKING:
    from sim.load.profile import LoadPlan

AGENTS_PER_GROUP = 60
LOSS_LIMIT = 0.001
IVR_SECONDS = 2.0
"""Each caller spreads its keys over this long (a key group every 0.5-1 s)."""
ACHIEVED_SHARE = 0.98

PATHS = """
[[load.paths]]
queue = "sales"
keys = ["1", "1"]
share = 3
[[load.paths]]
queue = "sales"
keys = ["1", "1"]
dtmf = "inband"
[[load.paths]]
queue = "support"
keys = ["1", "2", "1"]
[[load.paths]]
queue = "support"
keys = ["1", "2", "1"]
dtmf = "info"
[[load.paths]]
queue = "complaints"
keys = ["1", "3", "4321#", "1"]
"""

SHARES = {"sales": 0.45, "support": 0.33, "complaints": 0.22}
"""Not the operator queue: it rings all its 120 members at once, and the service does not
cancel the other 119 phones when one answers (docs/load.md, "What was found"), so each of its
calls would leave 119 phones ringing: a defect's cost, not the engine's capacity."""


def workload(rate: float, seconds: float, handle: str, seed: int) -> str:
    """Arrivals at ``rate`` calls/s for ``seconds`` (live: speedup 1), split over the queues."""
    arrivals = []
    for queue, share in SHARES.items():
        arrivals.append(
            f'[[arrivals]]\nqueue = "{queue}"\nrate_per_hour = {rate * share * 3600:.3f}\n'
            f"handle_time = {handle}\nivr_time = {IVR_SECONDS}\nskills = {{ en = 4 }}\n"
        )
    return (
        f"[simulation]\nduration_hours = {seconds / 3600:.8f}\nreplications = 2\nseed = {seed}\n"
        "service_level_seconds = 20\n\n" + "\n".join(arrivals) + "\n[load]\nspeedup = 1\n"
        '[load.agents]\nanswer_seconds = { distribution = "exponential", mean_seconds = 0.3 }\n'
        + PATHS
    )


@dataclass(frozen=True, slots=True)
class Step:
    kind: str
    """``rate`` or ``concurrency``."""
    target: float
    """Calls/s offered, or concurrent calls aimed at."""
    planned: int
    placed: int
    failed: int
    failures: dict[str, int]
    unserved_paths: dict[str, int]
    """Calls failed or not answered, by path (keys and how they were sent)."""
    stopped: str
    achieved_cps: float
    peak_concurrent: int
    loss: float
    setup_p95_ms: float | None
    ivr_p95_s: float | None
    agree: bool | None
    service_cpu_ms_per_call: float | None
    generator_cpu_ms_per_call: float | None
    generator_busy: float
    """The generator's CPU seconds (start-up and check included) per second of calls (1.0: one
    core's worth)."""
    service_busy: float
    """The service's (``hotline serve`` and its media process) the same way: pinned to one
    core, it cannot pass 1.0."""
    seconds: float
    held: bool
    why_not: str


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + s.ru_utime + s.ru_stime


def peak_concurrent(calls: list[dict[str, Any]]) -> int:
    """Most calls up at once (INVITE to the end)."""
    edges: list[tuple[float, int]] = []
    for c in calls:
        if c.get("invite_at") is not None and c.get("ended_at") is not None:
            edges += [(c["invite_at"], 1), (c["ended_at"], -1)]
    edges.sort()
    now = best = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


def make_plan(
    server: Server, d: Path, *, rate: float, seconds: float, handle: str, seed: int
) -> LoadPlan:
    """The load plan of arrivals at ``rate`` calls/s for ``seconds`` against ``server`` (its
    configuration and the workload written in ``d``)."""
    from sim.load.profile import build_plan

    d.mkdir(parents=True, exist_ok=True)
    (d / "service.toml").write_text(service_config(AGENTS_PER_GROUP), encoding="utf-8")
    (d / "workload.toml").write_text(workload(rate, seconds, handle, seed), encoding="utf-8")
    return build_plan(d / "service.toml", workload=d / "workload.toml", target=server.sip,
                      http=f"127.0.0.1:{server.http_port}")  # fmt: skip


def start_service(work: Path, extra_env: dict[str, str] | None = None) -> tuple[Server, bool]:
    """``hotline serve`` on the demo's IVR and queues with the benchmark's agents, pinned to
    CPU 0 and this process (and the generator it starts) to CPU 1 on 2 cores or more; returns
    the server and whether it was pinned. Raises RuntimeError when it does not start."""
    server = start_server(work, service_config(AGENTS_PER_GROUP), extra_env=extra_env)
    pinned = (os.cpu_count() or 1) >= 2
    if pinned:
        sip_cps._pin(server.proc.pid, 0)
        os.sched_setaffinity(0, {1})  # the generator's processes inherit it
    return server, pinned


def run_step(
    server: Server, work: Path, kind: str, target: float, *, rate: float, seconds: float,
    handle: str, seed: int,
) -> Step:  # fmt: skip
    from sim.load.report import live_figures
    from sim.load.runner import run_load

    plan = make_plan(server, work / f"{kind}-{target:g}", rate=rate, seconds=seconds,
                     handle=handle, seed=seed)  # fmt: skip
    svc0 = sip_cps._family_cpu(server.proc.pid)
    gen0 = _children_cpu()
    t0 = time.monotonic()
    result = run_load(plan, token=OPERATOR_TOKEN, max_seconds=plan.horizon + 60.0)
    wall = time.monotonic() - t0
    gen = _children_cpu() - gen0
    svc1 = sip_cps._family_cpu(server.proc.pid)
    svc = sum(cpu - svc0.get(p, 0.0) for p, cpu in svc1.items())
    figs = live_figures(result)
    calls = result.calls
    invites = sorted(c["invite_at"] for c in calls if c.get("invite_at") is not None)
    span = invites[-1] - invites[0] if len(invites) > 1 else 0.0
    achieved = round((len(invites) - 1) / span, 1) if span > 0 else 0.0
    offered = (len(plan.callers) - 1) / max(
        1e-9, float(plan.callers.at.max() - plan.callers.at.min())
    )
    failed = figs["calls"]["failed"]
    loss = figs["rtp_callers_heard"]["loss"]
    agree = result.service.get("agree")
    peak = peak_concurrent(calls)
    ok = len(calls) or 1
    busy = gen / result.elapsed if result.elapsed > 0 else 0.0
    svc_busy = svc / result.elapsed if result.elapsed > 0 else 0.0
    reasons = []
    if result.stopped != "done":
        reasons.append(f"stopped: {result.stopped}")
    if failed:
        causes = ", ".join(f"{k} {v}" for k, v in figs["calls"]["failure_causes"].items())
        reasons.append(f"{failed} calls failed ({causes})")
    unserved = {k: v for k, v in figs["calls"]["outcomes"].items()
                if k not in ("answered", "failed")}  # fmt: skip
    if unserved:  # nobody abandons: every caller should reach an agent
        reasons.append("not answered: " + ", ".join(f"{k} {v}" for k, v in unserved.items()))
    if figs["calls"]["placed"] < len(plan.callers):
        reasons.append(f"placed {figs['calls']['placed']} of {len(plan.callers)}")
    if achieved < ACHIEVED_SHARE * offered:
        reasons.append(f"placed at {achieved:g}/s < {ACHIEVED_SHARE * offered:.1f}")
    if loss >= LOSS_LIMIT:
        reasons.append(f"loss {loss:.3%}")
    if agree is not True:
        reasons.append("counts disagree" if agree is False else "counts not checked")
    if kind == "concurrency" and peak < 0.95 * target:
        reasons.append(f"peak {peak} concurrent < {0.95 * target:g}")
    why = "; ".join(reasons)
    if why and busy >= 0.9 * max(1, result.workers):
        why += f" (the generator at {busy:.2f} cores: its own limit)"
    elif why and svc_busy >= 0.9:
        why += f" (the service at {svc_busy:.2f} cores)"
    return Step(
        kind=kind,
        target=target,
        planned=len(plan.callers),
        placed=figs["calls"]["placed"],
        failed=failed,
        failures=figs["calls"]["failure_causes"],
        unserved_paths=dict(
            Counter(str(c.get("path")) for c in calls if c["outcome"] != "answered")
        ),
        stopped=result.stopped,
        achieved_cps=achieved,
        peak_concurrent=peak,
        loss=loss,
        setup_p95_ms=_ms(figs["timings"]["setup_seconds"]["p95"]),
        ivr_p95_s=figs["timings"]["ivr_seconds"]["p95"],
        agree=agree,
        service_cpu_ms_per_call=round(1000 * svc / ok, 2),
        generator_cpu_ms_per_call=round(1000 * gen / ok, 2),
        generator_busy=round(busy, 2),
        service_busy=round(svc_busy, 2),
        seconds=round(wall, 1),
        held=not why,
        why_not=why,
    )


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if isinstance(v, int | float) else str(v)


def _row(s: Step) -> str:
    held = "yes" if s.held else "no: " + s.why_not
    line = (
        f"{s.kind:>11} {s.target:>7g} {s.placed:>6} {s.failed:>6} {s.achieved_cps:>8g} "
        f"{s.peak_concurrent:>5} {s.loss * 100:>7.3f} {_fmt(s.setup_p95_ms):>8} "
        f"{_fmt(s.service_cpu_ms_per_call):>8} {_fmt(s.generator_cpu_ms_per_call):>8} "
        f"{s.service_busy:>5g} {s.generator_busy:>5g} {held}"
    )
    return line + "".join(f"\n{'':>12} not answered {n}: {p}" for p, n in s.unserved_paths.items())


HEADER = (
    f"{'search':>11} {'target':>7} {'calls':>6} {'failed':>6} {'placed/s':>8} {'peak':>5} "
    f"{'loss %':>7} {'setup95':>8} {'svc ms':>8} {'gen ms':>8} {'svc c':>5} {'gen c':>5} held"
)


def bounded_search(
    measure: Callable[[int], Step], *, start: int, top: int, deadline: float,
    worst: Callable[[int], float], max_steps: int = 6,
) -> list[Step]:  # fmt: skip
    """Double until not held, then bisect (``sip_cps.next_rate``); no step started unless it
    can finish (``worst(target)`` seconds) before ``deadline``."""
    steps: list[Step] = []
    nxt: int | None = start
    while nxt is not None and len(steps) < max_steps:
        if time.monotonic() + worst(nxt) > deadline:
            break
        steps.append(measure(nxt))
        nxt = sip_cps.next_rate(
            [int(s.target) for s in steps if s.held],
            [int(s.target) for s in steps if not s.held],
            max_rate=top,
            min_gap=0.15,
        )
    return steps


def _best(steps: list[Step]) -> Step | None:
    return max((s for s in steps if s.held), key=lambda s: s.target, default=None)


def _settle(server: Server) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if server.api("/api/debug/sip")["active_calls"] == 0:
                return
        time.sleep(0.25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--step-seconds", type=float, default=10.0, help="arrivals per step (10)")
    parser.add_argument("--start-rate", type=int, default=20, help="first call rate (20/s)")
    parser.add_argument("--max-rate", type=int, default=320, help="highest rate tried (320/s)")
    parser.add_argument("--start-concurrency", type=int, default=50, help="first C (50)")
    parser.add_argument("--max-concurrency", type=int, default=400, help="highest C (400)")
    parser.add_argument("--concurrency-rate", type=float, default=8.0,
                        help="arrival rate of the concurrency search (8/s)")  # fmt: skip
    parser.add_argument("--sipp-seconds", type=float, default=4.0, help="SIPp step length (4)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds in all (300)")
    args = parser.parse_args(argv)
    if min(args.step_seconds, args.start_rate, args.start_concurrency, args.budget) <= 0:
        parser.error("every figure must be > 0")
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian package sip-tester)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    try:
        server, pinned = start_service(work)
    except RuntimeError as exc:
        print(f"bench.load: hotline serve did not start:\n{exc}"[-2000:], file=sys.stderr)
        return 1
    print(f"hotline serve pid {server.proc.pid} on {server.sip}, {4 * AGENTS_PER_GROUP} agents; "
          f"held = placed on time, all done, none failed, loss < {LOSS_LIMIT:.1%}, "
          "counts agree", flush=True)  # fmt: skip
    print(HEADER, flush=True)
    rate_steps: list[Step] = []
    conc_steps: list[Step] = []
    sipp_steps: list[sip_cps.Step] = []
    try:
        budget_end = started + args.budget

        def by_rate(rate: int) -> Step:
            step = run_step(server, work, "rate", rate, rate=rate, seconds=args.step_seconds,
                            handle='{ distribution = "exponential", mean_seconds = 1 }',
                            seed=rate)  # fmt: skip
            print(_row(step), flush=True)
            _settle(server)
            return step

        rate_steps = bounded_search(
            by_rate, start=args.start_rate, top=args.max_rate,
            deadline=started + 0.42 * args.budget, worst=lambda _: args.step_seconds + 30,
        )  # fmt: skip

        def talk_for(c: int) -> float:  # C calls up: IVR, ring, talk
            return max(1.0, c / args.concurrency_rate - IVR_SECONDS - 0.3)

        def by_concurrency(c: int) -> Step:
            r = args.concurrency_rate
            talk = talk_for(c)
            step = run_step(server, work, "concurrency", c, rate=r,
                            seconds=talk + args.step_seconds, handle=f"{talk:.3f}", seed=c)  # fmt: skip
            print(_row(step), flush=True)
            _settle(server)
            return step

        conc_steps = bounded_search(
            by_concurrency, start=args.start_concurrency, top=args.max_concurrency,
            deadline=started + 0.75 * args.budget,
            worst=lambda c: 2 * talk_for(c) + args.step_seconds + 30,
        )  # fmt: skip

        def by_sipp(rate: int) -> sip_cps.Step:
            step = sip_cps.run_step(server, "hotline", rate, args.sipp_seconds, work, 200.0)
            print(f"{'sipp':>11} {rate:>7} {step.calls:>6} {step.failed:>6} "
                  f"{step.achieved_cps:>8g}  p99 {_fmt(step.p99_ms)} ms, svc "
                  f"{_fmt(step.service_cpu_ms_per_call)} ms/call, sipp "
                  f"{_fmt(step.sipp_cpu_ms_per_call)} ms/call  "
                  f"{'yes' if step.held else 'no: ' + step.why_not}", flush=True)  # fmt: skip
            sip_cps._settle(server)
            return step

        sipp_steps = sip_cps.search(
            by_sipp, start_rate=200, max_rate=4000, max_steps=6, deadline=budget_end,
            step_seconds=args.sipp_seconds * 1.5 + 12,
        )  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    best_rate, best_conc = _best(rate_steps), _best(conc_steps)
    sipp = sip_cps.summarize("hotline", sipp_steps)
    summary: dict[str, Any] = {
        "bench": "load",
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "cpus": os.cpu_count(),
        "pinned": pinned,
        "agents": 4 * AGENTS_PER_GROUP,
        "loss_limit": LOSS_LIMIT,
        "held_cps": best_rate.target if best_rate else 0,
        "not_held_cps": min(
            (
                s.target
                for s in rate_steps
                if not s.held and (best_rate is None or s.target > best_rate.target)
            ),
            default=None,
        ),
        "held_concurrent": best_conc.target if best_conc else 0,
        "held_peak_concurrent": best_conc.peak_concurrent if best_conc else 0,
        "not_held_concurrent": min(
            (
                s.target
                for s in conc_steps
                if not s.held and (best_conc is None or s.target > best_conc.target)
            ),
            default=None,
        ),
        "sipp_held_cps": sipp["held_cps"],
        "sipp_not_held_cps": sipp["not_held_cps"],
        "rate_steps": [asdict(s) for s in rate_steps],
        "concurrency_steps": [asdict(s) for s in conc_steps],
        "sipp": sipp,
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    print()
    print(f"through the IVR and the queues (hotline load): {summary['held_cps']:g} calls/s held "
          f"(not {_fmt(summary['not_held_cps'])}), {summary['held_concurrent']} concurrent "
          f"calls held (peak {summary['held_peak_concurrent']}; not "
          f"{_fmt(summary['not_held_concurrent'])})")  # fmt: skip
    print(f"SIPp on the same number (INVITE/200/ACK/BYE, no keys, no agent): "
          f"{sipp['held_cps']} calls/s held (not {_fmt(sipp['not_held_cps'])})")  # fmt: skip
    print(f"load average (1 min) {summary['loadavg_1m_before']} before, "
          f"{summary['loadavg_1m_after']} after; {summary['seconds']:g} s in all")  # fmt: skip
    print(json.dumps(summary, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
