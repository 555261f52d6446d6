"""Test support: a DSN for a real local PostgreSQL server (used by the test suite only).

``HOTLINE_TEST_PG_DSN`` wins; otherwise ``scripts/pg-test-server start`` is run (it starts a
throwaway cluster from Debian's postgresql package; it is stopped when the process exits) unless ``HOTLINE_REQUIRE_PG=1``, in which
case the DSN must already be set and its absence is an error.
"""

from __future__ import annotations

import atexit
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pg-test-server"


class NoTestPostgres(RuntimeError):
    """No PostgreSQL server for the tests."""


def pg_dsn_for_tests() -> str:
    """Return the DSN of a running test server, starting one if needed and allowed."""
    dsn = os.environ.get("HOTLINE_TEST_PG_DSN", "")
    if dsn:
        return dsn
    if os.environ.get("HOTLINE_REQUIRE_PG") == "1":
        raise NoTestPostgres("HOTLINE_REQUIRE_PG=1 but HOTLINE_TEST_PG_DSN is not set")
    if not SCRIPT.exists():
        raise NoTestPostgres(f"{SCRIPT} is missing")
    out = subprocess.run(
        [str(SCRIPT), "start"], capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise NoTestPostgres(f"pg-test-server failed: {out.stderr.strip()}")
    env: dict[str, str] = {}
    for line in out.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export ") :].split("=", 1)
            env[key.strip()] = value.strip()
    dsn = env.get("HOTLINE_TEST_PG_DSN", "")
    pg_dir = env.get("HOTLINE_PG_DIR", "")
    if not dsn or not pg_dir:
        raise NoTestPostgres(f"pg-test-server printed no DSN: {out.stdout!r}")
    os.environ["HOTLINE_TEST_PG_DSN"] = dsn
    os.environ["HOTLINE_PG_DIR"] = pg_dir
    atexit.register(_stop, pg_dir)
    return dsn


def _stop(pg_dir: str) -> None:
    """Stop the server this process started (at interpreter exit)."""
    subprocess.run(
        [str(SCRIPT), "stop"],
        env={**os.environ, "HOTLINE_PG_DIR": pg_dir},
        capture_output=True,
        timeout=60,
        check=False,
    )
