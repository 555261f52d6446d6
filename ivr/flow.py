"""IVR flows from configuration: nodes, validated once, with errors that name the node.

A flow is a named graph of nodes; a call starts at the flow's ``start`` node and ends at a
*terminal* node (queue, voicemail, transfer, hangup). Configuration (TOML)::

    [ivr]
    entry = "main"                       # the flow a ``hotline`` entry point runs
    timezone = "Asia/Shanghai"
    holidays = ["2026-10-01"]

    [ivr.flows.main]
    start = "language"
    [ivr.flows.main.nodes.language]
    type = "menu"
    prompt = "language_menu"
    choices = { "1" = "english", "2" = "chinese" }
    default = "english"                  # after retries run out

Node types and their keys (``next`` is the node that follows; a node name may be written
``flow:node`` to continue in another flow):

=============  ===========================================================================
play           prompt, next, interruptible (true)
menu           prompt, choices {key = node}, timeout (5), retries (2), invalid_prompt
               ("invalid"), no_input_prompt ("no_input"), default (node; else goodbye)
collect        prompt, var, min_digits (1), max_digits (16), terminator ("#"), timeout (8),
               inter_digit_timeout (4), pattern (regex), retries (2), invalid_prompt,
               confirm (false: read the digits back, 1 accepts, 2 re-enters), next, on_failure
set            vars {name = value} (``language`` selects the prompt set; ``queue``,
               ``priority``, ``skill.<name>`` feed routing), next
branch         cases [{var, equals | matches | in | above | below, next}], default
schedule       open {"mon-fri" = "09:00-18:00", "sat" = "10:00-13:00"}, open_next,
               closed_next (also on holidays)
queue_state    queue, agents_available (node when an agent is logged in and free),
               ewt_above (seconds), ewt_next (node when the estimated wait is longer), next
goto           flow, node (default: that flow's start)
queue          queue (or the ``queue`` variable), skills {name = level}, priority  [terminal]
voicemail      queue (where the message is routed), greeting (prompt)               [terminal]
transfer       target (agent id, extension or sip:user@IP)                          [terminal]
hangup         prompt (optional)                                                     [terminal]
=============  ===========================================================================
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import WithJsonSchema

from acd.config import STRICT, ConfigError, ConfigIssue, issues_from_pydantic

TERMINAL = frozenset({"queue", "voicemail", "transfer", "hangup"})
NODE_TYPES = frozenset(
    {"play", "menu", "collect", "set", "branch", "schedule", "queue_state", "goto"} | TERMINAL
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS = frozenset("0123456789*#ABCD")


class FlowError(ConfigError):
    """A flow that cannot run: ``path`` is the configuration key (``ivr.flows.main.nodes.x``).

    A :class:`acd.config.ConfigError` (the project's one configuration error), so a caller that
    catches ``ConfigError`` catches it too; ``issues`` lists every mistake found."""


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    type: str
    opts: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.opts.get(key, default)


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    start: str
    nodes: Mapping[str, Node]


@dataclass(frozen=True, slots=True)
class IvrConfig:
    flows: Mapping[str, Flow] = field(default_factory=dict)
    entry: str = "main"
    timezone: str = "UTC"
    holidays: frozenset[dt.date] = frozenset()
    version: int = 0

    def flow(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            raise FlowError(f"ivr.flows.{name}", "no such flow") from None


_COMMON = {"type"}
_KEYS: dict[str, set[str]] = {
    "play": {"prompt", "next", "interruptible"},
    "menu": {
        "prompt",
        "choices",
        "timeout",
        "retries",
        "invalid_prompt",
        "no_input_prompt",
        "default",
    },
    "collect": {
        "prompt",
        "var",
        "min_digits",
        "max_digits",
        "terminator",
        "timeout",
        "inter_digit_timeout",
        "pattern",
        "retries",
        "invalid_prompt",
        "no_input_prompt",
        "confirm",
        "next",
        "on_failure",
    },
    "set": {"vars", "next"},
    "branch": {"cases", "default"},
    "schedule": {"open", "open_next", "closed_next"},
    "queue_state": {"queue", "agents_available", "ewt_above", "ewt_next", "next"},
    "goto": {"flow", "node"},
    "queue": {"queue", "skills", "priority"},
    "voicemail": {"queue", "greeting"},
    "transfer": {"target"},
    "hangup": {"prompt"},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "play": ("prompt", "next"),
    "menu": ("prompt", "choices"),
    "collect": ("var", "next"),
    "set": ("vars", "next"),
    "branch": ("cases", "default"),
    "schedule": ("open", "open_next", "closed_next"),
    "queue_state": ("queue", "next"),
    "goto": ("flow",),
    "voicemail": ("queue",),
    "transfer": ("target",),
}
_NODE_REFS = (
    "next",
    "default",
    "on_failure",
    "open_next",
    "closed_next",
    "agents_available",
    "ewt_next",
)


_NODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": sorted(NODE_TYPES)}},
    "description": "one node; its keys depend on its type (ivr/flow.py, docs/ivr.md)",
}
NodeTable = Annotated[dict[str, Any], WithJsonSchema(_NODE_SCHEMA)]
"""A node's table: its keys depend on its ``type`` and are checked by :func:`node_issues`."""


class FlowModel(BaseModel):
    """``[ivr.flows.NAME]``: the start node and the nodes."""

    model_config = STRICT

    start: str
    nodes: Annotated[dict[str, NodeTable], Field(min_length=1)]


class IvrModel(BaseModel):
    """The ``[ivr]`` table. pydantic checks its shape; :meth:`build` checks every node and every
    reference between nodes and flows, and returns all the mistakes at once."""

    model_config = STRICT

    entry: str = "main"
    timezone: str = "UTC"
    holidays: list[Annotated[Any, WithJsonSchema({"type": "string", "format": "date"})]] = []
    flows: dict[str, FlowModel] = {}

    def build(self, *, path: str = "ivr", version: int = 0) -> tuple[IvrConfig, list[ConfigIssue]]:
        """The flows and the mistakes found in them (``path``-prefixed keys)."""
        issues: list[ConfigIssue] = []
        flows: dict[str, Flow] = {}
        for fname, f in self.flows.items():
            fpath = f"{path}.flows.{fname}"
            nodes: dict[str, Node] = {}
            for nname, table in f.nodes.items():
                try:
                    nodes[nname] = _node(nname, table, f"{fpath}.nodes.{nname}")
                except FlowError as exc:
                    issues.extend(exc.issues)
                    nodes[nname] = Node(name=nname, type="?", opts=table)
            if f.start not in f.nodes:
                issues.append(
                    ConfigIssue(
                        f"{fpath}.start",
                        f"names node {f.start!r}, which this flow does not define",
                    )
                )
            flows[fname] = Flow(name=fname, start=f.start, nodes=nodes)
        if flows and self.entry not in flows:
            issues.append(
                ConfigIssue(
                    f"{path}.entry", f"names flow {self.entry!r}, which ivr.flows does not define"
                )
            )
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:
            issues.append(ConfigIssue(f"{path}.timezone", f"unknown time zone {self.timezone!r}"))
        holidays: set[dt.date] = set()
        for i, h in enumerate(self.holidays):
            try:
                if isinstance(h, dt.datetime):
                    holidays.add(h.date())
                else:
                    holidays.add(h if isinstance(h, dt.date) else dt.date.fromisoformat(str(h)))
            except ValueError:
                issues.append(ConfigIssue(f"{path}.holidays[{i}]", f"not a date: {h!r}"))
        cfg = IvrConfig(
            flows=flows,
            entry=self.entry,
            timezone=self.timezone,
            holidays=frozenset(holidays),
            version=version,
        )
        for flow in flows.values():
            issues.extend(_ref_issues(cfg, flow, f"{path}.flows.{flow.name}"))
        return cfg, issues


def ivr_from_table(
    table: Mapping[str, Any] | None, *, path: str = "ivr", version: int = 0
) -> tuple[IvrConfig, list[ConfigIssue]]:
    """Validate an ``[ivr]`` table: the flows and *every* mistake (empty when it is usable)."""
    if not table:
        return IvrConfig(version=version), []
    try:
        model = IvrModel.model_validate(table)
    except ValidationError as exc:
        return IvrConfig(version=version), issues_from_pydantic(exc, path)
    return model.build(path=path, version=version)


def parse_ivr(table: Mapping[str, Any] | None, *, path: str = "ivr", version: int = 0) -> IvrConfig:
    """Build and check every flow; raises :class:`FlowError` listing every mistake (``path``
    and ``reason`` are the first one's)."""
    if table is not None and not isinstance(table, Mapping):
        raise FlowError(path, "expected a table")
    cfg, issues = ivr_from_table(table, path=path, version=version)
    if issues:
        raise FlowError("", issues=issues)
    return cfg


def _node(name: str, t: Any, path: str) -> Node:
    if not isinstance(t, Mapping):
        raise FlowError(path, "expected a table with a type")
    kind = t.get("type")
    if not isinstance(kind, str) or kind not in NODE_TYPES:
        raise FlowError(
            f"{path}.type", f"expected one of {', '.join(sorted(NODE_TYPES))}, got {kind!r}"
        )
    unknown = set(t) - _KEYS[kind] - _COMMON
    if unknown:
        raise FlowError(f"{path}.{sorted(unknown)[0]}", f"unknown key for a {kind} node")
    for key in _REQUIRED.get(kind, ()):
        if key not in t:
            raise FlowError(f"{path}.{key}", f"is required for a {kind} node")
    opts = dict(t)
    _check_values(kind, opts, path)
    return Node(name=name, type=kind, opts=opts)


def _prompts(value: Any, path: str) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise FlowError(path, "expected a prompt name or a list of prompt names")


def _number(opts: Mapping[str, Any], key: str, path: str, lo: float, hi: float) -> None:
    if key in opts:
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise FlowError(f"{path}.{key}", f"expected a number from {lo:g} to {hi:g}, got {v!r}")


def _check_values(kind: str, o: dict[str, Any], path: str) -> None:
    for key in ("prompt", "invalid_prompt", "no_input_prompt", "greeting"):
        if key in o:
            _prompts(o[key], f"{path}.{key}")
    _number(o, "timeout", path, 0.5, 120)
    _number(o, "inter_digit_timeout", path, 0.5, 60)
    _number(o, "retries", path, 0, 10)
    _number(o, "min_digits", path, 1, 64)
    _number(o, "max_digits", path, 1, 64)
    _number(o, "ewt_above", path, 0, 86400)
    _number(o, "priority", path, 0, 10)
    if kind == "menu":
        choices = o["choices"]
        if not isinstance(choices, Mapping) or not choices:
            raise FlowError(f"{path}.choices", 'expected a table like { "1" = "sales" }')
        for key, target in choices.items():
            if str(key) not in KEYS:
                raise FlowError(f"{path}.choices.{key}", "a choice is one key: 0-9, *, # or A-D")
            if not isinstance(target, str):
                raise FlowError(f"{path}.choices.{key}", "expected a node name")
    if kind == "collect":
        if not isinstance(o["var"], str) or not o["var"]:
            raise FlowError(f"{path}.var", "expected a variable name")
        if o.get("min_digits", 1) > o.get("max_digits", 16):
            raise FlowError(f"{path}.min_digits", "is larger than max_digits")
        if "pattern" in o:
            try:
                re.compile(str(o["pattern"]))
            except re.error as exc:
                raise FlowError(f"{path}.pattern", f"not a regular expression: {exc}") from None
        term = o.get("terminator", "#")
        if not isinstance(term, str) or any(c not in KEYS for c in term):
            raise FlowError(f"{path}.terminator", 'expected keys such as "#" (or "" for none)')
    if kind == "set":
        if not isinstance(o["vars"], Mapping) or not o["vars"]:
            raise FlowError(f"{path}.vars", 'expected a table like { language = "zh" }')
        if "priority" in o["vars"]:
            p = o["vars"]["priority"]
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 10:
                raise FlowError(f"{path}.vars.priority", f"expected 0-10, got {p!r}")
    if kind == "branch":
        cases = o["cases"]
        if not isinstance(cases, list) or not cases:
            raise FlowError(
                f"{path}.cases", "expected a list of {var, equals|matches|in|above|below, next}"
            )
        for i, c in enumerate(cases):
            cp = f"{path}.cases[{i}]"
            if not isinstance(c, Mapping) or "var" not in c or "next" not in c:
                raise FlowError(cp, "needs var and next")
            tests = [k for k in ("equals", "matches", "in", "above", "below") if k in c]
            if len(tests) != 1:
                raise FlowError(cp, "needs exactly one of equals, matches, in, above, below")
            for k in ("above", "below"):
                if k in c and (isinstance(c[k], bool) or not isinstance(c[k], int | float)):
                    raise FlowError(f"{cp}.{k}", f"expected a number, got {c[k]!r}")
            if "in" in c and (not isinstance(c["in"], list) or not c["in"]):
                raise FlowError(f"{cp}.in", "expected a list of values")
            if "matches" in c:
                try:
                    re.compile(str(c["matches"]))
                except re.error as exc:
                    raise FlowError(f"{cp}.matches", f"not a regular expression: {exc}") from None
    if kind == "schedule":
        opened = o["open"]
        if not isinstance(opened, Mapping):
            raise FlowError(f"{path}.open", 'expected a table like { "mon-fri" = "09:00-18:00" }')
        for days, hours in opened.items():
            try:
                parse_days(str(days))
                parse_hours(str(hours))
            except ValueError as exc:
                raise FlowError(f"{path}.open.{days}", str(exc)) from None
    if kind == "queue" and "skills" in o:
        skills = o["skills"]
        if not isinstance(skills, Mapping) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10 for v in skills.values()
        ):
            raise FlowError(f"{path}.skills", "expected a table of skill levels 0-10")


def _ref_issues(cfg: IvrConfig, flow: Flow, path: str) -> list[ConfigIssue]:
    """Every node reference of ``flow`` that leads nowhere."""
    out: list[ConfigIssue] = []
    for node in flow.nodes.values():
        if node.type == "?":  # its own mistakes are already reported
            continue
        npath = f"{path}.nodes.{node.name}"
        refs: list[tuple[str, Any]] = [
            (k, node.get(k)) for k in _NODE_REFS if node.get(k) is not None
        ]
        if node.type == "menu":
            refs += [(f"choices.{k}", v) for k, v in node.get("choices").items()]
        if node.type == "branch":
            refs += [(f"cases[{i}].next", c["next"]) for i, c in enumerate(node.get("cases"))]
        for key, target in refs:
            if not isinstance(target, str) or resolve(cfg, flow, target) is None:
                out.append(
                    ConfigIssue(
                        f"{npath}.{key}",
                        f"goes to {target!r}, which is not a node of this flow (or flow:node)",
                    )
                )
        if node.type == "goto":
            other = cfg.flows.get(str(node.get("flow")))
            if other is None:
                out.append(
                    ConfigIssue(
                        f"{npath}.flow",
                        f"names flow {node.get('flow')!r}, which ivr.flows does not define",
                    )
                )
                continue
            n = node.get("node")
            if n is not None and (not isinstance(n, str) or n not in other.nodes):
                out.append(
                    ConfigIssue(
                        f"{npath}.node", f"flow {other.name!r} has no node {node.get('node')!r}"
                    )
                )
    return out


def resolve(cfg: IvrConfig, flow: Flow, target: str) -> tuple[Flow, Node] | None:
    """``node`` in ``flow`` or ``other_flow:node``."""
    if ":" in target:
        fname, _, nname = target.partition(":")
        other = cfg.flows.get(fname)
        if other is None or nname not in other.nodes:
            return None
        return other, other.nodes[nname]
    node = flow.nodes.get(target)
    return (flow, node) if node is not None else None


def parse_days(spec: str) -> set[int]:
    """``mon-fri``, ``sat``, ``mon,wed,fri`` -> weekday numbers (Monday = 0)."""
    out: set[int] = set()
    for part in spec.lower().split(","):
        part = part.strip()
        if "-" in part:
            a, _, b = part.partition("-")
            if a not in DAYS or b not in DAYS:
                raise ValueError(f"days are mon..sun, got {spec!r}")
            i, j = DAYS.index(a), DAYS.index(b)
            out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in DAYS:
            out.add(DAYS.index(part))
        else:
            raise ValueError(f"days are mon..sun, got {spec!r}")
    return out


def parse_hours(spec: str) -> tuple[dt.time, dt.time]:
    """``09:00-18:00`` (end exclusive; ``24:00`` allowed as the end)."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", spec)
    if not m:
        raise ValueError(f'hours look like "09:00-18:00", got {spec!r}')
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"not a time range: {spec!r}")
    end = dt.time(23, 59, 59, 999999) if h2 == 24 else dt.time(h2, m2)
    start = dt.time(h1, m1)
    if start >= end:
        raise ValueError(
            f"{spec!r}: the start must be before the end (write overnight hours as two "
            'entries: "22:00-24:00" and "00:00-06:00")'
        )
    return start, end


def is_open(opened: Mapping[str, str], holidays: frozenset[dt.date], when: dt.datetime) -> bool:
    """Whether ``when`` (local time) falls in the opening hours and is not a holiday."""
    if when.date() in holidays:
        return False
    t = when.time()
    for days, hours in opened.items():
        if when.weekday() in parse_days(days):
            start, end = parse_hours(hours)
            if start <= t < end:
                return True
    return False
