"""Configuration: one TOML file, described by pydantic models, validated once at start-up.

:func:`load_config` reads the file, validates it against :class:`ConfigModel` (every section,
the ACD's and the IVR's models included) and cross-checks the references between sections
(an agent's queues, entry point targets, IVR queue nodes, trunk DIDs). A file with mistakes
raises one :class:`ConfigError` that lists *all* of them, one per line, each with the file, the
line and the key path as the user wrote it, for example::

    demo.toml:42: agents[1].skills.sales: expected a skill level 1-10, got 12

The result is one frozen :class:`Config` with typed sections: ``config.acd`` (the
``acd.config.AcdConfig`` the engine takes), ``config.ivr`` (``ivr.flow.IvrConfig``),
``config.voicemail`` and the gateway's own sections. Nothing downstream reads the TOML itself.

The error type and the line locator live in ``acd.config`` (every layer may import it; nothing
outside ``hotline/`` may import this module). ``hotline config-schema`` prints the JSON Schema
generated from :class:`ConfigModel` (docs/hotline.schema.json).
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import GenerateJsonSchema, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from acd.config import (
    STRICT,
    AcdConfig,
    AcdModel,
    AgentRouting,
    ConfigError,
    ConfigIssue,
    Name,
    issues_from_pydantic,
)
from acd.escalation import EscalationPolicy
from ivr.flow import IvrConfig, IvrModel
from media_gateway.sip.limits import LimitsConfig
from media_gateway.streams import StreamLimits
from media_gateway.tls import SipTlsSettings

__all__ = [
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ConfigModel",
    "config_schema",
    "load_config",
    "load_ivr",
    "parse_config",
    "with_overrides",
]


def parse_hostport(text: str, *, default_port: int) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``HOST``, ``[v6]:PORT`` or ``:PORT``. Raises ValueError."""
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed IPv6 bracket in {text!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        port = default_port
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected {rest!r} after IPv6 address")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host, port = text, default_port
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host or "0.0.0.0", port


# ---------------------------------------------------------------------------------------------
# What the rest of the program reads: frozen dataclasses


@dataclass(frozen=True, slots=True)
class ServerConfig:
    sip_host: str = "127.0.0.1"
    """Address the SIP transports listen on."""
    sip_port: int = 5060
    """SIP port (UDP and TCP)."""
    http_host: str = "127.0.0.1"
    """Address of the HTTP API, metrics and wallboard."""
    http_port: int = 8080
    data_dir: str = "var"
    """Directory for the SQLite file, recordings and voicemail."""
    advertised_host: str = ""
    """Address written into Contact and SDP; defaults to ``sip_host`` (or 127.0.0.1 when that
    is a wildcard). Must be an IP literal: hotline never resolves names."""
    log_format: str = "auto"
    """``json``, ``console``, or ``auto`` (console on a terminal, JSON otherwise)."""
    log_level: str = "info"
    staff_file: str = ""
    """The staff credentials file (argon2id and digest HA1 hashes, written by ``hotline
    passwd``), resolved against the configuration file's directory; empty: ``<data_dir>/
    staff.toml`` (see :attr:`staff_path`)."""

    @property
    def staff_path(self) -> Path:
        """Where the staff credentials are read from and written to."""
        if self.staff_file:
            return Path(self.staff_file)
        return Path(self.data_dir) / "staff.toml"

    @property
    def public_host(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        if self.sip_host in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return self.sip_host


HTTP_LIMITS = StreamLimits(
    idle_timeout=75.0,
    message_timeout=10.0,
    max_message_bytes=1024 * 1024,
    max_connections=4096,
    max_connections_per_source=256,
)
"""The HTTP server's defaults: browsers keep about 6 connections per origin and a building of
agents may share one address (NAT), so the per-source cap is higher than SIP's."""


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``[http]``: TLS, and who may read ``/metrics``."""

    tls_cert: str = ""
    """PEM certificate chain: serve HTTPS (with ``tls_key``). Resolved against the
    configuration file's directory."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    behind_tls_proxy: bool = False
    """A reverse proxy terminates TLS in front of this node: session cookies are ``Secure``,
    the origin check expects ``https``, and the client's address is the last one in the
    proxy's ``X-Forwarded-For``. Required (or ``tls_cert``) to listen on a non-loopback
    address."""
    metrics_token: str = ""
    """A bearer token for ``GET /metrics`` (``HOTLINE_METRICS_TOKEN`` in the environment
    wins); empty: ``/metrics`` is open."""
    connections: StreamLimits = HTTP_LIMITS
    """``[http.connections]``: idle (keep-alive) and header timeouts, the largest request body,
    connection caps per source address and in total (hotline/http/guard.py)."""
    backlog: int = 512
    """The listening socket's accept backlog."""

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """``[security]``: brute-force lockout, session and token lifetimes."""

    max_failures: int = 5
    """Failed sign-ins (HTTP, SIP REGISTER, browser phone) on one account before it is locked."""
    lockout_seconds: float = 300.0
    """How long a lock lasts."""
    source_max_failures: int = 20
    """Failed sign-ins from one address, over all accounts, before the address is locked."""
    failure_window_seconds: float = 900.0
    """Failures older than this are forgotten."""
    session_hours: float = 12.0
    """How long a browser session (cookie) lasts."""
    token_days: float = 30.0
    """How long a script's bearer token (``POST /api/tokens``) lasts."""


@dataclass(frozen=True, slots=True)
class SipConfig:
    transports: tuple[str, ...] = ("udp", "tcp")
    realm: str = "hotline"
    """Digest realm for the registrar."""
    user_agent: str = "hotline"
    auth_algorithms: tuple[str, ...] = ("MD5",)
    """Digest algorithms offered, one challenge each, in this order (RFC 8760 §2.4). The
    default is MD5 alone because common phones fail on any other challenge: baresip 1.0
    (libre) gives up with ENOSYS when a SHA-256 challenge is present at all, and SIPp 3.6
    answers only the first one and knows only MD5. Set ``["SHA-256", "MD5"]`` or
    ``["SHA-256"]`` where the phones support RFC 8760."""
    nonce_ttl: float = 300.0
    min_expires: int = 60
    max_expires: int = 3600
    max_server_transactions: int = 20000
    """Past this many pending server transactions, new INVITEs get 503 + Retry-After."""
    max_loop_lag_ms: float = 250.0
    """Past this event-loop lag, new INVITEs get 503 + Retry-After."""
    retry_after: int = 5
    udp_receive_buffer: int = 4 * 1024 * 1024
    rtp_port_min: int = 20000
    rtp_port_max: int = 30000
    tcp: StreamLimits = field(default_factory=StreamLimits)
    """``[sip.tcp]``: limits of SIP over TCP and TLS connections."""
    tls: SipTlsSettings = field(default_factory=SipTlsSettings)
    """``[sip.tls]``: SIP over TLS (off without a certificate)."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """``[sip.limits]``: per-source request, retransmission and call limits, and the set-up
    bound (media_gateway/sip/limits.py)."""
    srtp: str = "off"
    """SRTP (SDES, RFC 4568) for phones' calls: ``off`` (plain RTP only), ``optional``
    (SRTP offers accepted, plain RTP offered) or ``required`` (plain offers refused with 488,
    RTP/SAVP offered). Trunks have their own ``srtp``."""
    srtp_over_plain_sip: bool = False
    """Allow SDES keys in SIP that is not TLS (UDP, TCP): anyone who reads that signalling
    can decrypt the media. Off, SRTP is only negotiated with peers talking SIP over TLS."""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    process: bool = True
    """Run media in its own process (uvloop); false runs it on the signalling loop."""
    prompts: tuple[str, ...] = ()
    """Prompt directories searched before the shipped ones (``<dir>/<lang>/<name>.wav``)."""
    language: str = "en"
    """Prompt language when a call has none chosen."""
    music_on_hold: str = "moh"
    """Prompt name (or spec) played to held callers."""
    rtp_timeout: float = 60.0
    """Seconds without RTP from a talking peer before its call is hung up; 0 = off."""
    rtp_start_timeout: float = 10.0
    """Seconds an answered inbound call may go without any RTP at all before it is hung up
    (cause ``no_media``), freeing its ports; 0 = off (only ``rtp_timeout`` then)."""
    max_calls_per_source: int | None = None
    """Inbound calls one source IP may hold at once (each holds an RTP port pair); past it,
    503 with Retry-After. None: half the RTP port pairs; 0: no limit. Trunks are exempt."""
    recordings_dir: str = ""
    """Where recordings go; default ``<data_dir>/recordings``."""


@dataclass(frozen=True, slots=True)
class AgentAccount:
    """An ``[[agents]]`` entry as the gateway sees it: who may register and take calls. Its
    routing settings are in ``Config.acd.agents[id]`` (an ``acd.config.AgentConfig``)."""

    id: str
    """Login name; also the SIP user the softphone registers as."""
    password: str | None = None
    """A plain-text password from the configuration (simple setups, tests); the staff file's
    hashes (``hotline passwd``) win over it."""
    name: str = ""
    extension: str = ""
    """Optional number other employees dial to reach this person directly."""
    skills: Mapping[str, int] = field(default_factory=dict)
    queues: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    role: str = "agent"
    """``agent``, ``supervisor`` (also takes calls) or ``admin``: what the staff API allows."""


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    name: str
    address: tuple[str, int]
    """Carrier or PSTN gateway (IP literal and port) that calls go to and come from."""
    username: str = ""
    password: str = ""
    register: bool = False
    expires: int = 600
    dids: Mapping[str, str] = field(default_factory=dict)
    """Dialled number (exact, or a prefix ending in ``*``) -> entry point name."""
    caller_id: str = ""
    """Number presented on outbound calls; empty keeps the caller's own."""
    caller_id_display: str = ""
    withhold_caller_id: bool = False
    srtp: str = "off"
    """SRTP (SDES) with this trunk: ``off``, ``optional`` or ``required`` (as ``[sip] srtp``)."""


ENTRY_KINDS = ("echo", "hotline", "ivr", "queue", "agent", "voicemail")


@dataclass(frozen=True, slots=True)
class EntryPoint:
    number: str
    """Dialled number (the Request-URI user) or DID that selects this entry point."""
    kind: str
    """``echo`` (answers and returns the caller's RTP), ``hotline`` (the service flow),
    ``ivr``/``queue``/``agent``/``voicemail`` (targets of later stages)."""
    target: str = ""
    """Flow, queue, agent or mailbox name, depending on ``kind``."""
    name: str = ""


@dataclass(frozen=True, slots=True)
class VoicemailConfig:
    """``[voicemail]``: how messages are recorded and how long they are kept."""

    max_seconds: float = 120.0
    """Longest message."""
    silence_seconds: float = 5.0
    """Silence that ends a message."""
    stop_digits: str = "#"
    """Keys that end a message."""
    keep_days: float = 30.0
    """Messages older than this are deleted (checked hourly)."""


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    """``[escalation]``: where overdue cases go, and how often the service looks for them."""

    policy: EscalationPolicy = field(default_factory=EscalationPolicy)
    check_seconds: float = 60.0
    """How often open cases past their due time are escalated."""


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """``[database]``: where case records, the engine log, queued work and the audit trail
    live: ``<data_dir>/cases.sqlite3`` by default, or a PostgreSQL database several hotline
    nodes share (docs/cluster.md)."""

    url: str = ""
    """``postgresql://user@host:port/dbname`` (libpq's URI; a password is better kept in
    ``PGPASSWORD`` or ``~/.pgpass`` than here); empty: SQLite in the data directory."""
    schema: str = "public"
    """The PostgreSQL schema the tables live in."""
    node: str = ""
    """This node's name among those sharing the database: its calls in progress and queued
    work are its own (a restart closes and re-queues only those). Empty for a single node."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``: this node is one of several (docs/cluster.md). Needs ``[database]`` with
    a PostgreSQL ``url`` and this node's ``node`` name; ``hotline serve --cluster`` turns it on."""

    enabled: bool = False
    """True when the file has a ``[cluster]`` section."""
    edge: tuple[str, int] | None = None
    """The edge (Kamailio): an agent whose phone registered through another node is rung
    through it, and the real source it passes in ``X-Hotline-Source`` is trusted from it."""
    brain: bool = True
    """Run a routing brain here (the active one, or a hot standby)."""
    lease_seconds: float = 3.0
    """The active brain's lease: a standby takes over within about 1-1.4 of these."""
    node_timeout_seconds: float = 10.0
    """A node silent this long is lost: its calls end, its cases close (``node_lost``) and
    its queued work moves to the active brain's node."""


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    server: ServerConfig
    sip: SipConfig
    agents: tuple[AgentAccount, ...]
    trunks: tuple[TrunkConfig, ...]
    entry_points: tuple[EntryPoint, ...]
    media: MediaConfig = field(default_factory=MediaConfig)
    acd: AcdConfig = field(default_factory=AcdConfig)
    """Queues and every agent's routing settings, as the ACD engine takes them."""
    ivr: IvrConfig = field(default_factory=IvrConfig)
    """The IVR flows (version 0; :func:`load_ivr` re-reads them for a live reload)."""
    voicemail: VoicemailConfig = field(default_factory=VoicemailConfig)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    text: str = ""
    """The file's text, kept so later checks can point at a line."""
    http: HttpConfig = field(default_factory=HttpConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def error(self, path: str, reason: str) -> ConfigError:
        """A ConfigError for ``path`` in this file, located to its line when possible."""
        return ConfigError.of([ConfigIssue(path, reason)], file=self.source, text=self.text)

    def agent(self, agent_id: str) -> AgentAccount | None:
        for a in self.agents:
            if a.id == agent_id:
                return a
        return None

    def entry_point(self, number: str) -> EntryPoint | None:
        for e in self.entry_points:
            if e.number == number:
                return e
        return None


# ---------------------------------------------------------------------------------------------
# The file's shape: pydantic models (the JSON Schema is generated from these)


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError("hotline", message)


def _ip(value: str, *, allow_wildcard: bool = True) -> str:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise _custom("expected an IP address (hotline resolves no names)") from None
    if not allow_wildcard and ip.is_unspecified:
        raise _custom("expected a specific address, not the wildcard")
    return value


def _hostport_checker(default_port: int) -> AfterValidator:
    def check(value: str) -> str:
        try:
            host, _ = parse_hostport(value, default_port=default_port)
        except ValueError as exc:
            raise PydanticCustomError(
                "hotline", 'expected "HOST:PORT" ({why})', {"why": str(exc)}
            ) from None
        _ip(host)
        return value

    return AfterValidator(check)


SipAddress = Annotated[str, _hostport_checker(5060), Field(description='"IP:PORT"')]
HttpAddress = Annotated[str, _hostport_checker(8080), Field(description='"IP:PORT"')]
Seconds = Annotated[float, Field(gt=0)]


class ServerModel(BaseModel):
    """``[server]``: listen addresses, data directory, logging."""

    model_config = STRICT

    sip: SipAddress = "127.0.0.1:5060"
    http: HttpAddress = "127.0.0.1:8080"
    data_dir: str = "var"
    advertised_address: Annotated[
        str, AfterValidator(lambda v: _ip(v, allow_wildcard=False) if v else v)
    ] = ""
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    staff_file: str = ""
    """The staff credentials file written by ``hotline passwd`` (relative to this file's
    directory); default ``<data_dir>/staff.toml``."""

    def build(self, base: Path | None = None) -> ServerConfig:
        sip_host, sip_port = parse_hostport(self.sip, default_port=5060)
        http_host, http_port = parse_hostport(self.http, default_port=8080)
        return ServerConfig(
            sip_host=sip_host,
            sip_port=sip_port,
            http_host=http_host,
            http_port=http_port,
            data_dir=self.data_dir,
            advertised_host=self.advertised_address,
            log_format=self.log_format,
            log_level=self.log_level,
            staff_file=_relative_to(base, self.staff_file),
        )


def _relative_to(base: Path | None, path: str) -> str:
    """``path`` resolved against ``base`` (the configuration file's directory)."""
    if not path or base is None or Path(path).is_absolute():
        return path
    return str(base / path)


def _metrics_token(value: str) -> str:
    if value and len(value) < 16:
        raise PydanticCustomError(
            "hotline", "expected at least 16 characters (or leave it out)", {"no_value": 1}
        )
    return value


class StreamLimitsModel(BaseModel):
    """``[sip.tcp]`` and ``[http.connections]``: limits of stream connections (their defaults
    differ; see docs/configuration.md)."""

    model_config = STRICT

    idle_timeout: Seconds = 120.0
    """Seconds without a complete message before the connection is closed."""
    message_timeout: Seconds = 10.0
    """Seconds a started message (HTTP: the first request's headers) may take."""
    max_message_bytes: int = Field(default=65536, ge=1024)
    """Largest message (SIP: headers and body; HTTP: request body)."""
    max_connections: int = Field(default=4096, ge=1)
    """Open connections in total; the newest over the cap is closed at once."""
    max_connections_per_source: int = Field(default=64, ge=1)
    """Open connections from one IP address; the newest over the cap is closed at once."""

    def build(self) -> StreamLimits:
        return StreamLimits(
            idle_timeout=self.idle_timeout,
            message_timeout=self.message_timeout,
            max_message_bytes=self.max_message_bytes,
            max_connections=self.max_connections,
            max_connections_per_source=self.max_connections_per_source,
        )


_HTTP_LIMITS_MODEL = StreamLimitsModel(
    idle_timeout=HTTP_LIMITS.idle_timeout,
    message_timeout=HTTP_LIMITS.message_timeout,
    max_message_bytes=HTTP_LIMITS.max_message_bytes,
    max_connections=HTTP_LIMITS.max_connections,
    max_connections_per_source=HTTP_LIMITS.max_connections_per_source,
)


class SipLimitsModel(BaseModel):
    """``[sip.limits]``: per-source limits and the set-up bound (0 switches a limit off). A
    source over a limit gets 503 with Retry-After for ``hold_seconds``; other sources are
    served. See docs/configuration.md."""

    model_config = STRICT

    packet_rate: float = Field(default=10_000.0, ge=0)
    """Datagrams per second from one source IP; past it they are dropped unparsed."""
    packet_burst: float = Field(default=20_000.0, ge=0)
    """...and at once."""
    request_rate: float = Field(default=1000.0, ge=0)
    """New out-of-dialog requests per second from one source IP."""
    request_burst: float = Field(default=2000.0, ge=0)
    """...and at once."""
    retransmission_rate: float = Field(default=10.0, ge=0)
    """Absorbed retransmissions per second from one source IP; past it they are dropped."""
    retransmission_burst: float = Field(default=20.0, ge=0)
    """...and at once."""
    retransmissions_per_request: float = Field(default=1.0, ge=0)
    """More retransmissions allowed to a source for each new request it sends."""
    calls_in_setup_per_source: int = Field(default=100, ge=0)
    """Inbound INVITEs from one source IP waiting for their first answer."""
    calls_up_per_source: int = Field(default=5000, ge=0)
    """Answered inbound calls from one source IP."""
    max_calls_in_setup: int = Field(default=200, ge=0)
    """The set-up bound: INVITEs waiting for their first answer, from all sources."""
    max_setup_age: float = Field(default=1.0, ge=0)
    """The set-up bound: seconds the oldest waiting INVITE may wait before new ones get 503."""
    hold_seconds: Seconds = 5.0
    """How long a source stays limited after its last excess (its Retry-After)."""
    max_sources: int = Field(default=100_000, ge=1)
    """Source addresses whose rates are tracked (the least recently seen are forgotten)."""
    trusted: list[Annotated[str, AfterValidator(lambda v: _ip(v, allow_wildcard=False))]] = []
    """Source IPs exempt from the per-source limits (a SIP proxy or SBC in front, carrying many
    callers); the trunks' addresses are always exempt. The set-up bound still applies."""

    def build(self) -> LimitsConfig:
        return LimitsConfig(
            packet_rate=self.packet_rate,
            packet_burst=self.packet_burst,
            request_rate=self.request_rate,
            request_burst=self.request_burst,
            retransmission_rate=self.retransmission_rate,
            retransmission_burst=self.retransmission_burst,
            retransmissions_per_request=self.retransmissions_per_request,
            calls_in_setup_per_source=self.calls_in_setup_per_source,
            calls_up_per_source=self.calls_up_per_source,
            max_calls_in_setup=self.max_calls_in_setup,
            max_setup_age=self.max_setup_age,
            hold=self.hold_seconds,
            max_sources=self.max_sources,
            trusted=frozenset(self.trusted),
        )


class SipTlsModel(BaseModel):
    """``[sip.tls]``: SIP over TLS; on when ``cert`` is given."""

    model_config = STRICT

    port: int = Field(default=5061, ge=1, le=65535)
    """The TLS port, on the ``[server] sip`` address's host."""
    cert: str = ""
    """PEM certificate (chain) file (relative to this file's directory)."""
    key: str = ""
    """PEM private key file of ``cert``."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> SipTlsModel:
        if bool(self.cert) != bool(self.key):
            missing = "key" if self.cert else "cert"
            raise PydanticCustomError("hotline", "cert and key go together", {"key": missing})
        return self

    def build(self, base: Path | None = None) -> SipTlsSettings:
        return SipTlsSettings(
            port=self.port, cert=_relative_to(base, self.cert), key=_relative_to(base, self.key)
        )


class HttpModel(BaseModel):
    """``[http]``: HTTPS, a TLS-terminating proxy in front, the metrics token."""

    model_config = STRICT

    tls_cert: str = ""
    """PEM certificate (chain) file: the node serves HTTPS."""
    tls_key: str = ""
    """PEM private key file of ``tls_cert``."""
    behind_tls_proxy: bool = False
    """A reverse proxy terminates TLS in front of this node (required, or TLS, to listen on
    a non-loopback address)."""
    metrics_token: Annotated[
        str, AfterValidator(_metrics_token), WithJsonSchema({"type": "string", "minLength": 16})
    ] = ""
    """A bearer token for ``GET /metrics``; empty: open (``HOTLINE_METRICS_TOKEN`` wins)."""
    connections: StreamLimitsModel = _HTTP_LIMITS_MODEL
    """Idle and header timeouts, the largest body, connection caps."""
    backlog: int = Field(default=512, ge=1)
    """The listening socket's accept backlog."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> HttpModel:
        if bool(self.tls_cert) != bool(self.tls_key):
            missing = "tls_key" if self.tls_cert else "tls_cert"
            raise PydanticCustomError(
                "hotline", "tls_cert and tls_key go together", {"key": missing}
            )
        return self

    def build(self, base: Path | None = None) -> HttpConfig:
        return HttpConfig(
            tls_cert=_relative_to(base, self.tls_cert),
            tls_key=_relative_to(base, self.tls_key),
            behind_tls_proxy=self.behind_tls_proxy,
            metrics_token=self.metrics_token,
            connections=self.connections.build(),
            backlog=self.backlog,
        )


class SecurityModel(BaseModel):
    """``[security]``: brute-force lockout (HTTP sign-in, SIP REGISTER, browser phone),
    session and token lifetimes."""

    model_config = STRICT

    max_failures: int = Field(default=5, ge=1)
    lockout_seconds: Seconds = 300.0
    source_max_failures: int = Field(default=20, ge=1)
    failure_window_seconds: Seconds = 900.0
    session_hours: Seconds = 12.0
    token_days: Seconds = 30.0

    def build(self) -> SecurityConfig:
        return SecurityConfig(
            max_failures=self.max_failures,
            lockout_seconds=self.lockout_seconds,
            source_max_failures=self.source_max_failures,
            failure_window_seconds=self.failure_window_seconds,
            session_hours=self.session_hours,
            token_days=self.token_days,
        )


def exposure_issue(host: str, http: HttpConfig, *, path: str) -> ConfigIssue | None:
    """Plain HTTP on a non-loopback address is refused: sign-in passwords and session cookies
    would cross the network in clear. TLS (``[http] tls_cert``/``tls_key``) or a proxy that
    terminates it (``[http] behind_tls_proxy = true``) is required there."""
    if http.tls or http.behind_tls_proxy:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return ConfigIssue(
        path,
        f"plain HTTP on {host}, which is not a loopback address: set [http] tls_cert and "
        "tls_key to serve HTTPS, or [http] behind_tls_proxy = true when a proxy in front "
        "terminates TLS",
    )


def _rtp_ports(value: list[int]) -> list[int]:
    if len(value) != 2 or not 1024 <= value[0] < value[1] <= 65535:
        raise _custom("expected [LOW, HIGH] within 1024-65535")
    return value


class SipModel(BaseModel):
    """``[sip]``: transports, registrar, overload limits, RTP ports."""

    model_config = STRICT

    transports: Annotated[list[Literal["udp", "tcp"]], Field(min_length=1)] = ["udp", "tcp"]
    realm: str = "hotline"
    user_agent: str = "hotline"
    auth_algorithms: Annotated[list[Literal["SHA-256", "MD5"]], Field(min_length=1)] = ["MD5"]
    nonce_ttl: Seconds = 300.0
    min_expires: int = Field(default=60, ge=1)
    max_expires: int = Field(default=3600, ge=1)
    max_server_transactions: int = Field(default=20000, ge=1)
    max_loop_lag_ms: Seconds = 250.0
    retry_after: int = Field(default=5, ge=1)
    udp_receive_buffer: int = Field(default=4 * 1024 * 1024, ge=65536)
    rtp_ports: Annotated[
        list[int],
        AfterValidator(_rtp_ports),
        WithJsonSchema(
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 1024, "maximum": 65535},
                "minItems": 2,
                "maxItems": 2,
            }
        ),
    ] = [20000, 30000]
    tcp: StreamLimitsModel = StreamLimitsModel()
    """SIP over TCP and TLS: timeouts, the largest message, connection caps."""
    tls: SipTlsModel = SipTlsModel()
    """SIP over TLS: port, certificate and key."""
    limits: SipLimitsModel = SipLimitsModel()
    """Per-source request, retransmission and call limits; the set-up bound."""
    srtp: Literal["off", "optional", "required"] = "off"
    """SRTP (SDES) for phones: off, optional (accept SRTP offers) or required (488 to plain)."""
    srtp_over_plain_sip: bool = False
    """Allow SDES keys over SIP that is not TLS (tests, trusted networks only)."""

    @model_validator(mode="after")
    def _expires_order(self) -> SipModel:
        if self.max_expires < self.min_expires:
            raise PydanticCustomError(
                "hotline",
                "must be >= min_expires ({minimum})",
                {"key": "max_expires", "minimum": self.min_expires},
            )
        return self

    def build(self, base: Path | None = None) -> SipConfig:
        return SipConfig(
            transports=tuple(self.transports),
            realm=self.realm,
            user_agent=self.user_agent,
            auth_algorithms=tuple(self.auth_algorithms),
            nonce_ttl=self.nonce_ttl,
            min_expires=self.min_expires,
            max_expires=self.max_expires,
            max_server_transactions=self.max_server_transactions,
            max_loop_lag_ms=self.max_loop_lag_ms,
            retry_after=self.retry_after,
            udp_receive_buffer=self.udp_receive_buffer,
            rtp_port_min=self.rtp_ports[0],
            rtp_port_max=self.rtp_ports[1],
            tcp=self.tcp.build(),
            tls=self.tls.build(base),
            limits=self.limits.build(),
            srtp=self.srtp,
            srtp_over_plain_sip=self.srtp_over_plain_sip,
        )


class MediaModel(BaseModel):
    """``[media]``: the media process, prompts, music on hold, RTP timeout, recordings."""

    model_config = STRICT

    process: bool = True
    prompts: list[str] = []
    language: str = "en"
    music_on_hold: str = "moh"
    rtp_timeout: Annotated[float, Field(ge=0)] = 60.0
    rtp_start_timeout: Annotated[float, Field(ge=0)] = 10.0
    max_calls_per_source: Annotated[int, Field(ge=0)] | None = None
    recordings_dir: str = ""

    def build(self) -> MediaConfig:
        return MediaConfig(
            process=self.process,
            prompts=tuple(self.prompts),
            language=self.language,
            music_on_hold=self.music_on_hold,
            rtp_timeout=self.rtp_timeout,
            rtp_start_timeout=self.rtp_start_timeout,
            max_calls_per_source=self.max_calls_per_source,
            recordings_dir=self.recordings_dir,
        )


def _sip_user(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._~!$&'()*+,;=-]+", value):
        raise _custom("not usable as a SIP user name")
    return value


def _password(value: str) -> str:
    if len(value) < 4:
        raise PydanticCustomError("hotline", "expected at least 4 characters", {"no_value": 1})
    return value


class AgentModel(AgentRouting):
    """An ``[[agents]]`` entry: the login, and every routing key of an ACD agent (skills,
    queues, groups, max_misses, wrap_up_seconds, priority, ...)."""

    id: Annotated[
        str,
        AfterValidator(_sip_user),
        WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9._~!$&'()*+,;=-]+$"}),
    ]
    password: (
        Annotated[
            str, AfterValidator(_password), WithJsonSchema({"type": "string", "minLength": 4})
        ]
        | None
    ) = None
    """A plain-text password (simple setups and tests; ``hotline check-config`` warns). Better:
    leave it out and run ``hotline passwd ID``, which writes hashes to the staff file."""
    extension: str = ""
    role: Literal["agent", "supervisor", "admin"] = "agent"
    """What this staff member may do through the API: ``agent`` (their own work),
    ``supervisor`` (the floor, routing, anyone's state; also takes calls), ``admin`` (all)."""

    def account(self) -> AgentAccount:
        return AgentAccount(
            id=self.id,
            password=self.password,
            name=self.name or self.id,
            extension=self.extension,
            skills=dict(self.skills),
            queues=tuple(self.queues),
            groups=tuple(self.groups),
            role=self.role,
        )

    def routing(self) -> AgentRouting:
        """The routing part, as an ``[acd.agents.ID]`` table would give it."""
        given = {
            k: getattr(self, k) for k in self.model_fields_set if k in AgentRouting.model_fields
        }
        given.setdefault("name", self.name or self.id)
        return AgentRouting.model_construct(_fields_set=set(given), **given)


class TrunkModel(BaseModel):
    """A ``[[trunks]]`` entry: a carrier or PSTN gateway."""

    model_config = STRICT

    name: Name
    address: SipAddress
    username: str = ""
    password: str = ""
    register_: bool = Field(default=False, alias="register")
    """``register`` in the file (the attribute name is taken by pydantic)."""
    expires: int = Field(default=600, ge=30)
    dids: dict[str, str] = {}
    caller_id: str = ""
    caller_id_display: str = ""
    withhold_caller_id: bool = False
    srtp: Literal["off", "optional", "required"] = "off"
    """SRTP (SDES) with this trunk: off, optional or required."""

    @model_validator(mode="after")
    def _register_needs_user(self) -> TrunkModel:
        if self.register_ and not self.username:
            raise PydanticCustomError(
                "hotline", "is required when register = true", {"key": "username"}
            )
        return self

    def build(self) -> TrunkConfig:
        return TrunkConfig(
            name=self.name,
            address=parse_hostport(self.address, default_port=5060),
            username=self.username,
            password=self.password,
            register=self.register_,
            expires=self.expires,
            dids=dict(self.dids),
            caller_id=self.caller_id,
            caller_id_display=self.caller_id_display,
            withhold_caller_id=self.withhold_caller_id,
            srtp=self.srtp,
        )


class EntryPointModel(BaseModel):
    """``"NUMBER" = { kind = "...", target = "...", name = "..." }``."""

    model_config = STRICT

    kind: Literal["echo", "hotline", "ivr", "queue", "agent", "voicemail"]
    target: str = ""
    name: str = ""


def _stop_digits(value: str) -> str:
    if not value or any(c not in "0123456789*#ABCD" for c in value):
        raise _custom('expected keys such as "#"')
    return value


class VoicemailModel(BaseModel):
    """``[voicemail]``."""

    model_config = STRICT

    max_seconds: Seconds = 120.0
    silence_seconds: Seconds = 5.0
    stop_digits: Annotated[
        str,
        AfterValidator(_stop_digits),
        WithJsonSchema({"type": "string", "pattern": "^[0-9*#A-D]+$"}),
    ] = "#"
    keep_days: Seconds = 30.0

    def build(self) -> VoicemailConfig:
        return VoicemailConfig(
            max_seconds=self.max_seconds,
            silence_seconds=self.silence_seconds,
            stop_digits=self.stop_digits,
            keep_days=self.keep_days,
        )


class EscalationModel(BaseModel):
    """``[escalation]``: an open case past its due time (set by a supervisor) goes to the
    first level of ``chain``, then one level further every ``step_after_seconds``."""

    model_config = STRICT

    chain: Annotated[list[str], Field(min_length=1)] = ["workgroup_lead", "supervisor", "manager"]
    """Level names, lowest first."""
    workgroup_leads: dict[str, str] = {}
    """Workgroup -> staff id (the ``workgroup_lead`` level)."""
    targets: dict[str, dict[str, str]] = {}
    """Level -> (workgroup, or ``"*"`` for any) -> staff id, for the other levels."""
    step_after_seconds: Seconds = 3600.0
    check_seconds: Seconds = 60.0

    def build(self) -> EscalationConfig:
        return EscalationConfig(
            policy=EscalationPolicy(
                chain=tuple(self.chain),
                workgroup_leads=dict(self.workgroup_leads),
                targets={k: dict(v) for k, v in self.targets.items()},
                step_after_seconds=self.step_after_seconds,
            ),
            check_seconds=self.check_seconds,
        )


def _database_url(value: str) -> str:
    if value and not re.match(r"postgres(ql)?://", value):
        raise _custom('expected "postgresql://USER@HOST:PORT/DBNAME" (or leave it out for SQLite)')
    return value


class DatabaseModel(BaseModel):
    """``[database]``: the case store. Left out: SQLite in ``[server] data_dir``; ``url``: a
    PostgreSQL database, which several hotline nodes may share."""

    model_config = STRICT

    url: Annotated[str, AfterValidator(_database_url)] = ""
    schema_name: Annotated[str, Field(alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = (
        "public"
    )
    node: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{0,64}$")] = ""

    def build(self) -> DatabaseConfig:
        return DatabaseConfig(url=self.url, schema=self.schema_name, node=self.node)


class ClusterModel(BaseModel):
    """``[cluster]``: one of several hotline nodes behind an edge, sharing one PostgreSQL
    record and one routing brain (docs/cluster.md)."""

    model_config = STRICT

    edge: SipAddress | None = None
    """The edge (Kamailio) "IP:PORT"."""
    brain: bool = True
    """Run a routing brain (active or hot standby) on this node."""
    lease_seconds: Annotated[float, Field(gt=0.5, le=60)] = 3.0
    node_timeout_seconds: Annotated[float, Field(gt=1, le=600)] = 10.0

    def build(self) -> ClusterConfig:
        edge = parse_hostport(self.edge, default_port=5060) if self.edge else None
        return ClusterConfig(
            enabled=True,
            edge=edge,
            brain=self.brain,
            lease_seconds=self.lease_seconds,
            node_timeout_seconds=self.node_timeout_seconds,
        )


class ConfigModel(BaseModel):
    """The whole file. ``entry_points`` is the one required section: a service that no number
    leads to does nothing."""

    model_config = STRICT

    server: ServerModel = ServerModel()
    http: HttpModel = HttpModel()
    security: SecurityModel = SecurityModel()
    sip: SipModel = SipModel()
    media: MediaModel = MediaModel()
    agents: list[AgentModel] = []
    trunks: list[TrunkModel] = []
    acd: AcdModel = AcdModel()
    ivr: IvrModel | None = None
    voicemail: VoicemailModel = VoicemailModel()
    escalation: EscalationModel = EscalationModel()
    database: DatabaseModel = DatabaseModel()
    cluster: ClusterModel | None = None
    entry_points: dict[str, EntryPointModel] = Field(
        default={}, json_schema_extra={"minProperties": 1}
    )

    model_config = ConfigDict(**STRICT, json_schema_extra={"required": ["entry_points"]})

    def build(
        self,
        *,
        source: str,
        raw: Mapping[str, Any],
        text: str,
        issues: list[ConfigIssue] | None = None,
        pruned: _Pruned | None = None,
    ) -> Config:
        """The typed configuration; raises :class:`ConfigError` with every cross-reference
        mistake (the shapes were checked by pydantic already) plus ``issues`` found before.
        ``pruned`` says which parts of the file were left out because pydantic refused them, so
        their names still count as defined and list positions stay the user's."""
        issues = list(issues or [])
        pruned = pruned or _Pruned()
        first = len(issues)
        agent_pos = pruned.positions.get("agents") or list(range(len(self.agents)))
        trunk_pos = pruned.positions.get("trunks") or list(range(len(self.trunks)))
        index: dict[str, int] = {}
        for i, a in enumerate(self.agents):
            if a.id in index:
                issues.append(
                    ConfigIssue(f"agents[{agent_pos[i]}].id", f"duplicate agent id {a.id!r}")
                )
            else:
                index[a.id] = agent_pos[i]
        acd = self.acd.build({a.id: a.routing() for a in self.agents})
        for issue in acd.issues(path="acd"):
            # an [[agents]] entry's unknown queue is reported where the user wrote it
            m = re.fullmatch(r"acd\.agents\.(.+)\.queues\.(.+)", issue.path)
            if m and m.group(1) in index and m.group(1) not in self.acd.agents:
                at = index[m.group(1)]
                issues.append(ConfigIssue(f"agents[{at}].queues", f"unknown queue {m.group(2)!r}"))
            else:
                issues.append(issue)
        ivr_cfg, ivr_issues = (
            self.ivr.build(path="ivr") if self.ivr is not None else (IvrConfig(), [])
        )
        issues += ivr_issues
        queues = set(acd.queues) | pruned.names
        flows = set(ivr_cfg.flows) | pruned.names
        agent_ids = set(index) | pruned.names
        for fname, flow in ivr_cfg.flows.items():
            for node in flow.nodes.values():
                q = node.get("queue")
                kind = node.type
                routed = kind in ("queue", "voicemail", "queue_state")
                if routed and isinstance(q, str) and q not in queues:
                    issues.append(
                        ConfigIssue(
                            f"ivr.flows.{fname}.nodes.{node.name}.queue",
                            f"names queue {q!r}, which [acd.queues] does not define",
                        )
                    )
        entry_points = tuple(
            EntryPoint(number=n, kind=e.kind, target=e.target, name=e.name)
            for n, e in self.entry_points.items()
        )
        extensions = {a.extension: a.id for a in self.agents if a.extension}
        for ep in entry_points:
            path = f"entry_points.{ep.number}"
            if ep.number in extensions:
                issues.append(
                    ConfigIssue(
                        path,
                        f"is also the extension of agent {extensions[ep.number]!r}: "
                        "pick another number",
                    )
                )
            if ep.kind in ("queue", "agent", "ivr") and not ep.target:
                issues.append(ConfigIssue(f"{path}.target", f"is required for kind = {ep.kind!r}"))
            elif ep.kind in ("queue", "voicemail") and ep.target not in queues:
                issues.append(
                    ConfigIssue(
                        f"{path}.target",
                        f"names queue {ep.target!r}, which [acd.queues] does not define",
                    )
                )
            elif ep.kind == "ivr" and ep.target not in flows:
                issues.append(
                    ConfigIssue(
                        f"{path}.target",
                        f"names flow {ep.target!r}, which [ivr.flows] does not define",
                    )
                )
            elif ep.kind == "agent" and ep.target not in agent_ids:
                issues.append(
                    ConfigIssue(
                        f"{path}.target",
                        f"names agent {ep.target!r}, which [[agents]] does not define",
                    )
                )
        names = {ep.number for ep in entry_points} | {ep.name for ep in entry_points if ep.name}
        names |= pruned.names
        for t, trunk in enumerate(self.trunks):
            for did, entry in trunk.dids.items():
                if entry not in names:
                    issues.append(
                        ConfigIssue(
                            f"trunks[{trunk_pos[t]}].dids.{did}",
                            f"names entry point {entry!r}, which entry_points does not define",
                        )
                    )
        esc = self.escalation
        people = [
            (f"escalation.workgroup_leads.{g}", who) for g, who in esc.workgroup_leads.items()
        ]
        people += [
            (f"escalation.targets.{level}.{g}", who)
            for level, by_group in esc.targets.items()
            for g, who in by_group.items()
        ]
        for path, who in people:
            if who not in agent_ids:
                issues.append(ConfigIssue(path, f"names {who!r}, whom [[agents]] does not define"))
        for level in esc.targets:
            if level not in esc.chain:
                issues.append(
                    ConfigIssue(
                        f"escalation.targets.{level}", f"is not a level of the chain {esc.chain}"
                    )
                )
        if self.cluster is not None:
            if not self.database.url:
                issues.append(
                    ConfigIssue("cluster", "needs [database] url: the nodes share PostgreSQL")
                )
            if not self.database.node:
                issues.append(ConfigIssue("cluster", "needs [database] node: this node's name"))
        base = _config_dir(source)
        http = self.http.build(base)
        server = self.server.build(base)
        exposed = exposure_issue(server.http_host, http, path="server.http")
        if exposed is not None:
            issues.append(exposed)
        # a reference to something pydantic refused is not a second mistake
        issues[first:] = [
            i for i in issues[first:] if not any(repr(n) in i.reason for n in pruned.names)
        ]
        tail = _required(raw)
        if issues or tail:
            raise ConfigError.of(issues, file=source, text=text, tail=tail)
        return Config(
            source=source,
            server=server,
            sip=self.sip.build(base),
            media=self.media.build(),
            agents=tuple(a.account() for a in self.agents),
            trunks=tuple(t.build() for t in self.trunks),
            entry_points=entry_points,
            acd=acd,
            ivr=ivr_cfg,
            voicemail=self.voicemail.build(),
            escalation=self.escalation.build(),
            text=text,
            http=http,
            security=self.security.build(),
            database=self.database.build(),
            cluster=self.cluster.build() if self.cluster is not None else ClusterConfig(),
        )


BUILT_IN_DEMO = "<built-in demo.toml>"


def _config_dir(source: str) -> Path:
    """The directory relative paths in a configuration are resolved against: the file's own
    (the package's for the built-in demo, whose staff file ships beside it)."""
    if source == BUILT_IN_DEMO:
        return Path(str(resources.files("hotline")))
    return Path(source).parent


# ---------------------------------------------------------------------------------------------
# Loading


def _toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else None
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError("", f"TOML syntax error: {reason}", file=file, line=line) from None


def parse_config(text: str, *, file: str = "<config>") -> Config:
    """Parse and validate configuration text; raises :class:`ConfigError` listing every
    mistake, each ``file:line: key.path: reason``."""
    data = _toml(text, file)
    if not data:
        raise ConfigError(
            "",
            "the file is empty: a configuration needs at least an [entry_points] table "
            "(docs/configuration.md; hotline/demo.toml is a complete example)",
            file=file,
            line=1,
        )
    try:
        model = ConfigModel.model_validate(data)
    except ValidationError as exc:
        issues = issues_from_pydantic(exc, model=ConfigModel)
        # Check the references of the parts pydantic accepted too, so one run reports every
        # mistake: leave out what it refused and validate again.
        pruned = _prune(data, exc)
        try:
            model = ConfigModel.model_validate(pruned.data)
        except ValidationError:
            raise ConfigError.of(issues, file=file, text=text, tail=_required(data)) from None
        model.build(source=file, raw=data, text=text, issues=issues, pruned=pruned)
        raise AssertionError("unreachable: build raises with the issues given") from None
    return model.build(source=file, raw=data, text=text)


def _required(data: Mapping[str, Any]) -> list[ConfigIssue]:
    """What every file must have: entry points (a service no number leads to does nothing).
    Reported after the other mistakes, which say more about a half-written file."""
    if data.get("entry_points"):
        return []
    return [
        ConfigIssue(
            "entry_points",
            'expected at least one entry point, e.g. [entry_points] "1000" = { kind = "hotline" }',
        )
    ]


@dataclass
class _Pruned:
    """A document with the parts pydantic refused left out (see :func:`_prune`)."""

    data: dict[str, Any] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    """Names of refused queues, agents, flows and entry points: defined, though invalid."""
    sections: set[str] = field(default_factory=set)
    """Top-level sections left out whole."""
    positions: dict[str, list[int]] = field(default_factory=dict)
    """For ``agents`` and ``trunks``: the file's index of each item kept."""


def _prune(data: Mapping[str, Any], exc: ValidationError) -> _Pruned:
    """``data`` without what pydantic refused: a wrong value is removed (its default applies);
    a table missing a required key, or refused as a whole, is removed with its name kept."""
    out = _Pruned(data=copy.deepcopy(dict(data)))
    drop: dict[tuple[str | int, ...], set[int]] = {}
    for e in exc.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p != "[key]")
        if e["type"] == "missing":
            loc = loc[:-1]
        if not loc:
            continue
        parent: Any = out.data
        for part in loc[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        last = loc[-1]
        if isinstance(parent, dict):
            removed = parent.pop(last, None)
            if len(loc) == 1:
                out.sections.add(str(last))
            if (len(loc) == 3 and (loc[0], loc[1]) in _NAMED) or loc[:1] == ("entry_points",):
                out.names.add(str(last))
                if isinstance(removed, Mapping) and removed.get("name"):
                    out.names.add(str(removed["name"]))
        elif isinstance(parent, list) and isinstance(last, int):
            drop.setdefault(loc[:-1], set()).add(last)
            if loc[:-1] == ("agents",) and isinstance(parent[last], Mapping):
                out.names.add(str(parent[last].get("id", "")))
    for where, dropped in sorted(drop.items(), key=lambda x: -len(x[0])):
        container: Any = out.data
        for part in where:
            container = container[part]
        kept = [i for i in range(len(container)) if i not in dropped]
        container[:] = [container[i] for i in kept]
        if len(where) == 1:
            out.positions[str(where[0])] = kept
    out.names.discard("")
    return out


_NAMED = {("acd", "queues"), ("acd", "agents"), ("ivr", "flows")}


def _read(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        text = resources.files("hotline").joinpath("demo.toml").read_text(encoding="utf-8")
        return text, BUILT_IN_DEMO
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(p)
        ) from None


def load_config(path: str | Path | None) -> Config:
    """Load a configuration file, or the built-in demo configuration when ``path`` is None."""
    text, file = _read(path)
    return parse_config(text, file=file)


def load_ivr(path: str | Path, *, version: int) -> IvrConfig:
    """Re-read ``path`` for a live IVR reload (``POST /api/ivr/reload``): the new flows with
    ``version``, checked against the same file's queues. The whole file is validated, so an edit
    that broke another section is refused too; raises :class:`ConfigError` listing every
    mistake with its file and line."""
    config = load_config(path)
    return dataclasses.replace(config.ivr, version=version)


def with_overrides(
    config: Config, *, sip: str | None = None, http: str | None = None, data: str | None = None
) -> Config:
    """Apply ``hotline serve`` command-line overrides (they win over the file)."""
    server = config.server
    issues: list[ConfigIssue] = []
    for option, value, default_port in (("--sip", sip, 5060), ("--http", http, 8080)):
        if value is None:
            continue
        try:
            host, port = parse_hostport(value, default_port=default_port)
            ipaddress.ip_address(host)
        except ValueError as exc:
            issues.append(ConfigIssue(option, f'expected "IP:PORT" ({exc}), got {value!r}'))
            continue
        if option == "--sip":
            server = dataclasses.replace(server, sip_host=host, sip_port=port)
        else:
            exposed = exposure_issue(host, config.http, path=option)
            if exposed is not None:
                issues.append(exposed)
                continue
            server = dataclasses.replace(server, http_host=host, http_port=port)
    if issues:
        raise ConfigError.of(issues, file="<command line>")
    if data is not None:
        server = dataclasses.replace(server, data_dir=data)
    return dataclasses.replace(config, server=server)


class _NoNullSchema(GenerateJsonSchema):
    """TOML has no null: an optional key is simply left out, so ``X | None`` is shown as ``X``."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> dict[str, Any]:
        return self.generate_inner(schema["schema"])


def config_schema() -> dict[str, Any]:
    """The JSON Schema of hotline's TOML files (``hotline config-schema``): a service
    configuration, or a simulator scenario (``hotline sim run``), generated from the models."""
    from pydantic.json_schema import models_json_schema

    from sim.scenario import ScenarioModel, WorkloadModel

    refs, schema = models_json_schema(
        [(ConfigModel, "validation"), (ScenarioModel, "validation"), (WorkloadModel, "validation")],
        schema_generator=_NoNullSchema,
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hotline configuration",
        "description": "A service configuration (hotline serve), a simulator scenario or a "
        "simulator workload (hotline sim run). Generated by `hotline config-schema`.",
        "anyOf": [refs[(m, "validation")] for m in (ConfigModel, ScenarioModel, WorkloadModel)],
        **schema,
    }
