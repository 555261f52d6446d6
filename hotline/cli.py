"""The hotline command: a software contact-center engine.

hotline serve [--config FILE] [--sip HOST:PORT] [--http HOST:PORT] [--data DIR]
hotline check-config FILE
hotline config-schema
hotline sim run|compare ...        (see docs/simulator.md)
hotline erlang c|a|staff ...
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import socket
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from hotline.config import (
    Config,
    ConfigError,
    config_schema,
    load_config,
    with_overrides,
)
from sim.cli import add_commands


def _serve(args: argparse.Namespace) -> int:
    from hotline.server import run_server

    try:
        config = with_overrides(
            load_config(args.config), sip=args.sip, http=args.http, data=args.data
        )
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    try:
        return run_server(config, ready_file=args.ready_file)
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        print(f"hotline: {_listen_error(exc, config)}", file=sys.stderr)
        return 1


_LISTEN_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}
_ADDRESS_IN_MESSAGE = re.compile(r"\('([^']*)', (\d+)")


def _listeners(config: Config) -> list[tuple[str, str, int, int]]:
    """(name, host, port, socket type) of every listener, in the order serve opens them."""
    server = config.server
    sip = [
        (f"SIP over {t.upper()}", server.sip_host, server.sip_port, kind)
        for t, kind in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM))
        if t in config.sip.transports
    ]
    return [*sip, ("HTTP", server.http_host, server.http_port, socket.SOCK_STREAM)]


def _cannot_bind(host: str, port: int, kind: int) -> bool:
    """Whether a listener like the server's (SO_REUSEADDR) cannot bind host:port now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError:
        return True
    return False


def _listen_error(exc: OSError, config: Config) -> str:
    """One line naming the address (and the listener when it can be told) that failed."""
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or ""
    reason = reason.lower()
    listeners = _listeners(config)
    named = _ADDRESS_IN_MESSAGE.search(str(exc))
    if named:
        address = (named.group(1), int(named.group(2)))
        listeners = [x for x in listeners if (x[1], x[2]) == address] or [
            ("", *address, socket.SOCK_STREAM)
        ]
    # serve has closed its own sockets by now: the first listener (in the order serve opens
    # them) that still cannot bind is the one that failed
    blocked = [x for x in listeners if _cannot_bind(x[1], x[2], x[3])]
    if blocked or len(listeners) == 1:
        name, host, port, _ = (blocked or listeners)[0]
        return f"cannot listen on {_where(host, port)}{f' ({name})' if name else ''}: {reason}"
    where = " or ".join(dict.fromkeys(f"{_where(h, p)} ({n})" for n, h, p, _ in listeners))
    return f"cannot listen on {where}: {reason}"


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print_config_error(exc: ConfigError) -> None:
    """Every mistake of the file on its own line (``file:line: key: reason``)."""
    for line in str(exc).splitlines():
        print(f"hotline: configuration error: {line}", file=sys.stderr)
    if len(exc.issues) > 1:
        print(f"hotline: {len(exc.issues)} mistakes", file=sys.stderr)


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    print(
        f"{config.source}: OK ({len(config.agents)} agents, {len(config.entry_points)} entry "
        f"points, {len(config.trunks)} trunks)"
    )
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


def _version() -> str:
    try:
        return version("hotline")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotline", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the engine (built-in demo configuration by default)")
    serve.add_argument(
        "--config", metavar="FILE", help="TOML configuration (default: built-in demo)"
    )
    serve.add_argument("--sip", metavar="HOST:PORT", help="SIP listen address (UDP and TCP)")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP API / metrics listen address")
    serve.add_argument("--data", metavar="DIR", help="data directory (SQLite file, recordings)")
    serve.add_argument("--ready-file", metavar="PATH", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    check.set_defaults(func=_check_config)

    schema = sub.add_parser(
        "config-schema", help="print the configuration file's JSON Schema (docs/configuration.md)"
    )
    schema.set_defaults(func=_config_schema)

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
