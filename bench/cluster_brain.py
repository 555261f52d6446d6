"""The routing brain's capacity (issue 15): ``python -m bench.cluster_brain``.

Closed-loop callers on three nodes (:class:`hotline.cluster.brain.ClusterAcd`, in this
process), one active brain and one hot standby (each in a process of its own, as deployed) on a
real PostgreSQL server (``HOTLINE_TEST_PG_DSN``, or a throwaway
one from ``scripts/pg-test-server``). Each caller: ``CallArrived`` -> waits for its
``OfferCall`` -> ``OfferAnswered`` -> waits for ``BridgeCall`` -> ``CallEnded`` (wrap-up 0, so
the agent is free again). Agents outnumber callers, so every arrival is offered at once.

Measured per concurrency level: events per second through the brain (node INSERT -> active
moves it into the log and handles it -> the action row is read by the node), and the latency
event sent -> action received (p50/p99), beside the same callers on a local
:class:`acd.service.AcdService` in the same run (the single-node baseline). Then: how fast a
fresh standby replays the log (the catch-up part of a takeover), and one takeover (the active's
process killed with SIGKILL, lease ``--lease`` seconds) until the first action of the new active
reaches a node.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from acd.actions import Action, BridgeCall, OfferCall
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import AgentLoggedIn, CallArrived, CallEnded, Event, OfferAnswered
from acd.service import AcdService
from acd.store.testing import pg_dsn_for_tests
from hotline.cluster.brain import (
    Brain,
    ClusterAcd,
    ClusterSettings,
    Replica,
    catch_up,
    connect,
    create_schema,
    load_origin,
)

AGENTS = 400


def config() -> AcdConfig:
    return AcdConfig.from_dict(
        {
            "queues": {"q": {"strategy": "longest-idle", "ring_timeout": 600.0}},
            "agents": {f"a{i}": {"queues": ["q"]} for i in range(AGENTS)},
        }
    )


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


class Waiters:
    """Futures for the action a caller waits for, keyed by (kind, call id)."""

    def __init__(self) -> None:
        self.futures: dict[tuple[str, str], asyncio.Future[str]] = {}

    def expect(self, kind: str, call_id: str) -> asyncio.Future[str]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.futures[(kind, call_id)] = fut
        return fut

    def on_action(self, action: Action) -> None:
        if isinstance(action, OfferCall):
            fut = self.futures.pop(("offer", action.call_id), None)
            if fut is not None and not fut.done():
                fut.set_result(action.agent_id)
        elif isinstance(action, BridgeCall):
            fut = self.futures.pop(("bridge", action.call_id), None)
            if fut is not None and not fut.done():
                fut.set_result(action.agent_id)


async def callers(
    send: Callable[[int, Event], None],
    waiters: list[Waiters],
    *,
    concurrency: int,
    calls: int,
    seconds: float,
    prefix: str,
) -> dict[str, Any]:
    """Run closed-loop callers; return events/s and latencies (ms)."""
    latencies: list[float] = []
    done = 0
    events = 0
    t_end = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def caller(k: int) -> None:
        nonlocal done, events
        node = k % len(waiters)
        while done < calls and time.perf_counter() < t_end:
            call = f"{prefix}{next(counter)}"
            offer = waiters[node].expect("offer", call)
            t0 = time.perf_counter()
            send(node, CallArrived(at=time.time(), call_id=call, queue="q"))
            agent = await asyncio.wait_for(offer, 30)
            t1 = time.perf_counter()
            bridge = waiters[node].expect("bridge", call)
            send(node, OfferAnswered(at=time.time(), call_id=call, agent_id=agent))
            await asyncio.wait_for(bridge, 30)
            t2 = time.perf_counter()
            send(node, CallEnded(at=time.time(), call_id=call))
            latencies.extend((t1 - t0, t2 - t1))
            done += 1
            events += 3

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "calls": done,
        "events_per_s": round(events / elapsed, 1),
        "p50_ms": round(pct(latencies, 50) * 1000, 2),
        "p99_ms": round(pct(latencies, 99) * 1000, 2),
    }


async def local_baseline(concurrency: int, calls: int, seconds: float) -> dict[str, Any]:
    waiters = [Waiters()]
    engine = AcdEngine(config(), rng=random.Random(1), now=time.time())
    service = AcdService(engine, on_action=waiters[0].on_action)
    for i in range(AGENTS):
        service.handle(AgentLoggedIn(at=time.time(), agent_id=f"a{i}"))
    out = await callers(
        lambda _n, ev: service.handle(ev),
        waiters,
        concurrency=concurrency,
        calls=calls,
        seconds=seconds,
        prefix="l",
    )
    service.close()
    return out


async def replay_rate(settings: ClusterSettings) -> dict[str, Any]:
    conn = await connect(settings)
    try:
        origin = await load_origin(conn)
        assert origin is not None
        replica = Replica(origin)
        t0 = time.perf_counter()
        await catch_up(conn, replica)
        elapsed = time.perf_counter() - t0
    finally:
        await conn.close()
    return {"entries": replica.seq, "entries_per_s": round(replica.seq / elapsed, 1)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    dsn = args.dsn or pg_dsn_for_tests()
    schema = "bench_brain_" + uuid.uuid4().hex[:10]
    settings = ClusterSettings(dsn=dsn, schema=schema, lease_seconds=args.lease)
    await create_schema(settings)
    results: dict[str, Any] = {"bench": "cluster_brain", "lease_seconds": args.lease}
    procs: list[asyncio.subprocess.Process] = []
    nodes: list[ClusterAcd] = []
    try:
        for name in ("brain1", "brain2"):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.cluster_brain", "--run-brain", name,
                "--dsn", dsn, "--schema", schema, "--lease", str(args.lease),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            want = b"active" if name == "brain1" else b"standby"
            assert proc.stdout is not None
            while (line := await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != want:
                assert line, f"{name} exited"
        waiters = [Waiters() for _ in range(3)]
        for i, w in enumerate(waiters):
            node = ClusterAcd(settings, node_id=f"node{i}", on_action=w.on_action)
            await node.start()
            nodes.append(node)
        for i in range(AGENTS):
            nodes[i % 3].handle(AgentLoggedIn(at=time.time(), agent_id=f"a{i}"))
        for n in nodes:
            await n.sent()

        def send(i: int, ev: Event) -> None:
            nodes[i].handle(ev)

        rows = []
        for conc in args.concurrency:
            cluster = await callers(
                send,
                waiters,
                concurrency=conc,
                calls=args.calls,
                seconds=args.seconds,
                prefix=f"c{conc}_",
            )
            local = await local_baseline(conc, args.calls, args.seconds)
            rows.append({"cluster": cluster, "local": local})
            print(
                f"concurrency {conc:4d}: brain {cluster['events_per_s']:8.1f} events/s"
                f" p50 {cluster['p50_ms']:7.2f} ms p99 {cluster['p99_ms']:7.2f} ms |"
                f" local AcdService {local['events_per_s']:9.1f} events/s"
                f" p50 {local['p50_ms']:6.3f} ms p99 {local['p99_ms']:6.3f} ms",
                flush=True,
            )
        results["levels"] = rows
        replay = await replay_rate(settings)
        results["replay"] = replay
        print(
            f"replay of the whole log by a fresh standby: {replay['entries']} entries, {replay['entries_per_s']:.0f} entries/s",
            flush=True,
        )
        # one takeover: kill the active (no lease release) and time until a node gets an action
        procs[0].kill()
        await procs[0].wait()
        t_kill = time.perf_counter()
        offer = waiters[0].expect("offer", "after")
        nodes[0].handle(CallArrived(at=time.time(), call_id="after", queue="q"))
        await asyncio.wait_for(offer, args.lease * 10)
        takeover = time.perf_counter() - t_kill
        results["takeover_seconds"] = round(takeover, 2)
        print(
            f"takeover (active killed -> the waiting call offered by the standby): {takeover:.2f} s (lease {args.lease} s)",
            flush=True,
        )
    finally:
        for n in nodes:
            await n.close()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        with psycopg.connect(dsn, autocommit=True) as plain:
            plain.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return results


async def run_brain(args: argparse.Namespace) -> None:
    """One brain process (``--run-brain NAME``): prints each role it takes."""
    settings = ClusterSettings(dsn=args.dsn, schema=args.schema, lease_seconds=args.lease)
    brain = Brain(settings, node_id=args.run_brain, config=config(), seed=1)
    task = asyncio.create_task(brain.run())
    while not task.done():
        await brain.role_changed.wait()
        brain.role_changed.clear()
        print(brain.role.value, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_brain", description=__doc__)
    parser.add_argument(
        "--dsn", default="", help="PostgreSQL DSN (default: a throwaway test server)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--calls", type=int, default=3000, help="calls per level at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per level at most")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--run-brain", default="", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_brain:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        asyncio.run(run_brain(args))
        return
    results = asyncio.run(main_async(args))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
