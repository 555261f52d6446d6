"""A throwaway PostgreSQL server on one host of tests/cluster/netns.py (its own address, port
5432, trust authentication for the subnet), from Debian's postgresql package::

    with hosts("pg", "edge") as net, postgres(net["pg"], tmp / "pg") as db:
        psql(net["pg"], db, "-c", "CREATE TABLE t (x int)")
        db  # "postgres://postgres@10.200.0.1/hotline"

A namespace cannot reach the test process's 127.0.0.1, where the suite's own server
(scripts/pg-test-server) listens, so the hosts get a server of their own. Root only.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.cluster.netns import Host


def _bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    return found[-1].parent


def psql(host: Host, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``psql`` from ``host`` against ``url``, stopping at the first error; raises on failure."""
    done = host.run(str(_bin() / "psql"), "-q", "-v", "ON_ERROR_STOP=1", url, *args)
    if done.returncode != 0:
        raise RuntimeError(f"psql {args}: {done.stderr}")
    return done


@contextlib.contextmanager
def postgres(
    host: Host, workdir: Path, database: str = "hotline", *, durable: bool = True
) -> Iterator[str]:
    """Start PostgreSQL on ``host`` (data in ``workdir``, which must not exist, and whose parent
    the ``postgres`` user can enter) with an empty ``database``; yield its URL; stop it.
    ``durable=False`` turns fsync off (for tests: faster, and a crash loses nothing we keep)."""
    pg_bin = _bin()
    workdir.mkdir(mode=0o755)
    shutil.chown(workdir, "postgres")
    data = workdir / "data"
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {host.address}/24 trust\n")
    log = (workdir / "postgres.log").open("wb")
    proc = subprocess.Popen(
        host.cmd(
            *as_pg, str(pg_bin / "postgres"), "-D", str(data), "-k", str(workdir),
            "-c", f"listen_addresses={host.address}", "-c", f"fsync={'on' if durable else 'off'}",
        ),
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(300):
            ready = host.run(str(pg_bin / "pg_isready"), "-q", "-h", host.address, timeout=10)
            if ready.returncode == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError((workdir / "postgres.log").read_text())
            time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not start")
        admin = f"postgres://postgres@{host.address}/postgres"
        psql(host, admin, "-c", f"CREATE DATABASE {database}")
        yield f"postgres://postgres@{host.address}/{database}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
