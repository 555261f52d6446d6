"""CallSession against baresip, a real softphone: hold with music, blind transfer by REFER,
transfer by re-routing, and a bridge between two softphones.

The Hotline runs in the test's loop (media in its own process), so a test can install the
service an entry point runs and watch what the session sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import tone
from media_gateway.audio.wav import write_wav
from media_gateway.session import CallSession
from tests.interop.harness import as_center, free_port

pytestmark = pytest.mark.interop

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
http = "127.0.0.1:{http}"
data_dir = "{data}"

[sip]
rtp_ports = [33000, 33998]

[media]
process = true

[[agents]]
id = "alice"
password = "alice-demo-1"
extension = "2001"

[[agents]]
id = "bob"
password = "bob-demo-1"
extension = "2002"

[entry_points]
"1000" = {{ kind = "hotline" }}
"*43" = {{ kind = "echo" }}
"""


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Hotline]:
    text = CONFIG.format(sip=free_port(), http=free_port(), data=tmp_path / "data")
    gw = Hotline(parse_config(text))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def _baresip(
    tmp: Path,
    gw: Hotline,
    user: str,
    commands: list[str],
    seconds: int,
    *,
    answer: str = "auto",
    console_port: int | None = None,
) -> asyncio.subprocess.Process:
    """baresip as ``user``'s softphone; ``console_port``: its UDP console takes commands
    (``/transfer sip:...``) while it runs."""
    binary = shutil.which("baresip")
    assert binary, "baresip is not installed: run scripts/bootstrap --test"
    conf = tmp / f"baresip-{user}"
    conf.mkdir()
    source = conf / "mic.wav"
    write_wav(source, tone([440.0], float(seconds)))
    sip_port = gw.config.server.sip_port
    password = f"{user}-demo-1"
    (conf / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{sip_port};transport=udp>;auth_pass={password};"
        f"regint=120;answermode={answer};audio_codecs=PCMU,PCMA\n"
    )
    (conf / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{free_port()}",
                "net_interface 127.0.0.1",
                "audio_player aufile,/dev/null",
                f"audio_source aufile,{source}",
                "audio_alert aufile,/dev/null",
                "rtp_ports 41000-41999",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module_app account.so",
                "module_app menu.so",
                *(
                    ["module cons.so", f"cons_listen 127.0.0.1:{console_port}"]
                    if console_port
                    else []
                ),
                "",
            ]
        )
    )
    cmd = [binary, "-f", str(conf), "-t", str(seconds)]
    for c in commands:
        cmd += ["-e", c]
    return await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def _finish(proc: asyncio.subprocess.Process) -> str:
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 40)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return out.decode("utf-8", "replace")


async def _registered(gw: Hotline, user: str) -> None:
    async with asyncio.timeout(15):
        while not gw.registrations.contacts(user, gw.ua.loop.time()):
            await asyncio.sleep(0.1)


async def test_hold_plays_music_to_the_softphone_and_unhold_restores_the_call(
    gateway: Hotline, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def service(session: CallSession) -> None:
        await session.answer()
        await asyncio.sleep(1.0)
        await session.hold()
        await asyncio.sleep(1.5)
        seen["held_stats"] = await session.stats()
        await session.unhold()
        await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):
            seen["after"] = await session.stats()
        done.set()
        await session.hangup()

    gateway.switch.center = as_center(service)
    port = gateway.config.server.sip_port
    phone = await _baresip(tmp_path, gateway, "alice", [f"/dial sip:1000@127.0.0.1:{port}"], 8)
    async with asyncio.timeout(30):
        await done.wait()
    out = await _finish(phone)
    assert "Call established" in out, out[-2000:]
    # While held the phone was told we only send (it answered the re-INVITE), and heard music.
    assert seen["held_stats"]["packets_out"] > 40, seen
    assert seen["after"]["packets_in"] > seen["held_stats"]["packets_in"], seen


async def test_blind_transfer_by_refer_sends_the_softphone_to_the_echo_test(
    gateway: Hotline, tmp_path: Path
) -> None:
    result: dict[str, Any] = {}
    echo_calls: list[str] = []

    async def service(session: CallSession) -> None:
        await session.answer()
        await asyncio.sleep(0.5)
        result["transferred"] = await session.transfer("*43", mode="refer")
        result["state"] = session.state
        result["cause"] = session.cause

    gateway.switch.center = as_center(service)
    port = gateway.config.server.sip_port
    phone = await _baresip(tmp_path, gateway, "alice", [f"/dial sip:1000@127.0.0.1:{port}"], 8)

    async def watch_echo() -> None:
        while True:
            for record in list(gateway.ua.calls.values()):
                if record.entry == "echo" and record.call_id not in echo_calls:
                    echo_calls.append(record.call_id)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_echo())
    try:
        async with asyncio.timeout(30):
            while "transferred" not in result or not echo_calls:
                await asyncio.sleep(0.1)
    except TimeoutError:
        out = await _finish(phone)
        raise AssertionError((result, echo_calls, out[-3000:])) from None
    finally:
        watcher.cancel()
    out = await _finish(phone)
    assert result["transferred"] is True, (result, out[-2000:])
    assert result["state"] == "ended" and result["cause"] == "transferred"
    assert echo_calls, "the phone never called the transfer target"


async def test_transfer_by_rerouting_bridges_the_caller_to_an_agents_softphone(
    gateway: Hotline, tmp_path: Path
) -> None:
    result: dict[str, Any] = {}
    done = asyncio.Event()

    async def service(session: CallSession) -> None:
        try:
            await session.answer()
            result["transferred"] = await session.transfer("bob", mode="reroute")
            peer = session.bridged_to
            await asyncio.sleep(2.0)
            result["caller_stats"] = await session.stats()
            if peer is not None:
                result["agent_stats"] = await peer.stats()
                await peer.hangup()
            await session.hangup()
        except Exception as exc:
            result["error"] = repr(exc)
        finally:
            done.set()

    gateway.switch.center = as_center(service)
    agent = await _baresip(tmp_path, gateway, "bob", [], 25)
    await _registered(gateway, "bob")
    port = gateway.config.server.sip_port
    caller = await _baresip(tmp_path, gateway, "alice", [f"/dial sip:1000@127.0.0.1:{port}"], 20)
    async with asyncio.timeout(30):
        await done.wait()
    caller.terminate()
    await _finish(caller)
    agent.terminate()
    await _finish(agent)
    assert "error" not in result, result
    assert result["transferred"] is True, result
    # Media flowed both ways through the bridge: what each phone sent went to the other.
    assert result["caller_stats"]["packets_in"] > 50, result
    assert result["agent_stats"]["packets_in"] > 50, result
    assert result["caller_stats"]["packets_out"] > 50, result
    assert result["agent_stats"]["packets_out"] > 50, result


async def test_an_employee_dials_a_colleagues_extension_and_they_talk(
    gateway: Hotline, tmp_path: Path
) -> None:
    bob = await _baresip(tmp_path, gateway, "bob", [], 20)
    await _registered(gateway, "bob")
    port = gateway.config.server.sip_port
    console = free_port()
    alice = await _baresip(tmp_path, gateway, "alice", [], 10, console_port=console)
    await _registered(gateway, "alice")  # a phone dials once it is registered
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", console)
    )
    transport.sendto(f"/dial sip:2002@127.0.0.1:{port}\n".encode())
    transport.close()
    stats: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while len(stats) < 2:
            legs = [r.session for r in gateway.ua.calls.values() if r.session is not None]
            if len(legs) == 2 and all(s.state == "answered" and s.bridged_to for s in legs):
                await asyncio.sleep(2.0)
                stats = [await s.stats() for s in legs]
            else:
                await asyncio.sleep(0.1)
    out = await _finish(alice)
    bob.terminate()
    await _finish(bob)
    assert "Call established" in out, out[-2000:]
    # Both phones' audio went through the bridge: each leg heard and sent about 50 packets/s.
    assert all(s["packets_in"] > 50 and s["packets_out"] > 50 for s in stats), stats
    async with asyncio.timeout(10):
        while gateway.ua.calls:
            await asyncio.sleep(0.1)


async def test_a_stranger_cannot_dial_an_employees_extension(
    gateway: Hotline, tmp_path: Path
) -> None:
    """Only phones registered here may ring a colleague directly (no toll fraud, no spam)."""
    from tests.interop.harness import run_sipp

    port = gateway.config.server.sip_port
    result = await asyncio.to_thread(
        run_sipp,
        ["-sn", "uac", "-s", "2002", "-m", "1", "-recv_timeout", "3000"],
        workdir=tmp_path / "stranger",
        target=f"127.0.0.1:{port}",
        timeout=15,
    )
    assert result.successful == 0, result.stdout
    assert not gateway.ua.calls
