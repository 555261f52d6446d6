"""The audit trail: every state-changing API call, sign-in attempt and lockout, kept durably.

Each row says who (the principal's user and role, how they signed in and an opaque id of the
session or token; for a sign-in, the name that was tried), what (the operation, method and
path, and a summary of the request body with every secret replaced by ``"***"``: passwords are
never written), when, from where (the client's address) and the answer (status and outcome:
``ok``, ``refused``, ``failed``, ``locked``, ``error``).

Rows go to the ``audit_log`` table of the case store (migration 0003, append-only by trigger),
each committed before the API answers (:meth:`AuditTrail.api_call` is the ``Api``'s audit hook),
so a state change the client saw acknowledged is in the trail. A failed write is logged as an
error; it does not turn an applied change into a 500.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from aiohttp import web
from pydantic import BaseModel

from hotline.http.api import ApiCall
from media_gateway.sip.lockout import Locked

log = structlog.get_logger("hotline.audit")

AUDIT_ACTOR = web.RequestKey("audit_actor", str)
"""``request[AUDIT_ACTOR]``: who a request acted as when no principal says it (the name tried
at a sign-in)."""
AUDIT_OUTCOME = web.RequestKey("audit_outcome", str)
"""``request[AUDIT_OUTCOME]``: the outcome a handler states (``ok``, ``failed``, ``locked``)."""

SECRET_KEYS = re.compile(r"pass|secret|token|csrf|authori[sz]ation|cookie|ha1|key", re.I)
"""Body fields whose values are never written (``password``, ``csrf_token``...)."""
REDACTED = "***"
MAX_TEXT = 200
"""Characters kept of one string value."""
MAX_ITEMS = 50
"""Items kept of one list or object."""


class AuditStore(Protocol):
    """The case store's audit methods (acd/store/_sql.py)."""

    def append_audit(self, record: dict[str, Any]) -> int: ...

    def read_audit(
        self,
        *,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...


def redact(value: Any, *, depth: int = 0) -> Any:
    """``value`` with secrets replaced, long strings cut and deep structures flattened."""
    if depth > 4:
        return "..."
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_ITEMS:
                out["..."] = f"{len(value) - MAX_ITEMS} more"
                break
            key = str(k)
            out[key] = REDACTED if SECRET_KEYS.search(key) else redact(v, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [redact(v, depth=depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), depth=depth + 1)


def summary(call: ApiCall) -> dict[str, Any]:
    """What the request asked for, redacted: its path parameters, query and body."""
    out: dict[str, Any] = {}
    params = dict(call.request.match_info)
    if params:
        out["params"] = params
    for name, part in (("query", call.query), ("body", call.body)):
        if isinstance(part, BaseModel):
            out[name] = part.model_dump(mode="json", exclude_defaults=True)
        elif part is not None:
            out[name] = part
    redacted: dict[str, Any] = redact(out)
    return redacted


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status >= 500:
        return "error"
    return "refused"


class AuditTrail:
    """Writes audit rows to the store; the ``Api``'s audit hook is :meth:`api_call`."""

    def __init__(self, store: AuditStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    async def write(self, record: dict[str, Any]) -> None:
        """Append one row (``at`` defaults to now), committed when this returns; a failure is
        logged, not raised."""
        record.setdefault("at", self.clock())
        try:
            await asyncio.to_thread(self.store.append_audit, record)
        except Exception as exc:
            log.error("audit_write_failed", action=record.get("action"), error=str(exc))

    async def api_call(self, call: ApiCall, status: int) -> None:
        """The audit hook: one row for a state-changing request that reached its handler."""
        request = call.request
        principal = call.principal
        actor = request.get(AUDIT_ACTOR) or (principal.user if principal is not None else "")
        await self.write(
            {
                "actor": actor,
                "role": principal.role.value if principal is not None else "",
                "via": principal.via if principal is not None else "",
                "session": principal.session if principal is not None else "",
                "action": call.endpoint.operation_id,
                "method": request.method,
                "path": request.path,
                "source": request.remote or "",
                "status": status,
                "outcome": request.get(AUDIT_OUTCOME) or outcome_of(status),
                "data": summary(call),
            }
        )

    def lock(self, event: Locked) -> None:
        """A lockout (``Lockout.on_lock``; called synchronously): one row, written on the loop."""
        record = {
            "at": self.clock(),
            "actor": event.key if event.scope == "account" else "",
            "action": "lockout",
            "source": event.key if event.scope == "source" else "",
            "outcome": "locked",
            "data": {
                "scope": event.scope,
                "channel": event.channel,
                "failures": event.failures,
                "seconds": round(event.until - event.at, 1),
            },
        }
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.write(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for the lockout rows being written."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def read(
        self,
        *,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(
            lambda: self.store.read_audit(
                actor=actor, since=since, until=until, before_seq=before_seq, limit=limit
            )
        )
