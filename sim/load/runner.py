"""Run a load plan: the agents' process, the callers' processes, progress, stop, results.

    result = run_load(plan, workers=2, token=os.environ.get("HOTLINE_OPERATOR_TOKEN"))

The parent (this process) places no call itself. It starts one process for the agents (their
phones, and the service's event stream: :mod:`sim.load.watch`) and ``workers`` caller processes
(``spawn``: each its own asyncio loop, SIP socket and RTP sockets), waits until every agent is
registered and every caller process is ready, sets the run's clock 0 on the board, and shows a
progress line on stderr (calls placed, in the IVR, waiting, talking, done, failed) until the
callers are done. Each call's record arrives as soon as the call ends, so a run cut short still
reports every call that finished.

Bounded in calls (the plan's) and in time: ``max_seconds`` is a wall-clock cap on the whole run,
the report included. Calls are placed and followed until ``max_seconds`` less what the ending
needs (:data:`STOP_GRACE` for hang-ups, time for reading the service); then the board's stop
flag tells every process to stop dialling, hang up what is in progress and report; a process
that does not end in time is terminated. Ctrl-C does the same at once (a second Ctrl-C also
skips reading the service). Afterwards, within what is left of the cap, it waits for the
service to hold no call and reads its counters and case records (:mod:`sim.load.service`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from sim.load import agents as agents_mod
from sim.load import callers as callers_mod
from sim.load.profile import LoadPlan
from sim.load.service import Service, ServiceError, Snapshot, agreement, snapshot
from sim.load.shared import Board

REGISTER_TIMEOUT = 30.0
"""The agents' process must have registered every agent (and opened the event stream) by then."""
READY_TIMEOUT = 30.0
"""Every caller process must be ready (imported, sockets open) by then."""
STOP_GRACE = 10.0
"""After the stop flag: callers hang up and report (3 s), agents refuse what rings, hang up and
unregister (8 s); then what is left is terminated."""
VERIFY_SECONDS = 30.0
"""What the cap keeps for reading the service at the end (at most; a quarter of a short cap)."""
DRAIN_SECONDS = 60.0
"""Default cap beyond the last arrival: calls in progress then end, and the report is made."""


class LoadRunError(Exception):
    """The run could not start (agents could not register, a worker died at start...)."""


@dataclass(slots=True)
class LoadResult:
    plan: LoadPlan
    calls: list[dict[str, Any]]
    """One record per caller placed (``sim.load.callers``), by index."""
    offers: list[dict[str, Any]]
    """One record per offer an agent's phone received (``sim.load.agents``)."""
    registrations: dict[str, int]
    workers: int
    stopped: str
    """``done``, ``interrupted`` (Ctrl-C) or ``time limit``."""
    elapsed: float
    horizon: float
    """Live seconds: callers due before this were placed (the plan's, or where it stopped)."""
    started_wall: float
    service: dict[str, Any] = field(default_factory=dict)
    """``agreement`` of the generator's, the engine's and the case records' counts."""
    lost: int = 0
    """Calls placed whose record never came back (their process was terminated)."""
    watch: dict[str, Any] | None = None
    """The agents' process's follow of the service's event stream (None: not followed)."""
    run_tag: str = ""
    total_seconds: float = 0.0
    """Wall-clock seconds of the whole run, set-up and the service's check included."""


Progress = Callable[[dict[str, int], int], None]


class ProgressLine:
    """calls placed / total, in IVR, waiting, talking, done, failed: a tqdm bar on a terminal,
    a plain line every few seconds otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total = total
        self.bar: Any = None
        self.last = 0.0
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="calls placed", unit="call", file=self.stream)

    def __call__(self, t: dict[str, int], final: int = 0) -> None:
        text = (f"IVR {t['ivr']} waiting {t['waiting']} talking {t['talking']} "
                f"done {t['done']} failed {t['failed']}")  # fmt: skip
        if self.bar is not None:
            self.bar.update(t["placed"] - self.bar.n)
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()
            if final:
                self.bar.close()
            return
        now = time.monotonic()
        if final or now - self.last >= 5.0:
            self.last = now
            self.stream.write(f"hotline load: placed {t['placed']}/{self.total} {text}\n")
            self.stream.flush()


class _Run:
    """The parent's bookkeeping: what each process said so far."""

    def __init__(self, workers: int) -> None:
        self.calls: dict[int, dict[str, Any]] = {}
        self.offers: list[dict[str, Any]] = []
        self.registrations: dict[str, int] | None = None
        self.watch: dict[str, Any] | None = None
        self.agents_info: dict[str, Any] = {}
        self.ready = 0
        self.callers_done: set[int] = set()
        self.agents_done = False
        self.workers = workers
        self.hurry = False
        """Ctrl-C twice: skip what can be skipped."""

    def take(self, item: Any) -> None:
        kind = item[0]
        if kind == "call":
            rec = item[2]
            self.calls[int(rec["i"])] = rec
        elif kind == "callers":
            self.callers_done.add(int(item[1]))
        elif kind == "ready":
            self.ready += 1
        elif kind == "registered":
            self.registrations = dict(item[1])
            self.watch = item[2] if len(item) > 2 else None
        elif kind == "agents":
            self.offers = list(item[2])
            self.agents_info = dict(item[3]) if len(item) > 3 else {}
            self.agents_done = True

    def pump(self, results: Any, timeout: float) -> None:
        """Take every message waiting, waiting at most ``timeout`` for the first."""
        try:
            self.take(results.get(timeout=max(0.0, timeout)))
        except queue_mod.Empty:
            return
        while True:
            try:
                self.take(results.get_nowait())
            except queue_mod.Empty:
                return


def run_load(
    plan: LoadPlan,
    *,
    workers: int | None = None,
    token: str | None = None,
    max_seconds: float | None = None,
    drain_seconds: float = DRAIN_SECONDS,
    progress: Progress | None = None,
    verify: bool = True,
    verify_seconds: float = VERIFY_SECONDS,
) -> LoadResult:
    """Play ``plan`` against the running service; see the module doc. ``verify_seconds``:
    what the cap keeps for reading the service (a long run's case records take longer)."""
    begin = time.monotonic()
    n = len(plan.callers)
    workers = max(1, workers or max(1, (os.cpu_count() or 2) - 1))
    workers = min(workers, max(1, n))
    cap = (
        max_seconds
        if max_seconds is not None
        else plan.horizon + drain_seconds + STOP_GRACE + VERIFY_SECONDS + 10.0
    )
    hard_end = begin + cap
    verify_reserve = min(verify_seconds, cap / 4) if verify and token else 0.0
    stop_reserve = min(STOP_GRACE, cap / 4)
    calls_end = hard_end - verify_reserve - stop_reserve
    ctx = mp.get_context("spawn")
    tag = f"hl{secrets.token_hex(4)}"
    roles = replace(plan.for_workers(), run_tag=tag)
    board = Board(ctx, n, workers)
    results: Any = ctx.Queue()
    service = Service(plan.http, token) if verify and token else None
    before = snapshot(service) if service is not None else Snapshot()
    ready_api = service is not None and service.has_route("POST", "/api/agents/{agent_id}/ready")
    run = _Run(workers)
    procs: list[Any] = []
    stopped = "done"
    interrupts = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        board.stop.value = 1
        if interrupts > 1:
            run.hurry = True

    # The children start with SIGINT ignored (inherited across exec): a Ctrl-C reaches the
    # whole process group, and only the parent acts on it, through the board.
    old_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    t0 = 0.0
    started_wall = time.time()
    try:
        child_cap = max(1.0, hard_end - time.monotonic())
        agent_proc = ctx.Process(
            target=agents_mod.worker_main,
            args=(roles, board, results, child_cap, token if service else None, ready_api),
            name="hotline-load-agents",
            daemon=True,
        )
        agent_proc.start()
        procs.append(agent_proc)
        for w in range(workers):
            p = ctx.Process(
                target=callers_mod.worker_main,
                args=(roles, board, w, workers, results, child_cap),
                name=f"hotline-load-callers-{w}",
                daemon=True,
            )
            p.start()
            procs.append(p)
        signal.signal(signal.SIGINT, on_sigint)
        # 1. agents registered, event stream open, caller processes ready
        deadline = min(time.monotonic() + max(REGISTER_TIMEOUT, READY_TIMEOUT), calls_end)
        while not interrupts and time.monotonic() < deadline:
            if run.registrations is not None and run.ready >= workers:
                break
            if any(p.exitcode is not None for p in procs):
                break
            run.pump(results, 0.1)
        t0 = time.monotonic()
        if interrupts:
            stopped = "interrupted"
        else:
            _check_start(run, procs, workers)
            # 2. the calls
            t0 = time.monotonic() + 0.2
            started_wall = time.time() + 0.2
            board.start_at.value = t0
        while not interrupts:
            run.pump(results, 0.25)
            if progress is not None:
                progress(board.totals(), 0)
            if len(run.callers_done) >= workers:
                break
            if all(p.exitcode is not None for p in procs[1:]):
                break  # every caller process ended (their last words are read below)
            if time.monotonic() > calls_end:
                stopped = "time limit"
                break
        if interrupts:
            stopped = "interrupted"
        # 3. the end: everyone hangs up and reports
        elapsed = time.monotonic() - t0
        board.stop.value = 1
        _finish(run, results, procs, workers, hard_end)
        if progress is not None:
            progress(board.totals(), 1)
    finally:
        board.stop.value = 1
        # a moment to end by themselves (the agents unregister), then terminated
        grace = time.monotonic() + (0.5 if run.hurry else min(STOP_GRACE, 5.0))
        for p in procs:
            if p.exitcode is None:
                p.join(timeout=max(0.0, grace - time.monotonic()))
            if p.exitcode is None:
                p.terminate()
                p.join(timeout=2)
        signal.signal(signal.SIGINT, old_handler)
    if interrupts and stopped != "interrupted":
        stopped = "interrupted"
    placed = board.totals()["placed"]
    horizon = plan.horizon if stopped == "done" else min(plan.horizon, max(elapsed, 0.0))
    result = LoadResult(
        plan=plan,
        calls=[run.calls[i] for i in sorted(run.calls)],
        offers=run.offers,
        registrations=run.registrations or {},
        workers=workers,
        stopped=stopped,
        elapsed=elapsed,
        horizon=horizon,
        started_wall=started_wall,
        lost=max(0, placed - len(run.calls)),
        watch={**(run.watch or {}), **run.agents_info} if run.watch is not None else None,
        run_tag=tag,
    )
    if service is None:
        result.service = {"agree": None, "skipped": "no operator token (HOTLINE_OPERATOR_TOKEN)"}
    elif run.hurry:
        result.service = {"agree": None, "skipped": "interrupted twice"}
    else:
        left = hard_end - time.monotonic()
        if left < 2.0:
            result.service = {"agree": None, "skipped": "the time limit left no time to read "
                              "the service"}  # fmt: skip
        else:
            result.service = verify_with_service(result, service, before, deadline=hard_end)
    result.total_seconds = time.monotonic() - begin
    return result


def _check_start(run: _Run, procs: list[Any], workers: int) -> None:
    """Raise LoadRunError when the run cannot start (the processes are stopped by the caller)."""
    regs = run.registrations
    if regs is None:
        dead = [p.name for p in procs if p.exitcode is not None]
        raise LoadRunError(
            "the agents did not register in time" + (f" ({', '.join(dead)} exited)" if dead else "")
        )
    bad = {a: s for a, s in regs.items() if s != 200}
    if bad or not regs:
        raise LoadRunError(
            "agents could not register: "
            + (", ".join(f"{a} ({s})" for a, s in sorted(bad.items())) or "no agent")
        )
    if run.ready < workers:
        raise LoadRunError(f"only {run.ready} of {workers} caller processes started")


def _finish(run: _Run, results: Any, procs: list[Any], workers: int, hard_end: float) -> None:
    """After the stop flag: read every process's last words, within :data:`STOP_GRACE` (less
    when the cap is nearer), or at once after a second Ctrl-C."""
    deadline = min(time.monotonic() + STOP_GRACE, max(hard_end - 1.0, time.monotonic() + 1.0))
    while time.monotonic() < deadline and not run.hurry:
        if len(run.callers_done) >= workers and run.agents_done:
            break
        if all(p.exitcode is not None for p in procs):
            break
        run.pump(results, 0.1)
    run.pump(results, 0.05)  # what the last process said as it ended


def verify_with_service(
    result: LoadResult, service: Service, before: Snapshot, *, deadline: float
) -> dict[str, Any]:
    """Wait for the service to settle, then compare the three counts (by ``deadline``,
    monotonic; what could not be read in time is reported as such)."""
    idle = service.wait_idle(max(0.0, min(20.0, deadline - time.monotonic() - 1.0)))
    after = snapshot(service)
    known = {str(c.get("call_id")) for c in result.calls}
    cases: list[dict[str, Any]] = []
    others: list[Any] = []
    unread = 0
    if not after.error:
        try:
            listed = service.cases_since(result.started_wall - 1.0, deadline)
            ours = [c for c in listed if str(c.get("call_id")) in known]
            others = [c.get("id") for c in listed if str(c.get("call_id")) not in known]
            cases = service.cases((int(c["id"]) for c in ours), deadline)
            unread = len(ours) - len(cases)
        except ServiceError as exc:
            after.error = str(exc)
    work: dict[str, int] = {}
    for o in result.offers:
        if o.get("result") == "delivered":
            work[str(o.get("queue", ""))] = work.get(str(o.get("queue", "")), 0) + 1
    out = agreement(result.calls, before, after, cases, others=others, unread=unread,
                    work_taken=work)  # fmt: skip
    out["service_idle"] = idle
    if not idle:
        out["agree"] = False
        out.setdefault("errors", []).append("the service still held calls after the run")
    return out


__all__ = ["LoadResult", "LoadRunError", "ProgressLine", "run_load"]
