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
    NewCase,
    change_events,
    normalise_number,
    plan_update,
    validate_event,
    validate_new_case,
)

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
    def open_case(self, new: NewCase) -> Case:
        """Insert a case and its ``opened`` event in one transaction; return the stored case."""
        validate_new_case(new)
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
            for ev in change_events(planned, at=at, actor=actor, reason=reason):
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
