"""RFC 3261 timer values (§17.1.1.1, §17.1.2.2, §17.2.1, §17.2.2, Table 4 in §A) and the timer heap.

Names follow the RFC so a reader can put the table next to the code:

=======  ==========================  =====================================================
Timer    Value                       Meaning
=======  ==========================  =====================================================
T1       0.5 s                       RTT estimate (§17.1.1.1)
T2       4 s                         maximum retransmit interval for non-INVITE / 2xx (§17.1.2.2)
T4       5 s                         maximum time a message stays in the network (§17.1.2.2)
A        T1, doubling                INVITE request retransmit, unreliable only (§17.1.1.2)
B        64*T1                       INVITE client transaction timeout (§17.1.1.2)
D        >32 s UDP, 0 reliable       wait for response retransmits (§17.1.1.2)
E        T1, doubling up to T2       non-INVITE request retransmit, unreliable only (§17.1.2.2)
F        64*T1                       non-INVITE client transaction timeout (§17.1.2.2)
G        T1, doubling up to T2       INVITE final response retransmit, unreliable (§17.2.1)
H        64*T1                       wait for ACK receipt (§17.2.1)
I        T4 UDP, 0 reliable          wait for ACK retransmits (§17.2.1)
J        64*T1 UDP, 0 reliable       wait for non-INVITE request retransmits (§17.2.2)
K        T4 UDP, 0 reliable          wait for response retransmits (§17.1.2.2)
L        64*T1                       RFC 6026 §8.7: INVITE server "Accepted" state lifetime
M        64*T1                       RFC 6026 §8.4: INVITE client "Accepted" state lifetime
=======  ==========================  =====================================================

``TimerHeap`` keeps every pending deadline in one ``heapq`` with *lazy deletion*: an entry is
``(when, seq, owner, name)`` and counts only while ``owner.deadlines[name] == when``, so
re-arming or cancelling is a dict write, never a heap search, and no object is allocated per
retransmission beyond the tuple.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Protocol

T1 = 0.5
"""RFC 3261 §17.1.1.1 default round-trip estimate, seconds."""
T2 = 4.0
"""RFC 3261 §17.1.2.2 maximum retransmit interval for non-INVITE requests and INVITE responses."""
T4 = 5.0
"""RFC 3261 §17.1.2.2 maximum duration a message remains in the network."""
TIMER_B = 64 * T1
TIMER_D = 32.0
TIMER_F = 64 * T1
TIMER_H = 64 * T1
TIMER_I = T4
TIMER_J = 64 * T1
TIMER_K = T4


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerValues:
    """T1/T2/T4 of one endpoint and the timers derived from them (RFC 3261 Table 4)."""

    t1: float = T1
    """RTT estimate (§17.1.1.1); the A/E/G start interval and the 64*T1 timeouts follow it."""
    t2: float = T2
    """Cap of the E and G retransmit intervals and of 2xx retransmissions (§13.3.1.4)."""
    t4: float = T4
    """Maximum message lifetime in the network: Timers I and K on unreliable transports."""

    @property
    def timer_a(self) -> float:
        return self.t1

    @property
    def timer_b(self) -> float:
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """§17.1.1.2: at least 32 s for unreliable transports, zero for reliable ones."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        return self.t1

    @property
    def timer_f(self) -> float:
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        return self.t1

    @property
    def timer_h(self) -> float:
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        return 64 * self.t1


class TimerOwner(Protocol):
    """Anything with named deadlines: transactions and calls."""

    deadlines: dict[str, float]


class TimerHeap:
    """One heap for every timer of an endpoint, with lazy deletion (see module docstring)."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerOwner, str]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def set(self, owner: TimerOwner, name: str, when: float) -> None:
        """Arm (or re-arm) ``owner``'s timer ``name`` for ``when``."""
        owner.deadlines[name] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, owner, name))

    @staticmethod
    def cancel(owner: TimerOwner, name: str) -> None:
        owner.deadlines.pop(name, None)

    def next_deadline(self) -> float | None:
        """The earliest live deadline; stale heap entries are discarded on the way."""
        heap = self._heap
        while heap:
            when, _, owner, name = heap[0]
            if owner.deadlines.get(name) == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> tuple[TimerOwner, str] | None:
        """Remove and return the next live timer due at ``now``, or ``None``."""
        heap = self._heap
        while heap:
            when, _, owner, name = heap[0]
            if owner.deadlines.get(name) != when:
                heapq.heappop(heap)
                continue
            if when > now:
                return None
            heapq.heappop(heap)
            del owner.deadlines[name]
            return owner, name
        return None
