"""schemathesis against the running service: every JSON operation of the OpenAPI document, fed
generated (valid and invalid) requests, never answers 5xx and never breaks its own schema.

The service is a real ``hotline serve`` (the demo configuration) on 127.0.0.1; the requests
carry the operator token (admin rights), so every route is reachable. Left out: the WebSockets
and pages (not JSON), and ``POST /api/dial`` (it would send SIP to whatever address the
generator invents: traffic must stay on loopback; its validation has its own tests).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.interop.harness import OPERATOR_TOKEN, Server, start_server

SKIPPED = {
    ("POST", "/api/dial"),
}
EXAMPLES = 10
"""Generated requests per operation (the whole run stays under a minute)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = start_server(tmp_path_factory.mktemp("schemathesis"))
    try:
        yield srv
    finally:
        srv.stop()


def _document(server: Server) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.http_port}/api/openapi.json"
    with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def _json_operations(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without the raw routes (pages, sockets, files) and the skipped ones."""
    paths: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        kept = {}
        for method, op in item.items():
            if (method.upper(), path) in SKIPPED:
                continue
            ok = next(iter(op["responses"].values()))
            if "application/json" not in ok.get("content", {}):
                continue
            kept[method] = op
        if kept:
            paths[path] = kept
    return {**doc, "paths": paths}


def test_no_operation_answers_5xx_or_breaks_its_schema(server: Server, tmp_path: Path) -> None:
    doc = _json_operations(_document(server))
    base = f"http://127.0.0.1:{server.http_port}"
    schema = schemathesis.openapi.from_dict(doc)
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    checks = [response_schema_conformance, status_code_conformance, content_type_conformance]
    tried: list[str] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        tried.append(operation.label)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, headers=headers, timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            )
            case.validate_response(response, checks=checks)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert len(tried) >= 5, tried
    assert not failures, "\n\n".join(failures)
    assert server.proc.poll() is None, "the service died"
