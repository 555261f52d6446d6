"""The SQL shared by both stores. Queries use ``?`` placeholders; the PostgreSQL store turns
them into ``%s`` (why: ``acd/store/postgres.py``). Writes of one call (a case plus its events)
happen in one transaction. The schema itself lives in versioned migrations
(``acd/store/migrations/``, applied by ``acd/store/migrate.py`` when a store opens)."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from acd.cases import (
    Case,
    CaseError,
    CaseEvent,
    CasePage,
    CaseSearch,
    NewCase,
    change_events,
    normalise_number,
    plan_update,
    validate_event,
    validate_new_case,
)
from acd.store.work import LiveCall, StoredWork

CASE_COLUMNS = (
    "id, caller_number, caller_name, dialled, channel, call_id, case_type, status, owner,"
    " workgroup, due_at, created_at, updated_at, queue, disposition"
)


def row_to_case(row: Sequence[Any]) -> Case:
    return Case(
        id=int(row[0]),
        caller_number=row[1],
        caller_name=row[2],
        dialled=row[3],
        channel=row[4],
        call_id=row[5],
        case_type=row[6],
        status=row[7],
        owner=row[8],
        workgroup=row[9],
        due_at=None if row[10] is None else float(row[10]),
        created_at=float(row[11]),
        updated_at=float(row[12]),
        queue=row[13],
        disposition=row[14],
    )


def search_where(search: CaseSearch) -> tuple[list[str], list[Any]]:
    """The WHERE terms (joined with AND) and their parameters for ``search``'s filters."""
    where: list[str] = []
    params: list[Any] = []

    def any_of(column: str, values: Sequence[Any]) -> None:
        if len(values) == 1:
            where.append(f"{column} = ?")
        else:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)

    if search.caller is not None:
        any_of("caller_number", [normalise_number(search.caller)])
    if search.ids:
        any_of("id", [int(i) for i in search.ids])
    if search.types:
        any_of("case_type", search.types)
    if search.statuses:
        any_of("status", search.statuses)
    for column, value in (
        ("owner", search.owner),
        ("queue", search.queue),
        ("workgroup", search.workgroup),
    ):
        if value is not None:
            any_of(column, [value])
    if search.created_from is not None:
        where.append("created_at >= ?")
        params.append(float(search.created_from))
    if search.created_to is not None:
        where.append("created_at < ?")
        params.append(float(search.created_to))
    return where, params


def load_json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    loaded = json.loads(value)
    if not isinstance(loaded, dict):
        raise ValueError("stored JSON is not an object")
    return loaded


class SqlCaseStore(ABC):
    """The store logic over a DB-API-ish connection; subclasses supply the dialect.

    One connection, guarded by a lock: all writes are serialised (one writer at a time)."""

    _json_param = "?"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self.schema_version = 0
        """The schema version the store is at (set by the migration run when it opens)."""
        self.schema_version_at_open = 0
        """The version found when it opened (0: a new store; 1: also a 0.1.0 store, adopted);
        below :attr:`schema_version` when this open migrated it."""
        self.node = ""
        """The hotline node writing through this store (several share one PostgreSQL store):
        live calls and queued work are its own; '' for a single node."""

    # -- dialect hooks -----------------------------------------------------------------------
    @abstractmethod
    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """Yield a cursor inside one transaction (commit on exit, rollback on error)."""
        yield None  # pragma: no cover

    @abstractmethod
    def _q(self, sql: str) -> str:
        """Translate placeholders for the driver."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    # -- helpers ----------------------------------------------------------------------------
    def _insert_event(self, cur: Any, case_id: int, event: CaseEvent) -> int:
        validate_event(event)
        cur.execute(
            self._q(
                f"INSERT INTO case_events (case_id, at, kind, actor, data)"
                f" VALUES (?, ?, ?, ?, {self._json_param}) RETURNING seq"
            ),
            (case_id, event.at, event.kind, event.actor, json.dumps(event.data, sort_keys=True)),
        )
        return int(cur.fetchone()[0])

    def _get(self, cur: Any, case_id: int) -> Case | None:
        cur.execute(self._q(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = ?"), (case_id,))
        row = cur.fetchone()
        return None if row is None else row_to_case(row)

    def _must_get(self, cur: Any, case_id: int) -> Case:
        case = self._get(cur, case_id)
        if case is None:
            raise CaseError(f"no case {case_id}")
        return case

    # -- writes -----------------------------------------------------------------------------
    def open_case(
        self, new: NewCase, *, events: Sequence[CaseEvent] = (), live: bool = False
    ) -> Case:
        """Insert a case and its ``opened`` event in one transaction; return the stored case.

        ``events`` are written after ``opened`` in the same transaction (the call's
        ``entered``); ``live`` also records the call as in progress (``live_calls``) until
        :meth:`end_call`, so a restart after a crash can close it."""
        validate_new_case(new)
        for ev in events:
            validate_event(ev)
        number = normalise_number(new.caller_number)
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO cases (caller_number, caller_name, dialled, channel, call_id,"
                    " case_type, status, owner, workgroup, due_at, created_at, updated_at, queue)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?) RETURNING id"
                ),
                (
                    number,
                    new.caller_name,
                    new.dialled,
                    new.channel,
                    new.call_id,
                    new.case_type,
                    new.owner,
                    new.workgroup,
                    new.due_at,
                    new.at,
                    new.at,
                    new.queue,
                ),
            )
            case_id = int(cur.fetchone()[0])
            self._insert_event(
                cur,
                case_id,
                CaseEvent(
                    at=new.at,
                    kind="opened",
                    actor=new.actor,
                    data={
                        "caller": number,
                        "type": new.case_type,
                        "call_id": new.call_id,
                        "owner": new.owner,
                        "workgroup": new.workgroup,
                        "due_at": new.due_at,
                        **({"queue": new.queue} if new.queue else {}),
                    },
                ),
            )
            for ev in events:
                self._insert_event(cur, case_id, ev)
            if live:
                cur.execute(
                    self._q(
                        "INSERT INTO live_calls (case_id, call_id, opened_at, node)"
                        " VALUES (?, ?, ?, ?)"
                    ),
                    (case_id, new.call_id, new.at, self.node),
                )
            return self._must_get(cur, case_id)

    def append_event(self, case_id: int, event: CaseEvent) -> int:
        """Append one event; return its ``seq``."""
        return self.write_batch([(case_id, event)], [])[0]

    def write_batch(
        self, events: list[tuple[int, CaseEvent]], logs: list[dict[str, Any]]
    ) -> list[int]:
        """Append events and log records in ONE transaction; return the events' seqs.

        A write of status/owner through an event is NOT applied to the case row: use
        :meth:`update_case` for that."""
        for _, ev in events:
            validate_event(ev)
        with self._tx() as cur:
            seqs = [self._insert_event(cur, cid, ev) for cid, ev in events]
            if events:
                last_at: dict[int, float] = {}
                for cid, ev in events:
                    last_at[cid] = max(ev.at, last_at.get(cid, ev.at))
                for cid, at in last_at.items():
                    cur.execute(
                        self._q("UPDATE cases SET updated_at = ? WHERE id = ? AND updated_at < ?"),
                        (at, cid, at),
                    )
            self._insert_logs(cur, logs)
        return seqs

    def _insert_logs(self, cur: Any, records: list[dict[str, Any]]) -> int:
        last = 0
        for rec in records:
            at = rec.get("at")
            kind = rec.get("kind")
            if not isinstance(at, int | float) or not isinstance(kind, str):
                raise CaseError("a log record needs a float 'at' and a str 'kind'")
            cur.execute(
                self._q(
                    f"INSERT INTO acd_log (at, kind, data) VALUES (?, ?, {self._json_param})"
                    " RETURNING seq"
                ),
                (float(at), kind, json.dumps(rec, sort_keys=True)),
            )
            last = int(cur.fetchone()[0])
        return last

    def update_case(
        self,
        case_id: int,
        *,
        at: float,
        actor: str,
        reason: str = "",
        events: Sequence[CaseEvent] = (),
        **changes: Any,
    ) -> Case:
        """Change fields (status, owner, workgroup, case_type, due_at); each change is also
        recorded as an event (``status_changed``, ``owner_changed``...) in the same transaction,
        after ``events`` (extra events written atomically with the change, e.g. ``escalated``)."""
        with self._tx() as cur:
            case = self._must_get(cur, case_id)
            planned = plan_update(case, changes)
            for ev in events:
                self._insert_event(cur, case_id, ev)
            for name, _old, new in planned:
                cur.execute(
                    self._q(f"UPDATE cases SET {name} = ?, updated_at = ? WHERE id = ?"),
                    (new, at, case_id),
                )
            for ev in change_events(planned, at=at, actor=actor, reason=reason, stated=events):
                self._insert_event(cur, case_id, ev)
            return self._must_get(cur, case_id)

    def reopen_case(self, case_id: int, *, at: float, actor: str, reason: str = "") -> Case:
        """Reopen a closed or resolved case: a ``reopened`` event, status back to ``open``."""
        with self._tx() as cur:
            case = self._must_get(cur, case_id)
            if case.status not in ("closed", "resolved"):
                raise CaseError(
                    f"only a closed or resolved case can be reopened, not {case.status!r}"
                )
            cur.execute(
                self._q("UPDATE cases SET status = 'open', updated_at = ? WHERE id = ?"),
                (at, case_id),
            )
            data: dict[str, Any] = {"from": case.status, "to": "open"}
            if reason:
                data["reason"] = reason
            self._insert_event(
                cur, case_id, CaseEvent(at=at, kind="reopened", actor=actor, data=data)
            )
            return self._must_get(cur, case_id)

    def append_log(self, records: list[dict[str, Any]]) -> int:
        """Append ACD log records (dicts with ``at`` and ``kind``) in one transaction; return the
        last seq (0 if none)."""
        with self._tx() as cur:
            return self._insert_logs(cur, records)

    # -- reads ------------------------------------------------------------------------------
    def get_case(self, case_id: int) -> Case | None:
        with self._tx() as cur:
            return self._get(cur, case_id)

    def events(self, case_id: int) -> list[CaseEvent]:
        """The case's trail, in append order."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "SELECT seq, at, kind, actor, data FROM case_events WHERE case_id = ? ORDER BY seq"
                ),
                (case_id,),
            )
            return [
                CaseEvent(
                    seq=int(r[0]), at=float(r[1]), kind=r[2], actor=r[3], data=load_json(r[4])
                )
                for r in cur.fetchall()
            ]

    def cases_for_caller(self, number: str, limit: int = 20) -> list[Case]:
        """The caller's cases, newest first (number normalised as at insertion)."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {CASE_COLUMNS} FROM cases WHERE caller_number = ?"
                    " ORDER BY created_at DESC, id DESC LIMIT ?"
                ),
                (normalise_number(number), limit),
            )
            return [row_to_case(r) for r in cur.fetchall()]

    def find_overdue(self, now: float) -> list[Case]:
        """Active (open, in_progress, pending) cases whose due time is at or before ``now``."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {CASE_COLUMNS} FROM cases WHERE due_at IS NOT NULL AND due_at <= ?"
                    " AND status IN ('open', 'in_progress', 'pending') ORDER BY due_at, id"
                ),
                (now,),
            )
            return [row_to_case(r) for r in cur.fetchall()]

    def list_cases(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        workgroup: str | None = None,
        limit: int = 100,
    ) -> list[Case]:
        """Cases matching every given filter, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for col, val in (("status", status), ("owner", owner), ("workgroup", workgroup)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {CASE_COLUMNS} FROM cases{clause} ORDER BY created_at DESC, id DESC LIMIT ?"
                ),
                (*params, limit),
            )
            return [row_to_case(r) for r in cur.fetchall()]

    def search_cases(self, search: CaseSearch) -> CasePage:
        """One page of the cases matching ``search``, in its order, with the number of all
        matches (both read in one transaction, so they agree).

        Each filter is one indexed column (migrations 0002 and 0004 give every filter an index
        ending in the sort key and id), and the page boundary is a row-value comparison on
        ``(sort key, id)``: a page is one index range scan, however deep the page."""
        where, params = search_where(search)
        order = "DESC" if search.descending else "ASC"
        page_where = list(where)
        page_params = list(params)
        if search.after is not None:
            page_where.append(f"({search.sort}, id) {'<' if search.descending else '>'} (?, ?)")
            page_params += [float(search.after[0]), int(search.after[1])]
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        page_clause = (" WHERE " + " AND ".join(page_where)) if page_where else ""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {CASE_COLUMNS} FROM cases{page_clause}"
                    f" ORDER BY {search.sort} {order}, id {order} LIMIT ?"
                ),
                (*page_params, search.limit + 1),
            )
            rows = [row_to_case(r) for r in cur.fetchall()]
            cur.execute(self._q(f"SELECT count(*) FROM cases{clause}"), tuple(params))
            total = int(cur.fetchone()[0])
        return CasePage(cases=rows[: search.limit], total=total, more=len(rows) > search.limit)

    def read_log(
        self, since_seq: int = 0, limit: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Log records with ``seq > since_seq`` in order, as ``(seq, record)``."""
        sql = "SELECT seq, data FROM acd_log WHERE seq > ? ORDER BY seq"
        params: tuple[Any, ...] = (since_seq,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (since_seq, limit)
        with self._tx() as cur:
            cur.execute(self._q(sql), params)
            return [(int(r[0]), load_json(r[1])) for r in cur.fetchall()]

    # -- the staff API's audit trail (migration 0003) -----------------------------------------
    def append_audit(self, record: dict[str, Any]) -> int:
        """Append one audit row (``at``, ``action`` required; ``actor``, ``role``, ``via``,
        ``session``, ``method``, ``path``, ``source``, ``status``, ``outcome``, ``data``);
        return its ``seq``. Committed before it returns."""
        at, action = record.get("at"), record.get("action")
        if not isinstance(at, int | float) or not isinstance(action, str) or not action:
            raise CaseError("an audit record needs a float 'at' and a str 'action'")
        text = {k: str(record.get(k, "")) for k in AUDIT_TEXT_COLUMNS}
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO audit_log (at, action, "
                    + ", ".join(AUDIT_TEXT_COLUMNS)
                    + f", status, data) VALUES (?, ?, {', '.join('?' * len(AUDIT_TEXT_COLUMNS))},"
                    f" ?, {self._json_param}) RETURNING seq"
                ),
                (
                    float(at),
                    action,
                    *text.values(),
                    int(record.get("status") or 0),
                    json.dumps(record.get("data") or {}, sort_keys=True),
                ),
            )
            return int(cur.fetchone()[0])

    def read_audit(
        self,
        *,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit rows, newest first: ``actor``'s only, ``since <= at < until``, below
        ``before_seq`` (the previous page's last ``seq``), at most ``limit``."""
        where: list[str] = []
        params: list[Any] = []
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        if since is not None:
            where.append("at >= ?")
            params.append(float(since))
        if until is not None:
            where.append("at < ?")
            params.append(float(until))
        if before_seq is not None:
            where.append("seq < ?")
            params.append(int(before_seq))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        columns = "seq, at, action, " + ", ".join(AUDIT_TEXT_COLUMNS) + ", status, data"
        with self._tx() as cur:
            cur.execute(
                self._q(f"SELECT {columns} FROM audit_log{clause} ORDER BY seq DESC LIMIT ?"),
                (*params, int(limit)),
            )
            rows = cur.fetchall()
        out = []
        for r in rows:
            row: dict[str, Any] = {"seq": int(r[0]), "at": float(r[1]), "action": r[2]}
            row.update(zip(AUDIT_TEXT_COLUMNS, r[3 : 3 + len(AUDIT_TEXT_COLUMNS)], strict=True))
            row["status"] = int(r[-2])
            row["data"] = load_json(r[-1])
            out.append(row)
        return out

    # -- nothing lost on a crash (migration 0005; hotline/center/recovery.py) ---------------
    def save_work(self, work: StoredWork) -> int:
        """Keep a queued message or callback request until :meth:`drop_work`; its row id."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO queued_work (call_id, case_id, kind, queue, enqueued_at, caller,"
                    " recording, callback, created_at, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " RETURNING id"
                ),
                (
                    work.call_id,
                    work.case_id,
                    work.kind,
                    work.queue,
                    work.enqueued_at,
                    work.caller,
                    work.recording,
                    work.callback,
                    work.created_at,
                    self.node,
                ),
            )
            return int(cur.fetchone()[0])

    def drop_work(self, call_id: str) -> bool:
        """An agent has had the work (or it is gone): forget it. False if it was not kept."""
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM queued_work WHERE call_id = ?"), (call_id,))
            return bool(cur.rowcount)

    def adopt_work(self, node: str) -> list[str]:
        """Take over the queued work a lost node kept (it becomes this node's); its ids."""
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE queued_work SET node = ? WHERE node = ? RETURNING call_id"),
                (self.node, node),
            )
            return [str(r[0]) for r in cur.fetchall()]

    def queued_work(self) -> list[StoredWork]:
        """Every message and callback request this node kept, in the callers' original
        arrival order."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "SELECT id, call_id, case_id, kind, queue, enqueued_at, caller, recording,"
                    " callback, created_at FROM queued_work WHERE node = ?"
                    " ORDER BY enqueued_at, id"
                ),
                (self.node,),
            )
            return [
                StoredWork(
                    id=int(r[0]),
                    call_id=r[1],
                    case_id=int(r[2]),
                    kind=r[3],
                    queue=r[4],
                    enqueued_at=float(r[5]),
                    caller=r[6],
                    recording=r[7],
                    callback=r[8],
                    created_at=float(r[9]),
                )
                for r in cur.fetchall()
            ]

    def end_call(self, case_id: int, events: Sequence[CaseEvent] = ()) -> bool:
        """The call of ``case_id`` is over: write ``events`` and forget it as live, in one
        transaction. False when it was not live (idempotent)."""
        for ev in events:
            validate_event(ev)
        with self._tx() as cur:
            for ev in events:
                self._insert_event(cur, case_id, ev)
            cur.execute(self._q("DELETE FROM live_calls WHERE case_id = ?"), (case_id,))
            return bool(cur.rowcount)

    def live_calls(self, node: str | None = None) -> list[LiveCall]:
        """This node's (or ``node``'s) calls whose end was never written (after a crash: the
        calls it cut off; a neighbour's calls in progress are not its to close, unless the
        cluster found that neighbour lost)."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "SELECT case_id, call_id, opened_at FROM live_calls WHERE node = ?"
                    " ORDER BY case_id"
                ),
                (self.node if node is None else node,),
            )
            return [LiveCall(int(r[0]), r[1], float(r[2])) for r in cur.fetchall()]


AUDIT_TEXT_COLUMNS = ("actor", "role", "via", "session", "method", "path", "source", "outcome")
"""The text columns of ``audit_log`` besides ``action`` (migration 0003)."""
