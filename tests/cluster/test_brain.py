"""The routing brain (hotline/cluster/brain.py) on a real PostgreSQL server.

Two brains (active + hot standby) and two or three nodes in one process (and one brain in a
child process for kill -9): calls and agents flow, each action reaches the node holding the
call; the active is killed (task cancelled, sockets shut, SIGKILL) or cut off from the database;
the standby takes over and the queue carries on in the order one uninterrupted engine would
have kept. Every test ends by checking the whole log: its replay gives exactly the published
actions, and no agent ever had two offers or calls, no call was offered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from acd.actions import Action, BridgeCall, CancelOffer, OfferCall, RejectCall
from acd.codec import action_from_dict, event_from_dict
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentReady,
    CallAbandoned,
    CallArrived,
    CallEnded,
    Event,
    OfferAnswered,
)
from acd.store.testing import pg_dsn_for_tests
from hotline.cluster.brain import (
    EVERY_NODE,
    Brain,
    ClusterAcd,
    ClusterSettings,
    Origin,
    Replica,
    Role,
    create_schema,
)

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("a1", "a2", "a3", "a4")
CONFIG = AcdConfig.from_dict(
    {
        "queues": {"q": {"strategy": "longest-idle", "ring_timeout": 60.0}},
        "agents": {a: {"queues": ["q"]} for a in AGENTS},
    }
)
LEASE = 1.5


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "brain_" + uuid.uuid4().hex[:12]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def wait_until(pred: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    """Poll ``pred`` (generous: the machine is shared) until true."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while not pred():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_for_role(brains: list[Brain], seconds: float = 15.0) -> Brain:
    """The one active brain, once there is one."""
    await wait_until(lambda: any(b.role is Role.ACTIVE for b in brains), "an active brain", seconds)
    return next(b for b in brains if b.role is Role.ACTIVE)


@dataclass
class Node:
    """A node: its ClusterAcd and the actions it was given, in order."""

    acd: ClusterAcd
    got: list[Action] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.acd.node_id

    def offers(self) -> list[tuple[str, str]]:
        return [(a.call_id, a.agent_id) for a in self.got if isinstance(a, OfferCall)]


@contextlib.asynccontextmanager
async def nodes(settings: ClusterSettings, *names: str) -> AsyncIterator[list[Node]]:
    out: list[Node] = []
    for name in names:
        got: list[Action] = []
        acd = ClusterAcd(settings, node_id=name, on_action=got.append)
        out.append(Node(acd, got))
    try:
        await asyncio.gather(*(n.acd.start() for n in out))
        yield out
    finally:
        for n in out:
            await n.acd.close()


class Brains:
    """Brains run as tasks; kill one as a crash would (its lease is not released)."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.brains: dict[str, Brain] = {}

    def start(self, name: str) -> Brain:
        brain = Brain(self.settings, node_id=name, config=CONFIG, seed=7)
        self.brains[name] = brain
        self.tasks[name] = asyncio.create_task(brain.run(), name=name)
        return brain

    async def kill(self, name: str) -> None:
        task = self.tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del self.brains[name]

    async def close(self) -> None:
        for name in list(self.tasks):
            await self.kill(name)


@contextlib.asynccontextmanager
async def brains(settings: ClusterSettings, *names: str) -> AsyncIterator[Brains]:
    group = Brains(settings)
    try:
        for name in names:
            group.start(name)
            if len(group.brains) == 1:  # the first one becomes active: deterministic roles
                await wait_for_role(list(group.brains.values()))
        yield group
    finally:
        await group.close()


def now() -> float:
    return time.time()


async def settle(everyone: list[Node], seconds: float = 20.0) -> None:
    """Until every event sent is in the log (the inbox is empty) and every node's replica has
    applied the whole log (a failover in between only makes this wait for the takeover)."""
    acd = everyone[0].acd
    async with await psycopg.AsyncConnection.connect(acd.settings.dsn, autocommit=True) as conn:
        await conn.execute(f"SET search_path TO {acd.settings.schema}")
        loop = asyncio.get_running_loop()
        give_up = loop.time() + seconds
        while loop.time() < give_up:
            for n in everyone:
                await n.acd.sent()
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM acd_inbox),"
                " (SELECT coalesce(max(seq), 0) FROM acd_input)"
            )
            row = await cur.fetchone()
            assert row is not None
            if row[0] == 0 and all(
                n.acd.replica is not None and n.acd.replica.seq >= row[1] for n in everyone
            ):
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the cluster did not settle")


async def send(node: Node, event: Event, everyone: list[Node]) -> None:
    """Send ``event`` and wait until it is in the log and every node has applied it."""
    node.acd.handle(event)
    await settle(everyone)


def read_everything(
    dsn: str, schema: str
) -> tuple[Origin, list[tuple[int, int, str | None, Event]], list[tuple[int, int, str, Action]]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        row = conn.execute("SELECT config, seed, start FROM acd_origin").fetchone()
        assert row is not None
        origin = Origin(AcdConfig.from_dict(row[0]), int(row[1]), float(row[2]))
        entries = [
            (s, e, n, event_from_dict(b))
            for s, e, n, b in conn.execute(
                "SELECT seq, epoch, node, body FROM acd_input ORDER BY seq"
            ).fetchall()
        ]
        actions = [
            (s, i, n, action_from_dict(b))
            for s, i, n, b in conn.execute(
                "SELECT seq, idx, node, body FROM acd_actions ORDER BY seq, idx"
            ).fetchall()
        ]
    return origin, entries, actions


def check_log(
    dsn: str, schema: str
) -> tuple[list[tuple[int, int, str | None, Event]], list[tuple[int, int, str, Action]]]:
    """The whole log: replayed into a fresh engine it gives exactly the published actions;
    epochs never interleave; no agent has two offers or calls; no call is offered twice."""
    origin, entries, published = read_everything(dsn, schema)
    assert [s for s, *_ in entries] == list(range(1, len(entries) + 1)), "gaps in the log"
    epochs = [e for _, e, _, _ in entries]
    assert epochs == sorted(epochs), "an old active appended after a newer one"
    replica = Replica(origin)
    replayed = []
    for seq, _, node, event in entries:
        replayed += [tuple(r) for r in replica.apply(seq, node, event)]
    assert replayed == published
    check_offers(entries, published)
    return entries, published


def check_offers(
    entries: list[tuple[int, int, str | None, Event]], published: list[tuple[int, int, str, Action]]
) -> None:
    by_seq: dict[int, list[Action]] = {}
    for seq, _, _, action in published:
        by_seq.setdefault(seq, []).append(action)
    offered: dict[str, str] = {}  # agent -> call with an outstanding offer
    talking: dict[str, str] = {}  # agent -> call bridged
    bridged: set[str] = set()
    for seq, _, _, event in entries:
        if isinstance(event, CallEnded | CallAbandoned):
            for agent, call in list(talking.items()):
                if call == event.call_id:
                    del talking[agent]
        for action in by_seq.get(seq, []):
            match action:
                case OfferCall(call_id=c, agent_id=a):
                    assert a not in offered and a not in talking, f"{a} offered {c} while busy"
                    assert c not in offered.values(), f"{c} offered twice at once"
                    assert c not in bridged, f"{c} offered after it was answered"
                    offered[a] = c
                case CancelOffer(call_id=c, agent_id=a):
                    assert offered.pop(a) == c
                case BridgeCall(call_id=c, agent_id=a):
                    assert offered.pop(a) == c
                    talking[a] = c
                    bridged.add(c)


def reference_offers(origin_start: float, events: list[Event]) -> list[tuple[str, str]]:
    """What one uninterrupted in-process engine offers for the same input."""
    engine = AcdEngine(CONFIG, rng=random.Random(7), now=origin_start)
    out = []
    for ev in events:
        out += [(a.call_id, a.agent_id) for a in engine.handle(ev) if isinstance(a, OfferCall)]
    return out


def settings_for(
    schema: tuple[str, str], lease: float = LEASE, dsn: str | None = None
) -> ClusterSettings:
    return ClusterSettings(dsn=dsn or schema[0], schema=schema[1], lease_seconds=lease)


# --- calls flow ---------------------------------------------------------------------------------


async def test_actions_reach_the_node_holding_the_call(schema: tuple[str, str]) -> None:
    s = settings_for(schema)
    await create_schema(s)
    async with brains(s, "b1", "b2") as group, nodes(s, "n1", "n2", "n3") as (n1, n2, n3):
        everyone = [n1, n2, n3]
        assert group.brains["b1"].role is Role.ACTIVE
        await wait_until(lambda: group.brains["b2"].role is Role.STANDBY, "b2 standing by")
        await send(n1, CallArrived(at=now(), call_id="c1", queue="q"), everyone)
        await send(n2, CallArrived(at=now(), call_id="c2", queue="q"), everyone)
        await send(n1, CallArrived(at=now(), call_id="c3", queue="q"), everyone)
        assert n3.acd.engine.waiting("q") == ["c1", "c2", "c3"]  # the replicas are in step
        # agents log in through a third node; each offer goes to the node holding the call
        await send(n3, AgentLoggedIn(at=now(), agent_id="a1"), everyone)
        await wait_until(lambda: n1.offers() == [("c1", "a1")], "c1 offered on n1")
        await send(n3, AgentLoggedIn(at=now(), agent_id="a2"), everyone)
        await wait_until(lambda: n2.offers() == [("c2", "a2")], "c2 offered on n2")
        await send(n1, OfferAnswered(at=now(), call_id="c1", agent_id="a1"), everyone)
        await wait_until(lambda: BridgeCall("c1", "a1", "q") in n1.got, "c1 bridged on n1")
        assert n3.got == []  # nothing for calls n3 does not hold
        assert all(not isinstance(a, OfferCall) or a.call_id != "c2" for a in n1.got)
        # the standby replayed the same engine: same queue, same agents, same calls
        standby = group.brains["b2"]
        await wait_until(
            lambda: (
                standby.replica is not None
                and standby.replica.seq == (n1.acd.replica.seq if n1.acd.replica else -1)
            ),
            "the standby caught up",
        )
        assert standby.engine is not None
        assert standby.engine.snapshot() == n1.acd.engine.snapshot()
    check_log(*schema)


# --- failover -----------------------------------------------------------------------------------


async def crash_by_cancel(group: Brains, name: str) -> None:
    await group.kill(name)


async def crash_by_socket(group: Brains, name: str) -> None:
    group.brains[name].kill_connections()


@pytest.mark.parametrize("crash", [crash_by_cancel, crash_by_socket], ids=["cancel", "socket"])
async def test_the_standby_takes_over_and_waiting_callers_keep_their_place(
    schema: tuple[str, str], crash: Callable[[Brains, str], Awaitable[None]]
) -> None:
    s = settings_for(schema)
    await create_schema(s)
    sent: list[Event] = []
    async with brains(s, "b1", "b2") as group, nodes(s, "n1", "n2") as (n1, n2):
        everyone = [n1, n2]

        async def go(node: Node, ev: Event) -> None:
            sent.append(ev)
            await send(node, ev, everyone)

        await wait_until(lambda: group.brains["b2"].role is Role.STANDBY, "b2 standing by")
        for i in range(6):
            await go((n1, n2)[i % 2], CallArrived(at=now(), call_id=f"c{i}", queue="q"))
        await go(n1, AgentLoggedIn(at=now(), agent_id="a1"))
        await wait_until(lambda: n1.offers() == [("c0", "a1")], "c0 offered to a1")
        await go(n1, OfferAnswered(at=now(), call_id="c0", agent_id="a1"))

        old_epoch = group.brains["b1"].epoch
        await crash(group, "b1")
        await wait_until(
            lambda: any(
                b.role is Role.ACTIVE and b.epoch > old_epoch for b in group.brains.values()
            ),
            "a takeover",
            LEASE * 6,
        )
        # the new active carries on from the queue as it was: c1..c5 in arrival order
        for agent in ("a2", "a3", "a4"):
            await go(n2, AgentLoggedIn(at=now(), agent_id=agent))
        await wait_until(lambda: len(n1.offers()) + len(n2.offers()) == 4, "three more offers")
        origin, _, _ = read_everything(*schema)
        expected = reference_offers(origin.start, sent)
        got = sorted(n1.offers() + n2.offers(), key=lambda o: int(o[0][1:]))
        assert got == expected == [("c0", "a1"), ("c1", "a2"), ("c2", "a3"), ("c3", "a4")]
        # and each offer went to the node holding its call
        assert n1.offers() == [("c0", "a1"), ("c2", "a3")]
        assert n2.offers() == [("c1", "a2"), ("c3", "a4")]
    entries, _ = check_log(*schema)
    assert {e for _, e, _, _ in entries} >= {old_epoch, old_epoch + 1}


CHILD = r"""
import asyncio, sys
from acd.config import AcdConfig
from hotline.cluster.brain import Brain, ClusterSettings, Role
import json

async def main() -> None:
    s = ClusterSettings(dsn=sys.argv[1], schema=sys.argv[2], lease_seconds=float(sys.argv[3]))
    brain = Brain(s, node_id="child", config=AcdConfig.from_dict(json.loads(sys.argv[4])), seed=7)
    task = asyncio.create_task(brain.run())
    while True:
        await brain.role_changed.wait()
        brain.role_changed.clear()
        print(brain.role.value, flush=True)

asyncio.run(main())
"""


async def test_kill_9_of_the_active_process(schema: tuple[str, str]) -> None:
    from acd.codec import config_to_table

    s = settings_for(schema)
    await create_schema(s)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        s.dsn,
        s.schema,
        str(LEASE),
        json.dumps(config_to_table(CONFIG)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = b""
        while line.strip() != b"active":
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line, "the child brain exited"
        sent: list[Event] = []
        async with brains(s) as group, nodes(s, "n1", "n2") as (n1, n2):
            standby = group.start("b2")
            everyone = [n1, n2]
            await wait_until(lambda: standby.role is Role.STANDBY, "b2 standing by")
            for i in range(4):
                ev = CallArrived(at=now(), call_id=f"c{i}", queue="q")
                sent.append(ev)
                await send((n1, n2)[i % 2], ev, everyone)
            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 10)
            await wait_until(lambda: standby.role is Role.ACTIVE, "takeover", LEASE * 6)
            for agent in ("a1", "a2"):
                login = AgentLoggedIn(at=now(), agent_id=agent)
                sent.append(login)
                await send(n2, login, everyone)
            await wait_until(lambda: len(n1.offers()) + len(n2.offers()) == 2, "two offers")
            origin, _, _ = read_everything(*schema)
            assert n1.offers() + n2.offers() == reference_offers(origin.start, sent)
            assert n1.offers() == [("c0", "a1")] and n2.offers() == [("c1", "a2")]
    finally:
        if child.returncode is None:
            child.kill()
            await asyncio.wait_for(child.wait(), 10)
    entries, _ = check_log(*schema)
    assert entries[0][1] < entries[-1][1]  # the child's epoch, then the standby's


# --- partition ----------------------------------------------------------------------------------


class Proxy:
    """A TCP relay to PostgreSQL that can be frozen: bytes stop flowing both ways and the
    sockets stay open, as when a link is cut (no FIN, no RST)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = asyncio.Event()
        self.open.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.open.wait()
        up_r, up_w = await asyncio.open_connection(*self.target)
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self.open.wait()
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


async def test_a_partitioned_active_steps_down_before_the_standby_takes_over(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    info = conninfo_to_dict(dsn)
    proxy = Proxy(str(info.get("host") or "127.0.0.1"), int(str(info.get("port") or 5432)))
    await proxy.start()
    cut_off = settings_for(schema, dsn=make_conninfo(dsn, host="127.0.0.1", port=proxy.port))
    s = settings_for(schema)
    await create_schema(s)
    group = Brains(s)
    old = Brain(cut_off, node_id="b1", config=CONFIG, seed=7)
    old_task = asyncio.create_task(old.run())
    changes: list[tuple[float, str, str]] = []

    def watch(brain: Brain) -> None:
        def on_change() -> None:
            changes.append((time.monotonic(), brain.node_id, brain.role.value))

        original = brain._set_role

        def set_role(role: Role) -> None:
            original(role)
            on_change()

        brain._set_role = set_role  # type: ignore[method-assign]

    watch(old)
    try:
        await wait_for_role([old])
        standby = group.start("b2")
        watch(standby)
        async with nodes(s, "n1") as (n1,):
            await wait_until(lambda: standby.role is Role.STANDBY, "b2 standing by")
            await send(n1, CallArrived(at=now(), call_id="c1", queue="q"), [n1])
            proxy.open.clear()  # the link is cut: the old active hears nothing more
            await send(n1, CallArrived(at=now(), call_id="c2", queue="q"), [n1])  # via b2
            await wait_until(lambda: standby.role is Role.ACTIVE, "takeover", LEASE * 6)
            await send(n1, AgentLoggedIn(at=now(), agent_id="a1"), [n1])
            await wait_until(lambda: n1.offers() == [("c1", "a1")], "c1 offered")
            proxy.open.set()  # the link is back: the old active must not publish anything
            await send(n1, AgentLoggedIn(at=now(), agent_id="a2"), [n1])
            await wait_until(lambda: n1.offers() == [("c1", "a1"), ("c2", "a2")], "c2 offered")
        stepped_down = min(t for t, who, role in changes if who == "b1" and role != "active")
        took_over = min(t for t, who, role in changes if who == "b2" and role == "active")
        assert stepped_down < took_over
        assert old.role is not Role.ACTIVE or old.epoch > standby.epoch
    finally:
        old_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await old_task
        await group.close()
        await proxy.close()
    entries, published = check_log(dsn, name)
    first_new = min(seq for seq, epoch, _, _ in entries if epoch > 1)
    assert all(epoch > 1 for seq, epoch, _, _ in entries if seq >= first_new)
    assert all(
        seq < first_new or any(e[0] == seq and e[1] > 1 for e in entries) for seq, *_ in published
    )


# --- a generated schedule of events and failovers -----------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(0, 1)),
        st.tuples(st.just("ready"), st.sampled_from(AGENTS[:3])),
        st.tuples(st.just("answer"), st.integers(0, 3)),
        st.tuples(st.just("hangup"), st.integers(0, 3)),
        st.tuples(st.just("abandon"), st.integers(0, 3)),
        st.tuples(st.just("failover"), st.just(0)),
    ),
    min_size=4,
    max_size=14,
).filter(lambda steps: sum(1 for s in steps if s[0] == "failover") <= 2)


async def run_schedule(dsn: str, schema_name: str, steps: list[tuple[str, Any]]) -> None:
    s = ClusterSettings(dsn=dsn, schema=schema_name, lease_seconds=0.8)
    await create_schema(s)
    calls: dict[str, Node] = {}
    ended: set[str] = set()
    async with brains(s, "b0", "b1") as group, nodes(s, "n0", "n1") as pair:
        spare = 2

        def outstanding() -> list[tuple[Node, str, str]]:
            """Offers not yet cancelled or bridged, per holding node."""
            out = []
            for n in pair:
                live: dict[tuple[str, str], bool] = {}
                for a in n.got:
                    if isinstance(a, OfferCall):
                        live[(a.call_id, a.agent_id)] = True
                    elif isinstance(a, CancelOffer | BridgeCall):
                        live.pop((a.call_id, a.agent_id), None)
                out += [(n, c, ag) for (c, ag) in live if c not in ended]
            return out

        def bridged() -> list[tuple[Node, str]]:
            return [
                (n, a.call_id)
                for n in pair
                for a in n.got
                if isinstance(a, BridgeCall) and a.call_id not in ended
            ]

        async def step(kind: str, arg: Any) -> None:
            nonlocal spare
            if kind == "arrive":
                call = f"c{len(calls)}"
                calls[call] = pair[arg]
                pair[arg].acd.handle(CallArrived(at=now(), call_id=call, queue="q"))
            elif kind == "ready":
                n = pair[AGENTS.index(arg) % 2]
                n.acd.handle(AgentLoggedIn(at=now(), agent_id=arg))
                n.acd.handle(AgentReady(at=now(), agent_id=arg))
            elif kind == "answer":
                offers = outstanding()
                if offers:
                    n, c, ag = offers[arg % len(offers)]
                    n.acd.handle(OfferAnswered(at=now(), call_id=c, agent_id=ag))
            elif kind == "hangup":
                talking = bridged()
                if talking:
                    n, c = talking[arg % len(talking)]
                    ended.add(c)
                    n.acd.handle(CallEnded(at=now(), call_id=c))
            elif kind == "abandon":
                waiting = [
                    c for c in calls if c not in ended and c not in {b for _, b in bridged()}
                ]
                if waiting:
                    c = waiting[arg % len(waiting)]
                    ended.add(c)
                    calls[c].acd.handle(CallAbandoned(at=now(), call_id=c))
            elif kind == "failover":
                active = await wait_for_role(list(group.brains.values()))
                epoch = active.epoch
                await group.kill(active.node_id)
                group.start(f"b{spare}")
                spare += 1
                await wait_until(
                    lambda: any(
                        b.role is Role.ACTIVE and b.epoch > epoch for b in group.brains.values()
                    ),
                    "a takeover",
                    20,
                )
            await settle(pair)

        for kind, arg in steps:
            await step(kind, arg)
        note_event(f"offers before the end: {sum(len(n.offers()) for n in pair) > 0}")
        # the end: every agent ready; answer and hang up until no call is left unserved
        for agent in AGENTS:
            await step("ready", agent)
        for _ in range(30):
            unserved = [
                c
                for c in calls
                if c not in ended
                and not any(isinstance(a, OfferCall) and a.call_id == c for a in calls[c].got)
            ]
            if not unserved:
                break
            await step("answer", 0)
            await step("hangup", 0)
        assert not unserved, f"calls never offered: {unserved}"
        # each node got exactly the actions addressed to it, once, in order
        _, _, published = read_everything(dsn, schema_name)
        for n in pair:
            assert n.got == [a for _, _, node, a in published if node in (n.name, EVERY_NODE)]
    check_log(dsn, schema_name)


@pytest.mark.serial
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
@example(
    steps=[
        ("arrive", 0),
        ("arrive", 1),
        ("arrive", 0),
        ("ready", "a1"),
        ("failover", 0),  # an offer ringing across the takeover
        ("answer", 0),
        ("ready", "a2"),
        ("failover", 0),
        ("hangup", 0),
        ("abandon", 0),
    ]
)
def test_generated_schedules_with_failovers_never_double_offer(
    steps: list[tuple[str, Any]],
) -> None:
    dsn = pg_dsn_for_tests()
    name = "brainh_" + uuid.uuid4().hex[:12]
    try:
        asyncio.run(run_schedule(dsn, name, steps))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def test_an_event_sent_twice_is_handled_once(schema: tuple[str, str]) -> None:
    """A node that lost its connection while committing sends its batch again: the inbox
    refuses the copy, or the active drops it when the first copy is already in the log (no
    ``RejectCall(duplicate_call)`` for the node's own caller)."""
    s = settings_for(schema)
    await create_schema(s)
    async with brains(s, "b1") as group, nodes(s, "n1") as (n1,):
        await send(n1, CallArrived(at=now(), call_id="c1", queue="q"), [n1])
        with psycopg.connect(s.dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {s.schema}")
            row = conn.execute("SELECT key, body FROM acd_input WHERE seq = 1").fetchone()
            assert row is not None
            for _ in range(2):  # the second copy is refused by the inbox itself
                conn.execute(
                    "INSERT INTO acd_inbox (node, key, body) VALUES ('n1', %s, %s)"
                    " ON CONFLICT (key) DO NOTHING",
                    (row[0], Jsonb(row[1])),
                )
            conn.execute("SELECT pg_notify(%s, '')", (s.inbox_channel,))
        await send(n1, AgentLoggedIn(at=now(), agent_id="a1"), [n1])
        await wait_until(lambda: n1.offers() == [("c1", "a1")], "c1 offered")
        assert not any(isinstance(a, RejectCall) for a in n1.got)
        metrics = group.brains["b1"].metrics
        assert metrics.events.labels("b1")._value.get() == 2  # c1 and a1, not the copy
        assert metrics.role.labels("b1")._value.get() == 1
    entries, _ = check_log(*schema)
    assert [type(e).__name__ for _, _, _, e in entries] == ["CallArrived", "AgentLoggedIn"]
