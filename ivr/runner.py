"""Run an IVR flow on a ``CallSession`` until a terminal node; report every input and branch.

``run_flow`` returns an :class:`Outcome` (queue, voicemail, transfer, hangup) with what the
caller chose: language, queue, skills, priority and the flow's variables. It never decides
routing itself: the caller of ``run_flow`` (the contact center) acts on the outcome.

Every key pressed, every variable set and every branch taken is passed to ``record(kind,
data)``, which the contact center appends to the call's case (``ivr_input``, ``ivr_set``,
``ivr_branch``). A far-end hangup raises ``SessionEnded`` out of here, wherever the flow is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ivr.flow import Flow, FlowError, IvrConfig, Node, is_open, resolve
from media_gateway.prompts import number_words
from media_gateway.session import CallSession

MAX_STEPS = 500
"""Nodes a call may pass through before the flow is declared looping (then: hang up)."""


@dataclass
class Outcome:
    kind: str
    """``queue``, ``voicemail``, ``transfer`` or ``hangup``."""
    queue: str = ""
    target: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    priority: int = 0
    language: str = "en"
    vars: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    greeting: list[str] = field(default_factory=list)


class QueueView(Protocol):
    """What a flow may ask about queues (the ACD's live state)."""

    def agents_available(self, queue: str) -> int: ...

    def ewt_seconds(self, queue: str) -> float: ...


Recorder = Callable[[str, dict[str, Any]], None]


def _prompts(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


async def run_flow(
    cfg: IvrConfig,
    session: CallSession,
    *,
    flow: str | None = None,
    record: Recorder,
    queues: QueueView,
    wallclock: Callable[[], float],
) -> Outcome:
    """Run ``flow`` (default: the configured entry flow) on an answered session."""
    current: Flow = cfg.flow(flow or cfg.entry)
    node: Node = current.nodes[current.start]
    tz = ZoneInfo(cfg.timezone)
    for _ in range(MAX_STEPS):
        lang = session.lang or "en"
        kind = node.type
        if kind == "play":
            await session.play(
                _prompts(node.get("prompt")), interruptible=bool(node.get("interruptible", True))
            )
            target = node.get("next")
        elif kind == "menu":
            target = await _menu(session, node, record)
        elif kind == "collect":
            target = await _collect(session, node, record)
        elif kind == "set":
            for key, value in node.get("vars").items():
                _set_var(session, str(key), value)
            record(
                "ivr_set",
                {"node": node.name, "vars": {str(k): v for k, v in node.get("vars").items()}},
            )
            target = node.get("next")
        elif kind == "branch":
            target = _branch(session, node)
            record("ivr_branch", {"node": node.name, "to": target})
        elif kind == "schedule":
            local = dt.datetime.fromtimestamp(wallclock(), tz)
            opened = is_open(node.get("open"), cfg.holidays, local)
            target = node.get("open_next") if opened else node.get("closed_next")
            record(
                "ivr_branch",
                {
                    "node": node.name,
                    "to": target,
                    "open": opened,
                    "local_time": local.isoformat(timespec="minutes"),
                },
            )
        elif kind == "queue_state":
            q = _subst(session, str(node.get("queue")))
            free = queues.agents_available(q)
            ewt = queues.ewt_seconds(q)
            if node.get("agents_available") is not None and free > 0:
                target = node.get("agents_available")
            elif (
                node.get("ewt_above") is not None
                and node.get("ewt_next") is not None
                and ewt > float(node.get("ewt_above"))
            ):
                target = node.get("ewt_next")
            else:
                target = node.get("next")
            record(
                "ivr_branch",
                {
                    "node": node.name,
                    "to": target,
                    "queue": q,
                    "agents_available": free,
                    "ewt_seconds": round(ewt),
                },
            )
        elif kind == "goto":
            source = node.name
            current = cfg.flow(str(node.get("flow")))
            node = current.nodes[node.get("node") or current.start]
            record("ivr_branch", {"node": source, "to": f"{current.name}:{node.name}"})
            continue
        else:
            return await _terminal(session, node, lang)
        if target == "__hangup__":
            await session.play("goodbye", interruptible=False)
            return Outcome(
                kind="hangup", reason="retries", language=session.lang or "en", vars=_vars(session)
            )
        if not isinstance(target, str):
            raise FlowError(f"ivr.flows.{current.name}.nodes.{node.name}", "has nowhere to go")
        found = resolve(cfg, current, target)
        if found is None:
            raise FlowError(
                f"ivr.flows.{current.name}.nodes.{node.name}", f"goes to unknown node {target!r}"
            )
        current, node = found
    record("ivr_branch", {"node": node.name, "to": "hangup", "reason": "loop"})
    return Outcome(kind="hangup", reason="loop", language=session.lang or "en", vars=_vars(session))


async def _menu(session: CallSession, node: Node, record: Recorder) -> Any:
    choices: dict[str, str] = {str(k): v for k, v in node.get("choices").items()}
    retries = int(node.get("retries", 2))
    for attempt in range(retries + 1):
        await session.play(_prompts(node.get("prompt")))
        got = await session.collect(1, timeout=float(node.get("timeout", 5.0)), terminator="")
        key = got.digits
        if key in choices:
            record(
                "ivr_input",
                {"node": node.name, "digits": key, "result": "chosen", "to": choices[key]},
            )
            return choices[key]
        result = "no_input" if not key else "invalid"
        record(
            "ivr_input",
            {"node": node.name, "digits": key, "result": result, "attempt": attempt + 1},
        )
        session.flush_digits()
        if attempt < retries:
            prompt = (
                node.get("no_input_prompt", "no_input")
                if not key
                else node.get("invalid_prompt", "invalid")
            )
            await session.play(_prompts(prompt), interruptible=False)
    default = node.get("default")
    if default is None:
        record("ivr_branch", {"node": node.name, "to": "hangup", "reason": "retries"})
        return "__hangup__"
    record("ivr_branch", {"node": node.name, "to": default, "reason": "retries"})
    return default


async def _collect(session: CallSession, node: Node, record: Recorder) -> Any:
    retries = int(node.get("retries", 2))
    pattern = re.compile(str(node.get("pattern"))) if node.get("pattern") else None
    lo, hi = int(node.get("min_digits", 1)), int(node.get("max_digits", 16))
    for attempt in range(retries + 1):
        if node.get("prompt"):
            await session.play(_prompts(node.get("prompt")))
        got = await session.collect(
            hi,
            timeout=float(node.get("timeout", 8.0)),
            terminator=str(node.get("terminator", "#")),
            inter_digit_timeout=float(node.get("inter_digit_timeout", 4.0)),
        )
        digits = got.digits
        ok = lo <= len(digits) <= hi and (pattern is None or pattern.fullmatch(digits) is not None)
        if ok and node.get("confirm", False):
            await session.play(
                [
                    "you_entered",
                    *(
                        f"digit_{d}" if d.isdigit() else ("star" if d == "*" else "hash")
                        for d in digits
                    ),
                    "confirm_entry",
                ]
            )
            answer = await session.collect(1, timeout=6.0, terminator="")
            ok = answer.digits == "1"
            record(
                "ivr_input",
                {
                    "node": node.name,
                    "digits": answer.digits,
                    "result": "confirmed" if ok else "re-enter",
                },
            )
        if ok:
            _set_var(session, str(node.get("var")), digits)
            record(
                "ivr_input",
                {"node": node.name, "digits": digits, "result": "accepted", "var": node.get("var")},
            )
            return node.get("next")
        result = "no_input" if not digits else "invalid"
        record(
            "ivr_input",
            {"node": node.name, "digits": digits, "result": result, "attempt": attempt + 1},
        )
        session.flush_digits()
        if attempt < retries:
            prompt = (
                node.get("no_input_prompt", "no_input")
                if not digits
                else node.get("invalid_prompt", "invalid")
            )
            await session.play(_prompts(prompt), interruptible=False)
    failure = node.get("on_failure")
    record("ivr_branch", {"node": node.name, "to": failure or "hangup", "reason": "retries"})
    return failure if failure is not None else "__hangup__"


def _branch(session: CallSession, node: Node) -> Any:
    for case in node.get("cases"):
        value = _var(session, str(case["var"]))
        if "equals" in case and value == str(case["equals"]):
            return case["next"]
        if "matches" in case and value is not None and re.search(str(case["matches"]), value):
            return case["next"]
        if "in" in case and value in [str(x) for x in case["in"]]:
            return case["next"]
        if "above" in case or "below" in case:
            try:
                number = float(value) if value is not None else None
            except ValueError:
                number = None
            if number is not None and "above" in case and number > float(case["above"]):
                return case["next"]
            if number is not None and "below" in case and number < float(case["below"]):
                return case["next"]
    return node.get("default")


async def _terminal(session: CallSession, node: Node, lang: str) -> Outcome:
    vars_ = _vars(session)
    if node.type == "queue":
        skills = {str(k): int(v) for k, v in (node.get("skills") or {}).items()}
        skills.update(
            {
                k[6:]: int(v)
                for k, v in session.vars.items()
                if k.startswith("skill.") and str(v).isdigit()
            }
        )
        priority = int(node.get("priority", session.vars.get("priority", 0)) or 0)
        queue = _subst(session, str(node.get("queue") or session.vars.get("queue") or ""))
        return Outcome(
            kind="queue", queue=queue, skills=skills, priority=priority, language=lang, vars=vars_
        )
    if node.type == "voicemail":
        return Outcome(
            kind="voicemail",
            queue=_subst(session, str(node.get("queue"))),
            language=lang,
            vars=vars_,
            greeting=_prompts(node.get("greeting", "voicemail_intro")),
        )
    if node.type == "transfer":
        return Outcome(
            kind="transfer",
            target=_subst(session, str(node.get("target"))),
            language=lang,
            vars=vars_,
        )
    if node.get("prompt"):
        await session.play(_prompts(node.get("prompt")), interruptible=False)
    return Outcome(kind="hangup", language=lang, vars=vars_, reason="flow")


def _set_var(session: CallSession, key: str, value: Any) -> None:
    if key == "language":
        session.lang = str(value)
    session.vars[key] = value if key == "priority" else str(value)


def _var(session: CallSession, key: str) -> str | None:
    if key == "language":
        return session.lang
    if key == "caller":
        return session.caller
    if key == "dialled":
        return session.dialled
    v = session.vars.get(key)
    return None if v is None else str(v)


def _vars(session: CallSession) -> dict[str, str]:
    return {str(k): str(v) for k, v in session.vars.items()}


def _subst(session: CallSession, text: str) -> str:
    """``${var}`` in node values: ``queue = "support_${language}"``."""
    return re.sub(r"\$\{([A-Za-z0-9_.]+)\}", lambda m: _var(session, m.group(1)) or "", text)


def say_number_prompts(n: int, lang: str, *, measure: bool = False) -> list[str]:
    """Prompt names that speak ``n`` (queue positions, minutes)."""
    return number_words(n, lang, measure=measure)
