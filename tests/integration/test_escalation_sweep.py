"""The service escalates overdue cases by itself, as ``[escalation]`` says: a case past its due
time moves to the next level's person, with an ``escalated`` event on its trail, and both owners
hear of it on the live event stream. A configuration naming someone who is not staff fails at
start-up at that key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acd.cases import NewCase
from hotline.center import ContactCenter
from hotline.center.feed import Subscription, Viewer
from hotline.config import ConfigError, load_config
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
id = "sam"
password = "pw-sam"
role = "supervisor"

[[agents]]
id = "dora"
password = "pw-dora"
role = "admin"

[entry_points]
"1000" = {{ kind = "queue", target = "sales" }}

[acd.queues.sales]
strategy = "longest-idle"

[escalation]
chain = ["workgroup_lead", "manager"]
workgroup_leads = {{ billing = "sam" }}
targets = {{ manager = {{ "*" = "{manager}" }} }}
step_after_seconds = 600
check_seconds = 0.05
"""

T0 = 1_780_000_000.0


class NoPhones:
    async def originate(
        self, target: str, *, ring_timeout: float, caller: str, display: str | None = None
    ) -> CallSession | None:
        raise LookupError(f"agent {target!r} has no registered phone")

    def agent_reachable(self, agent_id: str) -> bool:
        return False


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[ContactCenter, list[float]]]:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data", manager="dora"))
    now = [T0]
    cc = ContactCenter(load_config(path), NoPhones(), clock=lambda: now[0])
    await cc.start()
    try:
        yield cc, now
    finally:
        await cc.close()


async def _owner_becomes(cc: ContactCenter, case_id: int, owner: str) -> list[str]:
    async with asyncio.timeout(10):
        while True:
            trail = await cc.cases.trail(case_id)
            assert trail is not None
            if trail.case.owner == owner:
                return [e.kind for e in trail.events]
            await asyncio.sleep(0.02)


async def test_an_overdue_case_climbs_the_chain_by_itself(
    center: tuple[ContactCenter, list[float]],
) -> None:
    cc, now = center
    new = NewCase(caller_number="+4930111", at=T0, owner="alice", workgroup="billing")
    case = await cc.writer.run(lambda s: s.open_case(new))
    alice = cc.feed.subscribe(Viewer("alice"))
    carl = cc.feed.subscribe(Viewer("sam"))  # sam as an agent would see it: his own cases
    await cc.cases.change(case.id, {"due_at": T0 + 60}, actor="sam")
    await asyncio.sleep(0.2)
    assert (await cc.cases.case(case.id)).owner == "alice"  # type: ignore[union-attr]  # not due

    now[0] = T0 + 61  # due: the workgroup's lead gets it
    kinds = await _owner_becomes(cc, case.id, "sam")
    assert kinds.count("escalated") == 1
    now[0] = T0 + 60 + 600  # one step later: the manager
    kinds = await _owner_becomes(cc, case.id, "dora")
    assert kinds.count("escalated") == 2
    await asyncio.sleep(0.2)  # later sweeps add nothing: every level is done
    trail = await cc.cases.trail(case.id)
    assert trail is not None and [e.kind for e in trail.events].count("escalated") == 2

    def escalations(sub: Subscription) -> list[str]:
        seen = []
        while (event := sub.poll()) is not None:
            if event.kind == "case" and event.data["event"] == "escalated":
                seen.append(event.data["data"]["to"])
        return seen

    assert escalations(alice) == ["sam"]  # told it left her, not where it went next
    assert escalations(carl) == ["sam", "dora"]


def test_an_escalation_target_who_is_not_staff_is_refused_at_its_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data", manager="nobody"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "escalation.targets.manager.*" in str(err.value)
    assert "'nobody'" in str(err.value)
