"""What-if: the same callers through two routing configurations, on the same seeds.

The routing API (``POST /api/routing/what-if``, ``hotline/center/routing.py``) asks "what would
this change do?": the callers of one workload go through the configuration running now and
through the proposed one with common random numbers (docs/simulator.md), and both predictions
come back with their 95 % intervals and the paired differences (:func:`sim.run.compare`).

The workload is one of:

* a **workload** (``[simulation]`` and ``[[arrivals]]``: what ``hotline sim run SERVICE.toml
  --workload WORKLOAD.toml`` takes): each configuration's own agents are simulated, one each,
  logged in all along (:func:`sim.scenario.service_scenario`). The current side is exactly
  ``hotline sim run`` on the service's file with that workload, on the same seed;
* a **full scenario** (with ``[[queues]]`` and ``[[agent_groups]]``), inline or a shipped example
  by name (``examples/scenarios/``): its own agents and callers; the queues it shares by name
  with the configuration take the configuration's settings (the current ones, then the proposed
  ones), the others keep the scenario's (:func:`overlay`). Inline scenarios may not name files
  (``replay``): the service reads no file a request names;
* the **recent history** (:func:`history_workload`): the callers of the last hours replayed from
  the engine's log (queue-entry instants, queue, skills and priority as the IVR set them,
  observed talk times, the patience of those who hung up), served by the agents who were logged
  in at some time in that window.

Everything crosses a process boundary as plain data: :func:`run` takes and returns JSON-ready
dicts, so the service runs it in a worker process (:func:`worker`) and its event loop never
waits on a simulation. Nothing here reads a clock, the network or a file a caller names.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from acd.config import AcdConfig, ConfigError, ConfigIssue
from acd.widening import members, relax_for
from routing.skills import meets
from sim.distributions import Distribution
from sim.report import comparison_json, result_json
from sim.run import Comparison, compare
from sim.scenario import (
    AgentGroup,
    ArrivalSource,
    Replay,
    Scenario,
    ScenarioError,
    Simulation,
    scenario_from_dict,
    service_scenario,
)
from sim.workload import expected_calls

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "scenarios"
"""The shipped example scenarios (a source checkout's ``examples/scenarios``)."""

_EXAMPLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

HISTORY_HANDLE_VALUES = 5000
"""Observed talk times kept per queue (the latest) for the callers whose own is unknown."""

SIDES = ("current", "proposed")


def examples() -> list[str]:
    """Names of the shipped example scenarios."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.toml"))


def _issue(path: str, reason: str, line: int | None = None) -> ScenarioError:
    return ScenarioError(issues=[ConfigIssue(path, reason, line)])


def scenario_document(spec: str | Mapping[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """A scenario's plain data, from its JSON form, its TOML text or a shipped example's name,
    and the folder its file references resolve in (None for an inline scenario: it may not name
    files)."""
    if isinstance(spec, Mapping):
        raw = dict(spec)
        base = None
    elif _EXAMPLE_NAME.fullmatch(spec):
        path = EXAMPLES_DIR / f"{spec}.toml"
        if not path.is_file():
            raise _issue("", f"no shipped example {spec!r} (examples: {', '.join(examples())})")
        return tomllib.loads(path.read_text(encoding="utf-8")), EXAMPLES_DIR
    else:
        try:
            raw = tomllib.loads(spec)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
            raise _issue("", f"not valid TOML: {reason}", int(m.group(1)) if m else None) from None
        base = None
    arrivals = raw.get("arrivals")
    if isinstance(arrivals, list):
        for i, a in enumerate(arrivals):
            if isinstance(a, Mapping) and "replay" in a:
                raise _issue(
                    f"arrivals[{i}].replay",
                    "an inline scenario cannot read files on the server; "
                    "use from_history for recorded traffic",
                )
    return raw, base


def is_workload(raw: Mapping[str, Any]) -> bool:
    """A workload (callers only: the configuration brings queues and agents), not a scenario."""
    return "queues" not in raw and "agent_groups" not in raw


def overlay(raw: Mapping[str, Any], table: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The scenario with the configuration's settings (``table``: an ``[acd]`` table) for every
    ``[[queues]]`` entry whose name the configuration has, and the names so replaced."""
    queues = raw.get("queues")
    known = table.get("queues") or {}
    if not isinstance(queues, list) or not isinstance(known, Mapping):
        return dict(raw), []
    out: list[Any] = []
    shared: list[str] = []
    for q in queues:
        name = q.get("name") if isinstance(q, Mapping) else None
        if isinstance(name, str) and name in known:
            out.append({"name": name, **known[name]})
            shared.append(name)
        else:
            out.append(q)
    return {**raw, "queues": out}, shared


# --- the recent history ----------------------------------------------------------------------


def history_workload(
    records: Iterable[Mapping[str, Any]],
    *,
    start: float,
    end: float,
    acd: AcdConfig,
    logged_in: Iterable[str] = (),
) -> dict[str, Any]:
    """The callers of ``[start, end)`` from the engine's log rows (``LogRecord.to_dict()``, as
    the case store keeps them), as plain data for :func:`history_scenario`.

    * A caller is the first ``call_queued`` (or ``call_refused``: they count as arrivals too) of
      a call id with kind ``call`` (voicemail messages and callbacks are work, not callers), at
      its instant, shifted so that ``start`` is 0.
    * Its queue, priority and skills are those recorded; the queue's own part (``acd``, the
      configuration of today) is taken off again, because each configuration adds its own:
      priority minus the queue's, and skills at exactly the queue's level are the queue's.
    * Handle time: the recorded talk (``call_ended``); unknown (not answered, or still talking)
      is drawn from the queue's observed talks, or the queue's ``default_handle_seconds``.
    * Patience: for a caller who hung up waiting (``call_abandoned``), the time from queueing to
      hanging up; unknown for the others, who never abandon in the replay (their patience was
      at least their wait; an estimate would make callers abandon who did not).
    * Agents: those who were logged in at some time in the window (a state other than
      ``logged_out``, an offer or an answer in the log) or are now (``logged_in``); each is
      simulated logged in for the whole window.
    """
    first: dict[str, Mapping[str, Any]] = {}
    talk: dict[str, float] = {}
    abandoned_at: dict[str, float] = {}
    agents: set[str] = set(logged_in)
    talks: dict[str, list[float]] = {}
    for r in records:
        at = float(r.get("at", 0.0))
        if not start <= at < end:
            continue
        kind = r.get("kind")
        cid = r.get("call_id")
        data = r.get("data") or {}
        aid = r.get("agent_id")
        working = kind in ("call_offered", "call_answered") or (
            kind == "agent_state" and data.get("state") != "logged_out"
        )
        if aid and working:
            agents.add(str(aid))
        if cid is None:
            continue
        if kind in ("call_queued", "call_refused") and cid not in first:
            if data.get("kind", "call") == "call" and r.get("queue"):
                first[cid] = r
        elif kind == "call_ended" and "talk" in data:
            talk[cid] = float(data["talk"])
            q = first[cid].get("queue") if cid in first else r.get("queue")
            if q:
                talks.setdefault(str(q), []).append(float(data["talk"]))
        elif kind == "call_abandoned":
            abandoned_at[cid] = at
    groups: dict[tuple[str, tuple[tuple[str, int], ...], int], list[str]] = {}
    for cid, r in sorted(first.items(), key=lambda kv: float(kv[1]["at"])):
        queue = str(r["queue"])
        data = r.get("data") or {}
        qcfg = acd.queues.get(queue)
        own_priority = int(data.get("priority", 0)) - (qcfg.priority if qcfg else 0)
        required = qcfg.skills if qcfg else {}
        skills = tuple(
            sorted(
                (str(s), int(lvl))
                for s, lvl in (data.get("skills") or {}).items()
                if required.get(s) != lvl
            )
        )
        groups.setdefault((queue, skills, own_priority), []).append(cid)
    sources = []
    for k, ((queue, skills, priority), ids) in enumerate(groups.items()):
        qcfg = acd.queues.get(queue)
        sources.append(
            {
                "name": f"history:{queue}#{k}",
                "queue": queue,
                "skills": dict(skills),
                "priority": priority,
                "at": [float(first[c]["at"]) - start for c in ids],
                "handle": [talk.get(c) for c in ids],
                "patience": [
                    abandoned_at[c] - float(first[c]["at"]) if c in abandoned_at else None
                    for c in ids
                ],
                "handle_values": talks.get(queue, [])[-HISTORY_HANDLE_VALUES:],
                "default_handle": qcfg.default_handle_seconds if qcfg else 180.0,
            }
        )
    first_queue = next(iter(acd.queues.values()), None)
    return {
        "start": start,
        "end": end,
        "hours": (end - start) / 3600.0,
        "calls": len(first),
        "abandoned": sum(1 for c in first if c in abandoned_at),
        "agents": [a for a in acd.agents if a in agents],
        "service_level_seconds": (
            first_queue.service_level_seconds if first_queue is not None else 20.0
        ),
        "sources": sources,
    }


def history_scenario(hist: Mapping[str, Any], acd: AcdConfig, *, name: str) -> Scenario:
    """The callers of :func:`history_workload` against ``acd`` (raises :class:`ScenarioError`
    when a recorded queue is missing from it)."""
    hours = float(hist["hours"])
    sim = Simulation(
        duration_hours=hours,
        warmup_hours=0.0,
        replications=10,
        seed=1,
        service_level_seconds=float(hist["service_level_seconds"]),
        interval_minutes=15.0 if hours <= 12 else 60.0,
    )
    arrivals = []
    for src in hist["sources"]:
        queue = src["queue"]
        if queue not in acd.queues:
            raise _issue(
                "from_history",
                f"callers were recorded in queue {queue!r}, which the {name} routing does not have",
            )
        values = tuple(float(v) for v in src["handle_values"])
        n = len(src["at"])
        arrivals.append(
            ArrivalSource(
                name=src["name"],
                queue=queue,
                handle=(
                    Distribution("empirical", values=values)
                    if values
                    else Distribution("constant", mean=float(src["default_handle"]))
                ),
                patience=Distribution("never", mean=math.inf),
                ivr=Distribution("constant", mean=0.0),
                replay=Replay(
                    at=tuple(src["at"]),
                    handle=tuple(src["handle"]),
                    patience=tuple(src["patience"]),
                    queue=(None,) * n,
                ),
                skills=dict(src["skills"]),
                priority=int(src["priority"]),
            )
        )
    groups = tuple(
        AgentGroup(name=aid, count=1, ids=(aid,), agent={"groups": list(acd.agents[aid].groups)})
        for aid in hist["agents"]
        if aid in acd.agents
    )
    return Scenario(
        name=name,
        simulation=sim,
        acd=acd,
        groups=groups,
        arrivals=tuple(arrivals),
        source="history",
    )


# --- one what-if -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """Both scenarios, validated, and how they will run."""

    current: Scenario
    proposed: Scenario
    replications: int
    seed: int
    notes: tuple[str, ...]

    @property
    def expected_calls(self) -> float:
        """Callers to simulate, both sides and every replication."""
        per_rep = expected_calls(self.current) + expected_calls(self.proposed)
        return per_rep * self.replications


def unserved(scenario: Scenario) -> list[str]:
    """The queues with callers that none of the simulated agents can ever serve (not a member,
    or short of its skills even at the last widening step): a figure no routing can improve."""
    acd = scenario.acd
    agents = [acd.agents[a] for g in scenario.groups for a in g.agent_ids() if a in acd.agents]
    out = []
    for name in dict.fromkeys(src.queue for src in scenario.arrivals):
        q = acd.queues[name]
        relax = relax_for(q, len(q.widening))
        found = members(q, agents)
        if not any(meets(a.skills, q.skills, relax) for a in agents if a.id in found):
            need = ", ".join(f"{s} {lvl}" for s, lvl in q.skills.items())
            why = f"has the skills it requires ({need})" if found and need else "serves it"
            out.append(f"no simulated agent of queue {name!r} {why}")
    return out


def _on_side(exc: ConfigError, side: str) -> ScenarioError:
    return ScenarioError(
        issues=[i._replace(reason=f"{i.reason} (with the {side} routing)") for i in exc.issues]
    )


def prepare(request: Mapping[str, Any]) -> Prepared:
    """Validate a what-if request (plain data; see :func:`run`) into two scenarios. Raises
    :class:`ScenarioError` (an ``acd.config.ConfigError``) naming the key of each mistake."""
    tables = {side: request[side] for side in SIDES}
    configs = {side: AcdConfig.from_dict(tables[side]) for side in SIDES}
    notes: list[str] = []
    scenarios: dict[str, Scenario] = {}
    history = request.get("history")
    if history is not None:
        for side in SIDES:
            scenarios[side] = history_scenario(history, configs[side], name=side)
    else:
        raw, base = scenario_document(request["scenario"])
        workload = is_workload(raw)
        shared: list[str] = []
        for side in SIDES:
            try:
                if workload:
                    sc = service_scenario(configs[side], raw, name=side, base=base)
                else:
                    doc, shared = overlay(raw, tables[side])
                    sc = scenario_from_dict(doc, name=side, base=base or Path("."))
            except ConfigError as exc:
                if side == "current":
                    raise
                raise _on_side(exc, side) from None
            scenarios[side] = replace(sc, name=side)
        if not workload:
            if shared:
                notes.append(
                    "the scenario's agents and callers; queues "
                    + ", ".join(repr(q) for q in shared)
                    + " with the configuration's settings (current, then proposed)"
                )
            else:
                notes.append(
                    "the scenario shares no queue with the configuration: both sides run the "
                    "scenario's own queue settings"
                )
    for side in SIDES:
        notes += [f"with the {side} routing, {text}" for text in unserved(scenarios[side])]
    current = scenarios["current"]
    reps = request.get("replications") or current.simulation.replications
    limit = request.get("max_replications")
    if limit is not None and reps > limit:
        notes.append(f"replications capped at {limit} (asked: {reps})")
        reps = int(limit)
    seed = request.get("seed")
    return Prepared(
        current=current,
        proposed=scenarios["proposed"],
        replications=int(reps),
        seed=int(seed if seed is not None else current.simulation.seed),
        notes=tuple(notes),
    )


def report(cmp: Comparison, prepared: Prepared) -> dict[str, Any]:
    """Both predictions side by side (plain data): per side the figures of ``hotline sim run
    --json`` (``all``, ``queues``, ``skills``, ``intervals``; each a mean and its 95 % interval)
    and its checks; the paired differences proposed minus current (``all``, ``queues``)."""
    both = comparison_json(cmp)
    sides: dict[str, Any] = {}
    elapsed = 0.0
    for side, result in zip(SIDES, cmp.results, strict=True):
        doc = result_json(result)
        sides[side] = {
            "figures": doc["figures"],
            "checks": doc["checks"],
            "calls": doc["performance"]["calls"],
        }
        elapsed += result.elapsed_seconds
    first = result_json(cmp.results[0])
    return {
        "replications": first["replications"],
        "seed": first["seed"],
        "service_level_seconds": first["service_level_seconds"],
        "window_seconds": first["window_seconds"],
        "interval_minutes": first["interval_minutes"],
        "same_callers": both["same_callers"],
        "current": sides["current"],
        "proposed": sides["proposed"],
        "differences": both["differences"]["proposed"],
        "notes": list(prepared.notes),
        "elapsed_seconds": elapsed,
    }


def run(request: Mapping[str, Any]) -> dict[str, Any]:
    """One what-if, plain data in and out.

    ``request``: ``current`` and ``proposed`` (``[acd]`` tables, as ``AcdConfig.from_dict``
    takes them), exactly one of ``scenario`` (a dict, TOML text or a shipped example's name) and
    ``history`` (:func:`history_workload`), and optionally ``replications``,
    ``max_replications`` and ``seed`` (default: the scenario's). Returns :func:`report`."""
    prepared = prepare(request)
    cmp = compare(
        [prepared.current, prepared.proposed],
        replications=prepared.replications,
        seed=prepared.seed,
    )
    return report(cmp, prepared)


def worker(conn: Any, request: Mapping[str, Any]) -> None:
    """A worker process's body: :func:`run` and send one reply on ``conn`` (a
    ``multiprocessing`` connection): ``{"ok": report}``, ``{"invalid": [[path, reason, line],
    ...]}`` or ``{"error": text}``."""
    try:
        reply: dict[str, Any] = {"ok": run(request)}
    except ConfigError as exc:
        reply = {"invalid": [list(i) for i in exc.issues]}
    except Exception as exc:  # the parent answers it; a worker never dies silently
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        conn.send(reply)
    finally:
        conn.close()


__all__ = [
    "EXAMPLES_DIR",
    "Prepared",
    "examples",
    "history_scenario",
    "history_workload",
    "is_workload",
    "overlay",
    "prepare",
    "report",
    "run",
    "scenario_document",
    "unserved",
    "worker",
]
