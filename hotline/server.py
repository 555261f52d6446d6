"""The composition root: build the parts from one typed configuration, start them, stop them.

```
config ──▶ media client (its own process, or on this loop)
        ──▶ Registrations (REGISTER + digest, browser phones) ─┐ presence
        ──▶ ServiceSwitch (number → service)                  │
        ──▶ SipUserAgent (endpoint events → CallSessions) ◀───┘
        ──▶ ContactCenter (IVR → ACD → agent or voicemail, case records)
        ──▶ HTTP (hotline/http/): API, metrics, pages, WebRTC sockets
```

Nothing here decides anything about a call: the switch maps numbers, the user agent speaks
SIP, the contact center runs calls, the engine routes. This module only wires them and owns
process-wide concerns (the event loop, signals, the garbage collector's tuning).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from hotline import native_hook
from hotline.auth import AuditTrail, StaffAuth, StaffCredentials
from hotline.auth.staff import AuthSettings, lockout_policy, log_lock
from hotline.center import ContactCenter
from hotline.config import Config, ConfigError, exposure_issue
from hotline.http.guard import GuardedSite, http_gate
from hotline.http.routes import build_http_app
from hotline.logs import configure_logging
from hotline.switch import ServiceSwitch
from hotline.telemetry import EngineReadings, HotlineMetrics
from media_gateway.calls import UaSettings
from media_gateway.media.client import LocalMedia, MediaClient, MediaProcess
from media_gateway.registrations import Registrations, RegistrationSettings
from media_gateway.session import CallSession
from media_gateway.sip.lockout import Locked, Lockout
from media_gateway.streams import raise_open_file_limit
from media_gateway.ua import SipUserAgent

if TYPE_CHECKING:
    from hotline.cluster.node import ClusterNode

log = structlog.get_logger("hotline.server")


class _Telephony:
    """The contact center's view of the telephony (``hotline.center.Telephony``)."""

    def __init__(self, ua: SipUserAgent, node: Hotline | None = None) -> None:
        self.ua = ua
        self.node = node

    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        return await self.ua.originate(
            target, ring_timeout=ring_timeout, caller=caller, display=display
        )

    def agent_reachable(self, agent_id: str) -> bool:
        if self.ua.registrations.reachable(agent_id, self.ua.loop.time()):
            return True
        # On a cluster's node: a phone registered through another node (which logged the
        # agent in with the brain) is rung through the edge.
        node = self.node
        if node is None or node.cluster is None or self.ua.settings.edge is None:
            return False
        try:
            return node.center.engine.agent_status(agent_id).state != "logged_out"
        except KeyError:
            return False


def media_client(config: Config) -> MediaClient:
    """The media process (``[media] process = true``) or the same server on this loop."""
    server, sip, media = config.server, config.sip, config.media
    args: dict[str, Any] = {
        "host": server.public_host,
        "port_min": sip.rtp_port_min,
        "port_max": sip.rtp_port_max,
        "prompt_dirs": list(media.prompts),
        "rtp_timeout": media.rtp_timeout,
        "rtp_start_timeout": media.rtp_start_timeout,
    }
    return MediaProcess(**args) if media.process else LocalMedia(**args)


def calls_per_source(config: Config) -> int:
    """``[media] max_calls_per_source``; unset: half the RTP port pairs, so one source never
    takes every port (0: no limit)."""
    limit = config.media.max_calls_per_source
    if limit is None:
        return max(1, (config.sip.rtp_port_max - config.sip.rtp_port_min) // 4)
    return limit


class Hotline:
    """One hotline node: every part, wired. ``await start()``, then ``await stop()``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        server, sip = config.server, config.sip
        self.metrics = HotlineMetrics()
        self.credentials = StaffCredentials.open(config)
        """The staff file's hashes, or with ``[database] url`` the shared staff table's."""
        self.lockout = Lockout(lockout_policy(config), on_lock=self._locked)
        """One brute-force lockout for every password check: API sign-in, REGISTER, browser
        phone (on the loop's clock)."""
        self.auth = StaffAuth(
            config,
            operator_token=os.environ.get("HOTLINE_OPERATOR_TOKEN"),
            settings=AuthSettings.from_config(
                config, metrics_token=os.environ.get("HOTLINE_METRICS_TOKEN")
            ),
            credentials=self.credentials,
            lockout=self.lockout,
        )
        self.media = media_client(config)
        self.registrations = Registrations(
            RegistrationSettings(
                realm=sip.realm,
                algorithms=tuple(sip.auth_algorithms),
                nonce_ttl=sip.nonce_ttl,
                min_expires=sip.min_expires,
                max_expires=sip.max_expires,
            ),
            ha1_for=self.credentials.ha1,
            lockout=self.lockout,
        )
        self.registrations.state_file = Path(server.data_dir) / "registrations.json"
        """Registrations survive a restart (restored in start())."""
        self.switch = ServiceSwitch(config)
        self.ua = SipUserAgent(
            UaSettings(
                sip_host=server.sip_host,
                sip_port=server.sip_port,
                public_host=server.public_host,
                transports=tuple(sip.transports),
                user_agent=sip.user_agent,
                max_server_transactions=sip.max_server_transactions,
                retry_after=sip.retry_after,
                max_loop_lag=sip.max_loop_lag_ms / 1000.0,
                udp_receive_buffer=sip.udp_receive_buffer,
                limits=dataclasses.replace(
                    sip.limits,
                    trusted=sip.limits.trusted
                    | {t.address[0] for t in config.trunks}
                    | ({config.cluster.edge[0]} if config.cluster.edge else set()),
                ),
                max_calls_per_source=calls_per_source(config),
                srtp=sip.srtp,
                srtp_over_plain_sip=sip.srtp_over_plain_sip,
                edge=config.cluster.edge if config.cluster.enabled else None,
            ),
            media=self.media,
            registrations=self.registrations,
            router=self.switch,
            directory=self.switch.directory,
            known_users=lambda: [a.id for a in config.agents],
            trunks=config.trunks,
            language=config.media.language,
            observer=self.metrics,
            stream_limits=sip.tcp,
            tls=sip.tls,
            on_limit=self.metrics.connection_limited,
        )
        self.switch.ua = self.ua
        self.cluster: ClusterNode | None = None
        """This node's part in a cluster (``[cluster]``): its ACD over the routing brain."""
        if config.cluster.enabled:
            from hotline.cluster.node import ClusterNode  # psycopg: the postgres extra

            self.cluster = ClusterNode(config, registry=self.metrics.registry)
        self.center = ContactCenter(
            config,
            _Telephony(self.ua, self),
            metrics=self.metrics,
            cluster=self.cluster.acd if self.cluster is not None else None,
        )
        if self.cluster is not None:
            self.cluster.on_node_lost = self.center.take_over
            self.center.persist_engine_log = lambda: (
                self.cluster is not None and self.cluster.brain_active
            )
        self.audit = AuditTrail(self.center.store)
        """Every state-changing API call, sign-in and lockout (hotline/auth/audit.py)."""
        self.switch.center = self.center.handle_call
        self.registrations.listeners.append(self.center.presence_changed)
        self.metrics.watch(
            calls_active=lambda: len(self.ua.calls) + len(self.ua.web_sessions),
            sip_transactions=self.ua.endpoint.transaction_count,
            registered_contacts=lambda: len(self._bindings()),
            loop_lag=lambda: self.ua.transport.loop_lag if self.ua.transport else 0.0,
            sip_endpoint_stats=lambda: self.ua.endpoint.stats,
            sip_limited=lambda: self.ua.endpoint.limits.refused,
            acd=EngineReadings(
                self.center.engine.snapshot,
                self.center.queue_members,
                self.center.stats,
            ),
        )

    def _locked(self, event: Locked) -> None:
        """A lockout: one log line, one count, one audit row (never during __init__: a lock
        needs failed sign-ins, which need the node started)."""
        log_lock(event)
        self.metrics.auth_lockout(event.scope, event.channel)
        self.audit.lock(event)

    def _bindings(self) -> list[Any]:
        users = [a.id for a in self.config.agents]
        return self.registrations.bindings(users, self.ua.loop.time())

    def http_app(self) -> web.Application:
        return build_http_app(self)

    async def start(self) -> None:
        await self.media.start()
        await self.ua.start()
        self.registrations.restore(self.ua.loop.time())  # before the center logs agents in
        if self.cluster is not None:
            await self.cluster.start()
        await self.center.start()
        await self.credentials.start()  # with [database] url: follow the staff table

    async def stop(self) -> None:
        await self.ua.stop()
        await self.audit.flush()
        await self.center.close()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.media.close()
        await self.credentials.stop()


GC_UNFREEZE_EVERY = 60
"""Housekeeping ticks (5 s each) between returns of the frozen objects to the collector."""


async def _age_gc(every: float = 5.0) -> None:
    """Keep long-lived SIP state out of the collector's way.

    Answered transactions linger 32 s (Timer J, RFC 6026 Accepted): at 1,000 calls/s that is
    ~60,000 objects, and every full collection scanned them all (50-130 ms pauses: the p99 of
    INVITE-to-200). They are freed by reference counting, so freezing what has survived a
    few seconds costs nothing. Every GC_UNFREEZE_EVERY ticks the frozen objects go back to the
    oldest generation, so cyclic garbage that got frozen is still collected.
    """
    ticks = 0
    while True:
        await asyncio.sleep(every)
        ticks += 1
        if ticks % GC_UNFREEZE_EVERY == 0:
            gc.unfreeze()
        else:
            gc.freeze()


OPEN_FILES_RESERVE = 512
"""Descriptors beyond the connection caps: the data files, the media process's pipes, logs."""


def open_files_needed(config: Config) -> int:
    """The open-file limit the configured connection caps need (SIP TCP and TLS, HTTP)."""
    return (
        config.sip.tcp.max_connections
        + config.http.connections.max_connections
        + OPEN_FILES_RESERVE
    )


def tls_context(config: Config) -> ssl.SSLContext | None:
    """HTTPS for ``[http] tls_cert``/``tls_key`` (TLS 1.2 at least); None: plain HTTP, which
    the configuration allows on loopback (or behind a TLS-terminating proxy) only."""
    http = config.http
    if not http.tls:
        exposed = exposure_issue(config.server.http_host, http, path="server.http")
        if exposed is not None:  # --http given on the command line is checked there too
            raise ConfigError.of([exposed], file=config.source, text=config.text)
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(http.tls_cert, http.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise config.error("http.tls_cert", f"cannot load the certificate and key: {exc}") from None
    return context


async def serve(config: Config, *, ready_file: str | None = None) -> int:
    context = tls_context(config)  # a bad certificate is a configuration error before start
    raise_open_file_limit(open_files_needed(config))
    hotline = Hotline(config)
    await hotline.start()
    limits = config.http.connections
    runner = web.AppRunner(
        hotline.http_app(), access_log=None, keepalive_timeout=limits.idle_timeout
    )
    try:
        await runner.setup()
        site = GuardedSite(
            runner,
            config.server.http_host,
            config.server.http_port,
            ssl_context=context,
            backlog=config.http.backlog,
            gate=http_gate(limits, hotline.metrics.connection_limited),
            limits=limits,
        )
        await site.start()
    except BaseException:
        await hotline.stop()
        await runner.cleanup()
        raise
    log.info(
        "hotline_started",
        sip=f"{config.server.sip_host}:{config.server.sip_port}",
        http=f"{config.server.http_host}:{config.server.http_port}",
        tls=config.http.tls,
        config=config.source,
        data_dir=str(config.server.data_dir),
        pid=os.getpid(),
        routing_core="compiled" if native_hook.active() else "pure-python",
    )
    # Garbage-collector pauses, not CPU, set the INVITE-to-200 tail: tens of thousands of
    # answered transactions linger 32 s (Timer J, RFC 6026 Accepted) and full collections
    # scanned them all. Measured at 1,000 calls/s (SIPp uac, 15 s, docs/benchmarks.md):
    #   default collector:                         gen-2 pauses 131 ms, p99 124 ms
    #   + freeze start-up objects, release spent transactions' requests: 78 ms, p99 48 ms
    #   + thresholds below (gen 2 about 20x rarer):  12 ms, p99 4 ms
    # Calls and transactions are freed by reference counting; the cyclic collector still runs.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    gc_task = asyncio.ensure_future(_age_gc())
    if ready_file:
        await asyncio.to_thread(Path(ready_file).write_text, str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("hotline_stopping")
    gc_task.cancel()
    await hotline.stop()
    await runner.cleanup()
    return 0


def run_server(config: Config, *, ready_file: str | None = None) -> int:
    """Run until SIGTERM/SIGINT. OSError (a port in use) propagates to the CLI."""
    fmt = os.environ.get("HOTLINE_LOG_FORMAT", config.server.log_format)
    configure_logging(fmt, config.server.log_level)
    Path(config.server.data_dir).mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, ready_file=ready_file))
    log.info("event_loop", kind="uvloop", import_ms=round((time.monotonic() - start) * 1000, 1))
    return uvloop.run(serve(config, ready_file=ready_file))
