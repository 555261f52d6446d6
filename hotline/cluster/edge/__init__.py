"""The edge: Kamailio in front of the hotline nodes, with the configuration shipped beside this
module (``kamailio.cfg``; docs/cluster.md, "The edge").

The configuration is a real file, parameterised with ``#!define`` defaults that the command
line overrides with ``-A``; this module only writes the dispatcher list (the nodes' addresses)
and builds the command line::

    python -m hotline.cluster.edge --listen 10.0.0.1:5060 \\
        --node 10.0.0.2:5060 --node 10.0.0.3:5060 --run-dir /run/hotline-edge

runs Kamailio in the foreground (logs on stderr), for a process supervisor to keep alive.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CONFIG = Path(__file__).with_name("kamailio.cfg")
"""The shipped Kamailio configuration."""

LOCATION_SCHEMA = Path(__file__).with_name("location.sql")
"""The PostgreSQL table of the edge's bindings (with ``location_db``)."""

DISPATCHER_SET = 1
"""The dispatcher set that holds the nodes (``DS_SET`` in the configuration)."""


def _address(text: str) -> tuple[str, int]:
    """``ip:port`` (IPv4, or ``[v6]:port``), validated."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected ip:port, got {text!r}")
    ipaddress.ip_address(host.strip("[]"))
    return host, int(port)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSettings:
    """What the edge needs to run; each field but the addresses has the configuration's default."""

    listen: str
    """``ip:port`` the edge listens on (UDP): the one address callers, trunks and phones see."""
    nodes: tuple[str, ...]
    """The hotline nodes' SIP addresses, ``ip:port`` each."""
    ping_interval: int = 2
    """Seconds between OPTIONS probes of each node (``DS_PING_INTERVAL``)."""
    first_answer_ms: int = 2000
    """Milliseconds a node may take to give a first answer before the next node (``FR_TIMER``)."""
    pike_unit: int = 2
    """Seconds of pike's sampling window (``PIKE_UNIT``)."""
    pike_density: int = 40
    """Requests one source may send per window before the rest are dropped (``PIKE_DENSITY``)."""
    log_level: int = 1
    """Kamailio's ``debug`` level: 1 warnings and errors, 2 notices, 3 info."""
    trusted: tuple[str, ...] = ()
    """Source IPs pike does not limit (trunks, an SBC: many callers behind one address)."""
    location_db: str | None = None
    """``postgres://user@host/db`` holding :data:`LOCATION_SCHEMA`: the bindings are written
    through to it and loaded at start (``WITH_PG_LOCATION``); None keeps them in memory only."""

    def __post_init__(self) -> None:
        _address(self.listen)
        if self.location_db is not None and not self.location_db.startswith("postgres://"):
            raise ValueError(f"location_db: expected postgres://..., got {self.location_db!r}")
        for ip in self.trusted:
            ipaddress.ip_address(ip)
        if not self.nodes:
            raise ValueError("the edge needs at least one node")
        for node in self.nodes:
            _address(node)
        for name in ("ping_interval", "first_answer_ms", "pike_unit", "pike_density"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")


def dispatcher_list(nodes: Sequence[str]) -> str:
    """The dispatcher list file's text: one line per node (set, URI, flags, priority)."""
    lines = ["# set destination flags priority (written by hotline.cluster.edge)"]
    for node in nodes:
        host, port = _address(node)
        lines.append(f"{DISPATCHER_SET} sip:{host}:{port} 0 0")
    return "\n".join(lines) + "\n"


def trusted_pattern(ips: Sequence[str]) -> str:
    """The regular expression ``TRUSTED_SOURCES`` that matches exactly these source IPs (dots as
    ``[.]``: no backslash has to survive Kamailio's string escapes)."""
    alternatives = "|".join(str(ipaddress.ip_address(ip)).replace(".", "[.]") for ip in ips)
    return f"^({alternatives})$"


def kamailio_binary() -> str:
    path = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
    )
    if path is None:
        raise FileNotFoundError("kamailio is not installed (Debian: apt-get install kamailio)")
    return path


def prepare(settings: EdgeSettings, run_dir: Path, *, binary: str | None = None) -> list[str]:
    """Write the dispatcher list into ``run_dir`` and return Kamailio's command line (foreground,
    logs on stderr; its control socket is ``run_dir/kamailio_ctl`` for ``kamcmd -s``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ds_list = run_dir / "dispatcher.list"
    ds_list.write_text(dispatcher_list(settings.nodes), encoding="utf-8")
    host, port = _address(settings.listen)
    return [
        binary or kamailio_binary(),
        "-f", str(CONFIG),
        "-DD", "-E",
        "-l", f"udp:{host}:{port}",
        "-Y", str(run_dir),
        "-w", str(run_dir),
        "-m", "64",
        "-M", "8",
        "-A", f'DS_LIST="{ds_list}"',
        "-A", f"DS_PING_INTERVAL={settings.ping_interval}",
        "-A", f"FR_TIMER={settings.first_answer_ms}",
        "-A", f"PIKE_UNIT={settings.pike_unit}",
        "-A", f"PIKE_DENSITY={settings.pike_density}",
        "-A", f"LOG_LEVEL={settings.log_level}",
        *(
            ["-A", f'TRUSTED_SOURCES="{trusted_pattern(settings.trusted)}"']
            if settings.trusted
            else []
        ),
        *(
            ["-A", "WITH_PG_LOCATION", "-A", f'DB_URL="{settings.location_db}"']
            if settings.location_db
            else []
        ),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hotline.cluster.edge",
        description="Run Kamailio as the edge in front of the hotline nodes (docs/cluster.md).",
    )
    parser.add_argument("--listen", required=True, help="ip:port the edge listens on (UDP)")
    parser.add_argument("--node", action="append", required=True, help="a node's ip:port")
    parser.add_argument("--run-dir", type=Path, required=True, help="dispatcher list, sockets")
    parser.add_argument("--ping-interval", type=int, default=2)
    parser.add_argument("--pike-density", type=int, default=40)
    parser.add_argument(
        "--trusted", action="append", default=[], help="a source IP pike does not limit (a trunk)"
    )
    parser.add_argument(
        "--location-db", help="postgres://user@host/db with location.sql: bindings kept there"
    )
    parser.add_argument("--check", action="store_true", help="check the configuration and exit")
    args = parser.parse_args(argv)
    settings = EdgeSettings(
        listen=args.listen,
        nodes=tuple(args.node),
        ping_interval=args.ping_interval,
        pike_density=args.pike_density,
        location_db=args.location_db,
        trusted=tuple(args.trusted),
    )
    cmd = prepare(settings, args.run_dir)
    if args.check:
        cmd.append("-c")
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
