"""``hotline load``: drive a running hotline with the scenario's callers and agents.

    hotline load SERVICE.toml --workload WORKLOAD.toml [--target HOST:PORT] [--http HOST:PORT]
                 [--speedup K] [--calls N] [--duration S] [--workers N] [--seed S]
                 [--compare [--replications N]] [--json OUT.json] [--plot OUT.png] [--quiet]
    hotline load SCENARIO.toml --config SERVICE.toml [...]

The operator token for the service's API (its statistics and case records) is read from the
environment variable ``HOTLINE_OPERATOR_TOKEN``, as ``hotline serve`` reads it; without it the
run is not checked against the service. The run is bounded by ``--max-seconds`` (wall clock,
report included) and stops cleanly at Ctrl-C with a report of what it had. Exit codes: 0 done
(no failed call, the three counts agree), 1 failed calls, counts that disagree, or stopped by
the time limit, 2 bad input, 3 the run could not start (agents could not register, a process
did not start), 130 stopped by Ctrl-C (the report is printed). Full reference: docs/load.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

TOKEN_ENV = "HOTLINE_OPERATOR_TOKEN"


def _load(args: argparse.Namespace) -> int:
    from sim.cli import _check_outputs, _write_json
    from sim.load.profile import build_plan, model_gaps
    from sim.load.report import plot_result, result_json, result_text
    from sim.load.runner import LoadRunError, ProgressLine, run_load
    from sim.scenario import ScenarioError

    if not _check_outputs(args, "hotline load"):
        return 2
    try:
        plan = build_plan(
            args.scenario,
            workload=args.workload,
            config=args.config,
            speedup=args.speedup,
            calls=args.calls,
            duration=args.duration,
            seed=args.seed,
            target=args.target,
            http=args.http,
        )
    except ScenarioError as exc:
        for line in str(exc).splitlines():
            print(f"hotline load: {line}", file=sys.stderr)
        return 2
    if len(plan.callers) == 0:
        print("hotline load: the scenario places no call in the time given", file=sys.stderr)
        return 2
    quiet = args.quiet or args.json == "-"
    if not quiet:
        print(
            f"hotline load: {len(plan.callers)} calls over {plan.horizon:.1f} s "
            f"(x{plan.speedup:g}), {len(plan.agents)} agents, to {plan.sip_target[0]}:"
            f"{plan.sip_target[1]}",
            file=sys.stderr,
        )
        for p in plan.paths:
            print(f"  path {p.describe()}", file=sys.stderr)
        for gap in model_gaps(plan):
            print(f"  note: {gap}", file=sys.stderr)
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not quiet:
        print(f"hotline load: {TOKEN_ENV} is not set: the service's counts are not checked",
              file=sys.stderr)  # fmt: skip
    try:
        result = run_load(
            plan,
            workers=args.workers,
            token=token,
            max_seconds=args.max_seconds,
            progress=None if quiet else ProgressLine(len(plan.callers)),
        )
    except LoadRunError as exc:
        print(f"hotline load: {exc}", file=sys.stderr)
        return 3
    comparison: dict[str, Any] | None = None
    if args.compare and result.stopped != "interrupted":
        from sim.load.compare import compare

        try:
            comparison = compare(result, replications=args.replications)
        except KeyboardInterrupt:
            print("hotline load: comparison interrupted", file=sys.stderr)
    doc = result_json(result, comparison)
    if args.json:
        _write_json(args.json, doc)
    if args.json != "-":
        print(result_text(doc))
        if comparison is not None:
            from sim.load.compare import comparison_text

            print(comparison_text(comparison))
    if args.records:
        with open(args.records, "w", encoding="utf-8") as fh:
            for rec in result.calls:
                fh.write(json.dumps({"kind": "call", **rec}, default=str) + "\n")
            for rec in result.offers:
                fh.write(json.dumps({"kind": "offer", **rec}, default=str) + "\n")
    if args.plot:
        plot_result(result, args.plot, comparison)
        if args.json != "-":
            print(f"plot written to {args.plot}")
    if result.stopped == "interrupted":
        return 130
    ok = (
        doc["calls"]["failed"] == 0
        and result.service.get("agree") is not False
        and result.stopped == "done"
    )
    return 0 if ok else 1


def _positive_float(text: str) -> float:
    from sim.cli import _positive_float as pf

    v = pf(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def add_command(subparsers: Any) -> None:
    """Register ``load`` on an argparse subparsers object."""
    from sim.cli import _positive_int

    p = subparsers.add_parser(
        "load",
        help="drive a running hotline with the scenario's callers and agents (docs/load.md)",
        description="Drive a running hotline with the scenario's callers and agents.",
    )
    p.add_argument("scenario", metavar="SCENARIO.toml",
                   help="a scenario file, or the service's configuration with --workload")  # fmt: skip
    p.add_argument("--workload", metavar="WORKLOAD.toml",
                   help="the callers ([simulation], [[arrivals]], [load]) when SCENARIO.toml is "
                   "the service's configuration")  # fmt: skip
    p.add_argument("--config", metavar="SERVICE.toml",
                   help="the running service's configuration when SCENARIO.toml is a scenario "
                   "(agents' passwords, entry points, IVR)")  # fmt: skip
    p.add_argument("--target", metavar="HOST:PORT",
                   help="the service's SIP address (default: its [server] sip)")  # fmt: skip
    p.add_argument("--http", metavar="HOST:PORT",
                   help="the service's HTTP API (default: its [server] http)")  # fmt: skip
    p.add_argument("--speedup", type=_positive_float, metavar="K",
                   help="play the scenario K times faster (default: [load] speedup, or 1)")  # fmt: skip
    p.add_argument("--calls", type=_positive_int, metavar="N", help="place at most N calls")
    p.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                   help="place calls for at most this long (live seconds)")  # fmt: skip
    p.add_argument("--max-seconds", type=_positive_float, metavar="SECONDS",
                   help="wall-clock cap on the whole run, the service's check and the report "
                   "included (default: the arrivals + 110 s)")  # fmt: skip
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="caller processes (default: the cores less one)")  # fmt: skip
    p.add_argument("--seed", type=int, metavar="S", help="the scenario's seed instead of its own")
    p.add_argument("--compare", action="store_true",
                   help="run the same scenario through the simulator and print both")  # fmt: skip
    p.add_argument("--replications", type=_positive_int, metavar="N",
                   help="simulator replications for --compare (default: the scenario's)")  # fmt: skip
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON ('-': stdout)")
    p.add_argument("--records", metavar="OUT.jsonl",
                   help="write every call's and every offer's record, one JSON line each")  # fmt: skip
    p.add_argument("--plot", metavar="OUT.png", help="write plots (PNG; needs hotline[plots])")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_load)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.load.cli load ...``."""
    parser = argparse.ArgumentParser(prog="hotline")
    sub = parser.add_subparsers(dest="command", required=True)
    add_command(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
