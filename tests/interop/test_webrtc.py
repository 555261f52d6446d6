"""WebRTC legs end to end, in-process: an aiortc client plays the browser.

A ``Hotline`` and its HTTP API run on this loop on 127.0.0.1 (media on the same loop, and once
as its own process); the client connects to ``/ws/call`` (or ``/ws/agent``) with its own
``RTCPeerConnection`` sending a known tone, and we check what comes back by its dominant
frequency:

- ``*43`` (echo): the client hears its own tone; the answer offers PCMU only.
- ``1000`` with a custom hotline handler: a key sent over the socket reaches ``collect`` and
  the prompt played afterwards reaches the client.
- a WebRTC caller bridged to a SIP leg (SIPp ``uas`` echoing RTP): the tone goes out as PCMU
  RTP and comes back through the bridge.
- a WebRTC caller bridged to an agent's browser (``/ws/agent``, a second aiortc client): each
  hears the other's tone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.media.webrtc_peer import ice_host_addresses
from media_gateway.session import CallSession
from tests.interop.harness import as_center, free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

RATE = 8000
LOOPBACK = ("127.0.0.1",)


# -- the in-process gateway -------------------------------------------------------------------


@dataclass
class Running:
    gateway: Hotline
    http_port: int

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.http_port}{path}"


def _config(tmp: Path, *, process: bool) -> str:
    low = 40000 + (free_port() % 2000) * 8
    return f"""
[server]
sip = "127.0.0.1:{free_port()}"
http = "127.0.0.1:0"
data_dir = "{tmp}"

[sip]
transports = ["udp"]
rtp_ports = [{low}, {low + 400}]

[media]
process = {"true" if process else "false"}

[[agents]]
id = "alice"
password = "alice-demo-1"
extension = "1001"

[entry_points]
"1000" = {{ kind = "hotline", name = "hotline" }}
"*43" = {{ kind = "echo", name = "echo-test" }}
"""


@contextlib.asynccontextmanager
async def running(tmp: Path, *, process: bool = False) -> AsyncIterator[Running]:
    gateway = Hotline(parse_config(_config(tmp, process=process), file="test.toml"))
    await gateway.start()
    runner = web.AppRunner(gateway.http_app())
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        yield Running(gateway, port)
    finally:
        await runner.cleanup()
        await gateway.stop()


# -- the aiortc "browser" -----------------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """A sine at ``hz``, 20 ms frames of s16 mono 8 kHz, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += 160
            wait = self._start + self._pts / RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (self._pts + np.arange(160)) / RATE
        samples = (8000 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


@dataclass
class Browser:
    """One aiortc peer and what it heard (8 kHz mono int16 chunks)."""

    hz: float
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration([])))
    heard: list[np.ndarray] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.track = ToneTrack(self.hz)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                arr = frame.to_ndarray().reshape(-1)
                channels = len(frame.layout.channels)
                if channels > 1:
                    arr = arr.reshape(-1, channels).mean(axis=1)
                if frame.sample_rate != RATE:  # not expected: the gateway answers PCMU
                    arr = arr[:: frame.sample_rate // RATE]
                self.heard.append(arr.astype(np.int16))

    async def offer(self) -> str:
        self.pc.addTrack(self.track)
        with ice_host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_offer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.pc.addTrack(self.track)
        with ice_host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def samples(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, dtype=np.int16)

    async def hears(self, hz: float, *, within: float = 10.0, seconds: float = 0.5) -> float:
        """Wait until the last ``seconds`` heard are dominated by ``hz``; the measured peak."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        peak = 0.0
        while loop.time() < deadline:
            await asyncio.sleep(0.2)
            x = self.samples()[-int(seconds * RATE) :]
            if x.size < seconds * RATE:
                continue
            peak, level = dominant(x)
            if abs(peak - hz) <= 15 and level > 500:
                return peak
        raise AssertionError(
            f"never heard {hz} Hz (last peak {peak:.0f} Hz, {self.samples().size} samples)"
        )

    async def close(self) -> None:
        self.track.stop()
        await self.pc.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


def dominant(x: np.ndarray) -> tuple[float, float]:
    """(frequency of the largest FFT bin, RMS level) of an 8 kHz signal."""
    xf = x.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(xf * np.hanning(xf.size)))
    spectrum[:5] = 0  # DC
    peak = float(np.fft.rfftfreq(xf.size, 1 / RATE)[int(np.argmax(spectrum))])
    return peak, float(np.sqrt(np.mean(xf**2)))


async def expect(
    ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive_json()
            if msg["type"] == kind:
                return dict(msg)
            if msg["type"] in ("error", "rejected", "login_failed") and kind != msg["type"]:
                raise AssertionError(f"expected {kind}, got {msg}")


@contextlib.asynccontextmanager
async def web_call(
    run: Running, number: str, hz: float
) -> AsyncIterator[tuple[Browser, aiohttp.ClientWebSocketResponse, dict[str, Any]]]:
    browser = Browser(hz)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(run.url("/ws/call"), timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws,
        ):
            sdp = await browser.offer()
            await ws.send_json({"type": "call", "number": number, "sdp": sdp, "caller": "web"})
            answer = await expect(ws, "answer")
            await browser.accept_answer(answer["sdp"])
            yield browser, ws, answer
            if not ws.closed:
                await ws.send_json({"type": "hangup"})
    finally:
        await browser.close()


def _codecs(sdp: str) -> set[str]:
    return {m.lower() for m in re.findall(r"a=rtpmap:\d+ ([A-Za-z0-9-]+)/", sdp)}


async def _until(cond: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not cond():
            await asyncio.sleep(0.05)


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("process", [False, True], ids=["same-loop", "media-process"])
async def test_echo_returns_the_callers_tone(tmp_path: Path, process: bool) -> None:
    async with (
        running(tmp_path, process=process) as run,
        web_call(run, "*43", 700.0) as (
            browser,
            ws,
            answer,
        ),
    ):
        assert _codecs(answer["sdp"]) == {"pcmu"}, answer["sdp"]
        assert "127.0.0.1" in answer["sdp"]
        for line in answer["sdp"].splitlines():
            if line.startswith("a=candidate"):
                assert " 127.0.0.1 " in line, line  # loopback only
        await expect(ws, "connected")
        peak = await browser.hears(700.0)
        print(f"echo ({'process' if process else 'loop'}): heard {peak:.1f} Hz")
        await _until(lambda: len(run.gateway.ua.web_sessions) == 1)
        await ws.send_json({"type": "hangup"})
        await _until(lambda: not run.gateway.ua.web_sessions)


async def test_hotline_handler_gets_a_key_and_the_client_hears_the_prompt(
    tmp_path: Path,
) -> None:
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(session: CallSession) -> None:
        await session.answer()
        result = await session.collect(max_digits=1, timeout=15)
        got.set_result(result.digits)
        await session.play("tone:1200:3000", interruptible=False)
        await session.ended.wait()

    async with running(tmp_path) as run:
        run.gateway.switch.center = as_center(handler)
        async with web_call(run, "1000", 500.0) as (browser, ws, _answer):
            await expect(ws, "connected")
            await ws.send_json({"type": "dtmf", "digit": "5"})
            assert await asyncio.wait_for(got, 10) == "5"
            await browser.hears(1200.0)


async def test_unknown_number_is_rejected(tmp_path: Path) -> None:
    async with running(tmp_path) as run, aiohttp.ClientSession() as http:
        browser = Browser(500.0)
        try:
            async with http.ws_connect(run.url("/ws/call")) as ws:
                sdp = await browser.offer()
                await ws.send_json({"type": "call", "number": "9999", "sdp": sdp})
                await expect(ws, "answer")
                assert (await expect(ws, "rejected"))["type"] == "rejected"
        finally:
            await browser.close()
        await _until(lambda: not run.gateway.ua.web_sessions and not _media_channels(run))


def _media_channels(run: Running) -> int:
    server = getattr(run.gateway.media, "server", None)
    return len(server.engine.channels) if server is not None else 0


def _sipp_uas(tmp: Path, port: int, media_port: int) -> subprocess.Popen[bytes]:
    sipp = shutil.which("sipp")
    assert sipp is not None
    return subprocess.Popen(
        [
            sipp,
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(media_port),
            "-rtp_echo",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "40s",
        ],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_web_caller_bridged_to_a_sip_leg(tmp_path: Path) -> None:
    """The tone goes to SIPp as PCMU RTP, SIPp echoes it, it comes back through the bridge."""
    sip_port = free_port()
    media_port = free_port(pair=True)
    bridged: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def handler(session: CallSession) -> None:
        await session.answer()
        other = await run.gateway.ua.originate(f"sip:uas@127.0.0.1:{sip_port}", ring_timeout=10)
        assert other is not None, "SIPp did not answer"
        await session.bridge(other)
        bridged.set_result({"channel": other.channel})
        try:
            await session.ended.wait()
        finally:
            stats = await other.stats()
            await other.hangup()
            bridged_stats.update(stats)

    bridged_stats: dict[str, Any] = {}
    proc = _sipp_uas(tmp_path, sip_port, media_port)
    try:
        await asyncio.sleep(0.3)
        async with running(tmp_path) as run:
            run.gateway.switch.center = as_center(handler)
            async with web_call(run, "1000", 650.0) as (browser, _ws, _answer):
                info = await asyncio.wait_for(bridged, 15)
                assert info["channel"] == "sip"
                peak = await browser.hears(650.0, within=15)
                print(f"web -> sip echo -> web: heard {peak:.1f} Hz")
                await asyncio.sleep(1.5)  # a few dozen more packets each way
            await _until(lambda: not run.gateway.ua.web_sessions)
        rc = await asyncio.wait_for(asyncio.to_thread(proc.wait), 20)
        assert rc == 0, f"sipp exited {rc}"
        assert bridged_stats.get("packets_out", 0) > 50, bridged_stats
        assert bridged_stats.get("packets_in", 0) > 50, bridged_stats
        print(f"SIP leg: {bridged_stats}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _agent_phone(
    run: Running, http: aiohttp.ClientSession, browser: Browser
) -> tuple[aiohttp.ClientWebSocketResponse, asyncio.Task[None]]:
    ws = await http.ws_connect(run.url("/ws/agent"))
    await ws.send_json({"type": "login", "agent": "alice", "password": "alice-demo-1"})
    await expect(ws, "logged_in")

    async def answer_calls() -> None:
        incoming = await expect(ws, "incoming", within=30)
        sdp = await browser.accept_offer(incoming["sdp"])
        await ws.send_json({"type": "accept", "sdp": sdp})
        await expect(ws, "connected")

    return ws, asyncio.get_running_loop().create_task(answer_calls())


async def test_agent_login_is_checked(tmp_path: Path) -> None:
    async with running(tmp_path) as run, aiohttp.ClientSession() as http:
        for agent, password in (("alice", "wrong"), ("nobody", "alice-demo-1")):
            async with http.ws_connect(run.url("/ws/agent")) as ws:
                await ws.send_json({"type": "login", "agent": agent, "password": password})
                assert (await ws.receive_json(timeout=5)) == {"type": "login_failed"}
        assert not run.gateway.registrations.browser_phones


async def test_web_caller_bridged_to_an_agent_browser(tmp_path: Path) -> None:
    agent_browser = Browser(900.0)
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(session: CallSession) -> None:
        await session.answer()
        other = await run.gateway.ua.originate("alice", ring_timeout=10, caller=session.caller)
        assert other is not None and other.channel == "webrtc"
        await session.bridge(other)
        try:
            await session.ended.wait()
        finally:
            await other.hangup()
            ended.set_result(None)

    async with running(tmp_path) as run, aiohttp.ClientSession() as http:
        run.gateway.switch.center = as_center(handler)
        agent_ws, answering = await _agent_phone(run, http, agent_browser)
        try:
            await _until(lambda: "alice" in run.gateway.registrations.browser_phones)
            async with web_call(run, "1000", 400.0) as (caller, _ws, _answer):
                await asyncio.wait_for(answering, 15)
                await caller.hears(900.0, within=15)  # the agent's voice
                await agent_browser.hears(400.0, within=15)  # the caller's voice
            await asyncio.wait_for(ended, 10)
            hangup = await expect(agent_ws, "hangup")
            assert hangup["type"] == "hangup"
            assert "alice" in run.gateway.registrations.browser_phones  # still logged in
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await answering
            await agent_ws.close()
            await agent_browser.close()
        await _until(lambda: "alice" not in run.gateway.registrations.browser_phones)
