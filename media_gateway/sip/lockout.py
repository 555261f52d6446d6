"""Brute-force protection for passwords: repeated failures are slowed down, then locked.

One :class:`Lockout` serves every place a password is checked: SIP REGISTER digests
(``media_gateway/registrations.py``), the browser phone's login (``media_gateway/webrtc.py``)
and the staff API's sign-in (``hotline/auth/``), so guesses on one channel count on the others.

Two keys are counted, each against its own limit:

* the **account** name as given, whether or not such an account exists: an unknown name is
  slowed and locked exactly like a real one, so a lock reveals nothing about which names exist;
* the **source** address (the IP, without the port), over all the accounts it tries: one address
  cannot walk through many names a few guesses each.

A lock lasts ``lockout_seconds`` and is not extended by attempts made while it holds (else a
guesser could keep a colleague locked out forever at no cost); when it ends the count starts
again from zero. Failures older than ``window_seconds`` are forgotten. A success clears the
account's count, not the source's (a guesser with one valid account cannot reset their address
by signing in between guesses).

Pure and clock-injected: every method takes ``now``; nothing here logs or sleeps. The shells
apply :attr:`Verdict.delay` and learn of each new lock through ``on_lock`` (one log line and one
counter per lock, not per attempt).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Scope = Literal["account", "source"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutPolicy:
    """How many failures, and how long a lock (``[security]`` in the configuration)."""

    max_failures: int = 5
    """Failed attempts on one account before it is locked."""
    lockout_seconds: float = 300.0
    """How long a lock lasts."""
    source_max_failures: int = 20
    """Failed attempts from one source address, over all accounts, before it is locked."""
    window_seconds: float = 900.0
    """A count whose last failure is older than this starts again from zero."""
    slow_after: int = 2
    """Failures on a key before its failed answers are held back."""
    delay_seconds: float = 0.25
    """The first hold-back; it doubles with each further failure..."""
    max_delay_seconds: float = 2.0
    """...up to this."""

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.source_max_failures < 1:
            raise ValueError("max_failures and source_max_failures must be at least 1")
        if self.lockout_seconds <= 0 or self.window_seconds <= 0:
            raise ValueError("lockout_seconds and window_seconds must be > 0")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with an attempt (:meth:`Lockout.check`) or a failure (:meth:`Lockout.failed`)."""

    locked: bool = False
    """Refuse without checking the password (or: this failure just locked a key)."""
    retry_after: float = 0.0
    """Seconds until the lock ends (0 when not locked)."""
    delay: float = 0.0
    """Seconds to hold back a failed answer (the slow-down before the lock)."""
    scope: Scope | None = None
    """Which key is locked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Locked:
    """A key was just locked: what ``on_lock`` hears, once per lock."""

    scope: Scope
    key: str
    """The account name, or the source address."""
    failures: int
    at: float
    until: float
    channel: str
    """Where the failure that locked it came from (``http``, ``sip``, ``browser_phone``)."""


@dataclass(slots=True)
class _Count:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class Lockout:
    """Failure counts per account and per source address, with their locks."""

    def __init__(
        self,
        policy: LockoutPolicy | None = None,
        *,
        on_lock: Callable[[Locked], None] | None = None,
        max_tracked: int = 100_000,
    ) -> None:
        self.policy = policy or LockoutPolicy()
        self.on_lock = on_lock
        self.max_tracked = max_tracked
        self._counts: OrderedDict[tuple[Scope, str], _Count] = OrderedDict()

    # -- reads ----------------------------------------------------------------------------------

    def _current(self, scope: Scope, key: str, now: float) -> _Count | None:
        """The live count of a key (None: nothing counted, or it expired, then forgotten)."""
        count = self._counts.get((scope, key))
        if count is None:
            return None
        if count.locked_until:
            if now < count.locked_until:
                return count
        elif now - count.last <= self.policy.window_seconds:
            return count
        del self._counts[(scope, key)]
        return None

    def _keys(self, user: str, source: str) -> list[tuple[Scope, str]]:
        keys: list[tuple[Scope, str]] = [("account", user)]
        if source:
            keys.append(("source", source))
        return keys

    def check(self, user: str, source: str, now: float) -> Verdict:
        """Before checking a password: is the account, or the source address, locked?"""
        for scope, key in self._keys(user, source):
            count = self._current(scope, key, now)
            if count is not None and count.locked_until:
                return Verdict(locked=True, retry_after=count.locked_until - now, scope=scope)
        return Verdict()

    def locked(self, now: float) -> list[tuple[Scope, str, float]]:
        """Every lock in force: (scope, key, seconds left)."""
        return [
            (scope, key, c.locked_until - now)
            for (scope, key), c in list(self._counts.items())
            if self._current(scope, key, now) is not None and c.locked_until
        ]

    # -- writes ---------------------------------------------------------------------------------

    def failed(self, user: str, source: str, now: float, *, channel: str = "") -> Verdict:
        """A wrong password (or an unknown name) for ``user`` from ``source``: count it. The
        verdict's ``delay`` is how long to hold back the answer; ``locked`` when this failure
        locked the account or the address (``on_lock`` has heard of it)."""
        policy = self.policy
        limits: dict[Scope, int] = {
            "account": policy.max_failures,
            "source": policy.source_max_failures,
        }
        worst = 0
        verdict_lock: Verdict | None = None
        for scope, key in self._keys(user, source):
            count = self._current(scope, key, now)
            if count is None:
                count = self._counts[(scope, key)] = _Count()
            self._counts.move_to_end((scope, key))
            if count.locked_until:
                # a failure while locked (a caller that skipped check()): no extension
                verdict_lock = verdict_lock or Verdict(
                    locked=True, retry_after=count.locked_until - now, scope=scope
                )
                continue
            count.failures += 1
            count.last = now
            worst = max(worst, count.failures)
            if count.failures >= limits[scope]:
                count.locked_until = now + policy.lockout_seconds
                if verdict_lock is None:
                    verdict_lock = Verdict(
                        locked=True, retry_after=policy.lockout_seconds, scope=scope
                    )
                if self.on_lock is not None:
                    self.on_lock(
                        Locked(
                            scope=scope,
                            key=key,
                            failures=count.failures,
                            at=now,
                            until=count.locked_until,
                            channel=channel,
                        )
                    )
        self._bound(now)
        delay = self.delay_for(worst)
        if verdict_lock is not None:
            return Verdict(
                locked=True,
                retry_after=verdict_lock.retry_after,
                delay=delay,
                scope=verdict_lock.scope,
            )
        return Verdict(delay=delay)

    def succeeded(self, user: str, source: str, now: float) -> None:
        """The right password: the account's count starts again (the source's stays)."""
        count = self._current("account", user, now)
        if count is not None and not count.locked_until:
            del self._counts[("account", user)]

    def delay_for(self, failures: int) -> float:
        """The hold-back after ``failures`` failures on a key."""
        policy = self.policy
        over = failures - policy.slow_after
        if over <= 0:
            return 0.0
        return float(min(policy.delay_seconds * 2 ** (over - 1), policy.max_delay_seconds))

    def _bound(self, now: float) -> None:
        """Keep the table bounded: forget the oldest counts that hold no lock, then (a flood of
        locks) the oldest of all."""
        if len(self._counts) <= self.max_tracked:
            return
        for scope, key in list(self._counts):
            if len(self._counts) <= self.max_tracked:
                return
            count = self._counts[(scope, key)]
            if not count.locked_until or now >= count.locked_until:
                del self._counts[(scope, key)]
        while len(self._counts) > self.max_tracked:
            self._counts.popitem(last=False)
