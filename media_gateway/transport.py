"""Thin asyncio shells around the sans-IO SIP endpoint (aioquic's ``asyncio/protocol.py`` idea).

The shell owns the sockets and one timer. It feeds every datagram or framed TCP message to the
endpoint with the loop's monotonic time, sends what the endpoint wants sent, hands the
endpoint's events to the transaction user (``on_event``), and keeps exactly one ``call_at``
armed for the endpoint's next deadline.

Overload control: a small task measures event-loop lag (how late a 50 ms sleep wakes up); past
``max_loop_lag`` the endpoint's ``overloaded`` flag is raised, so new INVITEs get 503 with
Retry-After while calls already up keep working.

Safety: responses go where the endpoint says, which is always the packet's source address
(RFC 3581 symmetric response); the shell resolves no names. Outgoing requests to an address
that is not an IP literal are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

import structlog

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.limits import LimitChange, SourceLimits
from media_gateway.sip.parser import MAX_HEADER_BYTES, StreamFramer
from media_gateway.streams import ConnectionGate, StreamLimits

log = structlog.get_logger("hotline.sip.transport")


class _Outgoing(Protocol):
    data: bytes
    dest: tuple[str, int]
    transport: str
    connection: Any


class SansIoEndpoint(Protocol):
    overloaded: bool
    stats: dict[str, int]
    limits: SourceLimits

    def receive(
        self,
        data: bytes,
        source: tuple[str, int],
        now: float,
        *,
        transport: str = ...,
        connection: Any = ...,
    ) -> None: ...

    def receive_message(
        self,
        message: Any,
        source: tuple[str, int],
        now: float,
        *,
        transport: str = ...,
        connection: Any = ...,
    ) -> None: ...

    def datagrams_to_send(self) -> list[Any]: ...

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Any: ...


_IP_CACHE: dict[str, bool] = {}


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an IP literal (checked once per distinct host; hot path)."""
    known = _IP_CACHE.get(host)
    if known is None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            known = False
        else:
            known = True
        if len(_IP_CACHE) < 65536:
            _IP_CACHE[host] = known
    return known


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, shell: SipTransport) -> None:
        self.shell = shell

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.shell.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a vanished peer: the transaction layer times out by itself.
        log.debug("udp_error", error=str(exc))


class _TcpConnection(asyncio.Protocol):
    """One SIP-over-TCP (or TLS) connection; the framer splits the stream by Content-Length.

    Limits (``StreamLimits``): the connection is closed when no complete message (nor a
    keep-alive) arrived for ``idle_timeout`` seconds (unless a REGISTER over it holds it open,
    ``hold_open``), when a started message is not complete within ``message_timeout``, or when
    a message exceeds ``max_message_bytes``; accepted connections over the per-source or global
    cap are closed at once. One timer per connection, re-armed only when it fires.
    """

    def __init__(self, shell: SipTransport, *, tls: bool = False, outbound: bool = False) -> None:
        self.shell = shell
        limits = shell.limits
        self.framer = StreamFramer(
            max_header_bytes=min(MAX_HEADER_BYTES, limits.max_message_bytes),
            max_body_bytes=limits.max_message_bytes,
        )
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.transport_name = "tls" if tls else "tcp"
        """``tcp`` or ``tls``: what the endpoint is told the message came over."""
        self.outbound = outbound
        self.admitted = False
        self.last_activity = 0.0
        self.partial_since: float | None = None
        self.hold_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else ("", 0)
        if not self.outbound and not self.shell.gate.admit(self.peer[0]):
            self.transport.abort()  # the newest over the cap goes at once, nothing read
            return
        self.admitted = not self.outbound
        self.shell.connections.add(self)
        self.last_activity = self.shell.loop.time()
        self._arm(self.last_activity + self.shell.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shell.connections.discard(self)
        if self.admitted:
            self.admitted = False
            self.shell.gate.release(self.peer[0])
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None

    def hold_open(self, seconds: float) -> None:
        """Keep the connection despite the idle timeout for ``seconds`` (a registration's life:
        calls to the phone come over this connection)."""
        self.hold_until = max(self.hold_until, self.shell.loop.time() + seconds)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.shell.loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        limits = self.shell.limits
        now = self.shell.loop.time()
        if self.partial_since is not None and now >= self.partial_since + limits.message_timeout:
            self.shell.gate.limited(self.peer[0], "message_timeout", buffered=self.framer.buffered)
            self.close()
            return
        idle_at = max(self.last_activity + limits.idle_timeout, self.hold_until)
        if now >= idle_at:
            self.shell.gate.limited(self.peer[0], "idle_timeout")
            self.close()
            return
        at = idle_at
        if self.partial_since is not None:
            at = min(at, self.partial_since + limits.message_timeout)
        self._arm(at)

    def data_received(self, data: bytes) -> None:
        pings_before = self.framer.keepalive_pings
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            log.warning("tcp_framing_error", peer=self.peer, error=str(exc))
            self.close()
            return
        now = self.shell.loop.time()
        if self.framer.keepalive_pings > pings_before:
            self.last_activity = now
            if self.transport:
                self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        if items:
            self.last_activity = now
            self.partial_since = None
        if self.framer.buffered:
            if self.partial_since is None:
                self.partial_since = now
                self._arm(now + self.shell.limits.message_timeout)
        else:
            self.partial_since = None
        for item in items:
            if isinstance(item, SipParseError):
                if item.status_hint == 513:
                    self.shell.gate.limited(self.peer[0], "too_large", error=str(item))
                else:
                    log.info(
                        "sip_parse_error",
                        peer=self.peer,
                        transport=self.transport_name,
                        error=str(item),
                    )
                continue
            self.shell.on_message(item, self.peer, self.transport_name, self)
        if self.framer.broken:
            # Framing is lost (negative, conflicting or oversized Content-Length): RFC 4475
            # §3.1.2.3 and §3.3.9 say close the connection.
            self.close()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


StreamConnection = _TcpConnection
"""A SIP-over-TCP or TLS connection (``hold_open`` keeps a registered phone's open)."""


class SipTransport:
    """Binds UDP and TCP sockets for one endpoint and pumps bytes, events and timers."""

    def __init__(
        self,
        endpoint: SansIoEndpoint,
        on_event: Callable[[Any], None],
        *,
        max_loop_lag: float = 0.25,
        lag_grace: float = 3.0,
        udp_receive_buffer: int = 4 * 1024 * 1024,
        overload_hold: float = 1.0,
        max_retransmissions: float = 50.0,
        limits: StreamLimits | None = None,
        on_limit: Callable[[str, str], None] | None = None,
        tls_context: ssl.SSLContext | None = None,
        tls_port: int = 5061,
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.max_loop_lag = max_loop_lag
        self.lag_grace = lag_grace
        """Seconds after start during which event-loop lag does not raise the overload flag:
        starting up stalls the loop (imports, prompts loaded, registrations restored), and a
        first caller must not get 503 for it."""
        self.udp_receive_buffer = udp_receive_buffer
        self.loop = asyncio.get_running_loop()
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.Server | None = None
        self.connections: set[_TcpConnection] = set()
        self.limits = limits or StreamLimits()
        self.gate = ConnectionGate(
            "sip",
            max_connections=self.limits.max_connections,
            max_connections_per_source=self.limits.max_connections_per_source,
            on_limit=on_limit,
        )
        """Open TCP and TLS connections per source and in total (media_gateway/streams.py)."""
        self.tls_context = tls_context
        self.tls_port = tls_port
        self.tls_server: asyncio.Server | None = None
        self.local_tls: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self.loop_lag = 0.0
        self.overload_hold = overload_hold
        self.max_retransmissions = max_retransmissions
        self.retransmission_rate = 0.0
        self.local_udp: tuple[str, int] | None = None
        self.local_tcp: tuple[str, int] | None = None
        self._pumping = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(
        self, host: str, port: int, transports: tuple[str, ...] = ("udp", "tcp")
    ) -> None:
        if "udp" in transports:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.udp_receive_buffer)
            sock.bind((host, port))
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=sock
            )
            self.udp = transport
            name = sock.getsockname()
            self.local_udp = (name[0], name[1])
            port = name[1]  # TCP follows UDP's port when 0 was asked for
        if "tcp" in transports:
            self.tcp_server = await self.loop.create_server(
                lambda: _TcpConnection(self), host, port, reuse_address=True
            )
            name = self.tcp_server.sockets[0].getsockname()
            self.local_tcp = (name[0], name[1])
        if self.tls_context is not None:
            self.tls_server = await self.loop.create_server(
                lambda: _TcpConnection(self, tls=True),
                host,
                self.tls_port,
                ssl=self.tls_context,
                reuse_address=True,
                ssl_handshake_timeout=self.limits.message_timeout,
            )
            name = self.tls_server.sockets[0].getsockname()
            self.local_tls = (name[0], name[1])
        self._lag_task = self.loop.create_task(self._watch_lag())

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        if self._timer is not None:
            self._timer.cancel()
        if self.udp is not None:
            self.udp.close()
        for conn in list(self.connections):
            conn.close()
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()

    # -- input -------------------------------------------------------------------------------

    def on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        self.endpoint.receive(data, source, self.loop.time(), transport="udp")
        self.pump()

    def on_message(
        self, message: Any, source: tuple[str, int], transport: str, connection: _TcpConnection
    ) -> None:
        self.endpoint.receive_message(
            message, source, self.loop.time(), transport=transport, connection=connection
        )
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(self.loop.time())
        self.pump()

    # -- output ------------------------------------------------------------------------------

    def pump(self) -> None:
        """Deliver the endpoint's events, send its datagrams, re-arm its timer.

        Re-entrant calls (the TU calling back into the endpoint from ``on_event``) are folded
        into the outer pump's loop.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            ep = self.endpoint
            while True:
                event = ep.next_event()
                if event is None:
                    out = ep.datagrams_to_send()
                    if not out:
                        break
                    for item in out:
                        self._send(item)
                    continue
                try:
                    self.on_event(event)
                except Exception:  # a TU bug must not take the transport down
                    log.exception("transaction_user_error", event=type(event).__name__)
        finally:
            self._pumping = False
        self._arm()

    def _send(self, item: _Outgoing) -> None:
        conn = item.connection
        if isinstance(conn, _TcpConnection):
            conn.write(item.data)
            return
        host, port = item.dest
        if not _is_ip(host):
            log.warning("refused_send_to_name", dest=host)
            return
        kind = item.transport.lower()
        if kind == "tcp":
            self.loop.create_task(self._send_tcp_new(item.data, (host, port)))
            return
        if kind == "tls":
            # Only over a connection the peer opened (a phone registered over TLS): a new
            # outbound TLS connection would need a verified peer certificate.
            for conn in self.connections:
                if conn.peer == (host, port) and conn.transport_name == "tls":
                    conn.write(item.data)
                    return
            log.info("tls_no_connection", dest=(host, port))
            return
        if self.udp is not None:
            self.udp.sendto(item.data, (host, port))

    async def _send_tcp_new(self, data: bytes, dest: tuple[str, int]) -> None:
        for conn in self.connections:
            if conn.peer == dest and conn.transport_name == "tcp":
                conn.write(data)
                return
        try:
            _, protocol = await self.loop.create_connection(
                lambda: _TcpConnection(self, outbound=True), *dest
            )
        except OSError as exc:
            log.info("tcp_connect_failed", dest=dest, error=str(exc))
            return
        protocol.write(data)

    def _arm(self) -> None:
        deadline = self.endpoint.next_deadline()
        if deadline is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return  # the armed timer fires first; it re-arms for what follows
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    async def _watch_lag(self) -> None:
        """Raise the endpoint's overload flag, checked every 50 ms, on either signal:

        * event-loop lag past ``max_loop_lag`` (something blocks the loop);
        * peers retransmitting faster than ``max_retransmissions`` per second over the last
          second. A saturated process does not always lag: its backlog waits in the (large)
          kernel receive buffer until the peers' timers fire and the load multiplies.
          Retransmissions that the endpoint absorbs are that symptom; clean traffic has none,
          and 5 % packet loss at 100 calls/s gives a few per second. Each source counts only
          within its own allowance (``SourceLimits.retransmission``, 10/s and 20 at once by
          default), so one source resending a request 60 times a second cannot raise the flag
          for everybody: that source alone is limited.
        The flag stays raised ``overload_hold`` seconds after the last such reading, so new
        INVITEs get a cheap stateless 503 + Retry-After while admitted calls finish.

        The same loop polls the per-source limits and writes one log line for each source
        that became limited or recovered (``sip_source_limited`` / ``sip_source_recovered``).
        """
        interval = 0.05
        raised_until = 0.0
        limits = self.endpoint.limits
        lag_counts_from = self.loop.time() + self.lag_grace
        while True:
            start = self.loop.time()
            await asyncio.sleep(interval)
            now = self.loop.time()
            elapsed = now - start
            self.loop_lag = max(elapsed - interval, 0.0)
            limits.poll(now)
            for change in limits.take_changes():
                self._log_limit(change, now)
            retrans_rate = limits.retransmission_rate(now)
            self.retransmission_rate = retrans_rate
            lagging = self.loop_lag > self.max_loop_lag and now >= lag_counts_from
            if lagging or retrans_rate > self.max_retransmissions:
                raised_until = now + self.overload_hold
            overloaded = now < raised_until
            if overloaded != self.endpoint.overloaded:
                log.warning(
                    "overload",
                    loop_lag_ms=round(self.loop_lag * 1000, 1),
                    retransmissions_per_s=round(retrans_rate, 1),
                    overloaded=overloaded,
                )
                self.endpoint.overloaded = overloaded

    def _log_limit(self, change: LimitChange, now: float) -> None:
        """One line per source when it becomes limited and one when it recovers."""
        limits = self.endpoint.limits
        if change.source == "*":  # the global set-up bound
            log.warning(
                "sip_setup_bound" if change.limited else "sip_setup_bound_cleared",
                reason=change.reason,
                calls_in_setup=limits.calls_in_setup,
                setup_age_ms=round(limits.setup_age(now) * 1000),
            )
        elif change.limited:
            log.warning("sip_source_limited", source=change.source, reason=change.reason)
        else:
            log.info(
                "sip_source_recovered",
                source=change.source,
                reason=change.reason,
                refused=change.refused,
            )
