"""ACD and routing configuration: frozen dataclasses the engine reads, built by pydantic models.

The engine (compiled with mypyc) reads :class:`QueueConfig`, :class:`AgentConfig` and
:class:`AcdConfig` on hot paths, so they stay plain frozen dataclasses. The file's shape is
described once by pydantic models (:class:`AcdModel`, :class:`QueueModel`, :class:`AgentRouting`)
that validate a parsed table and *build* those dataclasses; ``hotline.config`` embeds the same
models in the whole file's model, so ``[acd]`` is validated once, with every mistake reported.

This module is also the project's one home for configuration errors, because it is the lowest
layer every consumer of configuration may import (the engine, ``ivr``, ``sim`` and ``hotline``;
none of them may import ``hotline``): :class:`ConfigError` (all the mistakes of a file, each
``file:line: key.path: reason``), :class:`ConfigIssue`, :func:`issues_from_pydantic` (pydantic's
messages made plain) and :func:`locate` (the line of a key path in TOML text).

``AcdConfig.from_dict(table, path="acd")`` takes the plain dict parsed from TOML (or JSON) and
raises :class:`ConfigError` naming the key path of every mistake, e.g.
``acd.queues.sales.max_wait: expected seconds > 0, got -5``.

Shape (TOML)::

    [acd]
    agent_defaults = { no_answer_delay_seconds = 5 }   # defaults for every agent, each overridable per agent
    [acd.queues.sales]
    strategy = "longest-idle"        # any name in routing.strategy.strategy_names()
    strategy_params = { batch = 2, step_seconds = 10 }      # ring-progressively only
    weights = { skill = 2, idle = 1, occupancy = 1, group = 1, priority = 0 }   # "weighted"
    skills = { fr = 5 }              # required {skill: minimum level 1-10}
    groups = ["tier1", "tier2"]      # workgroups serving the queue, in preference order
    widening = [ { after_seconds = 30, relax_levels = 2, add_groups = ["backup"] } ]
    max_len = 50
    max_wait = 300
    overflow = "queue:support"       # or "voicemail"
    when_no_agents = "join"          # "join" | "refuse" | "leave"
    ring_timeout = 20
    wrap_up_seconds = 10
    announce_every = 60
    service_level_seconds = 20
    short_abandon_seconds = 5
    [acd.agents.a17]
    name = "Ana"
    skills = { fr = 7, en = 4 }
    groups = ["tier1"]
    queues = { sales = { penalty = 0, position = 1, weight = 1.0 } }
    max_misses = 3
    wrap_up_seconds = 5              # overrides the queue's
    priority = 5                     # 0-10, used by the "weighted" strategy
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from routing.weights import WEIGHT_KEYS

SKILL_MIN = 1
SKILL_MAX = 10
DEFAULT_PAUSE_REASONS: tuple[str, ...] = ("break", "lunch", "training", "meeting", "after-call")
"""``[acd] pause_reasons`` when the file gives none."""
RESERVED_PAUSE_REASONS: frozenset[str] = frozenset({"rona"})
"""Reasons the engine gives itself (``rona``: the automatic pause after missed offers)."""


# --- configuration errors, shared by every layer ------------------------------------------------


class ConfigIssue(NamedTuple):
    """One mistake: the key path as the user wrote it (``agents[1].skills.sales``), the reason,
    and the line once the file's text is known."""

    path: str
    reason: str
    line: int | None = None


class ConfigError(ValueError):
    """A configuration that cannot be used, with *every* mistake found in it.

    ``str()`` is one line per mistake, ``file:line: key.path: reason`` (the file and line when
    known). ``path``, ``reason`` and ``line`` are those of the first mistake, ``issues`` all of
    them, so a caller can show one or all."""

    def __init__(
        self,
        path: str,
        reason: str = "",
        *,
        file: str = "",
        line: int | None = None,
        issues: Sequence[ConfigIssue] = (),
    ) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues) or (ConfigIssue(path, reason, line),)
        first = self.issues[0]
        self.path = first.path
        self.reason = first.reason
        self.line = first.line
        self.file = file
        super().__init__("\n".join(format_issue(i, file) for i in self.issues))

    @classmethod
    def of(
        cls,
        issues: Sequence[ConfigIssue],
        *,
        file: str = "",
        text: str = "",
        tail: Sequence[ConfigIssue] = (),
    ) -> ConfigError:
        """All ``issues`` as one error, each located to its line in ``text`` when given and then
        in the file's order; ``tail`` (e.g. a missing section) comes after them."""
        issues = [*issues]
        if text:
            issues = [i._replace(line=i.line or locate(text, i.path)) for i in issues]
            issues.sort(key=lambda i: i.line or 0)
            tail = [i._replace(line=i.line or locate(text, i.path)) for i in tail]
        return cls("", issues=[*issues, *tail], file=file)


def format_issue(issue: ConfigIssue, file: str = "") -> str:
    """``file:line: path: reason`` with the parts that are known."""
    where = file
    if file and issue.line is not None:
        where += f":{issue.line}"
    parts = [p for p in (where, issue.path) if p]
    return ": ".join([*parts, issue.reason])


def key_path(loc: Iterable[str | int], prefix: str = "") -> str:
    """A pydantic location as the user writes it: ``agents[1].skills.sales``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return f"a list {list(value)!r}" if len(repr(value)) < 60 else "a list"
    return repr(value)


_PLAIN: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "date_type": 'expected a date like 2026-10-01 or "2026-10-01"',
    "date_parsing": 'expected a date like 2026-10-01 or "2026-10-01"',
    "date_from_datetime_parsing": 'expected a date like 2026-10-01 or "2026-10-01"',
    "date_from_datetime_inexact": "expected a date without a time of day",
}


def plain_reason(error: Mapping[str, Any]) -> str:
    """pydantic's message for one error, rewritten for a person editing a TOML file."""
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = f", got {_show(value)}"
    if kind in ("missing", "extra_forbidden"):
        return _PLAIN[kind]
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a table, got {type(value).__name__}"
    if kind in _PLAIN:
        return _PLAIN[kind] + got
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        bound = ctx.get(key)
        noun = "a number" if isinstance(bound, float) else "an integer"
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"expected {noun} {op} {shown}{got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', '')}{got}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} entry (or entries), got none"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} entries"
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # our own PydanticCustomError types carry a plain message already; add the value
    if ctx.get("no_value") or "key" in ctx:
        return str(error["msg"])
    return f"{error['msg']}{got}"


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    from typing import get_args, get_origin

    while True:
        args = get_args(tp)
        if get_origin(tp) is Annotated:
            tp = args[0]
        elif type(None) in args:
            tp = next(a for a in args if a is not type(None))
        else:
            return tp


def _known_keys(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str]:
    """The keys allowed where an unknown key was found: walk ``model``'s fields along ``loc``
    (list items and table values step into their element type)."""
    from typing import get_args, get_origin

    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if get_origin(tp) in (list, dict):
            tp = get_args(tp)[-1]
            continue
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)) or isinstance(part, int):
            return []
        info = tp.model_fields.get(part) or next(
            (f for f in tp.model_fields.values() if f.alias == part), None
        )
        if info is None:
            return []
        tp = info.annotation
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted(f.alias or name for name, f in tp.model_fields.items())
    return []


def issues_from_pydantic(
    exc: ValidationError, prefix: str = "", *, model: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Every error of a pydantic validation, with the user's key path and a plain reason;
    ``model`` (the validated class) lets an unknown key's reason list the known ones."""
    out: list[ConfigIssue] = []
    for e in exc.errors(include_url=False):
        loc = list(e["loc"])
        ctx = e.get("ctx") or {}
        if "key" in ctx:  # a model-level check that names one of its keys
            loc.append(str(ctx["key"]))
        reason = plain_reason(e)
        if e["type"] == "extra_forbidden" and model is not None:
            known = _known_keys(model, loc[:-1])
            if known:
                reason = f"unknown key (expected one of: {', '.join(known)})"
        out.append(ConfigIssue(key_path(loc, prefix), reason))
    return out


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _header_parts(text: str) -> list[str]:
    return [
        p.strip().strip('"').strip("'")
        for p in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", text)
    ]


def locate(text: str, path: str) -> int | None:
    """Best-effort line of a key path such as ``agents[1].skills.sales`` or
    ``acd.queues.sales.max_wait`` in TOML ``text``: the longest table header that prefixes the
    path (the n-th one for ``[[arrays]]``), then the deepest key found under it. A missing key
    is reported at its table's line, a missing table at line 1."""
    lines = text.splitlines()
    parts = re.findall(r"\"([^\"]*)\"|([^.\[\]]+)|\[(\d+)\]", path)
    names: list[str] = []
    index: list[int | None] = []
    for quoted, name, idx in parts:
        if quoted or name:
            names.append(quoted or name)
            index.append(None)
        elif index:
            index[-1] = int(idx)
    if not names:
        return 1 if lines else None
    headers: list[tuple[int, list[str]]] = []
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m and "=" not in m.group(1):
            headers.append((i, _header_parts(m.group(1))))
    start, depth = -1, 0
    for k in range(len(names), 0, -1):
        prefix = names[:k]
        matches = [i for i, h in headers if h == prefix]
        if not matches:
            continue
        want = index[k - 1]
        if want is not None:
            if want < len(matches):
                start, depth = matches[want], k
                break
            continue
        start, depth = matches[0], k
        break
    end = len(lines)
    for i, _ in headers:
        if i > start:
            end = i
            break
    for name in reversed(names[depth:]):
        quoted = re.escape(name)
        key_re = re.compile(r"^\s*[\"']?" + quoted + r"[\"']?\s*=")
        inline_re = re.compile(r"[{,]\s*[\"']?" + quoted + r"[\"']?\s*=")
        for i in range(start + 1, end):
            line = lines[i]
            if key_re.match(line) or inline_re.search(line):
                return i + 1
        # a dotted key written inline: ``acd.queues.x = ...`` at the top of the file
    return start + 1 if start >= 0 else (1 if lines else None)


# --- the engine's configuration: frozen dataclasses ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WideningStep:
    """After ``after_seconds`` in the queue, relax every required skill level by ``relax_levels``
    and let ``add_groups`` serve the call too. Steps are cumulative and sorted by time."""

    after_seconds: float
    relax_levels: int = 0
    add_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """One queue."""

    name: str
    strategy: str = "longest-idle"
    """Routing strategy name (``routing.strategy`` registry)."""
    strategy_params: Mapping[str, float] = field(default_factory=dict)
    """Strategy parameters (``ring-progressively``: ``batch``, ``step_seconds``)."""
    weights: Mapping[str, float] = field(default_factory=dict)
    """Supervisor weights for the ``weighted`` strategy, keys in :data:`WEIGHT_KEYS`."""
    skills: Mapping[str, int] = field(default_factory=dict)
    """Required ``{skill: minimum level}``; a call's own requirements are merged (max)."""
    groups: tuple[str, ...] = ()
    """Workgroups whose agents serve this queue from the start, in preference order."""
    widening: tuple[WideningStep, ...] = ()
    priority: int = 0
    """Added to each call's priority (cross-queue fairness: higher first, then oldest)."""
    max_len: int | None = None
    """Maximum number of waiting calls; a call beyond it is rejected (or overflows)."""
    max_wait: float | None = None
    """Seconds in this queue before the call goes to ``overflow``."""
    overflow: str | None = None
    """``"queue:NAME"`` or ``"voicemail"``; without it the call is rejected at ``max_wait``."""
    when_no_agents: Literal["join", "refuse", "leave"] = "join"
    """No member logged in: ``join`` waits anyway; ``refuse`` does not admit new calls; ``leave``
    also sends waiting calls away when the last member logs out (to ``overflow`` if set)."""
    ring_timeout: float = 20.0
    wrap_up_seconds: float = 0.0
    announce_every: float | None = None
    """Announce position and EWT on joining and then every this many seconds."""
    service_level_seconds: float = 20.0
    short_abandon_seconds: float = 5.0
    default_handle_seconds: float = 180.0
    """Average handle time assumed for EWT before any call has been handled."""
    record: bool = False
    """Record answered calls (stereo WAV: caller left, agent right; hotline/center/recordings.py).
    Not read by the engine."""
    consent_prompt: str = "recording_consent"
    """Played to the caller before the agent is connected when ``record``; "" for none."""
    recording_keep_days: float = 30.0
    """Days a recording is kept after the call, then deleted (checked hourly)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """An agent's membership in one queue."""

    penalty: int = 0
    """Tier: agents in a lower tier are chosen first (Asterisk penalty, FreeSWITCH tier level)."""
    position: int | None = None
    """Order for linear / round-robin / ring-progressively; defaults to the agent's config order."""
    weight: float = 1.0
    """Weight for ``weighted-random``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """One agent."""

    id: str
    name: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    queues: Mapping[str, Membership] = field(default_factory=dict)
    """Direct queue memberships (agents also serve queues through their groups)."""
    max_misses: int = 3
    """Unanswered offers in a row before the agent is paused with reason ``rona`` (0 = never)."""
    wrap_up_seconds: float | None = None
    """Overrides the queue's wrap-up time."""
    priority: int = 0
    """0-10; criterion ``priority`` of the ``weighted`` strategy."""
    reject_delay_seconds: float = 5.0
    """Not routable for this long after declining an offer (the engine applies at least 1 s)."""
    busy_delay_seconds: float = 30.0
    """Not routable for this long after an offer failed (busy, unreachable; at least 1 s)."""
    no_answer_delay_seconds: float = 5.0
    """Not routable for this long after a ring-no-answer (when not paused), so the call tries other
    agents before coming back to this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdConfig:
    """The whole ACD configuration (queues and agents)."""

    queues: Mapping[str, QueueConfig] = field(default_factory=dict)
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    max_overflow_hops: int = 5
    """A call overflowing more than this many times is rejected (``overflow_loop``)."""
    pause_reasons: tuple[str, ...] = DEFAULT_PAUSE_REASONS
    """The reasons an agent may give for a pause (``POST /api/agents/{id}/pause``). Not read
    by the engine, which takes any reason (and gives ``rona`` itself)."""

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], *, path: str = "acd") -> AcdConfig:
        """Validate plain data (``[acd]`` parsed from TOML or JSON) and build the configuration;
        raises :class:`ConfigError` naming the key path of every mistake."""
        try:
            model = AcdModel.model_validate(table)
        except ValidationError as exc:
            raise ConfigError.of(issues_from_pydantic(exc, path)) from None
        cfg = model.build()
        cfg.validate(path=path)
        return cfg

    def issues(self, *, path: str = "acd") -> list[ConfigIssue]:
        """Cross-reference mistakes (unknown strategy, overflow target, agents' queues), all of
        them, with their key paths under ``path``."""
        from routing.strategy import strategy_names

        names = strategy_names()
        out: list[ConfigIssue] = []
        for qname, q in self.queues.items():
            p = f"{path}.queues.{qname}"
            if q.strategy not in names:
                out.append(
                    ConfigIssue(
                        f"{p}.strategy", f"unknown strategy {q.strategy!r}, expected one of {names}"
                    )
                )
            if q.overflow is not None and q.overflow != "voicemail":
                target = q.overflow.removeprefix("queue:")
                if not q.overflow.startswith("queue:") or target not in self.queues:
                    out.append(
                        ConfigIssue(
                            f"{p}.overflow",
                            f"expected 'voicemail' or 'queue:<known queue>', got {q.overflow!r}",
                        )
                    )
                elif target == qname:
                    out.append(ConfigIssue(f"{p}.overflow", "a queue cannot overflow to itself"))
        for aid, a in self.agents.items():
            for qname in a.queues:
                if qname not in self.queues:
                    out.append(ConfigIssue(f"{path}.agents.{aid}.queues.{qname}", "unknown queue"))
        return out

    def validate(self, *, path: str = "acd") -> None:
        """Cross-reference checks (run by :meth:`from_dict`, by the engine on every live change,
        and by ``hotline.config``); raises :class:`ConfigError` listing every mistake."""
        found = self.issues(path=path)
        if found:
            raise ConfigError.of(found)

    def with_queue(self, queue: QueueConfig) -> AcdConfig:
        """A copy with ``queue`` added or replaced (for supervisors' live edits)."""
        return replace(self, queues={**self.queues, queue.name: queue})

    def with_agent(self, agent: AgentConfig) -> AcdConfig:
        """A copy with ``agent`` added or replaced."""
        return replace(self, agents={**self.agents, agent.id: agent})


# --- the file's shape: pydantic models that build the dataclasses ----------------------------------

STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
"""What every configuration model shares: unknown keys are errors (a typo must not silently do
nothing), no coercion (``"5"`` is not a number, ``true`` not an integer), immutable."""


def _check(test: Any, message: str) -> Any:
    """An after-validator: ``message`` (the value is appended) unless ``test(value)``."""

    def check(value: Any) -> Any:
        if not test(value):
            raise PydanticCustomError("hotline", message)
        return value

    return AfterValidator(check)


def _finite(v: float) -> bool:
    return math.isfinite(v)


_POSITIVE = WithJsonSchema({"type": "number", "exclusiveMinimum": 0})
_NON_NEGATIVE = WithJsonSchema({"type": "number", "minimum": 0})
Seconds = Annotated[
    float, _check(lambda v: _finite(v) and v > 0, "expected seconds > 0"), _POSITIVE
]
"""A duration that must be positive (``ring_timeout``, ``max_wait``...)."""
SecondsOrZero = Annotated[
    float, _check(lambda v: _finite(v) and v >= 0, "expected seconds >= 0"), _NON_NEGATIVE
]
NonNegative = Annotated[
    float, _check(lambda v: _finite(v) and v >= 0, "expected a number >= 0"), _NON_NEGATIVE
]
SkillLevel = Annotated[
    int,
    _check(
        lambda v: SKILL_MIN <= v <= SKILL_MAX, f"expected a skill level {SKILL_MIN}-{SKILL_MAX}"
    ),
    WithJsonSchema({"type": "integer", "minimum": SKILL_MIN, "maximum": SKILL_MAX}),
]
Name = Annotated[
    str,
    _check(bool, "expected a non-empty string"),
    WithJsonSchema({"type": "string", "minLength": 1}),
]
QueueName = Annotated[
    str,
    _check(lambda v: bool(v) and "." not in v, "expected a queue name without dots"),
    WithJsonSchema({"type": "string", "pattern": "^[^.]+$"}),
]
WeightKey = Annotated[
    str,
    _check(lambda v: v in WEIGHT_KEYS, f"unknown key, expected one of {list(WEIGHT_KEYS)}"),
    WithJsonSchema({"enum": list(WEIGHT_KEYS)}),
]
Skills = dict[str, SkillLevel]
"""``{skill: level 1-10}``."""


PauseReason = Annotated[
    str,
    _check(
        lambda v: re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", v) is not None,
        'expected a reason word (lower-case letters, digits, "_" and "-", at most 32)',
    ),
    _check(
        lambda v: v not in RESERVED_PAUSE_REASONS,
        "is the engine's own reason (the automatic pause after missed offers)",
    ),
    WithJsonSchema({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}),
]


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise PydanticCustomError("hotline", "each reason once, got duplicates", {"no_value": 1})
    return values


def _queue_list(value: Any) -> Any:
    """``queues = ["sales"]`` is short for ``queues = { sales = {} }``."""
    if isinstance(value, list) and all(isinstance(q, str) for q in value):
        return {q: {} for q in value}
    return value


class _Model(BaseModel):
    model_config = STRICT

    def _given(self, **convert: Any) -> dict[str, Any]:
        """The keys the file gave (defaults stay the dataclass's), converted where asked."""
        out: dict[str, Any] = {}
        for key in self.model_fields_set:
            value = getattr(self, key)
            fn = convert.get(key)
            out[key] = fn(value) if fn else value
        return out


class WideningModel(_Model):
    """``{ after_seconds = 30, relax_levels = 2, add_groups = ["backup"] }``."""

    after_seconds: SecondsOrZero
    relax_levels: int = Field(default=0, ge=0, le=9)
    add_groups: list[Name] = []

    def build(self) -> WideningStep:
        return WideningStep(**self._given(add_groups=tuple))


def _sorted_steps(steps: list[WideningModel]) -> list[WideningModel]:
    times = [s.after_seconds for s in steps]
    if times != sorted(times):
        raise PydanticCustomError(
            "hotline", "steps must be sorted by after_seconds", {"no_value": 1}
        )
    return steps


class QueueModel(_Model):
    """One queue (``[acd.queues.NAME]``); keys and meaning: :class:`QueueConfig`."""

    strategy: Name = "longest-idle"
    strategy_params: dict[str, NonNegative] = {}
    weights: dict[WeightKey, NonNegative] = {}
    skills: Skills = {}
    groups: list[Name] = []
    widening: Annotated[list[WideningModel], AfterValidator(_sorted_steps)] = []
    priority: int = 0
    max_len: Annotated[int, Field(ge=1)] | None = None
    max_wait: Seconds | None = None
    overflow: Name | None = Field(default=None, description='"voicemail" or "queue:NAME"')
    when_no_agents: Literal["join", "refuse", "leave"] = "join"
    ring_timeout: Seconds = 20.0
    wrap_up_seconds: SecondsOrZero = 0.0
    announce_every: Seconds | None = None
    service_level_seconds: SecondsOrZero = 20.0
    short_abandon_seconds: SecondsOrZero = 5.0
    default_handle_seconds: Seconds = 180.0
    record: bool = False
    consent_prompt: Annotated[
        str,
        _check(
            lambda v: re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_.-]*)?", v) is not None,
            'expected a prompt name (letters, digits, "_", ".", "-") or "" for none',
        ),
        WithJsonSchema(
            {"type": "string", "pattern": "^([A-Za-z0-9][A-Za-z0-9_.-]*)?$"},
        ),
    ] = "recording_consent"
    recording_keep_days: Annotated[
        float,
        _check(lambda v: _finite(v) and v > 0, "expected days > 0"),
        _POSITIVE,
    ] = 30.0

    def build(self, name: str) -> QueueConfig:
        return QueueConfig(
            name=name,
            **self._given(
                groups=tuple,
                widening=lambda steps: tuple(s.build() for s in steps),
                strategy_params=dict,
                weights=dict,
                skills=dict,
            ),
        )


class MembershipModel(_Model):
    """An agent's membership in one queue: ``{ penalty = 0, position = 1, weight = 1.0 }``."""

    penalty: int = Field(default=0, ge=0)
    position: Annotated[int, Field(ge=0)] | None = None
    weight: NonNegative = 1.0

    def build(self) -> Membership:
        return Membership(**self._given())


Memberships = Annotated[
    dict[QueueName, MembershipModel],
    BeforeValidator(_queue_list),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "penalty": {"type": "integer", "minimum": 0},
                            "position": {"type": "integer", "minimum": 0},
                            "weight": {"type": "number", "minimum": 0},
                        },
                    },
                },
            ],
            "description": 'queues served: ["sales"] or { sales = { penalty = 1 } }',
        }
    ),
]


class AgentRouting(_Model):
    """What routing knows of an agent (the keys of :class:`AgentConfig`, all optional): the
    ``[acd.agents.ID]`` tables, ``[acd] agent_defaults``, and the routing part of the service's
    ``[[agents]]`` and the simulator's ``[[agent_groups]]``."""

    name: Name | None = None
    skills: Skills = {}
    groups: list[Name] = []
    queues: Memberships = {}
    max_misses: int = Field(default=3, ge=0)
    wrap_up_seconds: SecondsOrZero | None = None
    priority: int = Field(default=0, ge=0, le=10)
    reject_delay_seconds: SecondsOrZero = 5.0
    busy_delay_seconds: SecondsOrZero = 30.0
    no_answer_delay_seconds: SecondsOrZero = 5.0

    def routing_fields(self) -> dict[str, Any]:
        """The given keys in :class:`AgentConfig`'s form."""
        return self._given(
            groups=tuple,
            skills=dict,
            queues=lambda qs: {q: m.build() for q, m in qs.items()},
        )

    def build(self, agent_id: str, defaults: AgentRouting | None = None) -> AgentConfig:
        kw = defaults.routing_fields() if defaults is not None else {}
        kw.update(self.routing_fields())
        kw.pop("id", None)
        return AgentConfig(id=agent_id, **kw)


class AcdModel(_Model):
    """The ``[acd]`` table."""

    queues: dict[QueueName, QueueModel] = {}
    agents: dict[Name, AgentRouting] = {}
    max_overflow_hops: int = Field(default=5, ge=0)
    agent_defaults: AgentRouting | None = None
    pause_reasons: Annotated[
        list[PauseReason], Field(min_length=1, max_length=50), AfterValidator(_distinct)
    ] = list(DEFAULT_PAUSE_REASONS)
    """The reasons agents may pause with (``break``, ``lunch`` ...)."""

    def build(self, extra_agents: Mapping[str, AgentRouting] | None = None) -> AcdConfig:
        """The engine's configuration; ``extra_agents`` (the service's ``[[agents]]``) are
        merged over ``[acd.agents]`` entries of the same id."""
        agents: dict[str, AgentConfig] = {}
        ids = [*self.agents, *(a for a in (extra_agents or {}) if a not in self.agents)]
        for aid in ids:
            kw: dict[str, Any] = {}
            if self.agent_defaults is not None:
                kw.update(self.agent_defaults.routing_fields())
            if aid in self.agents:
                kw.update(self.agents[aid].routing_fields())
            if extra_agents and aid in extra_agents:
                kw.update(extra_agents[aid].routing_fields())
            agents[aid] = AgentConfig(id=aid, **kw)
        return AcdConfig(
            queues={n: q.build(n) for n, q in self.queues.items()},
            agents=agents,
            max_overflow_hops=self.max_overflow_hops,
            pause_reasons=tuple(self.pause_reasons),
        )
