"""Issue 15, the edge's bindings in PostgreSQL (``kamailio.cfg`` with ``WITH_PG_LOCATION``, the
schema ``hotline/cluster/edge/location.sql``): a phone registered through the edge is written
through to the location table at once, and after the edge is restarted (a new Kamailio, nothing
in memory) a node's INVITE for the agent still rings the phone, with no new REGISTER.

PostgreSQL runs on a host of its own (tests/cluster/pg_host.py), one hotline node authenticates.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.cluster.edge import LOCATION_SCHEMA
from tests.cluster.pg_host import postgres, psql
from tests.cluster.test_edge import Cluster, register_phone, ring_phone, running_cluster

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.serial]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    tmp = tmp_path_factory.mktemp("edge-pg")
    # PostgreSQL runs as its own user, who cannot enter pytest's private temporary directory.
    pg_dir = Path(tempfile.mkdtemp(prefix="hl-edge-pg-"))
    pg_dir.chmod(0o755)
    try:
        with (
            running_cluster(tmp, nodes=("node1",), others=("pg", "phone")) as cluster,
            postgres(cluster.net["pg"], pg_dir / "pg", durable=False) as db,
        ):
            psql(cluster.net["pg"], db, "-f", str(LOCATION_SCHEMA))
            yield cluster, db
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)


def test_bindings_survive_an_edge_restart(cluster: tuple[Cluster, str]) -> None:
    net, db = cluster[0].net, cluster[1]
    with cluster[0].edge("node1", location_db=db):
        register_phone(cluster[0])
        # Written through: the row is there as soon as the phone has its 200.
        rows = psql(net["pg"], db, "-At", "-c", "SELECT username, contact FROM location").stdout
        assert rows.split() == [f"alice|sip:alice@{net['phone'].address}:5062"], rows
    # A new edge process: it loads the bindings from PostgreSQL.
    with cluster[0].edge("node1", location_db=db):
        rang, phone = ring_phone(cluster[0], "node1")
        assert (rang["ok"], rang["failed"]) == (1, 0), rang["out"]
        assert phone["ok"] == 1, phone["out"]
