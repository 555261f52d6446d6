"""A JSON codec for the engine's events and actions (the cluster's log and action messages).

Every type of :mod:`acd.events` and :mod:`acd.actions` becomes one JSON object: its fields by
name plus ``"type"``, the class name. ``ConfigChanged``'s :class:`~acd.config.AcdConfig` travels
as its ``[acd]`` table (:func:`config_to_table`), which :meth:`AcdConfig.from_dict` reads back
(and validates) on the other side. Floats must be finite: the wire is PostgreSQL ``jsonb``,
which has no ``NaN`` or ``Infinity``, and times and durations are finite anyway.

Pure: no I/O, no clock. Round trips (``decode_event(encode_event(e)) == e``) are checked with
hypothesis over every type in ``tests/unit/acd/test_codec.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, get_args

from acd import actions as _actions
from acd import events as _events
from acd.actions import Action
from acd.config import AcdConfig, AgentConfig, Membership, QueueConfig, WideningStep
from acd.events import ConfigChanged, Event


class CodecError(ValueError):
    """A message that is not a known event or action (unknown ``type``, missing field)."""


_EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in get_args(_events.Event)}
_ACTION_TYPES: dict[str, type] = {cls.__name__: cls for cls in get_args(_actions.Action)}


# --- the configuration as its [acd] table -------------------------------------------------------


def _widening_table(step: WideningStep) -> dict[str, Any]:
    return {
        "after_seconds": step.after_seconds,
        "relax_levels": step.relax_levels,
        "add_groups": list(step.add_groups),
    }


def _queue_table(q: QueueConfig) -> dict[str, Any]:
    return {
        "strategy": q.strategy,
        "strategy_params": dict(q.strategy_params),
        "weights": dict(q.weights),
        "skills": dict(q.skills),
        "groups": list(q.groups),
        "widening": [_widening_table(s) for s in q.widening],
        "priority": q.priority,
        "max_len": q.max_len,
        "max_wait": q.max_wait,
        "overflow": q.overflow,
        "when_no_agents": q.when_no_agents,
        "ring_timeout": q.ring_timeout,
        "wrap_up_seconds": q.wrap_up_seconds,
        "announce_every": q.announce_every,
        "service_level_seconds": q.service_level_seconds,
        "short_abandon_seconds": q.short_abandon_seconds,
        "default_handle_seconds": q.default_handle_seconds,
        "record": q.record,
        "consent_prompt": q.consent_prompt,
        "recording_keep_days": q.recording_keep_days,
    }


def _membership_table(m: Membership) -> dict[str, Any]:
    out: dict[str, Any] = {"penalty": m.penalty, "weight": m.weight}
    if m.position is not None:
        out["position"] = m.position
    return out


def _agent_table(a: AgentConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "skills": dict(a.skills),
        "groups": list(a.groups),
        "queues": {q: _membership_table(m) for q, m in a.queues.items()},
        "max_misses": a.max_misses,
        "priority": a.priority,
        "reject_delay_seconds": a.reject_delay_seconds,
        "busy_delay_seconds": a.busy_delay_seconds,
        "no_answer_delay_seconds": a.no_answer_delay_seconds,
    }
    if a.name:  # the table's ``name`` must be non-empty; "" is the dataclass's default
        out["name"] = a.name
    if a.wrap_up_seconds is not None:
        out["wrap_up_seconds"] = a.wrap_up_seconds
    return out


def config_to_table(config: AcdConfig) -> dict[str, Any]:
    """The ``[acd]`` table (plain JSON data) that :meth:`AcdConfig.from_dict` turns back into an
    equal configuration (every field written out, defaults included)."""
    return {
        "queues": {name: _queue_table(q) for name, q in config.queues.items()},
        "agents": {aid: _agent_table(a) for aid, a in config.agents.items()},
        "max_overflow_hops": config.max_overflow_hops,
        "pause_reasons": list(config.pause_reasons),
    }


# --- events and actions ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    return value


def event_to_dict(event: Event) -> dict[str, Any]:
    """``{"type": "CallArrived", "at": ..., ...}`` (plain JSON data)."""
    if isinstance(event, ConfigChanged):
        return {"type": "ConfigChanged", "at": event.at, "config": config_to_table(event.config)}
    out: dict[str, Any] = {"type": type(event).__name__}
    for name, value in zip(event._fields, event, strict=True):
        out[name] = _plain(value)
    return out


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The inverse of :func:`event_to_dict`; raises :class:`CodecError` for anything else (and
    :class:`~acd.config.ConfigError` for a configuration that does not validate)."""
    fields = dict(data)
    cls = _EVENT_TYPES.get(str(fields.pop("type", "")))
    if cls is None:
        raise CodecError(f"unknown event type {data.get('type')!r}")
    if cls is ConfigChanged:
        table = fields.get("config")
        if not isinstance(table, Mapping):
            raise CodecError("ConfigChanged without a config table")
        return ConfigChanged(at=fields["at"], config=AcdConfig.from_dict(table))
    try:
        event: Event = cls(**fields)
    except TypeError as exc:
        raise CodecError(f"bad {cls.__name__}: {exc}") from None
    return event


def action_to_dict(action: Action) -> dict[str, Any]:
    """``{"type": "OfferCall", "call_id": ..., ...}`` (plain JSON data)."""
    out: dict[str, Any] = {"type": type(action).__name__}
    out.update(zip(action._fields, action, strict=True))
    return out


def action_from_dict(data: Mapping[str, Any]) -> Action:
    """The inverse of :func:`action_to_dict`; raises :class:`CodecError` for anything else."""
    fields = dict(data)
    cls = _ACTION_TYPES.get(str(fields.pop("type", "")))
    if cls is None:
        raise CodecError(f"unknown action type {data.get('type')!r}")
    try:
        action: Action = cls(**fields)
    except TypeError as exc:
        raise CodecError(f"bad {cls.__name__}: {exc}") from None
    return action


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def encode_event(event: Event) -> str:
    """One event as compact JSON text."""
    return _dumps(event_to_dict(event))


def decode_event(text: str | bytes) -> Event:
    """One event from :func:`encode_event`'s text."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise CodecError("an event is a JSON object")
    return event_from_dict(data)


def encode_action(action: Action) -> str:
    """One action as compact JSON text."""
    return _dumps(action_to_dict(action))


def decode_action(text: str | bytes) -> Action:
    """One action from :func:`encode_action`'s text."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise CodecError("an action is a JSON object")
    return action_from_dict(data)
