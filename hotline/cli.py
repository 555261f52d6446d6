"""The ``hotline`` command.

hotline serve [--config FILE] [--sip HOST:PORT] [--http HOST:PORT] [--data DIR]
hotline check-config FILE
hotline sim run|compare ...        (see docs/simulator.md)
hotline erlang c|a|staff ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hotline.config import ConfigError, load_config, validate_sections, with_overrides
from sim.cli import add_commands


def _serve(args: argparse.Namespace) -> int:
    from hotline.app import run_server

    try:
        config = with_overrides(
            load_config(args.config), sip=args.sip, http=args.http, data=args.data
        )
    except ConfigError as exc:
        print(f"hotline: configuration error: {exc}", file=sys.stderr)
        return 2
    return run_server(config, ready_file=args.ready_file)


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
        validate_sections(config)
    except ConfigError as exc:
        print(f"hotline: configuration error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{config.source}: OK ({len(config.agents)} agents, {len(config.entry_points)} entry "
        f"points, {len(config.trunks)} trunks)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotline", description=__doc__.split("\n")[0] if __doc__ else None
    )
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

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
