"""Prometheus metrics for hotline, on prometheus_client.

Two kinds of numbers, kept apart on purpose:

* **Events** (a SIP request arrived, a call ended, a queued call was answered after 12 s) are
  counted or observed the moment they happen, through the small typed methods of
  :class:`HotlineMetrics` (``metrics.call_ended("inbound", "completed")``). Counters and histograms
  cannot be rebuilt later, so the code that sees the event records it.
* **State** (calls in progress, calls waiting per queue, agents by state, the SIP endpoint's own
  counters, the service level) is read at scrape time from the live objects through callables and
  a :class:`AcdSource` given to :meth:`HotlineMetrics.watch`. Nothing is copied, so nothing can
  drift from the truth, and this module imports neither ``hotline.app`` nor the engine.

Each :class:`HotlineMetrics` owns its own ``CollectorRegistry`` (never the global default one), so
tests and several instances in one process never collide; ``render()`` gives the body and content
type for ``GET /metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = structlog.get_logger(__name__)

WAIT_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
"""Seconds a caller waits in a queue: service-level targets sit at 10-30 s, abandons up to 10 min."""

RING_BUCKETS: tuple[float, ...] = (1, 2, 3, 5, 8, 10, 15, 20, 30, 60)
"""Seconds an agent's phone rings; ring timeouts are usually 15-30 s."""

SETUP_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds from INVITE received to 200 OK sent: milliseconds when healthy, seconds when not."""

AGENT_STATES: tuple[str, ...] = ("idle", "reserved", "on_call", "wrap_up", "paused", "logged_out")
"""States exported by ``hotline_queue_agents``; every state is exported (0 included) for each
queue so dashboards never see a series vanish when the last agent leaves a state."""


@dataclass(frozen=True, slots=True)
class QueueReading:
    """What the ACD knows about one queue at scrape time."""

    queue: str
    waiting: int
    """Calls waiting in the queue now."""
    longest_wait_seconds: float
    """How long the oldest waiting call has waited (0 when none waits)."""
    agents: Mapping[str, int] = field(default_factory=dict)
    """Member agents by state (keys from :data:`AGENT_STATES`)."""
    answered_within_target: int = 0
    """Calls answered within the queue's service-level target since the stats began."""
    finished: int = 0
    """Calls that finished in the queue (answered, abandoned, overflowed, voicemail, left)."""


class AcdSource(Protocol):
    """Anything that can describe the queues at scrape time (the engine behind a thin adapter,
    see :class:`EngineReadings`, or a test double)."""

    def queue_readings(self) -> Iterable[QueueReading]:
        """One reading per queue."""
        ...


class QueueFiguresLike(Protocol):
    """The two fields of ``acd.stats.CallFigures`` the service level needs."""

    @property
    def answered_in_sl(self) -> int: ...

    @property
    def finished(self) -> int: ...


class QueueStatsLike(Protocol):
    """``acd.stats.StatsAccumulator`` as seen from here: figures per queue."""

    @property
    def queues(self) -> Mapping[str, QueueFiguresLike]: ...


def agent_activity(status: str, state: str) -> str:
    """Fold the engine's (status, state) pair into one label value.

    The engine keeps the person's status (available, paused, logged out) apart from its own state
    (idle, reserved, on call, wrap-up). A wallboard wants one word: a paused agent finishing a call
    is still ``on_call``; a paused idle agent is ``paused``.
    """
    if status == "logged_out":
        return "logged_out"
    if state != "idle":
        return state
    return "paused" if status == "paused" else "idle"


class EngineReadings:
    """Adapter from ``AcdEngine.snapshot()`` and ``StatsAccumulator`` to :class:`AcdSource`.

    The engine's snapshot has the waiting calls and each agent's state but not which agents serve
    which queue (direct memberships and groups are resolved inside the engine), so the caller
    passes ``members``: queue name -> agent ids (e.g. built from the ACD configuration).
    """

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, Any]],
        members: Callable[[], Mapping[str, Iterable[str]]],
        stats: QueueStatsLike | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._members = members
        self._stats = stats

    def queue_readings(self) -> Iterator[QueueReading]:
        """One reading per queue of the engine's snapshot."""
        snap = self._snapshot()
        agents: Mapping[str, Mapping[str, Any]] = snap.get("agents", {})
        members = self._members()
        figures = self._stats.queues if self._stats is not None else {}
        for name, q in snap.get("queues", {}).items():
            by_state: dict[str, int] = {}
            for aid in members.get(name, ()):
                a = agents.get(aid)
                if a is None:
                    continue
                s = agent_activity(str(a.get("status")), str(a.get("state")))
                by_state[s] = by_state.get(s, 0) + 1
            f = figures.get(name)
            yield QueueReading(
                queue=name,
                waiting=int(q.get("waiting", 0)),
                longest_wait_seconds=float(q.get("oldest_wait", 0.0)),
                agents=by_state,
                answered_within_target=f.answered_in_sl if f is not None else 0,
                finished=f.finished if f is not None else 0,
            )


class _LiveCollector:
    """Reads the watched sources at scrape time (the prometheus_client custom-collector API).

    A source that raises is logged and skipped, so one broken callable costs its own families,
    never the whole scrape (the process metrics and event counters still arrive).
    """

    def __init__(self) -> None:
        self.calls_active: Callable[[], int] | None = None
        self.sip_transactions: Callable[[], int] | None = None
        self.registered_contacts: Callable[[], int] | None = None
        self.loop_lag: Callable[[], float] | None = None
        self.sip_endpoint_stats: Callable[[], Mapping[str, int]] | None = None
        self.sip_limited: Callable[[], Mapping[str, int]] | None = None
        self.acd: AcdSource | None = None

    def describe(self) -> Iterable[Metric]:
        """Names only, so the registry refuses a clash with another collector at registration."""
        for name, helptext in _GAUGES:
            yield GaugeMetricFamily(name, helptext)
        yield CounterMetricFamily("hotline_sip_endpoint_events", _SIP_EVENTS_HELP)
        yield CounterMetricFamily("hotline_sip_limited", _SIP_LIMITED_HELP)
        yield from _acd_families()

    def collect(self) -> Iterable[Metric]:
        """Build the families from the live sources."""
        for (name, helptext), source in zip(
            _GAUGES,
            (self.calls_active, self.sip_transactions, self.registered_contacts, self.loop_lag),
            strict=True,
        ):
            if source is None:
                continue
            try:
                value = float(source())
            except Exception:
                log.exception("metrics_source_failed", metric=name)
                continue
            yield GaugeMetricFamily(name, helptext, value=value)
        if self.sip_endpoint_stats is not None:
            try:
                stats = dict(self.sip_endpoint_stats())
            except Exception:
                log.exception("metrics_source_failed", metric="hotline_sip_endpoint_events")
            else:
                fam = CounterMetricFamily(
                    "hotline_sip_endpoint_events", _SIP_EVENTS_HELP, labels=["event"]
                )
                for event, count in sorted(stats.items()):
                    fam.add_metric([event], float(count))
                yield fam
        if self.sip_limited is not None:
            try:
                refused = dict(self.sip_limited())
            except Exception:
                log.exception("metrics_source_failed", metric="hotline_sip_limited")
            else:
                fam = CounterMetricFamily(
                    "hotline_sip_limited", _SIP_LIMITED_HELP, labels=["reason"]
                )
                for reason, count in sorted(refused.items()):
                    fam.add_metric([reason], float(count))
                yield fam
        if self.acd is not None:
            try:
                readings = list(self.acd.queue_readings())
            except Exception:
                log.exception("metrics_source_failed", metric="acd")
            else:
                yield from _acd_families(readings)


_GAUGES: tuple[tuple[str, str], ...] = (
    ("hotline_calls_active", "Calls in progress (SIP dialogs set up or being set up)"),
    ("hotline_sip_transactions", "SIP transactions held by the endpoint"),
    ("hotline_registered_contacts", "Registered softphone contacts (unexpired bindings)"),
    ("hotline_event_loop_lag_seconds", "Last measured asyncio event-loop lag"),
)

_SIP_LIMITED_HELP = (
    "SIP requests refused with 503 (or retransmissions dropped) by per-source limits and the "
    "set-up bound, by reason; the sources themselves are in the log"
)

_SIP_EVENTS_HELP = (
    "SIP endpoint events by event (parse errors, retransmissions absorbed, overload rejections...)"
)


def _acd_families(readings: Iterable[QueueReading] = ()) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "hotline_queue_waiting_calls", "Calls waiting in the queue, by queue", labels=["queue"]
    )
    longest = GaugeMetricFamily(
        "hotline_queue_longest_wait_seconds",
        "Wait of the oldest call waiting in the queue, by queue",
        labels=["queue"],
    )
    agents = GaugeMetricFamily(
        "hotline_queue_agents",
        "Agents serving the queue, by queue and state",
        labels=["queue", "state"],
    )
    in_target = CounterMetricFamily(
        "hotline_queue_answered_within_target",
        "Calls answered within the queue's service-level target, by queue",
        labels=["queue"],
    )
    finished = CounterMetricFamily(
        "hotline_queue_finished_calls",
        "Calls that finished in the queue (answered, abandoned, overflowed, voicemail, left), "
        "by queue",
        labels=["queue"],
    )
    level = GaugeMetricFamily(
        "hotline_queue_service_level_ratio",
        "Fraction of finished calls answered within the queue's target, by queue "
        "(absent until a call finished)",
        labels=["queue"],
    )
    for r in readings:
        waiting.add_metric([r.queue], float(r.waiting))
        longest.add_metric([r.queue], float(r.longest_wait_seconds))
        for state in sorted({*AGENT_STATES, *r.agents}):
            agents.add_metric([r.queue, state], float(r.agents.get(state, 0)))
        in_target.add_metric([r.queue], float(r.answered_within_target))
        finished.add_metric([r.queue], float(r.finished))
        if r.finished > 0:
            ratio = r.answered_within_target / r.finished
            if math.isfinite(ratio):
                level.add_metric([r.queue], ratio)
    yield from (waiting, longest, agents, in_target, finished, level)


class HotlineMetrics:
    """All of hotline's Prometheus metrics, on a registry of their own.

    Call the event methods where the event happens; hand the live sources to :meth:`watch` (or
    the constructor) once they exist; serve :meth:`render` at ``GET /metrics``.
    """

    def __init__(
        self,
        *,
        process: bool = True,
        calls_active: Callable[[], int] | None = None,
        sip_transactions: Callable[[], int] | None = None,
        registered_contacts: Callable[[], int] | None = None,
        loop_lag: Callable[[], float] | None = None,
        sip_endpoint_stats: Callable[[], Mapping[str, int]] | None = None,
        acd: AcdSource | None = None,
        sip_limited: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        self._sip_requests = Counter(
            "hotline_sip_requests_total", "SIP requests received, by method", ["method"], registry=r
        )
        self._calls = Counter(
            "hotline_calls_total",
            "Calls ended, by direction and outcome",
            ["direction", "outcome"],
            registry=r,
        )
        self._registrations = Counter(
            "hotline_registrations_total", "REGISTER requests, by outcome", ["outcome"], registry=r
        )
        self._refused = Counter(
            "hotline_refused_total",
            "Requests refused because of load (503 or rate limit), by reason",
            ["reason"],
            registry=r,
        )
        self._offered = Counter(
            "hotline_queue_calls_offered_total",
            "Calls that joined the queue, by queue",
            ["queue"],
            registry=r,
        )
        self._answered = Counter(
            "hotline_queue_calls_answered_total",
            "Queued calls answered by an agent, by queue",
            ["queue"],
            registry=r,
        )
        self._abandoned = Counter(
            "hotline_queue_calls_abandoned_total",
            "Queued calls whose caller hung up before an answer, by queue",
            ["queue"],
            registry=r,
        )
        self._voicemail = Counter(
            "hotline_queue_calls_voicemail_total",
            "Queued calls sent to voicemail, by queue",
            ["queue"],
            registry=r,
        )
        self._rona = Counter(
            "hotline_queue_rona_total",
            "Offers to an agent that rang out unanswered (RONA), by queue",
            ["queue"],
            registry=r,
        )
        self._lockouts = Counter(
            "hotline_auth_lockouts_total",
            "Accounts or source addresses locked after repeated failed sign-ins, by scope "
            "(account, source) and the channel of the failure that locked (http, sip, "
            "browser_phone)",
            ["scope", "channel"],
            registry=r,
        )
        self._connections_limited = Counter(
            "hotline_connections_limited_total",
            "Stream connections closed by a limit, by server (sip: TCP and TLS; http) and "
            "reason (per_source, global, idle_timeout, message_timeout, too_large)",
            ["server", "reason"],
            registry=r,
        )
        self._setup = Histogram(
            "hotline_call_setup_seconds",
            "Time from INVITE received to 200 OK sent",
            buckets=SETUP_BUCKETS,
            registry=r,
        )
        self._routing_delay = Histogram(
            "hotline_queue_routing_delay_seconds",
            "Time from joining the queue to the first offer to an agent, by queue",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self._wait = Histogram(
            "hotline_queue_wait_seconds",
            "Time from joining the queue to the call's end in it, by queue and outcome",
            ["queue", "outcome"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self._ring = Histogram(
            "hotline_offer_ring_seconds",
            "Time an agent's phone rang for an offer, by queue and outcome",
            ["queue", "outcome"],
            buckets=RING_BUCKETS,
            registry=r,
        )
        self._live = _LiveCollector()
        r.register(self._live)
        self.watch(
            calls_active=calls_active,
            sip_transactions=sip_transactions,
            registered_contacts=registered_contacts,
            loop_lag=loop_lag,
            sip_endpoint_stats=sip_endpoint_stats,
            acd=acd,
            sip_limited=sip_limited,
        )

    def watch(
        self,
        *,
        calls_active: Callable[[], int] | None = None,
        sip_transactions: Callable[[], int] | None = None,
        registered_contacts: Callable[[], int] | None = None,
        loop_lag: Callable[[], float] | None = None,
        sip_endpoint_stats: Callable[[], Mapping[str, int]] | None = None,
        acd: AcdSource | None = None,
        sip_limited: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """Set the sources read at scrape time; ``None`` keeps the current one.

        Separate from the constructor because the sources are built later than the metrics
        (the endpoint and the engine already want to count events while they start).
        A family whose source was never given is absent from the scrape, not a false 0.
        """
        live = self._live
        if calls_active is not None:
            live.calls_active = calls_active
        if sip_transactions is not None:
            live.sip_transactions = sip_transactions
        if registered_contacts is not None:
            live.registered_contacts = registered_contacts
        if loop_lag is not None:
            live.loop_lag = loop_lag
        if sip_endpoint_stats is not None:
            live.sip_endpoint_stats = sip_endpoint_stats
        if sip_limited is not None:
            live.sip_limited = sip_limited
        if acd is not None:
            live.acd = acd

    # --- SIP and calls ---------------------------------------------------------------------------

    def sip_request(self, method: str) -> None:
        """A SIP request arrived (retransmissions absorbed by the endpoint are not counted)."""
        self._sip_requests.labels(method=method.upper()).inc()

    def registration(self, outcome: str) -> None:
        """A REGISTER was answered: ``challenged``, ``200``, ``403``..."""
        self._registrations.labels(outcome=outcome).inc()

    def call_setup(self, seconds: float) -> None:
        """An INVITE was answered with 200 OK ``seconds`` after it arrived."""
        self._setup.observe(seconds)

    def call_ended(self, direction: str, outcome: str) -> None:
        """A call ended; ``outcome`` should be a short fixed word (``completed``, ``busy``...)."""
        self._calls.labels(direction=direction, outcome=outcome).inc()

    def refused(self, reason: str) -> None:
        """A request was turned away for load: ``overload`` (503), ``rate_limited``..."""
        self._refused.labels(reason=reason).inc()

    # --- queues ----------------------------------------------------------------------------------

    def queue_offered(self, queue: str) -> None:
        """A call joined ``queue`` (again after an overflow: it is offered to the new queue)."""
        self._offered.labels(queue=queue).inc()

    def queue_first_offer(self, queue: str, delay_seconds: float) -> None:
        """The engine rang the first agent for a call, ``delay_seconds`` after it joined."""
        self._routing_delay.labels(queue=queue).observe(delay_seconds)

    def queue_answered(self, queue: str, waited_seconds: float) -> None:
        """An agent answered a call that waited ``waited_seconds`` in ``queue``."""
        self._answered.labels(queue=queue).inc()
        self._wait.labels(queue=queue, outcome="answered").observe(waited_seconds)

    def queue_abandoned(self, queue: str, waited_seconds: float) -> None:
        """The caller hung up after ``waited_seconds`` in ``queue`` without an answer."""
        self._abandoned.labels(queue=queue).inc()
        self._wait.labels(queue=queue, outcome="abandoned").observe(waited_seconds)

    def queue_voicemail(self, queue: str, waited_seconds: float | None = None) -> None:
        """A queued call went to voicemail (the caller's choice or the queue's overflow)."""
        self._voicemail.labels(queue=queue).inc()
        if waited_seconds is not None:
            self._wait.labels(queue=queue, outcome="voicemail").observe(waited_seconds)

    def offer_ended(self, queue: str, outcome: str, ring_seconds: float) -> None:
        """An offer to an agent ended after ringing ``ring_seconds``.

        ``outcome`` is ``answered``, ``no_answer`` (also counted as RONA), ``rejected``,
        ``failed`` or ``cancelled``.
        """
        self._ring.labels(queue=queue, outcome=outcome).observe(ring_seconds)
        if outcome == "no_answer":
            self._rona.labels(queue=queue).inc()

    # --- sign-in --------------------------------------------------------------------------------

    def auth_lockout(self, scope: str, channel: str) -> None:
        """An account or a source address was locked (once per lock, not per attempt)."""
        self._lockouts.labels(scope=scope, channel=channel or "unknown").inc()

    # --- connections -----------------------------------------------------------------------------

    def connection_limited(self, server: str, reason: str) -> None:
        """A TCP/TLS/HTTP connection was refused or closed by a limit (every one counted)."""
        self._connections_limited.labels(server=server, reason=reason).inc()

    # --- exposition ------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The body and content type of ``GET /metrics`` (Prometheus text format)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
