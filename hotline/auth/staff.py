"""Bearer tokens for staff members (their role comes from the configuration)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import hdrs, web

from hotline.config import Config
from hotline.http.api import Principal, Role

OPERATOR = "operator"
"""The principal of the operator token (``HOTLINE_OPERATOR_TOKEN``, at least 16 characters, from
the environment of ``hotline serve``; never in the configuration file): deploy scripts and the
test harness use it with the admin's rights."""

TOKEN_TTL = 12 * 3600.0
"""Seconds a token is valid (a working day and a half)."""


@dataclass(slots=True)
class _Token:
    user: str
    expires: float
    key: str
    """A short id for the audit trail (a hash prefix; never the secret)."""


class StaffAuth:
    """Issues and checks staff tokens. Roles are read from the configuration on every check,
    so a role change takes effect at once."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        operator_token: str | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._tokens: dict[str, _Token] = {}
        self._operator = (
            hashlib.sha256(operator_token.encode()).hexdigest()
            if operator_token and len(operator_token) >= 16
            else None
        )

    def role_of(self, user: str) -> Role | None:
        account = self.config.agent(user)
        return Role(account.role) if account is not None else None

    def issue_token(self, user: str, *, ttl: float = TOKEN_TTL) -> str:
        """A new bearer token for ``user`` (a configured staff member)."""
        if self.role_of(user) is None:
            raise LookupError(f"no staff member {user!r}")
        secret = secrets.token_urlsafe(32)
        key = hashlib.sha256(secret.encode()).hexdigest()
        self._tokens[key] = _Token(user=user, expires=self.clock() + ttl, key=key[:12])
        return secret

    def revoke_token(self, secret: str) -> bool:
        return self._tokens.pop(hashlib.sha256(secret.encode()).hexdigest(), None) is not None

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    def principal_for_token(self, secret: str) -> Principal | None:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if self._operator is not None and hmac.compare_digest(digest, self._operator):
            return Principal(user=OPERATOR, role=Role.ADMIN, via="token", session="operator")
        token = self._tokens.get(digest)
        if token is None:
            return None
        if token.expires <= self.clock():
            self._tokens.pop(hashlib.sha256(secret.encode()).hexdigest(), None)
            return None
        role = self.role_of(token.user)
        if role is None:
            return None
        return Principal(user=token.user, role=role, via="token", session=token.key)

    async def authenticate(self, request: web.Request) -> Principal | None:
        secret = self._bearer(request)
        if secret is None:
            return None
        return self.principal_for_token(secret)

    def metrics_token_ok(self, request: web.Request) -> bool | None:
        return None
