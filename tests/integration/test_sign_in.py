"""Signing in to the running service: the session cookie and its CSRF token, tokens for
scripts, identical answers for an unknown user and a wrong password, the lockout, the audit
trail, the metrics token and HTTPS."""

from __future__ import annotations

import datetime as dt
import ssl
import statistics
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline.auth.credentials import make_entry, set_password
from hotline.config import load_config
from hotline.server import Hotline, tls_context
from tests.interop.harness import free_port

CONFIG = """
[server]
sip = "127.0.0.1:{sip}"
data_dir = "{data}"

[http]
{http}

[security]
max_failures = 3
lockout_seconds = 60
source_max_failures = 100

[sip]
transports = ["udp"]
rtp_ports = [43700, 43900]

[media]
process = false

[[agents]]
id = "alice"
queues = ["sales"]

[[agents]]
id = "sam"
password = "sam-plain-1"
role = "supervisor"

[[agents]]
id = "ada"
role = "admin"

[entry_points]
"1000" = {{ kind = "hotline" }}

[acd.queues.sales]
strategy = "longest-idle"

[ivr]
entry = "main"

[ivr.flows.main]
start = "sales"

[ivr.flows.main.nodes.sales]
type = "queue"
queue = "sales"
"""

PASSWORDS = {"alice": "alice-secret-1", "sam": "sam-plain-1", "ada": "ada-secret-1"}
METRICS_TOKEN = "metrics-token-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Service:
    client: TestClient
    hotline: Hotline
    clock: FakeClock
    config_path: Path

    @property
    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    async def sign_in(self, user: str, password: str | None = None) -> aiohttp.ClientResponse:
        resp = await self.client.post(
            "/api/session", json={"user": user, "password": password or PASSWORDS[user]}
        )
        await resp.read()
        return resp

    async def audit(self, **query: str) -> list[dict[str, Any]]:
        token = self.hotline.auth.issue_token("ada")
        resp = await self.client.get(
            "/api/audit", params=query, headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["entries"])


def write_site(tmp: Path, http: str = "") -> Path:
    path = tmp / "site.toml"
    path.write_text(CONFIG.format(sip=free_port(), data=tmp / "data", http=http))
    config = load_config(path)
    for user in ("alice", "ada"):  # what `hotline passwd` writes
        entry = make_entry(
            user,
            PASSWORDS[user],
            realm=config.sip.realm,
            algorithms=tuple(config.sip.auth_algorithms),
        )
        set_password(config.server.staff_path, entry)
    return path


async def start(path: Path) -> tuple[Hotline, FakeClock]:
    hotline = Hotline(load_config(path))
    clock = FakeClock()
    hotline.auth.lock_clock = clock  # the lockout's clock, moved by the tests
    await hotline.start()
    return hotline, clock


@pytest.fixture
async def service(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    path = write_site(tmp_path, getattr(request, "param", ""))
    hotline, clock = await start(path)
    try:
        async with TestClient(TestServer(hotline.http_app(), host="127.0.0.1")) as client:
            yield Service(client, hotline, clock, path)
    finally:
        await hotline.stop()


def set_cookie(resp: aiohttp.ClientResponse) -> str:
    (header,) = resp.headers.getall("Set-Cookie")
    return header


# -- sign-in, cookie, who am I, sign-out ------------------------------------------------------


async def test_sign_in_sets_a_strict_http_only_session_cookie(service: Service) -> None:
    resp = await service.sign_in("alice")
    assert resp.status == 200
    body = await resp.json()
    assert body["user"] == "alice" and body["role"] == "agent" and len(body["csrf_token"]) >= 32
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert 11.9 * 3600 < (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 12 * 3600
    cookie = set_cookie(resp)
    assert cookie.startswith("hotline_session=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "secure" not in attributes  # plain HTTP on loopback: a Secure cookie would be lost
    me = await service.client.get("/api/session")
    assert me.status == 200
    assert await me.json() == {
        "user": "alice",
        "role": "agent",
        "via": "cookie",
        "csrf_token": body["csrf_token"],
    }
    # sign out (a state change: the CSRF token is needed), and the cookie is dead
    out = await service.client.delete(
        "/api/session", headers={"X-CSRF-Token": body["csrf_token"], "Origin": service.origin}
    )
    assert out.status == 204
    assert 'hotline_session=""' in set_cookie(out) or "Max-Age=0" in set_cookie(out)
    assert (await service.client.get("/api/session")).status == 401


async def test_a_plain_configuration_password_still_signs_in(service: Service) -> None:
    resp = await service.sign_in("sam")
    assert resp.status == 200 and (await resp.json())["role"] == "supervisor"


# -- identical answers ------------------------------------------------------------------------


async def test_unknown_user_and_wrong_password_get_the_same_answer_in_the_same_time(
    service: Service,
) -> None:
    async def timed(user: str) -> tuple[int, Any, float]:
        service.clock.now += 10_000  # past the failure window: no slow-down in the figures
        start = time.perf_counter()
        resp = await service.sign_in(user, "not-the-password")
        took = time.perf_counter() - start
        return resp.status, await resp.json(), took

    wrong, unknown = [], []
    for _ in range(5):  # interleaved, so a machine busy for a while weighs on both
        wrong.append(await timed("alice"))
        unknown.append(await timed("nobody-at-all"))
    answers = {(s, str(b)) for s, b, _ in wrong + unknown}
    assert answers == {
        (
            401,
            str(
                {
                    "error": {
                        "status": 401,
                        "code": "sign_in_failed",
                        "message": "wrong user name or password",
                    }
                }
            ),
        )
    }
    w = statistics.median(t for *_, t in wrong)
    u = statistics.median(t for *_, t in unknown)
    # both did one argon2 verification (~0.1 s here): the same time within the noise
    assert 0.5 < u / w < 2.0, (w, u)


# -- lockout ----------------------------------------------------------------------------------


async def test_locked_after_n_failures_right_password_refused_then_released(
    service: Service,
) -> None:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        assert (await service.sign_in("alice", "guess")).status == 401
        times.append(time.perf_counter() - start)
    assert times[2] >= 0.25  # slowed down before the lock (by the third failure's 0.25 s)
    locked = await service.sign_in("alice")  # the right password
    assert locked.status == 423
    assert int(locked.headers["Retry-After"]) == 60
    assert (await locked.json())["error"]["code"] == "locked"
    # an unknown name: the same answers, then the same lock
    service.clock.now += 1000
    statuses = [(await service.sign_in("mallory", "guess")).status for _ in range(4)]
    assert statuses == [401, 401, 401, 423]
    # the lock ends after [security] lockout_seconds
    service.clock.now += 59
    assert (await service.sign_in("mallory", "x")).status == 423
    service.clock.now += 1
    assert (await service.sign_in("alice")).status == 200
    # one log line and one counter per lock, not per attempt
    body, _ = service.hotline.metrics.render()
    text = body.decode()
    assert 'hotline_auth_lockouts_total{channel="http",scope="account"} 2.0' in text


# -- CSRF -------------------------------------------------------------------------------------


async def test_a_cookie_session_state_change_needs_the_csrf_token_and_the_same_origin(
    service: Service,
) -> None:
    csrf = (await (await service.sign_in("ada")).json())["csrf_token"]
    reload = "/api/ivr/reload"
    missing = await service.client.post(reload, headers={"Origin": service.origin})
    assert missing.status == 403
    assert "X-CSRF-Token" in (await missing.json())["error"]["message"]
    wrong = await service.client.post(
        reload, headers={"Origin": service.origin, "X-CSRF-Token": csrf[:-1] + "!"}
    )
    assert wrong.status == 403
    foreign = await service.client.post(
        reload, headers={"Origin": "https://evil.example", "X-CSRF-Token": csrf}
    )
    assert foreign.status == 403
    assert "cross-origin" in (await foreign.json())["error"]["message"]
    ok = await service.client.post(reload, headers={"Origin": service.origin, "X-CSRF-Token": csrf})
    assert ok.status == 200, await ok.text()
    # reads need no token
    assert (await service.client.get("/api/session")).status == 200


async def test_a_bearer_token_needs_no_csrf_and_survives_a_restart(
    service: Service, tmp_path: Path
) -> None:
    resp = await service.client.post(
        "/api/tokens", json={"user": "ada", "password": PASSWORDS["ada"], "label": "deploy"}
    )
    assert resp.status == 201
    info = await resp.json()
    assert (info["user"], info["role"], info["label"]) == ("ada", "admin", "deploy")
    expires = dt.datetime.fromisoformat(info["expires_at"])
    assert (expires - dt.datetime.now(dt.UTC)).days >= 29
    token = info["token"]
    stored = (tmp_path / "data" / "api-tokens.json").read_text()
    assert token not in stored and "ada" in stored  # the hash only
    plain = aiohttp.ClientSession()  # no cookie jar shared with the signed-in client
    async with plain:
        url = service.client.make_url("/api/ivr/reload")
        async with plain.post(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()
    # a new process on the same data directory still knows the token
    again, _ = await start(service.config_path)
    try:
        principal = again.auth.principal_for_token(token)
        assert principal is not None and principal.user == "ada"
    finally:
        await again.stop()
    # revoked: refused at once
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await service.client.delete("/api/tokens/current", headers=bearer)).status == 204
    assert (await service.client.get("/api/session", headers=bearer)).status == 401


async def test_a_token_sign_in_is_locked_like_the_session_one(service: Service) -> None:
    for _ in range(3):
        await service.sign_in("ada", "guess")
    resp = await service.client.post(
        "/api/tokens", json={"user": "ada", "password": PASSWORDS["ada"]}
    )
    assert resp.status == 423


# -- audit ------------------------------------------------------------------------------------


async def test_state_changes_and_sign_ins_are_audited_without_passwords(
    service: Service,
) -> None:
    assert (await service.sign_in("alice", "wrong-one")).status == 401
    for _ in range(2):
        await service.sign_in("alice", "wrong-one")
    assert (await service.sign_in("alice")).status == 423
    service.clock.now += 100
    csrf = (await (await service.sign_in("ada")).json())["csrf_token"]
    ok = await service.client.post(
        "/api/ivr/reload", headers={"Origin": service.origin, "X-CSRF-Token": csrf}
    )
    assert ok.status == 200
    await service.hotline.audit.flush()
    rows = await service.audit()
    kinds = [(r["action"], r["actor"], r["outcome"], r["status"]) for r in reversed(rows)]
    assert kinds == [
        ("sign_in", "alice", "failed", 401),
        ("sign_in", "alice", "failed", 401),
        ("lockout", "alice", "locked", 0),  # set by the third failure, before its answer
        ("sign_in", "alice", "failed", 401),
        ("sign_in", "alice", "locked", 423),
        ("sign_in", "ada", "ok", 200),
        ("reload_ivr", "ada", "ok", 200),
    ]
    reload = rows[0]
    assert reload["role"] == "admin" and reload["via"] == "cookie" and reload["session"]
    assert (reload["method"], reload["path"], reload["source"]) == (
        "POST",
        "/api/ivr/reload",
        "127.0.0.1",
    )
    sign_in = rows[1]
    assert sign_in["data"] == {"body": {"user": "ada", "password": "***"}}
    every = str(rows)
    assert PASSWORDS["alice"] not in every and "wrong-one" not in every
    assert PASSWORDS["ada"] not in every
    # filters and pages
    assert {r["actor"] for r in await service.audit(user="ada")} == {"ada"}
    first = await service.audit(limit="2")
    assert len(first) == 2
    later = (await service.audit(since="2100-01-01T00:00:00Z")) == []
    assert later


async def test_the_audit_trail_pages_backwards(service: Service) -> None:
    for i in range(5):
        await service.sign_in(f"nobody{i}", "x")
    token = service.hotline.auth.issue_token("ada")
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[int] = []
    before = None
    while True:
        params = {"limit": "2", **({"before": str(before)} if before else {})}
        resp = await service.client.get("/api/audit", params=params, headers=headers)
        page = await resp.json()
        seen += [e["seq"] for e in page["entries"]]
        before = page.get("next_before")
        if before is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 5
    agent = service.hotline.auth.issue_token("alice")
    resp = await service.client.get("/api/audit", headers={"Authorization": f"Bearer {agent}"})
    assert resp.status == 403


# -- metrics token ----------------------------------------------------------------------------


@pytest.mark.parametrize("service", [f'metrics_token = "{METRICS_TOKEN}"'], indirect=True)
async def test_metrics_can_have_their_own_token_and_healthz_stays_open(service: Service) -> None:
    assert (await service.client.get("/healthz")).status == 200
    assert (await service.client.get("/metrics")).status == 401
    wrong = {"Authorization": "Bearer not-the-metrics-token"}
    assert (await service.client.get("/metrics", headers=wrong)).status == 401
    right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    resp = await service.client.get("/metrics", headers=right)
    assert resp.status == 200 and "hotline_sip_requests_total" in await resp.text()
    # the metrics token is no staff token
    assert (await service.client.get("/api/session", headers=right)).status == 401


async def test_without_a_metrics_token_metrics_are_open(service: Service) -> None:
    assert (await service.client.get("/metrics")).status == 200


# -- HTTPS ------------------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_over_tls_the_cookie_is_secure(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    path = write_site(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{key}"')
    hotline, _ = await start(path)
    runner = web.AppRunner(hotline.http_app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(hotline.config))
    await site.start()
    try:
        client_tls = ssl.create_default_context(cafile=str(cert))
        client_tls.check_hostname = False
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{port}/api/session"
            body = {"user": "alice", "password": PASSWORDS["alice"]}
            async with session.post(url, json=body, ssl=client_tls) as resp:
                assert resp.status == 200
                cookie = resp.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        await runner.cleanup()
        await hotline.stop()


@pytest.mark.parametrize("service", ["behind_tls_proxy = true"], indirect=True)
async def test_behind_a_tls_proxy_the_cookie_is_secure_and_the_client_is_the_forwarded_one(
    service: Service,
) -> None:
    headers = {"X-Forwarded-For": "198.51.100.4, 203.0.113.9", "X-Forwarded-Proto": "https"}
    for _ in range(3):
        resp = await service.client.post(
            "/api/session", json={"user": "alice", "password": "guess"}, headers=headers
        )
        assert resp.status == 401
    resp = await service.client.post(
        "/api/session", json={"user": "alice", "password": PASSWORDS["alice"]}, headers=headers
    )
    assert resp.status == 423
    resp = await service.client.post(
        "/api/session", json={"user": "sam", "password": PASSWORDS["sam"]}, headers=headers
    )
    assert resp.status == 200
    assert "Secure" in resp.headers["Set-Cookie"]
    await service.hotline.audit.flush()
    rows = await service.audit()
    # the client the proxy saw, not the proxy
    assert {r["source"] for r in rows if r["action"] == "sign_in"} == {"203.0.113.9"}


# -- the browser phone's login ----------------------------------------------------------------


async def test_the_browser_phone_login_is_locked_too(service: Service) -> None:
    """``/ws/agent`` checks the SIP password (its HA1) under the same lockout."""

    async def login(agent: str, password: str) -> dict[str, Any]:
        async with service.client.ws_connect("/ws/agent") as ws:
            await ws.send_json({"type": "login", "agent": agent, "password": password})
            answer: dict[str, Any] = await ws.receive_json(timeout=10)
            return answer

    for _ in range(3):
        assert await login("alice", "guess") == {"type": "login_failed"}
    assert await login("alice", PASSWORDS["alice"]) == {"type": "login_failed"}  # locked
    for _ in range(3):
        assert await login("nobody", "guess") == {"type": "login_failed"}
    assert not service.hotline.registrations.browser_phones
    locks = sorted(
        key for _, key, _ in service.hotline.lockout.locked(service.hotline.ua.loop.time())
    )
    assert locks == ["alice", "nobody"]
