"""Erlang C (M/M/n) and Erlang A (M/M/n+M, Palm) formulas and a staffing solver.

Units: arrival rates per hour (as planners quote them), handle time, patience and the
service-level threshold in seconds. Every function is pure and deterministic.

Definitions (the same ones the simulator reports, see docs/simulator.md):

``prob_wait``
    P(an arriving caller finds every agent busy), i.e. waits at all (PASTA).
``service_level``
    P(answered within ``target_seconds``) over *all* offered callers; callers who abandon
    count in the denominator and never in the numerator. Callers answered at once count as
    answered within the target.
``asa_seconds``
    mean wait of *answered* callers, zero waits included.
``mean_wait_seconds``
    mean time in queue over all offered callers, abandoners included (their time to abandon).
    This is E[Lq]/lambda (Little); in Erlang C it equals ``asa_seconds``. Some tools (for
    example pyworkforce's ErlangA) publish this figure under the name "ASA".
``abandon_prob``
    P(a caller abandons) = theta E[Lq] / lambda.
``occupancy``
    share of agent time spent serving: lambda (1 - abandon_prob) AHT / n.

Erlang C uses the closed forms (Erlang B recursion, C = nB / (n - A(1 - B)),
P(W > t) = C exp(-(n mu - lambda) t)).

Erlang A is solved exactly on the birth-death chain of the number of callers in the system
(death rate ``min(k, n) mu + max(k - n, 0) theta``), truncated where the stationary tail falls
below exp(-60) of its peak. A caller who arrives to find ``j - 1`` callers waiting ahead of it
leaves position ``j`` at rate ``n mu + j theta``; it is eventually served with probability
``n mu / (n mu + j theta)`` (the product telescopes) and, because exit times and exit kinds of
competing exponentials are independent, its wait given service is the sum of exponentials with
rates ``n mu + i theta``, ``i = 1..j``. That sum's distribution function is the regularised
incomplete beta ``I_x(j, n mu/theta + 1)`` with ``x = 1 - exp(-theta t)``
(Garnett, Mandelbaum & Reiman 2002, "Designing a call center with impatient customers",
section 3), which for integer ``j`` is one minus a negative-binomial distribution function;
it is evaluated here as a cumulative sum, in log space.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

_TAIL_LOG_CUTOFF = 60.0
"""Truncate the Erlang A chain where log pi falls this far below its maximum (exp(-60))."""

_MAX_STATES = 5_000_000
"""Refuse chains longer than this (only reached with near-infinite patience under overload)."""


class ErlangError(ValueError):
    """Inputs the formulas cannot use (a rate <= 0, a negative agent count...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFigures:
    """Steady-state figures of one queue model; see the module docstring for definitions."""

    model: Literal["C", "A"]
    """``"C"``: M/M/n, infinitely patient callers; ``"A"``: M/M/n+M, exponential patience."""
    rate_per_hour: float
    """Offered calls per hour."""
    aht_seconds: float
    """Mean handle time."""
    agents: int
    """Number of agents n."""
    target_seconds: float
    """Service-level threshold."""
    patience_seconds: float | None
    """Mean patience (Erlang A only)."""
    offered_erlangs: float
    """Offered load A = lambda * AHT."""
    prob_wait: float
    """P(wait > 0)."""
    service_level: float
    """P(answered within target) over all offered callers."""
    asa_seconds: float
    """Mean wait of answered callers (inf when the Erlang C queue is unstable)."""
    mean_wait_seconds: float
    """Mean time in queue over all callers, abandoners included."""
    abandon_prob: float
    """P(abandon); 0 in Erlang C."""
    occupancy: float
    """Busy share of agent time (capped at 1 in an unstable Erlang C queue)."""
    stable: bool
    """False when Erlang C has A >= n (the queue grows without bound)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(rate_per_hour: float, aht_seconds: float, agents: int, target_seconds: float) -> None:
    if not rate_per_hour > 0 or not math.isfinite(rate_per_hour):
        raise ErlangError(f"rate: expected calls per hour > 0, got {rate_per_hour}")
    if not aht_seconds > 0 or not math.isfinite(aht_seconds):
        raise ErlangError(f"aht: expected seconds > 0, got {aht_seconds}")
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ErlangError(f"agents: expected an integer >= 1, got {agents!r}")
    if not target_seconds >= 0 or not math.isfinite(target_seconds):
        raise ErlangError(f"target: expected seconds >= 0, got {target_seconds}")


def erlang_b(agents: int, offered_erlangs: float) -> float:
    """Blocking probability of M/M/n/n by the stable recursion B(k) = A B(k-1) / (k + A B(k-1))."""
    b = 1.0
    for k in range(1, agents + 1):
        ab = offered_erlangs * b
        b = ab / (k + ab)
    return b


def erlang_c(
    *, rate_per_hour: float, aht_seconds: float, agents: int, target_seconds: float = 20.0
) -> QueueFigures:
    """Erlang C (M/M/n, FCFS, no abandonment)."""
    _check(rate_per_hour, aht_seconds, agents, target_seconds)
    lam = rate_per_hour / 3600.0
    mu = 1.0 / aht_seconds
    a = lam * aht_seconds
    n = agents
    common = {
        "model": "C",
        "rate_per_hour": rate_per_hour,
        "aht_seconds": aht_seconds,
        "agents": n,
        "target_seconds": target_seconds,
        "patience_seconds": None,
        "offered_erlangs": a,
        "abandon_prob": 0.0,
    }
    if a >= n:
        return QueueFigures(
            **common,  # type: ignore[arg-type]
            prob_wait=1.0,
            service_level=0.0,
            asa_seconds=math.inf,
            mean_wait_seconds=math.inf,
            occupancy=1.0,
            stable=False,
        )
    b = erlang_b(n, a)
    c = n * b / (n - a * (1.0 - b))
    drain = n * mu - lam
    asa = c / drain
    return QueueFigures(
        **common,  # type: ignore[arg-type]
        prob_wait=c,
        service_level=1.0 - c * math.exp(-drain * target_seconds),
        asa_seconds=asa,
        mean_wait_seconds=asa,
        occupancy=a / n,
        stable=True,
    )


def _log_stationary(lam: float, mu: float, theta: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised log pi for states 0..n-1 (all idle..) and the waiting tail (n, n+1, ...)."""
    k = np.arange(1, n, dtype=float)
    a = lam / mu
    head = np.concatenate(([0.0], np.cumsum(np.log(a) - np.log(k)))) if n > 1 else np.zeros(1)
    # state n: pi_n = pi_{n-1} * lambda / (n mu)
    log_pn = head[-1] + math.log(lam) - math.log(n * mu)
    peak_k = max(0.0, (lam - n * mu) / theta)
    chunks: list[np.ndarray] = []
    start = 1
    last = log_pn
    best = max(float(head.max()), log_pn)
    size = 1024
    while True:
        ks = np.arange(start, start + size, dtype=float)
        steps = math.log(lam) - np.log(n * mu + ks * theta)
        seg = last + np.cumsum(steps)
        chunks.append(seg)
        best = max(best, float(seg.max()))
        last = float(seg[-1])
        start += size
        if start > peak_k and last < best - _TAIL_LOG_CUTOFF:
            break
        if start > _MAX_STATES:
            raise ErlangError(
                "patience too long for this overload: the Erlang A chain does not settle "
                f"within {_MAX_STATES} states"
            )
        size = min(size * 2, 1 << 20)
    tail = np.concatenate(([log_pn], *chunks))
    return head, tail


def erlang_a(
    *,
    rate_per_hour: float,
    aht_seconds: float,
    agents: int,
    patience_seconds: float,
    target_seconds: float = 20.0,
) -> QueueFigures:
    """Erlang A (M/M/n+M): exponential patience with mean ``patience_seconds``; exact."""
    _check(rate_per_hour, aht_seconds, agents, target_seconds)
    if not patience_seconds > 0 or math.isnan(patience_seconds):
        raise ErlangError(f"patience: expected seconds > 0, got {patience_seconds}")
    if math.isinf(patience_seconds):
        return erlang_c(
            rate_per_hour=rate_per_hour,
            aht_seconds=aht_seconds,
            agents=agents,
            target_seconds=target_seconds,
        )
    lam = rate_per_hour / 3600.0
    mu = 1.0 / aht_seconds
    theta = 1.0 / patience_seconds
    n = agents
    nmu = n * mu
    head, tail = _log_stationary(lam, mu, theta, n)
    top = max(float(head.max()), float(tail.max()))
    ph = np.exp(head - top)
    pt = np.exp(tail - top)
    z = ph.sum() + pt.sum()
    ph /= z
    pt /= z
    prob_wait = float(pt.sum())
    waiting = np.arange(pt.size, dtype=float)  # callers in queue in state n + k
    lq = float((waiting * pt).sum())
    abandon = theta * lq / lam
    # an arrival in state n + k takes position j = k + 1
    j = waiting + 1.0
    exit_rate = nmu + j * theta
    served_share = nmu / exit_rate
    # E[wait | served, position j] = sum_{i=1..j} 1 / (n mu + i theta)
    mean_if_served = np.cumsum(1.0 / exit_rate)
    p_served = float(ph.sum() + (pt * served_share).sum())
    asa = float((pt * served_share * mean_if_served).sum()) / p_served
    # P(sum_{i<=j} Exp(n mu + i theta) <= t) = 1 - NegBinCDF(j - 1; b, p), b = n mu/theta + 1,
    # p = exp(-theta t): pmf(m) = Gamma(b+m)/(Gamma(b) m!) p^b (1-p)^m
    t = target_seconds
    if t == 0:
        within = np.zeros_like(pt)
    else:
        b = nmu / theta + 1.0
        m = np.arange(pt.size, dtype=float)
        log_q = math.log(-math.expm1(-theta * t))
        log_pmf0 = -b * theta * t
        steps = np.log((b + m[:-1]) / (m[:-1] + 1.0)) + log_q
        log_pmf = np.concatenate(([log_pmf0], log_pmf0 + np.cumsum(steps)))
        cdf = np.minimum(np.cumsum(np.exp(log_pmf)), 1.0)
        within = 1.0 - cdf  # index k (= j - 1): P(T_j <= t)
    service_level = float(ph.sum() + (pt * served_share * within).sum())
    return QueueFigures(
        model="A",
        rate_per_hour=rate_per_hour,
        aht_seconds=aht_seconds,
        agents=n,
        target_seconds=target_seconds,
        patience_seconds=patience_seconds,
        offered_erlangs=lam * aht_seconds,
        prob_wait=prob_wait,
        service_level=service_level,
        asa_seconds=asa,
        mean_wait_seconds=lq / lam,
        abandon_prob=abandon,
        occupancy=lam * (1.0 - abandon) * aht_seconds / n,
        stable=True,
    )


def figures(
    *,
    rate_per_hour: float,
    aht_seconds: float,
    agents: int,
    target_seconds: float = 20.0,
    patience_seconds: float | None = None,
) -> QueueFigures:
    """Erlang A when a patience is given, else Erlang C."""
    if patience_seconds is None:
        return erlang_c(
            rate_per_hour=rate_per_hour,
            aht_seconds=aht_seconds,
            agents=agents,
            target_seconds=target_seconds,
        )
    return erlang_a(
        rate_per_hour=rate_per_hour,
        aht_seconds=aht_seconds,
        agents=agents,
        patience_seconds=patience_seconds,
        target_seconds=target_seconds,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Staffing:
    """The answer of :func:`staff`: the smallest agent count meeting every goal given."""

    agents: int
    """Agents needed (before shrinkage)."""
    figures: QueueFigures
    """The queue's figures at that agent count."""
    scheduled_agents: int
    """``ceil(agents / (1 - shrinkage))``: agents to schedule to have ``agents`` on the phones."""


def staff(
    *,
    rate_per_hour: float,
    aht_seconds: float,
    target_seconds: float = 20.0,
    service_level: float | None = 0.8,
    asa_seconds: float | None = None,
    max_occupancy: float | None = None,
    max_abandon: float | None = None,
    patience_seconds: float | None = None,
    shrinkage: float = 0.0,
    max_agents: int = 100_000,
) -> Staffing:
    """Smallest n with SL >= ``service_level``, ASA <= ``asa_seconds``, occupancy <=
    ``max_occupancy`` and P(abandon) <= ``max_abandon`` (each goal only when given).

    Every figure is monotone in n, so a bisection finds the smallest n meeting all goals.
    """
    if service_level is not None and not 0.0 <= service_level < 1.0:
        raise ErlangError(f"service-level: expected a share in [0, 1), got {service_level}")
    if asa_seconds is not None and not asa_seconds > 0:
        raise ErlangError(f"asa: expected seconds > 0, got {asa_seconds}")
    if max_occupancy is not None and not 0.0 < max_occupancy <= 1.0:
        raise ErlangError(f"max-occupancy: expected a share in (0, 1], got {max_occupancy}")
    if max_abandon is not None and not 0.0 < max_abandon <= 1.0:
        raise ErlangError(f"max-abandon: expected a share in (0, 1], got {max_abandon}")
    if not 0.0 <= shrinkage < 1.0:
        raise ErlangError(f"shrinkage: expected a share in [0, 1), got {shrinkage}")

    def meets(n: int) -> QueueFigures | None:
        f = figures(
            rate_per_hour=rate_per_hour,
            aht_seconds=aht_seconds,
            agents=n,
            target_seconds=target_seconds,
            patience_seconds=patience_seconds,
        )
        ok = f.stable
        if service_level is not None:
            ok = ok and f.service_level >= service_level
        if asa_seconds is not None:
            ok = ok and f.asa_seconds <= asa_seconds
        if max_occupancy is not None:
            ok = ok and f.occupancy <= max_occupancy
        if max_abandon is not None:
            ok = ok and f.abandon_prob <= max_abandon
        return f if ok else None

    # every figure is monotone in n: grow an upper bound, then bisect for the smallest n
    offered = rate_per_hour * aht_seconds / 3600.0
    hi = max(1, math.ceil(offered))
    found = meets(hi)
    while found is None:
        if hi >= max_agents:
            raise ErlangError(f"no agent count up to {max_agents} meets the goals")
        hi = min(max_agents, hi * 2)
        found = meets(hi)
    lo = 0  # meets(lo) is false (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        f = meets(mid)
        if f is None:
            lo = mid
        else:
            hi, found = mid, f
    return Staffing(
        agents=hi,
        figures=found,
        scheduled_agents=math.ceil(hi / (1.0 - shrinkage) - 1e-9),
    )
