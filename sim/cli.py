"""hotline sim run|compare and hotline erlang c|a|staff.

    hotline sim run SCENARIO.toml [--replications N] [--seed S] [--json OUT.json] [--plot OUT.png]
    hotline sim compare A.toml B.toml ... [--replications N] [--seed S] [--json OUT] [--plot OUT]
    hotline erlang c --rate R --aht S --agents N --target T [--json]
    hotline erlang a --rate R --aht S --agents N --patience S --target T [--json]
    hotline erlang staff --rate R --aht S --target T --service-level 0.8 [--patience S] [--json]

Rates are calls per hour; AHT, patience and targets in seconds. hotline.cli registers these
with add_commands; python -m sim.cli ... runs them stand-alone. Exit codes: 0 done,
2 bad input (the message names the option or scenario key).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from sim.erlang import ErlangError, QueueFigures, figures, staff
from sim.scenario import Scenario, ScenarioError, load_scenario
from sim.workload import expected_calls

_LONG_RUN_CALLS = 2_000_000
"""Show progress off a tty when a run simulates more callers than this."""


class ProgressBar:
    """Progress on stderr: a tqdm bar redrawn on a tty, a plain line per step otherwise."""

    def __init__(self, label: str, stream: TextIO, *, tty: bool) -> None:
        self.label = label
        self.stream = stream
        self.tty = tty
        self.started = time.perf_counter()
        self._bar: tqdm[Any] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            if self._bar is None:
                self._bar = tqdm(total=total, desc=self.label, unit="replication", file=self.stream)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._bar.close()
            return
        elapsed = time.perf_counter() - self.started
        self.stream.write(f"{self.label}: {done}/{total} replications, {elapsed:.0f} s\n")
        self.stream.flush()


def _progress(label: str, scenarios: Sequence[Scenario], reps: int, quiet: bool) -> Any:
    if quiet:
        return None
    tty = sys.stderr.isatty()
    calls = sum(expected_calls(s) for s in scenarios) * reps
    if tty or calls > _LONG_RUN_CALLS:
        return ProgressBar(label, sys.stderr, tty=tty)
    return None


def _write_json(path: str, doc: Any) -> None:
    text = json.dumps(doc, indent=2, allow_nan=False)
    if path == "-":
        print(text)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


_OUTPUT_OPTIONS = ("json", "plot", "csv")
"""Options naming a file the command writes after the run: checked before it."""


def _check_outputs(args: argparse.Namespace, command: str) -> bool:
    """Print why an output file could not be written (and return False) before a long run."""
    for option in _OUTPUT_OPTIONS:
        path = getattr(args, option, None)
        if not path or path == "-":
            continue
        problem = _unwritable(Path(path))
        if problem:
            print(f"{command}: --{option} {path}: {problem}", file=sys.stderr)
            return False
    if getattr(args, "plot", None):
        from sim.report import plots_available

        if not plots_available():
            print(
                f"{command}: --plot needs matplotlib, which is not installed: "
                "pip install 'hotline[plots]'",
                file=sys.stderr,
            )
            return False
    return True


def _unwritable(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "not writable"
    parent = path.parent
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return None


def _load(path: str, args: argparse.Namespace) -> Scenario:
    sc = load_scenario(path, workload=getattr(args, "workload", None))
    if args.seed is not None:
        sc = sc.with_seed(args.seed)
    if args.replications is not None:
        sc = sc.with_replications(args.replications)
    return sc


def _sim_run(args: argparse.Namespace) -> int:
    from sim.report import plot_result, result_json, result_text
    from sim.run import simulate

    try:
        sc = _load(args.scenario, args)
    except ScenarioError as exc:
        print(f"hotline sim: {exc}", file=sys.stderr)
        return 2
    if not _check_outputs(args, "hotline sim run"):
        return 2
    reps = sc.simulation.replications
    result = simulate(sc, progress=_progress(sc.name, [sc], reps, args.quiet))
    if args.json:
        _write_json(args.json, result_json(result))
    if args.json != "-":
        print(result_text(result))
    if args.plot:
        plot_result(result, args.plot)
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return 0


def _sim_compare(args: argparse.Namespace) -> int:
    from sim.report import comparison_json, comparison_text, plot_comparison
    from sim.run import compare

    if len(args.scenarios) < 2:
        print("hotline sim compare: give at least two scenario files", file=sys.stderr)
        return 2
    if not _check_outputs(args, "hotline sim compare"):
        return 2
    try:
        scenarios = [load_scenario(p) for p in args.scenarios]
    except ScenarioError as exc:
        print(f"hotline sim: {exc}", file=sys.stderr)
        return 2
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        from dataclasses import replace

        scenarios = [replace(s, name=f"{s.name}[{i}]") for i, s in enumerate(scenarios)]
    reps = args.replications or scenarios[0].simulation.replications
    cmp = compare(
        scenarios,
        replications=reps,
        seed=args.seed,
        progress=_progress("compare", scenarios, reps, args.quiet),
    )
    if args.json:
        _write_json(args.json, comparison_json(cmp))
    if args.json != "-":
        print(comparison_text(cmp))
    if args.plot:
        plot_comparison(cmp, args.plot)
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return 0


def _figures_text(f: QueueFigures) -> str:
    model = "Erlang C (M/M/n)" if f.model == "C" else "Erlang A (M/M/n+M)"
    lines = [
        f"{model}: {f.rate_per_hour:g} calls/h, AHT {f.aht_seconds:g} s, {f.agents} agents"
        + (f", mean patience {f.patience_seconds:g} s" if f.patience_seconds is not None else ""),
        f"  offered load        {f.offered_erlangs:.3f} erlangs",
    ]
    if not f.stable:
        lines.append("  unstable: offered load >= agents, the queue grows without bound")
        return "\n".join(lines)
    lines += [
        f"  prob_wait           {f.prob_wait * 100:.2f} %  (callers who wait at all)",
        f"  service_level       {f.service_level * 100:.2f} %  (answered within "
        f"{f.target_seconds:g} s / offered)",
        f"  asa_seconds         {f.asa_seconds:.2f} s  (mean wait of answered callers)",
    ]
    if f.model == "A":
        lines += [
            f"  mean_wait_seconds   {f.mean_wait_seconds:.2f} s  (all callers, abandoners "
            "included)",
            f"  abandon_prob        {f.abandon_prob * 100:.2f} %",
        ]
    lines.append(f"  occupancy           {f.occupancy * 100:.2f} %")
    return "\n".join(lines)


def _clean_json(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _erlang(args: argparse.Namespace) -> int:
    model = args.model
    if model == "a" and args.patience is None:
        print("hotline erlang a: --patience is required", file=sys.stderr)
        return 2
    try:
        f = figures(
            rate_per_hour=args.rate,
            aht_seconds=args.aht,
            agents=args.agents,
            target_seconds=args.target,
            patience_seconds=args.patience if model == "a" else None,
        )
    except ErlangError as exc:
        print(f"hotline erlang: --{exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_clean_json(f.to_dict()), indent=2))
    else:
        print(_figures_text(f))
    return 0


def _erlang_staff(args: argparse.Namespace) -> int:
    if args.max_abandon is not None and args.patience is None:
        print(
            "hotline erlang staff: --max-abandon needs --patience (mean patience, seconds): "
            "abandonment exists only in Erlang A",
            file=sys.stderr,
        )
        return 2
    try:
        s = staff(
            rate_per_hour=args.rate,
            aht_seconds=args.aht,
            target_seconds=args.target,
            service_level=args.service_level,
            asa_seconds=args.asa,
            max_occupancy=args.max_occupancy,
            max_abandon=args.max_abandon,
            patience_seconds=args.patience,
            shrinkage=args.shrinkage,
        )
    except ErlangError as exc:
        print(f"hotline erlang staff: --{exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = {
            "agents": s.agents,
            "scheduled_agents": s.scheduled_agents,
            "figures": _clean_json(s.figures.to_dict()),
        }
        print(json.dumps(doc, indent=2))
    else:
        goals = []
        if args.service_level is not None:
            goals.append(f"service level >= {args.service_level * 100:g} % in {args.target:g} s")
        if args.asa is not None:
            goals.append(f"ASA <= {args.asa:g} s")
        if args.max_occupancy is not None:
            goals.append(f"occupancy <= {args.max_occupancy * 100:g} %")
        if args.max_abandon is not None:
            goals.append(f"abandonment <= {args.max_abandon * 100:g} %")
        print(f"agents needed: {s.agents}  ({', '.join(goals)})")
        if args.shrinkage:
            print(
                f"agents to schedule at {args.shrinkage * 100:g} % shrinkage: {s.scheduled_agents}"
            )
        print(_figures_text(s.figures))
    return 0


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def add_commands(subparsers: Any) -> None:
    """Register sim (run, compare) and erlang (c, a, staff) on an argparse subparsers
    object; each leaf sets func returning an exit code."""
    sim = subparsers.add_parser("sim", help="simulate scenarios on the real ACD engine")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)

    run = sim_sub.add_parser("run", help="simulate one scenario (docs/simulator.md)")
    run.add_argument("scenario", metavar="SCENARIO.toml")
    run.add_argument(
        "--workload",
        metavar="WORKLOAD.toml",
        help="callers to simulate ([simulation], [[arrivals]]) when SCENARIO.toml is the "
        "service's configuration (docs/simulator.md)",
    )
    compare = sim_sub.add_parser(
        "compare", help="several scenarios on the same seed; paired differences"
    )
    compare.add_argument("scenarios", metavar="SCENARIO.toml", nargs="+")
    for p in (run, compare):
        p.add_argument("--replications", type=_positive_int, metavar="N")
        p.add_argument("--seed", type=int, metavar="S")
        p.add_argument("--json", metavar="OUT.json", help="write the figures as JSON ('-': stdout)")
        p.add_argument("--plot", metavar="OUT.png", help="write plots (PNG)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_sim_run)
    compare.set_defaults(func=_sim_compare)

    erl = subparsers.add_parser("erlang", help="Erlang C / Erlang A figures and staffing")
    erl_sub = erl.add_subparsers(dest="erlang_command", required=True)
    for model in ("c", "a"):
        p = erl_sub.add_parser(
            model,
            help="Erlang C (no abandonment)" if model == "c" else "Erlang A (exponential patience)",
        )
        p.add_argument("--rate", type=_positive_float, required=True, help="calls per hour")
        p.add_argument("--aht", type=_positive_float, required=True, help="handle time, seconds")
        p.add_argument("--agents", type=_positive_int, required=True)
        p.add_argument(
            "--patience",
            type=_positive_float,
            required=model == "a",
            default=None,
            help="mean patience, seconds" + (" (Erlang A)" if model == "c" else ""),
        )
        p.add_argument("--target", type=_positive_float, default=20.0, help="seconds (20)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_erlang, model=model)
    st = erl_sub.add_parser("staff", help="agents needed for a service-level (or ASA) goal")
    st.add_argument("--rate", type=_positive_float, required=True, help="calls per hour")
    st.add_argument("--aht", type=_positive_float, required=True, help="handle time, seconds")
    st.add_argument("--target", type=_positive_float, default=20.0, help="seconds (20)")
    st.add_argument("--service-level", type=_positive_float, default=None, help="share, e.g. 0.8")
    st.add_argument("--asa", type=_positive_float, default=None, help="ASA goal, seconds")
    st.add_argument("--max-occupancy", type=_positive_float, default=None, help="share")
    st.add_argument(
        "--max-abandon", type=_positive_float, default=None, help="share (needs --patience)"
    )
    st.add_argument("--patience", type=_positive_float, default=None, help="use Erlang A")
    st.add_argument("--shrinkage", type=_positive_float, default=0.0, help="share, e.g. 0.3")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=_erlang_staff)

    def _staff_default(args: argparse.Namespace) -> int:
        if (
            args.service_level is None
            and args.asa is None
            and args.max_occupancy is None
            and args.max_abandon is None
        ):
            args.service_level = 0.8
        return _erlang_staff(args)

    st.set_defaults(func=_staff_default)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.cli sim run ...`` / ``python -m sim.cli erlang c ...``."""
    parser = argparse.ArgumentParser(prog="hotline", description="hotline simulator and Erlang")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
