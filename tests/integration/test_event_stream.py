"""The live event stream end to end: WebSocket clients (aiohttp, bearer tokens) on a real
HTTP server on 127.0.0.1, in front of a contact center taking a call on scripted phones.

A client that disconnects mid-call and reconnects with ``after=<last seq>`` receives every
event it missed, in order, once: its events are exactly those of a twin client that stayed
connected. Agents see their own work only (bob nothing of alice's offers or state, nor the
caller's number); a supervisor sees everything. A resume the server can no longer honour is a
``reset`` with the current state; a reader that cannot keep up is told why and closed, and
catches up by resuming; connections per staff member are limited; the handshake wants a
token or a same-origin session cookie.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestServer

from hotline.auth import StaffAuth
from hotline.center import ContactCenter
from hotline.center.feed import SUPERVISORS
from hotline.config import load_config
from hotline.http.api import Api
from hotline.http.middleware import error_middleware
from hotline.http.stream import StreamSettings, add_event_routes
from hotline.server import Hotline
from media_gateway.session import CallSession
from tests.interop.harness import free_port
from tests.unit.center.center_harness import Clock, FakeSession, ScriptedTelephony, settle, until

SITE = """
[server]
data_dir = "{data}"

[media]
process = false

[[agents]]
id = "sam"
password = "pw-sam-1"
role = "supervisor"

[[agents]]
id = "alice"
password = "pw-alice-1"
queues = ["sales"]

[[agents]]
id = "bob"
password = "pw-bob-1"
queues = ["sales"]

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.sales]
strategy = "longest-idle"
ring_timeout = 20

[ivr]
entry = "main"

[ivr.flows.main]
start = "menu"

[ivr.flows.main.nodes.menu]
type = "menu"
prompt = "main_menu"
choices = {{ "1" = "sales" }}

[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
"""

CALLER = "+4930111222"
CONTROL = frozenset({"reset", "resumed", "heartbeat", "closing"})
Message = dict[str, Any]


@dataclass
class Site:
    center: ContactCenter
    auth: StaffAuth
    telephony: ScriptedTelephony
    server: TestServer
    http: ClientSession
    tokens: dict[str, str]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def connect(self, user: str, **query: Any) -> ClientWebSocketResponse:
        params = {k: str(v) for k, v in query.items()}
        return await self.http.ws_connect(
            self.url("/api/events"),
            params=params,
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
        )

    @property
    def head(self) -> int:
        return self.center.feed.head


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(data=tmp_path / "data"))
    config = load_config(path)
    telephony = ScriptedTelephony([])
    telephony.phone("alice")  # answers when rung; bob has no phone (logged out)
    center = ContactCenter(config, telephony, clock=Clock())
    await center.start()
    auth = StaffAuth(config)
    api = Api(authenticator=auth)
    add_event_routes(api, center.events, settings=StreamSettings(heartbeat=0.05))
    app = web.Application(middlewares=[error_middleware])
    api.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = ClientSession()
    tokens = {u: auth.issue_token(u) for u in ("sam", "alice", "bob")}
    try:
        yield Site(center, auth, telephony, server, http, tokens)
    finally:
        await http.close()
        await center.close()
        await server.close()


async def receive(ws: ClientWebSocketResponse) -> Message:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == WSMsgType.TEXT, msg
    return cast(Message, json.loads(msg.data))


async def read_until(ws: ClientWebSocketResponse, seq: int) -> list[Message]:
    """The events received until a message at or past ``seq`` (an event, or a heartbeat: its
    ``seq`` is the reader's position)."""
    events: list[Message] = []
    while True:
        message = await receive(ws)
        assert message["kind"] != "closing", message
        if message["kind"] not in CONTROL:
            events.append(message)
        if message["seq"] >= seq:
            return events


def increasing(events: list[Message]) -> bool:
    return all(a["seq"] < b["seq"] for a, b in itertools.pairwise(events))


async def test_a_client_that_reconnects_mid_call_receives_every_event_it_missed(
    site: Site,
) -> None:
    steady = {u: await site.connect(u) for u in ("sam", "alice")}
    flaky = {u: await site.connect(u) for u in ("sam", "alice")}
    bob = await site.connect("bob")
    first = {u: await receive(ws) for u, ws in flaky.items()}
    for ws in (*steady.values(), bob):
        assert (await receive(ws))["kind"] == "reset"
    assert first["alice"]["kind"] == "reset" and first["alice"]["data"]["reason"] == "new"
    stream = first["sam"]["data"]["stream"]
    assert first["alice"]["data"]["state"]["agents"]["alice"]["state"] == "idle"
    assert list(first["alice"]["data"]["state"]["agents"]) == ["alice"]

    # A call: the IVR menu, the queue, alice rung and answering, the conversation.
    caller = FakeSession(site.telephony.timeline, caller=CALLER, dialled="1000")
    call = asyncio.get_running_loop().create_task(
        site.center.handle_call(cast(CallSession, caller), "hotline", "main")
    )
    await until(lambda: caller.state == "answered", "the caller answered by the IVR")
    caller.press("1")
    await until(lambda: caller.bridged_to is not None, "the caller talks to alice")
    await settle()
    before = {u: await read_until(ws, site.head) for u, ws in flaky.items()}
    for ws in flaky.values():  # mid-call, the clients go away
        await ws.close()
    last = {u: events[-1]["seq"] for u, events in before.items()}
    assert any(e["kind"] == "offer" for e in before["alice"])

    # More happens while they are away: a note, the caller hangs up, bob's phone appears.
    case_id = int(caller.vars["case_id"])
    await site.center.cases.add_note(case_id, "alice", "wants a refund")
    caller.remote_hangup()
    await asyncio.wait_for(call, 5)
    site.telephony.phone("bob")
    site.center.presence_changed("bob", True)
    await settle()

    again = {u: await site.connect(u, after=last[u], stream=stream) for u in flaky}
    for user, ws in again.items():
        hello = await receive(ws)
        assert hello["kind"] == "resumed" and hello["seq"] == last[user], hello
        assert hello["data"]["replay"] > 0
    after = {u: await read_until(ws, site.head) for u, ws in again.items()}
    whole = {u: await read_until(ws, site.head) for u, ws in steady.items()}
    for user in ("sam", "alice"):
        rejoined = before[user] + after[user]
        assert rejoined == whole[user], user  # every event, in order, no duplicates, no gaps
        assert increasing(rejoined)
        missed = {(e["kind"], e["data"].get("event")) for e in after[user]}
        assert {("case", "note"), ("case", "hung_up"), ("call_ended", None)} <= missed, user

    # Alice: her offers (caller number, queue, IVR choice), her states, her case; nobody else's.
    alice = whole["alice"]
    offers = [e["data"] for e in alice if e["kind"] == "offer"]
    assert [o["state"] for o in offers] == ["ringing", "answered"]
    assert (offers[0]["caller"], offers[0]["queue"], offers[0]["case_id"]) == (
        CALLER,
        "sales",
        case_id,
    )
    assert offers[0]["ivr"] == [{"node": "menu", "digits": "1", "to": "sales"}]
    states = [e["data"]["state"] for e in alice if e["kind"] == "agent_state"]
    assert states[:2] == ["reserved", "on_call"]
    notes = [e for e in alice if e["kind"] == "case" and e["data"]["event"] == "note"]
    assert notes[0]["data"]["data"]["text"] == "wants a refund"
    assert not [e for e in alice if e["data"].get("agent") == "bob"]

    # Bob: his own state and the queue's counts; nothing of alice's, not the caller's number.
    bobs = await read_until(bob, site.head)
    assert {e["kind"] for e in bobs} <= {"agent_state", "queue", "stats"}
    assert [e["data"]["state"] for e in bobs if e["kind"] == "agent_state"] == ["idle"]
    assert [e for e in bobs if e["kind"] == "queue"]
    assert CALLER not in json.dumps(bobs) and "alice" not in json.dumps(bobs)

    # The supervisor: everything, alice's and bob's alike.
    sam = whole["sam"]
    assert {e["seq"] for e in alice} | {e["seq"] for e in bobs} <= {e["seq"] for e in sam}
    kinds = {e["kind"] for e in sam}
    assert {"offer", "case", "call_queued", "call_answered", "call_ended", "agent_state"} <= kinds
    assert any(e["kind"] == "agent_state" and e["data"]["agent"] == "bob" for e in sam)
    for ws in (*steady.values(), *again.values(), bob):
        await ws.close()


async def test_a_resume_the_server_no_longer_holds_gets_a_reset_with_the_state(
    site: Site,
) -> None:
    ws = await site.connect("alice")
    hello = await receive(ws)
    stream = hello["data"]["stream"]
    await ws.close()
    seen = site.head
    for i in range(site.center.feed.capacity + 1):
        site.center.feed.publish("note", {"i": i}, SUPERVISORS)  # the ring turns over
    ws = await site.connect("alice", after=seen, stream=stream)
    reset = await receive(ws)
    assert reset["kind"] == "reset" and reset["data"]["reason"] == "too_old"
    assert reset["seq"] == site.head
    assert reset["data"]["state"]["agents"]["alice"]["state"] == "idle"
    assert reset["data"]["state"]["queues"]["sales"]["waiting"] == 0
    site.center.agent_ready("alice")  # events follow the reset
    site.center.presence_changed("alice", False)
    event = await receive(ws)
    while event["kind"] == "heartbeat":
        event = await receive(ws)
    assert event["kind"] == "agent_state" and event["seq"] > reset["seq"]
    await ws.close()
    # a number from another run of the server, or from another server
    for query in ({"after": site.head + 5}, {"after": 1, "stream": "0123456789abcdef"}):
        ws = await site.connect("sam", **query)
        assert (await receive(ws))["kind"] == "reset"
        await ws.close()


async def test_a_reader_that_falls_behind_is_told_and_closed_then_catches_up(
    site: Site,
) -> None:
    ws = await site.connect("sam")
    hello = await receive(ws)
    for i in range(site.center.feed.max_pending + 1):  # at once: the writer never ran between
        site.center.feed.publish("tick", {"i": i}, SUPERVISORS)
    closing = await receive(ws)
    assert closing["kind"] == "closing" and closing["data"] == {"reason": "slow_consumer"}
    assert closing["seq"] == hello["seq"]  # nothing was delivered
    end = await asyncio.wait_for(ws.receive(), 5)
    assert end.type == WSMsgType.CLOSE and end.data == 1013  # try again later
    ws = await site.connect("sam", after=closing["seq"], stream=hello["data"]["stream"])
    assert (await receive(ws))["kind"] == "resumed"
    caught_up = await read_until(ws, site.head)
    assert [e["data"]["i"] for e in caught_up] == list(range(site.center.feed.max_pending + 1))
    await ws.close()


async def test_a_first_message_may_ask_for_the_resume(site: Site) -> None:
    ws = await site.connect("sam")
    hello = await receive(ws)
    site.center.presence_changed("bob", True)
    site.center.presence_changed("bob", False)
    events = await read_until(ws, site.head)
    await ws.send_json({"resume": hello["seq"], "stream": hello["data"]["stream"]})
    resumed = await receive(ws)
    assert resumed["kind"] == "resumed" and resumed["seq"] == hello["seq"]
    assert await read_until(ws, site.head) == events  # the same events again, as asked
    await ws.close()


async def test_polling_gives_the_same_events_with_the_same_filter(site: Site) -> None:
    ws = await site.connect("alice")
    hello = await receive(ws)
    site.center.presence_changed("bob", True)
    site.center.agent_ready("alice")
    site.center.presence_changed("alice", False)
    streamed = await read_until(ws, site.head)
    await ws.close()
    resp = await site.http.get(
        site.url("/api/events/recent"),
        params={"after": hello["seq"], "stream": hello["data"]["stream"], "limit": "2"},
        headers={"Authorization": f"Bearer {site.tokens['alice']}"},
    )
    page = await resp.json()
    assert resp.status == 200, page
    assert page["start"] == "resumed" and page["state"] is None
    polled = page["events"]
    while page["more"]:
        resp = await site.http.get(
            site.url("/api/events/recent"),
            params={"after": page["position"], "stream": page["stream"], "limit": "2"},
            headers={"Authorization": f"Bearer {site.tokens['alice']}"},
        )
        page = await resp.json()
        polled += page["events"]
    assert polled == streamed
    assert page["position"] == site.head
    assert not [e for e in polled if e["data"].get("agent") == "bob"]


async def test_the_handshake_wants_a_token_or_a_same_origin_cookie_and_limits_sockets(
    site: Site,
) -> None:
    with pytest.raises(WSServerHandshakeError) as refused:
        await site.http.ws_connect(site.url("/api/events"))
    assert refused.value.status == 401
    plain = await site.http.get(
        site.url("/api/events"), headers={"Authorization": f"Bearer {site.tokens['bob']}"}
    )
    assert plain.status == 426
    assert (await plain.json())["error"]["code"] == "upgrade_required"

    secret, _ = site.auth.new_session("bob")
    cookie = {"Cookie": f"hotline_session={secret}"}
    with pytest.raises(WSServerHandshakeError) as foreign:
        await site.http.ws_connect(
            site.url("/api/events"), headers={**cookie, "Origin": "https://evil.example"}
        )
    assert foreign.value.status == 403
    origin = site.url("/").rstrip("/")
    ws = await site.http.ws_connect(site.url("/api/events"), headers={**cookie, "Origin": origin})
    assert (await receive(ws))["kind"] == "reset"
    await ws.close()

    sockets = [await site.connect("alice") for _ in range(StreamSettings().max_per_user)]
    with pytest.raises(WSServerHandshakeError) as limited:
        await site.connect("alice")
    assert limited.value.status == 429
    other = await site.connect("bob")  # the limit is per staff member
    for ws in (*sockets, other):
        await ws.close()
    again = None
    for _ in range(100):  # the server counts a socket closed once its handler is done
        try:
            again = await site.connect("alice")
            break
        except WSServerHandshakeError as exc:
            assert exc.status == 429
            await asyncio.sleep(0.01)
    assert again is not None
    assert (await receive(again))["kind"] == "reset"
    await again.close()


NODE = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"

[sip]
transports = ["udp"]

[media]
process = false

[[agents]]
id = "alice"
password = "pw-alice-1"
queues = ["sales"]

[entry_points]
"1000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"
"""


async def test_a_hotline_node_serves_its_centers_stream(tmp_path: Path) -> None:
    """The route as the node mounts it (routes.build_api), on the center's own feed."""
    path = tmp_path / "site.toml"
    path.write_text(NODE.format(sip=free_port(), data=tmp_path / "data"))
    hotline = Hotline(load_config(path))
    await hotline.start()
    server = TestServer(hotline.http_app(), host="127.0.0.1")
    await server.start_server()
    token = hotline.auth.issue_token("alice")
    try:
        async with ClientSession() as http:
            ws = await http.ws_connect(
                server.make_url("/api/events"), headers={"Authorization": f"Bearer {token}"}
            )
            reset = await receive(ws)
            assert reset["kind"] == "reset"
            assert reset["data"]["stream"] == hotline.center.feed.stream
            assert reset["data"]["state"]["agents"]["alice"]["state"] == "logged_out"
            hotline.center.presence_changed("alice", True)
            event = await receive(ws)
            assert (event["kind"], event["data"]["state"]) == ("agent_state", "idle")
            await hotline.stop()  # the node stops: the stream says so and closes
            closing = await receive(ws)
            while closing["kind"] != "closing":  # the queue's summary may come first
                assert closing["kind"] in ("queue", "heartbeat"), closing
                closing = await receive(ws)
            assert closing["data"]["reason"] == "shutdown"
            await ws.close()
    finally:
        await server.close()
