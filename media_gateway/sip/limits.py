"""Per-source accounting of SIP requests, retransmissions and calls, and the set-up bound.

Pure and clock-injected (every method takes ``now``; nothing here logs, sleeps or reads a
clock), like ``lockout.py``. The endpoint asks before it takes on work, and the shell drains
:meth:`SourceLimits.take_changes` to write one log line per source when it becomes limited and
one when it recovers (never one per packet).

What is counted, per source **IP** (the port is ignored: one host, many sockets):

* **datagrams**, before they are parsed, against a generous bucket (``packet_rate``,
  ``packet_burst``): a flood from one address is dropped at the cost of a lookup, so it cannot
  lag the event loop (the other overload signal) for everybody;
* **new out-of-dialog requests** (INVITE, OPTIONS, REGISTER...; not ACK or CANCEL) against a
  token bucket (``request_rate`` per second, ``request_burst`` at once);
* **absorbed retransmissions** (a request matching a transaction we already hold). A source may
  have ``retransmission_rate`` per second (``retransmission_burst`` at once) plus
  ``retransmissions_per_request`` for each new request it sends (a busy trunk on a lossy link
  retransmits in proportion to its calls); past that a retransmission is dropped unanswered
  and the source is limited. Whatever the source's traffic, only ``retransmission_rate``
  (``retransmission_burst`` at once) of its retransmissions reach the global retransmission
  signal (:meth:`retransmission_rate`), below that signal's threshold: one source, however
  fast it resends, cannot raise the overload flag that refuses everybody's calls;
* **calls in set-up** (an inbound INVITE that has had only 100 Trying) and **calls up** (answered,
  not yet ended), each against a per-source cap.

A source that exceeds a rate is *limited* for ``hold`` seconds after its last excess: its new
out-of-dialog requests get 503 with Retry-After (the seconds left). A source at a calls cap
has its new INVITEs refused (Retry-After: 1) only while it is at the cap: what it exceeded is
its calls in progress, not its history. In-dialog requests (BYE,
re-INVITE) always pass, so calls already up end cleanly. Why 503 and not 403: a source address
is often a NAT or a carrier's gateway carrying many honest callers; 503 + Retry-After tells
them to come back, 403 would tell them never to. (Password guessing is answered 403 by
``lockout.py``, which is about accounts, not load.)

The **set-up bound** (global): when more than ``max_calls_in_setup`` inbound INVITEs wait for
their first answer, or the oldest of the *backlog* waits longer than ``max_setup_age``, new
INVITEs get 503 at once instead of joining a queue of seconds. The backlog is the INVITEs that
arrived after the newest one already answered: one INVITE the service is slow to answer (or
never answers) is overtaken by the next and stops counting for the age, so it cannot shut the
door on everybody; it still counts for the number.

Memory is bounded: at most ``max_sources`` sources keep rate state (the least recently seen
are forgotten first); call counts are kept apart, only for sources with calls in set-up or up
(as many as there are calls, which the other limits bound).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["LimitChange", "LimitsConfig", "Reason", "SourceLimits"]

Reason = Literal[
    "packet_rate",
    "request_rate",
    "retransmission_rate",
    "source_calls_in_setup",
    "source_calls_up",
    "calls_in_setup",
    "setup_age",
]
"""Why a request was refused or a datagram dropped (the metric's label). The first five are a
source's own; the last two are the global set-up bound."""

REASONS: tuple[Reason, ...] = (
    "packet_rate",
    "request_rate",
    "retransmission_rate",
    "source_calls_in_setup",
    "source_calls_up",
    "calls_in_setup",
    "setup_age",
)

_RATE_REASONS = frozenset({"packet_rate", "request_rate", "retransmission_rate"})
"""Limits whose hold refuses all of the source's new out-of-dialog requests."""

_CAP_HOLD = 1.0
"""A calls cap's episode (one log line each way) lasts until this long after its last refusal;
meanwhile only INVITEs are refused, and only while the source is at its cap."""

_AGE_SCAN = 64
"""At most this many INVITEs, oldest first, are passed over when looking for the backlog's
oldest (answered-around ones leave the set quickly; a longer scan is not worth the time)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """The limits (``[sip.limits]`` in the configuration). 0 switches a limit off."""

    packet_rate: float = 10_000.0
    """Datagrams per second from one source IP; past it they are dropped before parsing, so a
    flood from one address costs a dictionary lookup each, not a parse (nor event-loop lag)."""
    packet_burst: float = 20_000.0
    """...and at once."""
    request_rate: float = 1000.0
    """New out-of-dialog requests per second from one source IP."""
    request_burst: float = 2000.0
    """...and at once."""
    retransmission_rate: float = 10.0
    """Absorbed retransmissions per second from one source IP (honest peers resend a request
    a dozen times at most, over 32 s, and only when packets are lost)."""
    retransmission_burst: float = 20.0
    """...and at once."""
    retransmissions_per_request: float = 1.0
    """More absorbed retransmissions allowed to a source for each new request it sends (they
    accrue up to ``request_burst`` times this)."""
    calls_in_setup_per_source: int = 100
    """Inbound INVITEs from one source IP waiting for their first answer (half the set-up
    bound: one source cannot take all of it; 1,000 calls/s answered in 100 ms)."""
    calls_up_per_source: int = 5000
    """Answered inbound calls from one source IP."""
    max_calls_in_setup: int = 200
    """The set-up bound: inbound INVITEs waiting for their first answer, from all sources."""
    max_setup_age: float = 1.0
    """The set-up bound: seconds the oldest INVITE of the backlog may wait for an answer."""
    hold: float = 5.0
    """A limited source stays limited this long after its last excess."""
    max_sources: int = 100_000
    """Sources whose rates are tracked; the least recently seen are forgotten first."""
    trusted: frozenset[str] = frozenset()
    """Source IPs exempt from the per-source limits (the trunks, a SIP proxy in front): one such
    address carries many callers. The global set-up bound still applies to them."""

    def __post_init__(self) -> None:
        for name in ("packet_rate", "packet_burst", "request_rate", "request_burst"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if min(self.retransmission_rate, self.retransmission_burst, self.max_setup_age) < 0:
            raise ValueError("retransmission_rate, retransmission_burst, max_setup_age >= 0")
        if self.hold <= 0:
            raise ValueError("hold must be > 0")
        if self.max_sources < 1:
            raise ValueError("max_sources must be at least 1")


@dataclass(frozen=True, slots=True)
class LimitChange:
    """A source became limited (``limited``) or recovered: what the shell logs, once."""

    source: str
    limited: bool
    reason: Reason
    at: float
    refused: int = 0
    """On recovery: how many requests were refused (or retransmissions dropped) meanwhile."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float

    def refill(self, rate: float, burst: float, now: float) -> None:
        if now > self.at:
            self.tokens = min(burst, self.tokens + (now - self.at) * rate)
            self.at = now

    def take(self, rate: float, burst: float, now: float) -> bool:
        """Refill for the time passed, then take one token if there is one."""
        self.refill(rate, burst, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class _Source:
    requests: _Bucket
    retransmissions: _Bucket
    """The source's share of the global retransmission signal."""
    answered: _Bucket
    """Retransmissions the source may have answered (refilled by its requests too)."""
    packets: _Bucket
    limited_until: float = 0.0
    reason: Reason = "request_rate"
    refused: int = 0


@dataclass(slots=True)
class _Calls:
    setup: int = 0
    up: int = 0


@dataclass(slots=True)
class _Window:
    """Counts per 0.1 s slot over the last second (the global retransmission signal)."""

    slots: list[int] = field(default_factory=lambda: [0] * 10)
    index: int = 0
    """Absolute slot number (floor(now / 0.1)) of ``slots[index % 10]``."""

    def add(self, now: float) -> None:
        self._advance(now)
        self.slots[self.index % 10] += 1

    def total(self, now: float) -> int:
        self._advance(now)
        return sum(self.slots)

    def _advance(self, now: float) -> None:
        slot = math.floor(now * 10)
        if slot <= self.index:
            return
        for k in range(self.index + 1, min(slot, self.index + 10) + 1):
            self.slots[k % 10] = 0
        self.index = slot


class SourceLimits:
    """Per-source buckets and call counts, the limited sources, and the set-up bound."""

    def __init__(self, config: LimitsConfig | None = None) -> None:
        self.config = config or LimitsConfig()
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._calls: dict[str, _Calls] = {}
        self._setup: dict[object, tuple[str, float]] = {}
        """Inbound INVITEs waiting for their first answer: key -> (source IP, arrival)."""
        self._up: dict[object, str] = {}
        self._newest_answered = -math.inf
        """Arrival time of the newest INVITE answered so far (the backlog starts after it)."""
        self._retransmissions = _Window()
        self._changes: list[LimitChange] = []
        self._bound_reason: Reason | None = None
        self._answer_cap = max(
            self.config.retransmission_burst,
            self.config.retransmissions_per_request * self.config.request_burst,
        )
        self.refused: dict[str, int] = dict.fromkeys(REASONS, 0)
        """Requests refused (retransmissions dropped) by reason, since start: the metric."""

    # -- reads --------------------------------------------------------------------------------

    @property
    def calls_in_setup(self) -> int:
        return len(self._setup)

    @property
    def calls_up(self) -> int:
        return len(self._up)

    @property
    def tracked_sources(self) -> int:
        return len(self._sources)

    def limited(self, now: float) -> list[tuple[str, Reason, float]]:
        """Sources limited now: (IP, reason, seconds left)."""
        return [
            (ip, s.reason, s.limited_until - now)
            for ip, s in self._sources.items()
            if s.limited_until > now
        ]

    def retransmission_rate(self, now: float) -> float:
        """Retransmissions per second over the last second, each source counted only within
        its own allowance (the global overload signal's input)."""
        return float(self._retransmissions.total(now))

    def setup_age(self, now: float) -> float:
        """How long the oldest INVITE of the backlog has waited (0 when there is none)."""
        for _ip, arrived in itertools.islice(self._setup.values(), _AGE_SCAN):
            if arrived > self._newest_answered:
                return now - arrived
        return 0.0

    def take_changes(self) -> list[LimitChange]:
        """Sources that became limited or recovered since the last call (for the log)."""
        out, self._changes = self._changes, []
        return out

    # -- admission ----------------------------------------------------------------------------

    def admit_packet(self, ip: str, now: float) -> bool:
        """A datagram from ``ip``, before it is parsed: False to drop it (past the source's
        packet rate; the source is limited)."""
        c = self.config
        if c.packet_rate <= 0 or ip in c.trusted:
            return True
        source = self._source(ip, now)
        if source.packets.take(c.packet_rate, c.packet_burst, now):
            return True
        self._limit(ip, source, "packet_rate", now)
        self._refuse(source, "packet_rate", now)
        return False

    def admit_request(self, ip: str, now: float) -> tuple[Reason, float] | None:
        """A new out-of-dialog request from ``ip`` (not ACK, not CANCEL). ``None`` to serve
        it, else (reason, seconds until the source may retry) for a 503."""
        c = self.config
        if ip in c.trusted:
            return None
        source = self._source(ip, now)
        self._credit(source, now)
        within = c.request_rate <= 0 or source.requests.take(c.request_rate, c.request_burst, now)
        if source.limited_until > now and source.reason in _RATE_REASONS:
            if not within:  # still flooding: the hold runs from this excess
                self._limit(ip, source, "request_rate", now)
            return self._refuse(source, source.reason, now)
        if not within:
            self._limit(ip, source, "request_rate", now)
            return self._refuse(source, "request_rate", now)
        return None

    def admit_invite(self, ip: str, now: float) -> tuple[Reason, float] | None:
        """A new inbound INVITE (after :meth:`admit_request`): its calls caps and the set-up
        bound. ``None`` to take it, else (reason, Retry-After seconds)."""
        c = self.config
        calls = self._calls.get(ip)
        if calls is not None and ip not in c.trusted:
            if c.calls_in_setup_per_source and calls.setup >= c.calls_in_setup_per_source:
                return self._refuse_calls(ip, "source_calls_in_setup", now)
            if c.calls_up_per_source and calls.up >= c.calls_up_per_source:
                return self._refuse_calls(ip, "source_calls_up", now)
        reason: Reason | None = None
        if c.max_calls_in_setup and len(self._setup) >= c.max_calls_in_setup:
            reason = "calls_in_setup"
        elif c.max_setup_age and self.setup_age(now) > c.max_setup_age:
            reason = "setup_age"
        if reason is not None and self._bound_reason is None:
            self._changes.append(LimitChange("*", True, reason, now))
        elif reason is None and self._bound_reason is not None:
            self._changes.append(LimitChange("*", False, self._bound_reason, now))
        if reason is None or self._bound_reason is None:
            self._bound_reason = reason
        if reason is not None:
            self.refused[reason] += 1
            return reason, c.max_setup_age or 1.0
        return None

    def retransmission(self, ip: str, now: float) -> bool:
        """An absorbed retransmission from ``ip``: True to answer it (within the source's
        allowance), False to drop it (the source is limited). Counted in the global signal only
        within the source's fixed share."""
        c = self.config
        source = self._source(ip, now)
        if source.retransmissions.take(c.retransmission_rate, c.retransmission_burst, now):
            self._retransmissions.add(now)
        if c.retransmission_rate <= 0 and c.retransmission_burst <= 0:  # off
            self._retransmissions.add(now)
            return True
        if source.answered.take(c.retransmission_rate, self._answer_cap, now):
            return True
        self._limit(ip, source, "retransmission_rate", now)
        self._refuse(source, "retransmission_rate", now)
        return False

    def transaction(self, ip: str, now: float) -> None:
        """A new request from ``ip`` that :meth:`admit_request` does not see (in-dialog, CANCEL):
        it earns the source retransmissions."""
        self._credit(self._source(ip, now), now)

    # -- calls --------------------------------------------------------------------------------

    def setup_started(self, key: object, ip: str, now: float) -> None:
        """An inbound INVITE was taken on (100 Trying sent)."""
        self._setup[key] = (ip, now)
        self._calls.setdefault(ip, _Calls()).setup += 1

    def setup_done(self, key: object) -> None:
        """The INVITE had its first answer beyond 100 (ringing, answered or refused), or its
        call ended. Idempotent."""
        entry = self._setup.pop(key, None)
        if entry is None:
            return
        ip, arrived = entry
        self._newest_answered = max(self._newest_answered, arrived)
        self._uncount(ip, setup=-1)

    def call_up(self, key: object, ip: str) -> None:
        """An inbound call was answered (2xx)."""
        if key not in self._up:
            self._up[key] = ip
            self._calls.setdefault(ip, _Calls()).up += 1

    def call_ended(self, key: object) -> None:
        """An inbound call ended, answered or not. Idempotent."""
        self.setup_done(key)
        ip = self._up.pop(key, None)
        if ip is not None:
            self._uncount(ip, up=-1)

    # -- housekeeping -------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        """Note the sources whose limit ran out (the shell calls it a few times a second), and
        the set-up bound's end when no INVITE came to notice it."""
        for ip, source in self._sources.items():
            if source.limited_until and source.limited_until <= now:
                self._changes.append(LimitChange(ip, False, source.reason, now, source.refused))
                source.limited_until = 0.0
                source.refused = 0
        if self._bound_reason is not None:
            c = self.config
            still = (c.max_calls_in_setup and len(self._setup) >= c.max_calls_in_setup) or (
                c.max_setup_age and self.setup_age(now) > c.max_setup_age
            )
            if not still:
                self._changes.append(LimitChange("*", False, self._bound_reason, now))
                self._bound_reason = None

    # -- internals ----------------------------------------------------------------------------

    def _source(self, ip: str, now: float) -> _Source:
        source = self._sources.get(ip)
        if source is None:
            c = self.config
            source = _Source(
                requests=_Bucket(c.request_burst, now),
                retransmissions=_Bucket(c.retransmission_burst, now),
                answered=_Bucket(c.retransmission_burst, now),
                packets=_Bucket(c.packet_burst, now),
            )
            self._sources[ip] = source
            if len(self._sources) > c.max_sources:
                self._evict()
        else:
            self._sources.move_to_end(ip)
        return source

    def _credit(self, source: _Source, now: float) -> None:
        c = self.config
        bucket = source.answered
        bucket.refill(c.retransmission_rate, self._answer_cap, now)
        bucket.tokens = min(self._answer_cap, bucket.tokens + c.retransmissions_per_request)

    def _evict(self) -> None:
        """Forget the least recently seen source (a limited one is forgotten too: its state
        is only rate history, and a source that keeps sending is seen again at once)."""
        ip, source = self._sources.popitem(last=False)
        if source.limited_until:
            self._changes.append(
                LimitChange(ip, False, source.reason, source.limited_until, source.refused)
            )

    def _limit(
        self, ip: str, source: _Source, reason: Reason, now: float, hold: float | None = None
    ) -> None:
        fresh = source.limited_until <= now or (
            reason in _RATE_REASONS and source.reason not in _RATE_REASONS
        )
        if fresh:
            if source.limited_until:  # expired but not yet polled, or a calls cap's episode
                self._changes.append(LimitChange(ip, False, source.reason, now, source.refused))
                source.limited_until = 0.0
            source.refused = 0
            source.reason = reason
            self._changes.append(LimitChange(ip, True, reason, now))
        until = now + (self.config.hold if hold is None else hold)
        source.limited_until = max(source.limited_until, until)

    def _refuse(self, source: _Source, reason: Reason, now: float) -> tuple[Reason, float]:
        source.refused += 1
        self.refused[reason] += 1
        return reason, max(source.limited_until - now, 1.0)

    def _refuse_calls(self, ip: str, reason: Reason, now: float) -> tuple[Reason, float]:
        """A per-source calls cap: this INVITE is refused; the episode is noted for the log."""
        source = self._source(ip, now)
        self._limit(ip, source, reason, now, _CAP_HOLD)
        return self._refuse(source, reason, now)

    def _uncount(self, ip: str, *, setup: int = 0, up: int = 0) -> None:
        calls = self._calls.get(ip)
        if calls is None:
            return
        calls.setup += setup
        calls.up += up
        if calls.setup <= 0 and calls.up <= 0:
            del self._calls[ip]
