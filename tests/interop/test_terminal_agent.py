"""The terminal agent (``hotline agent``) end to end: driven in tmux, through a call from SIPp.

A real ``hotline serve`` runs with one agent, alice. ``hotline agent`` runs in a tmux session
(its phone registered with digest authentication, signed in to the staff API); keys are sent
with ``tmux send-keys`` and the screen read with ``capture-pane``, as a person would. alice gets
ready; a SIPp caller dials the hotline, presses 1 in the IVR's menu (RFC 4733) and waits in the
sales queue, sending a 440 Hz tone; the screen shows the ringing call with the caller's number,
the queue and the IVR choice. alice answers: what she hears is recorded by the terminal agent
(the WAV's strongest frequency is the caller's 440 Hz) and the caller receives her 1300 Hz tone
(seen on the loopback interface with a packet socket: the tests run as root, as CI does). She
hangs up, the screen shows the wrap-up, she ends it, and the case names her as its owner.

Every wait polls the pane or the API for a condition, with a deadline; nothing sleeps a fixed
time for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from media_gateway.audio.tones import silence, tone
from media_gateway.audio.wav import read_wav
from media_gateway.rtp import g711
from media_gateway.rtp.dtmf import DtmfSender
from tests.interop.harness import Server, free_port, start_server
from tests.interop.media_harness import pcmu_packets, sipp, udp_frame, write_pcap

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

PASSWORD = "alice-term-pw-1"
CALLER_HZ = 440.0
AGENT_HZ = 1300.0
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "terminal-agent.txt"
"""The whole session as the terminal showed it (kept for docs/terminal-agent.md)."""

CONFIG = f"""
[server]
log_level = "info"

[sip]
transports = ["udp"]
rtp_ports = [48200, 48598]

[media]
process = false

[[agents]]
id = "alice"
name = "Alice Martin"
password = "{PASSWORD}"
extension = "1001"
skills = {{ sales = 5 }}
queues = ["sales"]

[entry_points]
"1000" = {{ kind = "hotline", name = "hotline" }}

[acd]
pause_reasons = ["coffee", "coaching"]

[acd.queues.sales]
strategy = "longest-idle"
ring_timeout = 20
wrap_up_seconds = 300

[ivr]
entry = "main"

[ivr.flows.main]
start = "menu"

[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = {{ "1" = "sales" }}
timeout = 5
retries = 0
default = "sales"

[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
"""


# -- tmux --------------------------------------------------------------------------------------


class Tmux:
    """One detached tmux session on a private socket, running one command."""

    def __init__(self, tmp: Path, command: list[str], env: dict[str, str]) -> None:
        self.socket = str(tmp / "tmux.sock")
        self.session = "agent"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        script = tmp / "agent.sh"
        # the pane stays after the command ends (remain-on-exit), so its last words are readable
        script.write_text(f"#!/bin/sh\nexport {exports}\nexec {shlex.join(command)}\n")
        script.chmod(0o755)
        self.tmux("new-session", "-d", "-s", self.session, "-x", "200", "-y", "60", str(script))
        self.tmux("set-option", "-t", self.session, "remain-on-exit", "on")

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tmux {args[0]}: {proc.stderr.strip()}")
        return proc.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", self.session)

    def send(self, line: str) -> None:
        self.tmux("send-keys", "-t", self.session, line, "Enter")

    def pane_dead(self) -> bool:
        return self.tmux("display-message", "-p", "-t", self.session, "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.tmux("kill-server")


async def until(
    what: str, check: Callable[[], object], *, within: float, screen: Callable[[], str]
) -> object:
    """Poll ``check`` (run in a thread) until it returns something true, or fail with the
    screen (``TTA_TRACE=1`` in the environment prints when each condition was met)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await asyncio.to_thread(check)
        if result:
            if os.environ.get("TTA_TRACE"):
                print(f"{time.monotonic():.2f} {what}", file=sys.stderr)
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within} s; screen:\n{screen()}")
        await asyncio.sleep(0.1)


def last_block(text: str) -> str:
    """The last screen the agent printed (from its last ``==`` line)."""
    i = text.rfind("\n== ")
    return text[i + 1 :] if i >= 0 else text


# -- the caller's audio as seen on the loopback interface ------------------------------------


class LoopbackSniffer:
    """RTP sent to one UDP port on 127.0.0.1, read from a packet socket on ``lo``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.payloads: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == socket.PACKET_OUTGOING:  # each loopback packet is seen twice
                continue
            if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00":
                continue
            ihl = (frame[14] & 0x0F) * 4
            if frame[14 + 9] != 17:
                continue
            udp = 14 + ihl
            (dport,) = struct.unpack_from("!H", frame, udp + 2)
            rtp = frame[udp + 8 :]
            if dport == self.port and len(rtp) > 12 and rtp[0] >> 6 == 2 and rtp[1] & 0x7F == 0:
                self.payloads.append(bytes(rtp[12 : 12 + 160]))

    def frames_at(self, hz: float) -> int:
        """Received 20 ms PCMU frames whose strongest frequency is ``hz`` (within 20 Hz)."""
        n = 0
        for p in list(self.payloads):
            if len(p) != 160:
                continue
            x = g711.decode(p, "PCMU").astype(np.float64)
            if np.abs(x).max() < 500:
                continue
            spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), 1600))
            if abs(int(spectrum.argmax()) * 8000 / 1600 - hz) <= 20:
                n += 1
        return n

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def dominant_hz(samples: np.ndarray) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(spectrum.argmax() * 8000 / x.size)


def caller_pcap(workdir: Path) -> None:
    """Key 1 (RFC 4733) half a second in, then the caller's 440 Hz tone for 20 s."""
    workdir.mkdir(parents=True, exist_ok=True)
    frames: list[tuple[float, bytes]] = []
    t0 = 1_000_000.0
    for i, pkt in enumerate(pcmu_packets(silence(0.5), ssrc=0x1111)):
        frames.append((t0 + 0.02 * i, udp_frame(pkt, ident=i)))
    sender = DtmfSender(payload_type=101, ssrc=0x1111)
    packets = sender.packets("1", seq=2000, timestamp=8000 * 4, duration_ms=120)
    for sp in packets:
        frames.append((t0 + 0.5 + sp.offset, udp_frame(sp.packet.to_bytes(), ident=3000)))
    start = t0 + 0.5 + packets[-1].offset + 0.1
    spoken = tone([CALLER_HZ], 20.0, dbfs=-10.0)
    for i, pkt in enumerate(pcmu_packets(spoken, ssrc=0x2222, seq=4000)):
        frames.append((start + 0.02 * i, udp_frame(pkt, ident=4000 + i)))
    write_pcap(workdir / "caller.pcap", frames)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"), CONFIG)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def raw_socket_allowed() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "this test reads the loopback interface with a packet socket: run as root (CI does)"
        )
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: run scripts/bootstrap --test")


async def test_the_terminal_agent_answers_a_sipp_caller_in_tmux(
    server: Server, tmp_path: Path, raw_socket_allowed: None
) -> None:
    record = tmp_path / "heard.wav"
    command = [
        sys.executable, "-m", "hotline.cli", "agent",
        "--server", server.sip,
        "--http", f"http://127.0.0.1:{server.http_port}",
        "--user", "alice",
        "--play", f"tone:{AGENT_HZ:g}",
        "--record", str(record),
    ]  # fmt: skip
    env = {"HOTLINE_PASSWORD": PASSWORD, "PYTHONPATH": str(Path.cwd()), "TERM": "xterm"}
    term = Tmux(tmp_path, command, env)
    media_port = free_port(pair=True)
    sniffer = LoopbackSniffer(media_port)
    try:
        screen = term.screen
        await until("registered", lambda: "phone registered" in screen(), within=15, screen=screen)
        await until(
            "logged in on registering",
            lambda: (
                "state: PAUSED" in last_block(screen())
                or "state: READY" in last_block(screen())
                or "state: LOGGED OUT" in last_block(screen())
            ),
            within=10,
            screen=screen,
        )
        term.send("r")
        await until(
            "ready", lambda: "state: READY" in last_block(screen()), within=10, screen=screen
        )

        workdir = tmp_path / "caller"
        caller_pcap(workdir)
        async with sipp(
            "terminal_agent_caller.xml",
            workdir=workdir,
            target=server.sip,
            timeout=40,
            media_port=media_port,
        ) as run:
            try:
                ringing = str(
                    await until(
                        "ringing with the caller, the queue and the IVR choice",
                        lambda: next(
                            (b for b in [last_block(screen())] if "RINGING: caller" in b), ""
                        ),
                        within=15,
                        screen=screen,
                    )
                )
                assert "caller +86138000" in ringing, ringing
                assert "queue sales" in ringing, ringing
                assert "IVR: menu 1 -> sales" in ringing, ringing

                term.send("a")
                await until(
                    "on call",
                    lambda: "state: ON CALL" in last_block(screen()),
                    within=10,
                    screen=screen,
                )
                # the caller hears alice: a second of her tone reaches SIPp's media port
                await until(
                    "the caller receives the agent's tone",
                    lambda: sniffer.frames_at(AGENT_HZ) >= 50,
                    within=10,
                    screen=screen,
                )
                block = last_block(screen())
                assert "ON CALL with +86138000" in block and "queue sales" in block, block
                assert "IVR: menu 1 -> sales" in block, block
                assert "owner alice" in block, block

                # the controls of the call in hand, each as the engine reports it back
                term.send("h")
                await until(
                    "held", lambda: "[held]" in last_block(screen()), within=10, screen=screen
                )
                term.send("u")
                await until("resumed", lambda: "> resume: ok" in screen(), within=10, screen=screen)
                # the state block is redrawn when the engine's change comes back (after the ok)
                await until(
                    "shown resumed",
                    lambda: "[held]" not in last_block(screen()),
                    within=10,
                    screen=screen,
                )
                term.send("m")
                await until(
                    "muted", lambda: "[muted]" in last_block(screen()), within=10, screen=screen
                )
                term.send("m")
                await until("unmuted", lambda: "> unmute: ok" in screen(), within=10, screen=screen)
                term.send("k 12#")
                await until(
                    "keys sent", lambda: "> keys 12#: ok" in screen(), within=10, screen=screen
                )

                term.send("x")
                await until(
                    "wrap-up shown",
                    lambda: (
                        "state: WRAP-UP" in last_block(screen())
                        and "WRAP-UP until" in last_block(screen())
                    ),
                    within=10,
                    screen=screen,
                )
                await until(
                    "the phone's call ended (its recording written)",
                    lambda: "* phone: call ended" in screen(),
                    within=10,
                    screen=screen,
                )
                await run.wait(30)  # the hotline's BYE ends the caller's scenario
                assert run.returncode == 0, run.report()

            except AssertionError as exc:
                log = server.log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{exc}\n{run.report()}\n--- server log\n{log}") from None

        # what alice heard: the caller's tone
        audio = read_wav(record)
        loud = audio.samples[np.abs(audio.samples) > 1000]
        assert loud.size >= 4000, f"only {loud.size / 8000:.2f} s of audio recorded"
        assert abs(dominant_hz(audio.samples) - CALLER_HZ) < 10

        term.send("e")
        await until(
            "ready again after the wrap-up",
            lambda: "state: READY" in last_block(screen()),
            within=10,
            screen=screen,
        )
        await until(
            "today's figures count the call",
            lambda: "1 answered" in last_block(screen()),
            within=10,
            screen=screen,
        )
        cases = server.api("/api/cases?owner=alice")
        assert [c["owner"] for c in cases["items"]] == ["alice"], cases

        term.send("p")
        await until(
            "the pause reasons listed",
            lambda: "pause reasons: coffee, coaching" in screen(),
            within=10,
            screen=screen,
        )
        term.send("p coffee")
        await until(
            "paused",
            lambda: "state: PAUSED (coffee)" in last_block(screen()),
            within=10,
            screen=screen,
        )
        term.send("o")
        await until(
            "logged out",
            lambda: "state: LOGGED OUT" in last_block(screen()),
            within=10,
            screen=screen,
        )
        term.send("q")
        await until("the agent quits", term.pane_dead, within=10, screen=screen)
        transcript = screen()
        assert "* bye" in transcript
        SCREENSHOT.parent.mkdir(exist_ok=True)
        kept = [
            line
            for line in transcript.rstrip().splitlines()
            if not line.startswith(("hotline: running the pure-Python", "Pane is dead"))
        ]
        SCREENSHOT.write_text("\n".join(kept).rstrip() + "\n")
    finally:
        sniffer.close()
        term.kill()


def agent_command(server: Server, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "hotline.cli", "agent",
        "--server", server.sip,
        "--http", f"http://127.0.0.1:{server.http_port}",
        "--user", "alice",
        *extra,
    ]  # fmt: skip


def test_a_script_pauses_and_readies_with_the_password_on_stdin(
    server: Server, tmp_path: Path
) -> None:
    script = tmp_path / "commands.txt"
    script.write_text("# a scripted shift\np coffee\nwait paused 10\nr\nwait ready 10\ns\nq\n")
    proc = subprocess.run(
        agent_command(server, "--password-stdin", "--script", str(script)),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "* phone registered" in out, out
    assert "> pause (coffee): ok" in out and "state: PAUSED (coffee)" in out, out
    assert "> ready: ok" in out and "state: READY" in out, out
    assert "not reached" not in out, out
    assert out.rstrip().endswith("* bye"), out
    # the script's end logged the phone out: the engine says so
    assert server.api("/api/agents/alice")["phone"] is False


def test_a_wrong_password_is_refused_before_the_phone_registers(
    server: Server, tmp_path: Path
) -> None:
    proc = subprocess.run(
        agent_command(server, "--password-stdin"),
        input="not-her-password\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sign-in to http://127.0.0.1" in proc.stdout and "as alice failed" in proc.stdout
    assert "phone registered" not in proc.stdout
    no_env = {k: v for k, v in os.environ.items() if k != "HOTLINE_PASSWORD"}
    proc = subprocess.run(
        agent_command(server), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=30, env=no_env,
    )  # fmt: skip
    assert proc.returncode == 2 and "no password" in proc.stderr, proc.stderr
