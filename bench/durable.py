"""The cost of durable case opening and closing (issue 11): ``python -m bench.durable``.

Per call, on a real SQLite store (WAL, ``synchronous=FULL``) through the writer thread:

* ``batched`` (the baseline, before): ``open_case`` awaited, ``entered`` and ``hung_up``
  enqueued, not awaited (lost if the process dies before the thread commits them);
* ``durable`` (now): ``open_case`` with ``entered`` and the live-call row in one awaited
  transaction, ``hung_up`` enqueued and the call's end (``end_call``) awaited.

Prints the time the call path waits per call (median, p95) and calls per second for N
sequential calls and for C concurrent ones, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from acd.cases import CaseEvent, NewCase
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter


async def one_call(writer: AsyncCaseWriter, i: int, *, durable: bool) -> float:
    t0 = time.perf_counter()
    new = NewCase(caller_number=f"+1555{i:06d}", at=float(i), call_id=f"c{i}")
    entered = CaseEvent(at=float(i), kind="entered", actor="system", data={"entry": "queue"})
    if durable:
        case = await writer.run(lambda s: s.open_case(new, events=[entered], live=True))
    else:
        case = await writer.run(lambda s: s.open_case(new))
        writer.append_event(case.id, entered)
    waited = time.perf_counter() - t0
    writer.append_event(case.id, CaseEvent(at=i + 1.0, kind="hung_up", actor="caller"))
    if durable:
        t1 = time.perf_counter()
        await writer.run(lambda s: s.end_call(case.id))
        waited += time.perf_counter() - t1
    return waited


async def run(mode: str, calls: int, concurrent: int, where: Path) -> dict[str, float]:
    store = SQLiteCaseStore(where / f"{mode}.sqlite3")
    writer = AsyncCaseWriter(store)
    durable = mode == "durable"
    waits = [await one_call(writer, i, durable=durable) for i in range(calls)]
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(concurrent)

    async def limited(i: int) -> float:
        async with sem:
            return await one_call(writer, calls + i, durable=durable)

    await asyncio.gather(*(limited(i) for i in range(calls)))
    await writer.flush()
    elapsed = time.perf_counter() - t0
    await writer.close()
    store.close()
    waits.sort()
    return {
        "wait_median_ms": round(statistics.median(waits) * 1000, 3),
        "wait_p95_ms": round(waits[int(len(waits) * 0.95)] * 1000, 3),
        "calls_per_s_concurrent": round(calls / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            mode: asyncio.run(run(mode, args.calls, args.concurrent, Path(tmp)))
            for mode in ("batched", "durable")
        }
    for mode, figures in out.items():
        print(f"{mode:8s} {figures}")
    print(json.dumps({"bench": "durable", "calls": args.calls, **out}))


if __name__ == "__main__":
    main()
