"""Configuration: one TOML file, validated once at start-up.

Every section becomes a frozen dataclass documented field by field. A bad file stops start-up
with a ``ConfigError`` naming the file, the line (when it can be found), the key path and the
reason, for example::

    demo.toml:42: agents[1].skills.sales: expected a skill level 1-10, got 12

Sections the gateway owns (``server``, ``sip``, ``agents``, ``trunks``, ``entry_points``) are
validated here. The ACD's routing section (``queues``, ``acd``) is validated by
``acd.config`` and attached as ``Config.acd_raw`` so the composition root can hand it on.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, line, key and reason."""

    def __init__(self, reason: str, *, path: str = "", file: str = "", line: int | None = None):
        self.reason = reason
        self.path = path
        self.file = file
        self.line = line
        where = file or "<config>"
        if line is not None:
            where += f":{line}"
        key = f" {path}:" if path else ""
        super().__init__(f"{where}:{key} {reason}")


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

    @property
    def public_host(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        if self.sip_host in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return self.sip_host


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
    recordings_dir: str = ""
    """Where recordings go; default ``<data_dir>/recordings``."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    id: str
    """Login name; also the SIP user the softphone registers as."""
    password: str
    name: str = ""
    extension: str = ""
    """Optional number other employees dial to reach this person directly."""
    skills: Mapping[str, int] = field(default_factory=dict)
    queues: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


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
class Config:
    source: str
    server: ServerConfig
    sip: SipConfig
    agents: tuple[AgentConfig, ...]
    trunks: tuple[TrunkConfig, ...]
    entry_points: tuple[EntryPoint, ...]
    media: MediaConfig = field(default_factory=MediaConfig)
    acd_raw: Mapping[str, Any] = field(default_factory=dict)
    """The ``acd`` and ``queues`` sections, validated by ``acd.config``."""
    ivr_raw: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    """The file's text, kept so later validators can point at a line."""

    def error(self, path: str, reason: str) -> ConfigError:
        """A ConfigError for ``path`` in this file, located to its line when possible."""
        return _Ctx(self.source, self.text).error(path, reason)

    def agent(self, agent_id: str) -> AgentConfig | None:
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
# Loading and validation


class _Ctx:
    """Carries the file name and text so errors can be located to a line."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()

    def error(self, path: str, reason: str) -> ConfigError:
        return ConfigError(reason, path=path, file=self.file, line=self.locate(path))

    def locate(self, path: str) -> int | None:
        """Best-effort line of a key path such as ``agents[1].skills.sales`` or
        ``acd.queues.sales.max_wait``: the longest table header that prefixes the path (the
        n-th one for ``[[arrays]]``), then the deepest key found under it. A missing key is
        reported at its table's line."""
        parts = re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
        names: list[str] = []
        index: list[int | None] = []
        for name, idx in parts:
            if name:
                names.append(name)
                index.append(None)
            elif index:
                index[-1] = int(idx)
        if not names:
            return None
        headers: list[tuple[int, list[str]]] = []
        for i, line in enumerate(self.lines):
            m = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
            if m:
                headers.append((i, [p.strip().strip('"') for p in m.group(1).split(".")]))
        start, depth = -1, 0
        for k in range(len(names), 0, -1):
            prefix = names[:k]
            matches = [i for i, h in headers if h == prefix]
            if not matches:
                continue
            want = index[k - 1]
            if want is not None:
                if want < len(matches):
                    start, depth = matches[want], k
                    break
                continue
            start, depth = matches[0], k
            break
        end = len(self.lines)
        for i, _ in headers:
            if i > start:
                end = i
                break
        for name in reversed(names[depth:]):
            key_re = re.compile(r"^\s*\"?" + re.escape(name) + r"\"?\s*=")
            inline_re = re.compile(r"[{,]\s*\"?" + re.escape(name) + r"\"?\s*=")
            for i in range(start + 1, end):
                line = self.lines[i]
                if key_re.match(line) or inline_re.search(line):
                    return i + 1
        return start + 1 if start >= 0 else (1 if self.lines else None)


def _str(ctx: _Ctx, d: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    if key not in d:
        if default is None:
            raise ctx.error(f"{path}.{key}" if path else key, "is required")
        return default
    v = d[key]
    if not isinstance(v, str):
        raise ctx.error(f"{path}.{key}" if path else key, f"expected a string, got {v!r}")
    return v


def _int(
    ctx: _Ctx,
    d: Mapping[str, Any],
    key: str,
    path: str,
    default: int,
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> int:
    v = d.get(key, default)
    full = f"{path}.{key}" if path else key
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.error(full, f"expected an integer, got {v!r}")
    if lo is not None and v < lo:
        raise ctx.error(full, f"expected an integer >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ctx.error(full, f"expected an integer <= {hi}, got {v}")
    return v


def _float(
    ctx: _Ctx, d: Mapping[str, Any], key: str, path: str, default: float, *, positive: bool = True
) -> float:
    v = d.get(key, default)
    full = f"{path}.{key}" if path else key
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ctx.error(full, f"expected a number, got {v!r}")
    if positive and v <= 0:
        raise ctx.error(full, f"expected a number > 0, got {v}")
    return float(v)


def _bool(ctx: _Ctx, d: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ctx.error(f"{path}.{key}", f"expected true or false, got {v!r}")
    return v


def _str_list(ctx: _Ctx, d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ctx.error(f"{path}.{key}", f"expected a list of strings, got {v!r}")
    return tuple(v)


def _table(ctx: _Ctx, d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = d.get(key, {})
    if not isinstance(v, dict):
        raise ctx.error(key, f"expected a table, got {type(v).__name__}")
    return v


def _check_unknown(ctx: _Ctx, d: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for k in d:
        if k not in allowed:
            full = f"{path}.{k}" if path else k
            raise ctx.error(full, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _ip_literal(ctx: _Ctx, value: str, path: str, *, allow_wildcard: bool = True) -> str:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ctx.error(
            path, f"expected an IP address (hotline resolves no names), got {value!r}"
        ) from None
    if not allow_wildcard and ip.is_unspecified:
        raise ctx.error(path, f"expected a specific address, got the wildcard {value!r}")
    return value


def _hostport(ctx: _Ctx, value: Any, path: str, default_port: int) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ctx.error(path, f'expected "HOST:PORT", got {value!r}')
    try:
        host, port = parse_hostport(value, default_port=default_port)
    except ValueError as exc:
        raise ctx.error(path, f'expected "HOST:PORT": {exc}') from None
    _ip_literal(ctx, host, path)
    return host, port


_SERVER_KEYS = {"sip", "http", "data_dir", "advertised_address", "log_format", "log_level"}
_SIP_KEYS = {
    "transports",
    "realm",
    "user_agent",
    "auth_algorithms",
    "nonce_ttl",
    "min_expires",
    "max_expires",
    "max_server_transactions",
    "max_loop_lag_ms",
    "retry_after",
    "udp_receive_buffer",
    "rtp_ports",
}
_AGENT_KEYS = {
    "id",
    "password",
    "name",
    "extension",
    "skills",
    "queues",
    "groups",
    "wrap_up_seconds",
    "max_misses",
    "priority",
}
_TRUNK_KEYS = {
    "name",
    "address",
    "username",
    "password",
    "register",
    "expires",
    "dids",
    "caller_id",
    "caller_id_display",
    "withhold_caller_id",
}
_ENTRY_KEYS = {"kind", "target", "name"}
_MEDIA_KEYS = {"process", "prompts", "language", "music_on_hold", "rtp_timeout", "recordings_dir"}
_TOP_KEYS = {
    "server",
    "sip",
    "media",
    "agents",
    "trunks",
    "entry_points",
    "acd",
    "queues",
    "ivr",
    "voicemail",
    "cases",
    "groups",
}


def _server(ctx: _Ctx, d: Mapping[str, Any]) -> ServerConfig:
    _check_unknown(ctx, d, _SERVER_KEYS, "server")
    sip_host, sip_port = _hostport(ctx, d.get("sip", "127.0.0.1:5060"), "server.sip", 5060)
    http_host, http_port = _hostport(ctx, d.get("http", "127.0.0.1:8080"), "server.http", 8080)
    adv = _str(ctx, d, "advertised_address", "server", "")
    if adv:
        _ip_literal(ctx, adv, "server.advertised_address", allow_wildcard=False)
    fmt = _str(ctx, d, "log_format", "server", "auto")
    if fmt not in ("auto", "json", "console"):
        raise ctx.error("server.log_format", f"expected auto, json or console, got {fmt!r}")
    level = _str(ctx, d, "log_level", "server", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ctx.error("server.log_level", f"expected debug/info/warning/error, got {level!r}")
    return ServerConfig(
        sip_host=sip_host,
        sip_port=sip_port,
        http_host=http_host,
        http_port=http_port,
        data_dir=_str(ctx, d, "data_dir", "server", "var"),
        advertised_host=adv,
        log_format=fmt,
        log_level=level,
    )


def _sip(ctx: _Ctx, d: Mapping[str, Any]) -> SipConfig:
    _check_unknown(ctx, d, _SIP_KEYS, "sip")
    transports = _str_list(ctx, d, "transports", "sip") or ("udp", "tcp")
    for t in transports:
        if t not in ("udp", "tcp"):
            raise ctx.error("sip.transports", f"expected udp and/or tcp, got {t!r}")
    algorithms = _str_list(ctx, d, "auth_algorithms", "sip") or ("MD5",)
    for a in algorithms:
        if a not in ("SHA-256", "MD5"):
            raise ctx.error("sip.auth_algorithms", f"expected SHA-256 and/or MD5, got {a!r}")
    min_expires = _int(ctx, d, "min_expires", "sip", 60, lo=1)
    max_expires = _int(ctx, d, "max_expires", "sip", 3600, lo=1)
    if max_expires < min_expires:
        raise ctx.error("sip.max_expires", f"must be >= min_expires ({min_expires})")
    ports = d.get("rtp_ports", [20000, 30000])
    if (
        not isinstance(ports, list)
        or len(ports) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
        or not 1024 <= ports[0] < ports[1] <= 65535
    ):
        raise ctx.error("sip.rtp_ports", f"expected [LOW, HIGH] within 1024-65535, got {ports!r}")
    return SipConfig(
        transports=transports,
        realm=_str(ctx, d, "realm", "sip", "hotline"),
        user_agent=_str(ctx, d, "user_agent", "sip", "hotline"),
        auth_algorithms=algorithms,
        nonce_ttl=_float(ctx, d, "nonce_ttl", "sip", 300.0),
        min_expires=min_expires,
        max_expires=max_expires,
        max_server_transactions=_int(ctx, d, "max_server_transactions", "sip", 20000, lo=1),
        max_loop_lag_ms=_float(ctx, d, "max_loop_lag_ms", "sip", 250.0),
        retry_after=_int(ctx, d, "retry_after", "sip", 5, lo=1),
        udp_receive_buffer=_int(ctx, d, "udp_receive_buffer", "sip", 4 * 1024 * 1024, lo=65536),
        rtp_port_min=ports[0],
        rtp_port_max=ports[1],
    )


def _media(ctx: _Ctx, d: Mapping[str, Any]) -> MediaConfig:
    _check_unknown(ctx, d, _MEDIA_KEYS, "media")
    process = _bool(ctx, d, "process", "media", True)
    timeout = _float(ctx, d, "rtp_timeout", "media", 60.0, positive=False)
    if timeout < 0:
        raise ctx.error("media.rtp_timeout", f"expected seconds >= 0, got {timeout!r}")
    return MediaConfig(
        process=process,
        prompts=_str_list(ctx, d, "prompts", "media") or (),
        language=_str(ctx, d, "language", "media", "en"),
        music_on_hold=_str(ctx, d, "music_on_hold", "media", "moh"),
        rtp_timeout=timeout,
        recordings_dir=_str(ctx, d, "recordings_dir", "media", ""),
    )


def _agents(ctx: _Ctx, items: Any) -> tuple[AgentConfig, ...]:
    if not isinstance(items, list):
        raise ctx.error("agents", "expected an array of tables ([[agents]])")
    out: list[AgentConfig] = []
    seen: set[str] = set()
    for i, d in enumerate(items):
        path = f"agents[{i}]"
        if not isinstance(d, dict):
            raise ctx.error(path, "expected a table")
        _check_unknown(ctx, d, _AGENT_KEYS, path)
        agent_id = _str(ctx, d, "id", path)
        if not re.fullmatch(r"[A-Za-z0-9._~!$&'()*+,;=-]+", agent_id):
            raise ctx.error(f"{path}.id", f"not usable as a SIP user name: {agent_id!r}")
        if agent_id in seen:
            raise ctx.error(f"{path}.id", f"duplicate agent id {agent_id!r}")
        seen.add(agent_id)
        password = _str(ctx, d, "password", path)
        if len(password) < 4:
            raise ctx.error(f"{path}.password", "expected at least 4 characters")
        skills_raw = d.get("skills", {})
        if not isinstance(skills_raw, dict):
            raise ctx.error(
                f"{path}.skills", f"expected a table of skill = level, got {skills_raw!r}"
            )
        skills: dict[str, int] = {}
        for skill, level in skills_raw.items():
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 10:
                raise ctx.error(
                    f"{path}.skills.{skill}", f"expected a skill level 1-10, got {level!r}"
                )
            skills[skill] = level
        out.append(
            AgentConfig(
                id=agent_id,
                password=password,
                name=_str(ctx, d, "name", path, agent_id),
                extension=_str(ctx, d, "extension", path, ""),
                skills=skills,
                queues=_str_list(ctx, d, "queues", path),
                groups=_str_list(ctx, d, "groups", path),
            )
        )
    return tuple(out)


def _trunks(ctx: _Ctx, items: Any) -> tuple[TrunkConfig, ...]:
    if not isinstance(items, list):
        raise ctx.error("trunks", "expected an array of tables ([[trunks]])")
    out: list[TrunkConfig] = []
    for i, d in enumerate(items):
        path = f"trunks[{i}]"
        if not isinstance(d, dict):
            raise ctx.error(path, "expected a table")
        _check_unknown(ctx, d, _TRUNK_KEYS, path)
        register = _bool(ctx, d, "register", path, False)
        username = _str(ctx, d, "username", path, "")
        if register and not username:
            raise ctx.error(f"{path}.username", "is required when register = true")
        dids = d.get("dids", {})
        if not isinstance(dids, dict) or not all(isinstance(v, str) for v in dids.values()):
            raise ctx.error(f"{path}.dids", 'expected a table of "number" = "entry point"')
        out.append(
            TrunkConfig(
                name=_str(ctx, d, "name", path),
                address=_hostport(ctx, d.get("address"), f"{path}.address", 5060),
                username=username,
                password=_str(ctx, d, "password", path, ""),
                register=register,
                expires=_int(ctx, d, "expires", path, 600, lo=30),
                dids=dict(dids),
                caller_id=_str(ctx, d, "caller_id", path, ""),
                caller_id_display=_str(ctx, d, "caller_id_display", path, ""),
                withhold_caller_id=_bool(ctx, d, "withhold_caller_id", path, False),
            )
        )
    return tuple(out)


def _entry_points(ctx: _Ctx, d: Mapping[str, Any]) -> tuple[EntryPoint, ...]:
    out: list[EntryPoint] = []
    for number, spec in d.items():
        path = f"entry_points.{number}"
        if not isinstance(spec, dict):
            raise ctx.error(path, 'expected a table like { kind = "echo" }')
        _check_unknown(ctx, spec, _ENTRY_KEYS, path)
        kind = _str(ctx, spec, "kind", path)
        if kind not in ENTRY_KINDS:
            raise ctx.error(
                f"{path}.kind", f"expected one of {', '.join(ENTRY_KINDS)}, got {kind!r}"
            )
        target = _str(ctx, spec, "target", path, "")
        if kind in ("queue", "agent", "ivr") and not target:
            raise ctx.error(f"{path}.target", f"is required for kind = {kind!r}")
        out.append(
            EntryPoint(
                number=number, kind=kind, target=target, name=_str(ctx, spec, "name", path, "")
            )
        )
    return tuple(out)


def parse_config(text: str, *, file: str = "<config>") -> Config:
    """Parse and validate configuration text. Raises ConfigError."""
    ctx = _Ctx(file, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else None
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"TOML syntax error: {reason}", file=file, line=line) from None
    _check_unknown(ctx, data, _TOP_KEYS, "")
    config = Config(
        source=file,
        server=_server(ctx, _table(ctx, data, "server")),
        sip=_sip(ctx, _table(ctx, data, "sip")),
        media=_media(ctx, _table(ctx, data, "media")),
        agents=_agents(ctx, data.get("agents", [])),
        trunks=_trunks(ctx, data.get("trunks", [])),
        entry_points=_entry_points(ctx, _table(ctx, data, "entry_points")),
        acd_raw={k: data[k] for k in ("acd", "queues", "groups") if k in data},
        ivr_raw={k: data[k] for k in ("ivr", "voicemail") if k in data},
        raw=data,
        text=text,
    )
    for trunk in config.trunks:
        for did, entry in trunk.dids.items():
            if config.entry_point(entry) is None and not any(
                e.name == entry for e in config.entry_points
            ):
                raise ctx.error(
                    f"trunks.dids.{did}",
                    f"names entry point {entry!r}, which entry_points does not define",
                )
    return config


def load_config(path: str | Path | None) -> Config:
    """Load a configuration file, or the built-in demo configuration when ``path`` is None."""
    if path is None:
        text = resources.files("hotline").joinpath("demo.toml").read_text(encoding="utf-8")
        return parse_config(text, file="<built-in demo.toml>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(p)
        ) from None
    return parse_config(text, file=str(p))


def with_overrides(
    config: Config, *, sip: str | None = None, http: str | None = None, data: str | None = None
) -> Config:
    """Apply ``hotline serve`` command-line overrides (they win over the file)."""
    import dataclasses

    server = config.server
    ctx = _Ctx("<command line>", "")
    if sip is not None:
        host, port = _hostport(ctx, sip, "--sip", 5060)
        server = dataclasses.replace(server, sip_host=host, sip_port=port)
    if http is not None:
        host, port = _hostport(ctx, http, "--http", 8080)
        server = dataclasses.replace(server, http_host=host, http_port=port)
    if data is not None:
        server = dataclasses.replace(server, data_dir=data)
    return dataclasses.replace(config, server=server)


def validate_sections(config: Config) -> None:
    """Validate the sections other packages own (the ACD's ``[acd]``), raising ConfigError."""
    from acd.config import AcdConfig
    from acd.config import ConfigError as AcdConfigError
    from hotline.center import acd_table
    from ivr.flow import FlowError, parse_ivr

    try:
        AcdConfig.from_dict(acd_table(config), path="acd")
    except AcdConfigError as exc:
        reason = str(exc).removeprefix(f"{exc.path}: ")
        raise config.error(exc.path, reason) from None
    try:
        parse_ivr(config.raw.get("ivr"))
    except FlowError as exc:
        raise config.error(exc.path, exc.reason) from None
    vm = config.raw.get("voicemail", {})
    if not isinstance(vm, dict):
        raise config.error("voicemail", "expected a table")
    for key, value in vm.items():
        if key not in ("keep_days", "max_seconds", "silence_seconds", "stop_digits"):
            raise config.error(f"voicemail.{key}", "unknown key")
        if key == "stop_digits":
            if not isinstance(value, str) or any(c not in "0123456789*#ABCD" for c in value):
                raise config.error(f"voicemail.{key}", f'expected keys such as "#", got {value!r}')
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise config.error(f"voicemail.{key}", f"expected a number > 0, got {value!r}")
    extensions = {a.extension: a.id for a in config.agents if a.extension}
    for ep in config.entry_points:
        if ep.number in extensions:
            raise config.error(
                f"entry_points.{ep.number}",
                f"is also the extension of agent {extensions[ep.number]!r}: pick another number",
            )
        if ep.kind in ("queue", "voicemail") and ep.target not in config.raw.get("acd", {}).get(
            "queues", {}
        ):
            raise config.error(
                f"entry_points.{ep.number}.target",
                f"names queue {ep.target!r}, which [acd.queues] does not define",
            )
        if ep.kind == "ivr" and ep.target not in config.raw.get("ivr", {}).get("flows", {}):
            raise config.error(
                f"entry_points.{ep.number}.target",
                f"names flow {ep.target!r}, which [ivr.flows] does not define",
            )
