"""The non-blocking write path for the live engine.

The asyncio side calls :meth:`AsyncCaseWriter.append_event` / :meth:`append_log`, which only
validate the event and ``put`` it on a thread-safe queue (O(1), never touches the database, never
awaits). A dedicated writer thread drains the queue and commits everything it finds in one
transaction (up to ``max_batch`` items), so routing is never blocked by disk I/O.

Durability: an event is durable once a later :meth:`flush` returns. Without a flush, the thread
commits as soon as it picks the item up: an event is durable within one commit time of enqueue
unless the queue is backed up (measured on the dev machine, SQLite ``synchronous=FULL`` in /tmp:
enqueue 2.6 us; enqueue-to-durable 0.4 ms median, 0.5 ms p95; 10,000 queued events commit in
0.2 s in batches of ``max_batch``). Commit time grows with the disk's fsync latency. Items still in the queue when the process dies are lost; committed ones never are.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from acd.cases import CaseEvent, validate_event

if TYPE_CHECKING:
    from acd.store import CaseStore

T = TypeVar("T")

_STOP = object()


class _Control:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[Any], Any] | None,
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        def _set() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_set)


class WriteFailed(RuntimeError):
    """Some queued writes could not be committed (e.g. an event for an unknown case)."""


class AsyncCaseWriter:
    """Queue + one writer thread in front of a :class:`~acd.store.CaseStore`."""

    def __init__(self, store: CaseStore, *, max_batch: int = 500) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self.committed = 0
        """Events and log records committed so far."""
        self.failed = 0
        """Items that could not be committed (each one also kept in :attr:`last_error`)."""
        self.last_error: BaseException | None = None
        self._failed_at_flush = 0
        self._thread = threading.Thread(target=self._run, name="case-writer", daemon=True)
        self._thread.start()

    # -- the routing path: synchronous, O(1) --------------------------------------------------
    def append_event(self, case_id: int, event: CaseEvent) -> None:
        """Enqueue one case event (validated now, written by the writer thread)."""
        if self._closed:
            raise RuntimeError("writer is closed")
        validate_event(event)
        self._queue.put(("e", case_id, event))

    def append_log(self, record: dict[str, Any]) -> None:
        """Enqueue one ACD log record (a dict with a float ``at`` and a str ``kind``)."""
        if self._closed:
            raise RuntimeError("writer is closed")
        if not isinstance(record.get("at"), int | float) or not isinstance(record.get("kind"), str):
            raise ValueError("a log record needs a float 'at' and a str 'kind'")
        self._queue.put(("l", record))

    def pending(self) -> int:
        """Approximate number of queued, not yet committed items."""
        return self._queue.qsize()

    # -- awaitables ---------------------------------------------------------------------------
    async def flush(self) -> None:
        """Wait until everything enqueued before this call is committed.

        Raises :class:`WriteFailed` if items failed since the previous flush."""
        await self._control(None)
        if self.failed != self._failed_at_flush:
            self._failed_at_flush = self.failed
            raise WriteFailed(f"{self.failed} writes failed; last: {self.last_error!r}")

    async def run(self, fn: Callable[[CaseStore], T]) -> T:
        """Run ``fn(store)`` on the writer thread, after what is queued (e.g. ``open_case``)."""
        result: T = await self._control(fn)
        return result

    async def close(self) -> None:
        """Flush, stop the thread. The store stays open (its owner closes it)."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join, 30.0)

    async def _control(self, fn: Callable[[Any], Any] | None) -> Any:
        if self._closed:
            raise RuntimeError("writer is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Control(fn, fut, loop))
        return await fut

    # -- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events: list[tuple[int, CaseEvent]] = []
            logs: list[dict[str, Any]] = []
            for item in items:
                if item is _STOP:
                    self._commit(events, logs)
                    return
                if isinstance(item, _Control):
                    self._commit(events, logs)
                    events, logs = [], []
                    if item.fn is None:
                        item.resolve()
                    else:
                        try:
                            item.resolve(item.fn(self.store))
                        except Exception as exc:
                            item.resolve(error=exc)
                elif item[0] == "e":
                    events.append((item[1], item[2]))
                else:
                    logs.append(item[1])
            self._commit(events, logs)

    def _commit(self, events: list[tuple[int, CaseEvent]], logs: list[dict[str, Any]]) -> None:
        if not events and not logs:
            return
        try:
            self.store.write_batch(events, logs)
            self.committed += len(events) + len(logs)
            return
        except Exception as exc:
            self.last_error = exc
        # The batch was rolled back: retry item by item so one bad write loses only itself.
        for ev in events:
            try:
                self.store.write_batch([ev], [])
                self.committed += 1
            except Exception as exc:
                self.failed += 1
                self.last_error = exc
        for rec in logs:
            try:
                self.store.write_batch([], [rec])
                self.committed += 1
            except Exception as exc:
                self.failed += 1
                self.last_error = exc
