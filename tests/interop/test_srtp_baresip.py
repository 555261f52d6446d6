"""SRTP (SDES, RFC 4568) with real phones: baresip with ``mediaenc=srtp-mand`` as a caller and
as an agent's phone, and SIPp offering plain RTP where SRTP is required.

Everything runs on 127.0.0.1. Both baresips refuse anything but RTP/SAVP, so a call that
connects is SRTP on both legs (the caller's offer answered, our offer to the agent's phone
accepted); each phone's ``sndfile`` module writes what it decoded, so the test hears what a
person would have heard: the other phone's tone, through two SRTP legs and the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import tone
from media_gateway.audio.wav import write_wav
from media_gateway.session import CallSession
from tests.interop.harness import as_center, free_port
from tests.interop.media_harness import sipp

pytestmark = pytest.mark.interop

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
http = "127.0.0.1:{http}"
data_dir = "{data}"
log_level = "warning"

[sip]
transports = ["udp"]
rtp_ports = [34000, 34998]
srtp = "required"
srtp_over_plain_sip = true  # the test's phones talk SIP over UDP on loopback

[media]
process = true

[[agents]]
id = "alice"
password = "alice-demo-1"

[[agents]]
id = "bob"
password = "bob-demo-1"

[entry_points]
"1000" = {{ kind = "hotline" }}
"""

CALLER_HZ = 440.0
AGENT_HZ = 660.0


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Hotline]:
    text = CONFIG.format(sip=free_port(), http=free_port(), data=tmp_path / "data")
    gw = Hotline(parse_config(text))
    await gw.start()
    try:
        yield gw
    finally:
        await asyncio.wait_for(gw.stop(), 20)


async def _baresip(
    tmp: Path, gw: Hotline, user: str, hz: float, seconds: int, commands: list[str]
) -> tuple[asyncio.subprocess.Process, Path]:
    """baresip as ``user``'s phone (SRTP mandatory), its microphone a ``hz`` tone; returns
    the process and the folder where it writes what it decoded."""
    binary = shutil.which("baresip")
    assert binary, "baresip is not installed: run scripts/bootstrap --test"
    conf = tmp / f"baresip-{user}"
    dumps = conf / "heard"
    dumps.mkdir(parents=True)
    mic = conf / "mic.wav"
    write_wav(mic, tone([hz], float(seconds)))
    port = gw.config.server.sip_port
    (conf / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{port};transport=udp>;auth_pass={user}-demo-1;"
        "regint=120;answermode=auto;audio_codecs=PCMU;mediaenc=srtp-mand\n"
    )
    (conf / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{free_port()}",
                "net_interface 127.0.0.1",
                "audio_player aufile,/dev/null",
                f"audio_source aufile,{mic}",
                "audio_alert aufile,/dev/null",
                "rtp_ports 43000-43999",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module srtp.so",
                "module sndfile.so",
                f"snd_path {dumps}",
                "module_app account.so",
                "module_app menu.so",
                "",
            ]
        )
    )
    cmd = [binary, "-f", str(conf), "-t", str(seconds)]
    for c in commands:
        cmd += ["-e", c]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    return proc, dumps


async def _finish(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()  # baresip closes its calls and files on SIGTERM
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return out.decode("utf-8", "replace")


def _heard(dumps: Path) -> np.ndarray:
    """What the phone decoded from the network (sndfile's ``dump-*-dec.wav``)."""
    files = sorted(dumps.glob("dump-*dec*.wav"))
    assert files, f"baresip wrote no decoded audio in {dumps}: {list(dumps.iterdir())}"
    with wave.open(str(files[0]), "rb") as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            samples = samples[:: w.getnchannels()]
    assert rate == 8000, rate
    return samples


def _band(x: np.ndarray, hz: float) -> float:
    """Share of the signal's power within ±20 Hz of ``hz``."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    total = float(spectrum[freqs > 50].sum()) or 1.0
    return float(spectrum[np.abs(freqs - hz) <= 20].sum()) / total


async def test_an_srtp_caller_talks_with_an_agents_srtp_phone_both_ways(
    gateway: Hotline, tmp_path: Path
) -> None:
    result: dict[str, Any] = {}
    done = asyncio.Event()

    async def service(session: CallSession) -> None:
        try:
            await session.answer()
            result["transferred"] = await session.transfer("bob", mode="reroute")
            peer = session.bridged_to
            await asyncio.sleep(3.0)  # a few seconds of conversation
            result["caller"] = await session.stats()
            if peer is not None:
                result["agent"] = await peer.stats()
                await peer.hangup()
            await session.hangup()
        except Exception as exc:
            result["error"] = repr(exc)
        finally:
            done.set()

    gateway.switch.center = as_center(service)
    agent, agent_heard = await _baresip(tmp_path, gateway, "bob", AGENT_HZ, 30, [])
    async with asyncio.timeout(15):
        while not gateway.registrations.contacts("bob", gateway.ua.loop.time()):
            await asyncio.sleep(0.1)
    port = gateway.config.server.sip_port
    caller, caller_heard = await _baresip(
        tmp_path, gateway, "alice", CALLER_HZ, 25, [f"/dial sip:1000@127.0.0.1:{port}"]
    )
    try:
        async with asyncio.timeout(40):
            await done.wait()
        async with asyncio.timeout(10):
            while gateway.ua.calls:  # both legs hung up: the phones closed their files
                await asyncio.sleep(0.1)
    finally:
        caller_out = await _finish(caller)
        agent_out = await _finish(agent)
    assert "error" not in result, (result, caller_out[-2000:], agent_out[-2000:])
    assert result["transferred"] is True, (result, caller_out[-2000:], agent_out[-2000:])
    for leg in ("caller", "agent"):
        stats = result[leg]
        assert stats["packets_in"] > 50 and stats["packets_out"] > 50, result
        # Every packet was authentic but one: baresip opens NAT pinholes with an RTCP APP
        # "PING" sent before its SRTP is set up, in the clear: dropped and counted.
        assert stats["srtp_failed"] <= 1, result
    # What each person heard: the other one's voice, decrypted by their own phone.
    alice_heard = _heard(caller_heard)[8000:]  # skip the ring and the set-up
    bob_heard = _heard(agent_heard)[8000:]
    assert _band(alice_heard, AGENT_HZ) > 0.5, _band(alice_heard, CALLER_HZ)
    assert _band(bob_heard, CALLER_HZ) > 0.5, _band(bob_heard, AGENT_HZ)


PLAIN_OFFER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a plain RTP offer where SRTP is required">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="488">
    <action>
      <ereg regexp="SRTP is required" search_in="hdr" header="Warning:" check_it="true"
            assign_to="why"/>
    </action>
  </recv>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <Reference variables="why"/>
</scenario>
"""


async def test_a_plain_rtp_offer_is_refused_with_488_when_srtp_is_required(
    gateway: Hotline, tmp_path: Path
) -> None:
    scenario = tmp_path / "plain_offer.xml"
    scenario.write_text(PLAIN_OFFER)
    async with sipp(
        str(scenario),
        workdir=tmp_path / "sipp",
        target=f"127.0.0.1:{gateway.config.server.sip_port}",
        timeout=15,
    ) as run:
        rc = await run.wait(30)
    assert rc == 0, run.report()
    assert not gateway.ua.calls  # no media was held for it
