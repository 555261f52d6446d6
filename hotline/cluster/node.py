"""One hotline node of a cluster (``[cluster]``; docs/cluster.md): what ``hotline serve`` adds
when the configuration has a ``[cluster]`` section.

- The node's ACD is a :class:`~hotline.cluster.brain.ClusterAcd`: its events go to the one
  routing brain, it carries out the actions meant for the calls it holds, and it reads queue
  and agent states from a replica of the brain's engine, replayed from the log.
- With ``[cluster] brain = true`` the node also runs a :class:`~hotline.cluster.brain.Brain`
  (the active one, or a hot standby that takes over on the lease).
- The engine's origin (its first configuration, RNG seed and start time) is read at start-up,
  or written by the first node to start (``INSERT ... ON CONFLICT DO NOTHING``: one wins), so
  the node's engine replica exists before anything is wired to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog

from acd.codec import config_to_table
from acd.config import AcdConfig
from acd.store.migrate import PG_SCHEMA_LOCK
from hotline.cluster.brain import (
    SCHEMA_SQL,
    Brain,
    BrainMetrics,
    ClusterAcd,
    ClusterSettings,
    Origin,
    Role,
)
from hotline.config import Config

log = structlog.get_logger("hotline.cluster")


def cluster_settings(config: Config) -> ClusterSettings:
    """The brain's settings from ``[database]`` and ``[cluster]`` (its tables live beside the
    case records, in the same schema)."""
    return ClusterSettings(
        dsn=config.database.url,
        schema=config.database.schema,
        lease_seconds=config.cluster.lease_seconds,
        node_timeout=config.cluster.node_timeout_seconds,
    )


def open_origin(
    settings: ClusterSettings,
    *,
    config: AcdConfig,
    node: str,
    seed: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Origin:
    """The engine's origin, written by this node when no node has written it yet (the
    brain's tables created if missing). Synchronous: it runs once, while the node is built."""
    seed = secrets.randbits(31) if seed is None else seed
    with (
        psycopg.connect(settings.dsn, autocommit=True, connect_timeout=10) as conn,
        conn.transaction(),
    ):
        # The case store's lock first (its CREATE SCHEMA IF NOT EXISTS, on another node
        # starting at the same time, would otherwise race this one), then the brain's.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_SCHEMA_LOCK,))
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            (f"hotline-cluster-{settings.schema}",),
        )
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {settings.schema}")
        conn.execute(f"SET search_path TO {settings.schema}")
        conn.execute(SCHEMA_SQL)
        conn.execute(
            "INSERT INTO acd_origin (id, config, seed, start, created_by)"
            " VALUES (1, %s::jsonb, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (json.dumps(config_to_table(config)), seed, clock(), node),
        )
        row = conn.execute("SELECT config, seed, start, created_by FROM acd_origin").fetchone()
    assert row is not None
    log.info("cluster_origin", written_by=row[3], by_this_node=row[3] == node)
    return Origin(AcdConfig.from_dict(row[0]), int(row[1]), float(row[2]))


class ClusterNode:
    """The cluster parts of one node: its ACD over the brain, and a brain when it runs one."""

    def __init__(
        self, config: Config, *, registry: Any = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = cluster_settings(config)
        self.node_id = config.database.node
        origin = open_origin(self.settings, config=config.acd, node=self.node_id, clock=clock)
        self.acd = ClusterAcd(
            self.settings, node_id=self.node_id, on_action=_unbound, clock=clock, origin=origin
        )
        self.brain = (
            Brain(
                self.settings,
                node_id=self.node_id,
                config=config.acd,
                seed=origin.seed,
                clock=clock,
                metrics=BrainMetrics(registry),
                on_node_lost=self._node_lost,
            )
            if config.cluster.brain
            else None
        )
        self._brain_task: asyncio.Task[None] | None = None
        self.on_node_lost: Callable[[str], Awaitable[Any]] | None = None
        """What this node does when its active brain finds another node lost (the contact
        center's ``take_over``)."""

    async def _node_lost(self, node: str) -> None:
        if self.on_node_lost is not None:
            await self.on_node_lost(node)

    @property
    def brain_active(self) -> bool:
        """Whether this node's brain is the active one now."""
        return self.brain is not None and self.brain.role is Role.ACTIVE

    async def start(self) -> None:
        if self.brain is not None:
            self._brain_task = asyncio.create_task(self.brain.run(), name="brain")
        await self.acd.start()
        log.info("cluster_node_started", node=self.node_id, brain=self.brain is not None)

    async def stop(self) -> None:
        await self.acd.close()
        if self._brain_task is not None:
            self._brain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._brain_task


def _unbound(_action: object) -> None:
    raise RuntimeError("ClusterAcd actions before the contact center was bound")
