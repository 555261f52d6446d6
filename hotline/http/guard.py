"""The HTTP server's listening site with connection limits (issue 11).

aiohttp closes a connection idle between requests after ``keepalive_timeout`` (also one that
never sends a request) and refuses bodies over ``client_max_size``, but it has no cap on
connections and no timeout for a request's headers: a peer can open connections until the
process runs out of file descriptors, or trickle headers forever. ``GuardedSite`` is aiohttp's
``TCPSite`` with a thin protocol in front of aiohttp's: each accepted connection is admitted by
a ``ConnectionGate`` (per source address and in total; the newest over a cap is aborted before
aiohttp sees it), and the first request's headers must arrive within ``message_timeout``
seconds of the connection (a connection that sends nothing is closed then too).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web

from media_gateway.streams import ConnectionGate, StreamLimits

_END_OF_HEADERS = b"\r\n\r\n"


class _Guarded(asyncio.Protocol):
    """Admits, times and forwards one connection to aiohttp's own protocol."""

    __slots__ = ("_factory", "_tail", "gate", "inner", "source", "timeout", "timer", "transport")

    def __init__(self, gate: ConnectionGate, factory: Any, timeout: float) -> None:
        self.gate = gate
        self._factory = factory
        self.timeout = timeout
        self.inner: asyncio.Protocol | None = None
        self.source = ""
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if peer else ""
        self.transport = cast(asyncio.Transport, transport)
        if not self.gate.admit(self.source):
            self.transport.abort()
            return
        self.inner = cast(asyncio.Protocol, self._factory())
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self._headers_late)
        self.inner.connection_made(transport)

    def _headers_late(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.gate.limited(self.source, "message_timeout")
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.timer is not None:
            if _END_OF_HEADERS in self._tail + data:
                self.timer.cancel()
                self.timer = None
            else:
                self._tail = data[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None
        inner, self.inner = self.inner, None
        if inner is not None:
            self.gate.release(self.source)
            inner.connection_lost(exc)


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections pass through a ``ConnectionGate`` first."""

    __slots__ = ("gate", "limits")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        gate: ConnectionGate,
        limits: StreamLimits,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.gate = gate
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        loop = asyncio.get_running_loop()
        inner = self._runner.server
        assert inner is not None
        gate, timeout = self.gate, self.limits.message_timeout
        self._server = await loop.create_server(
            lambda: _Guarded(gate, inner, timeout),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=timeout if self._ssl_context is not None else None,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        else:
            self._bound_port = self._port


def http_gate(limits: StreamLimits, on_limit: Any = None) -> ConnectionGate:
    return ConnectionGate(
        "http",
        max_connections=limits.max_connections,
        max_connections_per_source=limits.max_connections_per_source,
        on_limit=on_limit,
    )
