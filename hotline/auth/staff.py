"""Staff sign-in: sessions for browsers, bearer tokens for scripts, the metrics token.

``StaffAuth`` is the API's ``Authenticator`` (hotline/http/api.py). It resolves a request to a
:class:`~hotline.http.api.Principal`:

* ``Authorization: Bearer <token>``: a token from ``POST /api/tokens`` (kept hashed, in
  ``<data_dir>/api-tokens.json`` so scripts survive a restart), one from :meth:`issue_token`
  (tests; memory only), or the operator token from the environment;
* the ``hotline_session`` cookie from ``POST /api/session`` (memory only: a restart signs
  browsers out); its principal carries the session's CSRF token, which every state change must
  echo in ``X-CSRF-Token`` (``check_csrf`` in hotline/http/api.py).

Only hashes of the secrets are kept (SHA-256: the secrets are 256-bit random, so a fast hash is
enough). Roles are read from the configuration on every request, so a role change takes effect
at once and a member removed from the configuration is signed out.

:meth:`sign_in` checks a password (hotline/auth/credentials.py: argon2id, in a worker thread)
under the brute-force :class:`~media_gateway.sip.lockout.Lockout` shared with SIP REGISTER and
the browser phone: an unknown user and a wrong password get the same answer after the same work
and the same slow-down, and both lock the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog
from aiohttp import hdrs, web

from hotline.auth.credentials import StaffCredentials, write_private
from hotline.config import Config
from hotline.http.api import Principal, Role
from media_gateway.sip.lockout import Locked, Lockout, LockoutPolicy

log = structlog.get_logger("hotline.auth")

OPERATOR = "operator"
"""The principal of the operator token (``HOTLINE_OPERATOR_TOKEN``, at least 16 characters, from
the environment of ``hotline serve``; never in the configuration file): deploy scripts and the
test harness use it with the admin's rights."""

TOKEN_TTL = 12 * 3600.0
"""Seconds a token from :meth:`StaffAuth.issue_token` is valid (a working day and a half)."""

SESSION_COOKIE = "hotline_session"
MAX_SESSIONS = 10_000
"""Sessions kept at most (the oldest go first): sign-ins cannot exhaust memory."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """What ``StaffAuth`` takes from the configuration (``[security]``, ``[http]``)."""

    session_ttl: float = 12 * 3600.0
    token_ttl: float = 30 * 86400.0
    """Seconds a script's token (``POST /api/tokens``) is valid."""
    metrics_token: str = ""
    """The bearer token ``GET /metrics`` wants; empty: open."""
    tokens_path: Path | None = None
    """Where scripts' tokens are kept (hashed); None: memory only."""
    verify_concurrency: int = 2
    """Password hashes checked at once (each takes 64 MiB and ~0.1 s of a core)."""

    @classmethod
    def from_config(cls, config: Config, *, metrics_token: str | None = None) -> AuthSettings:
        security = config.security
        return cls(
            session_ttl=security.session_hours * 3600.0,
            token_ttl=security.token_days * 86400.0,
            metrics_token=metrics_token or config.http.metrics_token,
            tokens_path=Path(config.server.data_dir) / "api-tokens.json",
        )


def lockout_policy(config: Config) -> LockoutPolicy:
    security = config.security
    return LockoutPolicy(
        max_failures=security.max_failures,
        lockout_seconds=security.lockout_seconds,
        source_max_failures=security.source_max_failures,
        window_seconds=security.failure_window_seconds,
    )


@dataclass(slots=True)
class _Token:
    user: str
    expires: float
    key: str
    """A short id for the audit trail (a hash prefix; never the secret)."""
    label: str = ""
    created: float = 0.0
    persist: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    csrf: str
    expires: float
    key: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of a password sign-in."""

    outcome: Literal["ok", "failed", "locked"]
    user: str
    role: Role | None = None
    retry_after: float = 0.0
    """Seconds until a lock ends (``locked`` only)."""


class StaffAuth:
    """Signs staff in and recognises them on later requests."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        operator_token: str | None = None,
        settings: AuthSettings | None = None,
        credentials: StaffCredentials | None = None,
        lockout: Lockout | None = None,
        lock_clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (wall time) dates sessions and tokens; ``lock_clock`` is the lockout's
        (the running loop's time by default: the clock the SIP side feeds the same lockout)."""
        self.config = config
        self.clock = clock
        self.settings = settings or AuthSettings()
        self.credentials = credentials or StaffCredentials(config)
        self.lockout = lockout or Lockout(lockout_policy(config), on_lock=log_lock)
        self.lock_clock = lock_clock
        self._tokens: dict[str, _Token] = {}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._operator = (
            _digest(operator_token) if operator_token and len(operator_token) >= 16 else None
        )
        self._metrics = (
            _digest(self.settings.metrics_token) if self.settings.metrics_token else None
        )
        self._verifying: asyncio.Semaphore | None = None
        self._load_tokens()

    def role_of(self, user: str) -> Role | None:
        account = self.config.agent(user)
        return Role(account.role) if account is not None else None

    # -- tokens -----------------------------------------------------------------------------------

    def issue_token(
        self, user: str, *, ttl: float = TOKEN_TTL, label: str = "", persist: bool = False
    ) -> str:
        """A new bearer token for ``user`` (a configured staff member). ``persist``: kept in the
        tokens file too (call :meth:`save_tokens`)."""
        if self.role_of(user) is None:
            raise LookupError(f"no staff member {user!r}")
        secret = secrets.token_urlsafe(32)
        key = _digest(secret)
        now = self.clock()
        self._tokens[key] = _Token(
            user=user, expires=now + ttl, key=key[:12], label=label, created=now, persist=persist
        )
        return secret

    def token_expiry(self, secret: str) -> float | None:
        token = self._tokens.get(_digest(secret))
        return None if token is None else token.expires

    def revoke_token(self, secret: str) -> bool:
        """Forget a token (memory; :meth:`save_tokens` for the file)."""
        return self._tokens.pop(_digest(secret), None) is not None

    def is_operator(self, secret: str) -> bool:
        return self._operator is not None and hmac.compare_digest(_digest(secret), self._operator)

    def principal_for_token(self, secret: str) -> Principal | None:
        digest = _digest(secret)
        if self._operator is not None and hmac.compare_digest(digest, self._operator):
            return Principal(user=OPERATOR, role=Role.ADMIN, via="token", session="operator")
        token = self._tokens.get(digest)
        if token is None:
            return None
        if token.expires <= self.clock():
            self._tokens.pop(digest, None)
            return None
        role = self.role_of(token.user)
        if role is None:
            return None
        return Principal(user=token.user, role=role, via="token", session=token.key)

    def _load_tokens(self) -> None:
        path = self.settings.tokens_path
        if path is None:
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data["tokens"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("tokens_file_unreadable", path=str(path), error=str(exc))
            return
        now = self.clock()
        for row in rows:
            try:
                token = _Token(
                    user=str(row["user"]),
                    expires=float(row["expires"]),
                    key=str(row["hash"])[:12],
                    label=str(row.get("label", "")),
                    created=float(row.get("created", 0.0)),
                    persist=True,
                )
                digest = str(row["hash"])
            except (KeyError, TypeError, ValueError):
                continue
            if token.expires > now:
                self._tokens[digest] = token

    def _tokens_text(self) -> str:
        now = self.clock()
        rows = [
            {
                "hash": digest,
                "user": t.user,
                "expires": t.expires,
                "label": t.label,
                "created": t.created,
            }
            for digest, t in self._tokens.items()
            if t.persist and t.expires > now
        ]
        return json.dumps({"version": 1, "tokens": rows}, indent=1) + "\n"

    async def save_tokens(self) -> None:
        """Write the scripts' tokens (hashes only, mode 0600) to the tokens file."""
        path = self.settings.tokens_path
        if path is None:
            return
        await asyncio.to_thread(write_private, path, self._tokens_text())

    # -- sessions ---------------------------------------------------------------------------------

    def new_session(self, user: str) -> tuple[str, Session]:
        """A browser session for ``user``: (the cookie's secret, the session)."""
        secret = secrets.token_urlsafe(32)
        digest = _digest(secret)
        session = Session(
            user=user,
            csrf=secrets.token_urlsafe(32),
            expires=self.clock() + self.settings.session_ttl,
            key=digest[:12],
        )
        self._sessions[digest] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return secret, session

    def end_session(self, secret: str) -> bool:
        return self._sessions.pop(_digest(secret), None) is not None

    def session_for(self, secret: str) -> Session | None:
        digest = _digest(secret)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[digest]
            return None
        return session

    # -- sign-in ----------------------------------------------------------------------------------

    def _lock_now(self) -> float:
        if self.lock_clock is not None:
            return self.lock_clock()
        return asyncio.get_running_loop().time()

    async def sign_in(self, user: str, password: str, *, source: str) -> SignIn:
        """Check ``user``'s password from ``source`` (an IP address) under the lockout.

        ``failed`` is the answer for an unknown user and for a wrong password alike, after the
        same argon2 verification and the same slow-down; ``locked`` while the account or the
        address is locked (no verification then)."""
        verdict = self.lockout.check(user, source, self._lock_now())
        if verdict.locked:
            return SignIn("locked", user, retry_after=verdict.retry_after)
        if self._verifying is None:
            self._verifying = asyncio.Semaphore(self.settings.verify_concurrency)
        async with self._verifying:
            ok = await asyncio.to_thread(self.credentials.verify_web, user, password)
        role = self.role_of(user)
        if ok and role is not None:
            self.lockout.succeeded(user, source, self._lock_now())
            return SignIn("ok", user, role=role)
        failed = self.lockout.failed(user, source, self._lock_now(), channel="http")
        if failed.delay:
            await asyncio.sleep(failed.delay)
        return SignIn("failed", user)

    # -- the Authenticator protocol ---------------------------------------------------------------

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    async def authenticate(self, request: web.Request) -> Principal | None:
        secret = self.bearer(request)
        if secret is not None:
            return self.principal_for_token(secret)
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        session = self.session_for(cookie)
        if session is None:
            return None
        role = self.role_of(session.user)
        if role is None:
            return None
        return Principal(
            user=session.user, role=role, via="cookie", csrf=session.csrf, session=session.key
        )

    def metrics_token_ok(self, request: web.Request) -> bool | None:
        if self._metrics is None:
            return None
        secret = self.bearer(request)
        return secret is not None and hmac.compare_digest(_digest(secret), self._metrics)


def log_lock(event: Locked) -> None:
    """One warning line per lock (not per attempt)."""
    log.warning(
        "sign_in_locked",
        scope=event.scope,
        key=event.key,
        failures=event.failures,
        channel=event.channel,
        seconds=round(event.until - event.at, 1),
    )
