"""Listen, whisper and barge reach the right ears: real SIP phones, real RTP on 127.0.0.1.

An in-process Hotline with its media process. A SIPp caller dials the support queue; bob's
phone (SIPp, registered as bob) answers; sue, a supervisor, monitors the call through the API
and her phone (SIPp, registered as sue) is rung and answers. Each phone's SDP names an RTP
socket the test owns, so the test is every party's voice and ears: the caller says 440 Hz,
bob 1 kHz, sue 1.7 kHz, and the test looks at the spectrum of what each phone received:

* listen: sue hears caller and bob; neither hears sue;
* whisper: bob hears caller and sue; the caller still hears bob alone;
* barge: everyone hears the other two;
* stop: sue's phone is hung up, caller and bob hear each other as before, and the case trail
  tells the whole story; an agent may not monitor, nor may a call without a call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from acd.store import CaseStore
from hotline.center.feed import Viewer
from hotline.center.monitor import monitor_desk
from hotline.config import parse_config
from hotline.server import Hotline
from media_gateway.audio.tones import tone
from media_gateway.rtp import g711
from media_gateway.session import CallSession
from media_gateway.sip_leg import SipLeg
from tests.interop.harness import SCENARIOS, free_port, run_sipp
from tests.interop.media_harness import (
    RtpSocket,
    SippRun,
    pcmu_packets,
    rtp_socket,
    send_paced,
    sip_address,
    sipp,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"
log_level = "warning"

[sip]
transports = ["udp"]
rtp_ports = [45400, 45998]

[media]
process = true
rtp_timeout = 20

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
"""

HZ = {"caller": 440.0, "bob": 1000.0, "sue": 1700.0}
MONITOR = "/api/agents/bob/call/monitor"
SETTLE, LISTEN = 0.5, 1.0
"""After a switch: the old mix's frames drain for ``SETTLE`` s, then ``LISTEN`` s are judged."""


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    text = CONFIG.format(sip=free_port(), data=tmp_path / "data")
    hl = Hotline(parse_config(text, file="monitor-test.toml"))
    await hl.start()
    try:
        yield hl
    finally:
        await asyncio.wait_for(hl.stop(), 20)


def voices(x: np.ndarray) -> set[str]:
    """Whose tones are in ``x``: each counted when its band holds 1/1000 of the power."""
    if x.size < 4000:
        return set()
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    total = float(spectrum.sum())
    return {n for n, hz in HZ.items() if spectrum[np.abs(freqs - hz) <= 15].sum() > total * 1e-3}


def heard(sock: RtpSocket, since: float, until: float) -> np.ndarray:
    payload = b"".join(r.payload for _, r in sock.rtp(since=since, until=until) if r.pt == 0)
    return g711.decode(payload, "PCMU") if payload else np.zeros(0, dtype=np.int16)


async def register(gw: Hotline, tmp: Path, user: str, password: str) -> int:
    port = free_port()
    args = ["-sf", str(SCENARIOS / "register.xml"), "-s", user, "-au", user, "-ap", password]
    result = await asyncio.to_thread(
        run_sipp,
        [*args, "-m", "1"],
        workdir=tmp / f"register-{user}",
        target=sip_address(gw),
        timeout=20,
        local_port=port,
    )
    assert result.successful == 1, result.stdout + result.errors
    return port


async def until(check: Any, within: float = 15.0) -> Any:
    async with asyncio.timeout(within):
        while True:
            value = check()
            if value:
                return value
            await asyncio.sleep(0.02)


@dataclass
class Floor:
    """A call from the caller to bob, every phone a SIPp UAS or UAC with a test-owned ear."""

    gw: Hotline
    http: TestClient[Any, Any]
    tokens: dict[str, str]
    ears: dict[str, RtpSocket]
    phones: dict[str, SippRun]
    talking: list[asyncio.Future[None]] = field(default_factory=list)

    async def api(
        self, method: str, path: str, user: str = "sue", body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        async with self.http.request(method, path, json=body, headers=headers) as r:
            data = await r.json() if r.content_type == "application/json" else None
            return r.status, data

    def talk(self, who: str, session: CallSession) -> None:
        """``who``'s phone sends its tone to the gateway's port for ``session``."""
        assert isinstance(session.leg, SipLeg)
        packets = pcmu_packets(tone([HZ[who]], 30.0, dbfs=-12.0), ssrc=len(self.talking) + 1)
        dest = ("127.0.0.1", session.leg.local_port)
        self.talking.append(asyncio.ensure_future(send_paced(self.ears[who], packets, dest)))

    async def monitor_active(self) -> dict[str, Any]:
        async with asyncio.timeout(15):
            while True:
                status, body = await self.api("GET", "/api/agents/bob/call/monitor")
                if status == 200 and body["state"] == "active":
                    return body
                await asyncio.sleep(0.05)

    async def who_hears_whom(self) -> dict[str, set[str]]:
        """Let the last switch settle, then judge ``LISTEN`` seconds of every phone's ears."""
        loop = asyncio.get_running_loop()
        start = loop.time() + SETTLE
        await asyncio.sleep(SETTLE + LISTEN + 0.1)  # audio takes its time: a second is a second
        return {n: voices(heard(sock, start, start + LISTEN)) for n, sock in self.ears.items()}


@contextlib.asynccontextmanager
async def floor(gw: Hotline, tmp_path: Path) -> AsyncIterator[Floor]:
    """bob and sue register; the caller reaches bob; caller and bob talk."""
    bob_port = await register(gw, tmp_path, "bob", "pw-bob-1")
    sue_port = await register(gw, tmp_path, "sue", "pw-sue-1")
    await until(lambda: gw.center.engine.snapshot()["agents"]["bob"]["status"] == "available")
    tokens = {u: gw.auth.issue_token(u) for u in ("bob", "sue")}

    def phone(
        who: str, port: int, ear: RtpSocket
    ) -> contextlib.AbstractAsyncContextManager[SippRun]:
        return sipp(
            "monitor_phone_answer.xml",
            workdir=tmp_path / who,
            target=None,
            local_port=port,
            keys={"rtp_port": ear.port},
            timeout=60,
        )

    async with (
        TestClient(TestServer(gw.http_app(), host="127.0.0.1")) as http,
        rtp_socket() as caller_ear,
        rtp_socket() as bob_ear,
        rtp_socket() as sue_ear,
        phone("bob", bob_port, bob_ear) as bob_phone,
        phone("sue", sue_port, sue_ear) as sue_phone,
        sipp(
            "media_caller.xml",
            workdir=tmp_path / "caller",
            target=sip_address(gw),
            keys={"rtp_port": caller_ear.port},
            timeout=60,
        ) as caller_phone,
    ):
        f = Floor(
            gw,
            http,
            tokens,
            {"caller": caller_ear, "bob": bob_ear, "sue": sue_ear},
            {"caller": caller_phone, "bob": bob_phone, "sue": sue_phone},
        )
        live = await until(lambda: gw.center.agents._calls.get("bob"))
        f.talk("caller", live.caller)
        f.talk("bob", live.leg)
        try:
            yield f
        finally:
            for t in f.talking:
                t.cancel()


async def case_trail(gw: Hotline) -> list[tuple[str, dict[str, Any]]]:
    center = gw.center
    await center.writer.flush()

    def trail(store: CaseStore) -> list[tuple[str, dict[str, Any]]]:
        (case,) = store.list_cases(limit=5)
        return [(e.kind, e.data) for e in store.events(case.id)]

    return await center.writer.run(trail)


def monitor_steps(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    return [
        (d["action"], d.get("mode") or d.get("reason") or "", d.get("by", ""))
        for k, d in events
        if k == "call_control" and str(d.get("action", "")).startswith("monitor")
    ]


async def test_listen_whisper_and_barge_reach_the_right_ears(
    hotline: Hotline, tmp_path: Path
) -> None:
    async with floor(hotline, tmp_path) as f:
        # -- who may monitor -------------------------------------------------------------------
        status, body = await f.api("POST", MONITOR, "bob", {"mode": "listen"})
        assert status == 403, body
        status, body = await f.api(
            "POST", "/api/agents/carol/call/monitor", body={"mode": "listen"}
        )
        assert (status, body["error"]["code"]) == (409, "no_call")
        status, body = await f.api("PATCH", MONITOR, body={"mode": "barge"})
        assert (status, body["error"]["code"]) == (404, "no_monitoring")

        # -- listen: sue hears both, nobody hears her ---------------------------------------------
        status, body = await f.api("POST", MONITOR, body={"mode": "listen"})
        assert status == 201, body
        assert (body["mode"], body["state"], body["supervisor"]) == ("listen", "ringing", "sue")
        await f.monitor_active()
        sue_leg = monitor_desk(hotline.center).of("bob").leg
        assert sue_leg is not None
        f.talk("sue", sue_leg)
        got = await f.who_hears_whom()
        assert got == {"caller": {"bob"}, "bob": {"caller"}, "sue": {"caller", "bob"}}, got

        # -- whisper: bob hears sue, the caller does not -------------------------------------------
        status, body = await f.api("PATCH", MONITOR, body={"mode": "whisper"})
        assert (status, body["mode"], body["state"]) == (200, "whisper", "active"), body
        got = await f.who_hears_whom()
        assert got == {"caller": {"bob"}, "bob": {"caller", "sue"}, "sue": {"caller", "bob"}}, got

        # -- barge: everyone hears the other two ----------------------------------------------------
        status, body = await f.api("PATCH", MONITOR, body={"mode": "barge"})
        assert (status, body["mode"]) == (200, "barge"), body
        got = await f.who_hears_whom()
        assert got == {
            "caller": {"bob", "sue"},
            "bob": {"caller", "sue"},
            "sue": {"caller", "bob"},
        }, got

        # -- stop: sue's phone is hung up, the call goes on as before -------------------------------
        status, body = await f.api("DELETE", MONITOR)
        assert (status, body["state"], body["reason"]) == (200, "ended", "stopped"), body
        assert await f.phones["sue"].wait(15) == 0, f.phones["sue"].report()
        got = await f.who_hears_whom()
        assert got == {"caller": {"bob"}, "bob": {"caller"}, "sue": set()}, got
        status, body = await f.api("GET", MONITOR)
        assert status == 404, body

        status, body = await f.api("POST", "/api/agents/bob/call/hangup", "bob")
        assert status in (200, 204), body
        assert await f.phones["bob"].wait(15) == 0, f.phones["bob"].report()
        assert await f.phones["caller"].wait(15) == 0, f.phones["caller"].report()

    assert monitor_steps(await case_trail(hotline)) == [
        ("monitor", "listen", "sue"),
        ("monitor_mode", "whisper", "sue"),
        ("monitor_mode", "barge", "sue"),
        ("monitor_ended", "stopped", "sue"),
    ]


async def test_monitoring_ends_with_the_call_and_only_supervisors_see_it(
    hotline: Hotline, tmp_path: Path
) -> None:
    feed = hotline.center.feed
    async with floor(hotline, tmp_path) as f:
        status, body = await f.api("POST", MONITOR, body={"mode": "whisper"})
        assert status == 201, body
        await f.monitor_active()
        status, listing = await f.api("GET", "/api/monitoring")
        assert status == 200 and [(m["agent_id"], m["mode"]) for m in listing] == [
            ("bob", "whisper")
        ]
        # bob hangs up: the monitoring ends by itself and sue's phone is hung up too
        status, body = await f.api("POST", "/api/agents/bob/call/hangup", "bob")
        assert status in (200, 204), body
        for who in ("sue", "bob", "caller"):
            assert await f.phones[who].wait(15) == 0, f.phones[who].report()
        await until(lambda: not monitor_desk(hotline.center).all())

    def kinds(viewer: Viewer) -> list[tuple[str, str]]:
        _, events, _, _ = feed.since(viewer, None, limit=1000)
        return [(e.data["state"], e.data["mode"]) for e in events if e.kind == "monitor"]

    assert kinds(Viewer("sue", everything=True)) == [
        ("ringing", "whisper"),
        ("active", "whisper"),
        ("ended", "whisper"),
    ]
    assert kinds(Viewer("bob", queues=frozenset({"support"}))) == []  # the agent is not told
    steps = monitor_steps(await case_trail(hotline))
    assert steps == [("monitor", "whisper", "sue"), ("monitor_ended", "call_ended", "sue")]
