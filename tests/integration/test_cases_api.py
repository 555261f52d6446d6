"""Cases in the staff API, on a running center with a real SQLite store: search with filters,
sorting and pages; a case's trail, notes and escalation state; changes and who may make them.

Staff: alice and bob are agents, sam is a supervisor. Cases are opened as the call path opens
them (the center's writer thread), so the API sees what a live node would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acd.cases import CaseEvent, NewCase
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

[[agents]]
id = "bob"
password = "pw-bob"
queues = ["sales"]

[[agents]]
id = "sam"
password = "pw-sam"
role = "supervisor"

[entry_points]
"1000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"

[acd.queues.support]
strategy = "longest-idle"
"""

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


class NoPhones:
    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        raise LookupError(f"agent {target!r} has no registered phone")

    def agent_reachable(self, agent_id: str) -> bool:
        return False


@dataclass
class Site:
    center: ContactCenter
    clients: dict[str, TestClient]
    now: list[float]

    def __getitem__(self, user: str) -> TestClient:
        return self.clients[user]

    async def case(self, **kw: Any) -> int:
        """Open a case as the call path does; ``owner``/``status`` set as a supervisor would."""
        changes = {k: kw.pop(k) for k in ("status",) if k in kw}
        new = NewCase(caller_number=kw.pop("caller", "+4930111"), at=kw.pop("at", T0), **kw)
        case = await self.center.writer.run(lambda s: s.open_case(new))
        if changes:
            await self.center.cases.change(case.id, changes, actor="sam")
        return case.id


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data"))
    config = load_config(path)
    now = [T0 + 1000]
    center = ContactCenter(config, NoPhones(), clock=lambda: now[0])
    await center.start()
    auth = StaffAuth(config)
    api = Api(authenticator=auth)
    add_center_routes(api, center, clock=lambda: now[0])
    app = web.Application(middlewares=[error_middleware])
    api.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    clients = {}
    for user in ("alice", "bob", "sam"):
        headers = {"Authorization": f"Bearer {auth.issue_token(user)}"}
        clients[user] = TestClient(server, headers=headers)
        await clients[user].start_server()
    try:
        yield Site(center, clients, now)
    finally:
        for c in clients.values():
            await c.close()
        await center.close()


async def ok(resp: Any, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


async def error(resp: Any, status: int) -> str:
    body = await resp.json()
    assert resp.status == status, body
    return str(body["error"]["code"])


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat()  # any offset: the API reads it


async def test_search_filters_each_narrow_the_list(site: Site) -> None:
    a = await site.case(caller="+33 6 12 34 56 78", case_type="complaint", queue="sales")
    b = await site.case(caller="+4930111", case_type="fault", queue="support", owner="alice")
    c = await site.case(caller="+4930111", case_type="care", owner="bob", at=T0 + 100)
    d = await site.case(caller="+4930222", case_type="revisit", at=T0 + 200, status="resolved")

    async def ids(**params: Any) -> list[int]:
        page = await ok(await site["alice"].get("/api/cases", params=params))
        assert page["total"] == len(page["items"])
        return [x["id"] for x in page["items"]]

    assert await ids() == [d, c, b, a]  # newest first
    assert await ids(caller="0033-6-12-34-56-78") == [a]  # any notation of the number
    assert await ids(caller="+4930111") == [c, b]
    assert await ids(id=b) == [b]
    assert await ids(id=f"{a},{d}") == [d, a]
    assert await ids(type="fault") == [b]
    assert await ids(type=["care", "revisit"]) == [d, c]
    assert await ids(status="resolved") == [d]
    assert await ids(status="open") == [c, b, a]
    assert await ids(owner="alice") == [b]
    assert await ids(owner="me") == [b]  # alice asking
    assert await ids(owner="") == [d, a]  # nobody's
    assert await ids(queue="support") == [b]
    assert await ids(**{"from": iso(T0 + 100)}) == [d, c]
    assert await ids(to=iso(T0 + 100)) == [b, a]
    assert await ids(**{"from": "2026-05-28T20:28:20Z", "to": "2026-05-28T20:30:00Z"}) == [c]
    assert await ids(sort="created_at") == [a, b, c, d]
    assert await ids(caller="+4930111", owner="bob", type="care") == [c]

    assert await error(await site["alice"].get("/api/cases?type=rant"), 422) == (
        "validation_failed"
    )
    assert await error(await site["alice"].get("/api/cases?sort=caller"), 422) == (
        "validation_failed"
    )
    assert await error(await site["alice"].get("/api/cases?from=yesterday"), 422) == (
        "validation_failed"
    )


async def test_pages_follow_next_links_over_every_case_exactly_once(site: Site) -> None:
    opened = [await site.case(at=T0 + (i // 3)) for i in range(23)]  # three cases a second
    for sort, want in (("-created_at", opened[::-1]), ("created_at", opened)):
        seen: list[int] = []
        url: str | None = f"/api/cases?limit=5&sort={sort}"
        pages = 0
        while url is not None:
            page = await ok(await site["bob"].get(url))
            assert page["total"] == 23 and page["limit"] == 5
            seen += [x["id"] for x in page["items"]]
            url = page["next"]
            assert (url is None) == (page["next_cursor"] is None)
            pages += 1
        assert seen == want
        assert pages == 5
    first = await ok(await site["bob"].get("/api/cases?limit=5"))
    cursor = first["next_cursor"]
    assert await error(
        await site["bob"].get(f"/api/cases?cursor={cursor}&sort=created_at"), 422
    ) == ("bad_cursor")
    assert await error(await site["bob"].get("/api/cases?cursor=not-ours"), 422) == "bad_cursor"


async def test_a_case_is_read_with_its_trail_notes_and_escalation_state(site: Site) -> None:
    case_id = await site.case(owner="alice", workgroup="billing", queue="sales")
    site.center.cases.offered(case_id, agent="alice", queue="sales")
    body = await ok(await site["bob"].get(f"/api/cases/{case_id}"))  # any agent may read
    assert body["owner"] == "alice" and body["type"] == "query" and body["status"] == "open"
    assert body["created_at"] == "2026-05-28T20:26:40Z"
    assert [(e["kind"], e["actor"]) for e in body["events"]] == [
        ("opened", "system"),
        ("offered", "acd"),
    ]
    assert body["events"][1]["data"] == {"agent": "alice", "queue": "sales"}
    assert body["events"][1]["at"] == "2026-05-28T20:43:20Z"  # the center's clock, UTC
    assert body["notes"] == [] and body["recordings"] == []
    assert body["escalation"] == {
        "due_at": None,
        "overdue": False,
        "level": None,
        "levels_done": 0,
        "escalated_at": None,
        "next_level": None,
        "next_level_at": None,
    }

    # A supervisor sets a due time that has passed: the case shows as overdue, first level next.
    due = "2026-05-28T20:30:00Z"
    body = await ok(await site["sam"].patch(f"/api/cases/{case_id}", json={"due_at": due}))
    assert body["due_at"] == due
    assert body["escalation"]["overdue"] is True
    assert body["escalation"]["next_level"] == "workgroup_lead"
    assert body["escalation"]["next_level_at"] == due
    # The escalation service moves it to the lead: the level shows, and the one after.
    from acd.escalation import EscalationPolicy, escalate_overdue

    policy = EscalationPolicy(workgroup_leads={"billing": "sam"})
    await site.center.writer.run(lambda s: escalate_overdue(s, policy, site.now[0]))
    body = await ok(await site["alice"].get(f"/api/cases/{case_id}"))
    esc = body["escalation"]
    assert (esc["level"], esc["levels_done"], esc["next_level"]) == (
        "workgroup_lead",
        1,
        "supervisor",
    )
    assert esc["escalated_at"] == "2026-05-28T20:43:20Z"
    assert esc["next_level_at"] == "2026-05-28T21:30:00Z"  # one step (an hour) later
    assert body["owner"] == "sam"

    assert await error(await site["alice"].get("/api/cases/424242"), 404) == "no_such_case"
    assert await error(await site["alice"].get("/api/cases/0"), 422) == "validation_failed"


async def test_notes_are_appended_with_the_signed_in_author(site: Site) -> None:
    case_id = await site.case(owner="alice")
    note = await ok(
        await site["alice"].post(f"/api/cases/{case_id}/notes", json={"text": "wants a refund"}),
        201,
    )
    assert (note["author"], note["text"]) == ("alice", "wants a refund")
    site.now[0] += 60
    await ok(await site["sam"].post(f"/api/cases/{case_id}/notes", json={"text": "approved"}), 201)
    body = await ok(await site["bob"].get(f"/api/cases/{case_id}"))
    assert [(n["author"], n["text"]) for n in body["notes"]] == [
        ("alice", "wants a refund"),
        ("sam", "approved"),
    ]
    assert body["notes"][1]["at"] == "2026-05-28T20:44:20Z"
    assert [e["kind"] for e in body["events"]] == ["opened", "note", "note"]
    # bob does not own it and is not on its call: no note from him.
    resp = await site["bob"].post(f"/api/cases/{case_id}/notes", json={"text": "hm"})
    assert await error(resp, 403) == "forbidden"
    assert await error(
        await site["alice"].post(f"/api/cases/{case_id}/notes", json={"text": " "}), 422
    )
    assert await error(await site["alice"].post("/api/cases/999/notes", json={"text": "x"}), 404)


async def test_changes_are_validated_and_each_one_is_an_event_by_its_actor(site: Site) -> None:
    case_id = await site.case(owner="alice")
    url = f"/api/cases/{case_id}"
    body = await ok(
        await site["alice"].patch(
            url, json={"type": "fault", "status": "resolved", "disposition": "fixed on the call"}
        )
    )
    assert (body["type"], body["status"], body["disposition"]) == (
        "fault",
        "resolved",
        "fixed on the call",
    )
    changes = [(e["kind"], e["actor"], e["data"]["to"]) for e in body["events"][1:]]
    assert sorted(changes) == [
        ("disposition_set", "alice", "fixed on the call"),
        ("status_changed", "alice", "resolved"),
        ("type_changed", "alice", "fault"),
    ]

    assert await error(await site["alice"].patch(url, json={"type": "rant"}), 422) == (
        "validation_failed"
    )
    assert await error(await site["alice"].patch(url, json={"status": "lost"}), 422)
    assert await error(await site["alice"].patch(url, json={"colour": "red"}), 422)
    assert await error(await site["alice"].patch(url, json={}), 422) == "nothing_to_change"
    assert await error(await site["sam"].patch(url, json={"owner": "mallory"}), 422) == (
        "unknown_owner"
    )
    await ok(await site["alice"].patch(url, json={"status": "closed"}))
    resp = await site["alice"].patch(url, json={"status": "in_progress"})
    assert await error(resp, 409) == "invalid_change"
    again = await ok(await site["alice"].patch(url, json={"status": "closed"}))  # idempotent
    assert again["events"][-1]["data"]["to"] == "closed" and len(again["events"]) == 5
    # status=open reopens a closed case (a reopened event), then it can be worked on again.
    body = await ok(await site["alice"].patch(url, json={"status": "open"}))
    assert body["status"] == "open" and body["events"][-1]["kind"] == "reopened"
    assert await error(await site["alice"].patch("/api/cases/999", json={"status": "open"}), 404)


async def test_agents_change_their_own_cases_and_supervisors_any(site: Site) -> None:
    alices = await site.case(owner="alice")
    bobs = await site.case(owner="bob")
    nobodys = await site.case()
    # An agent: not another agent's case, not an unowned one, and not by giving it away.
    for case_id in (bobs, nobodys):
        resp = await site["alice"].patch(f"/api/cases/{case_id}", json={"status": "pending"})
        assert await error(resp, 403) == "forbidden"
    resp = await site["alice"].patch(f"/api/cases/{alices}", json={"owner": "bob"})
    assert await error(resp, 403) == "forbidden"
    resp = await site["alice"].patch(f"/api/cases/{alices}", json={"due_at": None})
    assert await error(resp, 403) == "forbidden"
    got = await ok(await site["alice"].get(f"/api/cases/{bobs}"))
    assert got["status"] == "open" and len(got["events"]) == 1  # refused changes left no trace
    # A supervisor: any case, to anyone.
    body = await ok(await site["sam"].patch(f"/api/cases/{bobs}", json={"owner": "alice"}))
    assert body["owner"] == "alice"
    assert body["events"][-1] == {
        "seq": body["events"][-1]["seq"],
        "at": "2026-05-28T20:43:20Z",
        "kind": "owner_changed",
        "actor": "sam",
        "data": {"field": "owner", "from": "bob", "to": "alice"},
    }
    await ok(await site["sam"].patch(f"/api/cases/{nobodys}", json={"owner": "bob"}))


async def test_an_agent_may_change_the_case_of_the_call_they_are_on(site: Site) -> None:
    case_id = await site.case(queue="sales")
    # bob answers the call: he owns its case from then on ...
    site.center.cases.answered(case_id, agent="bob", queue="sales", kind="call", waited=3.0)
    body = await ok(await site["bob"].get(f"/api/cases/{case_id}"))
    assert (body["owner"], body["status"]) == ("bob", "in_progress")
    # ... and while he is on the call he may still note it after a supervisor moved it.
    await ok(await site["sam"].patch(f"/api/cases/{case_id}", json={"owner": "alice"}))
    await ok(await site["bob"].post(f"/api/cases/{case_id}/notes", json={"text": "on it"}), 201)
    await ok(await site["bob"].patch(f"/api/cases/{case_id}", json={"owner": "bob"}))
    site.center.cases.hung_up(case_id, "caller", agent="bob")
    await ok(await site["sam"].patch(f"/api/cases/{case_id}", json={"owner": "alice"}))
    resp = await site["bob"].post(f"/api/cases/{case_id}/notes", json={"text": "late"})
    assert await error(resp, 403) == "forbidden"


async def test_recordings_attached_to_the_trail_are_listed(site: Site) -> None:
    case_id = await site.case(owner="alice")
    events = [
        CaseEvent(
            at=T0 + 5,
            kind="recording",
            actor="system",
            data={"recording_id": "r1", "seconds": 42.0, "agent": "alice"},
        ),
        CaseEvent(
            at=T0 + 9,
            kind="recording",
            actor="system",
            data={"recording_id": "r2", "seconds": 7, "agent": "bob"},
        ),
        CaseEvent(at=T0 + 99, kind="recording_expired", data={"recording_id": "r1"}),
    ]
    await site.center.writer.run(lambda s: s.write_batch([(case_id, e) for e in events], []))
    body = await ok(await site["alice"].get(f"/api/cases/{case_id}"))
    got = [(r["id"], r["agent"], r["seconds"], r["expired"], r["at"]) for r in body["recordings"]]
    assert got == [
        ("r1", "alice", 42.0, True, "2026-05-28T20:26:45Z"),
        ("r2", "bob", 7.0, False, "2026-05-28T20:26:49Z"),
    ]


async def test_the_live_floor_keeps_its_shape(site: Site) -> None:
    snap = await ok(await site["sam"].get("/api/acd"))
    assert snap["queues"]["sales"]["waiting"] == 0
    assert snap["agents"]["alice"]["status"] == "logged_out"
    assert snap["at"] == "2026-05-28T20:43:20Z"
    assert await error(await site["alice"].get("/api/acd"), 403) == "forbidden"
