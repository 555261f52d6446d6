"""The media server on real UDP sockets (127.0.0.1), in-process and as its own process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import uvloop

from media_gateway.audio import tones
from media_gateway.audio.wav import read_wav
from media_gateway.media import control as mc
from media_gateway.media.client import LocalMedia, MediaClient, MediaProcess
from media_gateway.media.engine import FRAME, MediaError
from media_gateway.media.server import RtpPortAllocator
from media_gateway.rtp import g711
from media_gateway.rtp.packet import RtpPacket

E = TypeVar("E", bound=mc.ChannelEvent)


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _recv(s: socket.socket, n: int, within: float = 3.0) -> list[bytes]:
    loop = asyncio.get_running_loop()
    return [await asyncio.wait_for(loop.sock_recv(s, 2048), within) for _ in range(n)]


class Events:
    def __init__(self, media: MediaClient, chan: str) -> None:
        self.items: list[mc.ChannelEvent] = []
        self.arrived = asyncio.Event()
        media.subscribe(chan, self._on)

    def _on(self, e: mc.ChannelEvent) -> None:
        self.items.append(e)
        self.arrived.set()

    async def wait_for(self, kind: type[E], within: float = 5.0) -> E:
        async with asyncio.timeout(within):
            while True:
                for e in self.items:
                    if isinstance(e, kind):
                        self.items.remove(e)
                        return e
                self.arrived.clear()
                await self.arrived.wait()


async def _echo_play_record(media: MediaClient, tmp: Path) -> None:
    caller = _sock()
    try:
        opened = await media.request(mc.Open(chan="c1", remote=caller.getsockname()))
        port = opened.port
        events = Events(media, "c1")
        await media.request(mc.Echo(chan="c1", on=True))
        for i in range(5):
            caller.sendto(
                RtpPacket(
                    sequence_number=i, timestamp=i * FRAME, ssrc=5, payload=bytes([i]) * FRAME
                ).to_bytes(),
                ("127.0.0.1", port),
            )
        got = [RtpPacket.parse(d) for d in await _recv(caller, 5)]
        assert [g.payload[0] for g in got] == [0, 1, 2, 3, 4]
        assert len({g.ssrc for g in got}) == 1 and got[0].ssrc != 5  # our own stream

        # A 400 ms tone played: 20 packets, every one, then play_done.
        await media.request(
            mc.Play(chan="c1", spec="tone:1000:400", op_id="t", interruptible=False)
        )
        got = [RtpPacket.parse(d) for d in await _recv(caller, 20)]
        assert len(got) == 20
        done = await events.wait_for(mc.PlayDone)
        assert (done.op, done.reason) == ("t", "finished")

        # Record what the caller sends into a real WAV file; the stop key ends it.
        path = tmp / "rec" / "msg.wav"
        started = asyncio.get_running_loop().time()
        await media.request(
            mc.Record(chan="c1", path=str(path), max_seconds=10, stop_digits="#", op_id="r")
        )
        signal = tones.tone([440.0], 0.6)
        for i in range(0, signal.size, FRAME):
            payload = g711.ulaw_encode(signal[i : i + FRAME]).tobytes()
            caller.sendto(
                RtpPacket(
                    sequence_number=100 + i // FRAME, timestamp=10_000 + i, ssrc=5, payload=payload
                ).to_bytes(),
                ("127.0.0.1", port),
            )
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.15)
        await media.request(mc.Digit(chan="c1", digit="#", method="info"))
        ran = asyncio.get_running_loop().time() - started
        rec = await events.wait_for(mc.RecordDone)
        assert rec.reason == "dtmf" and rec.error is None
        audio = read_wav(path)
        assert audio.rate == 8000
        # 0.6 s sent, then 0.15 s of silence: the message holds the tone and at most the time
        # the recording ran (longer than 0.75 s when this machine was slow to wake the sender)
        assert 0.45 <= audio.samples.size / 8000 <= max(0.9, ran + 0.05)
        spectrum = np.abs(np.fft.rfft(audio.samples.astype(float)))
        assert abs(np.argmax(spectrum) * 8000 / audio.samples.size - 440) < 10

        stats = (await media.request(mc.Close(chan="c1"))).stats
        assert stats is not None and stats.packets_in >= 35
        with pytest.raises(MediaError):
            await media.request(mc.Play(chan="c1", spec="beep"))
    finally:
        caller.close()


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_local_media_echoes_plays_and_records(
    runner: Callable[[Awaitable[None]], None], tmp_path: Path
) -> None:
    async def main() -> None:
        media = LocalMedia(port_min=31000, port_max=31100)
        await media.start()
        try:
            await _echo_play_record(media, tmp_path)
        finally:
            await media.close()

    runner(main())


async def test_media_process_does_the_same_in_its_own_process(tmp_path: Path) -> None:
    media = MediaProcess(port_min=31200, port_max=31300)
    await media.start()
    try:
        assert media.pid > 0
        await _echo_play_record(media, tmp_path)
        with pytest.raises(MediaError, match="IP literal"):
            await media.request(mc.Open(chan="x", remote=("example.com", 5000)))
    finally:
        await media.close()


def test_port_allocator_hands_out_even_ports_and_reuses_released_ones() -> None:
    ports = RtpPortAllocator(20001, 20007)
    taken = [ports.take(), ports.take()]
    assert taken == [20002, 20004]
    with pytest.raises(MediaError, match="no free RTP port"):
        ports.take()
    ports.release(20002)
    assert ports.take() == 20002


async def test_a_port_that_fails_to_bind_is_not_leaked() -> None:
    media = LocalMedia(port_min=31400, port_max=31406)
    await media.start()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 31400))  # someone else holds the first port
    try:
        reply = await media.request(mc.Open(chan="a"))
        assert reply.port == 31402
        assert media.server is not None and 31400 not in media.server.ports.in_use
    finally:
        blocker.close()
    await media.request(mc.Close(chan="a"))
    ports = [(await media.request(mc.Open(chan=f"c{i}"))).port or 0 for i in range(3)]
    assert sorted(ports) == [31400, 31402, 31404]
    await media.close()


async def test_the_media_process_outlives_a_group_sigterm_until_its_parent_lets_go() -> None:
    """systemd (or Ctrl-C) signals the whole process group: media must keep running until the
    signalling process has hung up its calls and closed the pipe, and must not be restarted."""
    import os
    import signal

    media = MediaProcess(port_min=31500, port_max=31600)
    await media.start()
    try:
        os.kill(media.pid, signal.SIGTERM)
        os.kill(media.pid, signal.SIGINT)
        await asyncio.sleep(0.3)
        assert (await media.request(mc.Ping())).pid == media.pid
        assert media.restarts == 0
    finally:
        await media.close()
    assert media.proc is None and media.restarts == 0
