"""What the running service says about the calls: its statistics and its case records.

Read over its HTTP API on 127.0.0.1 with the operator token (``HOTLINE_OPERATOR_TOKEN``, admin
rights): ``/metrics`` (the engine's per-queue counters: calls offered, answered, abandoned, sent
to voicemail), ``GET /api/acd`` (each agent's calls taken), ``GET /api/cases`` (the cases opened
since the run began, page by page with ``next_cursor``) and ``GET /api/cases/{id}`` (each with
its trail), and ``GET /api/debug/sip`` (to wait until the service holds no call).
:func:`agreement` then checks that the generator's own counts, the engine's and the case
records' agree, call by call. Every request has a timeout and every loop a deadline: a service
that stops answering costs the report its check, never the run its end.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim.load.sipua import loopback_only

QUEUE_COUNTERS = {
    "offered": "hotline_queue_calls_offered_total",
    "answered": "hotline_queue_calls_answered_total",
    "abandoned": "hotline_queue_calls_abandoned_total",
    "voicemail": "hotline_queue_calls_voicemail_total",
}
OUTCOMES = ("answered", "abandoned", "voicemail")
"""The outcomes all three sources count (``rejected``, ``failed`` are reported apart)."""


class ServiceError(Exception):
    """The service's API could not be read."""


class Service:
    """A client of one running service's API (loopback only, bounded timeouts)."""

    def __init__(self, base: str, token: str | None, *, timeout: float = 5.0) -> None:
        host = urllib.parse.urlsplit(base).hostname or ""
        if not loopback_only(host):
            raise ServiceError(f"{base}: the load generator talks to 127.0.0.1 only")
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _get(self, path: str, *, raw: bool = False, timeout: float | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(self.base + path, headers=headers)
        try:
            # loopback only (checked)
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"GET {path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"GET {path}: {exc}") from None
        return body.decode() if raw else json.loads(body or b"null")

    def has_route(self, method: str, path: str) -> bool:
        """Whether the API document declares ``method path``."""
        try:
            doc = self._get("/api/openapi.json")
        except ServiceError:
            return False
        return method.lower() in (doc.get("paths") or {}).get(path, {})

    # -- reads -----------------------------------------------------------------------------

    def queue_counters(self) -> dict[str, dict[str, float]]:
        """``{queue: {offered, answered, abandoned, voicemail}}`` from ``/metrics``."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self._get("/metrics", raw=True)
        out: dict[str, dict[str, float]] = {}
        names = {v: k for k, v in QUEUE_COUNTERS.items()}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = names.get(s.name)
                if key is not None:
                    q = s.labels.get("queue", "")
                    out.setdefault(q, dict.fromkeys(QUEUE_COUNTERS, 0.0))[key] = s.value
        return out

    def calls_taken(self) -> dict[str, int]:
        """Agent id -> calls taken since the service started (``GET /api/acd``)."""
        snap = self._get("/api/acd")
        agents = snap.get("agents") or {}
        if isinstance(agents, list):
            return {str(a.get("id") or a.get("agent_id")): int(a.get("calls_taken", 0))
                    for a in agents}  # fmt: skip
        return {aid: int(a.get("calls_taken", 0)) for aid, a in agents.items()}

    def newest_case(self) -> int:
        page = self._get("/api/cases?limit=1")
        items = page.get("items", []) if isinstance(page, Mapping) else page
        return max((int(c["id"]) for c in items), default=0)

    def cases_since(self, since: float, deadline: float) -> list[dict[str, Any]]:
        """Summaries of every case opened at or after ``since`` (epoch seconds), oldest first:
        ``GET /api/cases?from=...&sort=created_at``, page after page (``next_cursor``)."""
        stamp = datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z")
        query = {"from": stamp, "sort": "created_at", "limit": "200"}
        out: list[dict[str, Any]] = []
        while True:
            if time.monotonic() > deadline:
                raise ServiceError("out of time reading the case list")
            page = self._get("/api/cases?" + urllib.parse.urlencode(query))
            out.extend(page.get("items") or [])
            cursor = page.get("next_cursor")
            if not cursor:
                return out
            query["cursor"] = str(cursor)

    def cases(self, ids: Iterable[int], deadline: float | None = None) -> list[dict[str, Any]]:
        """Each case with its trail (``GET /api/cases/{id}``), a few requests at a time; those
        not read by ``deadline`` (monotonic) are left out."""

        def one(cid: int) -> dict[str, Any] | None:
            for attempt in range(3):
                if deadline is not None and time.monotonic() > deadline:
                    return None
                try:
                    got: dict[str, Any] = self._get(f"/api/cases/{cid}")
                    return got
                except ServiceError as exc:
                    if "HTTP 404" in str(exc):
                        return None
                    time.sleep(0.2 * (attempt + 1))
            return None

        with ThreadPoolExecutor(max_workers=6) as pool:
            return [c for c in pool.map(one, list(ids)) if c is not None]

    def wait_idle(self, timeout: float) -> bool:
        """Until the service holds no call (``/api/debug/sip``), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stats = self._get("/api/debug/sip")
            except ServiceError:
                return False
            if not stats.get("active_calls"):
                return True
            time.sleep(0.1)
        return False


@dataclass(slots=True)
class Snapshot:
    """The service's counters at one moment (before or after a run)."""

    queues: dict[str, dict[str, float]] = field(default_factory=dict)
    calls_taken: dict[str, int] = field(default_factory=dict)
    newest_case: int = 0
    error: str = ""


def snapshot(service: Service) -> Snapshot:
    try:
        return Snapshot(service.queue_counters(), service.calls_taken(), service.newest_case())
    except ServiceError as exc:
        return Snapshot(error=str(exc))


def case_outcome(case: Mapping[str, Any]) -> tuple[str, str]:
    """``(outcome, first queue)`` of a case from its trail: ``answered``, ``abandoned``,
    ``voicemail``, ``rejected`` (left its queue without an agent, not to voicemail) or
    ``no_queue`` (never reached a queue: the IVR, or a failed call)."""
    queue = ""
    outcome = ""
    for e in case.get("events") or []:
        kind = e.get("kind")
        data = e.get("data") or {}
        if kind == "queued" and not queue and not data.get("kind"):
            queue = str(data.get("queue", ""))
        elif kind == "answered" and not outcome:
            outcome = "answered"
        elif kind == "abandoned" and not outcome:
            outcome = "abandoned"
        elif not outcome and (
            (kind == "transferred" and data.get("to") == "voicemail")
            or kind == "voicemail_left"  # an answer after it is the message's delivery
        ):
            outcome = "voicemail"
    if not outcome:
        outcome = "rejected" if queue else "no_queue"
    return outcome, queue


def agreement(
    calls: Sequence[Mapping[str, Any]],
    before: Snapshot,
    after: Snapshot,
    cases: Sequence[Mapping[str, Any]],
    *,
    others: Sequence[Any] = (),
    unread: int = 0,
    work_taken: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The generator's counts, the engine's (counter deltas) and the case records', per queue
    and outcome, and every call whose case tells another story. ``agree`` is True only when
    all three agree exactly and every call has its case with the same outcome and queue.
    ``others``: ids of cases opened during the run that are not its calls'; ``unread``: cases
    of the run whose trail could not be read (the check then cannot agree); ``work_taken``:
    queued work (messages, callbacks) the agents took, per queue: the engine counts each as a
    call taken and answered."""
    work = dict(work_taken or {})
    gen: Counter[tuple[str, str]] = Counter()
    for c in calls:
        if c.get("queued_at") is not None:
            gen[(c["queue"], "offered")] += 1
        if c["outcome"] in OUTCOMES:
            gen[(c["queue"], c["outcome"])] += 1
    engine: Counter[tuple[str, str]] = Counter()
    for q, after_q in after.queues.items():
        before_q = before.queues.get(q, {})
        for k, v in after_q.items():
            d = round(v - before_q.get(k, 0.0))
            if k == "answered":
                d -= work.get(q, 0)  # the engine's answers include the queued work taken
            if d:
                engine[(q, k)] = d
    by_call = {str(c.get("call_id")): c for c in cases}
    recorded: Counter[tuple[str, str]] = Counter()
    mismatches: list[dict[str, Any]] = []
    for one in cases:
        outcome, queue = case_outcome(one)
        if queue:
            recorded[(queue, "offered")] += 1
        if outcome in OUTCOMES:
            recorded[(queue, outcome)] += 1
    for c in calls:
        cid = str(c.get("call_id"))
        case = by_call.get(cid)
        if case is None:
            if c.get("sip_status") == 200:  # an answered INVITE opens a case
                mismatches.append({"call_id": cid, "i": c["i"], "generator": c["outcome"],
                                   "case": None, "why": "no case for this call"})  # fmt: skip
            continue
        outcome, queue = case_outcome(case)
        mine = c["outcome"] if c["outcome"] in OUTCOMES else "other"
        theirs = outcome if outcome in OUTCOMES else "other"
        if mine != theirs or (c.get("queued_at") is not None and queue != c["queue"]):
            mismatches.append({"call_id": cid, "i": c["i"], "case_id": case.get("id"),
                               "generator": c["outcome"], "case": outcome,
                               "queue": c["queue"], "case_queue": queue})  # fmt: skip
    known = {str(c.get("call_id")) for c in calls}
    strangers = [*others, *(case.get("id") for case in cases
                            if str(case.get("call_id")) not in known)]  # fmt: skip
    taken = sum(after.calls_taken.get(a, 0) - before.calls_taken.get(a, 0)
                for a in after.calls_taken)  # fmt: skip
    rows = []
    queues = sorted({q for q, _ in gen} | {q for q, _ in engine} | {q for q, _ in recorded})
    for q in queues:
        for k in ("offered", *OUTCOMES):
            g, e, r = gen[(q, k)], engine[(q, k)], recorded[(q, k)]
            if g or e or r:
                rows.append({"queue": q, "count": k, "generator": g, "engine": e, "cases": r,
                             "agree": g == e == r})  # fmt: skip
    answered = sum(1 for c in calls if c["outcome"] == "answered")
    ok = (
        not before.error
        and not after.error
        and all(r["agree"] for r in rows)
        and not mismatches
        and taken == answered + sum(work.values())
        and not unread
    )
    return {
        "agree": ok,
        "rows": rows,
        "agents_calls_taken": taken,
        "generator_answered": answered,
        "work_taken": sum(work.values()),
        "calls_without_agreement": mismatches[:50],
        "mismatched_calls": len(mismatches),
        "cases_read": len(cases),
        "cases_not_from_this_run": strangers[:20],
        "cases_unread": unread,
        "errors": [e for e in (before.error, after.error) if e],
    }
