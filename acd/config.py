"""ACD and routing configuration: frozen dataclasses, validated once by :meth:`AcdConfig.from_dict`.

``AcdConfig.from_dict(table, path="acd")`` takes the plain dict parsed from TOML (or JSON) and
raises :class:`ConfigError` naming the key path, e.g.
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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from routing.weights import WEIGHT_KEYS

SKILL_MIN = 1
SKILL_MAX = 10


class ConfigError(ValueError):
    """Invalid configuration; the message starts with the dotted key path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


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

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], *, path: str = "acd") -> AcdConfig:
        """Build and validate from plain data; raises :class:`ConfigError`."""
        _expect_mapping(table, path)
        _no_unknown(table, path, {"queues", "agents", "max_overflow_hops", "agent_defaults"})
        hops = _int(table.get("max_overflow_hops", 5), f"{path}.max_overflow_hops", minimum=0)
        defaults = table.get("agent_defaults", {})
        _expect_mapping(defaults, f"{path}.agent_defaults")
        queues_t = table.get("queues", {})
        _expect_mapping(queues_t, f"{path}.queues")
        queues = {
            str(name): _queue(str(name), q, f"{path}.queues.{name}") for name, q in queues_t.items()
        }
        agents_t = table.get("agents", {})
        _expect_mapping(agents_t, f"{path}.agents")
        agents = {
            str(aid): _agent(
                str(aid), {**defaults, **a} if isinstance(a, Mapping) else a, f"{path}.agents.{aid}"
            )
            for aid, a in agents_t.items()
        }
        cfg = cls(queues=queues, agents=agents, max_overflow_hops=hops)
        cfg.validate(path=path)
        return cfg

    def validate(self, *, path: str = "acd") -> None:
        """Cross-reference checks (also run by :meth:`from_dict`; call it on hand-built configs)."""
        from routing.strategy import strategy_names

        names = strategy_names()
        for qname, q in self.queues.items():
            p = f"{path}.queues.{qname}"
            if q.strategy not in names:
                raise ConfigError(
                    f"{p}.strategy", f"unknown strategy {q.strategy!r}, expected one of {names}"
                )
            if q.overflow is not None and q.overflow != "voicemail":
                target = q.overflow.removeprefix("queue:")
                if not q.overflow.startswith("queue:") or target not in self.queues:
                    raise ConfigError(
                        f"{p}.overflow",
                        f"expected 'voicemail' or 'queue:<known queue>', got {q.overflow!r}",
                    )
                if target == qname:
                    raise ConfigError(f"{p}.overflow", "a queue cannot overflow to itself")
        for aid, a in self.agents.items():
            for qname in a.queues:
                if qname not in self.queues:
                    raise ConfigError(f"{path}.agents.{aid}.queues.{qname}", "unknown queue")

    def with_queue(self, queue: QueueConfig) -> AcdConfig:
        """A copy with ``queue`` added or replaced (for supervisors' live edits)."""
        return replace(self, queues={**self.queues, queue.name: queue})

    def with_agent(self, agent: AgentConfig) -> AcdConfig:
        """A copy with ``agent`` added or replaced."""
        return replace(self, agents={**self.agents, agent.id: agent})


# --- validation helpers -------------------------------------------------------------------------


def _expect_mapping(value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a table, got {type(value).__name__}")


def _no_unknown(table: Mapping[str, Any], path: str, known: set[str]) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{path}.{key}", f"unknown key, expected one of {sorted(known)}")


def _num(value: Any, path: str, *, positive: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(path, f"expected a number of seconds, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(path, f"expected seconds {bound}, got {value!r}")
    return float(value)


def _int(value: Any, path: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(path, f"expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"expected an integer <= {maximum}, got {value}")
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"expected a non-empty string, got {value!r}")
    return value


def _str_list(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(path, f"expected a list of strings, got {value!r}")
    return tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _skills(value: Any, path: str) -> dict[str, int]:
    _expect_mapping(value, path)
    return {
        str(k): _int(v, f"{path}.{k}", minimum=SKILL_MIN, maximum=SKILL_MAX)
        for k, v in value.items()
    }


_QUEUE_KEYS = {
    "strategy", "strategy_params", "weights", "skills", "groups", "widening", "priority",
    "max_len", "max_wait", "overflow", "when_no_agents", "ring_timeout", "wrap_up_seconds",
    "announce_every", "service_level_seconds", "short_abandon_seconds", "default_handle_seconds",
}  # fmt: skip


def _queue(name: str, t: Any, path: str) -> QueueConfig:
    _expect_mapping(t, path)
    _no_unknown(t, path, _QUEUE_KEYS)
    kw: dict[str, Any] = {"name": name}
    if "strategy" in t:
        kw["strategy"] = _str(t["strategy"], f"{path}.strategy")
    if "strategy_params" in t:
        sp = t["strategy_params"]
        _expect_mapping(sp, f"{path}.strategy_params")
        kw["strategy_params"] = {
            str(k): _num(v, f"{path}.strategy_params.{k}", positive=True) for k, v in sp.items()
        }
    if "weights" in t:
        w = t["weights"]
        _expect_mapping(w, f"{path}.weights")
        _no_unknown(w, f"{path}.weights", set(WEIGHT_KEYS))
        kw["weights"] = {
            str(k): _num(v, f"{path}.weights.{k}", positive=True) for k, v in w.items()
        }
    if "skills" in t:
        kw["skills"] = _skills(t["skills"], f"{path}.skills")
    if "groups" in t:
        kw["groups"] = _str_list(t["groups"], f"{path}.groups")
    if "widening" in t:
        steps = t["widening"]
        if not isinstance(steps, list | tuple):
            raise ConfigError(f"{path}.widening", f"expected a list of tables, got {steps!r}")
        out = []
        for i, s in enumerate(steps):
            sp_ = f"{path}.widening[{i}]"
            _expect_mapping(s, sp_)
            _no_unknown(s, sp_, {"after_seconds", "relax_levels", "add_groups"})
            if "after_seconds" not in s:
                raise ConfigError(f"{sp_}.after_seconds", "missing")
            out.append(
                WideningStep(
                    after_seconds=_num(s["after_seconds"], f"{sp_}.after_seconds", positive=True),
                    relax_levels=_int(
                        s.get("relax_levels", 0), f"{sp_}.relax_levels", minimum=0, maximum=9
                    ),
                    add_groups=_str_list(s.get("add_groups", []), f"{sp_}.add_groups"),
                )
            )
        times = [s.after_seconds for s in out]
        if times != sorted(times):
            raise ConfigError(f"{path}.widening", "steps must be sorted by after_seconds")
        kw["widening"] = tuple(out)
    if "priority" in t:
        kw["priority"] = _int(t["priority"], f"{path}.priority")
    if "max_len" in t:
        kw["max_len"] = _int(t["max_len"], f"{path}.max_len", minimum=1)
    if "max_wait" in t:
        kw["max_wait"] = _num(t["max_wait"], f"{path}.max_wait", positive=True, allow_zero=False)
    if "overflow" in t:
        kw["overflow"] = _str(t["overflow"], f"{path}.overflow")
    if "when_no_agents" in t:
        v = t["when_no_agents"]
        if v not in ("join", "refuse", "leave"):
            raise ConfigError(
                f"{path}.when_no_agents", f"expected 'join', 'refuse' or 'leave', got {v!r}"
            )
        kw["when_no_agents"] = v
    for key in ("ring_timeout", "default_handle_seconds"):
        if key in t:
            kw[key] = _num(t[key], f"{path}.{key}", positive=True, allow_zero=False)
    for key in ("wrap_up_seconds", "service_level_seconds", "short_abandon_seconds"):
        if key in t:
            kw[key] = _num(t[key], f"{path}.{key}", positive=True)
    if "announce_every" in t:
        kw["announce_every"] = _num(
            t["announce_every"], f"{path}.announce_every", positive=True, allow_zero=False
        )
    return QueueConfig(**kw)


_AGENT_KEYS = {
    "name", "skills", "groups", "queues", "max_misses", "wrap_up_seconds", "priority",
    "reject_delay_seconds", "busy_delay_seconds", "no_answer_delay_seconds",
}  # fmt: skip


def _agent(aid: str, t: Any, path: str) -> AgentConfig:
    _expect_mapping(t, path)
    _no_unknown(t, path, _AGENT_KEYS)
    kw: dict[str, Any] = {"id": aid}
    if "name" in t:
        kw["name"] = _str(t["name"], f"{path}.name")
    if "skills" in t:
        kw["skills"] = _skills(t["skills"], f"{path}.skills")
    if "groups" in t:
        kw["groups"] = _str_list(t["groups"], f"{path}.groups")
    if "queues" in t:
        qs = t["queues"]
        if isinstance(qs, list | tuple):
            qs = {_str(q, f"{path}.queues[{i}]"): {} for i, q in enumerate(qs)}
        _expect_mapping(qs, f"{path}.queues")
        mem = {}
        for qn, m in qs.items():
            mp = f"{path}.queues.{qn}"
            _expect_mapping(m, mp)
            _no_unknown(m, mp, {"penalty", "position", "weight"})
            mem[str(qn)] = Membership(
                penalty=_int(m.get("penalty", 0), f"{mp}.penalty", minimum=0),
                position=(
                    _int(m["position"], f"{mp}.position", minimum=0) if "position" in m else None
                ),
                weight=_num(m.get("weight", 1.0), f"{mp}.weight", positive=True),
            )
        kw["queues"] = mem
    if "max_misses" in t:
        kw["max_misses"] = _int(t["max_misses"], f"{path}.max_misses", minimum=0)
    if "wrap_up_seconds" in t:
        kw["wrap_up_seconds"] = _num(t["wrap_up_seconds"], f"{path}.wrap_up_seconds", positive=True)
    if "priority" in t:
        kw["priority"] = _int(t["priority"], f"{path}.priority", minimum=0, maximum=10)
    for key in ("reject_delay_seconds", "busy_delay_seconds", "no_answer_delay_seconds"):
        if key in t:
            kw[key] = _num(t[key], f"{path}.{key}", positive=True)
    return AgentConfig(**kw)
