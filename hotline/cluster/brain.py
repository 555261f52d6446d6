"""The routing brain: one active ACD engine with a hot standby, over a durable ordered log.

Every node sends its ACD events to one engine, so that a routing decision sees every free agent
and no agent is ever given two calls; that engine must survive losing its machine. PostgreSQL
(already the shared record) is both the message system and the log:

``acd_inbox(id, node, key, body)``
    Nodes INSERT their events (``acd.codec`` JSON) with their node id and a key unique to the
    event, and ``NOTIFY`` the active brain (:class:`ClusterAcd`). A node that lost its
    connection while committing sends the batch again; the key makes that harmless (the inbox
    refuses the second copy, the active drops an event whose key is already in the log).
``acd_input(seq, epoch, at, node, key, body)``
    The engine's input, in the order the active handled it; only the active appends. Replaying
    it from ``acd_origin`` (the first configuration, the RNG seed, the start time) into a fresh
    :class:`~acd.engine.AcdEngine` gives exactly the same decisions: the engine is deterministic,
    and its own timers are logged too, as :class:`~acd.events.Tick` entries.
``acd_actions(seq, idx, node, body)``
    Each entry's actions, id ``(seq, idx)``, addressed to the node holding the call (the node
    whose ``CallArrived`` it was; agent-only actions go to the node the agent's last event came
    from, or to ``*``, every node). Nodes carry out theirs once, in id order.
``acd_lease(holder, epoch, expires_at)``
    Who is active. Taken and renewed on the database's clock (``now()``); a takeover raises the
    epoch.

The active moves a batch of inbox rows into the log in **one transaction**: it locks the lease
row (``FOR SHARE``, only if it still holds that epoch and it has not expired), deletes the rows
from the inbox, lets its engine handle them, and inserts the log entries and their actions. So
an event is in the inbox or in the log, never both or neither; an entry never exists without its
actions; and after a standby has taken the lease (an ``UPDATE`` of that row, which waits for any
such transaction in flight and makes every later one find no row) nothing more can be appended
or published by the old active: the database fences it, whatever it believes. The active also
steps down by itself when it could not renew the lease in time (before the lease can have
expired by the database's clock), and discards its engine when a transaction's outcome is
unknown; as a standby it rebuilds it from the log.

The standby tails the log (``LISTEN`` + catch-up by ``seq``) and replays every entry into its own
engine; when the lease has lapsed it takes it (epoch + 1), reads the log to its end and carries
on from there: no call is offered twice (the offers are in the log's actions), waiting callers
keep their place (the queue is the replayed engine's).

Not done yet: log compaction (an engine snapshot every N entries, so a new standby need not
replay from the origin), and wiring into ``hotline serve --cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

import psycopg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from acd.actions import (
    Action,
    AnnouncePosition,
    BridgeCall,
    CancelOffer,
    OfferCall,
    Overflow,
    PauseAgent,
    RefuseAnswer,
    RejectCall,
    SendToVoicemail,
)
from acd.codec import (
    CodecError,
    action_from_dict,
    action_to_dict,
    config_to_table,
    encode_event,
    event_from_dict,
)
from acd.config import AcdConfig, ConfigError
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReady,
    CallAbandoned,
    CallArrived,
    CallEnded,
    Event,
    OfferAnswered,
    OfferFailed,
    OfferRejected,
    OfferTimedOut,
    Tick,
    WrapUpDone,
    WrapUpExtended,
)
from acd.model import LogRecord

_log = structlog.get_logger("hotline.cluster.brain")

EVERY_NODE = "*"
"""The ``node`` of an action meant for every node (an agent whose node is not known)."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """Where the brain's tables are and how long a lease lasts."""

    dsn: str
    """PostgreSQL connection string (libpq form)."""
    schema: str = "public"
    """Schema of the tables (its name also prefixes the ``NOTIFY`` channels)."""
    lease_seconds: float = 3.0
    """How long a lease lasts without renewal; the active renews every third of it. A takeover
    after a crash of the active takes between 2/3 and 4/3 of a lease (what was left of the
    lease, plus up to a third of a lease until the standby's next try)."""
    batch: int = 500
    """At most this many inbox rows per log transaction."""
    node_timeout: float = 10.0
    """A node whose heartbeat (every third of a lease) is older than this is lost: the active
    brain ends its calls in the engine and hands its cases and queued work to its own node."""

    def __post_init__(self) -> None:
        if not _SCHEMA_NAME.match(self.schema):
            raise ValueError(f"cluster schema: expected a lower-case SQL name, got {self.schema!r}")
        if not self.lease_seconds > 0:
            raise ValueError(f"cluster lease_seconds: expected > 0, got {self.lease_seconds}")

    @property
    def inbox_channel(self) -> str:
        return f"{self.schema}_acd_inbox"

    @property
    def log_channel(self) -> str:
        return f"{self.schema}_acd_log"


SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS acd_inbox (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    key text NOT NULL UNIQUE,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS acd_origin (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    config jsonb NOT NULL,
    seed bigint NOT NULL,
    start double precision NOT NULL,
    created_by text NOT NULL
);
CREATE TABLE IF NOT EXISTS acd_input (
    seq bigint PRIMARY KEY,
    epoch bigint NOT NULL,
    at double precision NOT NULL,
    node text,
    key text UNIQUE,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS acd_actions (
    seq bigint NOT NULL,
    idx integer NOT NULL,
    node text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (seq, idx)
);
CREATE INDEX IF NOT EXISTS acd_actions_node ON acd_actions (node, seq, idx);
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node text PRIMARY KEY,
    seen_at timestamptz NOT NULL,
    lost_at timestamptz
);
CREATE TABLE IF NOT EXISTS acd_lease (
    name text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
"""


async def connect(
    settings: ClusterSettings, **server_settings: str | int
) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection with the cluster's schema first on its search path."""
    opts = [f"-c search_path={settings.schema}"]
    opts += [f"-c {k}={v}" for k, v in server_settings.items()]
    return await psycopg.AsyncConnection.connect(
        settings.dsn,
        autocommit=True,
        options=" ".join(opts),
        connect_timeout=max(2, round(settings.lease_seconds)),
    )


async def create_schema(settings: ClusterSettings) -> None:
    """Create the schema and the brain's tables (idempotent)."""
    conn = await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True)
    try:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtext(%s))", (f"hotline-cluster-{settings.schema}",)
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {settings.schema}")
        await conn.execute(f"SET search_path TO {settings.schema}")
        await conn.execute(SCHEMA_SQL)
    finally:
        await conn.close()


def _kill(conn: psycopg.AsyncConnection[Any] | None) -> None:
    """Shut the connection's socket down at once (a hung peer must not hold us up); the tasks
    waiting on it fail with a connection error instead of waiting for a cancellation."""
    if conn is None or conn.closed:
        return
    try:
        fd = os.dup(conn.pgconn.socket)
    except (OSError, psycopg.Error):
        return
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


async def _close(conn: psycopg.AsyncConnection[Any] | None) -> None:
    if conn is None or conn.closed:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 2.0)


async def _wait_notify(conn: psycopg.AsyncConnection[Any], seconds: float) -> int | None:
    """Until a notification on a channel ``conn`` listens to (or ``seconds`` passed); the
    highest log ``seq`` announced, if any."""
    latest: int | None = None
    async for n in conn.notifies(timeout=max(0.0, seconds), stop_after=1):
        if n.payload.isdigit():
            latest = max(latest or 0, int(n.payload))
    return latest


# --- the engine replayed from the log ----------------------------------------------------------


class Origin(NamedTuple):
    """What the engine is built from (``acd_origin``)."""

    config: AcdConfig
    seed: int
    start: float


class Routed(NamedTuple):
    """One published action: its id ``(seq, idx)``, the node it is for, the action."""

    seq: int
    idx: int
    node: str
    action: Action


_AGENT_EVENTS = (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentReady,
    AgentPaused,
    OfferAnswered,
    OfferRejected,
    OfferTimedOut,
    OfferFailed,
    WrapUpDone,
    WrapUpExtended,
)


class Replica:
    """An :class:`AcdEngine` and the call/agent -> node map, built only from the log, so the
    active and every standby or node that applied the same entries agree on both."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.engine = AcdEngine(origin.config, rng=random.Random(origin.seed), now=origin.start)
        self.seq = 0
        """The last entry applied."""
        self._call_node: dict[str, str] = {}
        self._agent_node: dict[str, str] = {}

    def apply(self, seq: int, node: str | None, event: Event) -> list[Routed]:
        """Handle entry ``seq`` (the next one) and address its actions."""
        if seq != self.seq + 1:
            raise ValueError(f"log entry {seq} applied after {self.seq}")
        self.seq = seq
        if node is not None:
            if isinstance(event, CallArrived):
                self._call_node[event.call_id] = node
            elif isinstance(event, _AGENT_EVENTS):
                self._agent_node[event.agent_id] = node
        actions = self.engine.handle(event)
        out = [Routed(seq, i, self._target(a), a) for i, a in enumerate(actions)]
        if isinstance(event, CallEnded | CallAbandoned):
            self._call_node.pop(event.call_id, None)
        for a in actions:
            if isinstance(a, RejectCall):
                self._call_node.pop(a.call_id, None)
        return out

    def _target(self, action: Action) -> str:
        match action:
            case (
                OfferCall()
                | CancelOffer()
                | BridgeCall()
                | RefuseAnswer()
                | SendToVoicemail()
                | Overflow()
                | RejectCall()
                | AnnouncePosition()
            ):
                return self._call_node.get(action.call_id, EVERY_NODE)
            case PauseAgent():
                return self._agent_node.get(action.agent_id, EVERY_NODE)
        return EVERY_NODE  # pragma: no cover - every action type is matched above

    def call_node(self, call_id: str) -> str | None:
        """The node holding ``call_id`` (while the engine knows the call)."""
        return self._call_node.get(call_id)

    def calls_of(self, node: str) -> list[str]:
        """The calls (and queued work) the engine knows that ``node`` holds, oldest first."""
        return [c for c, n in self._call_node.items() if n == node]


async def load_origin(conn: psycopg.AsyncConnection[Any]) -> Origin | None:
    cur = await conn.execute("SELECT config, seed, start FROM acd_origin WHERE id = 1")
    row = await cur.fetchone()
    if row is None:
        return None
    return Origin(AcdConfig.from_dict(row[0]), int(row[1]), float(row[2]))


async def read_log(
    conn: psycopg.AsyncConnection[Any], after: int, limit: int = 5000
) -> list[tuple[int, int, str | None, Event]]:
    """Log entries after ``after``: ``(seq, epoch, node, event)``."""
    cur = await conn.execute(
        "SELECT seq, epoch, node, body FROM acd_input WHERE seq > %s ORDER BY seq LIMIT %s",
        (after, limit),
    )
    return [(s, e, n, event_from_dict(b)) for s, e, n, b in await cur.fetchall()]


async def read_actions(
    conn: psycopg.AsyncConnection[Any], after: tuple[int, int], nodes: Sequence[str] | None = None
) -> list[Routed]:
    """Published actions after id ``after`` (for ``nodes`` only when given), in id order."""
    if nodes is None:
        cur = await conn.execute(
            "SELECT seq, idx, node, body FROM acd_actions WHERE (seq, idx) > (%s, %s)"
            " ORDER BY seq, idx",
            after,
        )
    else:
        cur = await conn.execute(
            "SELECT seq, idx, node, body FROM acd_actions WHERE node = ANY(%s)"
            " AND (seq, idx) > (%s, %s) ORDER BY seq, idx",
            (list(nodes), *after),
        )
    return [Routed(s, i, n, action_from_dict(b)) for s, i, n, b in await cur.fetchall()]


async def catch_up(conn: psycopg.AsyncConnection[Any], replica: Replica) -> list[Routed]:
    """Apply every log entry after ``replica.seq``; return their actions."""
    out: list[Routed] = []
    limit = 5000
    while True:
        entries = await read_log(conn, replica.seq, limit)
        for seq, _, node, event in entries:
            out += replica.apply(seq, node, event)
        if len(entries) < limit:
            return out


# --- metrics -----------------------------------------------------------------------------------


class BrainMetrics:
    """The brain's Prometheus metrics (on the registry given, or one of their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.role = Gauge(
            "hotline_acd_brain_active",
            "1 while this brain is the active ACD engine, 0 as a standby",
            ["node"],
            registry=self.registry,
        )
        self.applied = Gauge(
            "hotline_acd_brain_log_seq",
            "The last engine log entry this brain applied",
            ["node"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "hotline_acd_brain_lag_entries",
            "Log entries the active had announced beyond what this standby had applied, at its"
            " last wake-up (it then catches up)",
            ["node"],
            registry=self.registry,
        )
        self.events = Counter(
            "hotline_acd_brain_events",
            "Events handled as the active brain (rate() gives events per second)",
            ["node"],
            registry=self.registry,
        )
        self.nodes_lost = Counter(
            "hotline_acd_brain_nodes_lost",
            "Nodes this brain, active, found lost (heartbeat older than node_timeout)",
            ["node"],
            registry=self.registry,
        )
        self.takeovers = Counter(
            "hotline_acd_brain_takeovers",
            "Times this brain took the lease",
            ["node"],
            registry=self.registry,
        )
        self.stepdowns = Counter(
            "hotline_acd_brain_stepdowns",
            "Times this brain stopped being active (lease lost, late, or connection lost)",
            ["node"],
            registry=self.registry,
        )


# --- the brain ---------------------------------------------------------------------------------


class Role(Enum):
    STOPPED = "stopped"
    STANDBY = "standby"
    ACTIVE = "active"


class StepDown(Exception):
    """The active must stop: lease lost, not renewed in time, or fenced by the database."""


class Brain:
    """Runs on each brain node: a standby that replays the log, the active once it holds the
    lease. ``config`` and ``seed`` are used only by the very first active (they go into
    ``acd_origin``); afterwards every brain builds its engine from the recorded origin."""

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        node_id: str,
        config: AcdConfig,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        metrics: BrainMetrics | None = None,
        on_node_lost: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self.on_node_lost = on_node_lost
        """Called by the active brain once per node it finds lost (no heartbeat for
        ``node_timeout``), after that node's calls were ended in the engine: the node running
        this brain closes the lost node's cases and takes over its queued work."""
        self._lost: set[str] = set()
        self._config = config
        self._seed = seed
        self._clock = clock
        self.metrics = metrics if metrics is not None else BrainMetrics()
        self.role = Role.STOPPED
        self.epoch = 0
        """The lease epoch while active (the last one held otherwise)."""
        self.replica: Replica | None = None
        """The engine as of the log entries applied (None until the origin exists, and after a
        step-down that left it unsure, until rebuilt)."""
        self._valid_until = 0.0
        self._dirty = False
        self._conns: list[psycopg.AsyncConnection[Any]] = []
        self.role_changed = asyncio.Event()
        """Set at each role change (tests and supervisors wait on it; clear it yourself)."""
        self._log = _log.bind(node=node_id)
        self.metrics.role.labels(node_id).set(0)

    @property
    def engine(self) -> AcdEngine | None:
        return self.replica.engine if self.replica is not None else None

    def _set_role(self, role: Role) -> None:
        if role is self.role:
            return
        self.role = role
        self.metrics.role.labels(self.node_id).set(1 if role is Role.ACTIVE else 0)
        self._log.info("acd brain role", role=role.value, epoch=self.epoch)
        self.role_changed.set()

    async def run(self) -> None:
        """Run until cancelled: follow, take over, lead; reconnect after any failure."""
        backoff = 0.1
        try:
            while True:
                try:
                    await self._session()
                except Exception as exc:
                    if not isinstance(exc, psycopg.Error | OSError | StepDown):
                        self._log.exception("acd brain failed")
                    self._set_role(Role.STANDBY)
                    if self._dirty:
                        self.replica = None  # an append of unknown outcome: rebuild from the log
                        self._dirty = False
                    self._log.warning("acd brain session ended", error=repr(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.settings.lease_seconds / 3)
                else:  # pragma: no cover - _session only returns by raising
                    backoff = 0.1
        finally:
            self.role = Role.STOPPED
            self.metrics.role.labels(self.node_id).set(0)
            for conn in self._conns:
                _kill(conn)
            for conn in self._conns:
                await _close(conn)
            self._conns = []

    def kill_connections(self) -> None:
        """Shut this brain's database sockets down (as a crash of the link would)."""
        for conn in self._conns:
            _kill(conn)

    async def _session(self) -> None:
        s = self.settings
        lease_ms = max(1000, int(s.lease_seconds * 1000))
        work = await connect(s, idle_in_transaction_session_timeout=lease_ms)
        self._conns = [work]
        try:
            lease = await connect(
                s, lock_timeout=lease_ms // 3, statement_timeout=max(500, lease_ms // 2)
            )
        except BaseException:
            await _close(work)
            raise
        self._conns = [work, lease]
        try:
            await work.execute(f"LISTEN {s.log_channel}")
            self._set_role(Role.STANDBY)
            await self._follow(work, lease)
            await work.execute(f"UNLISTEN {s.log_channel}")
            await work.execute(f"LISTEN {s.inbox_channel}")
            await self._lead(work, lease)
        finally:
            for conn in (work, lease):
                _kill(conn)
            for conn in (work, lease):
                await _close(conn)
            self._conns = []

    # --- standby ---

    async def _catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.replica is None:
            origin = await load_origin(conn)
            if origin is None:
                return
            self.replica = Replica(origin)
        await catch_up(conn, self.replica)
        self.metrics.applied.labels(self.node_id).set(self.replica.seq)
        self.metrics.lag.labels(self.node_id).set(0)

    async def _follow(
        self, work: psycopg.AsyncConnection[Any], lease: psycopg.AsyncConnection[Any]
    ) -> None:
        """Replay the log until the lease is ours."""
        poll = self.settings.lease_seconds / 3
        while True:
            await self._catch_up(work)
            if await self._try_take(lease):
                break
            announced = await _wait_notify(work, poll)
            if announced is not None and self.replica is not None:
                behind = max(0, announced - self.replica.seq)
                self.metrics.lag.labels(self.node_id).set(behind)
        # ours now: nothing more can be appended by anyone else
        await self._ensure_origin(work)
        await self._catch_up(work)
        assert self.replica is not None
        self.metrics.takeovers.labels(self.node_id).inc()
        self._log.info("acd brain took the lease", epoch=self.epoch, seq=self.replica.seq)

    async def _try_take(self, lease: psycopg.AsyncConnection[Any]) -> bool:
        t0 = time.monotonic()
        try:
            cur = await lease.execute(
                "INSERT INTO acd_lease AS l (name, holder, epoch, expires_at)"
                " VALUES ('acd', %s, 1, now() + make_interval(secs => %s))"
                " ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,"
                " epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at"
                " WHERE l.expires_at < now() RETURNING epoch",
                (self.node_id, self.settings.lease_seconds),
            )
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
            return False  # an append of the old active in flight: try again shortly
        row = await cur.fetchone()
        if row is None:
            return False
        self.epoch = int(row[0])
        self._valid_until = t0 + self._safe_lease()
        return True

    def _safe_lease(self) -> float:
        """How long after sending a (successful) renewal the lease is surely still ours on the
        database's clock: the lease, less a margin for clock rate and scheduling."""
        return self.settings.lease_seconds * 0.8

    async def _ensure_origin(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.replica is not None:
            return
        await conn.execute(
            "INSERT INTO acd_origin (id, config, seed, start, created_by)"
            " VALUES (1, %s::jsonb, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (json.dumps(config_to_table(self._config)), self._seed, self._clock(), self.node_id),
        )
        await self._catch_up(conn)

    # --- active ---

    async def _lead(
        self, work: psycopg.AsyncConnection[Any], lease: psycopg.AsyncConnection[Any]
    ) -> None:
        self._set_role(Role.ACTIVE)
        renew = asyncio.create_task(self._renew(lease), name=f"acd-lease-{self.node_id}")
        main = asyncio.create_task(self._handle_loop(work), name=f"acd-active-{self.node_id}")
        tasks = {renew, main}
        try:
            while True:
                left = self._valid_until - time.monotonic()
                if left <= 0:
                    raise StepDown("lease not renewed in time")
                done, _ = await asyncio.wait(
                    tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()  # raises the task's error
                    raise StepDown(f"{task.get_name()} ended")
        finally:
            self._valid_until = 0.0  # the handle loop checks it before every append
            self.metrics.stepdowns.labels(self.node_id).inc()
            self._set_role(Role.STANDBY)
            for conn in (work, lease):
                _kill(conn)
            await asyncio.wait(tasks, timeout=1.0)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: reported by the step-down log line

    async def _renew(self, lease: psycopg.AsyncConnection[Any]) -> None:
        every = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            t0 = time.monotonic()
            try:
                cur = await lease.execute(
                    "UPDATE acd_lease SET expires_at = now() + make_interval(secs => %s)"
                    " WHERE name = 'acd' AND holder = %s AND epoch = %s AND expires_at > now()"
                    " RETURNING epoch",
                    (self.settings.lease_seconds, self.node_id, self.epoch),
                )
            except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
                continue  # late: the watchdog in _lead steps down if it stays late
            if await cur.fetchone() is None:
                raise StepDown("lease taken over")
            self._valid_until = t0 + self._safe_lease()

    async def _handle_loop(self, work: psycopg.AsyncConnection[Any]) -> None:
        poll = self.settings.lease_seconds / 6
        check_every = self.settings.lease_seconds / 3
        next_check = time.monotonic()
        while True:
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + check_every
                await self._check_nodes(work)
            moved = await self._append(work)
            if moved:
                continue
            assert self.replica is not None
            deadline = self.replica.engine.next_deadline()
            wait = poll if deadline is None else min(poll, deadline - self._clock())
            if wait > 0:
                await _wait_notify(work, wait)

    async def _check_nodes(self, work: psycopg.AsyncConnection[Any]) -> None:
        """Find the nodes whose heartbeat stopped; end their calls in the engine (through the
        inbox, so the log has it), once per call, and tell this brain's node."""
        replica = self.replica
        assert replica is not None
        cur = await work.execute(
            "UPDATE cluster_nodes SET lost_at = now() WHERE lost_at IS NULL AND node <> %s"
            " AND seen_at < now() - make_interval(secs => %s) RETURNING node",
            (self.node_id, self.settings.node_timeout),
        )
        newly = [str(r[0]) for r in await cur.fetchall()]
        cur = await work.execute("SELECT node FROM cluster_nodes WHERE lost_at IS NOT NULL")
        self._lost = {str(r[0]) for r in await cur.fetchall()}
        ended: list[tuple[str, str, str]] = []
        now = self._clock()
        for node in sorted(self._lost):
            for call_id in replica.calls_of(node):  # stragglers too: arrived after the loss
                body = encode_event(CallEnded(at=now, call_id=call_id))
                ended.append((node, f"lost:{node}:{call_id}", body))
        if ended:
            async with work.transaction(), work.cursor() as c:
                await c.executemany(
                    "INSERT INTO acd_inbox (node, key, body) VALUES (%s, %s, %s::jsonb)"
                    " ON CONFLICT (key) DO NOTHING",
                    ended,
                )
        for node in newly:
            calls = [k for n, k, _ in ended if n == node]
            self._log.warning("cluster_node_lost", lost=node, calls_ended=len(calls))
            self.metrics.nodes_lost.labels(self.node_id).inc()
            if self.on_node_lost is not None:
                try:
                    await self.on_node_lost(node)
                except Exception:
                    self._log.exception("cluster node takeover failed", lost=node)

    async def _append(self, work: psycopg.AsyncConnection[Any]) -> int:
        """Move one batch of inbox rows (or one due tick) into the log, fenced by the lease."""
        replica = self.replica
        assert replica is not None
        if time.monotonic() >= self._valid_until:
            raise StepDown("lease not renewed in time")
        async with work.transaction():
            cur = await work.execute(
                "SELECT 1 FROM acd_lease WHERE name = 'acd' AND holder = %s AND epoch = %s"
                " AND expires_at > now() FOR SHARE",
                (self.node_id, self.epoch),
            )
            if await cur.fetchone() is None:
                raise StepDown("fenced: the lease has moved on")
            # ``logged``: a copy of an event already in the log (a node sent its batch again
            # because it never heard whether the first commit succeeded)
            cur = await work.execute(
                "DELETE FROM acd_inbox WHERE id IN"
                " (SELECT id FROM acd_inbox ORDER BY id LIMIT %s) RETURNING id, node, key, body,"
                " EXISTS (SELECT 1 FROM acd_input i WHERE i.key = acd_inbox.key) AS logged",
                (self.settings.batch,),
            )
            rows = sorted(await cur.fetchall(), key=lambda r: int(r[0]))
            events: list[tuple[str | None, str | None, Event]] = []
            for row_id, node, key, body, logged in rows:
                if logged:
                    continue
                try:
                    events.append((node, key, event_from_dict(body)))
                except (CodecError, ConfigError, TypeError, KeyError) as exc:
                    self._log.warning(
                        "acd inbox row dropped", row=row_id, from_node=node, error=str(exc)
                    )
            if not events:
                deadline = replica.engine.next_deadline()
                now = self._clock()
                if deadline is None or deadline > now:
                    return len(rows)
                events.append((None, None, Tick(at=max(now, deadline))))
            inputs: list[tuple[Any, ...]] = []
            outputs: list[tuple[Any, ...]] = []
            self._dirty = True
            for node, key, event in events:
                seq = replica.seq + 1
                routed = replica.apply(seq, node, event)
                inputs.append((seq, self.epoch, replica.engine.now, node, key, encode_event(event)))
                outputs += [
                    (r.seq, r.idx, r.node, json.dumps(action_to_dict(r.action))) for r in routed
                ]
            async with work.cursor() as c:
                await c.executemany(
                    "INSERT INTO acd_input (seq, epoch, at, node, key, body)"
                    " VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                    inputs,
                )
                if outputs:
                    await c.executemany(
                        "INSERT INTO acd_actions (seq, idx, node, body)"
                        " VALUES (%s, %s, %s, %s::jsonb)",
                        outputs,
                    )
            await work.execute(
                "SELECT pg_notify(%s, %s)", (self.settings.log_channel, str(replica.seq))
            )
        self._dirty = False
        self.metrics.events.labels(self.node_id).inc(len(events))
        self.metrics.applied.labels(self.node_id).set(replica.seq)
        return len(rows) or len(events)


# --- the node's side ---------------------------------------------------------------------------


class ClusterAcd:
    """A node's ACD: :class:`acd.service.AcdService`'s surface over the brain.

    :meth:`handle` sends the event to the inbox (in the background, in order, batched);
    ``engine`` is a local replica of the active's engine, replayed from the log, for reads (it is
    at most a notification behind); ``on_action`` gets the actions for this node's calls (and
    those for every node), each once, in the log's order; ``on_log`` the replica's engine log
    records (every node sees all of them: persist them on one node only).
    """

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        node_id: str,
        on_action: Callable[[Action], None],
        on_log: Callable[[list[LogRecord]], None] | None = None,
        clock: Callable[[], float] = time.time,
        origin: Origin | None = None,
    ) -> None:
        """``origin``: the engine's origin when the caller has it already (a node reads it,
        or writes it first, at start-up: :func:`hotline.cluster.node.open_origin`), so that
        ``engine`` is there before :meth:`start`; otherwise :meth:`start` waits for it."""
        if node_id == EVERY_NODE:
            raise ValueError(f"node id {EVERY_NODE!r} is reserved")
        self.settings = settings
        self.node_id = node_id
        self._on_action = on_action
        self._on_log = on_log
        self._clock = clock
        self.replica: Replica | None = Replica(origin) if origin is not None else None
        self._outbox: list[tuple[str, str]] = []
        self._incarnation = uuid.uuid4().hex[:12]
        self._outbox_ready = asyncio.Event()
        self._sent_count = 0
        self._queued_count = 0
        self._sent = asyncio.Condition()
        self._applied = asyncio.Condition()
        self._action_cursor: tuple[int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._conns: list[psycopg.AsyncConnection[Any]] = []
        self._closed = False
        self._log = _log.bind(node=node_id)

    @property
    def engine(self) -> AcdEngine:
        if self.replica is None:
            raise RuntimeError("ClusterAcd not started (no engine origin yet)")
        return self.replica.engine

    def now(self) -> float:
        return self._clock()

    def bind(
        self,
        on_action: Callable[[Action], None],
        on_log: Callable[[list[LogRecord]], None] | None = None,
    ) -> None:
        """Where actions and log records go (the contact center, once it is built)."""
        self._on_action = on_action
        self._on_log = on_log

    def handle(self, event: Event) -> None:
        """Queue ``event`` for the brain (sent in order, in the background)."""
        if self._closed:
            raise RuntimeError("ClusterAcd is closed")
        self._queued_count += 1
        key = f"{self.node_id}:{self._incarnation}:{self._queued_count}"
        self._outbox.append((key, encode_event(event)))
        self._outbox_ready.set()

    async def start(self, *, from_start: bool = False, origin_wait: float = 30.0) -> None:
        """Connect, wait for the origin (the first active brain writes it), catch up with the
        log and start sending and receiving. Actions already in the log when this node starts
        are not carried out (they were for calls this node no longer holds) unless
        ``from_start``."""
        reader = await connect(self.settings)
        sender = await connect(self.settings)
        self._conns = [reader, sender]
        await reader.execute(f"LISTEN {self.settings.log_channel}")
        loop = asyncio.get_running_loop()
        give_up = loop.time() + origin_wait
        if self.replica is None:
            origin = await load_origin(reader)
            while origin is None:
                if loop.time() > give_up:
                    raise TimeoutError("no ACD origin: is a brain running?")
                await _wait_notify(reader, 0.2)
                origin = await load_origin(reader)
            self.replica = Replica(origin)
        if not from_start:
            cur = await reader.execute("SELECT coalesce(max(seq), 0) FROM acd_input")
            row = await cur.fetchone()
            self._action_cursor = (int(row[0]) if row else 0, 1 << 30)
        else:
            self._action_cursor = (0, -1)
        await self._pull(reader)
        beat = await connect(self.settings)
        self._conns.append(beat)
        await self._beat(beat)
        self._tasks = [
            asyncio.create_task(self._send_loop(sender), name=f"acd-send-{self.node_id}"),
            asyncio.create_task(self._tail_loop(reader), name=f"acd-tail-{self.node_id}"),
            asyncio.create_task(self._heartbeat(beat), name=f"acd-beat-{self.node_id}"),
        ]

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in self._conns:
            await _close(conn)

    async def sent(self) -> None:
        """Until every event handed to :meth:`handle` so far is in the inbox (committed)."""
        target = self._queued_count
        async with self._sent:
            await self._sent.wait_for(lambda: self._sent_count >= target)

    async def applied(self, seq: int) -> None:
        """Until the local replica has applied log entry ``seq``."""
        async with self._applied:
            await self._applied.wait_for(
                lambda: self.replica is not None and self.replica.seq >= seq
            )

    async def _send_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch, self._outbox = (
                    self._outbox[: self.settings.batch],
                    self._outbox[self.settings.batch :],
                )
                try:
                    async with conn.transaction():
                        async with conn.cursor() as c:
                            await c.executemany(
                                "INSERT INTO acd_inbox (node, key, body)"
                                " VALUES (%s, %s, %s::jsonb) ON CONFLICT (key) DO NOTHING",
                                [(self.node_id, k, b) for k, b in batch],
                            )
                        await conn.execute(
                            "SELECT pg_notify(%s, '')", (self.settings.inbox_channel,)
                        )
                except (psycopg.Error, OSError) as exc:
                    # keep the batch (at the front, in order) and reconnect
                    self._outbox = batch + self._outbox
                    self._log.warning("acd inbox send failed", error=repr(exc))
                    await _close(conn)
                    await asyncio.sleep(0.2)
                    conn = await self._reconnect(conn)
                    continue
                self._sent_count += len(batch)
                async with self._sent:
                    self._sent.notify_all()

    async def _beat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(
            "INSERT INTO cluster_nodes (node, seen_at) VALUES (%s, now())"
            " ON CONFLICT (node) DO UPDATE SET seen_at = now(), lost_at = NULL",
            (self.node_id,),
        )

    async def _heartbeat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """This node is alive: its row in ``cluster_nodes``, every third of a lease (a node
        back after being found lost is a node again, for new calls)."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await self._beat(conn)
            except (psycopg.Error, OSError) as exc:
                self._log.warning("cluster heartbeat failed", error=repr(exc))
                await _close(conn)
                await asyncio.sleep(0.2)
                conn = await self._reconnect(conn)

    async def _reconnect(self, old: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
        while True:
            try:
                conn = await connect(self.settings)
            except (psycopg.Error, OSError):
                await asyncio.sleep(0.5)
                continue
            self._conns = [c for c in self._conns if c is not old] + [conn]
            return conn

    async def _tail_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        poll = self.settings.lease_seconds / 3
        while True:
            try:
                await _wait_notify(conn, poll)
                await self._pull(conn)
            except (psycopg.Error, OSError) as exc:
                self._log.warning("acd log tail failed", error=repr(exc))
                await _close(conn)
                await asyncio.sleep(0.2)
                conn = await self._reconnect(conn)
                await conn.execute(f"LISTEN {self.settings.log_channel}")

    async def _pull(self, conn: psycopg.AsyncConnection[Any]) -> None:
        replica = self.replica
        assert replica is not None and self._action_cursor is not None
        await catch_up(conn, replica)
        if self._on_log is not None:
            records = replica.engine.drain_log()
            if records:
                self._on_log(records)
        else:
            replica.engine.drain_log()
        for r in await read_actions(conn, self._action_cursor, (self.node_id, EVERY_NODE)):
            if (r.seq, r.idx) <= self._action_cursor:
                continue  # a duplicate
            self._action_cursor = (r.seq, r.idx)
            try:
                self._on_action(r.action)
            except Exception:
                self._log.exception("acd action failed", action=type(r.action).__name__, seq=r.seq)
        async with self._applied:
            self._applied.notify_all()


@contextlib.asynccontextmanager
async def running(brain: Brain) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``brain`` in a task for the block (cancelled at its end)."""
    task = asyncio.create_task(brain.run(), name=f"brain-{brain.node_id}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
