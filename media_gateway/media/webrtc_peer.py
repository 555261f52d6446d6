"""WebRTC legs inside the media process: one aiortc peer connection per ``samples`` channel.

``install(server)`` adds these operations (``control.py``) to the media server (``server.ops``):

* ``WebRtcOffer(chan, sdp)`` -> ``WebRtcSdp``: a browser called us. Opens the engine channel
  (``kind="samples"``), answers the browser's offer with PCMU only and returns the answer.
* ``WebRtcMakeOffer(chan)`` -> ``WebRtcSdp``: we call a browser (an agent's phone): our offer,
  PCMU only.
* ``WebRtcAnswer(chan, sdp)``: the browser's answer to that offer.
* ``WebRtcClose(chan)`` -> ``Closed``: drop the peer connection and the channel (a declined
  ring).
* ``WebRtcStats(chan)`` -> ``WebRtcStatus``: the peer connection's state and queues.

Audio: the engine's frames for the channel (``server.sample_sinks[chan]``, every 20 ms) go into
a bounded queue that an outgoing ``MediaStreamTrack`` paces out at 8 kHz (silence when empty);
aiortc encodes them as PCMU, the one codec offered, so a WebRTC leg bridged to a SIP phone
costs one G.711 encode/decode and no other transcoding. What the browser sends is decoded by
aiortc, cut into 160-sample frames (resampled to 8 kHz if it ever comes at another rate) and
fed to ``server.engine.receive_samples``.

ICE: no STUN or TURN servers; host candidates only, on the media server's own address (so on
``127.0.0.1`` when it binds loopback: aioice skips loopback addresses by itself, and would
otherwise offer every interface). The restriction is scoped to our own peer connections by a
context variable around ``setLocalDescription`` (where aiortc gathers); nothing else in the
process sees a different ``aioice.ice.get_host_addresses``.

All aiortc imports of the project live in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import ipaddress
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

import aioice.ice
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media_gateway.audio.resample import resample
from media_gateway.media import control as mc
from media_gateway.media.engine import FRAME, PTIME, RATE, MediaError, Samples

if TYPE_CHECKING:
    from media_gateway.media.server import MediaServer

MAX_QUEUED_FRAMES = 10
"""Frames waiting for the outgoing track past this are dropped, oldest first (200 ms)."""
MAX_SDP = 64 * 1024

_TIME_BASE = fractions.Fraction(1, RATE)
_ICE_HOSTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "hotline_ice_hosts", default=None
)


# -- ICE host addresses -----------------------------------------------------------------------


def _install_ice_filter() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` once: inside ``ice_host_addresses(...)`` it
    returns the given addresses, elsewhere what aioice would have returned."""
    current = aioice.ice.get_host_addresses
    if getattr(current, "_hotline_filter", False):
        return
    original = current

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        only = _ICE_HOSTS.get()
        if only is None:
            return list(original(use_ipv4, use_ipv6))
        return [
            a
            for a in only
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    get_host_addresses._hotline_filter = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def ice_host_addresses(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """ICE gathering in this block (and tasks started from it) offers only ``addresses``
    as host candidates (``None``: aioice's own choice)."""
    _install_ice_filter()
    token = _ICE_HOSTS.set(addresses)
    try:
        yield
    finally:
        _ICE_HOSTS.reset(token)


def hosts_for(bind_host: str) -> tuple[str, ...] | None:
    """The candidates for a media server bound to ``bind_host``: that address when it is a
    specific one (loopback included), aioice's choice for a wildcard or a name."""
    try:
        ip = ipaddress.ip_address(bind_host)
    except ValueError:
        return None
    if ip.is_unspecified:
        return None
    return (str(ip),)


# -- audio in both directions -------------------------------------------------------------------


class SamplesTrack(MediaStreamTrack):
    """What we send: the engine's frames for one channel, paced at 20 ms, as s16 mono 8 kHz."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: deque[Samples] = deque()
        self.dropped = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._start: float | None = None
        self._pts = 0

    def feed(self, samples: Samples) -> None:
        """A sink for ``server.sample_sinks``: any length, cut into 160-sample frames."""
        data = np.asarray(samples, dtype=np.int16)
        if self._pending.size:
            data = np.concatenate([self._pending, data])
        whole = data.size - data.size % FRAME
        for start in range(0, whole, FRAME):
            self.queue.append(data[start : start + FRAME])
        self._pending = data[whole:].copy()
        while len(self.queue) > MAX_QUEUED_FRAMES:
            self.queue.popleft()
            self.dropped += 1

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -5 * PTIME:  # a stall: continue from now instead of bursting
                self._start = loop.time() - self._pts / RATE
        samples = self.queue.popleft() if self.queue else np.zeros(FRAME, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, FRAME), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        return frame


def frame_to_samples(frame: av.AudioFrame) -> Samples:
    """One decoded frame as mono int16 at 8 kHz (downmixed and resampled when needed)."""
    arr = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    fmt = frame.format
    if fmt.is_planar:
        mono = arr.astype(np.float64).mean(axis=0) if channels > 1 else arr[0].astype(np.float64)
    else:
        flat = arr.reshape(-1)
        mono = (
            flat.reshape(-1, channels).astype(np.float64).mean(axis=1)
            if channels > 1
            else flat.astype(np.float64)
        )
    if fmt.name.startswith(("flt", "dbl")):
        mono = mono * 32767.0
    out = np.clip(np.rint(mono), -32768, 32767).astype(np.int16)
    rate = int(frame.sample_rate or RATE)
    if rate != RATE:
        out = resample(out, rate, RATE)
    return out


class WebRtcPeer:
    """One channel's peer connection, outgoing track and incoming reader."""

    def __init__(self, server: MediaServer, chan: str) -> None:
        self.server = server
        self.chan = chan
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = SamplesTrack()
        self.reader: asyncio.Task[None] | None = None
        self.frames_in = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.reader is None:
            self.reader = asyncio.get_running_loop().create_task(self._read(track))

    def _on_state(self) -> None:
        if self.pc.connectionState == "failed" and not self._closed:
            self.server.on_event(mc.MediaLost(chan=self.chan, reason="ice"))

    async def _read(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        engine = self.server.engine
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            self.frames_in += 1
            data = frame_to_samples(frame)
            if self._pending.size:
                data = np.concatenate([self._pending, data])
            whole = data.size - data.size % FRAME
            now = loop.time()
            for start in range(0, whole, FRAME):
                engine.receive_samples(self.chan, data[start : start + FRAME], now)
            self._pending = data[whole:].copy()

    def _prefer_pcmu(self) -> None:
        caps = RTCRtpSender.getCapabilities("audio")
        pcmu = [c for c in caps.codecs if c.mimeType.lower() == "audio/pcmu"]
        if not pcmu:
            raise MediaError("aiortc offers no PCMU")
        for t in self.pc.getTransceivers():
            if t.kind == "audio":
                t.setCodecPreferences(pcmu)

    async def _set_local(self, description: RTCSessionDescription) -> str:
        with ice_host_addresses(hosts_for(self.server.host)):
            await self.pc.setLocalDescription(description)
        return str(self.pc.localDescription.sdp)

    async def answer(self, offer_sdp: str) -> str:
        # The transceiver exists before the offer is applied: aiortc picks the answer's codecs
        # when it matches the offer's audio line to it, from its preferences at that moment.
        self.pc.addTransceiver(self.track, direction="sendrecv")
        self._prefer_pcmu()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if not any(t.kind == "audio" and t.mid is not None for t in self.pc.getTransceivers()):
            raise MediaError("the offer has no audio")
        return await self._set_local(await self.pc.createAnswer())

    async def offer(self) -> str:
        self.pc.addTransceiver(self.track, direction="sendrecv")
        self._prefer_pcmu()
        return await self._set_local(await self.pc.createOffer())

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        self._closed = True
        self.track.stop()
        await self.pc.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


# -- the operations -----------------------------------------------------------------------------


class _Plugin:
    def __init__(self, server: MediaServer) -> None:
        self.server = server
        self.peers: dict[str, WebRtcPeer] = {}

    def _open(self, chan: str) -> WebRtcPeer:
        if chan in self.peers:
            raise MediaError(f"channel {chan!r} already has a peer connection")
        server = self.server
        server.engine.open(chan, server.loop.time(), kind="samples", te_pt=None, inband=True)
        peer = WebRtcPeer(server, chan)
        self.peers[chan] = peer
        server.sample_sinks[chan] = peer.track.feed
        return peer

    async def _fail(self, chan: str, exc: Exception) -> MediaError:
        with contextlib.suppress(MediaError):
            await self.server.op_close(mc.Close(chan=chan))
        return exc if isinstance(exc, MediaError) else MediaError(f"webrtc: {exc}")

    @staticmethod
    def _sdp(sdp: str) -> str:
        if not sdp or len(sdp) > MAX_SDP:
            raise MediaError("sdp must be a non-empty string of at most 64 KiB")
        return sdp

    async def op_offer(self, op: mc.WebRtcOffer) -> mc.WebRtcSdp:
        sdp = self._sdp(op.sdp)
        peer = self._open(op.chan)
        try:
            answer = await peer.answer(sdp)
        except Exception as exc:
            raise await self._fail(peer.chan, exc) from exc
        return mc.WebRtcSdp(chan=peer.chan, sdp=answer)

    async def op_make_offer(self, op: mc.WebRtcMakeOffer) -> mc.WebRtcSdp:
        peer = self._open(op.chan)
        try:
            offer = await peer.offer()
        except Exception as exc:
            raise await self._fail(peer.chan, exc) from exc
        return mc.WebRtcSdp(chan=peer.chan, sdp=offer)

    async def op_answer(self, op: mc.WebRtcAnswer) -> mc.Ack:
        peer = self.peers.get(op.chan)
        if peer is None:
            raise MediaError(f"no webrtc peer on channel {op.chan!r}")
        sdp = self._sdp(op.sdp)
        try:
            await peer.accept(sdp)
        except Exception as exc:
            raise await self._fail(op.chan, exc) from exc
        return mc.Ack()

    async def op_close(self, op: mc.WebRtcClose) -> mc.Closed:
        if op.chan in self.server.engine.channels:
            return await self.server.op_close(mc.Close(chan=op.chan))
        self.on_close(op.chan)
        return mc.Closed(stats=None)

    async def op_stats(self, op: mc.WebRtcStats) -> mc.WebRtcStatus:
        peer = self.peers.get(op.chan)
        if peer is None:
            raise MediaError(f"no webrtc peer on channel {op.chan!r}")
        return mc.WebRtcStatus(
            connection=peer.pc.connectionState,
            ice=peer.pc.iceConnectionState,
            frames_in=peer.frames_in,
            queued_out=len(peer.track.queue),
            dropped_out=peer.track.dropped,
        )

    def on_close(self, chan: str) -> None:
        peer = self.peers.pop(chan, None)
        if peer is None:
            return
        task = self.server.loop.create_task(peer.close())
        # The server awaits these when it shuts down, so no transport outlives it.
        self.server.write_tasks.add(task)
        task.add_done_callback(self.server.write_tasks.discard)


def install(server: MediaServer) -> None:
    """Register the WebRTC operations and the close hook on ``server``."""
    plugin = _Plugin(server)
    server.ops[mc.WebRtcOffer] = plugin.op_offer
    server.ops[mc.WebRtcMakeOffer] = plugin.op_make_offer
    server.ops[mc.WebRtcAnswer] = plugin.op_answer
    server.ops[mc.WebRtcClose] = plugin.op_close
    server.ops[mc.WebRtcStats] = plugin.op_stats
    server.close_hooks.append(plugin.on_close)
    server.webrtc = plugin  # type: ignore[attr-defined]
