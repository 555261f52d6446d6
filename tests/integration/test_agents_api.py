"""The agents' API over HTTP, on a real ContactCenter and engine (scripted sessions): who may
call what (table-driven over the routes), state changes and their refusals, the call in hand,
tasks and their audio, and the document's pause reasons."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.auth import StaffAuth
from hotline.http.agents import add_agent_routes
from hotline.http.api import Access, Api, Endpoint
from hotline.http.middleware import error_middleware
from tests.unit.center.desk_harness import DeskHarness, settle, until

USERS = ("alice", "bob", "sam")


@dataclass
class Site:
    h: DeskHarness
    api: Api
    clients: dict[str, TestClient]
    anonymous: TestClient

    async def call(
        self, user: str | None, method: str, url: str, body: Any = None
    ) -> tuple[int, Any]:
        client = self.anonymous if user is None else self.clients[user]
        resp = await client.request(method, url, json=body)
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.read()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    h = DeskHarness(tmp_path)
    await h.start("alice", "bob")
    auth = StaffAuth(h.config)
    api = Api(authenticator=auth)
    add_agent_routes(api, h.center)
    app = web.Application(middlewares=[error_middleware])
    api.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    clients: dict[str, TestClient] = {}
    anonymous = TestClient(server)
    try:
        for user in USERS:
            token = auth.issue_token(user)
            clients[user] = TestClient(server, headers={"Authorization": f"Bearer {token}"})
            await clients[user].start_server()
        await anonymous.start_server()
        yield Site(h, api, clients, anonymous)
    finally:
        for c in [*clients.values(), anonymous]:
            await c.close()
        await server.close()
        await h.close()


def url_for(e: Endpoint, agent: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: agent if m.group(1) == "agent_id" else "x1", e.path)


async def test_an_agent_reaches_only_their_own_routes_and_a_supervisor_everyones(
    site: Site,
) -> None:
    endpoints = site.api.endpoints
    assert len(endpoints) == 20
    for e in endpoints:
        where = f"{e.method} {e.path}"
        if "{agent_id}" not in e.path and e.path != "/api/agents":  # the directory: everyone's
            assert e.access is Access.SIGNED_IN, where
            assert (await site.call(None, e.method, e.path))[0] == 401, where
            for user in USERS:
                assert (await site.call(user, e.method, e.path))[0] == 200, (user, where)
            continue
        if e.path == "/api/agents" or e.path.endswith("/skills"):
            assert e.access is Access.SUPERVISOR, where
        else:
            assert e.access is Access.SELF, where
        status, _ = await site.call(None, e.method, url_for(e, "bob"))
        assert status == 401, where
        alice_on_bob, body = await site.call("alice", e.method, url_for(e, "bob"), {})
        assert alice_on_bob == 403, where
        assert body["error"]["code"] == "forbidden"
        sam_on_bob, _ = await site.call("sam", e.method, url_for(e, "bob"), {})
        assert sam_on_bob not in (401, 403), where
        alice_own, _ = await site.call("alice", e.method, url_for(e, "alice"), {})
        if e.access is Access.SUPERVISOR:
            assert alice_own == 403, where
        else:
            assert alice_own not in (401, 403), where


async def test_state_changes_and_what_is_refused(site: Site) -> None:
    status, me = await site.call("alice", "GET", "/api/agents/alice")
    assert status == 200
    assert (me["status"], me["state"], me["phone"], me["call"]) == ("available", "idle", True, None)
    assert me["since"].endswith("Z") or me["since"].endswith("+00:00")
    status, err = await site.call("alice", "POST", "/api/agents/alice/pause", {"reason": "nap"})
    assert status == 422 and err["error"]["code"] == "validation_failed"
    assert err["error"]["details"][0]["path"] == "reason"
    status, me = await site.call("alice", "POST", "/api/agents/alice/pause", {"reason": "lunch"})
    assert status == 200 and (me["status"], me["reason"]) == ("paused", "lunch")
    status, err = await site.call("alice", "POST", "/api/agents/alice/wrap-up/end")
    assert status == 409 and err["error"]["code"] == "not_in_wrap_up"
    status, err = await site.call(
        "alice", "POST", "/api/agents/alice/wrap-up/extend", {"seconds": 0}
    )
    assert status == 422
    status, me = await site.call("sam", "POST", "/api/agents/alice/ready")  # for her
    assert status == 200 and me["state"] == "idle"
    status, everyone = await site.call("sam", "GET", "/api/agents")
    assert status == 200 and [a["agent_id"] for a in everyone] == ["alice", "bob", "carol", "sam"]
    status, err = await site.call("sam", "GET", "/api/agents/mallory")
    assert status == 404 and err["error"]["code"] == "no_such_agent"
    status, me = await site.call("alice", "POST", "/api/agents/alice/logout")
    assert status == 200 and (me["status"], me["signed_off"]) == ("logged_out", True)
    site.h.telephony.phones["alice"].reachable = False
    status, err = await site.call("alice", "POST", "/api/agents/alice/ready")
    assert status == 409 and err["error"]["code"] == "no_phone"
    status, skills = await site.call("sam", "PUT", "/api/agents/bob/skills", {"skills": {"fr": 7}})
    assert status == 200 and skills["skills"] == {"fr": 7}
    status, _ = await site.call("sam", "PUT", "/api/agents/bob/skills", {"skills": {"fr": 11}})
    assert status == 422


async def test_wrap_up_over_http(site: Site) -> None:
    h = site.h
    caller = h.caller()
    await h.call(caller)
    await until(lambda: caller.bridged_to is not None, "alice answers")
    status, me = await site.call("alice", "GET", "/api/agents/alice")
    assert me["state"] == "on_call" and me["call"]["caller"] == caller.caller
    caller.remote_hangup()
    await until(lambda: h.center.agents.view("alice").state == "wrap_up", "wrap-up")
    status, me = await site.call(
        "alice", "POST", "/api/agents/alice/wrap-up/extend", {"seconds": 90}
    )
    assert status == 200 and me["wrap_up_remaining"] == 120.0
    status, me = await site.call("alice", "POST", "/api/agents/alice/wrap-up/end")
    assert status == 200 and me["state"] == "idle" and me["wrap_up_ends"] is None


async def test_the_call_in_hand_over_http(site: Site) -> None:
    h = site.h
    caller = h.caller()
    await h.call(caller)
    await until(lambda: "alice" in h.center.agents._calls, "alice answers")
    status, err = await site.call("bob", "GET", "/api/agents/bob/call")
    assert status == 404 and err["error"]["code"] == "no_call"
    status, call = await site.call("alice", "GET", "/api/agents/alice/call")
    assert status == 200
    assert (call["call_id"], call["queue"], call["held"]) == (caller.id, "sales", False)
    assert call["case_id"] == int(caller.vars["case_id"]) and call["ivr"]["case_id"]
    status, call = await site.call("alice", "POST", "/api/agents/alice/call/hold")
    assert status == 200 and call["held"] and caller.held
    status, call = await site.call("alice", "POST", "/api/agents/alice/call/resume")
    assert status == 200 and not call["held"]
    status, call = await site.call("alice", "POST", "/api/agents/alice/call/mute", {"muted": True})
    assert status == 200 and call["muted"]
    status, sent = await site.call(
        "alice", "POST", "/api/agents/alice/call/keys", {"digits": "42#"}
    )
    assert status == 200 and sent == {"keys": 3, "to": "caller"}
    status, _ = await site.call("alice", "POST", "/api/agents/alice/call/keys", {"digits": "x"})
    assert status == 422
    status, err = await site.call("alice", "POST", "/api/agents/alice/call/transfer/complete")
    assert status == 409 and err["error"]["code"] == "no_transfer"
    status, started = await site.call(
        "alice", "POST", "/api/agents/alice/call/transfer", {"to": "bob", "mode": "blind"}
    )
    assert status == 202 and started == {
        "mode": "blind",
        "to": "bob",
        "target": "agent",
        "state": "transferring",
    }
    await until(lambda: "bob" in h.telephony.rung, "bob rung")
    await until(lambda: caller.bridged_to is not None and caller.bridged_to.dialled == "bob", "")
    status, _ = await site.call("alice", "GET", "/api/agents/alice/call")
    assert status == 404
    status, err = await site.call("alice", "POST", "/api/agents/alice/call/hangup")
    assert status == 409 and err["error"]["code"] == "no_call"


async def test_tasks_and_their_audio_for_their_agent_and_supervisors(site: Site) -> None:
    h = site.h
    h.center.agents.pause("alice", "break", by="alice")
    h.center.agents.pause("bob", "break", by="bob")
    caller = h.caller(message_seconds=1.5)
    await h.call(caller)
    caller.press("1")
    await until(lambda: any(i.kind == "voicemail" for i in h.center.waiting.values()), "queued")
    await settle()
    status, tasks = await site.call("alice", "GET", "/api/agents/alice/tasks")
    assert status == 200
    (task,) = tasks
    assert (task["kind"], task["state"], task["duration"], task["queue"]) == (
        "voicemail",
        "queued",
        1.5,
        "sales",
    )
    assert task["audio_url"] == f"/api/agents/alice/tasks/{task['id']}/audio"
    assert task["recorded_at"] is not None and task["arrived_at"]
    resp = await site.clients["alice"].get(task["audio_url"])
    assert resp.status == 200 and resp.content_type == "audio/wav"
    assert (await resp.read())[:4] == b"RIFF"
    resp = await site.clients["bob"].get(task["audio_url"])
    assert resp.status == 403  # another agent's work (his own list has it too, at its path)
    resp = await site.clients["sam"].get(task["audio_url"])
    assert resp.status == 200
    status, err = await site.call("alice", "GET", "/api/agents/alice/tasks/vm-nope/audio")
    assert status == 404 and err["error"]["code"] == "no_such_task"


def test_the_document_lists_the_configured_pause_reasons(tmp_path: Path) -> None:
    h = DeskHarness(tmp_path)
    api = Api()
    add_agent_routes(api, h.center)
    doc = api.openapi()
    body = doc["paths"]["/api/agents/{agent_id}/pause"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert doc["components"]["schemas"][ref]["properties"]["reason"]["enum"] == [
        "break",
        "lunch",
        "training",
    ]
    transfer = doc["paths"]["/api/agents/{agent_id}/call/transfer"]["post"]
    assert "202" in transfer["responses"] and "409" in transfer["responses"]
    h.center.store.close()
