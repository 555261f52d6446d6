"""The agent desktop (``/desk``) in a real browser: Playwright driving Debian's Chromium.

An in-process Hotline runs the demo configuration (its bilingual IVR, its queues and staff);
its HTTP app is served on 127.0.0.1. The caller is SIPp (``media_caller.xml``) whose RTP address
is a socket this test owns: it keys through the IVR (RFC 4733) and talks (a 440 Hz tone), and the
test hears what the caller hears. The agent's voice is Chromium's fake microphone (1 kHz).

What an agent notices: signing in and becoming ready; the call ringing in the page with the
queue, the IVR choices and the caller's earlier cases; answering; hearing the caller (the page's
getStats) and being heard (the caller's RTP); a note and a disposition saved on the case; the
wrap-up countdown, extended, and finished. Screenshots go to docs/screenshots/desk-*.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from acd.cases import CaseEvent, NewCase
from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import tone
from media_gateway.audio.wav import write_wav
from media_gateway.rtp import g711
from media_gateway.rtp.dtmf import DtmfSender
from media_gateway.session import CallSession
from media_gateway.sip.headers import parse_name_addr
from media_gateway.sip_leg import SipLeg
from tests.interop.harness import SCENARIOS, free_port, run_sipp
from tests.interop.media_harness import (
    RtpSocket,
    pcmu_packets,
    rtp_socket,
    sip_address,
    sipp,
    write_rtp_pcap,
)
from tests.interop.test_display_name import received_invite_from
from tests.interop.test_hotline_e2e import demo_config

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CALLER = "+33612345678"
CALLER_HZ, AGENT_HZ = 440.0, 1000.0
REGISTER_BOB = ["-sf", str(SCENARIOS / "register.xml"), "-s", "bob", "-au", "bob"]
PASSWORDS = {"alice": "alice-demo-1", "bob": "bob-demo-1", "carol": "carol-demo-1"}


def _tone_wav(path: Path, rate: int = 48000, seconds: float = 10.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    write_wav(path, (9000 * np.sin(2 * np.pi * AGENT_HZ * t)).astype(np.int16), rate)
    return path


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * 8000 / x.size


@dataclass
class Desk:
    gw: Hotline
    url: str
    browser: Any
    wav: Path

    async def page(self, *, viewport: tuple[int, int] = (1280, 900)) -> Any:
        context = await self.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, locale="en-GB"
        )
        page = await context.new_page()
        await page.goto(f"{self.url}/desk")
        return page

    def token(self, user: str = "dave") -> str:
        return self.gw.auth.issue_token(user)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    if not HAVE_CHROMIUM:
        pytest.skip("chromium is missing: run scripts/bootstrap --test")
    # The loop lag overload guard (503 to new INVITEs for a second) is not what this tests: on a
    # busy shared machine one slow page load (the OpenAPI document) would refuse the caller.
    text = demo_config(tmp_path).replace(
        "rtp_ports = [34000, 34998]", "rtp_ports = [34000, 34998]\nmax_loop_lag_ms = 5000"
    )
    gw = Hotline(parse_config(text, file="demo-desk.toml"))
    await gw.start()
    runner = web.AppRunner(gw.http_app(), access_log=None)
    await runner.setup()
    port = free_port(socket.SOCK_STREAM)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    wav = _tone_wav(tmp_path / "agent-voice.wav")
    try:
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                    "--autoplay-policy=no-user-gesture-required",
                    "--allow-loopback-in-peer-connection",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                ],
            )
            try:
                yield Desk(gw, f"http://127.0.0.1:{port}", browser, wav)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
        await asyncio.wait_for(gw.stop(), 20)


async def sign_in(page: Any, user: str, *, companion: bool = False) -> None:
    await page.fill("#user", user)
    await page.fill("#password", PASSWORDS[user])
    if companion:
        await page.check("#companion")
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#desk:not([hidden])")
    if not companion:
        await page.wait_for_function("window.hotlineStats.state === 'ready'")


async def wait_state(page: Any, state: str, within_ms: float = 15_000) -> None:
    await page.wait_for_selector(f"#state[data-state={state}]", timeout=within_ms)


async def shot(page: Any, name: str, *, full_page: bool = False) -> None:
    await page.screenshot(path=str(SHOTS / name), full_page=full_page)


def caller_scenario(workdir: Path, number: str) -> str:
    """``media_caller.xml`` calling from ``number`` (the caller's id on the agent's screen)."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = (SCENARIOS / "media_caller.xml").read_text().replace("sip:caller@", f"sip:{number}@")
    path = workdir / "desk_caller.xml"
    path.write_text(text)
    return str(path)


async def caller_session(gw: Hotline, within: float = 10.0, dialled: str = "1000") -> CallSession:
    async with asyncio.timeout(within):
        while True:
            for record in gw.ua.calls.values():
                s = record.session
                if s is not None and s.direction == "inbound" and s.dialled == dialled:
                    return s
            await asyncio.sleep(0.02)


async def talk(
    sock: RtpSocket,
    dest: tuple[str, int],
    digits: str,
    seconds: float,
    *,
    at: list[float] | None = None,
) -> None:
    """The caller's phone: keys (RFC 4733; at the times ``at``, else 0.7 s apart from 0.5 s)
    and a 440 Hz voice."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sender = DtmfSender(payload_type=101, ssrc=0x5151)
    schedule: list[tuple[float, bytes]] = []
    seq = 1
    times = at or [0.5 + 0.7 * i for i in range(len(digits))]
    for i, (digit, start) in enumerate(zip(digits, times, strict=True)):
        for sp in sender.packets(digit, seq=seq, timestamp=8000 * (i + 1) * 4, duration_ms=120):
            schedule.append((start + sp.offset, sp.packet.to_bytes()))
            seq += 1
    voice = pcmu_packets(tone([CALLER_HZ], seconds, dbfs=-12.0), ssrc=0xCA11)
    schedule += [(0.02 * i, p) for i, p in enumerate(voice)]
    schedule.sort(key=lambda x: x[0])
    for when, packet in schedule:
        delay = t0 + when - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sock.send(packet, dest)


async def earlier_case(gw: Hotline, number: str) -> int:
    """A case this caller opened yesterday, with a note: the screen pop shows it."""

    def write(store: Any) -> int:
        case = store.open_case(
            NewCase(caller_number=number, at=time.time() - 86400, dialled="1000", queue="sales")
        )
        store.append_event(
            case.id,
            CaseEvent(
                at=time.time() - 86000, kind="note", actor="bob", data={"text": "asked for a quote"}
            ),
        )
        return int(case.id)

    return int(await gw.center.writer.run(write))


async def api_get(desk: Desk, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(desk.url + path, headers={"Authorization": f"Bearer {desk.token()}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_an_agent_takes_a_call_through_the_ivr_and_wraps_it_up(
    desk: Desk, tmp_path: Path
) -> None:
    gw = desk.gw
    old_case = await earlier_case(gw, CALLER)
    page = await desk.page()
    await page.wait_for_selector("#signin-form")
    await sign_in(page, "alice")
    await wait_state(page, "idle")  # the browser phone logged her in
    await page.select_option("#reason", "break")
    await page.click("#pause")
    await wait_state(page, "paused")
    assert (await page.text_content("#state")) == "Paused (break)"
    await page.keyboard.press("Alt+R")  # ready, from the keyboard
    await wait_state(page, "idle")
    assert (await page.text_content("#state")) == "Ready"
    await shot(page, "desk-idle.png")

    async with (
        rtp_socket() as phone,
        sipp(
            caller_scenario(tmp_path / "caller", CALLER),
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": phone.port},
            timeout=60,
        ) as caller,
    ):
        session = await caller_session(gw)
        assert isinstance(session.leg, SipLeg)
        talking = asyncio.ensure_future(
            talk(phone, ("127.0.0.1", session.leg.local_port), "11", 40.0)
        )
        try:
            # -- it rings in the page: the queue, the IVR's choices, the screen pop ----------
            await page.wait_for_selector("#offer:not([hidden])", timeout=30_000)
            await wait_state(page, "reserved")
            assert (await page.text_content("#offer-caller")) == CALLER
            assert (await page.text_content("#offer-queue")) == "sales"
            ivr = await page.inner_text("#offer-ivr")
            assert "Language: en" in ivr and "menu: 1 → sales" in ivr, ivr
            await page.wait_for_selector(f"#history-list li[data-case-id='{old_case}']")
            await page.wait_for_selector("#history-list li ol li")
            assert "asked for a quote" in await page.inner_text("#history-list")
            await page.wait_for_function("window.hotlineStats.state === 'ringing'")
            await shot(page, "desk-ringing.png", full_page=True)

            # -- answered: audio both ways -------------------------------------------------------
            await page.click("#answer")
            await wait_state(page, "on_call")
            await page.wait_for_selector("#call:not([hidden])")
            await page.wait_for_function(
                "window.hotlineStats.packetsReceived > 50 && window.hotlineStats.audioLevel > 0",
                timeout=20_000,
            )
            stats = await page.evaluate("JSON.stringify(window.hotlineStats)")
            assert "audio/PCMU" in stats or "audio/pcmu" in stats.lower(), stats
            t_answered = asyncio.get_running_loop().time()
            await asyncio.sleep(2.0)  # the caller hears two seconds of the agent
            heard = [r for _, r in phone.rtp(since=t_answered) if r.pt == 0]
            audio = g711.decode(b"".join(r.payload for r in heard), "PCMU")
            assert audio.size > 8000, len(heard)
            assert dominant_hz(audio[-8000:]) == pytest.approx(AGENT_HZ, abs=10)
            case_id = int((await page.text_content("#case-id") or "#0").lstrip("#"))
            assert case_id > old_case
            await shot(page, "desk-in-call.png", full_page=True)

            # -- the case, while talking ------------------------------------------------------
            await page.select_option("#case-type", "consultation")
            await page.fill("#case-disposition", "information given")
            await page.fill("#case-note", "wants the premium plan")
            await page.click("#case-save")
            await page.wait_for_selector("#case-notes li:has-text('wants the premium plan')")

            # -- hang up, wrap up -------------------------------------------------------------
            await page.click("#hangup")
            await wait_state(page, "wrap_up")
            rc = await caller.wait(30)
            assert rc == 0, caller.report()
        finally:
            talking.cancel()
    left = int(await page.text_content("#wrapup-left") or "0")
    assert 0 < left <= 10
    await page.click("#wrapup-extend")
    await page.wait_for_function("Number(document.getElementById('wrapup-left').textContent) > 20")
    await shot(page, "desk-wrap-up.png", full_page=True)
    await page.click("#case-finish")
    await wait_state(page, "idle")

    case = await api_get(desk, f"/api/cases/{case_id}")
    assert case["owner"] == "alice" and case["queue"] == "sales"
    assert case["type"] == "consultation" and case["status"] == "resolved"
    assert case["disposition"] == "information given"
    assert [n["text"] for n in case["notes"]] == ["wants the premium plan"]
    kinds = [e["kind"] for e in case["events"]]
    for kind in ("ivr_input", "queued", "answered", "hung_up", "note", "disposition_set"):
        assert kind in kinds, kinds

    # -- the same page on a phone, and in Chinese ---------------------------------------------
    await page.set_viewport_size({"width": 390, "height": 844})
    await shot(page, "desk-phone.png")
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.select_option("#lang", "zh")
    assert (await page.text_content("#state")) == "就绪"
    await shot(page, "desk-zh.png", full_page=True)
    with contextlib.suppress(Exception):
        await page.context.close()
    assert re.match(r"^\d+$", str(case_id))


async def test_a_blind_transfer_rings_the_colleagues_page(desk: Desk, tmp_path: Path) -> None:
    """alice takes a sales call and transfers it to bob, picked from the directory (free);
    bob's page (another browser context) rings, he answers and hears the caller."""
    gw = desk.gw
    alice, bob = await desk.page(), await desk.page()
    await sign_in(alice, "alice")
    await sign_in(bob, "bob")
    await wait_state(alice, "idle")
    await wait_state(bob, "idle")
    async with (
        rtp_socket() as phone,
        sipp(
            caller_scenario(tmp_path / "caller", CALLER),
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": phone.port},
            timeout=60,
        ) as caller,
    ):
        session = await caller_session(gw)
        assert isinstance(session.leg, SipLeg)
        talking = asyncio.ensure_future(
            talk(phone, ("127.0.0.1", session.leg.local_port), "11", 40.0)
        )
        try:
            await alice.wait_for_function("window.hotlineStats.state === 'ringing'", timeout=30_000)
            await alice.keyboard.press("Alt+A")
            await wait_state(alice, "on_call")
            await alice.keyboard.press("Alt+T")
            await alice.keyboard.type("bo")
            row = alice.locator("#directory li[data-agent=bob]")
            await alice.wait_for_selector("#directory li[data-agent=bob] .free")  # reloaded
            assert await alice.locator("#directory li[data-agent=dave]").count() == 0
            await row.get_by_role("button").click()
            # bob's page rings with the caller's number; he answers and hears the caller
            await bob.wait_for_function("window.hotlineStats.state === 'ringing'")
            assert CALLER in (await bob.text_content("#offer-caller") or "")
            await bob.click("#answer")
            await bob.wait_for_function(
                "window.hotlineStats.packetsReceived > 50 && window.hotlineStats.audioLevel > 0",
                timeout=20_000,
            )
            await bob.wait_for_selector("#call:not([hidden])")
            assert CALLER in (await bob.text_content("#call-caller") or "")
            await wait_state(alice, "wrap_up")  # alice is out of the call
            await bob.click("#hangup")
            assert await caller.wait(30) == 0, caller.report()
        finally:
            talking.cancel()
    case_id = int((await alice.text_content("#case-id") or "#0").lstrip("#"))
    case = await api_get(desk, f"/api/cases/{case_id}")
    transfers = [e for e in case["events"] if "transfer" in e["kind"]]
    assert transfers and "bob" in str(transfers), case["events"]


def ringing_phone(workdir: Path, ring_ms: int) -> str:
    """``agent_answer_hangup.xml`` that rings ``ring_ms`` before answering (a person picking
    up their desk phone)."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = (SCENARIOS / "agent_answer_hangup.xml").read_text()
    text = text.replace("</send>", f'</send>\n  <pause milliseconds="{ring_ms}"/>', 1)
    voice = pcmu_packets(tone([AGENT_HZ], 8.0, dbfs=-12.0), ssrc=0xB0B)
    write_rtp_pcap(workdir / "phone.pcap", voice)  # the agent's voice, played by the scenario
    path = workdir / "desk_phone.xml"
    path.write_text(text)
    return str(path)


async def test_companion_mode_follows_a_sip_desk_phone(desk: Desk, tmp_path: Path) -> None:
    """bob uses a SIP desk phone (SIPp, registered as bob) and the page without audio: the page
    shows the offer with the queue and IVR choices, the screen pop, and his state, while the
    phone rings, answers and hangs up."""
    gw = desk.gw
    phone_port = free_port()
    reg = await asyncio.to_thread(
        run_sipp,
        [*REGISTER_BOB, "-ap", PASSWORDS["bob"], "-m", "1"],
        workdir=tmp_path / "register",
        target=sip_address(gw),
        timeout=20,
        local_port=phone_port,
    )
    assert reg.successful == 1, reg.stdout + reg.errors
    page = await desk.page()
    await sign_in(page, "bob", companion=True)
    await wait_state(page, "idle")
    assert (await page.text_content("#phone-state")) == "desk phone (companion mode)"
    await earlier_case(gw, CALLER)
    async with (
        rtp_socket() as voice,
        sipp(
            ringing_phone(tmp_path / "phone", 2500),
            workdir=tmp_path / "phone",
            target=None,
            local_port=phone_port,
            timeout=40,
            extra=["-d", "3000"],
        ) as deskphone,
        sipp(
            caller_scenario(tmp_path / "caller", CALLER),
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": voice.port},
            timeout=60,
        ) as caller,
    ):
        session = await caller_session(gw)
        assert isinstance(session.leg, SipLeg)
        talking = asyncio.ensure_future(
            talk(voice, ("127.0.0.1", session.leg.local_port), "121", 40.0)
        )
        try:
            await page.wait_for_selector("#offer:not([hidden])", timeout=30_000)
            await wait_state(page, "reserved")
            assert (await page.text_content("#offer-queue")) == "support"
            assert "menu: 2 → support" in await page.inner_text("#offer-ivr")
            assert await page.is_visible("#offer-phone-note")
            assert not await page.is_visible("#answer")
            await page.wait_for_selector("#history-list li ol li")
            await shot(page, "desk-companion.png", full_page=True)
            await wait_state(page, "on_call")  # the desk phone answered
            assert (await page.text_content("#call-queue")) == "support"
            assert CALLER in (await page.text_content("#call-caller") or "")
            await wait_state(page, "wrap_up")  # ... and hung up
            assert await deskphone.wait(30) == 0, deskphone.report()
            assert await caller.wait(30) == 0, caller.report()
        finally:
            talking.cancel()
    # The desk phone's screen named the queue and the caller: the INVITE's From display name.
    trace = (tmp_path / "phone" / f"messages-{deskphone.port}.log").read_text(errors="replace")
    assert parse_name_addr(received_invite_from(trace)).display == f"support: {CALLER}"


async def test_a_voicemail_task_is_played_in_the_page_and_called_back(
    desk: Desk, tmp_path: Path
) -> None:
    """A caller leaves a message on the support line (1999); bob's page rings with it, he
    answers, the message plays in the page, and one click calls the caller back (the engine's
    own callback: the key 1 on the delivery), reaching the caller's phone (SIPp)."""
    gw = desk.gw
    page = await desk.page()
    await sign_in(page, "bob")
    await wait_state(page, "idle")
    caller_port = free_port()
    async with (
        rtp_socket() as voice,
        sipp(
            caller_scenario(tmp_path / "caller", CALLER),
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": voice.port},
            local_port=caller_port,
            timeout=40,
            extra=["-s", "1999"],
        ) as caller,
    ):
        session = await caller_session(gw, dialled="1999")
        assert isinstance(session.leg, SipLeg)
        # a key cuts the greeting short; the message is the tone; # ends it
        talking = asyncio.ensure_future(
            talk(voice, ("127.0.0.1", session.leg.local_port), "1#", 6.0, at=[0.5, 4.5])
        )
        try:
            assert await caller.wait(30) == 0, caller.report()  # saved, and hung up by us
        finally:
            talking.cancel()

    # the caller's phone is back on its port, ready for the callback
    (tmp_path / "callback").mkdir()
    callee_voice = pcmu_packets(tone([AGENT_HZ], 8.0, dbfs=-12.0), ssrc=0xCA11)
    write_rtp_pcap(tmp_path / "callback" / "phone.pcap", callee_voice)
    async with sipp(
        "agent_answer_wait_bye.xml",
        workdir=tmp_path / "callback",
        target=None,
        local_port=caller_port,
        timeout=60,
    ) as callee:
        await page.wait_for_function("window.hotlineStats.state === 'ringing'", timeout=30_000)
        await page.click("#answer")
        await page.wait_for_selector("#task:not([hidden])", timeout=15_000)
        assert (await page.text_content("#task-kind")) == "Voicemail"
        assert CALLER in (await page.text_content("#task-caller") or "")
        await page.wait_for_function(
            "(() => { const a = document.getElementById('task-audio');"
            " return a.readyState >= 1 && a.duration > 1; })()"
        )
        assert await page.evaluate("document.getElementById('task-audio').play().then(() => true)")
        await page.wait_for_function("document.getElementById('task-audio').currentTime > 0.5")
        messages = tmp_path / "callback" / f"messages-{caller_port}.log"
        async with asyncio.timeout(30):
            while not (messages.exists() and "INVITE sip:" in messages.read_text()):
                if await page.is_enabled("#task-callback"):
                    await page.click("#task-callback")
                await asyncio.sleep(2.0)
        await page.wait_for_function("window.hotlineStats.state === 'connected'")
        await asyncio.sleep(1.0)
        await page.click("#task-done")
        assert await callee.wait(30) == 0, callee.report()
    async with asyncio.timeout(10):
        while True:
            tasks = await api_get(desk, "/api/agents/bob/tasks")
            if tasks and tasks[-1]["state"] == "called_back":
                break
            await asyncio.sleep(0.2)
    assert tasks[-1]["kind"] == "voicemail" and tasks[-1]["audio_url"]
