"""A real browser on the WebRTC leg: headless Chromium loads ``/call`` and dials ``*43``.

Chromium's fake microphone plays a generated tone (``--use-file-for-fake-audio-capture``); the
page is driven over the DevTools protocol (a WebSocket, with aiohttp: no selenium) and reports
what its ``RTCPeerConnection.getStats()`` sees in ``window.hotlineStats``: the echo test must
come back as PCMU with packets (> 50) and sound (audioLevel > 0).

Everything stays on the host: the gateway listens on 127.0.0.1, Chromium resolves no name and
has a dead proxy for anything that is not loopback, and no STUN/TURN server is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from media_gateway.audio.wav import write_wav
from tests.interop.harness import as_center
from tests.interop.test_webrtc import running

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

TONE_HZ = 1000.0


def _tone_wav(path: Path, rate: int = 48000, seconds: float = 4.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    write_wav(path, (9000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16), rate)
    return path


class DevTools:
    """A minimal Chrome DevTools protocol client over one browser WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("DevTools connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        msg: dict[str, Any] = {"id": rid, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        await self.ws.send_json(msg)
        reply = await asyncio.wait_for(fut, 15)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": True,
                "userGesture": True,
            },
            session=session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def chromium(wav: Path) -> AsyncIterator[tuple[DevTools, asyncio.subprocess.Process]]:
    assert CHROMIUM is not None, "chromium is missing: run scripts/bootstrap --test"
    with tempfile.TemporaryDirectory(prefix="hotline-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
            # Nothing leaves the host: no name resolves but loopback, anything else meets a
            # dead proxy on loopback, and the background services are off.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--mute-audio",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        devtools: DevTools | None = None
        try:
            assert proc.stderr is not None
            url = None
            async with asyncio.timeout(20):
                while url is None:
                    line = await proc.stderr.readline()
                    if not line:
                        raise RuntimeError("chromium exited before DevTools listened")
                    m = re.search(rb"DevTools listening on (ws://127\.0\.0\.1:\d+/\S+)", line)
                    if m:
                        url = m.group(1).decode()
            drain = asyncio.get_running_loop().create_task(_drain(proc.stderr))
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(url, max_msg_size=16 << 20) as ws,
            ):
                devtools = DevTools(ws)
                try:
                    yield devtools, proc
                finally:
                    with contextlib.suppress(Exception):
                        await devtools.send("Browser.close")
                    await devtools.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            finally:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    async for _ in stream:
        continue


async def _page(devtools: DevTools, url: str) -> str:
    target = await devtools.send("Target.createTarget", {"url": "about:blank"})
    attached = await devtools.send(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
    )
    session = str(attached["sessionId"])
    await devtools.send("Page.enable", session=session)
    await devtools.send("Runtime.enable", session=session)
    await devtools.send("Page.navigate", {"url": url}, session=session)
    async with asyncio.timeout(15):
        while await devtools.evaluate(session, "document.readyState") != "complete" or (
            await devtools.evaluate(session, "typeof window.hotlineStats") != "object"
        ):
            await asyncio.sleep(0.1)
    return session


async def test_chromium_calls_the_echo_test(tmp_path: Path) -> None:
    wav = _tone_wav(tmp_path / "tone-48k.wav")
    async with running(tmp_path) as run, chromium(wav) as (devtools, _proc):
        session = await _page(devtools, f"http://127.0.0.1:{run.http_port}/call")
        await devtools.evaluate(
            session,
            "document.getElementById('number').value = '*43';"
            "document.getElementById('call').click(); true",
        )
        stats: dict[str, Any] = {}
        async with asyncio.timeout(25):
            while True:
                stats = json.loads(
                    await devtools.evaluate(session, "JSON.stringify(window.hotlineStats)")
                )
                if stats.get("error"):
                    raise AssertionError(f"the page failed: {stats}")
                if stats.get("packetsReceived", 0) > 50 and stats.get("audioLevel", 0) > 0:
                    break
                await asyncio.sleep(0.25)
        print(f"chromium /call *43: {stats}")
        assert stats["codec"].lower() == "audio/pcmu", stats
        assert stats["state"] == "connected", stats
        assert len(run.gateway.ua.web_sessions) == 1
        server = getattr(run.gateway.media, "server", None)
        if server is not None:  # the echo heard what Chromium sent: the tone's packets
            chans = list(server.engine.channels.values())
            assert chans and chans[0].packets_in > 50, chans
        await devtools.evaluate(session, "document.getElementById('hangup').click(); true")
        async with asyncio.timeout(10):
            while run.gateway.ua.web_sessions:
                await asyncio.sleep(0.05)


async def test_chromium_agent_page_answers_a_web_caller(tmp_path: Path) -> None:
    """``/agent`` logged in as alice; an aiortc caller's call is offered to it and bridged."""
    from media_gateway.session import CallSession
    from tests.interop.test_webrtc import expect, web_call

    wav = _tone_wav(tmp_path / "tone-48k.wav")
    bridged: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(session: CallSession) -> None:
        await session.answer()
        other = await run.gateway.ua.originate("alice", ring_timeout=15, caller="web-caller")
        assert other is not None, "the agent page did not answer"
        await session.bridge(other)
        bridged.set_result(None)
        try:
            await session.ended.wait()
        finally:
            await other.hangup()

    async with running(tmp_path) as run, chromium(wav) as (devtools, _proc):
        run.gateway.switch.center = as_center(handler)
        page = await _page(devtools, f"http://127.0.0.1:{run.http_port}/agent")
        await devtools.evaluate(
            page,
            "document.getElementById('agent').value = 'alice';"
            "document.getElementById('password').value = 'alice-demo-1';"
            "document.querySelector('#login button').click(); true",
        )
        async with asyncio.timeout(10):
            while "alice" not in run.gateway.registrations.browser_phones:
                await asyncio.sleep(0.05)
        async with web_call(run, "1000", 500.0) as (caller, ws, _answer):
            await expect(ws, "connected")
            async with asyncio.timeout(10):
                while await devtools.evaluate(page, "window.hotlineStats.state") != "ringing":
                    await asyncio.sleep(0.1)
            await devtools.evaluate(page, "document.getElementById('accept').click(); true")
            await asyncio.wait_for(bridged, 15)
            peak = await caller.hears(TONE_HZ, within=15)  # Chromium's fake microphone
            stats: dict[str, Any] = {}
            async with asyncio.timeout(15):
                while stats.get("packetsReceived", 0) <= 50 or not stats.get("audioLevel"):
                    await asyncio.sleep(0.25)
                    stats = json.loads(
                        await devtools.evaluate(page, "JSON.stringify(window.hotlineStats)")
                    )
            print(f"chromium /agent: caller heard {peak:.0f} Hz; page {stats}")
            assert stats["state"] == "connected" and stats["codec"].lower() == "audio/pcmu"
        async with asyncio.timeout(10):
            while await devtools.evaluate(page, "window.hotlineStats.state") != "idle":
                await asyncio.sleep(0.1)
        assert "alice" in run.gateway.registrations.browser_phones  # still logged in after the call
