"""A cluster node rings a user whose phone registered through another node via the edge."""

from __future__ import annotations

import pytest

from media_gateway.dialplan import Destinations
from media_gateway.registrations import Registrations, RegistrationSettings


def destinations(edge: tuple[str, int] | None) -> Destinations:
    regs = Registrations(RegistrationSettings(), password_for=lambda _user: "pw")
    return Destinations(
        public_host="10.0.0.2", registrations=regs, trunks=(), clock=lambda: 0.0, edge=edge
    )


def test_an_agent_not_registered_here_is_rung_through_the_edge() -> None:
    dest = destinations(("10.0.0.1", 5060)).user("bob", "hotline", "sales: +331234")
    assert (dest.uri, dest.dest, dest.to_uri) == (
        "sip:bob@10.0.0.1:5060",
        ("10.0.0.1", 5060),
        "sip:bob@10.0.0.1:5060",
    )
    assert (dest.agent, dest.from_uri, dest.from_display) == (
        "bob",
        "sip:hotline@10.0.0.2",
        "sales: +331234",
    )


def test_without_an_edge_an_unregistered_agent_has_no_phone() -> None:
    with pytest.raises(LookupError, match="no registered phone"):
        destinations(None).user("bob", "hotline")
