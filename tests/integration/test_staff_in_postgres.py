"""Staff accounts in PostgreSQL (issue 15, "the record"): with ``[database] url`` the staff
credentials live in one table every node shares; ``hotline passwd`` changes a password for every
node, which each sees within seconds without a restart; the staff file is imported once.

Real parts: the suite's PostgreSQL server (scripts/pg-test-server, a fresh schema per test,
dropped after), two ``hotline serve`` processes, the ``hotline passwd`` command, SIPp REGISTERs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import argon2
import psycopg
import pytest
from structlog.testing import capture_logs

from acd.store.testing import pg_dsn_for_tests
from hotline.auth.credentials import (
    StaffCredentials,
    StaffEntry,
    make_entry,
    read_staff,
    set_password,
)
from hotline.auth.staff_db import StaffDatabase
from hotline.cli import main
from hotline.config import load_config
from media_gateway.sip.auth import digest_ha1
from tests.interop.harness import SCENARIOS, Server, free_port, run_sipp, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
"""Fast hashes for the tests that check logic, not cost."""

CONFIG = """
[server]
data_dir = "{data}"

[sip]
transports = ["udp"]

[media]
process = false

[database]
url = "{dsn}"
schema = "{schema}"
node = "{node}"

[[agents]]
id = "alice"

[[agents]]
id = "bob"

[entry_points]
"1" = {{ kind = "echo" }}
"""


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = pg_dsn_for_tests()
    name = "staff_" + uuid.uuid4().hex[:12]
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def write_config(tmp: Path, dsn: str, schema: str, node: str = "") -> Path:
    path = tmp / f"site-{node or 'one'}.toml"
    path.write_text(CONFIG.format(data=tmp / f"data-{node}", dsn=dsn, schema=schema, node=node))
    return path


def rows(dsn: str, schema: str) -> dict[str, tuple[str, dict[str, Any], int]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        got = conn.execute("SELECT user_id, web, ha1, version FROM staff_credentials").fetchall()
    return {str(u): (str(w), h, int(v)) for u, w, h, v in got}


def upsert(dsn: str, schema: str, entry: StaffEntry) -> None:
    """What ``hotline passwd`` writes, from another connection."""
    database = StaffDatabase(dsn, schema=schema)
    try:
        database.upsert(entry)
    finally:
        database.close()


# -- the credentials over the table ------------------------------------------------------------


def test_the_staff_file_is_imported_once_then_the_database_is_the_truth(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    config = load_config(write_config(tmp_path, dsn, name))
    staff = config.server.staff_path
    for user in ("alice", "bob"):
        set_password(
            staff, make_entry(user, f"{user}-pw-1", realm="hotline", algorithms=("MD5",), hasher=CHEAP)
        )  # fmt: skip
    # Several nodes starting at once on an empty table: exactly one imports the file.
    opened: list[StaffCredentials] = []
    with capture_logs() as logs:
        starts = [
            threading.Thread(target=lambda: opened.append(StaffCredentials.open(config)))
            for _ in range(3)
        ]
        for t in starts:
            t.start()
        for t in starts:
            t.join(30)
    imported = [e for e in logs if e["event"] == "staff_file_imported"]
    assert len(opened) == 3 and [e["members"] for e in imported] == [2]
    assert set(rows(dsn, name)) == {"alice", "bob"}
    for creds in opened:
        assert creds.database is not None and "PostgreSQL" in creds.source
        assert creds.verify_web("bob", "bob-pw-1") and not creds.verify_web("bob", "bob-pw-2")
        assert creds.ha1("alice", "MD5") == digest_ha1("MD5", "alice", "hotline", "alice-pw-1")

    # The file changes afterwards (an old habit, or an old copy): the database stays the truth.
    set_password(
        staff, make_entry("bob", "bob-file-2", realm="hotline", algorithms=("MD5",), hasher=CHEAP)
    )
    with capture_logs() as logs:
        again = StaffCredentials.open(config)
    assert not [e for e in logs if e["event"] == "staff_file_imported"]
    assert again.verify_web("bob", "bob-pw-1") and not again.verify_web("bob", "bob-file-2")
    # A name the configuration does not know signs nobody in, as with the file.
    upsert(
        dsn,
        name,
        make_entry("ghost", "ghost-pw-1", realm="hotline", algorithms=("MD5",), hasher=CHEAP),
    )
    ghostly = StaffCredentials.open(config)
    assert not ghostly.verify_web("ghost", "ghost-pw-1") and ghostly.ha1("ghost", "MD5") is None


async def test_refresh_reads_the_table_again_only_when_it_changed_and_survives_an_outage(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    config = load_config(write_config(tmp_path, dsn, name))
    creds = StaffCredentials.open(config, hasher=CHEAP)
    assert creds.entries == {}  # an empty table and no file: nobody has a hash yet
    writer = StaffDatabase(dsn, schema=name)
    try:
        with capture_logs() as logs:
            assert await creds.refresh() is False  # nothing changed: no full read
            writer.upsert(
                make_entry("bob", "bob-pw-1", realm="hotline", algorithms=("MD5",), hasher=CHEAP)
            )
            assert await creds.refresh() is True
            assert creds.verify_web("bob", "bob-pw-1")
            assert await creds.refresh() is False
            # A second write to the same row (the count is the same): still seen.
            writer.upsert(
                make_entry("bob", "bob-pw-2", realm="hotline", algorithms=("MD5",), hasher=CHEAP)
            )
            assert await creds.refresh() is True
            assert creds.verify_web("bob", "bob-pw-2") and not creds.verify_web("bob", "bob-pw-1")
            assert creds.ha1("bob", "MD5") == digest_ha1("MD5", "bob", "hotline", "bob-pw-2")
        assert [e["event"] for e in logs].count("staff_db_reloaded") == 2

        # The table cannot be read (as when the database is down): the checks go on answering
        # from memory, one log line for the outage, one when it is back.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {name}.staff_credentials RENAME TO staff_away")
            with capture_logs() as logs:
                assert await creds.refresh() is False
                assert await creds.refresh() is False
                assert creds.verify_web("bob", "bob-pw-2")
                assert creds.ha1("bob", "MD5") is not None
                conn.execute(f"ALTER TABLE {name}.staff_away RENAME TO staff_credentials")
                writer.upsert(
                    make_entry("bob", "bob-pw-3", realm="hotline", algorithms=("MD5",), hasher=CHEAP)
                )  # fmt: skip
                assert await creds.refresh() is True
        events = [e["event"] for e in logs]
        assert events == ["staff_db_unreachable", "staff_db_reachable", "staff_db_reloaded"]
        assert creds.verify_web("bob", "bob-pw-3")
    finally:
        writer.close()
        await creds.stop()


async def test_watch_follows_the_table_in_the_background_and_stops(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    config = load_config(write_config(tmp_path, dsn, name))
    creds = StaffCredentials.open(config, hasher=CHEAP)
    await creds.start(every=0.05)
    try:
        upsert(
            dsn,
            name,
            make_entry("alice", "alice-pw-9", realm="hotline", algorithms=("MD5",), hasher=CHEAP),
        )
        await until(lambda: creds.entry("alice") is not None, "the watch read the new row")
        assert creds.verify_web("alice", "alice-pw-9")
    finally:
        await creds.stop()
    assert creds._watch is None and creds.database is not None
    assert creds.database._conn is None  # the connection closed with the watch


def test_hotline_passwd_upserts_into_the_table_importing_the_file_first(
    tmp_path: Path,
    schema: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn, name = schema
    cfg = write_config(tmp_path, dsn, name)
    config = load_config(cfg)
    set_password(
        config.server.staff_path,
        make_entry("alice", "alice-pw-1", realm="hotline", algorithms=("MD5",), hasher=CHEAP),
    )
    file_before = config.server.staff_path.read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO("bob-new-pw-1\n"))
    assert main(["passwd", "bob", "--config", str(cfg), "--password-stdin"]) == 0
    out = capsys.readouterr().out
    assert "1 members imported from" in out  # alice's hash is not lost to bob's first write
    assert f"schema {name!r}" in out and "bob's password set in the staff table" in out
    assert "bob-new-pw-1" not in out
    assert set(rows(dsn, name)) == {"alice", "bob"}
    assert config.server.staff_path.read_text() == file_before  # the file is not written
    creds = StaffCredentials.open(config)
    assert creds.verify_web("bob", "bob-new-pw-1") and creds.verify_web("alice", "alice-pw-1")
    # Again: one row replaced (a new version), nothing imported.
    version = rows(dsn, name)["bob"][2]
    monkeypatch.setattr("sys.stdin", io.StringIO("bob-new-pw-2\n"))
    assert main(["passwd", "bob", "--config", str(cfg), "--password-stdin"]) == 0
    assert "imported" not in capsys.readouterr().out
    assert rows(dsn, name)["bob"][2] > version
    assert read_staff(config.server.staff_path).keys() == {"alice"}


def test_check_config_reads_the_table_and_writes_nothing(
    tmp_path: Path, schema: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, name = schema
    cfg = write_config(tmp_path, dsn, name)
    config = load_config(cfg)
    set_password(
        config.server.staff_path,
        make_entry("alice", "alice-pw-1", realm="hotline", algorithms=("MD5",), hasher=CHEAP),
    )
    # No node has started: no table yet. What the first start would import is checked.
    assert main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "'bob' has no password" in err and "'alice'" not in err
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", (name,)).fetchone() == (None,)
    # The table has bob only (alice's file was imported, then her row lost: say so).
    StaffCredentials.open(config)  # a node's start: migrated, the file imported
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {name}.staff_credentials WHERE user_id = 'alice'")
    upsert(dsn, name, make_entry("bob", "bob-pw-1", realm="hotline", algorithms=("MD5",)))
    assert main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "'alice' has no password" in err and "'bob'" not in err


def test_hotline_passwd_names_an_unreachable_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port(pair=False)  # nothing listens there
    cfg = write_config(tmp_path, f"postgresql://nobody@127.0.0.1:{port}/none", "s")
    monkeypatch.setattr("sys.stdin", io.StringIO("bob-new-pw-1\n"))
    assert main(["passwd", "bob", "--config", str(cfg), "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert f"PostgreSQL database 'none' on 127.0.0.1:{port}" in err and "cannot connect" in err


# -- two nodes ----------------------------------------------------------------------------------


async def until(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def sign_in(server: Server, user: str, password: str) -> int:
    """``POST /api/session``: the HTTP status (200 signed in, 401 refused)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/api/session",
        data=json.dumps({"user": user, "password": password}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def register(server: Server, work: Path, password: str) -> bool:
    """Bob's phone registers with SIP digest (SIPp ``register.xml``): whether it got its 200."""
    result = run_sipp(
        ["-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob", "-ap", password,
         "-m", "1"],
        workdir=work, target=server.sip, timeout=15,
    )  # fmt: skip
    return result.successful == 1


def logged(server: Server, event: str) -> list[dict[str, Any]]:
    out = []
    for line in server.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == event:
                out.append(entry)
    return out


@pytest.mark.interop
async def test_hotline_passwd_changes_the_password_on_every_node_without_a_restart(
    tmp_path: Path, schema: tuple[str, str]
) -> None:
    dsn, name = schema
    # Node a brings the staff file of its single-node days: bob's and alice's hashes.
    dirs = {n: tmp_path / n for n in ("a", "b")}
    for d in dirs.values():
        (d / "data").mkdir(parents=True)
    for user in ("alice", "bob"):
        set_password(
            dirs["a"] / "data" / "staff.toml",
            make_entry(user, f"{user}-old-pw", realm="hotline", algorithms=("MD5",)),
        )
    nodes: dict[str, Server] = {}
    try:
        for n in ("a", "b"):
            text = CONFIG.format(data=dirs[n] / "data", dsn=dsn, schema=name, node=n)
            nodes[n] = await asyncio.to_thread(start_server, dirs[n], text)
        # The import happened once, on node a; node b (no file) knows bob from the table.
        assert len(logged(nodes["a"], "staff_file_imported")) == 1
        assert logged(nodes["b"], "staff_file_imported") == []
        assert set(rows(dsn, name)) == {"alice", "bob"}
        for server in nodes.values():
            assert await asyncio.to_thread(sign_in, server, "bob", "bob-old-pw") == 200

        # An administrator changes bob's password with node b's configuration.
        cfg = tmp_path / "admin.toml"
        cfg.write_text(CONFIG.format(data=tmp_path / "admin", dsn=dsn, schema=name, node=""))
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hotline.cli", "passwd", "bob", "--config", str(cfg),
             "--password-stdin"],
            input="bob-new-pw-7\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "bob's password set in the staff table" in done.stdout
        changed_at = time.monotonic()
        # Each node reloads the table within a few seconds (it polls every 2 s), no restart.
        for server in nodes.values():
            await until(functools.partial(logged, server, "staff_db_reloaded"), "a reload")
        seen = round(time.monotonic() - changed_at, 1)
        print(f"both nodes saw the new password {seen} s after hotline passwd")
        for n, server in nodes.items():
            assert server.proc.poll() is None  # the same processes: no restart
            assert await asyncio.to_thread(sign_in, server, "bob", "bob-new-pw-7") == 200
            assert await asyncio.to_thread(sign_in, server, "bob", "bob-old-pw") == 401
            assert await asyncio.to_thread(sign_in, server, "alice", "alice-old-pw") == 200
            work = tmp_path / f"phone-{n}"
            assert await asyncio.to_thread(register, server, work / "new", "bob-new-pw-7")
            assert not await asyncio.to_thread(register, server, work / "old", "bob-old-pw")
    finally:
        for server in nodes.values():
            server.stop()
