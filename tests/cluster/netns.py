"""Hosts for cluster tests: network namespaces with their own addresses on one private subnet.

::

    with hosts("edge", "node1", "node2") as net:
        net["edge"].address                      # "10.200.0.1" (in the order given)
        subprocess.run(net["node1"].cmd("ip", "addr"))   # argv run inside node1
        net["node2"].cut()                       # its link goes down (a partition) ...
        net["node2"].mend()                      # ... and up again
    # every namespace and link is gone here, also when the block raised

Each host is a namespace with loopback up and one interface ``eth0`` on ``SUBNET``; the hosts
are joined by a bridge that lives in a namespace of its own, so nothing is added to the test
process's namespace and two networks (parallel test workers) never see each other even though
they use the same addresses. Names carry a random prefix (``hl`` + 6 hex digits). Root only;
:func:`require_root` fails (or skips outside CI) with the reason.

The hosts reach each other only: not the internet, and not the test process's 127.0.0.1 (a
server a host needs, PostgreSQL for one, runs inside a host of its own).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

SUBNET = "10.200.0"
"""The hosts get ``10.200.0.1``, ``10.200.0.2``, ... (/24)."""


def require_root() -> None:
    """Namespaces need root: fail in CI (``CI=true``), skip elsewhere."""
    if os.geteuid() == 0:
        return
    reason = "cluster tests create network namespaces and must run as root (CI does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Host:
    """One "machine": a network namespace with one address."""

    name: str
    """The namespace's name (``ip netns exec <name> ...``)."""
    address: str
    """Its IPv4 address on the shared subnet."""
    switch: str
    """The namespace holding the bridge (for :meth:`cut`)."""
    port: str
    """Its link's name on the bridge's side."""

    def cmd(self, *argv: str) -> list[str]:
        """``argv`` as a command run inside this host."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside this host to completion (text output captured)."""
        return subprocess.run(
            self.cmd(*argv), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )

    def cut(self) -> None:
        """Take this host's link down: nothing goes in or out (its processes live on)."""
        _ip("-n", self.switch, "link", "set", self.port, "down")

    def mend(self) -> None:
        """Bring this host's link back up."""
        _ip("-n", self.switch, "link", "set", self.port, "up")


@contextlib.contextmanager
def hosts(*names: str) -> Iterator[dict[str, Host]]:
    """Make one host per name (at most 250), joined by a bridge; remove them all on exit."""
    assert 0 < len(names) <= 250 and len(set(names)) == len(names), names
    require_root()
    prefix = f"hl{secrets.token_hex(3)}"
    switch = f"{prefix}-switch"
    made: list[str] = []
    try:
        _ip("netns", "add", switch)
        made.append(switch)
        _ip("-n", switch, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        net: dict[str, Host] = {}
        for i, name in enumerate(names, start=1):
            ns = f"{prefix}-{name}"
            _ip("netns", "add", ns)
            made.append(ns)
            port = f"p{i}"
            _ip(
                "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            )  # fmt: skip
            _ip("-n", switch, "link", "set", port, "master", "br0")
            _ip("-n", switch, "link", "set", port, "up")
            address = f"{SUBNET}.{i}"
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            net[name] = Host(name=ns, address=address, switch=switch, port=port)
        yield net
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
