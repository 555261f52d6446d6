"""Routing for supervisors through the API, on a running contact center: validate (mistakes
with their key paths), what-if (the figures ``hotline sim run`` gives on the same seeds),
apply (the engine routes by the new version at once), roll back, keep the applied routing
across a restart (unless the file's [acd] changed: then the file wins), explain why a waiting
call is or is not offered to an agent. Agents may do none of it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acd.config import AcdConfig
from acd.events import ConfigChanged
from hotline.auth import StaffAuth
from hotline.center import ContactCenter
from hotline.center.routing import VERSIONS_FILE, acd_table, merge_patch
from hotline.config import load_config
from hotline.http.api import Api
from hotline.http.middleware import error_middleware
from hotline.http.routing import add_routing_routes
from media_gateway.session import CallSession
from sim.cli import main as sim_cli
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
skills = {{ en = 5 }}

[[agents]]
id = "bob"
password = "pw-bob-1"
queues = ["sales"]
skills = {{ en = 8 }}

[[agents]]
id = "carol"
password = "pw-carol-1"
queues = ["sales"]
skills = {{ en = 1 }}

[entry_points]
"2000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"
skills = {{ en = 3 }}
ring_timeout = {ring_timeout}
"""

WORKLOAD = """
[simulation]
duration_hours = 1
replications = 2
seed = 1

[[arrivals]]
queue = "sales"
rate_per_hour = 40
handle_time = { distribution = "exponential", mean_seconds = 150 }
patience = { distribution = "exponential", mean_seconds = 100 }
"""


class Site:
    """A contact center on scripted phones, its routing routes, a supervisor's and an agent's
    tokens."""

    def __init__(
        self,
        client: TestClient,
        center: ContactCenter,
        auth: StaffAuth,
        telephony: ScriptedTelephony,
        clock: Clock,
    ) -> None:
        self.client = client
        self.center = center
        self.telephony = telephony
        self.clock = clock
        self.tasks: list[asyncio.Task[None]] = []
        self.sam = {"Authorization": f"Bearer {auth.issue_token('sam')}"}
        self.alice = {"Authorization": f"Bearer {auth.issue_token('alice')}"}

    async def get(self, url: str, **params: str) -> tuple[int, Any]:
        resp = await self.client.get(url, headers=self.sam, params=params)
        return resp.status, await resp.json()

    async def post(self, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        resp = await self.client.post(url, headers=headers or self.sam, json=body)
        return resp.status, await resp.json()

    async def call(self) -> tuple[FakeSession, asyncio.Task[None]]:
        caller = FakeSession(self.telephony.timeline)
        task = asyncio.get_running_loop().create_task(
            self.center.handle_call(cast(CallSession, caller), "queue", "sales")
        )
        self.tasks.append(task)
        await until(lambda: caller.id in self.center.waiting, "the caller queued")
        await settle()
        return caller, task


def write_site(tmp_path: Path, *, ring_timeout: int = 20) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(data=tmp_path / "data", ring_timeout=ring_timeout))
    return path


@asynccontextmanager
async def site(path: Path, **phones: str) -> AsyncIterator[Site]:
    """The center on ``path`` with a phone for each agent in ``phones`` (its script)."""
    config = load_config(path)
    telephony = ScriptedTelephony([])
    for agent, script in phones.items():
        telephony.phone(agent, *([script] if script else []))
    clock = Clock()
    center = ContactCenter(config, telephony, clock=clock)
    auth = StaffAuth(config)
    api = Api(authenticator=auth)
    add_routing_routes(api, center.routing)
    app = web.Application(middlewares=[error_middleware])
    api.mount(app)
    await center.start()
    s: Site | None = None
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            s = Site(client, center, auth, telephony, clock)
            yield s
    finally:
        if s is not None:
            for task in s.tasks:
                task.cancel()
            await asyncio.gather(*s.tasks, return_exceptions=True)
        await center.close()


def paths(report: dict[str, Any]) -> set[str]:
    return {i["path"] for i in report["issues"]}


async def test_a_proposal_is_checked_with_key_paths_and_lines(tmp_path: Path) -> None:
    async with site(write_site(tmp_path)) as s:
        status, report = await s.post(
            "/api/routing/validate",
            {"proposed": {"changes": {"queues": {"sales": {"max_wait": -5, "ring_timeout": 0}}}}},
        )
        assert status == 200 and report["valid"] is False
        assert paths(report) == {"acd.queues.sales.max_wait", "acd.queues.sales.ring_timeout"}
        assert "expected seconds > 0" in report["issues"][0]["reason"]
        # cross references, and what only the service knows
        _, report = await s.post(
            "/api/routing/validate",
            {
                "proposed": {
                    "changes": {
                        "queues": {"sales": {"overflow": "queue:nowhere", "strategy": "nope"}},
                        "agents": {"alice": None},
                    }
                }
            },
        )
        assert paths(report) == {
            "acd.queues.sales.overflow",
            "acd.queues.sales.strategy",
            "acd.agents.alice",  # a staff member keeps a routing entry
        }
        _, report = await s.post(
            "/api/routing/validate",
            {"proposed": {"changes": {"queues": {"sales": None}}}},
        )
        assert paths(report) == {
            "acd.queues.sales",  # an entry point sends calls there
            "acd.agents.alice.queues.sales",
            "acd.agents.bob.queues.sales",
            "acd.agents.carol.queues.sales",
        }
        assert "entry point 2000" in str(report["issues"])
        _, report = await s.post(
            "/api/routing/validate",
            {"proposed": {"changes": {"queues": {"sales": {"strategy": "ring-progressively",
                                                           "strategy_params": {"bogus": 1}}}}}},
        )  # fmt: skip
        assert paths(report) == {"acd.queues.sales.strategy_params"}
        # TOML text: the line of each mistake
        text = '[acd.queues.sales]\nstrategy = "weighted"\nweights = { skill = 2, bogus = 1 }\n'
        _, report = await s.post("/api/routing/validate", {"proposed": {"toml": text}})
        assert [(i["path"], i["line"]) for i in report["issues"]] == [
            ("acd.queues.sales.weights.bogus", 3)
        ]
        # a valid one says what it changes
        _, report = await s.post(
            "/api/routing/validate",
            {"proposed": {"changes": {"queues": {"sales": {"strategy": "weighted"}}}}},
        )
        assert report["valid"] is True and report["issues"] == []
        assert report["changes"] == [
            {"path": "acd.queues.sales.strategy", "current": "longest-idle", "proposed": "weighted"}
        ]
        assert report["config"]["queues"]["sales"]["strategy"] == "weighted"
        # applying a proposal with mistakes: 422, the same key paths
        status, body = await s.post(
            "/api/routing/apply",
            {"proposed": {"changes": {"queues": {"sales": {"max_wait": -5}}}}},
        )
        assert status == 422 and body["error"]["code"] == "invalid_routing"
        assert [d["path"] for d in body["error"]["details"]] == ["acd.queues.sales.max_wait"]
        status, body = await s.post("/api/routing/validate", {"proposed": {}})
        assert status == 422  # none of config, changes, toml


async def test_apply_routes_live_and_rollback_restores(tmp_path: Path) -> None:
    async with site(write_site(tmp_path), alice="ring", bob="ring", carol="") as s:
        caller, _ = await s.call()
        assert len(s.telephony.rung) == 1  # longest-idle rings one agent (carol lacks en 3)
        status, state = await s.get("/api/routing")
        assert status == 200
        assert (state["version"], state["source"], state["engine_version"]) == (1, "file", 1)
        assert state["config"]["queues"]["sales"]["strategy"] == "longest-idle"
        assert state["config"]["agents"]["bob"]["skills"] == {"en": 8}
        assert "ring-all" in state["strategies"]

        status, v2 = await s.post(
            "/api/routing/apply",
            {
                "proposed": {"changes": {"queues": {"sales": {"strategy": "ring-all"}}}},
                "comment": "ring everyone for the rush",
                "expected_version": 1,
            },
        )
        assert status == 200, v2
        assert (v2["version"], v2["user"], v2["source"], v2["current"]) == (2, "sam", "api", True)
        # live: the waiting call now rings every qualified agent
        await until(lambda: set(s.telephony.rung) == {"alice", "bob"}, "both agents rung")
        _, state = await s.get("/api/routing")
        assert state["version"] == 2 and state["engine_version"] == 2
        assert state["config"]["queues"]["sales"]["strategy"] == "ring-all"
        assert s.center.engine.config.queues["sales"].strategy == "ring-all"

        status, body = await s.post(
            "/api/routing/apply",
            {"proposed": {"changes": {"queues": {"sales": {"ring_timeout": 30}}}},
             "expected_version": 1},
        )  # fmt: skip
        assert (status, body["error"]["code"]) == (409, "version_changed")
        status, body = await s.post(
            "/api/routing/apply",
            {"proposed": {"changes": {"queues": {"sales": {"strategy": "ring-all"}}}}},
        )
        assert (status, body["error"]["code"]) == (409, "unchanged")

        status, v3 = await s.post("/api/routing/rollback", {})
        assert status == 200, v3
        assert (v3["version"], v3["source"], v3["rolled_back_to"], v3["user"]) == (
            3, "rollback", 1, "sam",
        )  # fmt: skip
        assert v3["config"]["queues"]["sales"]["strategy"] == "longest-idle"
        assert s.center.engine.config.queues["sales"].strategy == "longest-idle"
        status, body = await s.post("/api/routing/rollback", {"version": 3})
        assert (status, body["error"]["code"]) == (409, "already_current")
        status, body = await s.post("/api/routing/rollback", {"version": 99})
        assert (status, body["error"]["code"]) == (404, "no_such_version")

        _, versions = await s.get("/api/routing/versions")
        assert [(v["version"], v["source"], v["user"], v["current"]) for v in versions] == [
            (1, "file", None, False),
            (2, "api", "sam", False),
            (3, "rollback", "sam", True),
        ]
        assert versions[1]["comment"] == "ring everyone for the rush"
        status, v = await s.get("/api/routing/versions/2")
        assert status == 200 and v["config"]["queues"]["sales"]["strategy"] == "ring-all"
        assert (await s.client.get("/api/routing/versions/9", headers=s.sam)).status == 404

        # an agent may not read or change routing
        for method, url in (
            ("GET", "/api/routing"),
            ("GET", "/api/routing/versions"),
            ("POST", "/api/routing/apply"),
            ("POST", "/api/routing/rollback"),
            ("POST", "/api/routing/what-if"),
        ):
            resp = await s.client.request(method, url, headers=s.alice, json={})
            assert resp.status == 403, (method, url)
        assert s.center.routing.current_version == 3
        caller.remote_hangup()


async def test_the_applied_routing_survives_a_restart_unless_the_file_changed(
    tmp_path: Path,
) -> None:
    path = write_site(tmp_path)
    weighted = {"strategy": "weighted", "weights": {"skill": 3, "idle": 1}}
    async with site(path) as s:
        status, _ = await s.post(
            "/api/routing/apply",
            {"proposed": {"changes": {"queues": {"sales": weighted}}}, "comment": "skills first"},
        )
        assert status == 200
    saved = json.loads((tmp_path / "data" / VERSIONS_FILE).read_text())
    assert saved["current"] == 2 and len(saved["versions"]) == 2

    path.write_text(path.read_text().replace("pw-alice-1", "pw-alice-2"))  # not routing
    async with site(path) as s:  # a restart on the same data directory
        _, state = await s.get("/api/routing")
        assert (state["version"], state["comment"], state["user"]) == (2, "skills first", "sam")
        assert state["config"]["queues"]["sales"]["weights"] == {"skill": 3.0, "idle": 1.0}
        sales = s.center.engine.config.queues["sales"]
        assert sales.strategy == "weighted" and dict(sales.weights) == {"skill": 3, "idle": 1}

    write_site(tmp_path, ring_timeout=25)  # the operator edits the file and restarts
    async with site(path) as s:
        _, state = await s.get("/api/routing")
        assert (state["version"], state["source"]) == (3, "file")
        assert "the file wins" in state["comment"]
        sales_cfg = state["config"]["queues"]["sales"]
        assert (sales_cfg["strategy"], sales_cfg["ring_timeout"]) == ("longest-idle", 25.0)
        assert s.center.engine.config.queues["sales"].ring_timeout == 25
        _, versions = await s.get("/api/routing/versions")
        assert [v["source"] for v in versions] == ["file", "api", "file"]
        status, v4 = await s.post("/api/routing/rollback", {"version": 2})
        assert status == 200 and v4["config"]["queues"]["sales"]["strategy"] == "weighted"


async def test_explain_says_why_a_waiting_call_is_or_is_not_offered(tmp_path: Path) -> None:
    async with site(write_site(tmp_path), alice="ring", bob="ring", carol="") as s:
        caller, _ = await s.call()
        (rung,) = s.telephony.rung
        other = "bob" if rung == "alice" else "alice"

        status, ex = await s.get("/api/routing/explain", call_id=caller.id, agent_id="carol")
        assert status == 200, ex
        assert (ex["queue"], ex["strategy"], ex["position"]) == ("sales", "longest-idle", 1)
        assert ex["required_skills"] == {"en": 3} and ex["ringing"] == [rung]
        carol = ex["agent"]
        assert (carol["member"], carol["eligible"], carol["order"]) == (True, False, None)
        assert "missing skill" in carol["reason"] and "en" in carol["reason"]
        assert ex["summary"].startswith("carol is not offered")

        _, ex = await s.get("/api/routing/explain", call_id=caller.id, agent_id=other)
        verdict = ex["agent"]
        assert (verdict["eligible"], verdict["order"], verdict["chosen"]) == (True, 1, False)
        assert verdict["score"] is not None and "eligible" in ex["summary"]
        assert ex["choice"] == []  # the call rings its one agent already

        _, ex = await s.get("/api/routing/explain", call_id=caller.id, agent_id=rung)
        assert ex["agent"]["ringing"] is True and "ringing for this call" in ex["agent"]["reason"]
        _, ex = await s.get("/api/routing/explain", call_id=caller.id, agent_id="sam")
        assert ex["agent"]["member"] is False and "not a member" in ex["agent"]["reason"]
        _, ex = await s.get("/api/routing/explain", call_id=caller.id)
        assert {a["agent_id"] for a in ex["agents"]} == {"alice", "bob", "carol"}
        assert ex["agents"][0]["eligible"] is True  # eligible first, in the strategy's order
        assert "would offer" not in ex["text"] and caller.id in ex["text"]

        status, body = await s.get("/api/routing/explain", call_id="nope")
        assert (status, body["error"]["code"]) == (404, "not_waiting")
        status, body = await s.get("/api/routing/explain", call_id=caller.id, agent_id="zed")
        assert (status, body["error"]["code"]) == (404, "no_such_agent")
        resp = await s.client.get(
            "/api/routing/explain", headers=s.alice, params={"call_id": caller.id}
        )
        assert resp.status == 403
        caller.remote_hangup()


def _cli_figures(tmp_path: Path, name: str, args: list[str]) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    assert sim_cli(["sim", "run", *args, "--json", str(out), "--quiet"]) == 0
    figures: dict[str, Any] = json.loads(out.read_text())["figures"]
    return figures


async def test_what_if_gives_the_figures_of_sim_run_on_the_same_seeds(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    proposal = {"queues": {"sales": {"strategy": "skills-best-match", "skills": {"en": 6}}}}
    async with site(path) as s:
        status, report = await s.post(
            "/api/routing/what-if",
            {"proposed": {"changes": proposal}, "scenario": WORKLOAD, "runs": 3, "seed": 9},
        )
        assert status == 200, report
        assert (report["workload"], report["replications"], report["seed"]) == ("workload", 3, 9)
        assert report["current_version"] == 1 and report["same_callers"] is True
        rows = {r["figure"]: r for r in report["side_by_side"]}
        assert set(rows["service_level"]) == {"figure", "current", "proposed", "difference"}
        assert len(rows["service_level"]["current"]["ci95"]) == 2

        # the same through the command: the service's file, then the file with the proposal
        workload = tmp_path / "calls.toml"
        workload.write_text(WORKLOAD)
        seeds = ["--seed", "9", "--replications", "3"]
        current = _cli_figures(
            tmp_path, "current", [str(path), "--workload", str(workload), *seeds]
        )
        assert report["current"]["figures"] == current
        proposed_site = tmp_path / "proposed-site.toml"
        proposed_site.write_text(
            path.read_text().replace('strategy = "longest-idle"\nskills = { en = 3 }',
                                     'strategy = "skills-best-match"\nskills = { en = 6 }')
        )  # fmt: skip
        proposed = _cli_figures(
            tmp_path, "proposed", [str(proposed_site), "--workload", str(workload), *seeds]
        )
        assert report["proposed"]["figures"] == proposed
        assert proposed != current  # only bob (en 8) serves sales in the proposal

        # a shipped example by name: its own agents, the configuration's sales settings
        status, report = await s.post(
            "/api/routing/what-if",
            {"proposed": {"changes": proposal}, "scenario": "single_queue", "runs": 2},
        )
        assert status == 200 and report["workload"] == "scenario"
        assert report["seed"] == 42 and "'sales'" in report["notes"][0]

        # bounds: one at a time, a cost limit, mistakes with their keys
        s.center.routing._what_if_running = True
        status, body = await s.post(
            "/api/routing/what-if", {"proposed": {"changes": {}}, "scenario": WORKLOAD}
        )
        assert (status, body["error"]["code"]) == (429, "what_if_busy")
        s.center.routing._what_if_running = False
        s.center.routing.max_calls = 50
        status, body = await s.post(
            "/api/routing/what-if", {"proposed": {"changes": {}}, "scenario": WORKLOAD}
        )
        assert (status, body["error"]["code"]) == (422, "what_if_too_big")
        long = WORKLOAD.replace("duration_hours = 1", "duration_hours = 100000")
        status, body = await s.post(
            "/api/routing/what-if", {"proposed": {"changes": {}}, "scenario": long}
        )
        assert (status, body["error"]["code"]) == (422, "what_if_too_big")
        assert body["error"]["details"][0]["path"] == "scenario.simulation.duration_hours"
        status, body = await s.post(
            "/api/routing/what-if",
            {"proposed": {"changes": {}}, "scenario": WORKLOAD.replace('"sales"', '"nope"')},
        )
        assert (status, body["error"]["code"]) == (422, "invalid_scenario")
        assert body["error"]["details"][0]["path"] == "scenario.arrivals[0].queue"


async def test_what_if_on_the_last_hours_of_real_traffic(tmp_path: Path) -> None:
    async with site(write_site(tmp_path), alice="", bob="", carol="") as s:
        status, body = await s.post(
            "/api/routing/what-if", {"proposed": {"changes": {}}, "from_history": {"hours": 1}}
        )
        assert (status, body["error"]["code"]) == (422, "no_history")
        caller, task = await s.call()
        await until(lambda: caller.bridged_to is not None, "an agent answers")
        s.clock.now += 90
        caller.remote_hangup()
        await asyncio.wait_for(task, 5)
        s.clock.now += 60
        proposal = {"queues": {"sales": {"strategy": "ring-all"}}}
        status, report = await s.post(
            "/api/routing/what-if",
            {"proposed": {"changes": proposal}, "from_history": {"hours": 1}, "runs": 2},
        )
        assert status == 200, report
        assert report["workload"] == "history" and report["replications"] == 2
        assert report["current"]["figures"]["all"]["offered"]["mean"] == 1
        assert report["current"]["figures"]["all"]["answered"]["mean"] == 1
        assert report["notes"][0].startswith("history: 1 callers")
        assert "alice, bob, carol" in report["notes"][0]


def test_the_acd_table_round_trips_and_patches_merge() -> None:
    demo = load_config(Path(__file__).resolve().parents[2] / "hotline" / "demo.toml").acd
    table = acd_table(demo)
    assert AcdConfig.from_dict(json.loads(json.dumps(table))) == demo
    patched = merge_patch(table, {"queues": {"sales": {"max_wait": None, "groups": ["x"]}}})
    assert "max_wait" not in patched["queues"]["sales"] and "max_wait" in table["queues"]["sales"]
    assert patched["queues"]["sales"]["groups"] == ["x"]
    assert patched["queues"]["support"] == table["queues"]["support"]


async def test_a_change_made_elsewhere_is_listed_and_kept(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    async with site(path) as s:
        cfg = s.center.engine.config
        sales = dataclasses.replace(cfg.queues["sales"], ring_timeout=33.0)
        s.center.acd.handle(ConfigChanged(at=s.clock(), config=cfg.with_queue(sales)))
        _, versions = await s.get("/api/routing/versions")
        assert [(v["version"], v["source"], v["user"]) for v in versions] == [
            (1, "file", None),
            (2, "external", None),
        ]
    async with site(path) as s:
        _, state = await s.get("/api/routing")
        assert state["version"] == 2 and state["config"]["queues"]["sales"]["ring_timeout"] == 33
