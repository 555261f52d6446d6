"""Which address a request really came from, on a node behind the edge.

The edge (``kamailio.cfg``) puts the caller's address in ``X-Hotline-Source: ip:port`` on every
new request it relays, removing any such header that came from outside. A node sees the edge as
the source of everything, so its per-source checks (the digest lockout, the per-source limits)
should key on that header, but only when the request came from an edge: from anyone else the
header is a forgery and the packet's own source counts. The user agent (``ua.py``) counts
REGISTER and a colleague's INVITE against it (the digest lockout, the nonces' binding); the
binding itself is reached at the packet's source, the edge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

HEADER = "X-Hotline-Source"


def parse_source(value: str) -> tuple[str, int] | None:
    """``ip:port`` or ``[v6]:port`` as (ip, port); None when it is not that."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip), int(port)


def real_source(
    peer: tuple[str, int], header: str | None, edges: Collection[str]
) -> tuple[str, int]:
    """The address to count a request against: the header's when ``peer`` (the packet's source)
    is one of the ``edges`` and the header is well formed, else ``peer`` itself."""
    if header is None or peer[0] not in edges:
        return peer
    return parse_source(header) or peer
