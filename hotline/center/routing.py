"""Routing for supervisors: the live ``[acd]`` configuration, its versions, validation, what-if,
apply, rollback and explanations (issue 12; the routes are in ``hotline/http/routing.py``).

:class:`RoutingDesk` sits beside the engine in the :class:`~hotline.center.ContactCenter`:

* **Versions.** Version 1 is the configuration file's ``[acd]`` (with the routing keys of its
  ``[[agents]]``). Every apply or rollback publishes a ``ConfigChanged`` to the engine through
  the center's ``AcdService`` and records a version: number, time, who, comment and the whole
  ``[acd]`` table. The numbers are the desk's own and continue across restarts; the engine's
  publication counter (``engine_version``) restarts at 1 with each process.
* **Persistence.** ``<data_dir>/routing-versions.json`` (written atomically: a temporary file,
  fsync, rename, before the engine changes) keeps the versions and which one is current, with a
  fingerprint of the file's ``[acd]``. At start, when the file's ``[acd]`` is the one recorded,
  the current version is published again, so a restart keeps the routing applied through the
  API. **When the file's** ``[acd]`` **changed meanwhile, the file wins**: an operator who edited
  the file and restarted meant that configuration. It becomes a new version (source ``file``),
  the earlier ones stay in the list (a rollback can bring one back) and a warning is logged.
* **Validation** (:meth:`check`) runs ``acd.config``'s models and cross-references
  (``AcdConfig.from_dict``: every mistake with its key path, ``acd.queues.sales.max_wait``) plus
  what only the live service knows: each strategy can be built with its parameters and
  weights; every staff member (``[[agents]]``) keeps a routing entry (removing one would log
  them out); every queue an entry point or an IVR node names still exists.
* **What-if** (:meth:`what_if`) runs ``sim/whatif.py`` in a worker process (spawned, killed at
  :attr:`RoutingDesk.what_if_timeout`), one at a time per node, within :attr:`max_calls`
  simulated callers and :attr:`max_runs` replications, so the event loop never waits on it.
* **Explain** (:meth:`explain`): ``AcdEngine.explain`` made readable, per agent.

Changes made to the engine's configuration by other parts (``ConfigChanged`` sent directly)
are noticed at the desk's next use and recorded as versions of source ``external``; other
parts should call :meth:`RoutingDesk.publish` instead, which records who and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from acd.config import (
    AcdConfig,
    AcdModel,
    AgentRouting,
    ConfigError,
    ConfigIssue,
    issues_from_pydantic,
    locate,
)
from acd.engine import AcdEngine
from acd.events import ConfigChanged
from acd.store import CaseStore
from routing.strategy import RoutingError, make_strategy, strategy_names
from routing.weights import WEIGHT_KEYS
from sim import whatif

if TYPE_CHECKING:
    from hotline.center.contact import ContactCenter
    from hotline.config import Config

log = structlog.get_logger("hotline.routing")

VERSIONS_FILE = "routing-versions.json"
MAX_INTERVALS = 10_000
"""Report intervals one what-if may produce (duration over ``interval_minutes``)."""
_FORMAT = 1


# --- the [acd] table --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def acd_table(cfg: AcdConfig) -> dict[str, Any]:
    """The configuration as an ``[acd]`` table, every key explicit (defaults included, unset
    optional keys left out): ``AcdConfig.from_dict(acd_table(cfg)) == cfg``. Agents carry their
    effective routing (``agent_defaults`` and the ``[[agents]]`` keys merged in)."""
    queues = {}
    for name, q in cfg.queues.items():
        table = _plain(q)
        del table["name"]
        queues[name] = table
    agents = {}
    for aid, a in cfg.agents.items():
        table = _plain(a)
        del table["id"]
        if not table.get("name"):
            table.pop("name", None)
        agents[aid] = table
    return {"queues": queues, "agents": agents, "max_overflow_hops": cfg.max_overflow_hops}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: tables merge key by key, ``null`` removes a key, anything
    else (lists included) replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def differences(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[Change]:
    """Key paths whose values differ (``acd.queues.sales.strategy``), in key order."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(current, "acd", a)
    _flatten(proposed, "acd", b)
    keys = list(a) + [k for k in b if k not in a]
    return [
        Change(path=k, current=a.get(k), proposed=b.get(k))
        for k in keys
        if a.get(k) != b.get(k) or (k in a) != (k in b)
    ]


def file_fingerprint(config: Config) -> str:
    """What the configuration file says about routing, hashed: its ``[acd]`` and the routing
    keys of its ``[[agents]]`` as written (not the built configuration, so an upgrade that adds
    a key with a default does not count as an edit, and a new password does not either)."""
    try:
        raw = tomllib.loads(config.text) if config.text else None
    except tomllib.TOMLDecodeError:
        raw = None
    if raw is None:
        said: Any = acd_table(config.acd)
    else:
        agents = raw.get("agents")
        said = {
            "acd": raw.get("acd", {}),
            "agents": [
                {k: v for k, v in a.items() if k == "id" or k in AgentRouting.model_fields}
                for a in (agents if isinstance(agents, list) else [])
                if isinstance(a, Mapping)
            ],
        }
    text = json.dumps(said, separators=(",", ":"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


# --- the API's models -------------------------------------------------------------------------

_TABLE = "an [acd] table as JSON, the shape of the configuration file's [acd] section"


class ProposedRouting(BaseModel):
    """A proposed ``[acd]`` configuration, given in exactly one of three ways."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(
        default=None,
        description=f"The whole proposal: {_TABLE} (as GET /api/routing's config shows it).",
    )
    changes: dict[str, Any] | None = Field(
        default=None,
        description=(
            "A JSON merge patch (RFC 7396) over the current configuration: tables merge key by "
            'key, null removes a key, lists replace. {"queues": {"sales": {"strategy": '
            '"weighted"}}}'
        ),
    )
    toml: str | None = Field(
        default=None,
        max_length=500_000,
        description=(
            "The whole proposal as TOML text with [acd...] tables, as in the configuration "
            "file; mistakes then carry their line."
        ),
    )

    @model_validator(mode="after")
    def _one_form(self) -> ProposedRouting:
        given = [x is not None for x in (self.config, self.changes, self.toml)]
        if sum(given) != 1:
            raise ValueError("give exactly one of: config, changes, toml")
        return self


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposed: ProposedRouting


class Issue(BaseModel):
    """One mistake in a proposal."""

    path: str = Field(description="The key path, e.g. acd.queues.sales.max_wait.")
    reason: str
    line: int | None = Field(default=None, description="The line, when given as TOML text.")


class Change(BaseModel):
    """One key the proposal changes (absent on one side: null)."""

    path: str
    current: Any = None
    proposed: Any = None


class ValidationReport(BaseModel):
    valid: bool
    issues: list[Issue]
    changes: list[Change] = Field(
        description="What the proposal changes against the current version (when it parses)."
    )
    current_version: int
    config: dict[str, Any] | None = Field(
        default=None, description="The valid proposal as a whole [acd] table (normalised)."
    )


VersionSource = Literal["file", "api", "rollback", "external"]


class VersionInfo(BaseModel):
    """One published version of the routing configuration."""

    version: int
    at: datetime
    user: str | None = Field(description="Who applied it (None: the file, or another part).")
    comment: str
    source: VersionSource = Field(
        description=(
            "file: the configuration file; api: applied through the API; rollback: an earlier "
            "version applied again; external: changed by another part of the service."
        )
    )
    rolled_back_to: int | None = None
    current: bool


class VersionDetail(VersionInfo):
    config: dict[str, Any] = Field(description=_TABLE)


class RoutingState(VersionDetail):
    """The routing running now: its version and its whole ``[acd]`` table."""

    engine_version: int = Field(description="The engine's own publication counter (this run).")
    strategies: list[str] = Field(description="Strategy names a queue may use.")
    weight_keys: list[str] = Field(description="Criteria of the weighted strategy's weights.")


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposed: ProposedRouting
    comment: str = Field(default="", max_length=500)
    expected_version: int | None = Field(
        default=None,
        ge=1,
        description="Refuse (409) unless this is the current version (a concurrent change).",
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None,
        ge=1,
        le=2**53,
        description="The version to bring back; default: the one before the current.",
    )
    comment: str = Field(default="", max_length=500)


class HistoryWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: float = Field(gt=0, le=72, description="The last this many hours of real traffic.")


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposed: ProposedRouting
    scenario: str | dict[str, Any] | None = Field(
        default=None,
        description=(
            "The callers: a scenario or a workload as `hotline sim run` reads them "
            "(docs/simulator.md), as TOML text, as JSON, or a shipped example's name "
            "(e.g. single_queue). A workload ([simulation] and [[arrivals]]) runs on the "
            "configuration's own agents; a full scenario on its own agents, its queues that "
            "the configuration has taking the configuration's settings."
        ),
    )
    from_history: HistoryWindow | None = Field(
        default=None, description="Replay the last hours of real traffic instead."
    )
    runs: int | None = Field(
        default=None, ge=1, le=1000, description="Replications (default: the scenario's, or 10)."
    )
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _one_workload(self) -> WhatIfRequest:
        if (self.scenario is None) == (self.from_history is None):
            raise ValueError("give exactly one of: scenario, from_history")
        return self


class Estimate(BaseModel):
    mean: float | None
    ci95: list[float | None] = Field(description="The 95 % interval over replications.")


class SideFigures(BaseModel):
    all: dict[str, Estimate]
    queues: dict[str, dict[str, Estimate]]
    skills: dict[str, dict[str, Estimate]] = {}
    intervals: list[dict[str, Any]] = []


class Prediction(BaseModel):
    """One side's figures, as ``hotline sim run --json`` reports them."""

    figures: SideFigures
    checks: dict[str, Any]
    calls: int = Field(description="Callers simulated (all replications).")


class Differences(BaseModel):
    """Paired estimates of proposed minus current, replication by replication."""

    all: dict[str, Estimate]
    queues: dict[str, dict[str, Estimate]]


class SideBySide(BaseModel):
    figure: str
    current: Estimate
    proposed: Estimate
    difference: Estimate


class WhatIfReport(BaseModel):
    current_version: int
    workload: Literal["scenario", "workload", "history"]
    replications: int
    seed: int
    service_level_seconds: float
    window_seconds: list[float]
    interval_minutes: float
    same_callers: bool
    current: Prediction
    proposed: Prediction
    differences: Differences
    side_by_side: list[SideBySide] = Field(description="The all-queues figures, row by row.")
    notes: list[str]
    elapsed_seconds: float


class ExplainQuery(BaseModel):
    call_id: str = Field(min_length=1, max_length=256)
    agent_id: str | None = Field(default=None, min_length=1, max_length=64)


class AgentVerdict(BaseModel):
    """One agent as the decision sees it."""

    agent_id: str
    member: bool = Field(description="Serves the call's queue (directly, by group or widening).")
    eligible: bool = Field(description="Could be offered the call now.")
    reason: str = Field(description="Why not, or the strategy's scoring summary.")
    order: int | None = Field(
        default=None,
        description="Place among the eligible agents in the strategy's order (1: first).",
    )
    score: float | None = None
    criteria: dict[str, float] = {}
    ringing: bool = Field(description="Being rung for this call now.")
    chosen: bool = Field(description="The strategy would offer the call to this agent now.")


class RoutingExplanation(BaseModel):
    """Why a waiting call goes (or would go) to whom."""

    call_id: str
    queue: str
    strategy: str
    at: datetime
    position: int | None = Field(
        default=None, description="The call's place in its queue (1: next)."
    )
    waited_seconds: float | None = None
    required_skills: dict[str, int]
    widening: dict[str, Any] = Field(description="The call's widening step, relaxation, groups.")
    ringing: list[str]
    choice: list[str] = Field(description="Who the strategy would ring now (empty while ringing).")
    agents: list[AgentVerdict] = Field(description="Eligible agents in order, then the others.")
    agent: AgentVerdict | None = Field(default=None, description="The agent asked about.")
    summary: str
    text: str = Field(description="The whole explanation, a few readable lines.")


# --- the desk ---------------------------------------------------------------------------------


class RoutingDeskError(Exception):
    """A request the desk refuses: the HTTP status, a code word, a message, the issues."""

    def __init__(
        self, status: int, code: str, message: str, issues: Sequence[ConfigIssue] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issues = tuple(issues)


@dataclass(slots=True)
class _Version:
    version: int
    at: float
    user: str | None
    comment: str
    source: VersionSource
    table: dict[str, Any]
    rolled_back_to: int | None = None
    config: AcdConfig | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "at": self.at,
            "user": self.user,
            "comment": self.comment,
            "source": self.source,
            "rolled_back_to": self.rolled_back_to,
            "config": self.table,
        }


class _StoredVersion(BaseModel):
    version: int = Field(ge=1)
    at: float
    user: str | None
    comment: str
    source: VersionSource
    rolled_back_to: int | None = None
    config: dict[str, Any]


class _Stored(BaseModel):
    format: Literal[1]
    file_fingerprint: str
    current: int
    versions: list[_StoredVersion] = Field(min_length=1)


def read_log_since(store: CaseStore, since: float, *, page: int = 5000) -> list[dict[str, Any]]:
    """The engine's log rows at or after ``since`` (epoch seconds), oldest first.

    Rows are appended in time order, so the first one is found by a search over ``seq``
    (a doubling, then a bisection: a few primary-key lookups), not by reading the whole log."""

    def before(seq: int) -> bool:  # the first row after ``seq`` exists and is too old
        rows = store.read_log(since_seq=seq, limit=1)
        return bool(rows) and float(rows[0][1].get("at", 0.0)) < since

    start = 0
    if before(0):
        lo, hi = 0, 1
        while before(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if before(mid):
                lo = mid
            else:
                hi = mid
        start = hi
    out: list[dict[str, Any]] = []
    while True:
        rows = store.read_log(since_seq=start, limit=page)
        out += [r for _, r in rows if float(r.get("at", 0.0)) >= since]
        if len(rows) < page:
            return out
        start = rows[-1][0]


class RoutingDesk:
    """See the module docstring. Built by the :class:`ContactCenter`, after its engine."""

    max_runs = 50
    """Replications one what-if may ask for (more are capped, with a note)."""
    max_calls = 2_000_000
    """Simulated callers one what-if may cost (both sides, every replication)."""
    max_hours = 744.0
    """Simulated hours (warm-up and measured) one what-if may cover: a month."""
    what_if_timeout = 120.0
    """Seconds a what-if's worker may run before it is killed (503)."""

    def __init__(self, center: ContactCenter) -> None:
        self._center = center
        self._clock = center.acd.now
        self.path = center.settings.data_dir / VERSIONS_FILE
        self._file_table = acd_table(center.config.acd)
        self._file_fingerprint = file_fingerprint(center.config)
        self._versions: list[_Version] = []
        self._current = 1
        self._lock = asyncio.Lock()
        self._what_if_running = False
        self._restore()
        self._engine_version = self._engine.version

    # -- reads -----------------------------------------------------------------------------

    @property
    def _engine(self) -> AcdEngine:
        return self._center.engine

    @property
    def current_version(self) -> int:
        return self._current

    def _find(self, version: int) -> _Version | None:
        for v in self._versions:
            if v.version == version:
                return v
        return None

    def _info(self, v: _Version) -> dict[str, Any]:
        return {
            "version": v.version,
            "at": _when(v.at),
            "user": v.user,
            "comment": v.comment,
            "source": v.source,
            "rolled_back_to": v.rolled_back_to,
            "current": v.version == self._current,
        }

    async def state(self) -> RoutingState:
        """The routing running now."""
        await self._sync()
        v = self._must(self._current)
        return RoutingState(
            **self._info(v),
            config=acd_table(self._engine.config),
            engine_version=self._engine.version,
            strategies=strategy_names(),
            weight_keys=list(WEIGHT_KEYS),
        )

    async def versions(self) -> list[VersionInfo]:
        """Every version, oldest first."""
        await self._sync()
        return [VersionInfo(**self._info(v)) for v in self._versions]

    async def version(self, number: int) -> VersionDetail:
        await self._sync()
        v = self._find(number)
        if v is None:
            raise RoutingDeskError(404, "no_such_version", f"no routing version {number}")
        return VersionDetail(**self._info(v), config=v.table)

    def _must(self, number: int) -> _Version:
        v = self._find(number)
        assert v is not None, f"routing version {number} missing"
        return v

    # -- validation ------------------------------------------------------------------------

    def check(self, table: Mapping[str, Any]) -> tuple[AcdConfig | None, list[ConfigIssue]]:
        """The configuration ``table`` builds, or None, and every mistake (key paths under
        ``acd``): ``AcdConfig.from_dict``'s checks, then the service's own."""
        try:
            model = AcdModel.model_validate(table)
        except ValidationError as exc:
            return None, issues_from_pydantic(exc, "acd", model=AcdModel)
        cfg = model.build()
        issues = cfg.issues(path="acd")
        known = set(strategy_names())
        for name, q in cfg.queues.items():
            if q.strategy not in known:
                continue
            try:
                make_strategy(q.strategy, params=q.strategy_params, weights=q.weights)
            except RoutingError as exc:
                key = "weights" if q.strategy == "weighted" else "strategy_params"
                issues.append(ConfigIssue(f"acd.queues.{name}.{key}", str(exc)))
        for account in self._center.config.agents:
            if account.id not in cfg.agents:
                issues.append(
                    ConfigIssue(
                        f"acd.agents.{account.id}",
                        "is required: a staff member ([[agents]]) keeps a routing entry "
                        "(removing it would log them out; {} serves no queue)",
                    )
                )
        for queue, where in self._queue_references().items():
            if queue not in cfg.queues:
                issues.append(
                    ConfigIssue(
                        f"acd.queues.{queue}",
                        f"is required: {', '.join(where)} sends calls to it",
                    )
                )
        return (cfg if not issues else None), issues

    def _queue_references(self) -> dict[str, list[str]]:
        """Queue -> the entry points and IVR nodes that name it."""
        refs: dict[str, list[str]] = {}
        for ep in self._center.config.entry_points:
            if ep.kind in ("queue", "voicemail") and ep.target:
                refs.setdefault(ep.target, []).append(f"entry point {ep.number}")
        for fname, flow in self._center.ivr.flows.items():
            for node in flow.nodes.values():
                q = node.get("queue")
                if node.type in ("queue", "voicemail", "queue_state") and isinstance(q, str):
                    refs.setdefault(q, []).append(f"ivr.flows.{fname}.nodes.{node.name}")
        return refs

    def resolve(
        self, proposed: ProposedRouting
    ) -> tuple[dict[str, Any] | None, AcdConfig | None, list[ConfigIssue]]:
        """The proposal as a whole table, the configuration it builds, and its mistakes."""
        text = ""
        if proposed.config is not None:
            table: Any = proposed.config
        elif proposed.changes is not None:
            table = merge_patch(acd_table(self._engine.config), proposed.changes)
        else:
            text = proposed.toml or ""
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                return None, None, [_toml_issue(exc)]
            if set(raw) != {"acd"}:
                return (
                    None,
                    None,
                    [ConfigIssue("", "expected [acd] tables only (e.g. [acd.queues.sales])", 1)],
                )
            table = raw["acd"]
        cfg, issues = self.check(table)
        if text:
            issues = [i._replace(line=i.line or locate(text, i.path)) for i in issues]
        return table, cfg, issues

    async def validate(self, proposed: ProposedRouting) -> ValidationReport:
        await self._sync()
        table, cfg, issues = self.resolve(proposed)
        current = acd_table(self._engine.config)
        normal = acd_table(cfg) if cfg is not None else None
        return ValidationReport(
            valid=cfg is not None,
            issues=[Issue(path=i.path, reason=i.reason, line=i.line) for i in issues],
            changes=differences(current, normal or table) if isinstance(table, Mapping) else [],
            current_version=self._current,
            config=normal,
        )

    def _valid(self, proposed: ProposedRouting) -> AcdConfig:
        _, cfg, issues = self.resolve(proposed)
        if cfg is None:
            raise RoutingDeskError(
                422, "invalid_routing", "the proposed routing has mistakes", issues
            )
        return cfg

    # -- apply, rollback -------------------------------------------------------------------

    async def apply(
        self,
        proposed: ProposedRouting,
        *,
        user: str | None,
        comment: str = "",
        expected_version: int | None = None,
    ) -> VersionDetail:
        """Publish a valid proposal as the next version."""
        async with self._lock:
            await self._sync_locked()
            if expected_version is not None and expected_version != self._current:
                raise RoutingDeskError(
                    409,
                    "version_changed",
                    f"the current version is {self._current}, not {expected_version}",
                )
            cfg = self._valid(proposed)
            return await self._publish_locked(cfg, user=user, comment=comment, source="api")

    async def rollback(
        self, *, user: str | None, version: int | None = None, comment: str = ""
    ) -> VersionDetail:
        """Publish an earlier version again (default: the one before the current)."""
        async with self._lock:
            await self._sync_locked()
            if version is None:
                if len(self._versions) <= 1:
                    raise RoutingDeskError(
                        409, "nothing_to_roll_back", "there is no earlier version"
                    )
                version = self._previous()
            target = self._find(version)
            if target is None:
                raise RoutingDeskError(404, "no_such_version", f"no routing version {version}")
            if target.version == self._current:
                raise RoutingDeskError(
                    409, "already_current", f"version {version} is the current version"
                )
            cfg, issues = self.check(target.table)
            if cfg is None:
                raise RoutingDeskError(
                    409,
                    "version_unusable",
                    f"version {version} no longer fits this service",
                    issues,
                )
            note = comment or f"rollback to version {version}"
            return await self._publish_locked(
                cfg, user=user, comment=note, source="rollback", rolled_back_to=version
            )

    def _previous(self) -> int:
        """The version that was current before the current one was published (the list is in
        publication order, each entry current when it was added)."""
        idx = self._versions.index(self._must(self._current))
        return self._versions[max(0, idx - 1)].version

    async def publish(
        self,
        cfg: AcdConfig,
        *,
        user: str | None,
        comment: str,
        source: VersionSource = "api",
    ) -> VersionDetail:
        """Publish ``cfg`` (already valid) as the next version: for other parts of the service
        that change routing (an agent's skills), so the change is recorded and kept."""
        async with self._lock:
            await self._sync_locked()
            return await self._publish_locked(cfg, user=user, comment=comment, source=source)

    async def _publish_locked(
        self,
        cfg: AcdConfig,
        *,
        user: str | None,
        comment: str,
        source: VersionSource,
        rolled_back_to: int | None = None,
    ) -> VersionDetail:
        if cfg == self._engine.config:
            raise RoutingDeskError(
                409,
                "unchanged",
                f"the proposal is the current configuration (version {self._current})",
            )
        v = _Version(
            version=self._versions[-1].version + 1,
            at=self._clock(),
            user=user,
            comment=comment,
            source=source,
            table=acd_table(cfg),
            rolled_back_to=rolled_back_to,
            config=cfg,
        )
        doc = self._document([*self._versions, v], v.version)
        try:
            await asyncio.to_thread(self._write, doc)
        except OSError as exc:
            log.error("routing_not_saved", error=str(exc), path=str(self.path))
            raise RoutingDeskError(
                503, "not_saved", f"the routing could not be saved: {exc.strerror or exc}"
            ) from None
        self._versions.append(v)
        self._current = v.version
        self._engine_apply(cfg)
        log.info(
            "routing_applied",
            version=v.version,
            engine_version=self._engine.version,
            user=user,
            source=source,
            rolled_back_to=rolled_back_to,
            comment=comment,
        )
        return VersionDetail(**self._info(v), config=v.table)

    def _engine_apply(self, cfg: AcdConfig) -> None:
        center = self._center
        center.acd.handle(ConfigChanged(at=self._clock(), config=cfg))
        center.settings = dataclasses.replace(center.settings, acd=cfg)
        self._engine_version = self._engine.version

    # -- what changed elsewhere --------------------------------------------------------------

    async def _sync(self) -> None:
        if self._engine.version != self._engine_version:
            async with self._lock:
                await self._sync_locked()

    async def _sync_locked(self) -> None:
        """Record the engine's publications made by other parts since the desk's last one."""
        if self._engine.version == self._engine_version:
            return
        history = self._engine.config_history()
        added: list[_Version] = []
        for number, at, cfg in history:
            if number <= self._engine_version:
                continue
            added.append(
                _Version(
                    version=self._versions[-1].version + 1 + len(added),
                    at=at,
                    user=None,
                    comment=f"changed by another part of the service (engine version {number})",
                    source="external",
                    table=acd_table(cfg),
                    config=cfg,
                )
            )
        self._engine_version = self._engine.version
        if not added:
            return
        self._versions += added
        self._current = added[-1].version
        try:
            await asyncio.to_thread(self._write, self._document(self._versions, self._current))
        except OSError as exc:
            log.error("routing_not_saved", error=str(exc), path=str(self.path))

    # -- persistence -----------------------------------------------------------------------

    def _document(self, versions: Sequence[_Version], current: int) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "file_fingerprint": self._file_fingerprint,
            "current": current,
            "versions": [v.to_json() for v in versions],
        }

    def _write(self, doc: Mapping[str, Any]) -> None:
        """Replace the versions file atomically (a crash leaves the old one or the new one)."""
        data = json.dumps(doc, indent=1, allow_nan=False).encode()
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=".routing-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _from_file(self, at: float, comment: str, number: int = 1) -> _Version:
        return _Version(
            version=number,
            at=at,
            user=None,
            comment=comment,
            source="file",
            table=self._file_table,
            config=self._center.config.acd,
        )

    def _restore(self) -> None:
        """Version 1 from the file, or the versions kept by an earlier run (see the module
        docstring for what happens when the file's ``[acd]`` changed meanwhile)."""
        now = self._clock()
        source = self._center.config.source
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._versions = [self._from_file(now, f"the configuration file ({source})")]
            return
        except OSError as exc:
            log.error("routing_versions_unreadable", path=str(self.path), error=str(exc))
            self._versions = [self._from_file(now, f"the configuration file ({source})")]
            return
        try:
            stored = _Stored.model_validate_json(text)
            versions = [
                _Version(
                    version=s.version,
                    at=s.at,
                    user=s.user,
                    comment=s.comment,
                    source=s.source,
                    table=s.config,
                    rolled_back_to=s.rolled_back_to,
                )
                for s in stored.versions
            ]
            if not any(v.version == stored.current for v in versions):
                raise ValueError(f"current version {stored.current} is not listed")
        except (ValidationError, ValueError) as exc:
            aside = self.path.with_name(f"{VERSIONS_FILE}.bad-{int(now)}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.error(
                "routing_versions_unreadable", path=str(self.path), moved_to=str(aside),
                error=str(exc)[:500],
            )  # fmt: skip
            self._versions = [self._from_file(now, f"the configuration file ({source})")]
            return
        self._versions = versions
        self._current = stored.current
        current = self._must(stored.current)
        if stored.file_fingerprint == self._file_fingerprint:
            cfg, issues = self.check(current.table)
            if cfg is not None:
                current.config = cfg
                if cfg != self._engine.config:
                    self._engine_apply(cfg)
                log.info("routing_restored", version=current.version, path=str(self.path))
                return
            reason = "no longer fits this service: " + "; ".join(
                f"{i.path}: {i.reason}" for i in issues[:3]
            )
        else:
            reason = "the configuration file's [acd] changed since"
        number = versions[-1].version + 1
        self._versions.append(
            self._from_file(
                now,
                f"the configuration file ({source}); version {current.version} {reason}: "
                "the file wins",
                number,
            )
        )
        self._current = number
        log.warning("routing_file_wins", replaced=current.version, version=number, reason=reason)
        try:
            self._write(self._document(self._versions, self._current))
        except OSError as exc:
            log.error("routing_not_saved", error=str(exc), path=str(self.path))

    # -- what-if ---------------------------------------------------------------------------

    async def what_if(self, request: WhatIfRequest) -> WhatIfReport:
        """Both predictions, side by side (see the module docstring for the bounds)."""
        if self._what_if_running:
            raise RoutingDeskError(
                429, "what_if_busy", "a what-if is running on this node; try again when it ends"
            )
        self._what_if_running = True
        try:
            return await self._what_if(request)
        finally:
            self._what_if_running = False

    async def _what_if(self, request: WhatIfRequest) -> WhatIfReport:
        await self._sync()
        cfg = self._valid(request.proposed)
        version = self._current
        current_table = acd_table(self._engine.config)
        plain: dict[str, Any] = {
            "current": current_table,
            "proposed": acd_table(cfg),
            "replications": request.runs,
            "max_replications": self.max_runs,
            "seed": request.seed,
        }
        kind: Literal["scenario", "workload", "history"]
        if request.from_history is not None:
            history = await self._history(request.from_history.hours)
            plain["history"] = history
            plain["replications"] = request.runs or 10
            kind = "history"
        else:
            assert request.scenario is not None
            plain["scenario"] = request.scenario
            kind = "scenario"
        try:
            prepared = whatif.prepare(plain)
        except ConfigError as exc:
            raise RoutingDeskError(
                422,
                "invalid_scenario",
                "the what-if's workload does not fit",
                [_scenario_path(i) for i in exc.issues],
            ) from None
        if kind == "scenario":
            raw, _ = whatif.scenario_document(request.scenario)  # type: ignore[arg-type]
            kind = "workload" if whatif.is_workload(raw) else "scenario"
        sim = prepared.current.simulation
        hours = sim.warmup_hours + sim.duration_hours
        if not math.isfinite(hours) or hours > self.max_hours:
            raise RoutingDeskError(
                422,
                "what_if_too_big",
                f"{hours:g} simulated hours; at most {self.max_hours:g} per what-if",
                [ConfigIssue("scenario.simulation.duration_hours", "too long for a what-if")],
            )
        if hours * 60.0 / sim.interval_minutes > MAX_INTERVALS:
            raise RoutingDeskError(
                422,
                "what_if_too_big",
                f"more than {MAX_INTERVALS:,} report intervals",
                [ConfigIssue("scenario.simulation.interval_minutes", "too short for a what-if")],
            )
        if not math.isfinite(prepared.expected_calls) or prepared.expected_calls > self.max_calls:
            raise RoutingDeskError(
                422,
                "what_if_too_big",
                f"about {prepared.expected_calls:,.0f} simulated callers; at most "
                f"{self.max_calls:,} per what-if (fewer runs or a shorter scenario)",
            )
        reply = await _run_worker(plain, seconds=self.what_if_timeout)
        if "invalid" in reply:
            raise RoutingDeskError(
                422,
                "invalid_scenario",
                "the what-if's workload does not fit",
                [_scenario_path(ConfigIssue(*i)) for i in reply["invalid"]],
            )
        if "error" in reply:
            raise RuntimeError(f"what-if worker failed: {reply['error']}")
        doc = reply["ok"]
        notes = list(doc["notes"])
        if kind == "history":
            h = plain["history"]
            notes.insert(
                0,
                f"history: {h['calls']} callers from {_when(h['start']).isoformat()} to "
                f"{_when(h['end']).isoformat()} ({h['abandoned']} hung up waiting: their "
                "patience is replayed, the others never abandon); agents simulated, logged in "
                f"the whole time: {', '.join(h['agents']) or 'none'}",
            )
        rows = []
        cur_all = doc["current"]["figures"]["all"]
        prop_all = doc["proposed"]["figures"]["all"]
        diff_all = doc["differences"]["all"]
        for figure, est in cur_all.items():
            if figure in prop_all and figure in diff_all:
                rows.append(
                    {
                        "figure": figure,
                        "current": est,
                        "proposed": prop_all[figure],
                        "difference": diff_all[figure],
                    }
                )
        log.info(
            "routing_what_if",
            workload=kind,
            replications=doc["replications"],
            calls=doc["current"]["calls"] + doc["proposed"]["calls"],
            seconds=round(doc["elapsed_seconds"], 2),
        )
        return WhatIfReport.model_validate(
            {
                **doc,
                "current_version": version,
                "workload": kind,
                "side_by_side": rows,
                "notes": notes,
            }
        )

    async def _history(self, hours: float) -> dict[str, Any]:
        center = self._center
        end = self._clock()
        start = end - hours * 3600.0
        with contextlib.suppress(Exception):
            await center.writer.flush()
        rows = await center.writer.run(lambda store: read_log_since(store, start))
        engine = self._engine
        logged_in = [
            aid for aid in engine.config.agents if engine.agent_status(aid).state != "logged_out"
        ]
        hist = whatif.history_workload(
            rows, start=start, end=end, acd=engine.config, logged_in=logged_in
        )
        if not hist["calls"]:
            raise RoutingDeskError(
                422, "no_history", f"no caller queued in the last {hours:g} hours"
            )
        if not hist["agents"]:
            raise RoutingDeskError(
                422, "no_history", f"no agent was logged in during the last {hours:g} hours"
            )
        return hist

    # -- explain ---------------------------------------------------------------------------

    def explain(self, call_id: str, agent_id: str | None = None) -> RoutingExplanation:
        """Why the waiting call ``call_id`` is (or would be) offered to whom; with ``agent_id``,
        that agent's verdict in particular."""
        engine = self._engine
        if agent_id is not None:
            try:
                engine.agent_status(agent_id)
            except KeyError:
                raise RoutingDeskError(404, "no_such_agent", f"no agent {agent_id!r}") from None
        try:
            ex = engine.explain(call_id)
        except KeyError:
            raise RoutingDeskError(
                404, "not_waiting", f"call {call_id!r} is not waiting in a queue"
            ) from None
        snapshot = engine.snapshot()["queues"].get(ex.queue, {})
        position = waited = None
        for c in snapshot.get("calls", []):
            if c["call_id"] == call_id:
                position, waited = int(c["position"]), float(c["waited"])
        choice = set(ex.choice)
        ringing = set(ex.ringing)
        verdicts: list[AgentVerdict] = []
        rank = 0
        for c in ex.considered:
            if c.eligible:
                rank += 1
            verdicts.append(
                AgentVerdict(
                    agent_id=c.agent_id,
                    member=True,
                    eligible=c.eligible,
                    reason=c.reason,
                    order=rank if c.eligible else None,
                    score=c.score,
                    criteria=dict(c.criteria),
                    ringing=c.agent_id in ringing,
                    chosen=c.agent_id in choice,
                )
            )
        target = dict(ex.target)
        required = {str(k): int(v) for k, v in dict(target.pop("required", {})).items()}
        asked: AgentVerdict | None = None
        if agent_id is not None:
            asked = next((v for v in verdicts if v.agent_id == agent_id), None)
            if asked is None:
                asked = AgentVerdict(
                    agent_id=agent_id,
                    member=False,
                    eligible=False,
                    reason=(
                        f"not a member of queue {ex.queue!r} (neither directly nor through "
                        "its groups or widening groups)"
                    ),
                    ringing=False,
                    chosen=False,
                )
        return RoutingExplanation(
            call_id=ex.call_id,
            queue=ex.queue,
            strategy=ex.strategy,
            at=_when(ex.at),
            position=position,
            waited_seconds=waited,
            required_skills=required,
            widening=target,
            ringing=list(ex.ringing),
            choice=list(ex.choice),
            agents=verdicts,
            agent=asked,
            summary=_summary(ex.call_id, ex.strategy, asked, verdicts, list(ex.ringing)),
            text=ex.text(),
        )


def _summary(
    call_id: str,
    strategy: str,
    asked: AgentVerdict | None,
    verdicts: list[AgentVerdict],
    ringing: list[str],
) -> str:
    eligible = sum(1 for v in verdicts if v.eligible)
    if asked is None:
        if ringing:
            return f"call {call_id} is ringing {', '.join(ringing)}"
        chosen = [v.agent_id for v in verdicts if v.chosen]
        if chosen:
            return f"call {call_id} would be offered to {', '.join(chosen)} ({strategy})"
        return f"call {call_id} waits: none of its queue's agents is eligible now"
    who = asked.agent_id
    if asked.ringing:
        return f"{who} is being rung for call {call_id}"
    if not asked.eligible:
        return f"{who} is not offered call {call_id}: {asked.reason}"
    place = f"{_ordinal(asked.order or 0)} of {eligible} eligible by {strategy}"
    if asked.chosen:
        return f"{who} would be offered call {call_id} now ({place})"
    return f"{who} is eligible for call {call_id} but not chosen now ({place})"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _toml_issue(exc: tomllib.TOMLDecodeError) -> ConfigIssue:
    m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
    reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
    return ConfigIssue("", f"not valid TOML: {reason}", int(m.group(1)) if m else None)


def _scenario_path(issue: ConfigIssue) -> ConfigIssue:
    path = issue.path
    if path.startswith("from_history") or path.startswith("acd."):
        return issue
    return issue._replace(path=f"scenario.{path}" if path else "scenario")


async def _run_worker(request: Mapping[str, Any], *, seconds: float) -> dict[str, Any]:
    """Run ``sim.whatif.worker`` in a spawned process; kill it after ``seconds`` or
    when the caller goes away."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=whatif.worker, args=(send, request), name="what-if", daemon=True)
    started = time.monotonic()
    proc.start()
    send.close()

    def wait() -> dict[str, Any] | None:
        try:
            if not receive.poll(seconds):
                return None
            reply: dict[str, Any] = receive.recv()
            return reply
        except (EOFError, OSError):
            return {"error": f"the worker exited ({proc.exitcode})"}
        finally:
            receive.close()

    try:
        reply = await asyncio.to_thread(wait)
    finally:
        if proc.is_alive():
            proc.kill()
        await asyncio.to_thread(proc.join, 5.0)
    if reply is None:
        log.warning("routing_what_if_timed_out", seconds=round(time.monotonic() - started, 1))
        raise RoutingDeskError(
            503, "what_if_timed_out", f"the what-if ran past {seconds:g} s and was stopped"
        )
    return reply


__all__ = [
    "VERSIONS_FILE",
    "ApplyRequest",
    "ExplainQuery",
    "ProposedRouting",
    "RollbackRequest",
    "RoutingDesk",
    "RoutingDeskError",
    "RoutingExplanation",
    "RoutingState",
    "ValidateRequest",
    "ValidationReport",
    "VersionDetail",
    "VersionInfo",
    "WhatIfReport",
    "WhatIfRequest",
    "acd_table",
    "merge_patch",
    "read_log_since",
]
