"""The contact center's HTTP surface on a running center: case trails, the live ACD state, and
IVR flows changed without a restart (a bad edit is refused with file, line and node)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.auth import StaffAuth
from hotline.center import ContactCenter
from hotline.config import load_config
from hotline.http.api import Api
from hotline.http.cases import add_center_routes
from hotline.http.middleware import error_middleware
from media_gateway.session import CallSession

CONFIG = """
[server]
data_dir = "{data}"

[media]
process = false

[[agents]]
id = "alice"
password = "pw-alice"
queues = ["sales"]
role = "admin"

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.sales]
strategy = "longest-idle"

[ivr]
entry = "main"

[ivr.flows.main]
start = "{start}"

[ivr.flows.main.nodes.hello]
type = "play"
prompt = "welcome"
next = "sales"

[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
"""


class NoPhones:
    """Telephony with no phone registered (the routes never ring anyone)."""

    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        raise LookupError(f"agent {target!r} has no registered phone")

    def agent_reachable(self, agent_id: str) -> bool:
        return False


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, ContactCenter, Path]]:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data", start="hello"))
    config = load_config(path)
    center = ContactCenter(config, NoPhones())
    await center.start()
    auth = StaffAuth(config)
    api = Api(authenticator=auth)
    add_center_routes(api, center)
    app = web.Application(middlewares=[error_middleware])
    api.mount(app)
    token = auth.issue_token("alice")
    async with TestClient(
        TestServer(app, host="127.0.0.1"), headers={"Authorization": f"Bearer {token}"}
    ) as c:
        yield c, center, path
    await center.close()


async def test_flows_are_reloaded_without_a_restart_and_bad_edits_are_refused(
    client: tuple[TestClient, ContactCenter, Path],
) -> None:
    c, center, path = client
    assert center.ivr.flows["main"].start == "hello"
    path.write_text(path.read_text().replace('start = "hello"', 'start = "sales"'))
    resp = await c.post("/api/ivr/reload")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["version"] == 1
    assert center.ivr.flows["main"].start == "sales"
    # A broken edit: refused, with the file, the line and the node; the running flows stay.
    text = path.read_text().replace('next = "sales"', 'next = "nowhere"')
    path.write_text(text)
    resp = await c.post("/api/ivr/reload")
    assert resp.status == 422
    error = (await resp.json())["error"]["message"]
    header = text.splitlines().index("[ivr.flows.main.nodes.hello]") + 1
    line = int(error.split("site.toml:", 1)[1].split(":", 1)[0])
    assert header <= line <= header + 3, error  # the node's table (or the key) in the file
    assert "ivr.flows.main.nodes.hello.next" in error, error
    assert center.ivr.flows["main"].start == "sales"


async def test_the_live_acd_state_and_case_trails_are_served(
    client: tuple[TestClient, ContactCenter, Path],
) -> None:
    c, center, _ = client
    acd = await (await c.get("/api/acd")).json()
    assert acd["queues"]["sales"]["waiting"] == 0
    assert acd["agents"]["alice"]["status"] == "logged_out"
    from acd.cases import NewCase

    case = await center.writer.run(
        lambda s: s.open_case(NewCase(caller_number="+8613800000000", at=1.0, dialled="1000"))
    )
    center.cases.entered(case.id, dialled="1000", channel="sip", entry="hotline")
    body = await (await c.get(f"/api/cases/{case.id}")).json()
    assert [e["kind"] for e in body["events"]] == ["opened", "entered"]
    listed = await (await c.get("/api/cases", params={"caller": "+8613800000000"})).json()
    assert [x["id"] for x in listed["items"]] == [case.id]
    missing = await c.get("/api/cases/999999")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "no_such_case"
    assert (await c.get("/api/cases/abc")).status == 422
