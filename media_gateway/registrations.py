"""Where each user can be reached: SIP registrations (REGISTER + digest) and browser phones.

``Registrations`` answers REGISTER requests (RFC 3261 §10) after digest authentication
(``sip/auth.py``; RFC 8760 algorithms when configured) and keeps the bindings in the sans-IO
``sip/registrar.py``. An agent's browser connected as a phone (``webrtc.py``) counts as a device
too. Listeners hear ``(user, True)`` when a user's first device arrives and ``(user, False)`` when
the last one goes: that is how the contact center logs agents in and out of the ACD.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from media_gateway.session import CallSession
from media_gateway.sip.auth import AuthResult, DigestAuthenticator
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import parse_contact_list, parse_name_addr
from media_gateway.sip.message import SipRequest
from media_gateway.sip.registrar import Binding, Registrar
from media_gateway.sip.uri import parse_uri

log = structlog.get_logger("hotline.registrations")

PresenceListener = Callable[[str, bool], None]
"""Called with (user, present) when a user's first device arrives or the last one goes."""


class BrowserPhone(Protocol):
    """An agent's browser connected as a phone (``webrtc.AgentBrowserPhone``)."""

    async def ring(self, caller: str, ring_timeout: float) -> CallSession | None:
        """Offer a call to the browser; the answered session, or None."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationSettings:
    realm: str = "hotline"
    """Digest realm (RFC 3261 §22.1)."""
    algorithms: tuple[str, ...] = ("MD5",)
    """Digest algorithms offered, one challenge each, in this order (RFC 8760 §2.4)."""
    nonce_ttl: float = 300.0
    min_expires: int = 60
    max_expires: int = 3600


@dataclass(frozen=True, slots=True)
class RegisterReply:
    """How to answer one REGISTER."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None
    outcome: str = ""
    """For the metrics: ``challenged``, ``bad_request`` or the status code."""


class Registrations:
    """Registered SIP phones and connected browser phones, by user."""

    def __init__(
        self,
        settings: RegistrationSettings,
        *,
        password_for: Callable[[str], str | None],
    ) -> None:
        self.settings = settings
        self.auth = DigestAuthenticator(
            realm=settings.realm,
            credentials_lookup=password_for,
            secret=secrets.token_bytes(32),
            nonce_ttl=settings.nonce_ttl,
            algorithms=settings.algorithms,
        )
        self.registrar = Registrar(
            min_expires=settings.min_expires,
            max_expires=settings.max_expires,
            default_expires=min(3600, settings.max_expires),
        )
        self._password_for = password_for
        self.browser_phones: dict[str, BrowserPhone] = {}
        """Users whose browser is connected as their phone, by user id."""
        self.listeners: list[PresenceListener] = []

    # -- REGISTER ----------------------------------------------------------------------------

    def register(
        self, request: SipRequest, *, source: tuple[str, int], transport: str, now: float
    ) -> RegisterReply:
        """Authenticate and apply one REGISTER; presence listeners hear the changes."""
        try:
            to = parse_name_addr(request.headers.get("To") or "")
            aor = parse_uri(to.uri)
        except SipParseError as exc:
            return RegisterReply(400, reason=f"Bad To: {exc}"[:60], outcome="bad_request")
        if aor.scheme not in ("sip", "sips") or not aor.user:
            return RegisterReply(
                400, reason="AOR must be a SIP URI with a user", outcome="bad_request"
            )
        authorization = request.headers.get("Authorization") or ""
        result: AuthResult = self.auth.verify(
            "REGISTER", authorization, now, request_uri=request.uri
        )
        if not result.ok or result.username != aor.user:
            if authorization:
                # The reason stays in our log; the phone gets the same 401 whatever it was.
                log.info(
                    "register_refused",
                    user=aor.user,
                    source=f"{source[0]}:{source[1]}",
                    reason=result.reason or "credentials for another user",
                    stale=result.stale,
                )
            challenges = self.auth.challenge(now, stale=result.stale)
            return RegisterReply(
                401, [("WWW-Authenticate", c) for c in challenges], outcome="challenged"
            )
        try:
            contacts = parse_contact_list(request.headers.get_list("Contact"))
        except SipParseError as exc:
            return RegisterReply(400, reason=f"Bad Contact: {exc}"[:60], outcome="bad_request")
        expires_text = request.headers.get("Expires")
        try:
            expires = int(expires_text) if expires_text is not None else None
        except ValueError:
            expires = None
        cseq_text = (request.headers.get("CSeq") or "0").split()[0]
        reg = self.registrar.register(
            aor.user,
            contacts,
            expires,
            request.headers.get("Call-ID") or "",
            int(cseq_text) if cseq_text.isdigit() else 0,
            now,
            source=source,
            transport=transport,
        )
        headers: list[tuple[str, str]] = []
        if reg.status == 200:
            for b in reg.bindings:
                headers.append(
                    ("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
                )
        elif reg.status == 423 and reg.min_expires:
            headers.append(("Min-Expires", str(reg.min_expires)))
        for change in reg.changes:
            log.info("device_registration", agent=change.user, change=str(change))
            self._presence(change.user, change.kind == "registered", now)
        return RegisterReply(reg.status, headers, outcome=str(reg.status))

    def expire(self, now: float) -> None:
        """Drop expired bindings; a user whose last phone went away is reported absent."""
        for change in self.registrar.expire(now):
            log.info("device_registration", agent=change.user, change=str(change))
            self._presence(change.user, change.kind == "registered", now)

    # -- browser phones ----------------------------------------------------------------------

    def check_password(self, user: str, password: str) -> bool:
        """The same work and the same answer for an unknown user and a wrong password."""
        known = self._password_for(user)
        expected = known if known is not None else secrets.token_hex(16)
        return secrets.compare_digest(expected.encode(), password.encode()) and known is not None

    def browser_connected(self, user: str, phone: BrowserPhone, now: float) -> BrowserPhone | None:
        """``phone`` is now ``user``'s browser phone; returns the one it replaces, if any."""
        old = self.browser_phones.get(user)
        self.browser_phones[user] = phone
        if old is None:
            self._presence(user, True, now)
        return old

    def browser_disconnected(self, user: str, phone: BrowserPhone, now: float) -> None:
        if self.browser_phones.get(user) is phone:
            del self.browser_phones[user]
            self._presence(user, False, now)

    # -- queries ------------------------------------------------------------------------------

    def contacts(self, user: str, now: float) -> list[Binding]:
        """The user's registered phones, newest first."""
        return self.registrar.contacts(user, now)

    def reachable(self, user: str, now: float) -> bool:
        """True while the user has a registered phone or an open browser phone."""
        return user in self.browser_phones or bool(self.registrar.contacts(user, now))

    def bindings(self, users: Sequence[str], now: float) -> list[tuple[str, Binding]]:
        return [(u, b) for u in users for b in self.registrar.contacts(u, now)]

    def registered_at(self, source: tuple[str, int], users: Sequence[str], now: float) -> bool:
        """Some user's phone registered from exactly this address (IP and port)."""
        return any(b.source == source for _, b in self.bindings(users, now))

    def snapshot(self, users: Sequence[str], now: float) -> list[dict[str, object]]:
        return [
            {
                "agent": user,
                "contact": str(b.contact),
                "source": f"{b.source[0]}:{b.source[1]}",
                "transport": b.transport,
                "expires_in": round(b.expires_at - now, 1),
            }
            for user, b in self.bindings(users, now)
        ]

    # -- presence -----------------------------------------------------------------------------

    def _presence(self, user: str, present: bool, now: float) -> None:
        """Tell listeners, unless another of the user's devices keeps them present."""
        if present:
            devices = int(user in self.browser_phones) + len(self.registrar.contacts(user, now))
            if devices > 1:
                return  # they were present already
        elif self.reachable(user, now):
            return  # another of their phones is still there
        for listener in self.listeners:
            try:
                listener(user, present)
            except Exception:
                log.exception("presence_listener_failed", agent=user)
