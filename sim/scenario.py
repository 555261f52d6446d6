"""Scenario files: what to simulate, loaded from TOML and validated once.

A scenario has four parts (full reference and examples: docs/simulator.md,
examples/scenarios/)::

    [simulation]            # duration_hours, warmup_hours, replications, seed,
                            # service_level_seconds, interval_minutes
    [[queues]]              # name + the queue's routing settings in the live engine's form
                            # (acd.config: strategy, skills, groups, ring_timeout, wrap_up_seconds...)
    [[agent_groups]]        # name, count, queues, skills, shift, breaks, ring_no_answer,
                            # answer_seconds, + any acd agent key (max_misses, priority...)
    [[arrivals]]            # queue, rate_per_hour | curve | replay, handle_time, patience,
                            # ivr_time, skills, priority

The routing part of every queue and agent is validated by the same pydantic models as the
service's ``[acd]`` (``acd.config``: :class:`ScenarioModel` extends them) and handed to
:meth:`acd.config.AcdConfig.from_dict`, so the simulator routes with exactly the configuration
the live service would read.

A *service* configuration (the file ``hotline serve`` runs: ``[acd.queues.*]``, ``[[agents]]``)
is a scenario too, given a workload file (``[simulation]`` and ``[[arrivals]]``): its queues and
its agents (one simulated agent each, logged in all along) are simulated, the sections the
simulator does not need (server, sip, trunks, ivr...) are ignored (:func:`load_scenario`).

Every error is a :class:`ScenarioError` (an ``acd.config.ConfigError``) naming the key, e.g.
``arrivals[0].handle_time.mean_seconds: expected seconds > 0, got -3``; a file's shape mistakes
are all reported at once, each with its line.
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import WithJsonSchema

from acd.config import (
    STRICT,
    AcdConfig,
    AcdModel,
    AgentRouting,
    ConfigError,
    ConfigIssue,
    NonNegative,
    QueueModel,
    QueueName,
    Skills,
    issues_from_pydantic,
)
from sim.distributions import Distribution, DistributionError, parse_distribution


class ScenarioError(ConfigError):
    """An unusable scenario; the message is ``[file[:line]: ]key.path: reason``, one line per
    mistake. The project's :class:`acd.config.ConfigError`, named for the simulator."""

    def __init__(
        self, message: str = "", *, issues: Sequence[ConfigIssue] = (), file: str = ""
    ) -> None:
        if issues:
            super().__init__("", issues=issues, file=file)
        else:
            path, sep, reason = message.partition(": ")
            super().__init__(path if sep else "", reason if sep else message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    """The ``[simulation]`` table."""

    duration_hours: float
    """Measured period: statistics cover callers entering a queue in
    ``[warmup_hours, warmup_hours + duration_hours)``."""
    warmup_hours: float = 0.0
    """Simulated before the measured period, to reach steady state (0 for a day's curve)."""
    replications: int = 10
    """Independent runs; confidence intervals are taken over them."""
    seed: int = 1
    """Master seed; each replication and purpose derives its own stream from it."""
    service_level_seconds: float = 20.0
    """Threshold of the reported service level."""
    interval_minutes: float = 30.0
    """Width of the per-interval report rows."""
    drain: bool = True
    """After the last arrival keep running until every measured caller has left (no censoring)."""
    max_drain_hours: float = 48.0
    """Stop draining after this long past the last arrival (callers still waiting are reported
    ``unfinished``, e.g. when no agent is left to take them)."""

    @property
    def horizon(self) -> float:
        """End of arrivals, seconds from clock 0."""
        return (self.warmup_hours + self.duration_hours) * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Break:
    """A pause from ``at`` for ``seconds``; agent ``i`` of the group starts ``i * stagger`` later."""

    at: float
    seconds: float
    stagger: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentGroup:
    """``count`` identical agents (ids ``NAME-001`` ...)."""

    name: str
    count: int
    agent: Mapping[str, Any]
    """The acd agent table every member gets (skills, groups, queues, max_misses...)."""
    shift_start: float = 0.0
    """Log-in time, seconds from clock 0."""
    shift_end: float = math.inf
    """Log-out time (a call in progress finishes first)."""
    breaks: tuple[Break, ...] = ()
    ring_no_answer: float = 0.0
    """Probability that an offer rings out without an answer (the engine times it out)."""
    answer: Distribution = field(default_factory=lambda: Distribution("constant", mean=0.0))
    """Ringing time before the agent answers."""
    rona_ready_seconds: float = 60.0
    """How long an agent the engine paused for ring-no-answer stays paused before becoming ready."""

    ids: tuple[str, ...] = ()
    """The agents' ids when they are named (a service configuration's ``[[agents]]``)."""

    def agent_ids(self) -> list[str]:
        if self.ids:
            return list(self.ids)
        return [f"{self.name}-{i + 1:03d}" for i in range(self.count)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Curve:
    """Piecewise-constant arrival rates: ``rates_per_hour[k]`` holds on
    ``[k * interval, (k + 1) * interval)`` from clock 0; 0 after the last entry."""

    interval_seconds: float
    rates_per_hour: tuple[float, ...]

    def rate_at(self, t: float) -> float:
        k = int(t // self.interval_seconds)
        return self.rates_per_hour[k] if 0 <= k < len(self.rates_per_hour) else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """Recorded callers: queue-entry times (seconds) and optionally their handle, patience and
    queue, from a CSV file or the engine's log records (the case store's rows)."""

    at: tuple[float, ...]
    handle: tuple[float | None, ...]
    patience: tuple[float | None, ...]
    queue: tuple[str | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArrivalSource:
    """One ``[[arrivals]]`` entry."""

    name: str
    """``arrivals[i]`` name (stream names derive from it); defaults to ``QUEUE#i``."""
    queue: str
    handle: Distribution
    patience: Distribution
    ivr: Distribution
    rate_per_hour: float | None = None
    curve: Curve | None = None
    replay: Replay | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A validated scenario."""

    name: str
    simulation: Simulation
    acd: AcdConfig
    """The routing configuration (queues and every agent) as the live engine reads it."""
    groups: tuple[AgentGroup, ...]
    arrivals: tuple[ArrivalSource, ...]
    source: str = ""

    def agent_group(self) -> dict[str, AgentGroup]:
        """Agent id -> its group."""
        return {aid: g for g in self.groups for aid in g.agent_ids()}

    def with_seed(self, seed: int) -> Scenario:
        from dataclasses import replace

        return replace(self, simulation=replace(self.simulation, seed=seed))

    def with_replications(self, replications: int) -> Scenario:
        from dataclasses import replace

        return replace(self, simulation=replace(self.simulation, replications=replications))


# --- loading ---------------------------------------------------------------------------------


def _read_toml(p: Path) -> tuple[dict[str, Any], str]:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from exc


SERVICE_KEYS = frozenset(
    {"server", "sip", "media", "agents", "trunks", "entry_points", "ivr", "voicemail"}
)
"""Top-level tables only a service configuration has."""


def is_service_config(raw: Mapping[str, Any]) -> bool:
    """A service configuration (``hotline serve``'s file) rather than a scenario file."""
    acd = raw.get("acd")
    return bool(SERVICE_KEYS & set(raw)) or (isinstance(acd, Mapping) and "queues" in acd)


def load_scenario(path: str | Path, *, workload: str | Path | None = None) -> Scenario:
    """Read and validate a scenario TOML file, or a service configuration plus a ``workload``
    file (``[simulation]`` and ``[[arrivals]]``). Raises :class:`ScenarioError` naming the file,
    and the line of each mistake."""
    p = Path(path)
    raw, text = _read_toml(p)
    if is_service_config(raw):
        if workload is None:
            raise ScenarioError(
                f"{p}: a service configuration: give the callers to simulate with --workload "
                "WORKLOAD.toml (a [simulation] table and [[arrivals]]; docs/simulator.md)"
            )
        w = Path(workload)
        wraw, wtext = _read_toml(w)
        try:
            shared = ServiceShared.model_validate(raw)
        except ValidationError as exc:
            raise ScenarioError.of(
                issues_from_pydantic(exc, model=ServiceShared), file=str(p), text=text
            ) from None
        try:
            WorkloadModel.model_validate(wraw)
        except ValidationError as exc:
            raise ScenarioError.of(
                issues_from_pydantic(exc, model=WorkloadModel), file=str(w), text=wtext
            ) from None
        try:
            return _from_service(shared, wraw, name=p.stem, base=w.parent, source=str(p))
        except ScenarioError as exc:
            if exc.issues and exc.issues[0].path.startswith("acd."):
                raise _with_file(exc, str(p), text) from exc
            raise _with_file(exc, str(w), wtext) from exc
    if workload is not None:
        raise ScenarioError(f"{p}: --workload is for a service configuration; this is a scenario")
    try:
        return scenario_from_dict(raw, name=p.stem, base=p.parent, source=str(p))
    except ScenarioError as exc:
        raise _with_file(exc, str(p), text) from exc


def _with_file(exc: ConfigError, file: str, text: str) -> ScenarioError:
    return ScenarioError.of(exc.issues, file=file, text=text)  # type: ignore[return-value]


def _err(key: str, reason: str) -> ScenarioError:
    return ScenarioError(f"{key}: {reason}")


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _err(key, f"expected a table, got {value!r}")
    return value


def _list_of_tables(raw: Mapping[str, Any], key: str, *, required: bool) -> list[Mapping[str, Any]]:
    value = raw.get(key)
    if value is None:
        if required:
            raise _err(key, "missing (at least one [[" + key + "]] entry is needed)")
        return []
    if not isinstance(value, list) or (required and not value):
        raise _err(key, "expected a non-empty array of tables ([[" + key + "]])")
    return [_table(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _number(value: Any, key: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _err(key, f"expected a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise _err(key, f"expected a number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _integer(value: Any, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(key, f"expected an integer, got {value!r}")
    if value < minimum:
        raise _err(key, f"expected an integer >= {minimum}, got {value}")
    return value


def _unknown(table: Mapping[str, Any], key: str, known: set[str]) -> None:
    for k in table:
        if k not in known:
            raise _err(f"{key}.{k}", f"unknown key (expected one of {', '.join(sorted(known))})")


def _dist(spec: Any, key: str, *, allow_zero: bool = False) -> Distribution:
    try:
        return parse_distribution(spec, key, allow_zero=allow_zero)
    except DistributionError as exc:
        raise ScenarioError(str(exc)) from exc


_SIM_KEYS = {
    "duration_hours", "warmup_hours", "replications", "seed", "service_level_seconds",
    "interval_minutes", "drain", "max_drain_hours",
}  # fmt: skip
_GROUP_KEYS = {
    "name",
    "count",
    "shift",
    "breaks",
    "ring_no_answer",
    "answer_seconds",
    "rona_ready_seconds",
}
_AGENT_KEYS = {
    "skills", "groups", "queues", "max_misses", "wrap_up_seconds", "priority",
    "reject_delay_seconds", "busy_delay_seconds", "no_answer_delay_seconds",
}  # fmt: skip
_ARRIVAL_KEYS = {
    "name", "queue", "rate_per_hour", "curve", "replay", "handle_time", "patience", "ivr_time",
    "skills", "priority",
}  # fmt: skip


def _simulation(raw: Any) -> Simulation:
    t = _table(raw, "simulation")
    _unknown(t, "simulation", _SIM_KEYS)
    if "duration_hours" not in t:
        raise _err("simulation.duration_hours", "missing")
    drain = t.get("drain", True)
    if not isinstance(drain, bool):
        raise _err("simulation.drain", f"expected true or false, got {drain!r}")
    seed = t.get("seed", 1)
    return Simulation(
        duration_hours=_number(t["duration_hours"], "simulation.duration_hours", strict=True),
        warmup_hours=_number(t.get("warmup_hours", 0.0), "simulation.warmup_hours"),
        replications=_integer(t.get("replications", 10), "simulation.replications", minimum=1),
        seed=_integer(seed, "simulation.seed", minimum=0),
        service_level_seconds=_number(
            t.get("service_level_seconds", 20.0), "simulation.service_level_seconds"
        ),
        interval_minutes=_number(
            t.get("interval_minutes", 30.0), "simulation.interval_minutes", strict=True
        ),
        drain=drain,
        max_drain_hours=_number(
            t.get("max_drain_hours", 48.0), "simulation.max_drain_hours", strict=True
        ),
    )


def _group(t: Mapping[str, Any], i: int, queue_names: set[str]) -> AgentGroup:
    key = f"agent_groups[{i}]"
    _unknown(t, key, _GROUP_KEYS | _AGENT_KEYS)
    name = t.get("name", f"group{i + 1}")
    if not isinstance(name, str) or not name or "." in name:
        raise _err(f"{key}.name", f"expected a non-empty name without dots, got {name!r}")
    if "count" not in t:
        raise _err(f"{key}.count", "missing")
    count = _integer(t["count"], f"{key}.count", minimum=1)
    if "queues" not in t:
        raise _err(f"{key}.queues", "missing (the queues these agents serve)")
    queues = t["queues"]
    names = list(queues) if isinstance(queues, Mapping | list) else None
    if names is None:
        raise _err(f"{key}.queues", f"expected a list of queue names or a table, got {queues!r}")
    for q in names:
        if q not in queue_names:
            raise _err(f"{key}.queues", f"unknown queue {q!r} (queues: {sorted(queue_names)})")
    agent = {k: v for k, v in t.items() if k in _AGENT_KEYS}
    agent.setdefault("groups", [name])
    start, end = 0.0, math.inf
    if "shift" in t:
        sh = _table(t["shift"], f"{key}.shift")
        _unknown(sh, f"{key}.shift", {"start_hours", "end_hours"})
        start = _number(sh.get("start_hours", 0.0), f"{key}.shift.start_hours") * 3600.0
        if "end_hours" in sh:
            end = _number(sh["end_hours"], f"{key}.shift.end_hours") * 3600.0
            if end <= start:
                raise _err(f"{key}.shift.end_hours", "expected a time after start_hours")
    breaks = []
    raw_breaks = t.get("breaks", [])
    if not isinstance(raw_breaks, list):
        raise _err(f"{key}.breaks", "expected an array of tables")
    for j, b in enumerate(raw_breaks):
        bk = f"{key}.breaks[{j}]"
        bt = _table(b, bk)
        _unknown(bt, bk, {"at_hours", "minutes", "stagger_minutes"})
        for req in ("at_hours", "minutes"):
            if req not in bt:
                raise _err(f"{bk}.{req}", "missing")
        breaks.append(
            Break(
                at=_number(bt["at_hours"], f"{bk}.at_hours") * 3600.0,
                seconds=_number(bt["minutes"], f"{bk}.minutes", strict=True) * 60.0,
                stagger=_number(bt.get("stagger_minutes", 0.0), f"{bk}.stagger_minutes") * 60.0,
            )
        )
    rona = _number(t.get("ring_no_answer", 0.0), f"{key}.ring_no_answer")
    if rona >= 1.0:
        raise _err(f"{key}.ring_no_answer", f"expected a probability in [0, 1), got {rona}")
    return AgentGroup(
        name=name,
        count=count,
        agent=agent,
        shift_start=start,
        shift_end=end,
        breaks=tuple(breaks),
        ring_no_answer=rona,
        answer=_dist(t.get("answer_seconds", 0.0), f"{key}.answer_seconds", allow_zero=True),
        rona_ready_seconds=_number(
            t.get("rona_ready_seconds", 60.0), f"{key}.rona_ready_seconds", strict=True
        ),
    )


def _curve(raw: Any, key: str) -> Curve:
    t = _table(raw, key)
    _unknown(t, key, {"interval_minutes", "rates_per_hour"})
    rates = t.get("rates_per_hour")
    if not isinstance(rates, list) or not rates:
        raise _err(f"{key}.rates_per_hour", "expected a non-empty list of calls per hour")
    return Curve(
        interval_seconds=_number(
            t.get("interval_minutes", 30.0), f"{key}.interval_minutes", strict=True
        )
        * 60.0,
        rates_per_hour=tuple(_number(r, f"{key}.rates_per_hour[{k}]") for k, r in enumerate(rates)),
    )


def _optional_float(text: str | None, key: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise _err(key, f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise _err(key, f"expected seconds >= 0, got {text!r}")
    return v


def read_replay_csv(path: Path, key: str) -> Replay:
    """CSV with a header: ``at_seconds`` (queue-entry time) and optional ``handle_seconds``,
    ``patience_seconds``, ``queue`` columns."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise _err(key, f"cannot read {path}: {exc.strerror or exc}") from exc
    if not rows or "at_seconds" not in rows[0]:
        raise _err(key, f"{path}: expected a CSV header with at_seconds")
    at, handle, patience, queue = [], [], [], []
    for n, row in enumerate(rows, start=2):
        where = f"{key} ({path.name} line {n})"
        t = _optional_float(row.get("at_seconds"), f"{where}.at_seconds")
        if t is None:
            raise _err(f"{where}.at_seconds", "missing")
        at.append(t)
        handle.append(_optional_float(row.get("handle_seconds"), f"{where}.handle_seconds"))
        patience.append(_optional_float(row.get("patience_seconds"), f"{where}.patience_seconds"))
        queue.append(row.get("queue") or None)
    return Replay(at=tuple(at), handle=tuple(handle), patience=tuple(patience), queue=tuple(queue))


def replay_from_log(records: Sequence[Mapping[str, Any]]) -> Replay:
    """Callers recorded by the engine's log (``acd.model.LogRecord.to_dict()`` rows, as the case
    store keeps them): each ``call_queued`` is an arrival at its ``at`` (clock shifted to start at
    0) and its ``call_ended`` ``talk`` its handle time. Overflow re-queues are not new callers."""
    first: dict[str, tuple[float, str | None]] = {}
    talk: dict[str, float] = {}
    for r in records:
        cid = r.get("call_id")
        if cid is None:
            continue
        if r.get("kind") == "call_queued" and cid not in first:
            first[cid] = (float(r["at"]), r.get("queue"))
        elif r.get("kind") == "call_ended":
            data = r.get("data") or {}
            if "talk" in data:
                talk[cid] = float(data["talk"])
    order = sorted(first, key=lambda c: first[c][0])
    t0 = first[order[0]][0] if order else 0.0
    return Replay(
        at=tuple(first[c][0] - t0 for c in order),
        handle=tuple(talk.get(c) for c in order),
        patience=tuple(None for _ in order),
        queue=tuple(first[c][1] for c in order),
    )


def _replay(raw: Any, key: str, base: Path) -> Replay:
    if not isinstance(raw, str) or not raw:
        raise _err(key, f"expected a file name (.csv, or .jsonl of engine log rows), got {raw!r}")
    p = Path(raw)
    if not p.is_absolute():
        p = base / p
    if p.suffix == ".jsonl":
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise _err(key, f"cannot read {p}: {exc.strerror or exc}") from exc
        try:
            rows = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as exc:
            raise _err(key, f"{p}: not JSON lines: {exc}") from exc
        return replay_from_log(rows)
    return read_replay_csv(p, key)


def _arrival(t: Mapping[str, Any], i: int, queues: set[str], base: Path) -> ArrivalSource:
    key = f"arrivals[{i}]"
    _unknown(t, key, _ARRIVAL_KEYS)
    queue = t.get("queue")
    if queue not in queues:
        raise _err(f"{key}.queue", f"expected one of {sorted(queues)}, got {queue!r}")
    kinds = [k for k in ("rate_per_hour", "curve", "replay") if k in t]
    if len(kinds) != 1:
        raise _err(key, "give exactly one of rate_per_hour, curve, replay")
    rate = curve = replay = None
    if "rate_per_hour" in t:
        rate = _number(t["rate_per_hour"], f"{key}.rate_per_hour", strict=True)
    elif "curve" in t:
        curve = _curve(t["curve"], f"{key}.curve")
    else:
        replay = _replay(t["replay"], f"{key}.replay", base)
        for q in replay.queue:
            if q is not None and q not in queues:
                raise _err(f"{key}.replay", f"recorded queue {q!r} is not in the scenario")
    if "handle_time" not in t:
        raise _err(f"{key}.handle_time", "missing, e.g. { distribution = 'exponential', "
                   "mean_seconds = 180 }")  # fmt: skip
    skills = t.get("skills", {})
    _table(skills, f"{key}.skills")
    for s, lvl in skills.items():
        if isinstance(lvl, bool) or not isinstance(lvl, int) or not 1 <= lvl <= 10:
            raise _err(f"{key}.skills.{s}", f"expected a level 1-10, got {lvl!r}")
    priority = t.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise _err(f"{key}.priority", f"expected an integer, got {priority!r}")
    name = t.get("name", f"{queue}#{i}")
    if not isinstance(name, str) or not name:
        raise _err(f"{key}.name", f"expected a non-empty string, got {name!r}")
    return ArrivalSource(
        name=name,
        queue=queue,
        handle=_dist(t["handle_time"], f"{key}.handle_time"),
        patience=_dist(t.get("patience", {"distribution": "never"}), f"{key}.patience"),
        ivr=_dist(t.get("ivr_time", 0.0), f"{key}.ivr_time", allow_zero=True),
        rate_per_hour=rate,
        curve=curve,
        replay=replay,
        skills=dict(skills),
        priority=priority,
    )


def scenario_from_dict(
    raw: Mapping[str, Any], *, name: str = "scenario", base: Path | None = None, source: str = ""
) -> Scenario:
    """Validate plain data (a parsed TOML document) into a :class:`Scenario`; every shape
    mistake is reported at once (:class:`ScenarioModel`), then the references and the
    distributions are checked."""
    base = base or Path(".")
    try:
        ScenarioModel.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(issues=issues_from_pydantic(exc, model=ScenarioModel)) from None
    _unknown(
        raw, "scenario", {"simulation", "queues", "agent_groups", "arrivals", "acd", "name", "load"}
    )
    if "simulation" not in raw:
        raise _err("simulation", "missing [simulation] table")
    sim = _simulation(raw["simulation"])
    queue_tables = _list_of_tables(raw, "queues", required=True)
    queues: dict[str, dict[str, Any]] = {}
    queue_index: dict[str, int] = {}
    for i, q in enumerate(queue_tables):
        qname = q.get("name")
        if not isinstance(qname, str) or not qname or "." in qname:
            raise _err(f"queues[{i}].name", f"expected a queue name without dots, got {qname!r}")
        if qname in queues:
            raise _err(f"queues[{i}].name", f"duplicate queue {qname!r}")
        queues[qname] = {k: v for k, v in q.items() if k != "name"}
        queue_index[qname] = i
    group_tables = _list_of_tables(raw, "agent_groups", required=True)
    groups = [_group(g, i, set(queues)) for i, g in enumerate(group_tables)]
    seen: set[str] = set()
    for i, g in enumerate(groups):
        if g.name in seen:
            raise _err(f"agent_groups[{i}].name", f"duplicate group {g.name!r}")
        seen.add(g.name)
    arrivals = [
        _arrival(a, i, set(queues), base)
        for i, a in enumerate(_list_of_tables(raw, "arrivals", required=True))
    ]
    extra = _table(raw.get("acd", {}), "acd")
    _unknown(extra, "acd", {"max_overflow_hops", "agent_defaults"})
    table: dict[str, Any] = dict(extra)
    table["queues"] = queues
    table["agents"] = {aid: dict(g.agent) for g in groups for aid in g.agent_ids()}
    group_of = {aid: i for i, g in enumerate(groups) for aid in g.agent_ids()}
    try:
        acd = AcdConfig.from_dict(table, path="acd")
    except ConfigError as exc:
        mapped = [
            i._replace(path=_scenario_path(i.path, queue_index, group_of)) for i in exc.issues
        ]
        raise ScenarioError(issues=list(dict.fromkeys(mapped))) from exc
    return Scenario(
        name=str(raw.get("name", name)),
        simulation=sim,
        acd=acd,
        groups=tuple(groups),
        arrivals=tuple(arrivals),
        source=source,
    )


def _scenario_path(
    message: str, queue_index: Mapping[str, int], group_of: Mapping[str, int]
) -> str:
    """Rewrite ``acd.queues.NAME.key`` / ``acd.agents.ID.key`` into the scenario's own keys."""
    if message.startswith("acd.queues."):
        rest = message.removeprefix("acd.queues.")
        for qname, i in queue_index.items():
            if rest == qname or rest.startswith(qname + "."):
                return f"queues[{i}]{rest[len(qname) :]}"
    if message.startswith("acd.agents."):
        rest = message.removeprefix("acd.agents.")
        for aid, i in group_of.items():
            if rest == aid or rest.startswith(aid + "."):
                return f"agent_groups[{i}]{rest[len(aid) :]}"
    return message


def single_queue(
    *,
    rate_per_hour: float,
    aht_seconds: float,
    agents: int,
    patience_seconds: float | None = None,
    duration_hours: float = 8.0,
    warmup_hours: float = 1.0,
    replications: int = 10,
    seed: int = 1,
    service_level_seconds: float = 20.0,
    strategy: str = "longest-idle",
    queue: Mapping[str, Any] | None = None,
    group: Mapping[str, Any] | None = None,
) -> Scenario:
    """The Erlang model as a scenario: one queue, ``agents`` identical agents, Poisson arrivals,
    exponential handle time and (when given) exponential patience. ``queue`` and ``group`` add
    settings to the ``[[queues]]`` and ``[[agent_groups]]`` tables."""
    arrival: dict[str, Any] = {
        "queue": "q",
        "rate_per_hour": rate_per_hour,
        "handle_time": {"distribution": "exponential", "mean_seconds": aht_seconds},
    }
    if patience_seconds is not None:
        arrival["patience"] = {"distribution": "exponential", "mean_seconds": patience_seconds}
    return scenario_from_dict(
        {
            "simulation": {
                "duration_hours": duration_hours,
                "warmup_hours": warmup_hours,
                "replications": replications,
                "seed": seed,
                "service_level_seconds": service_level_seconds,
            },
            "queues": [{"name": "q", "strategy": strategy, **(queue or {})}],
            "agent_groups": [{"name": "g", "count": agents, "queues": ["q"], **(group or {})}],
            "arrivals": [arrival],
        },
        name=f"mmn_{agents}",
    )


# --- the file's shape: pydantic models (validation of every shape mistake at once, JSON Schema) --

_DISTRIBUTION = WithJsonSchema(
    {
        "anyOf": [{"type": "number", "minimum": 0}, {"type": "object"}],
        "description": "seconds, or { distribution = ..., mean_seconds = ... } (docs/simulator.md)",
    }
)
DistributionSpec = Annotated[Any, _DISTRIBUTION]


class SimulationModel(BaseModel):
    """``[simulation]``; keys and meaning: :class:`Simulation`."""

    model_config = STRICT

    duration_hours: float = Field(gt=0)
    warmup_hours: float = Field(default=0.0, ge=0)
    replications: int = Field(default=10, ge=1)
    seed: int = Field(default=1, ge=0)
    service_level_seconds: float = Field(default=20.0, ge=0)
    interval_minutes: float = Field(default=30.0, gt=0)
    drain: bool = True
    max_drain_hours: float = Field(default=48.0, gt=0)


class ScenarioQueue(QueueModel):
    """A ``[[queues]]`` entry: a name and the service's queue keys (``[acd.queues.NAME]``)."""

    name: QueueName


class ShiftModel(BaseModel):
    model_config = STRICT

    start_hours: float = Field(default=0.0, ge=0)
    end_hours: float | None = Field(default=None, ge=0)


class BreakModel(BaseModel):
    model_config = STRICT

    at_hours: float = Field(ge=0)
    minutes: float = Field(gt=0)
    stagger_minutes: float = Field(default=0.0, ge=0)


class AgentGroupModel(AgentRouting):
    """An ``[[agent_groups]]`` entry: ``count`` agents with the routing keys of an ACD agent."""

    count: int = Field(ge=1)
    shift: ShiftModel | None = None
    breaks: list[BreakModel] = Field(default=[])
    ring_no_answer: float = Field(default=0.0, ge=0, lt=1)
    answer_seconds: DistributionSpec = 0.0
    rona_ready_seconds: float = Field(default=60.0, gt=0)


class CurveModel(BaseModel):
    model_config = STRICT

    interval_minutes: float = Field(default=30.0, gt=0)
    rates_per_hour: list[NonNegative]


class ArrivalModel(BaseModel):
    """An ``[[arrivals]]`` entry: exactly one of ``rate_per_hour``, ``curve``, ``replay``."""

    model_config = STRICT

    name: str | None = None
    queue: str
    rate_per_hour: float | None = Field(default=None, gt=0)
    curve: CurveModel | None = None
    replay: str | None = None
    handle_time: DistributionSpec
    patience: DistributionSpec = None
    ivr_time: DistributionSpec = 0.0
    skills: Skills = {}
    priority: int = 0


class ScenarioAcd(BaseModel):
    """A scenario's ``[acd]``: the settings not per queue or agent."""

    model_config = STRICT

    max_overflow_hops: int = Field(default=5, ge=0)
    agent_defaults: AgentRouting | None = None


LoadTable = Annotated[
    dict[str, Any] | None,
    WithJsonSchema(
        {
            "type": "object",
            "description": "hotline load's settings (docs/load.md); the simulator ignores them",
        }
    ),
]
"""``[load]``: how ``hotline load`` plays the callers and agents live (IVR keys, time
acceleration...); validated by ``sim.load.profile``, ignored by the simulator."""


class ScenarioModel(BaseModel):
    """A scenario file."""

    model_config = STRICT

    name: str | None = None
    simulation: SimulationModel
    queues: Annotated[list[ScenarioQueue], Field(min_length=1)]
    agent_groups: Annotated[list[AgentGroupModel], Field(min_length=1)]
    arrivals: Annotated[list[ArrivalModel], Field(min_length=1)]
    acd: ScenarioAcd | None = None
    load: LoadTable = None


class WorkloadModel(BaseModel):
    """A workload file for ``hotline sim run SERVICE.toml --workload WORKLOAD.toml``."""

    model_config = STRICT

    name: str | None = None
    simulation: SimulationModel
    arrivals: Annotated[list[ArrivalModel], Field(min_length=1)]
    load: LoadTable = None


class ServiceAgent(AgentRouting):
    """A service configuration's ``[[agents]]`` entry, as the simulator reads it (the login
    keys are accepted and unused)."""

    id: str
    password: str = ""
    extension: str = ""
    role: str = "agent"


class ServiceShared(BaseModel):
    """What the simulator takes from a service configuration: ``[acd]`` and ``[[agents]]``.
    Every other section is the service's business and is ignored here."""

    model_config = ConfigDict(**{**STRICT, "extra": "ignore"})

    acd: AcdModel = AcdModel()
    agents: list[ServiceAgent] = []


def _from_service(
    shared: ServiceShared, workload: Mapping[str, Any], *, name: str, base: Path, source: str
) -> Scenario:
    """A scenario from a service configuration: its queues, its agents (each logged in for the
    whole run, answering at once) and the workload's simulation and arrivals."""
    routing = {}
    for a in shared.agents:
        given = {k: getattr(a, k) for k in a.model_fields_set if k in AgentRouting.model_fields}
        given.setdefault("name", a.name or a.id)
        routing[a.id] = AgentRouting.model_construct(_fields_set=set(given), **given)
    acd = shared.acd.build(routing)
    found = acd.issues(path="acd")
    if found:
        raise ScenarioError(issues=found, file=source)
    return service_scenario(acd, workload, name=name, base=base, source=source)


def service_scenario(
    acd: AcdConfig,
    workload: Mapping[str, Any],
    *,
    name: str = "workload",
    base: Path | None = None,
    source: str = "",
) -> Scenario:
    """A routing configuration (built: queues and every agent) plus a workload (``[simulation]``
    and ``[[arrivals]]``, validated by :class:`WorkloadModel` here) as a scenario: each agent of
    ``acd`` is one simulated agent, logged in for the whole run and answering at once. What
    ``hotline sim run SERVICE.toml --workload WORKLOAD.toml`` runs, and the routing API's
    what-if (``sim/whatif.py``) on the live configuration."""
    try:
        WorkloadModel.model_validate(workload)
    except ValidationError as exc:
        raise ScenarioError(issues=issues_from_pydantic(exc, model=WorkloadModel)) from None
    sim = _simulation(workload["simulation"])
    queues = set(acd.queues)
    arrivals = [
        _arrival(a, i, queues, base or Path("."))
        for i, a in enumerate(_list_of_tables(workload, "arrivals", required=True))
    ]
    groups = tuple(
        AgentGroup(name=aid, count=1, ids=(aid,), agent={"groups": list(acd.agents[aid].groups)})
        for aid in acd.agents
    )
    return Scenario(
        name=str(workload.get("name", name)),
        simulation=sim,
        acd=acd,
        groups=groups,
        arrivals=tuple(arrivals),
        source=source,
    )
