"""A recorded call through SIPp, end to end, on an in-process Hotline with its media process.

A SIPp caller dials a queue that records its calls; its voice is a 440 Hz tone (sent by the
test from the RTP socket its SDP names, so the test also hears what the caller hears). bob's
phone is SIPp too: registered as bob, it answers, its voice is a 1 kHz tone (SIPp plays
phone.pcap), and it hangs up after a while. What a caller, a supervisor and the agents notice:

* the caller hears the consent prompt first, then the agent (never the agent before it);
* the recording holds both sides, each on its own channel: the caller's 440 Hz on the left,
  bob's 1 kHz on the right, and it is attached to the case;
* carol (an agent who did not take the call) gets 403 listing or fetching it; bob and the
  supervisor get it (200, audio/wav, the file's bytes).
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import signal
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from acd.cases import CaseEvent
from acd.store import CaseStore
from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import tone
from media_gateway.audio.wav import read_wav
from media_gateway.media.client import MediaProcess
from media_gateway.media.server import part_path
from media_gateway.prompts import DEFAULT_DIRECTORY
from media_gateway.rtp import g711
from media_gateway.session import CallSession
from media_gateway.sip_leg import SipLeg
from tests.interop.harness import SCENARIOS, free_port, run_sipp
from tests.interop.media_harness import (
    Rtp,
    SippRun,
    pcmu_packets,
    rtp_socket,
    send_paced,
    sip_address,
    sipp,
    write_rtp_pcap,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"
log_level = "warning"

[sip]
transports = ["udp"]
rtp_ports = [44000, 44998]

[media]
process = true
rtp_timeout = 10

[[agents]]
id = "bob"
password = "pw-bob-1"
skills = {{ support = 5 }}
queues = ["support"]

[[agents]]
id = "carol"
password = "pw-carol-1"
skills = {{ support = 5 }}
queues = ["support"]

[[agents]]
id = "sue"
password = "pw-sue-1"
role = "supervisor"

[entry_points]
"1000" = {{ kind = "queue", target = "support" }}

[acd.queues.support]
strategy = "longest-idle"
ring_timeout = 10
record = true
recording_keep_days = 30
"""

CALLER_HZ, AGENT_HZ = 440.0, 1000.0
TALK_MS = 9000  # bob hangs up this long after answering


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    text = CONFIG.format(sip=free_port(), data=tmp_path / "data")
    hl = Hotline(parse_config(text, file="recording-test.toml"))
    await hl.start()
    try:
        yield hl
    finally:
        await asyncio.wait_for(hl.stop(), 20)


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * 8000 / x.size


def band_power(x: np.ndarray, hz: float) -> float:
    """Power within ±20 Hz of ``hz`` (relative: for comparing one channel's two tones)."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    return float(spectrum[np.abs(freqs - hz) <= 20].sum())


async def caller_session(gw: Hotline, within: float = 10.0) -> CallSession:
    async with asyncio.timeout(within):
        while True:
            for record in gw.ua.calls.values():
                s = record.session
                if s is not None and s.direction == "inbound" and s.dialled == "1000":
                    return s
            await asyncio.sleep(0.02)


def _events(store: CaseStore, *, case_id: int) -> list[CaseEvent]:
    return list(store.events(case_id))


async def wait_event(gw: Hotline, kind: str, within: float = 40.0) -> tuple[int, dict[str, Any]]:
    center = gw.center
    async with asyncio.timeout(within):
        while True:
            await center.writer.flush()
            for case in await center.writer.run(lambda s: s.list_cases(limit=5)):
                events = await center.writer.run(functools.partial(_events, case_id=case.id))
                for e in events:
                    if e.kind == kind:
                        return case.id, e.data
            await asyncio.sleep(0.2)


@dataclass
class RecordedCall:
    case_id: int
    event: dict[str, Any]
    """The case's ``recording`` event."""
    heard: list[Rtp]
    """What the caller's phone received."""
    rc_agent: int
    rc_caller: int
    agent: SippRun
    caller: SippRun


Interrupt = Callable[[Hotline], Awaitable[None]]


async def recorded_call(
    gw: Hotline, tmp_path: Path, *, interrupt: Interrupt | None = None
) -> RecordedCall:
    """The caller reaches bob through the recording queue; bob hangs up after ``TALK_MS``
    (unless ``interrupt``, run once the recording started, ends the call first)."""
    # bob's phone: registers, then answers as SIPp's UAS on the same port.
    phone_port = free_port()
    register = ["-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob"]
    reg = await asyncio.to_thread(
        run_sipp,
        [*register, "-ap", "pw-bob-1", "-m", "1"],
        workdir=tmp_path / "register",
        target=sip_address(gw),
        timeout=20,
        local_port=phone_port,
    )
    assert reg.successful == 1, reg.stdout + reg.errors
    async with asyncio.timeout(10):
        while gw.center.engine.snapshot()["agents"]["bob"]["status"] != "available":
            await asyncio.sleep(0.05)
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    bob_voice = tone([AGENT_HZ], 16.0, dbfs=-12.0)
    write_rtp_pcap(agent_dir / "phone.pcap", pcmu_packets(bob_voice, ssrc=0xB0B))
    caller_voice = pcmu_packets(tone([CALLER_HZ], 16.0, dbfs=-12.0), ssrc=0xCA11)

    async with (
        rtp_socket() as phone,
        sipp(
            "agent_answer_hangup.xml",
            workdir=agent_dir,
            target=None,
            local_port=phone_port,
            timeout=40,
            extra=["-d", str(TALK_MS)],
        ) as agent,
        sipp(
            "media_caller.xml",
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": phone.port},
            timeout=40,
        ) as caller,
    ):
        session = await caller_session(gw)
        assert isinstance(session.leg, SipLeg)
        talking = asyncio.ensure_future(
            send_paced(phone, caller_voice, ("127.0.0.1", session.leg.local_port))
        )
        try:
            if interrupt is not None:
                async with asyncio.timeout(20):
                    while not any(r.ended is None for r in gw.center.recordings.store.all()):
                        await asyncio.sleep(0.05)
                await interrupt(gw)
            case_id, event = await wait_event(gw, "recording")
        finally:
            talking.cancel()
        rc_agent = await agent.wait(30)
        rc_caller = await caller.wait(30)
    heard = [r for _, r in phone.rtp() if r.pt == 0]
    return RecordedCall(case_id, event, heard, rc_agent, rc_caller, agent, caller)


def read_stereo(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def assert_both_sides(stereo: np.ndarray) -> None:
    """The caller's 440 Hz alone on the left, bob's 1 kHz alone on the right."""
    left, right = stereo[:, 0], stereo[:, 1]
    assert dominant_hz(left) == pytest.approx(CALLER_HZ, abs=5)
    assert dominant_hz(right) == pytest.approx(AGENT_HZ, abs=5)
    # Each side alone on its channel: the other's tone is at least 30 dB down.
    assert band_power(left, CALLER_HZ) > 1000 * band_power(left, AGENT_HZ)
    assert band_power(right, AGENT_HZ) > 1000 * band_power(right, CALLER_HZ)
    assert np.sqrt(np.mean(left.astype(float) ** 2)) > 1000  # audible, not near silence


async def test_a_recorded_call_holds_both_sides_and_only_bob_and_supervisors_get_it(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw = hotline
    call = await recorded_call(gw, tmp_path)
    case_id, event = call.case_id, call.event
    assert call.rc_agent == 0, call.agent.report()
    assert call.rc_caller == 0, call.caller.report()  # we hung up the caller after bob left

    # -- the case and the file ---------------------------------------------------------------
    assert event["agent"] == "bob" and event["queue"] == "support"
    assert event["reason"] == "hangup" and event["channels"] == ["caller", "agent"]
    print(f"recorded {event['seconds']} s; consent to bridge took the rest of {TALK_MS} ms")
    assert 3.0 < event["seconds"] < TALK_MS / 1000
    path = Path(event["file"])
    stereo = read_stereo(path)
    assert stereo.shape[0] / 8000 == pytest.approx(event["seconds"], abs=0.05)
    assert_both_sides(stereo[8000:-4000])  # past the start-up and the hang-up

    # -- the caller heard the consent prompt before bob ----------------------------------------
    audio = g711.decode(b"".join(r.payload for r in call.heard), "PCMU")
    prompt = read_wav(DEFAULT_DIRECTORY / "en" / "recording_consent.wav").samples
    assert audio.size > prompt.size + 8000
    start = audio[: prompt.size].astype(np.float64)
    assert np.corrcoef(start, prompt.astype(np.float64))[0, 1] > 0.99, "not the prompt first"
    assert dominant_hz(audio[prompt.size + 4000 :]) == pytest.approx(AGENT_HZ, abs=5)

    # -- who may list and fetch it ----------------------------------------------------------
    rec_id = event["recording_id"]
    tokens = {u: gw.auth.issue_token(u) for u in ("bob", "carol", "sue")}
    async with TestClient(TestServer(gw.http_app(), host="127.0.0.1")) as client:

        async def get(user: str, url: str) -> Any:
            return await client.get(url, headers={"Authorization": f"Bearer {tokens[user]}"})

        listed = await get("bob", f"/api/cases/{case_id}/recordings")
        assert listed.status == 200
        [info] = await listed.json()
        assert info["id"] == rec_id and info["agent"] == "bob"
        assert (
            info["channels"] == ["caller", "agent"] and info["url"] == f"/api/recordings/{rec_id}"
        )
        assert info["started_at"].endswith(("Z", "+00:00")) and info["expires_at"]
        assert (await get("sue", f"/api/cases/{case_id}/recordings")).status == 200
        refused = await get("carol", f"/api/cases/{case_id}/recordings")
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "forbidden"

        assert (await get("carol", f"/api/recordings/{rec_id}")).status == 403
        original = await asyncio.to_thread(path.read_bytes)
        for user in ("sue", "bob"):
            resp = await get(user, f"/api/recordings/{rec_id}?download=true")
            assert resp.status == 200, user
            assert resp.headers["Content-Type"] == "audio/wav"
            assert "attachment" in resp.headers["Content-Disposition"]
            body = await resp.read()
            assert body == original
        with wave.open(io.BytesIO(body)) as w:
            assert w.getnchannels() == 2
        assert (await get("sue", "/api/recordings/0123456789abcdef")).status == 404


async def test_a_recording_survives_the_loss_of_the_media_process(
    hotline: Hotline, tmp_path: Path
) -> None:
    """The media process dies two seconds into the conversation: the call ends, and what was
    recorded up to then is kept, complete and attached to the case."""
    assert isinstance(hotline.media, MediaProcess)
    killed: list[int] = []

    async def kill_media(gw: Hotline) -> None:
        await asyncio.sleep(2.5)
        assert isinstance(gw.media, MediaProcess)
        killed.append(gw.media.pid)
        os.kill(gw.media.pid, signal.SIGKILL)

    call = await recorded_call(hotline, tmp_path, interrupt=kill_media)
    assert killed
    event = call.event
    assert event["reason"] == "recovered" and event["agent"] == "bob"
    assert 1.0 <= event["seconds"] <= 3.0
    path = Path(event["file"])
    assert not part_path(path).exists()
    stereo = read_stereo(path)
    assert stereo.shape[0] == round(event["seconds"] * 8000)
    assert_both_sides(stereo[4000:])
    assert call.rc_caller == 0, call.caller.report()  # the caller was hung up, not left hanging
