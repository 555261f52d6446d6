"""The HTTP API of a whole running node (``hotline.server.Hotline`` on 127.0.0.1): one JSON error
shape with 4xx for bad input, ``/metrics`` readable by Prometheus's own parser with the SIP
traffic counted, and one access-log line per request."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from hotline.config import parse_config
from hotline.server import Hotline
from tests.interop.harness import free_port

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"

[sip]
transports = ["udp"]
rtp_ports = [43000, 43200]

[media]
process = false

[[agents]]
id = "alice"
password = "pw-alice-1"
extension = "1001"
queues = ["sales"]
role = "admin"

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.sales]
strategy = "longest-idle"
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Hotline]]:
    config = parse_config(CONFIG.format(sip=free_port(), data=tmp_path / "data"), file="site.toml")
    hotline = Hotline(config)
    await hotline.start()
    try:
        token = hotline.auth.issue_token("alice")
        async with TestClient(
            TestServer(hotline.http_app(), host="127.0.0.1"),
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            yield client, hotline
    finally:
        await hotline.stop()


def _error(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["status"], int) and error["code"] and error["message"], error
    return dict(error)


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ({}, 422, "exactly one"),
        ({"agent": 5}, 422, "agent"),
        ({"agent": "alice", "hold_seconds": "soon"}, 422, "hold_seconds"),
        ({"agent": "alice", "uri": "sip:x@127.0.0.1"}, 422, "exactly one"),
        ({"uri": "sip:x@127.0.0.1"}, 422, "together"),
        ({"uri": "sip:x@example.com", "dest": "example.com:5060"}, 422, "example.com"),
        ({"agent": "nobody"}, 404, "nobody"),
        ({"number": "+331234", "trunk": "none"}, 404, "none"),
    ],
)
async def test_bad_dial_requests_get_one_json_error_shape_and_a_4xx(
    node: tuple[TestClient, Hotline], body: dict[str, Any], status: int, mentions: str
) -> None:
    client, _ = node
    with capture_logs() as logs:
        resp = await client.post("/api/dial", json=body)
    assert resp.status == status
    error = _error(await resp.json())
    assert error["status"] == status
    assert mentions in error["message"] or mentions in str(error.get("details")), error
    assert not any(line.get("log_level") == "error" for line in logs), logs  # no traceback


async def test_malformed_json_and_unknown_routes_get_the_same_shape(
    node: tuple[TestClient, Hotline],
) -> None:
    client, _ = node
    resp = await client.post("/api/dial", data=b"{not json", headers={"Content-Type": "x"})
    assert resp.status == 400
    _error(await resp.json())
    resp = await client.get("/api/no-such-route")
    assert resp.status == 404
    _error(await resp.json())
    resp = await client.get("/api/cases/abc")
    assert resp.status == 422  # the path does not fit: validation_failed
    _error(await resp.json())


async def test_a_dial_to_an_agent_without_a_phone_says_so(
    node: tuple[TestClient, Hotline],
) -> None:
    client, _ = node
    resp = await client.post("/api/dial", json={"agent": "alice", "hold_seconds": 0})
    assert resp.status == 200
    assert (await resp.json())["outcome"] == "not_registered"


async def test_metrics_parse_with_prometheus_own_parser_and_count_sip_traffic(
    node: tuple[TestClient, Hotline],
) -> None:
    client, hotline = node
    port = hotline.config.server.sip_port
    register = (
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-metrics-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=m1\r\nTo: <sip:alice@127.0.0.1>\r\n"
        "Call-ID: metrics-test-1\r\nCSeq: 1 REGISTER\r\n"
        "Contact: <sip:alice@127.0.0.1:5999>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)
        sock.sendto(register, ("127.0.0.1", port))
        reply = b""
        for _ in range(100):
            try:
                reply = sock.recv(4096)
                break
            except TimeoutError:
                await asyncio.sleep(0.02)
    assert reply.startswith(b"SIP/2.0 401"), reply[:60]

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}

    def value(name: str, family: str, **labels: str) -> float:
        samples = [
            s
            for s in families[family].samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert samples, (name, labels, families[family].samples)
        return float(samples[0].value)

    assert families["hotline_sip_requests"].type == "counter"
    assert value("hotline_sip_requests_total", "hotline_sip_requests", method="REGISTER") == 1
    assert value("hotline_registrations_total", "hotline_registrations", outcome="challenged") == 1
    assert families["hotline_call_setup_seconds"].type == "histogram"
    assert value("hotline_calls_active", "hotline_calls_active") == 0
    assert value("hotline_queue_waiting_calls", "hotline_queue_waiting_calls", queue="sales") == 0
    assert (
        value("hotline_queue_agents", "hotline_queue_agents", queue="sales", state="logged_out")
        == 1
    )
    assert "process_cpu_seconds" in families


async def test_every_request_leaves_one_access_log_line(
    node: tuple[TestClient, Hotline],
) -> None:
    client, _ = node
    with capture_logs() as logs:
        await client.get("/api/calls")
        await client.post("/api/dial", json={})
    lines = [line for line in logs if line["event"] == "http_request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/api/calls", 200),
        ("POST", "/api/dial", 422),
    ]
