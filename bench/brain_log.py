"""The routing brain's log on three message systems (issue 15): ``python -m bench.brain_log``.

The brain's pattern, the same for each system: N producers (the nodes, asyncio clients with a
few appends in flight each) append small JSON events (about 200 bytes) to an inbox; one consumer
(the active brain) reads them in order, appends each to a durable ordered log with its own
sequence number, fenced by its lease (an old active cannot append once another holds the
lease), and publishes a small action that the producer holding the call receives. Measured:
events/s sustained and end-to-end latency p50/p99 (producer send -> action received; for paced
rates from the *scheduled* send time, so a stall counts against the system), the servers' and
the clients' CPU per event, the servers' memory, at a few offered rates and flat out, each
bounded in count and time. ``--modes event``: each event is its own append (``--window`` in
flight per node); ``batch``: a node's one sender appends whatever its calls queued meanwhile in
one operation (as hotline/cluster's ClusterAcd does).

Systems (each server started here on 127.0.0.1, a free port, a temp dir; stopped at the end):

* ``postgres`` (the baseline; scripts/pg-test-server's cluster, ``synchronous_commit=on``,
  ``fsync=on``): inbox table, then a NOTIFY after the commit; the consumer's one transaction
  checks the lease row (``FOR SHARE``), deletes a batch from the inbox, inserts it into the log
  with its sequence numbers and the actions into an actions table; after the commit one NOTIFY
  per node carries that node's actions;
* ``postgres-notify-in-tx``: the same with each NOTIFY inside the writing transaction;
* ``redis-always`` / ``redis-everysec`` (Redis Streams, AOF with ``appendfsync always`` /
  ``everysec``): XADD to an inbox stream; the consumer XREADs a batch and runs one Lua script
  that checks the lease key and the expected last sequence, XADDs each event to the log stream
  with its sequence as the entry id and each action to the node's action stream (one AOF write);
* ``nats`` / ``nats-r3`` (NATS JetStream, file storage; one server, or three clustered on
  loopback with R3 streams): publish to an inbox stream (acked when stored); the consumer pulls
  a batch, publishes each to the log stream with ``Nats-Expected-Last-Sequence`` (the fence),
  then each action to an actions stream that the node also receives on a plain subscription,
  then acks the batch.

A system whose server binary or Python client is missing is skipped with a message. The runs
are interleaved (every system once per repeat, rotating) so the machine's other work falls on
all alike. The figures are printed beside the PostgreSQL baseline (ratios), then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
PG_SCRIPT = ROOT / "scripts" / "pg-test-server"
EVENT_BYTES = 200
# The lease each run takes once (its renewal is not what is measured here).
RUN_LEASE_S = 600

OnAction = Callable[[bytes], None]
T = TypeVar("T")

# The loop `hotline serve` runs on, where installed.
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is there (as the service does), else asyncio's loop."""
    if LOOP == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


class Skip(Exception):
    """A system cannot run here (no server binary, no client library)."""


class LeaseLost(Exception):
    """The consumer's fenced append was refused: another holds the lease (or the log moved)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def event_body(node: int, k: int) -> bytes:
    """A ~200-byte JSON event, like a node's CallArrived."""
    body = {
        "type": "CallArrived",
        "node": node,
        "k": k,
        "call_id": f"n{node}-c{k:08d}",
        "queue": "sales",
        "skills": {"fr": 5, "billing": 3},
        "at": 1733529600.0 + k,
        "pad": "",
    }
    raw = json.dumps(body, separators=(",", ":"))
    body["pad"] = "x" * max(0, EVENT_BYTES - len(raw))
    return json.dumps(body, separators=(",", ":")).encode()


def action_for(event: bytes, seq: int) -> tuple[int, bytes]:
    """What the engine would answer: an OfferCall for the node that holds the call."""
    ev = json.loads(event)
    node = int(ev["node"])
    act = {"type": "OfferCall", "node": node, "k": ev["k"], "seq": seq, "agent_id": "a17"}
    return node, json.dumps(act, separators=(",", ":")).encode()


def rss_pss_kib(pids: list[int]) -> int:
    """Proportional set size of these processes (shared pages counted once), in KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def has_postgres() -> bool:
    return PG_SCRIPT.exists() and bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children_of(pid: int) -> list[int]:
    out = [pid]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d.name))
    return out


def installed_kib(packages: list[str]) -> int:
    """Debian's Installed-Size of these packages (KiB), 0 when dpkg does not know them."""
    total = 0
    for pkg in packages:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Installed-Size}", pkg],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip().isdigit():
            total += int(out.stdout.strip())
    return total


class System(Protocol):
    name: str

    def server_pids(self) -> list[int]: ...

    async def open(self, tag: str, producers: int, window: int) -> None:
        """Fresh inbox/log/actions for one run; the consumer takes the lease."""

    async def send(self, node: int, slot: int, payload: bytes) -> None:
        """Append one event to the inbox; returns once the system acknowledged it."""

    async def send_many(self, node: int, payloads: list[bytes]) -> None:
        """Append several events in one operation, in this order (a batching node)."""

    async def listen(self, node: int, on_action: OnAction, stop: asyncio.Event) -> None:
        """Deliver the actions meant for this node until ``stop`` is set (or cancelled)."""

    async def consume(self, stop: asyncio.Event) -> None:
        """The active brain: read in order, fenced durable append, publish actions."""

    async def close_run(self) -> None: ...

    async def stop(self) -> None: ...


# --------------------------------------------------------------------------------------------
# PostgreSQL: inbox table + NOTIFY, log and actions tables, lease row (the baseline)


NOTIFY_ACTIONS = (
    "SELECT count(pg_notify(%s || '_act_' || n, b)) FROM unnest(%s::int[], %s::text[]) AS t(n, b)"
)


def notify_payloads(nodes: list[int], bodies: list[str]) -> tuple[list[int], list[str]]:
    """One NOTIFY per node per batch (PostgreSQL wakes every listener of the database for
    each NOTIFY), its actions one a line, split below the 8,000-byte payload limit."""
    out_nodes: list[int] = []
    out_bodies: list[str] = []
    pending: dict[int, list[str]] = {}
    size: dict[int, int] = {}
    for node, body in zip(nodes, bodies, strict=True):
        if size.get(node, 0) + len(body) + 1 > 7900:
            out_nodes.append(node)
            out_bodies.append("\n".join(pending.pop(node)))
            size[node] = 0
        pending.setdefault(node, []).append(body)
        size[node] = size.get(node, 0) + len(body) + 1
    for node, lines in pending.items():
        out_nodes.append(node)
        out_bodies.append("\n".join(lines))
    return out_nodes, out_bodies


class PostgresSystem:
    """PostgreSQL as the brain's message system.

    ``notify_in_tx``: NOTIFY inside the writing transactions (the producer's INSERT, the
    consumer's append). PostgreSQL serializes the commits of NOTIFYing transactions (a
    database-wide lock from PreCommit_Notify to the end of the commit, its WAL flush
    included), so this loses group commit; the default sends each NOTIFY in its own
    transaction right after the commit (same round trip for the producer).
    """

    def __init__(
        self, dsn: str | None = None, batch: int = 256, notify_in_tx: bool = False
    ) -> None:
        self.name = "postgres-notify-in-tx" if notify_in_tx else "postgres"
        self.notify_in_tx = notify_in_tx
        self.dsn = dsn or ""
        self.batch = batch
        self.pg_dir = ""
        self.schema = ""
        self._owns_server = dsn is None
        self._senders: dict[tuple[int, int], Any] = {}
        self._conns: list[Any] = []

    @classmethod
    async def start(cls, *, notify_in_tx: bool = False) -> PostgresSystem:
        if not has_postgres():
            raise Skip("no PostgreSQL server (apt-get install postgresql)")
        env = {k: v for k, v in os.environ.items() if k != "HOTLINE_PG_DIR"}
        out = await asyncio.to_thread(
            subprocess.run,
            [str(PG_SCRIPT), "start"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if out.returncode != 0:
            raise Skip(f"pg-test-server failed: {out.stderr.strip()}")
        vals = dict(
            line[len("export ") :].split("=", 1)
            for line in out.stdout.splitlines()
            if line.startswith("export ")
        )
        system = cls(vals["HOTLINE_TEST_PG_DSN"], notify_in_tx=notify_in_tx)
        system._owns_server = True
        system.pg_dir = vals["HOTLINE_PG_DIR"]
        return system

    def server_pids(self) -> list[int]:
        if not self.pg_dir:
            return []
        pidfile = Path(self.pg_dir) / "data" / "postmaster.pid"
        try:
            return children_of(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            return []

    async def _connect(self) -> Any:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, options=f"-c search_path={self.schema}"
        )
        self._conns.append(conn)
        return conn

    async def open(self, tag: str, producers: int, window: int) -> None:
        import psycopg

        self.schema = f"brain_log_{tag}"
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(f"CREATE SCHEMA {self.schema}")
            await conn.execute(f"SET search_path TO {self.schema}")
            await conn.execute(
                "CREATE TABLE inbox (id bigserial PRIMARY KEY, node int NOT NULL, body jsonb NOT NULL)"
            )
            await conn.execute(
                "CREATE TABLE log (seq bigint PRIMARY KEY, epoch bigint NOT NULL,"
                " node int NOT NULL, body jsonb NOT NULL)"
            )
            await conn.execute(
                "CREATE TABLE actions (id bigserial PRIMARY KEY, seq bigint NOT NULL,"
                " node int NOT NULL, body jsonb NOT NULL)"
            )
            await conn.execute(
                "CREATE TABLE lease (name text PRIMARY KEY, holder text NOT NULL,"
                " epoch bigint NOT NULL, expires_at timestamptz NOT NULL)"
            )
        self.channel = f"brain_inbox_{tag}"
        self.holder = uuid.uuid4().hex
        self.tx = await self._connect()
        # Take the lease: a free or lapsed row becomes ours with epoch + 1 (the database's clock).
        cur = await self.tx.execute(
            "INSERT INTO lease VALUES ('brain', %s, 1, now() + %s * interval '1 ms')"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
            " epoch = lease.epoch + 1, expires_at = excluded.expires_at"
            " WHERE lease.expires_at < now() OR lease.holder = excluded.holder RETURNING epoch",
            (self.holder, RUN_LEASE_S * 1000),
        )
        row = await cur.fetchone()
        assert row is not None
        self.epoch = int(row[0])
        self.next_seq = 1
        self.wake = await self._connect()
        await self.wake.execute(f"LISTEN {self.channel}")
        for node in range(producers):
            for slot in range(window):
                self._senders[node, slot] = await self._connect()

    async def send(self, node: int, slot: int, payload: bytes) -> None:
        conn = self._senders[node, slot]
        if self.notify_in_tx:
            await conn.execute(
                "WITH i AS (INSERT INTO inbox (node, body) VALUES (%s, %s::jsonb) RETURNING id)"
                " SELECT pg_notify(%s, '') FROM i",
                (node, payload.decode(), self.channel),
            )
            return
        # The INSERT commits on its own (fsync'd, group commit with the others), then the
        # NOTIFY in a transaction that writes nothing. (Not in one pipeline: statements
        # between two Syncs are one implicit transaction.)
        await conn.execute(
            "INSERT INTO inbox (node, body) VALUES (%s, %s::jsonb)", (node, payload.decode())
        )
        await conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    async def send_many(self, node: int, payloads: list[bytes]) -> None:
        conn = self._senders[node, 0]
        bodies = [p.decode() for p in payloads]
        if self.notify_in_tx:
            await conn.execute(
                "WITH i AS (INSERT INTO inbox (node, body)"
                " SELECT %s, b::jsonb FROM unnest(%s::text[]) AS b RETURNING id)"
                " SELECT pg_notify(%s, '') FROM (SELECT 1 FROM i LIMIT 1) AS one",
                (node, bodies, self.channel),
            )
            return
        await conn.execute(
            "INSERT INTO inbox (node, body) SELECT %s, b::jsonb FROM unnest(%s::text[]) AS b",
            (node, bodies),
        )
        await conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    async def listen(self, node: int, on_action: OnAction, stop: asyncio.Event) -> None:
        conn = await self._connect()
        await conn.execute(f"LISTEN {self.channel}_act_{node}")
        while not stop.is_set():
            async for note in conn.notifies(timeout=0.2):
                for line in note.payload.splitlines():
                    on_action(line.encode())

    async def _step(self) -> int:
        async with self.tx.transaction():
            cur = await self.tx.execute(
                "SELECT 1 FROM lease WHERE name = 'brain' AND holder = %s AND epoch = %s"
                " AND expires_at > now() FOR SHARE",
                (self.holder, self.epoch),
            )
            if await cur.fetchone() is None:
                raise LeaseLost("postgres: the lease row is no longer ours")
            cur = await self.tx.execute(
                "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox ORDER BY id LIMIT %s"
                " FOR UPDATE SKIP LOCKED) RETURNING id, node, body::text",
                (self.batch,),
            )
            rows = sorted(await cur.fetchall())
            if not rows:
                return 0
            seqs: list[int] = []
            nodes: list[int] = []
            bodies: list[str] = []
            act_nodes: list[int] = []
            act_bodies: list[str] = []
            for _id, node, body in rows:
                seq = self.next_seq + len(seqs)
                to, act = action_for(body.encode(), seq)
                seqs.append(seq)
                nodes.append(node)
                bodies.append(body)
                act_nodes.append(to)
                act_bodies.append(act.decode())
            await self.tx.execute(
                "WITH lg AS (INSERT INTO log (seq, epoch, node, body)"
                "  SELECT s, %s, n, b::jsonb FROM unnest(%s::bigint[], %s::int[], %s::text[]) AS t(s, n, b))"
                " INSERT INTO actions (seq, node, body)"
                "  SELECT s, n, b::jsonb FROM unnest(%s::bigint[], %s::int[], %s::text[]) AS t(s, n, b)",
                (self.epoch, seqs, nodes, bodies, seqs, act_nodes, act_bodies),
            )
            notes = notify_payloads(act_nodes, act_bodies)
            if self.notify_in_tx:
                await self.tx.execute(NOTIFY_ACTIONS, (self.channel, *notes))
        if not self.notify_in_tx:
            # After the commit: a node that misses one (the brain died in between) reads
            # the actions table from its last id when it reconnects.
            await self.tx.execute(NOTIFY_ACTIONS, (self.channel, *notes))
        self.next_seq += len(rows)
        return len(rows)

    async def consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self._step():
                continue
            # Nothing pending: wait for an inbox NOTIFY (queued ones wake us at once).
            async for _ in self.wake.notifies(timeout=0.2, stop_after=1):
                pass

    async def close_run(self) -> None:
        import psycopg

        for conn in self._conns:
            with contextlib.suppress(Exception):
                await conn.close()
        self._conns.clear()
        self._senders.clear()
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    async def stop(self) -> None:
        if self._owns_server and self.pg_dir:
            await asyncio.to_thread(
                subprocess.run,
                [str(PG_SCRIPT), "stop"],
                env={**os.environ, "HOTLINE_PG_DIR": self.pg_dir},
                capture_output=True,
                check=False,
            )


# --------------------------------------------------------------------------------------------
# Redis Streams: XADD inbox, Lua-fenced append to the log stream, per-node action streams

REDIS_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASE lost')
end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if last ~= tonumber(ARGV[2]) then
  return redis.error_reply('LEASE log moved')
end
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local b = 4 + i * 4
  last = last + 1
  redis.call('XADD', KEYS[2], last .. '-1', 'n', ARGV[b + 1], 'b', ARGV[b + 2])
  redis.call('XADD', KEYS[5] .. ARGV[b + 1], '*', 'b', ARGV[b + 3])
  redis.call('XDEL', KEYS[4], ARGV[b])
end
redis.call('SET', KEYS[3], last)
return last
"""


class RedisSystem:
    def __init__(self, fsync: str, batch: int = 256) -> None:
        self.name = f"redis-{fsync}"
        self.fsync = fsync
        self.batch = batch
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = ""
        self.port = 0
        self._clients: list[Any] = []

    @classmethod
    async def start(cls, fsync: str) -> RedisSystem:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Skip("no redis-server (apt-get install redis-server)")
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as e:
            raise Skip("no redis-py (pip install redis)") from e
        system = cls(fsync)
        system.dir = tempfile.mkdtemp(prefix="hotline-bench-redis.")
        system.port = free_port()
        system.proc = spawn(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(system.port),
                "--dir", system.dir,
                "--appendonly", "yes",
                "--appendfsync", fsync,
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(Path(system.dir) / "redis.log"),
            ]
        )  # fmt: skip
        try:
            await system._await_ping()
        except Skip:
            await system.stop()
            raise
        return system

    async def _await_ping(self) -> None:
        import redis.asyncio as redis

        for _ in range(100):
            client = redis.Redis(host="127.0.0.1", port=self.port)
            try:
                await client.ping()
                return
            except (redis.ConnectionError, OSError):
                await asyncio.sleep(0.05)
            finally:
                await client.aclose()
        raise Skip("redis-server did not answer")

    def server_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def _client(self, **kw: Any) -> Any:
        import redis.asyncio as redis

        client = redis.Redis(host="127.0.0.1", port=self.port, **kw)
        self._clients.append(client)
        return client

    async def open(self, tag: str, producers: int, window: int) -> None:
        self.tag = tag
        self.keys = [f"{tag}:lease", f"{tag}:log", f"{tag}:seq", f"{tag}:inbox", f"{tag}:act:"]
        self.token = uuid.uuid4().hex
        self.tx = self._client()
        # The lease: SET NX PX (the one Redis primitive; see the caveats in docs/cluster.md).
        if not await self.tx.set(self.keys[0], self.token, nx=True, px=RUN_LEASE_S * 1000):
            raise LeaseLost("redis: lease held by another")
        self.script = self.tx.register_script(REDIS_APPEND)
        self.last = 0
        self.read_from = "0-0"
        self.senders = [self._client(max_connections=window) for _ in range(producers)]

    async def send(self, node: int, slot: int, payload: bytes) -> None:
        await self.senders[node].xadd(self.keys[3], {"n": node, "b": payload})

    async def send_many(self, node: int, payloads: list[bytes]) -> None:
        pipe = self.senders[node].pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self.keys[3], {"n": node, "b": payload})
        await pipe.execute()

    async def listen(self, node: int, on_action: OnAction, stop: asyncio.Event) -> None:
        # redis-py retries a read that a cancellation interrupted: stop by a flag instead.
        client = self._client()
        stream = f"{self.keys[4]}{node}"
        last = "0-0"
        while not stop.is_set():
            got = await client.xread({stream: last}, block=100, count=1000)
            for _name, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    on_action(fields[b"b"])

    async def consume(self, stop: asyncio.Event) -> None:
        import redis.exceptions

        reader = self._client()
        while not stop.is_set():
            got = await reader.xread({self.keys[3]: self.read_from}, block=200, count=self.batch)
            if not got:
                continue
            entries = got[0][1]
            args: list[Any] = [self.token, self.last, len(entries)]
            for i, (entry_id, fields) in enumerate(entries):
                _, act = action_for(fields[b"b"], self.last + 1 + i)
                args += [entry_id, fields[b"n"], fields[b"b"], act]
            try:
                self.last = int(await self.script(keys=self.keys, args=args))
            except redis.exceptions.ResponseError as e:
                raise LeaseLost(f"redis: {e}") from e
            self.read_from = entries[-1][0]

    async def close_run(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()

    async def stop(self) -> None:
        if self.proc:
            await asyncio.to_thread(terminate, [self.proc])
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# NATS JetStream: inbox stream, log stream fenced by expected-last-seq, actions stream


class NatsSystem:
    """NATS JetStream; ``replicas=3`` runs a three-server cluster on loopback (R3 streams).

    Debian's nats-server 2.9 has no per-message fsync (``sync_interval`` came in 2.10): one
    server acknowledges a message once it is written to the OS, and JetStream's durability
    is replication, a message acknowledged once a majority of R3 servers stored it.
    """

    def __init__(self, replicas: int = 1, batch: int = 256) -> None:
        self.name = "nats" if replicas == 1 else f"nats-r{replicas}"
        self.replicas = replicas
        self.batch = batch
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dir = ""
        self.ports: list[int] = []
        self._conns: list[Any] = []

    @classmethod
    async def start(cls, replicas: int = 1) -> NatsSystem:
        binary = shutil.which("nats-server", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        if binary is None:
            raise Skip("no nats-server (apt-get install nats-server)")
        try:
            import nats  # noqa: F401
        except ImportError as e:
            raise Skip("no nats-py (pip install nats-py)") from e
        system = cls(replicas)
        system.dir = tempfile.mkdtemp(prefix="hotline-bench-nats.")
        system.ports = [free_port() for _ in range(replicas)]
        routes = [free_port() for _ in range(replicas)]
        for i, port in enumerate(system.ports):
            argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-js"]
            argv += ["-sd", str(Path(system.dir) / f"s{i}")]
            if replicas > 1:
                argv += ["-n", f"s{i}", "--cluster_name", "brain"]
                argv += ["--cluster", f"nats://127.0.0.1:{routes[i]}"]
                argv += ["--routes", ",".join(f"nats://127.0.0.1:{r}" for r in routes)]
            system.procs.append(spawn(argv))
        for _ in range(200):  # a cluster elects its JetStream meta leader first
            try:
                nc = await system._connect()
                await nc.jetstream().account_info()
                return system
            except Exception:
                await asyncio.sleep(0.05)
        await system.stop()
        raise Skip("nats-server did not answer")

    def server_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def _connect(self, server: int = 0) -> Any:
        import nats

        async def quiet(e: Exception) -> None:
            pass

        nc = await nats.connect(
            f"nats://127.0.0.1:{self.ports[server % len(self.ports)]}",
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
        self._conns.append(nc)
        return nc

    async def open(self, tag: str, producers: int, window: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, StorageType

        self.tag = tag
        nc = await self._connect()
        js = nc.jetstream()
        self.streams = [f"IN_{tag}", f"LOG_{tag}", f"ACT_{tag}"]
        for name, subject in zip(
            self.streams, [f"{tag}.in.*", f"{tag}.log", f"{tag}.act.*"], strict=True
        ):
            await js.add_stream(
                name=name, subjects=[subject], storage=StorageType.FILE, num_replicas=self.replicas
            )
        # The lease: a KV bucket whose entries expire (TTL); create() succeeds for one holder
        # only, update(last=revision) renews it (compare-and-set on the revision).
        kv = await js.create_key_value(
            bucket=f"lease_{tag}", ttl=RUN_LEASE_S, replicas=self.replicas
        )
        await kv.create("brain", uuid.uuid4().hex.encode())
        self.js = js
        self.last = 0
        self.pull = await js.pull_subscribe(
            f"{tag}.in.*",
            durable="brain",
            stream=self.streams[0],
            config=ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=100_000),
        )
        self.senders = []
        for node in range(producers):  # the nodes spread over the servers
            pnc = await self._connect(node)
            self.senders.append(pnc.jetstream())
        # The first request of a connection sets up its reply subscription: do it once here so
        # the pipelined publishes below go out in call order.
        await js.publish(f"{tag}.act.warm", b"{}")
        self.act_warm = 1

    async def send(self, node: int, slot: int, payload: bytes) -> None:
        await self.senders[node].publish(f"{self.tag}.in.{node}", payload)

    async def send_many(self, node: int, payloads: list[bytes]) -> None:
        js = self.senders[node]
        await asyncio.gather(*(js.publish(f"{self.tag}.in.{node}", p) for p in payloads))

    async def listen(self, node: int, on_action: OnAction, stop: asyncio.Event) -> None:
        nc = await self._connect(node)

        async def cb(msg: Any) -> None:
            on_action(msg.data)

        await nc.subscribe(f"{self.tag}.act.{node}", cb=cb)
        await nc.flush()
        await stop.wait()

    async def consume(self, stop: asyncio.Event) -> None:
        import nats.errors
        from nats.js.errors import APIError

        while not stop.is_set():
            try:
                msgs = await self.pull.fetch(self.batch, timeout=0.2)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            base = self.last
            logged = [
                self.js.publish(
                    f"{self.tag}.log",
                    m.data,
                    headers={"Nats-Expected-Last-Sequence": str(base + i)},
                )
                for i, m in enumerate(msgs)
            ]
            try:
                acks = await asyncio.gather(*logged)
            except APIError as e:
                raise LeaseLost(f"nats: {e}") from e
            self.last = acks[-1].seq
            acts = []
            for ack, m in zip(acks, msgs, strict=True):
                node, act = action_for(m.data, ack.seq)
                acts.append(self.js.publish(f"{self.tag}.act.{node}", act))
            await asyncio.gather(*acts)
            await msgs[-1].ack()

    async def close_run(self) -> None:
        for nc in self._conns:
            with contextlib.suppress(Exception):
                await nc.close()
        self._conns.clear()

    async def stop(self) -> None:
        await self.close_run()
        await asyncio.to_thread(terminate, self.procs)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The driver: N paced (or flat-out) producers, one consumer, latency per event


class NodeBatcher:
    """A node's one sender: appends whatever its calls queued meanwhile in one operation."""

    def __init__(self, system: System, node: int, max_batch: int = 256) -> None:
        self.system = system
        self.node = node
        self.max_batch = max_batch
        self.pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def send(self, payload: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((payload, done))
        self.wake.set()
        await done

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch = self.pending[: self.max_batch]
                del self.pending[: self.max_batch]
                try:
                    await self.system.send_many(self.node, [p for p, _ in batch])
                except Exception as e:
                    for _, done in batch:
                        done.set_exception(e)
                    continue
                for _, done in batch:
                    done.set_result(None)


@dataclass
class RunResult:
    system: str
    offered: float | None  # events/s offered; None = flat out
    mode: str = "event"  # "event": one append per event; "batch": a node appends what it has
    sent: int = 0
    received: int = 0
    events_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_cpu_us_per_event: float = 0.0
    client_cpu_us_per_event: float = 0.0
    append_p50_ms: float = 0.0  # a producer's append, send -> acknowledged (durable)
    ordered: bool = True
    error: str = ""
    latencies: list[float] = field(default_factory=list, repr=False)

    def figures(self) -> dict[str, Any]:
        return {
            "offered": self.offered if self.offered is not None else "max",
            "mode": self.mode,
            "sent": self.sent,
            "received": self.received,
            "events_per_s": self.events_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "server_cpu_us_per_event": self.server_cpu_us_per_event,
            "client_cpu_us_per_event": self.client_cpu_us_per_event,
            "append_p50_ms": self.append_p50_ms,
            "ordered": self.ordered,
            **({"error": self.error} if self.error else {}),
        }


async def run_one(
    system: System,
    *,
    rate: float | None,
    count: int,
    time_limit: float,
    producers: int = 3,
    window: int = 8,
    node_batch: bool = False,
) -> RunResult:
    """Offer ``count`` events (at ``rate`` events/s in all, or flat out), at most ``time_limit`` s."""
    tag = uuid.uuid4().hex[:10]
    await system.open(tag, producers, window)
    result = RunResult(system=system.name, offered=rate, mode="batch" if node_batch else "event")
    started: dict[tuple[int, int], float] = {}
    seq_of: dict[tuple[int, int], int] = {}
    sent_at: dict[tuple[int, int], float] = {}  # when the append was sent
    acked_at: dict[tuple[int, int], float] = {}  # when the system acknowledged it
    latencies: list[float] = []
    done = asyncio.Event()
    last_recv = 0.0
    expected = count

    def on_action(raw: bytes) -> None:
        nonlocal last_recv
        now = time.perf_counter()
        act = json.loads(raw)
        key = (int(act["node"]), int(act["k"]))
        t0 = started.get(key)
        if t0 is None or key in seq_of:
            result.ordered = False  # an action for an event not sent, or twice
            return
        seq_of[key] = int(act["seq"])
        latencies.append(now - t0)
        last_recv = now
        if len(latencies) >= expected:
            done.set()

    stop = asyncio.Event()
    listeners = [asyncio.create_task(system.listen(n, on_action, stop)) for n in range(producers)]
    consumer = asyncio.create_task(system.consume(stop))
    await asyncio.sleep(0.2)  # the listeners subscribe
    cpu0 = cpu_seconds(system.server_pids())
    client0 = time.process_time()
    per_producer = [
        count // producers + (1 if n < count % producers else 0) for n in range(producers)
    ]
    t_start = time.perf_counter()
    deadline = t_start + time_limit

    async def producer(node: int) -> None:
        n = per_producer[node]
        next_k = 0
        interval = producers / rate if rate else 0.0
        offset = node * interval / producers if rate else 0.0

        async def slot_worker(slot: int) -> None:
            nonlocal next_k
            while next_k < n:
                k = next_k
                next_k += 1
                if rate:
                    due = t_start + offset + k * interval
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    started[node, k] = due  # from the schedule: a stall counts
                else:
                    started[node, k] = time.perf_counter()
                if time.perf_counter() > deadline:
                    started.pop((node, k), None)
                    return
                sent_at[node, k] = time.perf_counter()
                if batchers:
                    await batchers[node].send(event_body(node, k))
                else:
                    await system.send(node, slot, event_body(node, k))
                acked_at[node, k] = time.perf_counter()
                result.sent += 1

        await asyncio.gather(*(slot_worker(s) for s in range(window)))

    batchers = [NodeBatcher(system, n) for n in range(producers)] if node_batch else []
    producing = asyncio.gather(*(producer(n) for n in range(producers)))
    try:
        await asyncio.wait_for(producing, timeout=time_limit + 5)
    except TimeoutError:
        result.error = "producers did not finish in time"
    expected = result.sent
    if len(latencies) >= expected:
        done.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=10)
    stop.set()
    if consumer.done() and consumer.exception() is not None:
        result.error = repr(consumer.exception())
    cpu1 = cpu_seconds(system.server_pids())
    client1 = time.process_time()
    for batcher in batchers:
        batcher.task.cancel()
    tasks = [consumer, *listeners, *(b.task for b in batchers)]
    _, pending = await asyncio.wait(tasks, timeout=2)
    for task in pending:  # PostgreSQL's notifies() waits on its socket: cancel it
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await system.close_run()

    result.received = len(latencies)
    if result.received < result.sent and not result.error:
        result.error = f"{result.sent - result.received} actions not received within 10 s"
    result.ordered = result.ordered and in_order(seq_of, sent_at, acked_at)
    if latencies:
        lat = sorted(latencies)
        result.events_per_s = round(result.received / max(last_recv - t_start, 1e-9), 1)
        result.p50_ms = round(statistics.median(lat) * 1000, 2)
        result.p99_ms = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2)
        result.max_ms = round(lat[-1] * 1000, 2)
        result.server_cpu_us_per_event = round((cpu1 - cpu0) / result.received * 1e6, 1)
        result.client_cpu_us_per_event = round((client1 - client0) / result.received * 1e6, 1)
        result.latencies = lat
        appends = [acked_at[key] - sent_at[key] for key in acked_at]
        result.append_p50_ms = round(statistics.median(appends) * 1000, 2)
    return result


def in_order(
    seq_of: dict[tuple[int, int], int],
    sent_at: dict[tuple[int, int], float],
    acked_at: dict[tuple[int, int], float],
) -> bool:
    """The log's sequence numbers are 1..n, and an event acknowledged before another was sent
    (by any node) has the smaller one: the log's order is the order of acknowledged appends."""
    seqs = sorted(seq_of.values())
    if seqs != list(range(1, len(seqs) + 1)):
        return False
    by_ack = sorted((acked_at[key], seq) for key, seq in seq_of.items() if key in acked_at)
    ack_times = [t for t, _ in by_ack]
    prefix_max: list[int] = []
    for _, seq in by_ack:
        prefix_max.append(max(seq, prefix_max[-1]) if prefix_max else seq)
    for key, seq in seq_of.items():
        before = bisect.bisect_left(ack_times, sent_at[key])  # acknowledged before this was sent
        if before and prefix_max[before - 1] >= seq:
            return False
    return True


# --------------------------------------------------------------------------------------------


FACTS: dict[str, dict[str, Any]] = {
    "postgres": {
        "lease": "lease row renewed with now() (or pg_try_advisory_lock on a session); fence = the row's epoch checked FOR SHARE in the append's transaction",
        "already_required": True,
        "packages": ["postgresql-15", "postgresql-client-15", "postgresql-common", "libpq5"],
    },
    "redis": {
        "lease": "SET NX PX + a Lua compare on renew; no fencing token of its own (INCR one); lost on async-replica failover; clock/pause caveats (Redlock debate)",
        "already_required": False,
        "packages": ["redis-server", "redis-tools", "liblzf1", "libjemalloc2"],
    },
    "nats": {
        "lease": "KV create()/update(last=revision) with a bucket TTL; fence = Nats-Expected-Last-Sequence on the log stream",
        "already_required": False,
        "packages": ["nats-server"],
    },
}


def steps(args: argparse.Namespace) -> Iterator[tuple[str, float | None, int]]:
    for mode in args.modes:
        for rate in args.rates:
            yield mode, rate, max(1, int(rate * args.seconds))
        yield mode, None, args.max_count


MAKERS: dict[str, Callable[[], Awaitable[System]]] = {
    "postgres": PostgresSystem.start,
    "postgres-notify-in-tx": lambda: PostgresSystem.start(notify_in_tx=True),
    "redis-always": lambda: RedisSystem.start("always"),
    "redis-everysec": lambda: RedisSystem.start("everysec"),
    "nats": NatsSystem.start,
    "nats-r3": lambda: NatsSystem.start(replicas=3),
}


def summarize(runs: list[RunResult]) -> dict[str, Any]:
    """The median over the repeats of one step (and each repeat's figures)."""

    def med(attr: str) -> float:
        return round(statistics.median(getattr(r, attr) for r in runs), 2)

    return {
        "offered": runs[0].offered if runs[0].offered is not None else "max",
        "mode": runs[0].mode,
        "events_per_s": med("events_per_s"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "server_cpu_us_per_event": med("server_cpu_us_per_event"),
        "client_cpu_us_per_event": med("client_cpu_us_per_event"),
        "append_p50_ms": med("append_p50_ms"),
        "ordered": all(r.ordered for r in runs),
        "complete": all(r.received == r.sent and not r.error for r in runs),
        "repeats": [r.figures() for r in runs],
    }


def report(results: dict[str, dict[str, Any]]) -> None:
    base = results.get("postgres")
    print()
    print("median of the repeats; ratio = this system / postgres at the same step")
    print(f"{'system':21} {'mode':5} {'offered':>7} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'srv µs/ev':>9}  ratio events/s, p50, p99")  # fmt: skip
    for name, res in results.items():
        for i, step in enumerate(res["steps"]):
            ratio = ""
            if base and name != "postgres" and i < len(base["steps"]):
                b = base["steps"][i]
                if b["events_per_s"] and b["p50_ms"] and b["p99_ms"]:
                    ratio = (
                        f"x{step['events_per_s'] / b['events_per_s']:.2f}, "
                        f"x{step['p50_ms'] / b['p50_ms']:.2f}, x{step['p99_ms'] / b['p99_ms']:.2f}"
                    )
            offered = step["offered"] if step["offered"] == "max" else f"{step['offered']:.0f}"
            flags = ("" if step["ordered"] else " OUT OF ORDER") + (
                "" if step["complete"] else " INCOMPLETE"
            )
            print(
                f"{name:21} {step['mode']:5} {offered:>7} {step['events_per_s']:9.1f} {step['p50_ms']:8.2f} "
                f"{step['p99_ms']:8.2f} {step['server_cpu_us_per_event']:9.1f}  {ratio}{flags}"
            )
    print()
    for name, res in results.items():
        print(
            f"{name:21} server memory (PSS) {res['server_pss_mib']:6.1f} MiB, installed "
            f"{res['install_mib']:6.1f} MiB, already required: {res['already_required']}"
        )
        print(f"{'':21} lease: {res['lease']}")


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    systems: list[System] = []
    skipped: dict[str, str] = {}
    load_before = os.getloadavg()
    try:
        for name in args.systems:
            try:
                systems.append(await MAKERS[name]())
            except Skip as e:
                print(f"{name}: skipped: {e}", flush=True)
                skipped[name] = str(e)
        for system in systems:  # warm-up, not reported: connections, plans, files
            await run_one(system, rate=None, count=300, time_limit=20, window=args.window)
        runs: dict[str, list[list[RunResult]]] = {s.name: [] for s in systems}
        plan = list(steps(args))
        for i, (mode, rate, count) in enumerate(plan):
            label = f"{rate:.0f}/s" if rate else "max"
            print(
                f"step {label}, {mode} appends ({count} events, at most {args.time_limit:.0f} s):",
                flush=True,
            )
            step_runs: dict[str, list[RunResult]] = {s.name: [] for s in systems}
            for rep in range(args.repeat):
                # Interleaved (each system once per repeat, rotating the order) so that the
                # machine's other work falls on every system alike.
                shift = (i + rep) % max(1, len(systems))
                for system in systems[shift:] + systems[:shift]:
                    r = await run_one(
                        system,
                        rate=rate,
                        count=count,
                        time_limit=args.time_limit,
                        window=args.window,
                        node_batch=mode == "batch",
                    )
                    step_runs[system.name].append(r)
                    print(
                        f"  {system.name:21} {r.received:6d}/{r.sent:<6d} "
                        f"{r.events_per_s:8.1f}/s  p50 {r.p50_ms:8.2f} ms  p99 {r.p99_ms:8.2f} ms"
                        f"  CPU µs/event server {r.server_cpu_us_per_event:6.1f} "
                        f"clients {r.client_cpu_us_per_event:6.1f}"
                        + ("" if r.ordered else "  OUT OF ORDER")
                        + (f"  [{r.error}]" if r.error else ""),
                        flush=True,
                    )
            for name, rs in step_runs.items():
                runs[name].append(rs)
        results: dict[str, dict[str, Any]] = {}
        for system in systems:
            facts = FACTS[system.name.split("-")[0]]
            results[system.name] = {
                "steps": [summarize(rs) for rs in runs[system.name]],
                "server_pss_mib": round(rss_pss_kib(system.server_pids()) / 1024, 1),
                "install_mib": round(installed_kib(facts["packages"]) / 1024, 1),
                "lease": facts["lease"],
                "already_required": facts["already_required"],
            }
    finally:
        for system in systems:
            await system.stop()
    report(results)
    return {
        "bench": "brain_log",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cpu, {platform.platform()}, Python {platform.python_version()}",
        "loop": LOOP,
        "load_avg_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "producers": 3,
        "window": args.window,
        "modes": args.modes,
        "repeat": args.repeat,
        "event_bytes": EVENT_BYTES,
        "results": results,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--systems", nargs="+", default=list(MAKERS), choices=list(MAKERS))
    parser.add_argument("--rates", nargs="*", type=float, default=[500.0, 2000.0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each paced step")
    parser.add_argument("--max-count", type=int, default=10_000, help="events of the flat-out step")
    parser.add_argument("--time-limit", type=float, default=20.0, help="bound of each step, s")
    parser.add_argument("--window", type=int, default=8, help="appends in flight per producer")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each step per system")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["event"],
        choices=["event", "batch"],
        help="event: each event its own append (window in flight per node); batch: a node's one "
        "sender appends whatever its calls queued meanwhile in one operation",
    )
    args = parser.parse_args(argv)
    out = run(amain(args))
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
