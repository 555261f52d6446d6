"""The asyncio shell: dispatches actions, persists log records, arms one timer."""

from __future__ import annotations

import asyncio
import random

from acd.actions import Action, CancelOffer, OfferCall
from acd.config import AcdConfig
from acd.engine import AcdEngine
from acd.events import AgentLoggedIn, CallArrived, OfferFailed
from acd.service import AcdService


async def test_service_times_out_offers_and_handles_reentrant_events() -> None:
    loop = asyncio.get_running_loop()
    cfg = AcdConfig.from_dict(
        {
            "queues": {"q": {"ring_timeout": 0.05}},
            "agents": {
                "a1": {"queues": ["q"], "busy_delay_seconds": 30},
                "a2": {"queues": ["q"], "no_answer_delay_seconds": 60},
            },
        }
    )
    engine = AcdEngine(cfg, rng=random.Random(0), now=loop.time())
    seen: list[Action] = []
    logged: list = []
    done = asyncio.Event()
    svc: AcdService

    def on_action(action: Action) -> None:
        seen.append(action)
        if isinstance(action, OfferCall) and action.agent_id == "a1":
            # the agent's phone is busy: reported from inside the callback
            svc.handle(OfferFailed(at=svc.now(), call_id=action.call_id, agent_id="a1"))
        if isinstance(action, CancelOffer):
            done.set()

    svc = AcdService(engine, on_action=on_action, on_log=logged.extend, clock=loop.time)
    svc.handle(AgentLoggedIn(at=svc.now(), agent_id="a2"))
    svc.handle(CallArrived(at=svc.now(), call_id="c1", queue="q"))
    assert svc.timer_at is not None
    await asyncio.wait_for(done.wait(), timeout=2)
    assert [type(a).__name__ for a in seen] == ["OfferCall", "CancelOffer"]
    assert seen[1] == CancelOffer(call_id="c1", agent_id="a2", reason="no_answer")
    svc.handle(AgentLoggedIn(at=svc.now(), agent_id="a1"))
    # a1's offer failed inside the callback and was handled right after, in order
    assert [type(a).__name__ for a in seen[2:]] == ["OfferCall"]
    assert engine.agent_call("a1") is None
    assert any(r.kind == "offer_cancelled" and r.data["reason"] == "busy" for r in logged)
    svc.close()
    assert svc.timer_at is None
