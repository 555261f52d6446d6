"""Case storage: the :class:`CaseStore` protocol, its SQLite and PostgreSQL implementations,
and :class:`AsyncCaseWriter`, the non-blocking write path used by the live engine.

Both stores share one schema: ``cases``, ``case_events`` and ``acd_log``, defined by the
versioned migrations in ``acd/store/migrations/`` and applied when a store opens
(``acd/store/migrate.py``; ``store.schema_version`` tells the version). The two log tables are
append-only, enforced by triggers that raise on UPDATE and DELETE in both databases.
A store written by a newer hotline is refused with :class:`SchemaTooNewError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from acd.cases import Case, CaseEvent, CasePage, CaseSearch, NewCase
from acd.store.work import LiveCall, StoredWork
from acd.store.writer import AsyncCaseWriter


class CaseStore(Protocol):
    """What the case service needs from a database. Methods are synchronous and thread-safe;
    on the asyncio side use :class:`AsyncCaseWriter` (writes) and ``asyncio.to_thread`` (reads)."""

    def open_case(
        self, new: NewCase, *, events: Sequence[CaseEvent] = (), live: bool = False
    ) -> Case: ...
    def append_event(self, case_id: int, event: CaseEvent) -> int: ...
    def write_batch(
        self, events: list[tuple[int, CaseEvent]], logs: list[dict[str, Any]]
    ) -> list[int]: ...
    def update_case(
        self,
        case_id: int,
        *,
        at: float,
        actor: str,
        reason: str = "",
        events: Sequence[CaseEvent] = (),
        **changes: Any,
    ) -> Case: ...
    def reopen_case(self, case_id: int, *, at: float, actor: str, reason: str = "") -> Case: ...
    def get_case(self, case_id: int) -> Case | None: ...
    def events(self, case_id: int) -> list[CaseEvent]: ...
    def cases_for_caller(self, number: str, limit: int = 20) -> list[Case]: ...
    def find_overdue(self, now: float) -> list[Case]: ...
    def list_cases(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        workgroup: str | None = None,
        limit: int = 100,
    ) -> list[Case]: ...
    def search_cases(self, search: CaseSearch) -> CasePage: ...
    def append_log(self, records: list[dict[str, Any]]) -> int: ...
    def read_log(
        self, since_seq: int = 0, limit: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]: ...
    def close(self) -> None: ...
    def append_audit(self, record: dict[str, Any]) -> int: ...
    def save_work(self, work: StoredWork) -> int: ...
    def drop_work(self, call_id: str) -> bool: ...
    def queued_work(self) -> list[StoredWork]: ...
    def end_call(self, case_id: int, events: Sequence[CaseEvent] = ()) -> bool: ...
    def live_calls(self, node: str | None = None) -> list[LiveCall]: ...
    def adopt_work(self, node: str) -> list[str]: ...
    def read_audit(
        self,
        *,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...


from acd.store.migrate import SchemaError, SchemaTooNewError  # noqa: E402
from acd.store.postgres import PostgresCaseStore  # noqa: E402
from acd.store.sqlite import SQLiteCaseStore  # noqa: E402
from acd.store.writer import WriteFailed  # noqa: E402

_STORES: tuple[type[CaseStore], ...] = (SQLiteCaseStore, PostgresCaseStore)  # checked by mypy

__all__ = [
    "AsyncCaseWriter",
    "CaseStore",
    "LiveCall",
    "PostgresCaseStore",
    "SQLiteCaseStore",
    "SchemaError",
    "SchemaTooNewError",
    "StoredWork",
    "WriteFailed",
]
