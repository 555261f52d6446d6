"""The hotline end to end, with the demo configuration: a SIPp caller keys through the
bilingual IVR (RFC 4733), waits in the support queue and reaches baresip registered as an
agent; with no agent, the caller leaves a voicemail that the next agent to log in receives;
invalid keys and timeouts follow the menu's rules; every step lands in the case, in order.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hotline.center import ContactCenter
from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import silence, tone
from media_gateway.audio.wav import read_wav
from media_gateway.media.control import ServerStats
from media_gateway.rtp.dtmf import DtmfSender
from tests.interop.harness import free_port
from tests.interop.media_harness import (
    concat_pcaps,
    pcmu_packets,
    sip_address,
    sipp,
    udp_frame,
    write_pcap,
    write_rtp_pcap,
)
from tests.interop.test_session_baresip import _baresip, _finish

pytestmark = pytest.mark.interop


def demo_config(tmp: Path, **queue_overrides: Any) -> str:
    text = Path("hotline/demo.toml").read_text()
    text = re.sub(r'(?m)^sip = ".*?"', f'sip = "127.0.0.1:{free_port()}"', text, count=1)
    text = re.sub(r'(?m)^http = ".*?"', f'http = "127.0.0.1:{free_port()}"', text, count=1)
    text = re.sub(r'(?m)^data_dir = ".*?"', f'data_dir = "{tmp / "data"}"', text, count=1)
    text = re.sub(r"(?m)^rtp_ports = .*$", "rtp_ports = [34000, 34998]", text, count=1)
    staff = Path("hotline/demo-staff.toml").resolve()  # the demo's password hashes
    text = re.sub(r'(?m)^staff_file = ".*?"', f'staff_file = "{staff}"', text, count=1)
    # Callers that vanish without a BYE (SIPp at its -timeout) are noticed in 4 s, not 60.
    text = text.replace('music_on_hold = "moh"', 'music_on_hold = "moh"\nrtp_timeout = 4', 1)
    for key, value in queue_overrides.items():
        queue, _, setting = key.partition("__")
        text = re.sub(
            rf"(?ms)(^\[acd\.queues\.{queue}\]\n.*?^{setting} = )[^\n]*",
            rf"\g<1>{value}",
            text,
            count=1,
        )
    return text


@pytest.fixture
async def hotline(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Hotline]:
    overrides = getattr(request, "param", {})
    hl = Hotline(parse_config(demo_config(tmp_path, **overrides), file="demo-test.toml"))
    await hl.start()
    try:
        yield hl
    finally:
        await hl.stop()


async def case_events(cc: ContactCenter, case_id: int) -> list[tuple[str, dict[str, Any]]]:
    await cc.writer.flush()
    events = await cc.writer.run(lambda s: s.events(case_id))
    return [(e.kind, e.data) for e in events]


def _events_of(store: Any, *, case_id: int) -> list[Any]:
    return list(store.events(case_id))


async def wait_case(cc: ContactCenter, kind: str, within: float = 40.0) -> int:
    """The id of the first case with an event of ``kind``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen: list[Any] = []
    while loop.time() < deadline:
        await cc.writer.flush()
        cases = await cc.writer.run(lambda s: s.list_cases(limit=20))
        seen = []
        for c in cases:
            events = await cc.writer.run(functools.partial(_events_of, case_id=c.id))
            seen.append((c.id, [(e.kind, e.data) for e in events]))
            if any(e.kind == kind for e in events):
                return c.id
        await asyncio.sleep(0.2)
    raise AssertionError(f"no case reached {kind!r}: {seen}; ACD: {cc.engine.snapshot()}")


def keys_pcap(
    workdir: Path,
    digits: str,
    *,
    gap: float = 0.6,
    then_silence: float = 0.0,
    ssrc: int = 0x5151,
    name: str = "caller.pcap",
) -> None:
    """RFC 4733 key presses as a caller's phone sends them (a new event timestamp per key),
    ``gap`` seconds apart, for SIPp's play_pcap_audio; then ``then_silence`` seconds of
    silent audio (a phone keeps sending RTP while it listens)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sender = DtmfSender(payload_type=101, ssrc=ssrc)
    frames: list[tuple[float, bytes]] = []
    seq, t = 1, 1_000_000.0
    for i, digit in enumerate(digits):
        packets = sender.packets(digit, seq=seq, timestamp=8000 * (i + 1) * 4, duration_ms=120)
        for sp in packets:
            frames.append((t + sp.offset, udp_frame(sp.packet.to_bytes(), ident=seq)))
            seq += 1
        t += packets[-1].offset + gap
    if then_silence > 0:
        for i, pkt in enumerate(pcmu_packets(silence(then_silence), ssrc=ssrc + 1)):
            frames.append((t + 0.02 * i, udp_frame(pkt, ident=seq + i)))
    write_pcap(workdir / name, frames)


async def test_caller_keys_through_the_menu_and_reaches_a_registered_agent(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw, center = hotline, hotline.center
    agent = await _baresip(tmp_path, gw, "bob", [], 30)  # auto-answers: support, en/zh
    async with asyncio.timeout(15):
        while center.engine.snapshot()["agents"]["bob"]["status"] != "available":
            await asyncio.sleep(0.1)
    workdir = tmp_path / "caller"
    keys_pcap(workdir, "121", then_silence=15.0)  # English, 2 support, 1 internet
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=40
    ) as run:
        case_id = await wait_case(center, "answered")
        await asyncio.sleep(2.0)  # talk
        # The agent hangs up: the caller gets our BYE and SIPp's scenario completes.
        agent.terminate()
        rc = await run.wait(40)
        assert rc == 0, run.report()
    await _finish(agent)
    events = await case_events(center, case_id)
    kinds = [k for k, _ in events]
    order = [
        "entered",
        "ivr_input",
        "ivr_set",
        "ivr_input",
        "ivr_input",
        "queued",
        "offered",
        "answered",
        "hung_up",
    ]
    it = iter(kinds)
    assert all(k in it for k in order), kinds
    inputs = [d for k, d in events if k == "ivr_input"]
    assert [(d["node"], d["digits"]) for d in inputs] == [
        ("language", "1"),
        ("menu", "2"),
        ("support", "1"),
    ]
    queued = next(d for k, d in events if k == "queued")
    assert queued["queue"] == "support" and queued["skills"] == {"support": 3, "en": 4}
    answered = next(d for k, d in events if k == "answered")
    assert answered["queue"] == "support"
    assert next(d for k, d in events if k == "offered")["agent"] == "bob"


@pytest.mark.parametrize("hotline", [{"support__max_wait": 3}], indirect=True)
async def test_no_agent_past_the_wait_limit_leaves_a_message_delivered_to_the_next_agent(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw, center = hotline, hotline.center
    workdir = tmp_path / "caller"
    workdir.mkdir()
    # Keys: English, support, internet; then the caller speaks (a 440 Hz tone) into voicemail.
    keys_pcap(workdir, "121")
    # A phone sends RTP all along (silence while it listens), or the call would time out.
    spoken = np.concatenate([silence(13.0), tone([440.0], 2.0), silence(7.0)])
    write_rtp_pcap(workdir / "message.pcap", pcmu_packets(spoken, ssrc=0x4444))
    concat_pcaps(
        [workdir / "caller.pcap", workdir / "message.pcap"], workdir / "both.pcap", gap=0.1
    )
    (workdir / "both.pcap").replace(workdir / "caller.pcap")
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=60
    ) as run:
        case_id = await wait_case(center, "voicemail_left", within=60)
        await run.wait(60)  # the scenario's 25 s BYE wait may end first: the case is what counts
    events = await case_events(center, case_id)
    left = next(d for k, d in events if k == "voicemail_left")
    audio = read_wav(left["path"])
    spectrum = np.abs(np.fft.rfft(audio.samples.astype(float)))
    assert abs(np.argmax(spectrum) * 8000 / audio.samples.size - 440) < 15
    assert 1.0 <= left["seconds"] <= 9.5
    queued = [d for k, d in events if k == "queued"]
    original = next(d for k, d in events if k == "queued" and "kind" not in d)
    work = next(d for d in queued if d.get("kind") == "voicemail")
    # The message keeps the caller's place: its arrival time is the call's.
    arrival = next(e for e in center.engine.snapshot()["queues"]["support"]["calls"])
    assert arrival["kind"] == "voicemail"
    assert abs(arrival["since_enqueued"] - arrival["waited"]) > 2.0
    assert original["queue"] == work["queue"] == "support"
    # The next agent to log in gets the message.
    agent = await _baresip(tmp_path, gw, "carol", [], 15)
    await wait_case(center, "answered", within=30)
    events = await case_events(center, case_id)
    answered = [d for k, d in events if k == "answered"]
    assert answered and answered[0]["kind"] == "voicemail"
    agent.terminate()
    await _finish(agent)


async def test_invalid_keys_and_silence_follow_the_menu_and_leave_a_clean_case(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw, center = hotline, hotline.center
    workdir = tmp_path / "caller"
    keys_pcap(workdir, "1999", gap=2.5)  # English, then three invalid choices at the main menu
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=60
    ) as run:
        case_id = await wait_case(center, "queued", within=60)
        await asyncio.sleep(0.5)
        await run.wait(60)
    events = await case_events(center, case_id)
    inputs = [(d["node"], d["digits"], d["result"]) for k, d in events if k == "ivr_input"]
    assert inputs[0] == ("language", "1", "chosen")
    assert [r for n, _, r in inputs if n == "menu"] == ["invalid", "invalid", "invalid"]
    branch = [d for k, d in events if k == "ivr_branch"]
    assert branch[-1]["to"] == "operator" and branch[-1]["reason"] == "retries"
    assert next(d for k, d in events if k == "queued")["queue"] == "operator"
    assert events[-1][0] in ("abandoned", "hung_up")


@pytest.mark.parametrize("hotline", [{"support__ring_timeout": 4}], indirect=True)
async def test_ring_no_answer_sends_the_call_back_to_the_queue_and_on_to_the_next_agent(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw, center = hotline, hotline.center
    slow = await _baresip(tmp_path, gw, "bob", [], 40, answer="manual")  # rings, never answers

    async def available(agent: str) -> None:
        async with asyncio.timeout(15):
            while center.engine.snapshot()["agents"][agent]["status"] != "available":
                await asyncio.sleep(0.1)

    await available("bob")
    workdir = tmp_path / "caller"
    keys_pcap(workdir, "121")
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=40
    ) as run:
        await wait_case(center, "offered", within=20)
        quick = await _baresip(tmp_path, gw, "carol", [], 30)  # logs in while bob's phone rings
        case_id = await wait_case(center, "answered", within=30)
        await asyncio.sleep(1.0)
        quick.terminate()
        await run.wait(40)
    slow.terminate()
    await _finish(quick)
    await _finish(slow)
    events = await case_events(center, case_id)
    trail = [(k, d.get("agent")) for k, d in events if k in ("offered", "rona", "answered")]
    assert trail[0] == ("offered", "bob"), trail
    assert ("rona", "bob") in trail, trail
    assert trail[-1] == ("answered", "carol"), trail
    # It kept its place: one queued event for the call, never re-queued from scratch.
    assert sum(1 for k, _ in events if k == "queued") == 1


async def test_hang_ups_in_the_menu_and_in_the_queue_leave_correct_cases_and_nothing_behind(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw, center = hotline, hotline.center
    # 1: hangs up in the language menu (the scenario's BYE wait ends: SIPp sends BYE itself).
    workdir = tmp_path / "menu"
    workdir.mkdir()
    write_rtp_pcap(workdir / "caller.pcap", pcmu_packets(silence(0.5), ssrc=0x77))
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=3
    ) as run:
        await run.wait(30)
    # 2: keys to the support queue (no agent logged in) and hangs up while waiting.
    workdir = tmp_path / "queue"
    keys_pcap(workdir, "121")
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=8
    ) as run:
        await run.wait(30)
    async with asyncio.timeout(30):
        while gw.ua.calls or gw.ua.debug_counts()["rtp_endpoints"]:
            await asyncio.sleep(0.2)
    await center.writer.flush()
    cases = await center.writer.run(lambda s: s.list_cases(limit=10))
    by_call = {c.id: await case_events(center, c.id) for c in cases}
    ends = sorted(
        next(k for k, _ in reversed(evs) if k in ("hung_up", "abandoned"))
        for evs in by_call.values()
    )
    assert ends == ["abandoned", "hung_up"], by_call
    menu_case = next(evs for evs in by_call.values() if not any(k == "queued" for k, _ in evs))
    assert menu_case[-1][1].get("stage") == "ivr"
    assert center.waiting == {}
    assert center.engine.snapshot()["queues"]["support"]["waiting"] == 0
    media = await gw.media.request(ServerStats())
    assert media.channels == 0, media


LOAD_CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
http = "127.0.0.1:{http}"
data_dir = "{data}"
log_level = "warning"

[sip]
rtp_ports = [36000, 39998]
max_loop_lag_ms = 3000  # a busy test machine's single stall is not what this tests

[media]
process = true
rtp_timeout = 10

{agents}

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.support]
strategy = "longest-idle"
skills = {{ support = 3 }}
max_wait = 6
overflow = "voicemail"
ring_timeout = 10
wrap_up_seconds = 1

[ivr]
entry = "main"

[ivr.flows.main]
start = "menu"

[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = {{ "1" = "support", "2" = "support" }}
timeout = 4
retries = 0
default = "support"

[ivr.flows.main.nodes.support]
type = "queue"
queue = "support"
"""


@pytest.mark.slow
@pytest.mark.serial
async def test_200_callers_through_the_ivr_to_20_agents_all_end_and_stats_match_cases(
    tmp_path: Path,
) -> None:
    from acd.model import LogRecord
    from acd.stats import StatsAccumulator
    from tests.interop.harness import SCENARIOS, run_sipp

    agents = "\n".join(
        f'[[agents]]\nid = "agent{i:02d}"\npassword = "pw-agent{i:02d}"\n'
        f'skills = {{ support = 5 }}\nqueues = ["support"]\n'
        for i in range(1, 21)
    )
    text = LOAD_CONFIG.format(
        sip=free_port(), http=free_port(), data=tmp_path / "data", agents=agents
    )
    gw = Hotline(parse_config(text, file="load-test.toml"))
    await gw.start()
    cc = gw.center
    phones_port = free_port()
    phones: asyncio.subprocess.Process | None = None
    try:
        # 20 agents register from one SIPp, which then answers every call as their phones.
        for i in range(1, 21):
            user = f"agent{i:02d}"
            reg = await asyncio.to_thread(
                run_sipp,
                [
                    "-sf",
                    str(SCENARIOS / "register.xml"),
                    "-s",
                    user,
                    "-au",
                    user,
                    "-ap",
                    f"pw-{user}",
                    "-m",
                    "1",
                ],
                workdir=tmp_path / "register",
                target=sip_address(gw),
                timeout=20,
                local_port=phones_port,
            )
            assert reg.successful == 1, reg.stdout + reg.errors
        assert all(
            cc.engine.snapshot()["agents"][f"agent{i:02d}"]["status"] == "available"
            for i in range(1, 21)
        )
        phones = await asyncio.create_subprocess_exec(
            "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(phones_port),
            "-mi", "127.0.0.1", "-mp", str(free_port(pair=True)), "-nostdin",
            "-timeout", "120s", "-trace_err",
            "-error_file", str(tmp_path / "phones-errors.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            cwd=tmp_path,
        )  # fmt: skip
        await asyncio.sleep(1.0)
        # 200 callers in 5 s: key 1 at the menu, then they talk (a tone) for 16 s and hang up.
        workdir = tmp_path / "callers"
        keys_pcap(workdir, "1")
        speech = tone([300.0], 25.0, dbfs=-20.0)
        write_rtp_pcap(workdir / "speech.pcap", pcmu_packets(speech, ssrc=0x6666))
        concat_pcaps(
            [workdir / "caller.pcap", workdir / "speech.pcap"], workdir / "all.pcap", gap=0.1
        )
        (workdir / "all.pcap").replace(workdir / "caller.pcap")
        callers = await asyncio.create_subprocess_exec(
            "sipp", sip_address(gw), "-sf",
            str(SCENARIOS / "hotline_caller.xml"),
            "-s", "1000", "-i", "127.0.0.1", "-p", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(free_port(pair=True)),
            "-r", "40", "-m", "200", "-l", "200", "-nostdin", "-timeout", "90s",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            cwd=workdir,
        )  # fmt: skip
        await asyncio.wait_for(callers.wait(), 120)
        # Every caller's call is over (agents may still be hearing queued messages).
        async with asyncio.timeout(40):
            while any(r.direction == "inbound" for r in gw.ua.calls.values()):
                await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        await cc.writer.flush()
        cases = await cc.writer.run(lambda s: s.list_cases(limit=1000))
        assert len(cases) == 200
        outcome: dict[str, int] = {"answered": 0, "abandoned": 0, "voicemail": 0}
        answered_events = abandoned_events = voicemail_events = 0
        for c in cases:
            events = await case_events(cc, c.id)
            kinds = [k for k, _ in events]
            answered_events += sum(1 for k in kinds if k == "answered")
            abandoned_events += kinds.count("abandoned")
            voicemail_events += sum(
                1 for k, d in events if k == "transferred" and d.get("to") == "voicemail"
            )
            if any(k == "answered" and d.get("kind") == "call" for k, d in events):
                outcome["answered"] += 1
            elif "abandoned" in kinds:
                outcome["abandoned"] += 1
            elif "voicemail_left" in kinds or any(
                k == "transferred" and d.get("to") == "voicemail" for k, d in events
            ):
                outcome["voicemail"] += 1
            else:
                raise AssertionError(f"case {c.id} ended nowhere: {events}")
        print("outcomes:", outcome)
        assert sum(outcome.values()) == 200, outcome
        assert outcome["answered"] >= 20, outcome
        # The statistics folded from the engine's log agree with the case records.
        log = await cc.writer.run(lambda s: s.read_log())
        stats = StatsAccumulator.from_records(LogRecord.from_dict(r) for _, r in log)
        total = stats.total
        assert total.answered == answered_events, (total, answered_events)
        assert total.abandoned == abandoned_events, (total, abandoned_events)
        assert total.voicemail == voicemail_events, (total, voicemail_events)
    finally:
        if phones is not None and phones.returncode is None:
            phones.terminate()
            await phones.wait()
        await gw.stop()


async def test_an_agent_transfers_the_caller_to_a_colleague_from_their_softphone(
    hotline: Hotline, tmp_path: Path
) -> None:
    """bob answers a support call, then his softphone's transfer key (REFER) hands the caller
    to extension 1004 (dave, who need not serve that queue): the caller talks with dave, bob
    is free (his ACD call ended), and the case says who had the call and where it went."""
    gw, center = hotline, hotline.center
    console = free_port()
    bob = await _baresip(tmp_path, gw, "bob", [], 40, console_port=console)
    dave = await _baresip(tmp_path, gw, "dave", [], 40)
    async with asyncio.timeout(15):
        while not gw.registrations.contacts("dave", gw.ua.loop.time()) or (
            center.engine.snapshot()["agents"]["bob"]["status"] != "available"
        ):
            await asyncio.sleep(0.1)
    workdir = tmp_path / "caller"
    keys_pcap(workdir, "121", then_silence=20.0)
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=60
    ) as run:
        case_id = await wait_case(center, "answered")
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", console)
        )
        port = gw.config.server.sip_port
        transport.sendto(f"/transfer sip:1004@127.0.0.1:{port}\n".encode())
        transport.close()
        await wait_case(center, "transferred", within=20)
        await asyncio.sleep(1.5)
        bob_state = center.engine.snapshot()["agents"]["bob"]
        talking = [r for r in gw.ua.calls.values() if r.answered_at is not None]
        dave.terminate()  # dave hangs up: the caller gets our BYE
        await run.wait(40)
    bob.terminate()
    out_bob = await _finish(bob)
    await _finish(dave)
    assert "transferring call" in out_bob, out_bob[-2000:]
    assert bob_state["call_id"] is None, bob_state  # bob's part is over (wrap-up or idle)
    events = await case_events(center, case_id)
    assert any("sip:dave" in r.dialled for r in talking), (
        [r.dialled for r in talking],
        [(k, d.get("agent"), d.get("to"), d.get("after")) for k, d in events],
    )
    trail = [
        (k, d.get("agent") or d.get("to"))
        for k, d in events
        if k in ("answered", "transferred", "hung_up")
    ]
    assert trail[0] == ("answered", "bob"), trail
    assert ("transferred", "sip:dave") in [(k, (v or "")[:8]) for k, v in trail] or any(
        k == "transferred" and "dave" in str(v) for k, v in trail
    ), trail
    assert trail[-1][0] == "hung_up", trail


async def test_an_agent_consults_a_colleague_then_completes_an_attended_transfer(
    hotline: Hotline, tmp_path: Path
) -> None:
    """bob answers on one phone, calls extension 1004 (dave) from his second phone to consult,
    then his first phone sends REFER with Replaces naming that consultation: the caller is
    joined to dave, and both of bob's calls are hung up."""
    from tests.interop.harness import SCENARIOS, run_sipp

    gw, center = hotline, hotline.center
    phone_a, phone_b = free_port(), free_port()
    BOB = ["-ap", "bob-demo-1", "-m", "1"]

    async def register(port: int) -> None:
        reg = await asyncio.to_thread(
            run_sipp,
            ["-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob", *BOB],
            workdir=tmp_path / f"register-{port}",
            target=sip_address(gw),
            timeout=20,
            local_port=port,
        )
        assert reg.successful == 1, reg.stdout + reg.errors

    await register(phone_a)
    dave = await _baresip(tmp_path, gw, "dave", [], 40)
    async with asyncio.timeout(15):
        while not gw.registrations.contacts("dave", gw.ua.loop.time()):
            await asyncio.sleep(0.1)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        write_rtp_pcap(tmp_path / d / "phone.pcap", pcmu_packets(silence(30.0), ssrc=0x7070))
    agent_a = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / "agent_attended_transfer.xml"),
        "-i", "127.0.0.1", "-p", str(phone_a), "-mi", "127.0.0.1",
        "-mp", str(free_port(pair=True)), "-m", "1", "-nostdin", "-timeout", "60s",
        "-key", "hotline", sip_address(gw),
        "-trace_err", "-error_file", str(tmp_path / "a" / "errors.log"),
        "-trace_msg", "-message_file", str(tmp_path / "a" / "messages.log"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path / "a",
    )  # fmt: skip
    workdir = tmp_path / "caller"
    keys_pcap(workdir, "121", then_silence=30.0)
    try:
        async with sipp(
            "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=60
        ) as run:
            case_id = await wait_case(center, "answered")
            await register(phone_b)
            agent_b = await asyncio.create_subprocess_exec(
                "sipp", sip_address(gw), "-sf", str(SCENARIOS / "agent_consult_call.xml"),
                "-s", "1004", "-i", "127.0.0.1", "-p", str(phone_b), "-mi", "127.0.0.1",
                "-mp", str(free_port(pair=True)), "-m", "1", "-nostdin", "-timeout", "60s",
                "-cid_str", "consult-1@127.0.0.1", "-au", "bob", "-ap", "bob-demo-1",
                "-trace_err", "-error_file", str(tmp_path / "b" / "errors.log"),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                cwd=tmp_path / "b",
            )  # fmt: skip
            await wait_case(center, "transferred", within=30)
            await asyncio.sleep(1.0)
            caller = next(
                r.session for r in gw.ua.calls.values() if r.session and r.session.dialled == "1000"
            )
            joined = caller.bridged_to
            assert joined is not None and "dave" in joined.dialled, joined
            assert await asyncio.wait_for(agent_a.wait(), 20) == 0, (
                tmp_path / "a" / "messages.log"
            ).read_text()[-4000:]
            assert await asyncio.wait_for(agent_b.wait(), 20) == 0
            dave.terminate()
            await run.wait(40)
    finally:
        for p in (agent_a,):
            if p.returncode is None:
                p.kill()
                await p.wait()
    await _finish(dave)
    events = await case_events(center, case_id)
    kinds = [k for k, _ in events]
    assert kinds.index("answered") < kinds.index("transferred") < len(kinds) - 1, kinds
    moved = next(d for k, d in events if k == "transferred")
    assert moved["from_agent"] == "bob" and "dave" in moved["to"], moved


@pytest.mark.parametrize("hotline", [{"support__announce_every": 3}], indirect=True)
async def test_waiting_callers_hear_their_position_and_may_ask_for_a_callback(
    hotline: Hotline, tmp_path: Path
) -> None:
    gw, center = hotline, hotline.center
    announced: list[tuple[int, float]] = []
    original = center.room._announce

    async def spy(w: Any, position: int, ewt: float) -> None:
        announced.append((position, ewt))
        await original(w, position, ewt)

    center.room._announce = spy  # type: ignore[method-assign,assignment]
    workdir = tmp_path / "caller"
    keys_pcap(workdir, "121", then_silence=8.0, name="first.pcap")
    keys_pcap(workdir, "2", then_silence=8.0, ssrc=0x6161, name="second.pcap")
    concat_pcaps(
        [workdir / "first.pcap", workdir / "second.pcap"], workdir / "caller.pcap", gap=0.1
    )
    async with sipp(
        "media_caller_pcap.xml", workdir=workdir, target=sip_address(gw), timeout=60
    ) as run:
        case_id = await wait_case(center, "note", within=40)
        rc = await run.wait(40)  # after the confirmation the hotline hangs up
        assert rc == 0, run.report()
    events = await case_events(center, case_id)
    assert announced and announced[0][0] == 1, announced  # first in line
    queued = [d for k, d in events if k == "queued"]
    assert [d.get("kind", "call") for d in queued] == ["call", "callback"]
    note = next(d for k, d in events if k == "note")
    assert note["text"] == "callback requested"
    # The request waits for an agent in the caller's place (queued work, not a call).
    waiting = center.engine.snapshot()["queues"]["support"]["calls"]
    assert [c["kind"] for c in waiting] == ["callback"]
    assert waiting[0]["since_enqueued"] > waiting[0]["waited"]


async def test_an_agent_hears_a_message_and_calls_the_caller_back_with_one_key(
    hotline: Hotline, tmp_path: Path
) -> None:
    """alice leaves a message on 1999 from her softphone and hangs up; carol logs in, hears it,
    presses 1, and the hotline calls alice back and joins them."""
    gw, center = hotline, hotline.center
    alice_console, carol_console = free_port(), free_port()
    alice = await _baresip(tmp_path, gw, "alice", [], 60, console_port=alice_console)
    loop = asyncio.get_running_loop()

    async def type_into(console: int, text: str) -> None:
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", console)
        )
        transport.sendto(text.encode())
        transport.close()

    async with asyncio.timeout(15):
        while not gw.registrations.contacts("alice", gw.ua.loop.time()):
            await asyncio.sleep(0.1)
    port = gw.config.server.sip_port
    # baresip's UDP console may start listening after its REGISTER went out: a dial typed before
    # is lost, so type it again until the call shows up (at most three times).
    for attempt in range(3):
        await type_into(alice_console, f"/dial sip:1999@127.0.0.1:{port}\n")
        try:
            case_id = await wait_case(center, "entered", within=5 if attempt < 2 else 15)
            break
        except AssertionError:
            if attempt == 2:
                alice.terminate()
                await _finish(alice)
                raise
    await asyncio.sleep(11.0)  # the greeting (about 7 s), the beep, then about 3 s of message
    await type_into(alice_console, "/hangup\n")
    await wait_case(center, "voicemail_left", within=15)
    carol = await _baresip(tmp_path, gw, "carol", [], 60, console_port=carol_console)
    async with asyncio.timeout(30):
        while not any(
            k == "answered" for k, _ in await case_events(center, case_id)
        ):  # the message is offered to carol as soon as she is logged in
            await asyncio.sleep(0.2)
    await asyncio.sleep(3.0)
    await type_into(carol_console, "1")  # a key press during the call: RFC 4733
    async with asyncio.timeout(40):
        while not any(
            k == "transferred" and d.get("kind") == "callback"
            for k, d in await case_events(center, case_id)
        ):
            await asyncio.sleep(0.2)
    events = await case_events(center, case_id)
    back = next(d for k, d in events if k == "transferred" and d.get("kind") == "callback")
    await type_into(carol_console, "/hangup\n")
    await asyncio.sleep(1.0)
    alice.terminate()
    carol.terminate()
    out_alice = await _finish(alice)
    await _finish(carol)
    assert back["ok"] is True, events
    assert "sip:alice@127.0.0.1" in back["target"], back
    assert out_alice.count("Call established") >= 2, out_alice[-3000:]  # her call, then ours
