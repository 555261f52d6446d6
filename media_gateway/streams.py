"""Limits for stream connections (SIP over TCP and TLS, and the HTTP server's sockets).

A connection is accepted by the kernel before any code of ours runs, so a peer that opens
connections and sends nothing (or half a message) holds a file descriptor each until something
closes it. Without limits, about 1,000 idle connections from one address reach the usual
1,024 open-file limit and every later ``accept()`` fails: the HTTP API and SIP over TCP stop
answering anyone. Three defences, shared by both servers:

* ``ConnectionGate`` counts open connections per source address and in total; the newest
  connection over either cap is closed at once (before it costs more than its socket);
* idle and incomplete-message timeouts close connections that carry nothing (the SIP
  transport checks them; the HTTP server uses aiohttp's keep-alive timeout and a header
  timeout of ours);
* ``raise_open_file_limit`` raises RLIMIT_NOFILE's soft limit towards the hard limit at
  start-up, to what the caps need.

When a limit bites, one log line per source per *episode* (not per connection): the next line
for that source comes only after it has stayed under its caps for ``quiet`` seconds. Each bite
is counted for the metrics through ``on_limit(server, reason)``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("hotline.streams")

LIMIT_REASONS: tuple[str, ...] = (
    "per_source",
    "global",
    "idle_timeout",
    "message_timeout",
    "too_large",
)
"""Why a stream connection was closed by us (the metric's ``reason`` label)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimits:
    """Limits of one stream server (``[sip.tcp]`` for SIP over TCP and TLS)."""

    idle_timeout: float = 120.0
    """Seconds without a complete message (or an RFC 5626 keep-alive) before the connection is
    closed. A connection that carried a successful REGISTER stays open until the binding
    expires (the phone's calls arrive over it)."""
    message_timeout: float = 10.0
    """Seconds a started message may take to arrive completely."""
    max_message_bytes: int = 65536
    """Largest message (headers and body); past it the connection is closed."""
    max_connections: int = 4096
    """Open connections in total; the newest over the cap is closed at once."""
    max_connections_per_source: int = 64
    """Open connections from one IP address; the newest over the cap is closed at once."""


class ConnectionGate:
    """Per-source and global accounting of open connections for one server.

    ``admit(source)`` says whether a new connection may stay; every admitted connection must be
    ``release``d once. Refusals and timeouts are reported with ``limited`` (one log line per
    source per episode, every one counted).
    """

    def __init__(
        self,
        server: str,
        *,
        max_connections: int,
        max_connections_per_source: int,
        on_limit: Callable[[str, str], None] | None = None,
        quiet: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self.on_limit = on_limit
        self.quiet = quiet
        self.clock = clock
        self.open = 0
        self.per_source: dict[str, int] = {}
        self.limited_count: dict[str, int] = dict.fromkeys(LIMIT_REASONS, 0)
        self._episodes: dict[tuple[str, str], float] = {}
        """(source, reason) -> when the last limit bit; a new log line after ``quiet`` s."""

    def admit(self, source: str) -> bool:
        if self.open >= self.max_connections:
            self.limited(source, "global", open=self.open)
            return False
        n = self.per_source.get(source, 0)
        if n >= self.max_connections_per_source:
            self.limited(source, "per_source", open=n)
            return False
        self.per_source[source] = n + 1
        self.open += 1
        return True

    def release(self, source: str) -> None:
        n = self.per_source.get(source, 0) - 1
        if n > 0:
            self.per_source[source] = n
        else:
            self.per_source.pop(source, None)
        self.open = max(self.open - 1, 0)

    def limited(self, source: str, reason: str, **detail: object) -> None:
        """A limit bit ``source``: count it, and log it if this starts a new episode."""
        self.limited_count[reason] = self.limited_count.get(reason, 0) + 1
        if self.on_limit is not None:
            self.on_limit(self.server, reason)
        now = self.clock()
        key = (source, reason)
        last = self._episodes.get(key)
        self._episodes[key] = now
        if last is None or now - last > self.quiet:
            if len(self._episodes) > 10_000:  # bounded memory under a spoofed-source flood
                cutoff = now - self.quiet
                for k in [k for k, t in self._episodes.items() if t < cutoff]:
                    del self._episodes[k]
            log.warning(
                "connection_limited",
                server=self.server,
                source=source,
                reason=reason,
                quiet_seconds=self.quiet,
                **detail,
            )


def raise_open_file_limit(needed: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards ``needed`` (at most the hard limit).

    Returns ``(soft, hard)`` after the attempt; logs one warning when the soft limit stays below
    ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError) as exc:
                log.debug("nofile_raise_failed", error=str(exc))
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open_file_limit_low",
            soft=soft,
            hard=hard,
            needed=needed,
            hint="raise the hard limit (systemd LimitNOFILE=, ulimit -Hn) or lower the "
            "connection caps ([sip.tcp] max_connections, [http] max_connections)",
        )
    return soft, hard
