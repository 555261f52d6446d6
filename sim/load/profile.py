"""What a load run plays: the scenario's callers and the service's agents, as plain data.

Pure planning, no sockets and no SIP: :func:`build_plan` reads the scenario (a scenario file, or
the service's configuration plus a workload file, exactly as ``hotline sim run`` reads them), the
``[load]`` table of that file, and the service's configuration (agents' passwords, entry points,
the IVR), and returns a :class:`LoadPlan`: every caller with its arrival instant, the keys it
presses, its patience and its handle time; every agent with its ring delay and its share of
missed offers.

Time acceleration: the run plays the scenario ``speedup`` times faster. Every time the scenario
gives (arrival instants, IVR time, patience, handle time, ring delay, the service-level
threshold) is divided by ``speedup``; the service's own timers (ring timeout, wrap-up, maximum
wait, announcements) are the running service's and are not. :func:`accelerated` is the
scenario the simulator must run to predict the live run: the same division, the same engine
configuration.

Callers come from ``sim.workload.draw_callers`` on the scenario's seed, replication 0: the
same callers (instants, handle times, patience) the simulator's first replication draws.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from acd.config import STRICT, ConfigIssue, issues_from_pydantic
from sim.distributions import Distribution, DistributionError, Streams, parse_distribution
from sim.scenario import (
    AgentGroup,
    ArrivalSource,
    Curve,
    DistributionSpec,
    Replay,
    Scenario,
    ScenarioError,
    is_service_config,
    load_scenario,
)
from sim.workload import draw_callers

DtmfMethod = Literal["rfc4733", "inband", "info"]
DIGITS = frozenset("0123456789*#ABCD")
DIGIT_SECONDS = 0.1
"""How long one key sounds (RFC 4733 event duration, in-band tone, INFO Duration)."""


class LoadError(ScenarioError):
    """An unusable load setting: ``[file[:line]: ]key.path: reason``, one line per mistake."""


# --- the [load] table ------------------------------------------------------------------------


class PathModel(BaseModel):
    """A ``[[load.paths]]`` entry: how callers of a queue get there through the IVR."""

    model_config = STRICT

    queue: str
    """The queue this path leads to (callers of the arrival sources of this queue take it)."""
    keys: list[str] = []
    """Key groups in order, e.g. ``["1", "1"]`` (language, then sales) or ``["3", "1234#",
    "1"]``; the digits of a group follow each other, the caller's IVR time is spread over the
    groups."""
    share: float = Field(default=1.0, gt=0)
    """Proportion among the paths of the same queue (normalised)."""
    dial: str | None = None
    """Number dialled; default ``[load].dial``, else the entry point that leads to the IVR."""
    dtmf: DtmfMethod | None = None
    """How keys are sent on this path; default ``[load].dtmf``."""
    arrivals: str | None = None
    """Only the callers of this ``[[arrivals]]`` source (by name); default every source of
    ``queue``."""


class AgentBehaviourModel(BaseModel):
    """``[load.agents]``: how the agents behave (scenario seconds), for every agent."""

    model_config = STRICT

    answer_seconds: DistributionSpec = None
    """Ring delay before answering; default: the scenario's agent groups' (0 for a service
    configuration)."""
    ring_no_answer: float | None = Field(default=None, ge=0, lt=1)
    """Share of offers left to ring out."""
    rona_ready_seconds: float | None = Field(default=None, gt=0)
    """How long an agent the engine paused for ring-no-answer waits before becoming ready."""
    passwords: dict[str, str] = {}
    """Agent id -> SIP password, for agents whose configuration holds no plain password."""


class LoadModel(BaseModel):
    """``[load]`` of a scenario or workload file (docs/load.md)."""

    model_config = STRICT

    speedup: float = Field(default=1.0, gt=0)
    """Play the scenario this many times faster (``--speedup`` overrides)."""
    dial: str | None = None
    """Number callers dial; default: the entry point of kind ``hotline`` (the IVR), or a
    ``queue`` entry point for a queue no IVR path reaches."""
    dtmf: DtmfMethod = "rfc4733"
    """Keys as RFC 4733 events, in-band tones (no telephone-event offered) or SIP INFO."""
    key_gap_seconds: float = Field(default=0.06, ge=0)
    """Silence after each key (live seconds); each key sounds 100 ms."""
    message_seconds: DistributionSpec = 20.0
    """How long a caller sent to voicemail speaks (scenario seconds)."""
    paths: list[PathModel] = []
    agents: AgentBehaviourModel = AgentBehaviourModel()


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPath:
    """How callers reach a queue: the number they dial and the keys they press."""

    queue: str
    dial: str
    keys: tuple[str, ...]
    dtmf: DtmfMethod
    share: float = 1.0
    arrivals: str | None = None
    skills: tuple[tuple[str, int], ...] | None = None
    """What the IVR gives the callers of this path (None when not known: a path given by
    hand)."""
    priority: int | None = None

    def describe(self) -> str:
        keys = " ".join(self.keys) if self.keys else "no keys"
        return f"{self.dial} [{keys}] -> {self.queue} ({self.dtmf})"


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """One agent as the generator plays it (live seconds)."""

    id: str
    password: str
    """The SIP password ("" when only hashes are known)."""
    ha1: Mapping[str, Mapping[str, str]]
    """Realm -> digest algorithm -> HA1, from the service's staff file (``hotline passwd``)."""
    answer: tuple[Any, ...]
    """The ring delay's distribution as plain fields (:func:`dist_fields`: the compiled
    ``Distribution`` does not cross a process boundary)."""
    ring_no_answer: float
    rona_ready: float
    max_misses: int


@dataclass(frozen=True, slots=True)
class Leave:
    """When a waiting caller leaves its queue without an agent (the engine's maximum wait,
    followed along the overflow chain) and where to."""

    after: float
    """Seconds after joining the first queue (inf: never)."""
    to: str
    """``voicemail`` or ``rejected`` (``""`` when ``after`` is inf)."""


@dataclass(frozen=True, slots=True)
class CallerTable:
    """One row per caller, in the simulator's order (queue entry), live seconds."""

    at: np.ndarray
    """Arrival (the INVITE) after the run's start."""
    source: np.ndarray
    queue: list[str]
    path: np.ndarray
    """Index into ``LoadPlan.paths``."""
    ivr: np.ndarray
    """The scenario's IVR time: the keys are spread over it."""
    patience: np.ndarray
    handle: np.ndarray
    message: np.ndarray

    def __len__(self) -> int:
        return int(self.at.size)

    def take(self, rows: np.ndarray) -> CallerTable:
        return CallerTable(
            at=self.at[rows],
            source=self.source[rows],
            queue=[self.queue[i] for i in rows.tolist()],
            path=self.path[rows],
            ivr=self.ivr[rows],
            patience=self.patience[rows],
            handle=self.handle[rows],
            message=self.message[rows],
        )


@dataclass(slots=True)
class WorkerPlan:
    """What the worker processes need of a plan (plain data, picklable)."""

    callers: CallerTable
    paths: tuple[KeyPath, ...]
    agents: tuple[AgentPlan, ...]
    leave: dict[str, Leave]
    ring_timeout: dict[str, float]
    seed: int
    sip_target: tuple[str, int]
    key_gap: float
    http: str = ""
    """``http://host:port`` of the service's API."""
    run_tag: str = "hlload"
    """Prefix of the callers' SIP Call-IDs (``sim.load.watch.call_id``): unique per run, so
    the service's events and case records of this run's calls are told apart."""


def dist_fields(d: Distribution) -> tuple[Any, ...]:
    return (d.kind, d.mean, d.cv, d.low, d.high, tuple(d.values))


def dist_from(t: tuple[Any, ...]) -> Distribution:
    return Distribution(t[0], mean=t[1], cv=t[2], low=t[3], high=t[4], values=tuple(t[5]))


@dataclass(frozen=True, slots=True)
class LoadPlan:
    scenario: Scenario
    """The scenario as written (scenario seconds)."""
    speedup: float
    callers: CallerTable
    paths: tuple[KeyPath, ...]
    agents: tuple[AgentPlan, ...]
    leave: Mapping[str, Leave]
    """Per queue."""
    horizon: float
    """Live seconds: callers arriving before this are placed."""
    key_gap: float
    sip_target: tuple[str, int]
    http: str
    """``http://host:port`` of the service's API."""
    source: str = ""

    def for_workers(self) -> WorkerPlan:
        return WorkerPlan(
            callers=self.callers,
            paths=self.paths,
            agents=self.agents,
            leave=dict(self.leave),
            ring_timeout={q: float(c.ring_timeout) for q, c in self.scenario.acd.queues.items()},
            seed=self.scenario.simulation.seed,
            sip_target=self.sip_target,
            key_gap=self.key_gap,
            http=self.http,
        )

    @property
    def service_level_seconds(self) -> float:
        return self.scenario.simulation.service_level_seconds / self.speedup

    @property
    def window(self) -> tuple[float, float]:
        """Measured window (live seconds): callers joining a queue in it count."""
        sim = self.scenario.simulation
        return (sim.warmup_hours * 3600.0 / self.speedup, self.horizon)


# --- helpers -----------------------------------------------------------------------------------


def scaled(d: Distribution, factor: float) -> Distribution:
    """``d`` with every time multiplied by ``factor``."""
    return replace(
        d,
        mean=d.mean * factor,
        low=d.low * factor,
        high=d.high * factor,
        values=tuple(v * factor for v in d.values),
    )


def _scale_opt(values: tuple[float | None, ...], f: float) -> tuple[float | None, ...]:
    return tuple(None if v is None else v * f for v in values)


def accelerated(scenario: Scenario, speedup: float, *, horizon: float | None = None) -> Scenario:
    """The scenario ``speedup`` times faster (every scenario time divided; the engine's
    configuration unchanged): what the simulator runs to predict a load run. ``horizon`` (live
    seconds) cuts the arrivals where the run stopped placing calls."""
    f = 1.0 / speedup
    sim = scenario.simulation
    warmup = sim.warmup_hours * f
    duration = sim.duration_hours * f
    if horizon is not None:
        duration = max(horizon / 3600.0 - warmup, 1e-9)
    arrivals = []
    for a in scenario.arrivals:
        curve = a.curve
        if curve is not None:
            curve = Curve(
                interval_seconds=curve.interval_seconds * f,
                rates_per_hour=tuple(r * speedup for r in curve.rates_per_hour),
            )
        replay = a.replay
        if replay is not None:
            replay = Replay(
                at=tuple(t * f for t in replay.at),
                handle=_scale_opt(replay.handle, f),
                patience=_scale_opt(replay.patience, f),
                queue=replay.queue,
            )
        arrivals.append(
            replace(
                a,
                handle=scaled(a.handle, f),
                patience=scaled(a.patience, f),
                ivr=scaled(a.ivr, f),
                rate_per_hour=None if a.rate_per_hour is None else a.rate_per_hour * speedup,
                curve=curve,
                replay=replay,
            )
        )
    groups = [
        replace(
            g,
            shift_start=g.shift_start * f,
            shift_end=g.shift_end * f,
            breaks=tuple(
                replace(b, at=b.at * f, seconds=b.seconds * f, stagger=b.stagger * f)
                for b in g.breaks
            ),
            answer=scaled(g.answer, f),
            rona_ready_seconds=g.rona_ready_seconds * f,
        )
        for g in scenario.groups
    ]
    return replace(
        scenario,
        name=f"{scenario.name} x{speedup:g}",
        simulation=replace(
            sim,
            duration_hours=duration,
            warmup_hours=warmup,
            service_level_seconds=sim.service_level_seconds * f,
            interval_minutes=sim.interval_minutes * f,
            max_drain_hours=sim.max_drain_hours * f,
        ),
        groups=tuple(groups),
        arrivals=tuple(arrivals),
    )


def model_gaps(plan: LoadPlan) -> list[str]:
    """Where the scenario's callers differ from what the IVR makes of them: skills or priority
    the IVR path gives that the scenario's ``[[arrivals]]`` do not (the simulator would route
    them otherwise)."""
    out: list[str] = []
    for src in plan.scenario.arrivals:
        for p in plan.paths:
            if p.queue != src.queue or (p.arrivals not in (None, src.name)):
                continue
            if p.skills is not None and dict(p.skills) != dict(src.skills):
                out.append(
                    f"arrivals {src.name!r}: the IVR path {' '.join(p.keys) or '-'} gives callers "
                    f"skills {dict(p.skills)}, the scenario {dict(src.skills)}"
                )
            if p.priority is not None and p.priority != src.priority:
                out.append(
                    f"arrivals {src.name!r}: the IVR path {' '.join(p.keys) or '-'} gives callers "
                    f"priority {p.priority}, the scenario {src.priority}"
                )
    return out


def key_schedule(
    keys: Sequence[str], ivr: float, *, gap: float, digit: float = DIGIT_SECONDS
) -> list[tuple[float, str]]:
    """When each key is pressed, in seconds after the IVR answered: the groups spread so the
    last key ends at ``ivr`` (or as soon as the keys allow), digits of a group back to back
    (``digit`` seconds each, ``gap`` after each)."""
    out: list[tuple[float, str]] = []
    step = digit + gap
    end = 0.0
    n = len(keys)
    for g, group in enumerate(keys):
        length = len(group) * step
        start = max(end, ivr * (g + 1) / n - length) if n else end
        for j, d in enumerate(group):
            out.append((start + j * step, d))
        end = start + length
    return out


def leave_after(scenario: Scenario, queue: str) -> Leave:
    """The engine's maximum wait for a caller of ``queue``, along the overflow chain (an
    overflow keeps the original join time: ``acd/engine.py``)."""
    queues = scenario.acd.queues
    t = 0.0
    q = queue
    for _ in range(scenario.acd.max_overflow_hops + 2):
        cfg = queues[q]
        if cfg.max_wait is None:
            return Leave(math.inf, "")
        t = max(t, float(cfg.max_wait))
        target = cfg.overflow
        if target == "voicemail":
            return Leave(t, "voicemail")
        if target is None or not target.startswith("queue:") or target[6:] not in queues:
            return Leave(t, "rejected")
        q = target[6:]
    return Leave(t, "rejected")


# --- the IVR: shortest key paths to each queue ----------------------------------------------

_SUBST = re.compile(r"\$\{")


@dataclass(frozen=True, slots=True)
class IvrRoute:
    """A way through the IVR to a queue, and what the IVR gives the caller on the way."""

    keys: tuple[str, ...]
    skills: tuple[tuple[str, int], ...]
    """Skills the caller will require (``set`` nodes' ``skill.X`` and the queue node's)."""
    priority: int


def ivr_paths(service: Mapping[str, Any], flow: str | None = None) -> dict[str, IvrRoute]:
    """Queue -> the fewest key groups that reach it from the IVR's entry flow, read from the
    service configuration's ``[ivr]`` table: menus by their choices, plays and sets by their
    ``next``, collects with ``min_digits`` ones (``#`` when a terminator is set, ``1`` to
    confirm). Branches, schedules and queue-state nodes are not followed (their way depends on
    the moment, not on keys)."""
    ivr = service.get("ivr")
    if not isinstance(ivr, Mapping):
        return {}
    flows = ivr.get("flows") or {}
    entry = flow or ivr.get("entry")
    if entry not in flows:
        return {}

    def node_of(fname: str, target: str) -> tuple[str, str] | None:
        if ":" in target:
            fname, _, target = target.partition(":")
        nodes = (flows.get(fname) or {}).get("nodes") or {}
        return (fname, target) if target in nodes else None

    start = node_of(str(entry), str(flows[entry].get("start", "")))
    if start is None:
        return {}
    found: dict[str, IvrRoute] = {}
    seen: set[tuple[str, str]] = {start}
    Item = tuple[tuple[str, str], tuple[str, ...], dict[str, int], int]
    todo: deque[Item] = deque([(start, (), {}, 0)])
    while todo:
        (fname, nname), keys, skills, priority = todo.popleft()
        node = flows[fname]["nodes"][nname]
        kind = node.get("type")
        steps: list[tuple[str, tuple[str, ...]]] = []
        if kind == "queue":
            queue = node.get("queue")
            if isinstance(queue, str) and not _SUBST.search(queue):
                got = {**{str(k): int(v) for k, v in (node.get("skills") or {}).items()}, **skills}
                prio = int(node.get("priority", priority) or 0)
                found.setdefault(queue, IvrRoute(keys, tuple(sorted(got.items())), prio))
            continue
        if kind == "set":
            skills = dict(skills)
            for key, value in (node.get("vars") or {}).items():
                if str(key).startswith("skill.") and str(value).isdigit():
                    skills[str(key)[6:]] = int(value)
                elif key == "priority" and str(value).isdigit():
                    priority = int(value)
            steps.append((str(node.get("next", "")), keys))
        elif kind == "play":
            steps.append((str(node.get("next", "")), keys))
        elif kind == "menu":
            for key, target in (node.get("choices") or {}).items():
                steps.append((str(target), (*keys, str(key))))
        elif kind == "collect":
            digits = "1" * max(1, int(node.get("min_digits", 1)))
            pattern = node.get("pattern")
            if pattern and re.fullmatch(str(pattern), digits) is None:
                continue
            term = str(node.get("terminator", "#"))
            group = digits + (
                term if term and len(digits) < int(node.get("max_digits", 16)) else ""
            )
            more = (*keys, group, "1") if node.get("confirm", False) else (*keys, group)
            steps.append((str(node.get("next", "")), more))
        elif kind == "goto":
            target_flow = flows.get(str(node.get("flow"))) or {}
            steps.append((f"{node.get('flow')}:{node.get('node') or target_flow.get('start', '')}",
                          keys))  # fmt: skip
        for target, k in steps:
            nxt = node_of(fname, target)
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                todo.append((nxt, k, skills, priority))
    return found


def default_paths(
    service: Mapping[str, Any], queues: Sequence[str], *, dial: str | None, dtmf: DtmfMethod
) -> tuple[list[KeyPath], list[str]]:
    """A path per queue from the service's entry points and IVR; the queues none reaches."""
    entries = service.get("entry_points") or {}
    paths: list[KeyPath] = []
    missing: list[str] = []
    ivr_entries = [n for n, e in entries.items() if isinstance(e, Mapping)
                   and e.get("kind") in ("hotline", "ivr")]  # fmt: skip
    direct = {
        e.get("target"): n
        for n, e in entries.items()
        if isinstance(e, Mapping) and e.get("kind") == "queue"
    }
    numbers = [dial] if dial else ivr_entries
    reach: dict[str, tuple[str, IvrRoute]] = {}
    for number in numbers:
        got = entries.get(number)
        e: Mapping[str, Any] = got if isinstance(got, Mapping) else {}
        flow = e.get("target") if e.get("kind") == "ivr" else None
        for q, route in ivr_paths(service, flow).items():
            if q not in reach or len(route.keys) < len(reach[q][1].keys):
                reach[q] = (number, route)
    for q in queues:
        if q in reach:
            number, route = reach[q]
            paths.append(KeyPath(queue=q, dial=number, keys=route.keys, dtmf=dtmf,
                                 skills=route.skills, priority=route.priority))  # fmt: skip
        elif q in direct and not dial:
            paths.append(KeyPath(queue=q, dial=str(direct[q]), keys=(), dtmf=dtmf, skills=(),
                                 priority=0))  # fmt: skip
        else:
            missing.append(q)
    return paths, missing


# --- building ----------------------------------------------------------------------------------


def _read(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), text
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LoadError(f"{path}: not valid TOML: {exc}") from exc


def _hostport(text: str, key: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit():
        raise LoadError(f"{key}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def read_load_settings(raw: Mapping[str, Any], *, file: str, text: str) -> LoadModel:
    try:
        return LoadModel.model_validate(raw.get("load") or {})
    except ValidationError as exc:
        issues = issues_from_pydantic(exc, prefix="load", model=LoadModel)
        raise LoadError.of(issues, file=file, text=text) from None


def build_plan(
    scenario_file: str | Path,
    *,
    workload: str | Path | None = None,
    config: str | Path | None = None,
    speedup: float | None = None,
    calls: int | None = None,
    duration: float | None = None,
    seed: int | None = None,
    target: str | None = None,
    http: str | None = None,
) -> LoadPlan:
    """The plan of a load run. ``scenario_file`` is a scenario (then ``config``, the service's
    configuration, is required: agents' passwords, entry points, IVR) or the service's
    configuration with a ``workload``. ``calls`` and ``duration`` (live seconds) bound the
    callers placed."""
    sp = Path(scenario_file)
    raw, _ = _read(sp)
    if is_service_config(raw):
        if workload is None:
            raise LoadError(
                f"{sp}: a service configuration: give the callers with --workload WORKLOAD.toml"
            )
        service, settings_file, service_dir = raw, Path(workload), sp.parent
        if config is not None and Path(config) != sp:
            raise LoadError("--config: the scenario is the service's configuration already")
    else:
        if config is None:
            raise LoadError(
                f"{sp}: a scenario file: give the running service's configuration with "
                "--config SERVICE.toml (agents' passwords, entry points, IVR)"
            )
        service, _ = _read(Path(config))
        settings_file, service_dir = sp, Path(config).parent
    scenario = load_scenario(sp, workload=workload)
    if seed is not None:
        scenario = scenario.with_seed(seed)
    sraw, stext = _read(settings_file)
    settings = read_load_settings(sraw, file=str(settings_file), text=stext)
    k = speedup if speedup is not None else settings.speedup
    if not (k > 0 and math.isfinite(k)):
        raise LoadError(f"--speedup: expected a number > 0, got {k!r}")
    scenario = _with_agent_behaviour(scenario, settings.agents)
    paths = _paths(scenario, service, settings)
    agents = _agents(scenario, service, settings.agents, k, service_dir)
    server = service.get("server") or {}
    sip_target = _hostport(target or server.get("sip", "127.0.0.1:5060"), "--target")
    http_addr = http or server.get("http", "127.0.0.1:8080")
    if not str(http_addr).startswith("http"):
        http_addr = f"http://{http_addr}"
    table = _callers(scenario, paths, settings, k)
    horizon = scenario.simulation.horizon / k
    if duration is not None:
        horizon = min(horizon, duration)
    order = np.argsort(table.at, kind="stable")
    keep = order[table.at[order] < horizon]
    if calls is not None and keep.size > calls:
        keep = keep[:calls]
        nxt = order[calls] if calls < order.size else None
        horizon = float(table.at[nxt]) if nxt is not None else horizon
    table = table.take(np.sort(keep))
    leave = {q: leave_after(scenario, q) for q in scenario.acd.queues}
    return LoadPlan(
        scenario=scenario,
        speedup=k,
        callers=table,
        paths=tuple(paths),
        agents=tuple(agents),
        leave=leave,
        horizon=horizon,
        key_gap=settings.key_gap_seconds,
        sip_target=sip_target,
        http=str(http_addr).rstrip("/"),
        source=str(sp),
    )


def _dist(spec: Any, key: str, *, allow_zero: bool = True) -> Distribution:
    try:
        return parse_distribution(spec, key, allow_zero=allow_zero)
    except DistributionError as exc:
        raise LoadError(str(exc)) from None


def _with_agent_behaviour(scenario: Scenario, b: AgentBehaviourModel) -> Scenario:
    """The agent groups with ``[load.agents]``'s behaviour (the simulator sees the same)."""
    answer = (
        _dist(b.answer_seconds, "load.agents.answer_seconds")
        if b.answer_seconds is not None
        else None
    )
    groups: list[AgentGroup] = []
    for g in scenario.groups:
        changes: dict[str, Any] = {}
        if answer is not None:
            changes["answer"] = answer
        if b.ring_no_answer is not None:
            changes["ring_no_answer"] = b.ring_no_answer
        if b.rona_ready_seconds is not None:
            changes["rona_ready_seconds"] = b.rona_ready_seconds
        groups.append(replace(g, **changes))
    return replace(scenario, groups=tuple(groups))


def _paths(scenario: Scenario, service: Mapping[str, Any], s: LoadModel) -> list[KeyPath]:
    queues = list(dict.fromkeys(a.queue for a in scenario.arrivals))
    names = {a.name for a in scenario.arrivals}
    issues: list[ConfigIssue] = []
    if s.paths:
        paths = []
        for i, p in enumerate(s.paths):
            if p.queue not in scenario.acd.queues:
                issues.append(ConfigIssue(f"load.paths[{i}].queue", f"no queue {p.queue!r}"))
            if p.arrivals is not None and p.arrivals not in names:
                issues.append(
                    ConfigIssue(f"load.paths[{i}].arrivals", f"no arrival source {p.arrivals!r}")
                )
            for g, group in enumerate(p.keys):
                if not group or set(group.upper()) - DIGITS:
                    issues.append(
                        ConfigIssue(f"load.paths[{i}].keys[{g}]", f"not DTMF keys: {group!r}")
                    )
            dial = p.dial or s.dial
            if dial is None:
                found, _ = default_paths(service, [p.queue], dial=None, dtmf=s.dtmf)
                dial = found[0].dial if found else None
            if dial is None:
                issues.append(ConfigIssue(f"load.paths[{i}].dial", "no number to dial"))
                continue
            paths.append(
                KeyPath(
                    queue=p.queue,
                    dial=dial,
                    keys=tuple(k.upper() for k in p.keys),
                    dtmf=p.dtmf or s.dtmf,
                    share=p.share,
                    arrivals=p.arrivals,
                )
            )
        covered = {p.queue for p in paths}
        for q in queues:
            if q not in covered:
                issues.append(ConfigIssue("load.paths", f"no path leads to queue {q!r}"))
    else:
        paths, missing = default_paths(service, queues, dial=s.dial, dtmf=s.dtmf)
        for q in missing:
            issues.append(
                ConfigIssue(
                    "load.paths",
                    f"no IVR path or queue entry point reaches queue {q!r}: give "
                    "[[load.paths]] (queue, keys, dial)",
                )
            )
    if issues:
        raise LoadError(issues=issues)
    return paths


def _staff_ha1(service: Mapping[str, Any], base: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Agent id -> realm -> algorithm -> HA1 from the service's staff file (``[server]
    staff_file``, relative to the configuration's folder), when it has one."""
    name = (service.get("server") or {}).get("staff_file")
    if not name:
        return {}
    path = Path(name) if Path(name).is_absolute() else base / name
    raw, _ = _read(path)
    out: dict[str, dict[str, dict[str, str]]] = {}
    for aid, entry in (raw.get("staff") or {}).items():
        if isinstance(entry, Mapping) and isinstance(entry.get("ha1"), Mapping):
            out[str(aid)] = {
                str(realm): {str(alg): str(v) for alg, v in algs.items()}
                for realm, algs in entry["ha1"].items()
                if isinstance(algs, Mapping)
            }
    return out


def _agents(
    scenario: Scenario,
    service: Mapping[str, Any],
    b: AgentBehaviourModel,
    k: float,
    base: Path,
) -> list[AgentPlan]:
    accounts = {str(a.get("id")): a for a in service.get("agents") or [] if isinstance(a, Mapping)}
    hashes = _staff_ha1(service, base)
    out: list[AgentPlan] = []
    issues: list[ConfigIssue] = []
    group_of = scenario.agent_group()
    for aid, g in group_of.items():
        password = b.passwords.get(aid) or str((accounts.get(aid) or {}).get("password") or "")
        ha1 = hashes.get(aid, {})
        if aid not in accounts:
            issues.append(
                ConfigIssue("agents", f"agent {aid!r} is not in the service's [[agents]]")
            )
        elif not password and not ha1:
            issues.append(
                ConfigIssue(
                    f"load.agents.passwords.{aid}",
                    "no SIP password or digest hash for this agent in the service's "
                    "configuration or staff file",
                )
            )
        out.append(
            AgentPlan(
                id=aid,
                password=password,
                ha1=ha1,
                answer=dist_fields(scaled(g.answer, 1.0 / k)),
                ring_no_answer=g.ring_no_answer,
                rona_ready=g.rona_ready_seconds / k,
                max_misses=scenario.acd.agents[aid].max_misses,
            )
        )
    if issues:
        raise LoadError(issues=issues)
    return out


def _callers(scenario: Scenario, paths: Sequence[KeyPath], s: LoadModel, k: float) -> CallerTable:
    streams = Streams(scenario.simulation.seed, 0)
    c = draw_callers(scenario, streams)
    n = len(c)
    path = np.zeros(n, dtype=np.int64)
    message = np.zeros(n)
    msg = _dist(s.message_seconds, "load.message_seconds", allow_zero=False)
    for idx, src in enumerate(scenario.arrivals):
        rows = np.flatnonzero(c.source == idx)
        choices = _choices(src, paths)
        shares = np.asarray([paths[j].share for j in choices], dtype=float)
        pick = streams.rng(f"load-path:{src.name}").choice(
            len(choices), size=rows.size, p=shares / shares.sum()
        )
        path[rows] = np.asarray(choices, dtype=np.int64)[pick]
        message[rows] = msg.sample(streams.rng(f"load-message:{src.name}"), rows.size)
    f = 1.0 / k
    return CallerTable(
        at=c.arrival * f,
        source=c.source,
        queue=list(c.queue),
        path=path,
        ivr=(c.entry - c.arrival) * f,
        patience=c.patience * f,
        handle=c.handle * f,
        message=message * f,
    )


def _choices(src: ArrivalSource, paths: Sequence[KeyPath]) -> list[int]:
    named = [j for j, p in enumerate(paths) if p.arrivals == src.name]
    if named:
        return named
    same = [j for j, p in enumerate(paths) if p.queue == src.queue and p.arrivals is None]
    if not same:
        raise ScenarioError(f"arrivals.{src.name}: no [[load.paths]] entry for its queue")
    return same


__all__ = [
    "DIGIT_SECONDS",
    "AgentPlan",
    "CallerTable",
    "IvrRoute",
    "KeyPath",
    "Leave",
    "LoadError",
    "LoadModel",
    "LoadPlan",
    "accelerated",
    "build_plan",
    "default_paths",
    "ivr_paths",
    "key_schedule",
    "leave_after",
    "model_gaps",
    "scaled",
]
