"""The hotline command: a software contact-center engine.

hotline serve [--config FILE] [--sip HOST:PORT] [--http HOST:PORT] [--data DIR]
hotline check-config FILE
hotline passwd USER [--config FILE] [--password-stdin]
hotline config-schema
hotline sim run|compare ...        (see docs/simulator.md)
hotline erlang c|a|staff ...
hotline load SERVICE.toml --workload WORKLOAD.toml ...   (see docs/load.md)
hotline agent --user ID [--server HOST:PORT] [--http URL] ...  (see docs/terminal-agent.md)
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import re
import socket
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from agent_client.terminal import add_command as add_agent_command
from hotline.config import (
    BUILT_IN_DEMO,
    Config,
    ConfigError,
    config_schema,
    load_config,
    with_overrides,
)
from sim.cli import add_commands
from sim.load.cli import add_command as add_load_command

if TYPE_CHECKING:
    from hotline.auth.credentials import StaffEntry


def _serve(args: argparse.Namespace) -> int:
    from hotline.server import run_server

    try:
        config = with_overrides(
            load_config(args.config), sip=args.sip, http=args.http, data=args.data
        )
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    if args.cluster and not config.cluster.enabled:
        print(
            f"hotline: --cluster: {config.source} has no [cluster] section (docs/cluster.md)",
            file=sys.stderr,
        )
        return 2
    from hotline.auth.credentials import StaffFileError

    try:
        return run_server(config, ready_file=args.ready_file)
    except ConfigError as exc:  # the TLS certificate, a non-loopback address
        _print_config_error(exc)
        return 2
    except StaffFileError as exc:
        print(f"hotline: staff file: {exc}", file=sys.stderr)
        return 2
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
    from hotline.auth.credentials import StaffCredentials, StaffFileError

    try:
        credentials = StaffCredentials(config)
    except StaffFileError as exc:
        print(f"hotline: staff file: {exc}", file=sys.stderr)
        return 2
    if config.database.url:  # the shared staff table, as it is (nothing written)
        try:
            credentials = StaffCredentials.open(config, write=False)
        except StaffFileError as exc:
            print(f"hotline: warning: staff table not checked: {exc}", file=sys.stderr)
    for warning in credentials.warnings():
        print(f"hotline: warning: {warning}", file=sys.stderr)
    print(
        f"{config.source}: OK ({len(config.agents)} agents, {len(config.entry_points)} entry "
        f"points, {len(config.trunks)} trunks)"
    )
    return 0


MIN_PASSWORD = 8
"""Characters a password set by ``hotline passwd`` has at least."""


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    first = getpass.getpass(f"New password for {args.user}: ")
    second = getpass.getpass("Again: ")
    if first != second:
        print("hotline: the two passwords differ; nothing written", file=sys.stderr)
        return None
    return first


def _passwd(args: argparse.Namespace) -> int:
    """Set a staff member's password: argon2id and digest HA1s into the staff file."""
    from hotline.auth.credentials import StaffFileError, make_entry, set_password

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    if config.source == BUILT_IN_DEMO:
        print(
            "hotline: give --config FILE: the built-in demo's staff file ships with hotline",
            file=sys.stderr,
        )
        return 2
    if config.agent(args.user) is None:
        print(
            f"hotline: {config.source}: no staff member {args.user!r} in [[agents]]",
            file=sys.stderr,
        )
        return 2
    password = _read_password(args)
    if password is None:
        return 1
    if len(password) < MIN_PASSWORD:
        print(
            f"hotline: a password has at least {MIN_PASSWORD} characters; nothing written",
            file=sys.stderr,
        )
        return 1
    path = config.server.staff_path
    entry = make_entry(
        args.user, password, realm=config.sip.realm, algorithms=tuple(config.sip.auth_algorithms)
    )
    if config.database.url:  # several nodes: the shared staff table (docs/cluster.md)
        return _passwd_database(config, entry)
    try:
        set_password(path, entry)
    except StaffFileError as exc:
        print(f"hotline: staff file: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hotline: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    algorithms = ", ".join(config.sip.auth_algorithms)
    print(
        f"hotline: {args.user}'s password set in {path} (argon2id; SIP digest {algorithms} "
        f"for realm {config.sip.realm!r})"
    )
    return 0


def _passwd_database(config: Config, entry: StaffEntry) -> int:
    """``hotline passwd`` with ``[database] url``: one atomic upsert into the staff table
    every node follows (the staff file imported first if the table is still empty)."""
    from hotline.auth.credentials import StaffFileError, open_staff_database

    try:
        database = open_staff_database(config)
        try:
            database.upsert(entry)
        finally:
            database.close()
    except StaffFileError as exc:
        print(f"hotline: staff credentials: {exc}", file=sys.stderr)
        return 2
    if database.imported:
        print(
            f"hotline: the staff table was empty: {database.imported} members imported from "
            f"{config.server.staff_path} first (the database is the truth from now on)"
        )
    algorithms = ", ".join(config.sip.auth_algorithms)
    print(
        f"hotline: {entry.user}'s password set in the staff table ({database.where}; argon2id;"
        f" SIP digest {algorithms} for realm {config.sip.realm!r}): every node uses it within"
        " a few seconds"
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
    serve.add_argument(
        "--cluster",
        action="store_true",
        help="run as one node of a cluster; refuses a configuration without [cluster] "
        "(docs/cluster.md)",
    )
    serve.add_argument("--ready-file", metavar="PATH", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    check.set_defaults(func=_check_config)

    passwd = sub.add_parser(
        "passwd",
        help="set a staff member's password (hashes in the staff file, mode 0600, or with "
        "[database] url in the staff table every node shares)",
    )
    passwd.add_argument("user", help="the staff member's id ([[agents]] id)")
    passwd.add_argument("--config", metavar="FILE", help="TOML configuration", required=False)
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (scripts)",
    )
    passwd.set_defaults(func=_passwd)

    schema = sub.add_parser(
        "config-schema", help="print the configuration file's JSON Schema (docs/configuration.md)"
    )
    schema.set_defaults(func=_config_schema)

    add_commands(sub)
    add_load_command(sub)
    add_agent_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
