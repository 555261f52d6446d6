"""Where and how an outbound INVITE goes (the user agent's UAC side, without I/O).

A user's call goes to their best registered binding, at the address it registered from (never a
host named in its Contact); a number goes through a trunk with the trunk's caller-id rules
(``sip/trunk.py``); a ``sip:`` URI only to an IP literal, since nothing is ever resolved.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from media_gateway.registrations import Registrations
from media_gateway.sip.headers import format_hostport
from media_gateway.sip.trunk import CallerIdRule, apply_caller_id, normalise_number
from media_gateway.trunk_registrations import Trunk


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where and how to send an outbound INVITE."""

    uri: str
    dest: tuple[str, int]
    transport: str = "udp"
    to_uri: str
    from_uri: str
    from_display: str | None = "hotline"
    headers: list[tuple[str, str]] = field(default_factory=list)
    agent: str = ""
    trunk: str = ""
    caller_id: str = ""


DISPLAY_MAX = 64
"""Characters of a From display name we send at most (phones show twenty or so)."""


def display_name(text: str) -> str:
    """``text`` made fit for a From display name: control and format characters (CR and LF
    above all, which no quoted-string may carry, RFC 3261 §25.1; bidi overrides) become
    spaces, runs of white space one, and it is cut to ``DISPLAY_MAX`` characters. Quoting and
    escaping of ``"`` and ``\\`` are done where the header is written
    (``sip.headers.quote_string``)."""
    cleaned = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return " ".join(cleaned.split())[:DISPLAY_MAX].rstrip()


class Destinations:
    """Builds a ``Destination`` for a user, a number through a trunk, or a URI at an address."""

    def __init__(
        self,
        *,
        public_host: str,
        registrations: Registrations,
        trunks: Sequence[Trunk],
        clock: Callable[[], float],
        edge: tuple[str, int] | None = None,
    ) -> None:
        self.public_host = public_host
        self.registrations = registrations
        self.trunks = list(trunks)
        self.clock = clock
        self.edge = edge
        """A cluster's edge proxy (Kamailio, docs/cluster.md): a user whose phone registered
        through another node is rung through it (the edge keeps every node's bindings)."""

    def user(self, user: str, caller: str, display: str | None = None) -> Destination:
        """Where and how to ring ``user``'s best registered phone; ``display`` is the From
        display name the phone shows (e.g. ``sales: +33612345678``), "hotline" without one."""
        bindings = self.registrations.contacts(user, self.clock())
        if not bindings and self.edge is not None:
            # Registered through another node, perhaps: the edge looks the user up.
            at = f"sip:{user}@{format_hostport(*self.edge)}"
            return Destination(
                uri=at,
                dest=self.edge,
                to_uri=at,
                from_uri=f"sip:{caller}@{self.public_host}",
                from_display=display_name(display or "") or "hotline",
                agent=user,
            )
        if not bindings:
            raise LookupError(f"agent {user!r} has no registered phone")
        b = bindings[0]
        host = self.public_host
        return Destination(
            uri=str(b.contact),
            dest=b.source,
            transport=b.transport,
            to_uri=f"sip:{user}@{host}",
            from_uri=f"sip:{caller}@{host}",
            from_display=display_name(display or "") or "hotline",
            agent=user,
        )

    def trunk(self, number: str, trunk_name: str, caller: str) -> Destination:
        """Where and how to call ``number`` through a trunk (caller-id rules applied)."""
        trunk = next((t for t in self.trunks if t.name == trunk_name), None)
        if trunk is None:
            raise LookupError(f"no trunk {trunk_name!r}")
        dialled = normalise_number(number)
        if len(dialled.lstrip("+")) < 2:
            raise ValueError(f"not a dialable number: {number!r}")
        rule = CallerIdRule(
            number=trunk.caller_id,
            display=trunk.caller_id_display,
            withhold=trunk.withhold_caller_id,
        )
        shown, display, headers = apply_caller_id(rule, caller or "hotline", None)
        host = format_hostport(trunk.address[0], trunk.address[1])
        uri = f"sip:{dialled}@{host};user=phone"
        return Destination(
            uri=uri,
            dest=trunk.address,
            to_uri=uri,
            from_uri=f"sip:{shown}@{self.public_host}",
            from_display=display,
            headers=headers,
            trunk=trunk.name,
            caller_id=shown,
        )

    def uri(self, uri_text: str, dest: tuple[str, int], caller: str) -> Destination:
        ipaddress.ip_address(dest[0])  # ValueError for names: we resolve nothing
        return Destination(
            uri=uri_text,
            dest=dest,
            to_uri=uri_text,
            from_uri=f"sip:{caller}@{self.public_host}",
        )
