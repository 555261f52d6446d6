"""Live statistics on a real store: the figures come from the engine log as stored, so a restart
on the same SQLite file gives the same figures; days roll over at local midnight; and the
routes' access rules (an agent sees only their own day, never the queues')."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import (
    AgentLoggedIn,
    AgentPaused,
    AgentReady,
    CallAbandoned,
    CallArrived,
    CallEnded,
    Event,
    OfferAnswered,
    Tick,
)
from acd.model import LogRecord
from acd.store.sqlite import SQLiteCaseStore
from acd.store.writer import AsyncCaseWriter
from hotline.auth import StaffAuth
from hotline.center import ContactCenter
from hotline.center.stats import StatsView, day_boundaries, local_midnight, seek_log
from hotline.config import load_config
from hotline.http.api import Api
from hotline.http.middleware import error_middleware
from hotline.http.stats import add_stats_routes
from media_gateway.session import CallSession

DAY = date(2026, 3, 10)
MIDNIGHT = datetime(2026, 3, 10, tzinfo=UTC).timestamp()
ACD = {
    "queues": {"sales": {"wrap_up_seconds": 10, "service_level_seconds": 20}},
    "agents": {"alice": {"queues": ["sales"]}, "bob": {"queues": ["sales"]}},
}


def scripted_log(base: float) -> list[LogRecord]:
    """A morning from ``base``: alice takes two calls and pauses, one caller abandons."""
    engine = AcdEngine(AcdConfig.from_dict(ACD), rng=random.Random(0), now=base)
    log: list[LogRecord] = []

    def h(ev: Event) -> None:
        while (d := engine.next_deadline()) is not None and d <= ev.at:
            engine.handle(Tick(at=d))
            log.extend(engine.drain_log())
        engine.handle(ev)
        log.extend(engine.drain_log())

    t = base
    h(AgentLoggedIn(at=t, agent_id="alice"))
    h(CallArrived(at=t + 10, call_id="c1", queue="sales"))
    h(OfferAnswered(at=t + 15, call_id="c1", agent_id="alice"))  # waited 5
    h(CallArrived(at=t + 20, call_id="c2", queue="sales"))
    h(CallAbandoned(at=t + 50, call_id="c2"))  # waited 30
    h(CallEnded(at=t + 115, call_id="c1"))  # talk 100, wrap-up 10
    h(CallArrived(at=t + 1000, call_id="c3", queue="sales"))  # the next interval
    h(OfferAnswered(at=t + 1030, call_id="c3", agent_id="alice"))  # rang out once; waited 30
    h(CallEnded(at=t + 1090, call_id="c3"))  # talk 60, wrap-up 10
    h(AgentPaused(at=t + 1200, agent_id="alice", reason="training"))
    h(AgentReady(at=t + 1500, agent_id="alice"))
    return log


async def write_log(writer: AsyncCaseWriter, records: list[LogRecord]) -> None:
    for r in records:
        writer.append_log(r.to_dict())
    await writer.flush()


def view_on(path: Path, clock: Callable[[], float]) -> tuple[StatsView, AsyncCaseWriter]:
    store = SQLiteCaseStore(path)
    writer = AsyncCaseWriter(store)
    engine = AcdEngine(AcdConfig.from_dict(ACD), rng=random.Random(0), now=clock())
    return StatsView(writer, engine, clock=clock, tz=UTC), writer


async def close(writer: AsyncCaseWriter) -> None:
    await writer.close()
    writer.store.close()


def figures_of(dumped: dict[str, Any]) -> dict[str, Any]:
    """A response without its reading time."""
    return {k: v for k, v in dumped.items() if k != "at"}


async def test_the_figures_survive_a_restart_on_the_same_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite3"
    now = MIDNIGHT + 8 * 3600 + 1800  # 08:30 UTC
    base = MIDNIGHT + 8 * 3600
    view, writer = view_on(path, lambda: now)
    # yesterday evening's records (an earlier engine run) do not count today
    await write_log(writer, scripted_log(MIDNIGHT - 3600) + scripted_log(base))
    before = await view.intervals(DAY, "sales")
    before_all = await view.intervals(DAY)
    own = await view.agent_today("alice")
    await close(writer)

    view, writer = view_on(path, lambda: now)
    try:
        after = await view.intervals(DAY, "sales")
        assert figures_of(after.model_dump()) == figures_of(before.model_dump())
        assert figures_of((await view.intervals(DAY)).model_dump()) == figures_of(
            before_all.model_dump()
        )
        assert (await view.agent_today("alice")).model_dump() == own.model_dump()
    finally:
        await close(writer)

    assert sum(i.offered for i in after.intervals) == 3
    assert sum(i.staffed_seconds for i in after.intervals[:32]) == 0  # logged out at the restart
    first, second = after.intervals[32], after.intervals[33]  # 08:00 and 08:15
    assert first.start == datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    assert (first.offered, first.answered, first.abandoned) == (2, 1, 1)
    assert first.service_level == pytest.approx(1 / 2)
    assert first.asa_seconds == pytest.approx(5)
    assert first.aht_seconds == pytest.approx(110)
    assert (second.offered, second.answered, second.answered_within_target) == (1, 1, 0)
    assert len(after.intervals) == 35  # up to 08:30, the current one
    assert after.total.offered == 3 and after.total.abandon_rate == pytest.approx(1 / 3)
    assert not after.final
    # alice: ringing 10-15, 1000-1020 (rings out), 1025-1030; talking 100 + 60; wrap-up 20;
    # paused 300
    assert (own.answered, own.offers, own.missed) == (2, 3, 1)
    assert own.talk_seconds == pytest.approx(160)
    assert own.wrap_up_seconds == pytest.approx(20)
    assert own.ringing_seconds == pytest.approx(30)
    assert own.pauses == pytest.approx({"training": 300})
    assert own.staffed_seconds == pytest.approx(1800 - 300)
    assert own.occupancy == pytest.approx((30 + 160 + 20) / 1500)
    assert own.day == DAY and own.day_start == datetime(2026, 3, 10, tzinfo=UTC)


async def test_days_roll_over_at_local_midnight(tmp_path: Path) -> None:
    now = [MIDNIGHT + 23 * 3600 + 1800]  # 23:30
    base = MIDNIGHT + 23 * 3600
    view, writer = view_on(tmp_path / "cases.sqlite3", lambda: now[0])
    try:
        await write_log(writer, scripted_log(base))  # c3 enters at 23:16:40, ends 23:18:10
        today = await view.intervals()
        assert today.day == DAY and today.total.offered == 3
        now[0] = MIDNIGHT + 86400 + 600  # 00:10 the next day
        tomorrow = await view.intervals()
        assert tomorrow.day == DAY + timedelta(days=1)
        assert tomorrow.total.offered == 0
        # alice has been ready since 23:25 (in yesterday's log): staffed since midnight
        assert tomorrow.total.staffed_seconds == pytest.approx(600)
        yesterday = await view.intervals(DAY)
        assert yesterday.final and yesterday.total.offered == 3
        assert yesterday.total.staffed_seconds == pytest.approx(3600 - 300)
        # a day folded from the store alone says the same
        fresh, other = view_on(tmp_path / "cases.sqlite3", lambda: now[0])
        try:
            again = await fresh.intervals(DAY)
            assert figures_of(again.model_dump()) == figures_of(yesterday.model_dump())
        finally:
            await close(other)
        assert (await view.intervals(DAY + timedelta(days=5))).intervals == []
    finally:
        await close(writer)


async def test_seeking_the_log_by_time(tmp_path: Path) -> None:
    store = SQLiteCaseStore(tmp_path / "cases.sqlite3")
    try:
        assert seek_log(store, 100.0) == 0
        store.append_log([{"at": float(t), "kind": "config_changed"} for t in range(0, 1000, 10)])
        seqs = [s for s, _ in store.read_log()]
        assert seek_log(store, -5.0) == 0
        assert seek_log(store, 0.0) == 0
        assert seek_log(store, 5.0) == seqs[0]  # the first record after it is at 10
        assert seek_log(store, 500.0) == seqs[49]
        assert seek_log(store, 995.0) == seqs[-1]  # nothing at or after it
    finally:
        store.close()


def test_day_boundaries_follow_the_local_calendar() -> None:
    paris = pytest.importorskip("zoneinfo").ZoneInfo("Europe/Paris")
    spring = day_boundaries(date(2026, 3, 29), paris)  # 23 hours: 92 intervals
    assert len(spring) - 1 == 92
    assert spring[0] == datetime(2026, 3, 29, tzinfo=paris).timestamp()
    autumn = day_boundaries(date(2026, 10, 25), paris)
    assert len(autumn) - 1 == 100
    assert day_boundaries(DAY, UTC)[1] - day_boundaries(DAY, UTC)[0] == 900
    assert local_midnight(DAY, UTC) == MIDNIGHT


# -- the routes --------------------------------------------------------------------------------

CONFIG = """
[server]
data_dir = "{data}"

[media]
process = false

[[agents]]
id = "alice"
password = "pw-alice"
queues = ["sales"]

[[agents]]
id = "bob"
password = "pw-bob"
queues = ["sales"]

[[agents]]
id = "sam"
password = "pw-sam"
queues = ["sales"]
role = "supervisor"

[entry_points]
"1000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"
service_level_seconds = 30
"""


class NoPhones:
    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        raise LookupError(f"agent {target!r} has no registered phone")

    def agent_reachable(self, agent_id: str) -> bool:
        return False


Clients = dict[str, TestClient]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Clients, ContactCenter, float]]:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data"))
    config = load_config(path)
    today = date.today()
    start = local_midnight(today, None)
    now = start + 8 * 3600 + 1800  # 08:30 local time today
    center = ContactCenter(config, NoPhones(), clock=lambda: now)
    await center.start()
    auth = StaffAuth(config)
    api = Api(authenticator=auth)
    add_stats_routes(api, center)
    app = web.Application(middlewares=[error_middleware])
    api.mount(app)
    clients: Clients = {}
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        for user in ("alice", "sam"):
            token = auth.issue_token(user)
            clients[user] = TestClient(server, headers={"Authorization": f"Bearer {token}"})
            await clients[user].start_server()
        yield clients, center, start
    finally:
        for c in clients.values():
            await c.close()
        await server.close()
        await center.close()


async def test_supervisors_read_queue_figures_now_and_per_interval(
    api: tuple[Clients, ContactCenter, float],
) -> None:
    clients, center, start = api
    for r in scripted_log(start + 8 * 3600):
        center.writer.append_log(r.to_dict())  # the stored log (the center's own engine idles)
    sam = clients["sam"]
    resp = await sam.get("/api/stats/queues")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    (sales,) = body["queues"]
    assert sales["queue"] == "sales" and sales["service_level_seconds"] == 30
    assert sales["waiting"] == 0 and sales["longest_wait_seconds"] == 0
    assert sales["agents"] == {
        "ready": 0,
        "ringing": 0,
        "on_call": 0,
        "wrap_up": 0,
        "paused": 0,
        "logged_out": 3,
    }
    today = sales["today"]
    assert (today["offered"], today["answered"], today["abandoned"]) == (3, 2, 1)
    assert today["service_level"] == pytest.approx(1 / 3)  # c3 waited 30 against its 20 s
    assert today["aht_seconds"] == pytest.approx((110 + 70) / 2)
    assert datetime.fromisoformat(body["day_start"]).timestamp() == start
    assert datetime.fromisoformat(body["at"]).utcoffset() == timedelta(0)
    assert body["total"]["offered"] == 3

    day = (await (await sam.get("/api/stats/queues/sales/intervals")).json())["intervals"]
    assert [i["offered"] for i in day[32:34]] == [2, 1]
    assert datetime.fromisoformat(day[32]["start"]).timestamp() == start + 8 * 3600
    combined = await sam.get("/api/stats/intervals", params={"date": date.today().isoformat()})
    assert (await combined.json())["total"]["offered"] == 3
    missing = await sam.get("/api/stats/queues/nope/intervals")
    assert missing.status == 404
    assert (await sam.get("/api/stats/intervals", params={"date": "tomorrow"})).status == 422
    assert (await sam.get("/api/stats/intervals", params={"date": "0001-01-01"})).status == 422
    assert (await sam.get("/api/agents/alice/today")).status == 200
    assert (await sam.get("/api/agents/nobody/today")).status == 404


async def test_an_agent_reads_only_their_own_day(
    api: tuple[Clients, ContactCenter, float],
) -> None:
    clients, center, start = api
    for r in scripted_log(start + 8 * 3600):
        center.writer.append_log(r.to_dict())
    alice = clients["alice"]
    for url in (
        "/api/stats/queues",
        "/api/stats/queues/sales/intervals",
        "/api/stats/intervals",
        "/api/agents/bob/today",
    ):
        resp = await alice.get(url)
        assert resp.status == 403, url
        assert (await resp.json())["error"]["code"] == "forbidden"
    own = await alice.get("/api/agents/alice/today")
    assert own.status == 200
    body = await own.json()
    assert body["agent_id"] == "alice" and body["answered"] == 2
    assert body["pauses"] == {"training": pytest.approx(300)}
    assert body["state"] == "logged_out"  # the live engine's view: no phone registered
    assert (await clients["sam"].get("/api/stats/queues")).status == 200
