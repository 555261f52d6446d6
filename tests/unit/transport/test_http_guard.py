"""The HTTP server's connection limits on real sockets (hotline/http/guard.py): the newest
connection from an address over its cap is closed at once while other addresses are served;
a request whose headers do not arrive in time is closed; a request body over the limit is
refused by aiohttp (413); a slow but complete exchange and a WebSocket are unaffected."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from hotline.http.guard import GuardedSite, http_gate
from media_gateway.streams import StreamLimits

LIMITS = StreamLimits(
    idle_timeout=5.0,
    message_timeout=0.5,
    max_message_bytes=2048,
    max_connections=16,
    max_connections_per_source=3,
)


async def _ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str(msg.data)
    return ws


@pytest.fixture
async def site() -> AsyncIterator[GuardedSite]:
    app = web.Application(client_max_size=LIMITS.max_message_bytes)
    app.router.add_get("/", _ok)
    app.router.add_post("/", _ok)
    app.router.add_get("/ws", _ws)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=LIMITS.idle_timeout)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, gate=http_gate(LIMITS), limits=LIMITS)
    await site.start()
    yield site
    await runner.cleanup()


async def _get(port: int, source: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return int(head.split(b" ")[1])


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def test_connections_over_the_per_source_cap_are_closed_others_served(
    site: GuardedSite,
) -> None:
    held = []
    with capture_logs() as logs:
        for _ in range(3):
            held.append(await asyncio.open_connection("127.0.0.1", site.port))
        over = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(3)]
        for reader, _ in over:
            assert await _closed(reader, within=2.0)
        assert await _get(site.port, "127.0.0.2") == 200
    limited = [(e["source"], e["reason"]) for e in logs if e["event"] == "connection_limited"]
    assert limited == [("127.0.0.1", "per_source")]
    assert site.gate.limited_count["per_source"] == 3
    for _, writer in held + over:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_headers_not_finished_in_time_close_the_connection(site: GuardedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert await _closed(reader, within=10.0)
    assert site.gate.limited_count["message_timeout"] == 1
    writer.close()


async def test_slow_complete_headers_a_big_body_and_a_websocket(site: GuardedSite) -> None:
    # headers in pieces, finished within the timeout, then held past it: served
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    for piece in (b"GET / HTTP/1.1\r\n", b"Host: x\r", b"\n\r\n"):
        writer.write(piece)
        await asyncio.sleep(0.1)
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
    writer.close()
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{site.port}"
        async with http.post(url + "/", data=b"x" * 4096) as resp:
            assert resp.status == 413
        async with http.ws_connect(url + "/ws") as ws:
            await asyncio.sleep(LIMITS.message_timeout + 0.3)  # frames carry no header end
            await ws.send_str("still here")
            assert (await ws.receive(timeout=5)).data == "still here"
    assert site.gate.limited_count["message_timeout"] == 0
