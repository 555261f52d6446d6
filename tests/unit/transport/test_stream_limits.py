"""SIP over TCP connection limits on real sockets (127.0.0.1): the per-source cap, the idle and
incomplete-message timeouts, the largest message, a registered phone's connection kept open,
and one log line per source and limit (media_gateway/streams.py, media_gateway/transport.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from media_gateway.sip.endpoint import EndpointConfig, SipEndpoint
from media_gateway.streams import ConnectionGate, StreamLimits
from media_gateway.transport import SipTransport, StreamConnection

LIMITS = StreamLimits(
    idle_timeout=1.0,
    message_timeout=0.3,
    max_message_bytes=4096,
    max_connections=8,
    max_connections_per_source=3,
)


def _options(n: int, *, body: bytes = b"") -> bytes:
    return (
        f"OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-lim-{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=l{n}\r\n"
        f"To: <sip:hotline@127.0.0.1>\r\nCall-ID: lim-{n}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.fixture
async def shell() -> AsyncIterator[SipTransport]:
    endpoint = SipEndpoint(EndpointConfig(), rng=random.Random(1))
    limited: list[tuple[str, str]] = []
    transport = SipTransport(
        endpoint, lambda event: None, limits=LIMITS, on_limit=lambda *a: limited.append(a)
    )
    transport.limited = limited  # type: ignore[attr-defined]
    transport.writers = []  # type: ignore[attr-defined]
    await transport.start("127.0.0.1", 0, ("tcp",))
    yield transport
    for writer in transport.writers:  # type: ignore[attr-defined]
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    await transport.close()


async def _connect(
    shell: SipTransport, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert shell.local_tcp is not None
    reader, writer = await asyncio.open_connection(*shell.local_tcp, local_addr=(source, 0))
    shell.writers.append(writer)  # type: ignore[attr-defined]
    return reader, writer


async def _closed(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """Whether the service closes the connection (read until EOF) within ``within`` s."""
    try:
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def test_newest_connection_over_the_per_source_cap_is_closed_at_once(
    shell: SipTransport,
) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            await _connect(shell)
        over = [await _connect(shell) for _ in range(4)]
        for reader, _ in over:
            assert await _closed(reader, within=2.0)
        # another address still gets in, and is answered
        reader, writer = await _connect(shell, "127.0.0.2")
        writer.write(_options(1))
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"SIP/2.0 200")
    lines = [e for e in logs if e["event"] == "connection_limited"]
    assert [(e["source"], e["reason"]) for e in lines] == [("127.0.0.1", "per_source")]
    assert shell.limited.count(("sip", "per_source")) == 4  # type: ignore[attr-defined]
    assert shell.gate.per_source == {"127.0.0.1": 3, "127.0.0.2": 1}


async def test_idle_connection_is_closed_and_a_working_one_is_not(shell: SipTransport) -> None:
    idle_reader, _ = await _connect(shell)
    busy_reader, busy = await _connect(shell, "127.0.0.2")
    for n in range(6):  # a message every 0.2 s: never idle for 1 s
        busy.write(_options(10 + n))
        assert (await asyncio.wait_for(busy_reader.readuntil(b"\r\n\r\n"), 5)).startswith(
            b"SIP/2.0 200"
        )
        await asyncio.sleep(0.2)
    assert await _closed(idle_reader)
    assert not busy_reader.at_eof()
    assert ("sip", "idle_timeout") in shell.limited  # type: ignore[attr-defined]


async def test_keepalive_pings_keep_a_connection_open(shell: SipTransport) -> None:
    reader, writer = await _connect(shell)
    for _ in range(6):
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"  # the pong
        await asyncio.sleep(0.2)
    assert not reader.at_eof()


async def test_half_sent_message_is_closed_after_the_message_timeout(shell: SipTransport) -> None:
    reader, writer = await _connect(shell)
    writer.write(_options(20)[:60])
    with capture_logs() as logs:
        assert await _closed(reader)
    assert [(e["reason"], e["buffered"]) for e in logs if e["event"] == "connection_limited"] == [
        ("message_timeout", 60)
    ]


async def test_a_message_over_the_size_limit_closes_the_connection(shell: SipTransport) -> None:
    reader, writer = await _connect(shell)
    writer.write(_options(30, body=b"x" * 5000))
    assert await _closed(reader, within=2.0)
    assert ("sip", "too_large") in shell.limited  # type: ignore[attr-defined]


async def test_a_registered_phones_connection_outlives_the_idle_timeout(
    shell: SipTransport,
) -> None:
    reader, writer = await _connect(shell)
    writer.write(_options(40))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    (conn,) = [c for c in shell.connections if isinstance(c, StreamConnection)]
    conn.hold_open(10.0)  # what the user agent does after a 200 to REGISTER on it
    await asyncio.sleep(LIMITS.idle_timeout + 0.5)
    assert not reader.at_eof()


def test_gate_global_cap_and_one_line_per_episode() -> None:
    now = [0.0]
    gate = ConnectionGate(
        "sip", max_connections=2, max_connections_per_source=5, quiet=10, clock=lambda: now[0]
    )
    with capture_logs() as logs:
        assert gate.admit("10.0.0.1") and gate.admit("10.0.0.2")
        assert not gate.admit("10.0.0.3")
        assert not gate.admit("10.0.0.3")
        now[0] = 5.0
        assert not gate.admit("10.0.0.3")  # same episode: counted, not logged
        now[0] = 16.0
        assert not gate.admit("10.0.0.3")  # quiet for 11 s: a new episode
        gate.release("10.0.0.1")
        assert gate.admit("10.0.0.3")
    assert [e["reason"] for e in logs] == ["global", "global"]
    assert gate.limited_count["global"] == 4
    assert gate.per_source == {"10.0.0.2": 1, "10.0.0.3": 1}


_RAISE = """
import resource, sys, json
from structlog.testing import capture_logs
from media_gateway.streams import raise_open_file_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
with capture_logs() as logs:
    soft, hard = raise_open_file_limit(int(sys.argv[2]))
print(json.dumps([soft, hard, [e["event"] for e in logs]]))
"""


@pytest.mark.parametrize(
    ("hard", "needed", "soft", "events"),
    [
        (4096, 2048, 2048, []),  # raised to what the caps need
        (1024, 2048, 1024, ["open_file_limit_low"]),  # as far as it goes, with one warning
    ],
)
def test_open_file_limit_is_raised_towards_what_the_caps_need(
    hard: int, needed: int, soft: int, events: list[str]
) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
        pytest.skip("the test's own hard limit is lower")
    done = subprocess.run(
        [sys.executable, "-c", _RAISE, str(hard), str(needed)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == f"[{soft}, {hard}, {events!r}]".replace("'", '"')
