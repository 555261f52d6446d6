"""A message being recorded is on disk as it is said (issue 11: a media process crash must not
lose a voicemail): the media server appends each second to a ``.part`` WAV beside the
message; the complete message replaces it when the recording ends (no part file left), and
after a crash ``session.recover_part`` turns what reached the disk into the message."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np

from media_gateway.audio import tones
from media_gateway.audio.wav import read_wav, wav_bytes
from media_gateway.media import control as mc
from media_gateway.media.client import LocalMedia
from media_gateway.media.server import part_path
from media_gateway.session import recover_part
from tests.interop.harness import free_port
from tests.interop.media_harness import pcmu_packets

SECOND = 8000 * 2


async def _until(predicate: object, within: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.02)


def _part_size(path: Path) -> int:
    part = part_path(path)
    return part.stat().st_size if part.exists() else 0


async def test_a_message_is_on_disk_as_it_is_said_and_only_the_complete_file_stays(
    tmp_path: Path,
) -> None:
    low = free_port(pair=True)
    media = LocalMedia(host="127.0.0.1", port_min=low, port_max=low + 4)
    await media.start()
    done: asyncio.Future[mc.RecordDone] = asyncio.get_running_loop().create_future()
    media.subscribe("m1", lambda e: done.set_result(e) if isinstance(e, mc.RecordDone) else None)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    path = tmp_path / "msg" / "case-1.wav"
    try:
        opened = await media.request(mc.Open(chan="m1"))
        assert opened.port is not None
        await media.request(
            mc.Record(chan="m1", op_id="r1", path=str(path), max_seconds=30, silence_seconds=0)
        )
        for packet in pcmu_packets(tones.tone([440.0], 3.0), ssrc=0x5151):
            phone.sendto(packet, ("127.0.0.1", opened.port))
            await asyncio.sleep(0.02)  # a phone's pace
            if _part_size(path) > 44 + SECOND:
                break
        # More than a second of the message is on disk while it is being said.
        assert _part_size(path) > 44 + SECOND
        assert not path.exists()
        await media.request(mc.StopRecord(chan="m1"))
        result = await asyncio.wait_for(done, 5)
    finally:
        phone.close()
        await media.close()
    assert result.reason == "stopped" and result.error is None
    assert read_wav(path).seconds >= 1.0
    await _until(lambda: not part_path(path).exists())


def test_recover_part_keeps_what_reached_the_disk_with_its_header_fixed(tmp_path: Path) -> None:
    path = tmp_path / "case-7.wav"
    voice = tones.tone([440.0], 2.0)
    # The header was last patched after the first second; the process died while writing
    # (the second second is there, plus half a sample).
    header = wav_bytes(voice[:8000])[:44]
    part_path(path).write_bytes(header + voice.astype("<i2").tobytes() + b"\x01")
    seconds, sound = recover_part(path)
    assert (seconds, sound) == (2.0, True)
    assert not part_path(path).exists()
    assert np.array_equal(read_wav(path).samples, voice)


def test_recover_part_without_a_part_file_or_with_silence(tmp_path: Path) -> None:
    path = tmp_path / "case-8.wav"
    assert recover_part(path) == (0.0, False)
    part_path(path).write_bytes(wav_bytes(np.zeros(8000, dtype=np.int16)))
    assert recover_part(path) == (1.0, False)  # kept, but nothing was said
