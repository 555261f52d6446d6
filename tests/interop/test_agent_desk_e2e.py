"""The agent's desk end to end, against a real ``hotline serve`` process and real SIPp phones.

bob signs in over HTTP as his browser does (``POST /api/session``: a session cookie, then
``X-CSRF-Token`` on every change) and pauses with a reason from the file's ``[acd]
pause_reasons``. A SIPp caller dials the support queue and waits: nothing rings while bob is
paused. bob becomes ready through the API, and the waiting call is offered to his phone (a
second SIPp, registered as bob, that answers). He sees the call in hand, hangs up through the
API, sets the case's disposition while in wrap-up, and ends the wrap-up. What he, the caller
and a supervisor notice: the phones' dialogs end cleanly, the case is bob's with the
disposition set and the whole story on its trail, and bob's figures for today count the call
and the pause. Everything is awaited by polling the API; nothing waits a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from media_gateway.audio.tones import silence
from tests.interop.harness import (
    OPERATOR_TOKEN,
    SCENARIOS,
    Server,
    free_port,
    run_sipp,
    start_server,
)
from tests.interop.media_harness import pcmu_packets, sipp, write_rtp_pcap

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

BOB_PASSWORD = "pw-bob-e2e-1"
CAROL_PASSWORD = "pw-carol-e2e-1"

CONFIG = f"""
[server]
log_level = "info"

[sip]
transports = ["udp"]
rtp_ports = [47000, 47998]

[[agents]]
id = "bob"
name = "Bob"
password = "{BOB_PASSWORD}"
extension = "1001"
skills = {{ support = 5 }}
queues = ["support"]

[[agents]]
id = "carol"
password = "{CAROL_PASSWORD}"
extension = "1002"
skills = {{ support = 5 }}
queues = ["support"]

[entry_points]
"1000" = {{ kind = "queue", target = "support" }}

[acd]
pause_reasons = ["coffee", "coaching"]

[acd.queues.support]
strategy = "longest-idle"
ring_timeout = 10
wrap_up_seconds = 300
"""

T = TypeVar("T")


@dataclass
class Http:
    """One signed-in client of the service's API."""

    session: aiohttp.ClientSession
    headers: dict[str, str]

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, path, json=body, headers=self.headers) as resp:
            data = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, data

    async def ok(self, method: str, path: str, body: Any = None, *, status: int = 200) -> Any:
        got, data = await self.call(method, path, body)
        assert got == status, (method, path, got, data)
        return data


async def until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, within: float = 10.0
) -> T:
    """Poll ``probe`` until ``done`` holds for its answer; that answer."""
    last: T | None = None
    async with asyncio.timeout(within):
        while True:
            last = await probe()
            if done(last):
                return last
            await asyncio.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, CONFIG)
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Web:
    """HTTP clients of the service: each person with their own (their cookies apart)."""

    base: str
    stack: contextlib.AsyncExitStack

    async def client(self) -> aiohttp.ClientSession:
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies from an IP-address host
        session = aiohttp.ClientSession(base_url=self.base, cookie_jar=jar)
        return await self.stack.enter_async_context(session)

    async def browser_sign_in(self, user: str, password: str) -> Http:
        """Sign in as a browser does: the session cookie, then the CSRF token on changes."""
        web = await self.client()
        async with web.post("/api/session", json={"user": user, "password": password}) as resp:
            assert resp.status == 200, await resp.text()
            info = await resp.json()
        assert info["user"] == user and info["role"] == "agent"
        assert "hotline_session" in {c.key for c in web.cookie_jar}
        return Http(web, {"X-CSRF-Token": info["csrf_token"], "Origin": self.base})

    async def script_sign_in(self, user: str, password: str) -> Http:
        """Sign in as a script does: a bearer token."""
        web = await self.client()
        body = {"user": user, "password": password, "label": "e2e"}
        async with web.post("/api/tokens", json=body) as resp:
            assert resp.status == 201, await resp.text()
            token = (await resp.json())["token"]
        return Http(web, {"Authorization": f"Bearer {token}"})

    async def operator(self) -> Http:
        return Http(await self.client(), {"Authorization": f"Bearer {OPERATOR_TOKEN}"})


@pytest.fixture
async def web(server: Server) -> AsyncIterator[Web]:
    async with contextlib.AsyncExitStack() as stack:
        yield Web(f"http://127.0.0.1:{server.http_port}", stack)


async def register_phone(server: Server, tmp: Path, user: str, password: str) -> int:
    """Register ``user``'s phone (SIPp, digest auth); the port it registered from."""
    port = free_port()
    args = ["-sf", str(SCENARIOS / "register.xml"), "-s", user, "-au", user, "-ap", password]
    reg = await asyncio.to_thread(
        run_sipp,
        [*args, "-m", "1"],
        workdir=tmp / f"register-{user}",
        target=server.sip,
        timeout=15,
        local_port=port,
    )
    assert reg.successful == 1, reg.stdout + reg.errors
    return port


async def test_a_paused_agent_becomes_ready_takes_the_waiting_call_and_closes_the_case(
    server: Server, web: Web, tmp_path: Path
) -> None:
    started = time.monotonic()
    operator = await web.operator()
    phone_port = await register_phone(server, tmp_path, "bob", BOB_PASSWORD)

    # bob signs in over HTTP (his browser's way) and pauses with a configured reason.
    bob = await web.browser_sign_in("bob", BOB_PASSWORD)
    me = await bob.ok("GET", "/api/agents/bob")
    assert (me["status"], me["state"], me["phone"]) == ("available", "idle", True)
    status, refused = await bob.call("POST", "/api/agents/bob/pause", {"reason": "lunch"})
    assert status == 422, refused  # not among this file's pause reasons
    paused = await bob.ok("POST", "/api/agents/bob/pause", {"reason": "coffee"})
    assert (paused["status"], paused["state"], paused["reason"]) == ("paused", "paused", "coffee")
    # A colleague's token does not reach bob's desk.
    carol = await web.script_sign_in("carol", CAROL_PASSWORD)
    status, _ = await carol.call("POST", "/api/agents/bob/ready")
    assert status == 403

    # Both phones send RTP (silence), as phones do.
    phone_dir, caller_dir = tmp_path / "phone", tmp_path / "caller"
    for pcap, ssrc in ((phone_dir / "phone.pcap", 0xB0B), (caller_dir / "caller.pcap", 0xCA11)):
        pcap.parent.mkdir()
        write_rtp_pcap(pcap, pcmu_packets(silence(20.0), ssrc=ssrc))

    async with (
        sipp(
            "agent_answer_wait_bye.xml",
            workdir=phone_dir,
            target=None,
            local_port=phone_port,
            timeout=30,
        ) as phone,
        sipp("hotline_caller.xml", workdir=caller_dir, target=server.sip, timeout=30) as caller,
    ):
        # The caller waits in the queue; bob, paused, is not offered the call.
        async def support() -> dict[str, Any]:
            stats = await operator.ok("GET", "/api/stats/queues")
            return next(q for q in stats["queues"] if q["queue"] == "support")

        waiting = await until(support, lambda q: q["waiting"] == 1)
        assert waiting["agents"]["paused"] == 1, waiting
        me = await bob.ok("GET", "/api/agents/bob")
        assert (me["state"], me["reason"], me["call"]) == ("paused", "coffee", None)

        # Ready: the waiting call rings bob's phone, which answers.
        ready = await bob.ok("POST", "/api/agents/bob/ready")
        assert ready["status"] == "available" and ready["reason"] == ""
        me = await until(
            lambda: bob.ok("GET", "/api/agents/bob"), lambda a: a["state"] == "on_call"
        )
        in_hand = await bob.ok("GET", "/api/agents/bob/call")
        case_id = in_hand["case_id"]
        assert me["call"] == {
            "call_id": in_hand["call_id"],
            "case_id": case_id,
            "caller": in_hand["caller"],
        }
        assert in_hand["queue"] == "support" and in_hand["caller"].startswith("+86138000")
        assert not in_hand["held"] and not in_hand["muted"] and in_hand["transfer"] is None
        assert in_hand["since"].endswith(("Z", "+00:00"))

        # bob hangs up through the API: both phones get a BYE; bob is in wrap-up.
        await bob.ok("POST", "/api/agents/bob/call/hangup", status=204)
        assert await phone.wait(15) == 0, phone.report()
        assert await caller.wait(15) == 0, caller.report()
    me = await until(lambda: bob.ok("GET", "/api/agents/bob"), lambda a: a["state"] == "wrap_up")
    assert me["call"] is None and 0 < me["wrap_up_remaining"] <= 300
    status, gone = await bob.call("GET", "/api/agents/bob/call")
    assert status == 404 and gone["error"]["code"] == "no_call"

    # In wrap-up, bob records the outcome on his case, then ends the wrap-up.
    changed = await bob.ok(
        "PATCH",
        f"/api/cases/{case_id}",
        {"disposition": "router reset, resolved", "type": "fault", "status": "resolved"},
    )
    assert changed["disposition"] == "router reset, resolved"
    done = await bob.ok("POST", "/api/agents/bob/wrap-up/end")
    assert (done["status"], done["state"], done["wrap_up_ends"]) == ("available", "idle", None)
    status, refused = await bob.call("POST", "/api/agents/bob/wrap-up/end")
    assert status == 409 and refused["error"]["code"] == "not_in_wrap_up"

    # The case: bob's, with the disposition, and the whole story on its trail.
    case = await bob.ok("GET", f"/api/cases/{case_id}")
    assert (case["owner"], case["disposition"], case["type"], case["status"]) == (
        "bob",
        "router reset, resolved",
        "fault",
        "resolved",
    )
    assert case["queue"] == "support" and case["caller"] == in_hand["caller"]
    trail = [(e["kind"], e["actor"]) for e in case["events"]]
    story = [
        ("queued", None),
        ("offered", "acd"),
        ("answered", "bob"),
        ("call_control", "bob"),
        ("hung_up", "bob"),
        ("disposition_set", "bob"),
        ("wrap_up_done", "bob"),
    ]
    it = iter(trail)
    assert all(
        any(k == kind and (who is None or a == who) for k, a in it) for kind, who in story
    ), trail
    control = next(e for e in case["events"] if e["kind"] == "call_control")
    assert control["data"]["action"] == "hangup"

    # bob's figures today: the call he answered and the coffee break.
    today = await until(
        lambda: bob.ok("GET", "/api/agents/bob/today"), lambda t: t["answered"] == 1
    )
    assert today["agent_id"] == "bob" and today["state"] == "idle"
    assert today["offers"] == 1 and today["missed"] == 0
    assert today["talk_seconds"] > 0 and today["pauses"].get("coffee", 0) > 0
    status, _ = await carol.call("GET", "/api/agents/bob/today")
    assert status == 403

    print(f"agent desk end to end: {time.monotonic() - started:.1f} s")
    assert server.stop() == 0
    errors = [line for line in server.log_lines() if line.get("level") in ("error", "critical")]
    assert errors == []
