"""Every route of the running service has an access rule, and every rule holds.

Table-driven over the live route table (``hotline/http/api.py``): a route added without a
declaration fails the first test, and each declared rule is tried with no token, a wrong token,
an agent's, a supervisor's and an admin's, and (for an agent's own routes) another agent's.
Access is checked before the request is read, so an empty body is enough to see the answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hotline.config import parse_config
from hotline.http.api import API_KEY, Access, Api, Endpoint
from hotline.server import Hotline
from tests.interop.harness import free_port

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"

[sip]
transports = ["udp"]
rtp_ports = [43400, 43600]

[media]
process = false

[[agents]]
id = "alice"
password = "pw-alice-1"
queues = ["sales"]

[[agents]]
id = "bob"
password = "pw-bob-1"
queues = ["sales"]

[[agents]]
id = "sam"
password = "pw-sam-1"
queues = ["sales"]
role = "supervisor"

[[agents]]
id = "ada"
password = "pw-ada-1"
role = "admin"

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.sales]
strategy = "longest-idle"
"""


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Hotline, Api]]:
    config = parse_config(CONFIG.format(sip=free_port(), data=tmp_path / "data"), file="t.toml")
    hotline = Hotline(config)
    await hotline.start()
    try:
        app = hotline.http_app()
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield client, hotline, app[API_KEY]
    finally:
        await hotline.stop()


def _url(endpoint: Endpoint, agent: str = "bob") -> str:
    """The endpoint's path with its parameters filled in (``{agent_id}`` = ``agent``)."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        return agent if name == "agent_id" else "1"

    return re.sub(r"\{([^}]+)\}", fill, endpoint.path)


async def test_every_mounted_route_is_declared_with_an_access_rule(
    service: tuple[TestClient, Hotline, Api],
) -> None:
    client, _, api = service
    declared = {(e.method, e.path) for e in api.endpoints}
    mounted = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        mounted.add((route.method, path))
    assert mounted == declared, "routes mounted without a declaration (or declared, not mounted)"
    assert all(isinstance(e.access, Access) for e in api.endpoints)


async def test_every_rule_holds_for_every_role(service: tuple[TestClient, Hotline, Api]) -> None:
    client, hotline, api = service
    tokens = {u: hotline.auth.issue_token(u) for u in ("alice", "sam", "ada")}
    checked = 0
    for e in api.endpoints:
        if e.access in (Access.PUBLIC, Access.OWN_AUTH, Access.METRICS):
            continue
        url = _url(e)

        async def status(token: str | None, url: str = url, e: Endpoint = e) -> int:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            resp = await client.request(e.method, url, headers=headers, json={})
            await resp.read()
            return resp.status

        where = f"{e.method} {e.path}"
        assert await status(None) == 401, f"{where}: no token"
        assert await status("not-a-token-at-all") == 401, f"{where}: a wrong token"
        alice = await status(tokens["alice"])
        if e.access is Access.SELF:
            assert alice == 403, f"{where}: alice reached bob's"
            own = await client.request(
                e.method,
                _url(e, "alice"),
                headers={"Authorization": f"Bearer {tokens['alice']}"},
                json={},
            )
            assert own.status not in (401, 403), f"{where}: alice refused her own"
        elif e.access in (Access.SUPERVISOR, Access.ADMIN):
            assert alice == 403, f"{where}: an agent got through"
        else:
            assert alice not in (401, 403), f"{where}: a signed-in agent was refused"
        sam = await status(tokens["sam"])
        if e.access is Access.ADMIN:
            assert sam == 403, f"{where}: a supervisor got through"
        else:
            assert sam not in (401, 403), f"{where}: a supervisor was refused"
        assert await status(tokens["ada"]) not in (401, 403), f"{where}: the admin was refused"
        checked += 1
    assert checked >= 8


async def test_public_routes_answer_without_a_token(
    service: tuple[TestClient, Hotline, Api],
) -> None:
    client, _, _ = service
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/openapi.json")).status == 200
    page = await client.get("/api/docs")
    assert page.status == 200
    assert "swagger-ui-bundle.js" in await page.text()
    js = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert js.status == 200
    assert (await client.get("/api/docs/static/..%2Fcore.py")).status in (404, 422)
    assert (await client.get("/api/docs/static/swagger-editor.js")).status == 404


async def test_the_openapi_document_is_31_and_describes_every_route(
    service: tuple[TestClient, Hotline, Api],
) -> None:
    client, _, api = service
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ops == {(e.method, e.path) for e in api.endpoints}
    dial = doc["paths"]["/api/dial"]["post"]
    assert dial["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DialRequest"
    }
    assert "401" in dial["responses"] and "403" in dial["responses"]
    assert doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]
