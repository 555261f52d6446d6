"""Routing decision benchmark: ``python -m bench.routing [--decisions N] [--seed S]``.

A contact center of 10,000 agents, 1,000 queues and 100 skills (each agent in 10 queues with 5
skills at levels 1-10; each queue requiring 0-2 skills at levels 2-5; half the agents paused so the
routable set is realistic). For each strategy it times ``AcdEngine.decide`` (one routing decision
through the engine's per-queue index, the same code path ``handle`` uses) and, in the same run, a
plain linear scan over all agents applying the same eligibility and order (the baseline). It also
times a full call cycle through ``handle`` (arrive, offer, answer, hang up).

Prints the figures beside the baseline, then ONE JSON line with everything.
Targets (issue 4), for every strategy: p50 < 20 us, p99 < 200 us, >= 20x the linear scan. The
``agree`` column checks decisions against the linear scan (ordered strategies) or against the
strategy's reference ``choose`` over a plain scan (skills-best-match, weighted).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

from acd.actions import OfferCall
from acd.config import AcdConfig, AgentConfig, Membership, QueueConfig
from acd.engine import AcdEngine, _Probe
from acd.events import (
    AgentLoggedIn,
    AgentPaused,
    CallArrived,
    CallEnded,
    ConfigChanged,
    OfferAnswered,
)
from acd.model import AgentId, AgentState, AgentStatus, CallId
from routing.skills import meets, merge_requirements
from routing.strategy import Candidate, RoutingMemory

N_AGENTS = 10_000
N_QUEUES = 1_000
N_SKILLS = 100
QUEUES_PER_AGENT = 10
SKILLS_PER_AGENT = 5
STRATEGIES = [
    "longest-idle",
    "fewest-calls",
    "round-robin",
    "linear",
    "skills-best-match",
    "weighted",
]


def build_config(rng: random.Random, strategy: str) -> AcdConfig:
    skills = [f"s{i}" for i in range(N_SKILLS)]
    queues = {}
    for i in range(N_QUEUES):
        req = {s: rng.randint(2, 5) for s in rng.sample(skills, rng.randint(0, 2))}
        queues[f"q{i}"] = QueueConfig(
            name=f"q{i}",
            strategy=strategy,
            skills=req,
            weights={"skill": 1, "idle": 1, "occupancy": 1} if strategy == "weighted" else {},
        )
    agents = {}
    for i in range(N_AGENTS):
        mine = [f"q{q}" for q in rng.sample(range(N_QUEUES), QUEUES_PER_AGENT)]
        # agents are put in queues they are skilled for (levels still vary, some fall short)
        own = {s: rng.randint(3, 10) for q in mine for s in queues[q].skills}
        while len(own) < SKILLS_PER_AGENT:
            own.setdefault(rng.choice(skills), rng.randint(1, 10))
        agents[f"a{i}"] = AgentConfig(
            id=f"a{i}",
            skills=own,
            queues={q: Membership(penalty=rng.choice((0, 0, 0, 1))) for q in mine},
        )
    return AcdConfig(queues=queues, agents=agents)


def linear_scan(engine: AcdEngine, queue: str, skills: dict[str, int]) -> str | None:
    """Baseline: look at every agent, keep the best eligible one by the strategy's key."""
    q = engine._queues[queue]
    required = merge_requirements(q.cfg.skills, skills)
    key_of = q.strategy.key
    best = None
    best_key: tuple[float, ...] | None = None
    for aid, a in engine._agents.items():
        if a.status is not AgentStatus.AVAILABLE or a.state is not AgentState.IDLE:
            continue
        m = q.members.get(aid)
        if m is None or m.step > 0 or not meets(a.skills, required, 0):
            continue
        k = key_of(a, m)
        if best_key is None or k < best_key:
            best, best_key = aid, k
    return best


def reference_choice(engine: AcdEngine, queue: str, skills: dict[str, int]) -> str | None:
    """The strategy's reference ``choose`` over every eligible agent, found by a plain scan and
    sorted by the strategy's key (checks the indexed ``pick`` of scoring strategies)."""
    q = engine._queues[queue]
    required = merge_requirements(q.cfg.skills, skills)
    probe = _Probe()
    probe.required = required
    cands: list[Candidate] = []
    for aid, a in engine._agents.items():
        if a.status is not AgentStatus.AVAILABLE or a.state is not AgentState.IDLE:
            continue
        m = q.members.get(aid)
        if m is None or m.step > 0 or not meets(a.skills, required, 0):
            continue
        cands.append((a, m))
    cands.sort(key=lambda c: q.strategy.key(c[0], c[1]))
    chosen = q.strategy.choose(
        probe, iter(cands), want=1, now=engine.now, rng=random.Random(0), memory=RoutingMemory()
    )
    return chosen[0][0].id if chosen else None


def time_calls(fn: Callable[[int], Any], n: int) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        out.append((clock() - t0) / 1000.0)
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--baseline", type=int, default=300)
    ap.add_argument("--cycles", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    cfg = build_config(rng, STRATEGIES[0])
    engine = AcdEngine(cfg, rng=random.Random(args.seed), now=0.0, record_log=False)
    for i in range(N_AGENTS):
        engine.handle(AgentLoggedIn(at=i * 0.001, agent_id=AgentId(f"a{i}")))
    for i in rng.sample(range(N_AGENTS), N_AGENTS // 2):
        engine.handle(AgentPaused(at=10.0, agent_id=AgentId(f"a{i}"), reason="busy elsewhere"))
    setup_s = time.perf_counter() - t0
    probes = []
    for _ in range(args.decisions):
        q = f"q{rng.randrange(N_QUEUES)}"
        # a call may raise one of its queue's requirements (IVR language, product)
        own = {s: min(10, lvl + rng.randint(0, 3)) for s, lvl in cfg.queues[q].skills.items()}
        probes.append((q, own if rng.random() < 0.5 else {}))
    results: dict[str, Any] = {}
    print(
        f"routing benchmark: {N_AGENTS} agents ({N_AGENTS // 2} routable), {N_QUEUES} queues, "
        f"{N_SKILLS} skills; setup {setup_s:.1f} s"
    )
    print(
        f"{'strategy':<20}{'p50 us':>9}{'p99 us':>9}{'dec/s':>11}{'scan p50':>10}{'speedup':>9}{'agree':>7}"
    )
    for name in STRATEGIES:
        if name != engine.config.queues["q0"].strategy:
            engine.handle(
                ConfigChanged(at=engine.now, config=build_config(random.Random(args.seed), name))
            )
        found = 0

        def decide(i: int) -> None:
            nonlocal found
            q, sk = probes[i]
            if engine.decide(q, skills=sk):
                found += 1

        lat = time_calls(decide, len(probes))
        base = time_calls(
            lambda i: linear_scan(engine, *probes[i]), min(args.baseline, len(probes))
        )
        agree = None
        if name in ("longest-idle", "fewest-calls", "linear"):
            agree = all(
                next(iter(engine.decide(q, skills=sk)), None) == linear_scan(engine, q, sk)
                for q, sk in probes[: args.baseline]
            )
        elif name in ("skills-best-match", "weighted"):
            agree = all(
                next(iter(engine.decide(q, skills=sk)), None) == reference_choice(engine, q, sk)
                for q, sk in probes[: args.baseline]
            )
        p50, p99 = pct(lat, 50), pct(lat, 99)
        b50 = pct(base, 50)
        rate = len(lat) / (sum(lat) / 1e6)
        results[name] = {
            "p50_us": round(p50, 2),
            "p99_us": round(p99, 2),
            "decisions_per_s": round(rate),
            "baseline_p50_us": round(b50, 1),
            "baseline_decisions_per_s": round(len(base) / (sum(base) / 1e6)),
            "speedup_p50": round(b50 / p50, 1),
            "found_agent_share": round(found / len(probes), 3),
            "agrees_with_scan": agree,
        }
        print(
            f"{name:<20}{p50:>9.1f}{p99:>9.1f}{rate:>11,.0f}{b50:>10.0f}{b50 / p50:>8.0f}x"
            f"{'' if agree is None else ('yes' if agree else 'NO'):>7}"
        )
    # full call cycles through handle() (arrive -> offer -> answer -> hang up), longest-idle
    engine.handle(
        ConfigChanged(at=engine.now, config=build_config(random.Random(args.seed), "longest-idle"))
    )
    t = engine.now
    cyc_rng = random.Random(args.seed + 1)
    events = 0
    start = time.perf_counter()
    for i in range(args.cycles):
        t += 0.001
        cid = CallId(f"c{i}")
        acts = engine.handle(
            CallArrived(at=t, call_id=cid, queue=f"q{cyc_rng.randrange(N_QUEUES)}")
        )
        events += 1
        offer = next((a for a in acts if isinstance(a, OfferCall)), None)
        if offer is None:
            engine.handle(CallEnded(at=t, call_id=cid))
            events += 1
            continue
        engine.handle(OfferAnswered(at=t, call_id=cid, agent_id=offer.agent_id))
        engine.handle(CallEnded(at=t, call_id=cid))
        events += 2
    cyc_s = time.perf_counter() - start
    results["handle"] = {
        "cycles": args.cycles,
        "events": events,
        "events_per_s": round(events / cyc_s),
        "us_per_event": round(cyc_s / events * 1e6, 2),
    }
    print(
        f"handle(): {events} events in {cyc_s:.2f} s = {events / cyc_s:,.0f} events/s "
        f"({cyc_s / events * 1e6:.1f} us/event, arrive+answer+hang-up at 10k agents)"
    )
    missed = [
        n
        for n in STRATEGIES
        if not (
            results[n]["p50_us"] < 20
            and results[n]["p99_us"] < 200
            and results[n]["speedup_p50"] >= 20
            and results[n]["agrees_with_scan"] is not False
        )
    ]
    ok = not missed
    print(
        "targets (every strategy): p50 < 20 us, p99 < 200 us, >= 20x scan: "
        + ("met" if ok else f"NOT met by {', '.join(missed)}")
    )
    summary = {
        "bench": "routing",
        "agents": N_AGENTS,
        "queues": N_QUEUES,
        "skills": N_SKILLS,
        "routable": N_AGENTS // 2,
        "decisions": len(probes),
        "targets_met": ok,
        **results,
    }
    print(json.dumps(summary, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
