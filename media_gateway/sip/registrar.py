"""A registrar (RFC 3261 §10.3) as a pure object: bindings per user, time passed in.

Each binding keeps the Contact URI the phone registered *and the address the REGISTER came
from* (and its transport). Calls to an agent go to that source address, not to the host in the
Contact: a phone behind NAT is reachable there, and no hostname taken from a message is ever
resolved (the Contact is still sent as the Request-URI).

``changes`` in every result (and from ``expire``) say when a user's first device registers or
its last one goes away, so the ACD can pause an agent whose phone disappeared.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Literal

from media_gateway.sip.headers import NameAddr


@dataclass(slots=True)
class Binding:
    user: str
    contact: str
    """The Contact URI as registered (URI parameters and escaped headers kept)."""
    source: tuple[str, int]
    """Where the REGISTER came from: calls to this binding go there."""
    transport: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    registered_at: float


@dataclass(frozen=True, slots=True)
class DeviceChange:
    user: str
    kind: Literal["registered", "unregistered"]

    def __str__(self) -> str:
        return f"{self.user} {self.kind}"


@dataclass(slots=True)
class RegisterResult:
    status: int
    """200, 400 (bad request), 403 (too many bindings), 423 (interval too brief) or 500
    (out-of-order CSeq)."""
    bindings: list[Binding] = field(default_factory=list)
    """The user's bindings after the request (for the Contact headers of the 200)."""
    min_expires: int | None = None
    reason: str = ""
    changes: list[DeviceChange] = field(default_factory=list)


class Registrar:
    def __init__(
        self,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_bindings: int = 10,
    ) -> None:
        """``max_bindings`` bounds the devices of one user: a REGISTER that would leave more
        live bindings is refused with 403 and changes nothing (memory stays bounded even if
        an authenticated phone invents a new Contact on every refresh)."""
        self.max_bindings = max_bindings
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._heap: list[tuple[float, str, str]] = []

    def _expires_of(self, contact: NameAddr, header: int | None) -> int:
        value = contact.params.get("expires")
        if value is not None and value.isdigit():
            return int(value)
        if header is not None and header >= 0:
            return header
        return self.default_expires

    def register(
        self,
        user: str,
        contacts: list[NameAddr] | Literal["*"],
        expires_header: int | None,
        call_id: str,
        cseq: int,
        now: float,
        *,
        source: tuple[str, int],
        transport: str,
    ) -> RegisterResult:
        """Apply one REGISTER for ``user`` (RFC 3261 §10.3 steps 6-8).

        ``contacts`` is the parsed Contact list (empty for a query), ``"*"`` for a wildcard.
        The request is validated as a whole before any binding changes. ``source`` and
        ``transport`` are where the REGISTER arrived from: calls to the user go there.

        Bindings that expired before ``now`` are purged first, so ``changes`` may also name
        other users whose last device timed out (the same events ``expire`` would return).
        """
        expired = self.expire(now)
        result = self._apply(
            user, contacts, expires_header, call_id, cseq, now, source=source, transport=transport
        )
        result.changes[:0] = expired
        return result

    def _apply(
        self,
        user: str,
        contacts: list[NameAddr] | Literal["*"],
        expires_header: int | None,
        call_id: str,
        cseq: int,
        now: float,
        *,
        source: tuple[str, int],
        transport: str,
    ) -> RegisterResult:
        had = bool(self.contacts(user, now))
        current = self._bindings.get(user, {})
        if contacts == "*":
            if expires_header != 0:
                return RegisterResult(400, reason="Contact: * needs Expires: 0")
            for b in current.values():
                if b.call_id == call_id and cseq <= b.cseq:
                    return RegisterResult(500, reason="CSeq out of order")
            current.clear()
            return self._result(user, now, had)
        # Validate the whole request before changing anything (§10.3 step 6-7 are atomic).
        planned: list[tuple[NameAddr, int]] = []
        for contact in contacts:
            expires = self._expires_of(contact, expires_header)
            if 0 < expires < self.min_expires:
                return RegisterResult(
                    423, min_expires=self.min_expires, reason="Interval Too Brief"
                )
            existing = current.get(contact.uri)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return RegisterResult(500, reason="CSeq out of order")
            planned.append((contact, min(expires, self.max_expires)))
        adding = {c.uri for c, e in planned if e > 0}
        removing = {c.uri for c, e in planned if e == 0}
        live = {b.contact for b in current.values() if b.expires_at > now}
        if len((live - removing) | adding) > self.max_bindings:
            return RegisterResult(403, reason="Too many bindings")
        if planned:
            self._bindings[user] = current
        for contact, expires in planned:
            if expires == 0:
                current.pop(contact.uri, None)
                continue
            q_text = contact.params.get("q")
            try:
                q = min(1.0, max(0.0, float(q_text))) if q_text else 1.0
            except ValueError:
                q = 1.0
            b = Binding(
                user=user,
                contact=contact.uri,
                source=source,
                transport=transport,
                expires_at=now + expires,
                q=q,
                call_id=call_id,
                cseq=cseq,
                registered_at=now,
            )
            current[contact.uri] = b
            heapq.heappush(self._heap, (b.expires_at, user, contact.uri))
        return self._result(user, now, had)

    def _result(self, user: str, now: float, had: bool) -> RegisterResult:
        bindings = self.contacts(user, now)
        if not bindings:
            self._bindings.pop(user, None)
        changes: list[DeviceChange] = []
        if bindings and not had:
            changes.append(DeviceChange(user, "registered"))
        elif had and not bindings:
            changes.append(DeviceChange(user, "unregistered"))
        return RegisterResult(200, bindings=bindings, changes=changes)

    def contacts(self, user: str, now: float) -> list[Binding]:
        """Live bindings, best first: highest q, then most recently registered."""
        live = [b for b in self._bindings.get(user, {}).values() if b.expires_at > now]
        live.sort(key=lambda b: (-b.q, -b.registered_at))
        return live

    def users(self) -> list[str]:
        return list(self._bindings)

    def expire(self, now: float) -> list[DeviceChange]:
        """Drop expired bindings; report users whose last device went away."""
        changes: list[DeviceChange] = []
        while self._heap and self._heap[0][0] <= now:
            at, user, uri = heapq.heappop(self._heap)
            b = self._bindings.get(user, {}).get(uri)
            if b is None or b.expires_at != at:
                continue  # refreshed or removed since: a stale heap entry
            del self._bindings[user][uri]
            if not self._bindings[user]:
                del self._bindings[user]
                changes.append(DeviceChange(user, "unregistered"))
        return changes

    def next_deadline(self) -> float | None:
        while self._heap:
            at, user, uri = self._heap[0]
            b = self._bindings.get(user, {}).get(uri)
            if b is not None and b.expires_at == at:
                return at
            heapq.heappop(self._heap)
        return None
