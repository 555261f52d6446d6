"""structlog set-up: JSON off a terminal, console on one; call ids carried by contextvars.

Shells bind ``call_id`` (and ``leg``) with ``structlog.contextvars.bound_contextvars`` for the
lifetime of a call's task, so every line logged on that call's behalf carries its id.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog once for the process. ``fmt`` is ``json``, ``console`` or ``auto``."""
    out = stream if stream is not None else sys.stdout
    if fmt == "auto":
        fmt = "console" if hasattr(out, "isatty") and out.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
