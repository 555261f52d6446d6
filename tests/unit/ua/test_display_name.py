"""The From display name of an offer: what an agent's registered phone shows for the caller.

The INVITE the phone receives carries ``"sales: +33612345678" <sip:+33612345678@host>``,
quoted and escaped per RFC 3261 §25.1 (``"`` and ``\\`` as quoted-pairs); characters no
quoted-string may carry (CR, LF, other controls) never reach the wire.
"""

from __future__ import annotations

import asyncio

import pytest
from harness import UaHarness

from media_gateway.dialplan import DISPLAY_MAX, display_name
from media_gateway.sip.headers import parse_name_addr


async def ring_alice(ua_h: UaHarness, display: str | None) -> str:
    """Ring alice's phone with ``display``; the From header her phone received."""
    phone = ua_h.registered_phone("alice")
    task = asyncio.ensure_future(
        ua_h.ua.originate("alice", ring_timeout=0.3, caller="+33612345678", display=display)
    )
    await ua_h.until(lambda: phone.incoming())
    (invite,) = phone.incoming()
    phone.ring(invite.call)
    assert await asyncio.wait_for(task, 2.0) is None  # not answered: cancelled
    await ua_h.settle()
    return invite.request.headers.get("From") or ""


async def test_the_phone_shows_the_queue_and_the_caller(ua_h: UaHarness) -> None:
    header = await ring_alice(ua_h, "sales: +33612345678")
    assert header.startswith('"sales: +33612345678" <sip:+33612345678@')
    from_ = parse_name_addr(header)
    assert from_.display == "sales: +33612345678"
    assert from_.uri.startswith("sip:+33612345678@")


async def test_quotes_and_backslashes_are_escaped(ua_h: UaHarness) -> None:
    header = await ring_alice(ua_h, 'vip "gold" \\ desk: +33612345678')
    assert header.startswith('"vip \\"gold\\" \\\\ desk: +33612345678" <sip:')
    assert parse_name_addr(header).display == 'vip "gold" \\ desk: +33612345678'


async def test_line_breaks_never_reach_the_header(ua_h: UaHarness) -> None:
    header = await ring_alice(ua_h, "sales\r\nX-Injected: 1\x00")
    assert "\r" not in header and "\n" not in header and "\x00" not in header
    assert parse_name_addr(header).display == "sales X-Injected: 1"


async def test_without_a_display_the_phone_sees_hotline(ua_h: UaHarness) -> None:
    header = await ring_alice(ua_h, None)
    assert parse_name_addr(header).display == "hotline"


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("sales: +33612345678", "sales: +33612345678"),
        ("  support:\tmessage   +8613900000001 ", "support: message +8613900000001"),
        ("售后: +8613900000001", "售后: +8613900000001"),  # UTF-8 is fine in a quoted-string
        ("a\u202eb", "a b"),  # a bidi override would let a name spoof another
        ("\r\n", ""),
        ("x" * 100, "x" * DISPLAY_MAX),
    ],
)
def test_display_name_cleaning(given: str, sent: str) -> None:
    assert display_name(given) == sent
