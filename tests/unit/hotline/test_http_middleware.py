"""The API's error shape and access log, through a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field
from structlog.testing import capture_logs

from hotline.http.middleware import (
    USER_AGENT_MAX,
    access_log_middleware,
    api_error,
    error_middleware,
    read_json,
)
from hotline.logs import configure_logging


class Leg(BaseModel):
    uri: str
    dest: str


class DialRequest(BaseModel):
    agent: str
    hold_seconds: float = Field(default=1.0, ge=0, le=3600)
    legs: list[Leg] = []


async def dial(request: web.Request) -> web.Response:
    body = await read_json(request, DialRequest)
    return web.json_response({"agent": body.agent, "hold": body.hold_seconds})


async def raw_json(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


async def missing_case(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text=f"no case {request.match_info['id']}")


async def busy(request: web.Request) -> web.Response:
    raise api_error(409, "agent_busy", "agent 7 is on a call", [{"agent": "7"}])


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("db password is hunter2")


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/healthz")


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[access_log_middleware, error_middleware])
    app.router.add_post("/api/dial", dial)
    app.router.add_post("/api/raw", raw_json)
    app.router.add_get("/api/cases/{id}", missing_case)
    app.router.add_get("/api/busy", busy)
    app.router.add_get("/api/boom", boom)
    app.router.add_get("/api/moved", moved)
    app.router.add_get("/healthz", ok)
    app.router.add_get("/metrics", ok)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    """Assert the one error shape and return its inner object."""
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == ["error"]
    err: dict[str, Any] = body["error"]
    assert err["status"] == status
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    return err


async def test_unknown_route_is_json_404(client: TestClient[Any, Any]) -> None:
    err = await error_of(await client.get("/api/nothing"), 404)
    assert err["code"] == "not_found"
    assert err["message"] == "Not Found"


async def test_wrong_method_is_json_405_with_allow(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/dial")
    err = await error_of(resp, 405)
    assert err["code"] == "method_not_allowed"
    assert resp.headers["Allow"] == "POST"


async def test_handler_http_exception_text_becomes_message(client: TestClient[Any, Any]) -> None:
    err = await error_of(await client.get("/api/cases/12"), 404)
    assert err == {"status": 404, "code": "not_found", "message": "no case 12"}


async def test_api_error_from_handler(client: TestClient[Any, Any]) -> None:
    err = await error_of(await client.get("/api/busy"), 409)
    assert err["code"] == "agent_busy"
    assert err["message"] == "agent 7 is on a call"
    assert err["details"] == [{"agent": "7"}]


async def test_valid_body_reaches_handler(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/api/dial", json={"agent": "7", "hold_seconds": 2})
    assert resp.status == 200
    assert await resp.json() == {"agent": "7", "hold": 2.0}


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"agent": "7"'])
async def test_bad_json_is_400(client: TestClient[Any, Any], body: bytes) -> None:
    resp = await client.post("/api/dial", data=body, headers={"Content-Type": "application/json"})
    err = await error_of(resp, 400)
    assert err["code"] == "bad_json"


async def test_bad_json_read_by_handler_itself_is_400(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/api/raw", data=b"[1,", headers={"Content-Type": "application/json"})
    err = await error_of(resp, 400)
    assert err["code"] == "bad_json"


async def test_validation_error_is_422_one_detail_per_field(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/api/dial",
        json={"hold_seconds": 99999, "legs": [{"uri": "sip:a@127.0.0.1"}], "pin": "1234"},
    )
    err = await error_of(resp, 422)
    assert err["code"] == "validation_failed"
    by_path = {d["path"]: d for d in err["details"]}
    assert set(by_path) == {"agent", "hold_seconds", "legs.0.dest"}
    assert by_path["agent"]["type"] == "missing"
    assert "3600" in by_path["hold_seconds"]["reason"]
    assert all(set(d) == {"path", "reason", "type"} for d in err["details"])
    assert "99999" not in await resp.text()  # inputs are not echoed back


async def test_unexpected_error_is_500_logged_once_with_id(client: TestClient[Any, Any]) -> None:
    with capture_logs() as logs:
        resp = await client.get("/api/boom")
        err = await error_of(resp, 500)
    assert err["code"] == "internal_error"
    assert "hunter2" not in await resp.text()  # internals stay in the log
    errors = [e for e in logs if e["event"] == "http_unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["log_level"] == "error"
    assert errors[0]["exc_info"] is True
    assert errors[0]["error_id"] == err["error_id"]
    assert errors[0]["path"] == "/api/boom"


async def test_500_log_line_carries_traceback_and_id(client: TestClient[Any, Any]) -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        resp = await client.get("/api/boom")
        err = await error_of(resp, 500)
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    (line,) = [x for x in lines if x["event"] == "http_unhandled_error"]
    assert line["error_id"] == err["error_id"]
    assert "Traceback" in line["exception"]
    assert "RuntimeError: db password is hunter2" in line["exception"]


async def test_redirects_pass_through(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/moved", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/healthz"


async def test_access_log_one_info_line_per_request(client: TestClient[Any, Any]) -> None:
    ua = "softphone/" + "x" * 500
    with capture_logs() as logs:
        await client.post("/api/dial", json={"agent": "7"}, headers={"User-Agent": ua})
        await client.get("/api/cases/3")
        await client.get("/api/boom")
    lines = [e for e in logs if e["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in lines] == [
        ("POST", "/api/dial", 200),
        ("GET", "/api/cases/3", 404),
        ("GET", "/api/boom", 500),
    ]
    assert all(e["log_level"] == "info" for e in lines)
    first = lines[0]
    assert first["remote"] == "127.0.0.1"
    assert first["user_agent"] == ua[:USER_AGENT_MAX]
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0


async def test_probes_and_scrapes_log_at_debug(client: TestClient[Any, Any]) -> None:
    with capture_logs() as logs:
        await client.get("/healthz")
        await client.get("/metrics")
    lines = [e for e in logs if e["event"] == "http_request"]
    assert [(e["path"], e["log_level"]) for e in lines] == [
        ("/healthz", "debug"),
        ("/metrics", "debug"),
    ]
