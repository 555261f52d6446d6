"""Where each user can be reached: SIP registrations (REGISTER + digest) and browser phones.

``Registrations`` answers REGISTER requests (RFC 3261 §10) after digest authentication
(``sip/auth.py``; RFC 8760 algorithms when configured) and keeps the bindings in the sans-IO
``sip/registrar.py``. An agent's browser connected as a phone (``webrtc.py``) counts as a device
too. Listeners hear ``(user, True)`` when a user's first device arrives and ``(user, False)`` when
the last one goes: that is how the contact center logs agents in and out of the ACD.

Credentials come from the composition root as a callable: ``ha1_for(user, algorithm)`` gives the
stored digest HA1 (no plain password needed), or, for simple setups and tests, ``password_for``
gives the password itself. Failed digests and browser-phone logins count in a brute-force
:class:`~media_gateway.sip.lockout.Lockout` (per account and per source address): while one is
locked every REGISTER with credentials for it gets 403, right password or not, known user or
not.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from media_gateway.session import CallSession
from media_gateway.sip.auth import (
    AuthResult,
    DigestAuthenticator,
    digest_ha1,
    digest_username,
    parse_auth_header,
)
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import parse_contact_list, parse_name_addr
from media_gateway.sip.lockout import Locked, Lockout
from media_gateway.sip.message import SipRequest
from media_gateway.sip.registrar import Binding, Registrar
from media_gateway.sip.uri import parse_uri

log = structlog.get_logger("hotline.registrations")

PresenceListener = Callable[[str, bool], None]
"""Called with (user, present) when a user's first device arrives or the last one goes."""

Ha1Lookup = Callable[[str, str], str | None]
"""``ha1_for(user, algorithm)``: the stored HA1 (hex) of ``user`` for the registrar's realm and
``algorithm`` (``MD5``, ``SHA-256``); None for an unknown user (or no HA1 for that algorithm)."""


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
    """For the metrics: ``challenged``, ``bad_request``, ``locked`` or the status code."""


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """The answer to a password login (the browser phone's)."""

    ok: bool
    locked: bool = False
    """Refused without a check: the account or the address is locked."""
    delay: float = 0.0
    """Seconds to hold back a failed answer (the lockout's slow-down)."""


def _invite_digest_uri(authorization: str, request_uri: str) -> str:
    """The ``uri`` an INVITE's digest must name: its Request-URI; SIPp's ``[authentication]``
    names the same host and port without the user part, which is accepted too (the nonce is
    bound to INVITE and the source, and each nonce count serves once)."""
    try:
        given = parse_auth_header(authorization)[1].get("uri", "")
        mine, theirs = parse_uri(request_uri), parse_uri(given)
    except SipParseError:
        return request_uri
    if (
        not theirs.user
        and theirs.scheme == mine.scheme
        and theirs.host.lower() == mine.host.lower()
        and theirs.port == mine.port
    ):
        return given
    return request_uri


def _log_lock(event: Locked) -> None:
    log.warning(
        "sign_in_locked",
        scope=event.scope,
        key=event.key,
        failures=event.failures,
        channel=event.channel,
        seconds=round(event.until - event.at, 1),
    )


class Registrations:
    """Registered SIP phones and connected browser phones, by user."""

    def __init__(
        self,
        settings: RegistrationSettings,
        *,
        password_for: Callable[[str], str | None] | None = None,
        ha1_for: Ha1Lookup | None = None,
        lockout: Lockout | None = None,
    ) -> None:
        """Give ``ha1_for`` (stored HA1s) or ``password_for`` (plain passwords). ``lockout`` is
        shared with the other places that check the same passwords; by default one of its own
        (that logs each lock)."""
        if ha1_for is None:
            if password_for is None:
                raise ValueError("give ha1_for or password_for")
            ha1_for = self._ha1_from_passwords(settings.realm, password_for)
        self.settings = settings
        self.ha1_for = ha1_for
        self.lockout = lockout if lockout is not None else Lockout(on_lock=_log_lock)
        self.auth = DigestAuthenticator(
            realm=settings.realm,
            credentials_lookup=lambda user: None,
            ha1_lookup=ha1_for,
            secret=secrets.token_bytes(32),
            nonce_ttl=settings.nonce_ttl,
            algorithms=settings.algorithms,
        )
        self.registrar = Registrar(
            min_expires=settings.min_expires,
            max_expires=settings.max_expires,
            default_expires=min(3600, settings.max_expires),
        )
        self.browser_phones: dict[str, BrowserPhone] = {}
        """Users whose browser is connected as their phone, by user id."""
        self.listeners: list[PresenceListener] = []

    # -- REGISTER ----------------------------------------------------------------------------

    def register(
        self,
        request: SipRequest,
        *,
        source: tuple[str, int],
        transport: str,
        now: float,
        client: tuple[str, int] | None = None,
    ) -> RegisterReply:
        """Authenticate and apply one REGISTER; presence listeners hear the changes.

        ``source``: where the packet came from (the binding is reached there); ``client``: the
        phone's own address when a trusted proxy relayed it (a cluster's edge), what the
        lockout and the nonces count against (default ``source``)."""
        bound, source = source, client or source
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
        user = (digest_username(authorization) if authorization else None) or aor.user
        if authorization and self.lockout.check(user, source[0], now).locked:
            # Locked: refused without looking at the credentials (right or wrong, known user or
            # not: the same 403). One log line per lock, written when it was set.
            return RegisterReply(403, reason="Forbidden", outcome="locked")
        result: AuthResult = self.auth.verify(
            "REGISTER", authorization, now, request_uri=request.uri, source=source[0]
        )
        if result.guess:
            # counted; this failure is answered like the ones before it, the next gets 403
            self.lockout.failed(user, source[0], now, channel="sip")
        elif result.ok:
            self.lockout.succeeded(user, source[0], now)
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
            challenges = self.auth.challenge(now, stale=result.stale, source=source[0])
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
            source=bound,
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
        if reg.status == 200:
            self.save(now)
        return RegisterReply(reg.status, headers, outcome=str(reg.status))

    # -- INVITE from a colleague -------------------------------------------------------------

    def authorize_invite(
        self, request: SipRequest, *, source: tuple[str, int], now: float
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """A call from an employee's phone to a colleague is proven by digest, never by the
        source address alone: ``(user, [])`` when ``Proxy-Authorization`` answers one of our
        INVITE nonces for this source with a user's password; else ``(None, headers)``, the
        ``Proxy-Authenticate`` challenges of a 407. Guesses count in the same lockout as
        REGISTER (a locked user or source is challenged and never accepted)."""
        authorization = request.headers.get("Proxy-Authorization") or ""
        user = digest_username(authorization) if authorization else None
        result: AuthResult | None = None
        if user is not None and not self.lockout.check(user, source[0], now).locked:
            result = self.auth.verify(
                "INVITE",
                authorization,
                now,
                request_uri=_invite_digest_uri(authorization, request.uri),
                source=source[0],
            )
            if result.guess:
                self.lockout.failed(user, source[0], now, channel="sip")
            elif result.ok and result.username:
                self.lockout.succeeded(result.username, source[0], now)
                return result.username, []
        if authorization:
            log.info(
                "invite_auth_refused",
                user=user,
                source=f"{source[0]}:{source[1]}",
                reason=result.reason if result is not None else "locked or unreadable",
            )
        stale = result is not None and result.stale
        challenges = self.auth.challenge(now, stale=stale, use="INVITE", source=source[0])
        return None, [("Proxy-Authenticate", c) for c in challenges]

    def expire(self, now: float) -> None:
        """Drop expired bindings; a user whose last phone went away is reported absent."""
        for change in self.registrar.expire(now):
            log.info("device_registration", agent=change.user, change=str(change))
            self._presence(change.user, change.kind == "registered", now)

    # -- browser phones ----------------------------------------------------------------------

    def check_password(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s SIP password, checked against the stored HA1 (the
        first of the registrar's algorithms that has one). The same work and the same answer for
        an unknown user and a wrong password. No lockout here: see :meth:`login`."""
        realm = self.settings.realm
        for algorithm in self.settings.algorithms:
            stored = self.ha1_for(user, algorithm)
            if stored is not None:
                given = digest_ha1(algorithm, user, realm, password)
                return hmac.compare_digest(stored.strip().lower(), given)
        algorithm = self.settings.algorithms[0]
        given = digest_ha1(algorithm, user, realm, password)
        hmac.compare_digest(digest_ha1(algorithm, user, "\x00", "\x00unknown\x00"), given)
        return False

    def login(self, user: str, password: str, *, source: str, now: float) -> LoginCheck:
        """A browser phone's login: :meth:`check_password` under the lockout (``source`` is the
        client's IP address)."""
        if self.lockout.check(user, source, now).locked:
            return LoginCheck(False, locked=True)
        if self.check_password(user, password):
            self.lockout.succeeded(user, source, now)
            return LoginCheck(True)
        verdict = self.lockout.failed(user, source, now, channel="browser_phone")
        return LoginCheck(False, delay=verdict.delay)

    @staticmethod
    def _ha1_from_passwords(realm: str, password_for: Callable[[str], str | None]) -> Ha1Lookup:
        def ha1_for(user: str, algorithm: str) -> str | None:
            password = password_for(user)
            return None if password is None else digest_ha1(algorithm, user, realm, password)

        return ha1_for

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

    # -- persistence: registrations survive a restart ------------------------------------------

    state_file: Path | None = None
    """Where the bindings are kept (the composition root sets ``data_dir/registrations.json``);
    None: in memory only."""

    def save(self, now: float, *, wall: float | None = None) -> None:
        """Write every live binding to :attr:`state_file` atomically (a temporary file renamed
        over it: a crash leaves the old file or the new one, never half of one). Expiry times
        are stored as wall-clock times (``now`` is the loop's clock, ``wall`` the time of day:
        ``time.time()`` by default). Runs after each accepted
        REGISTER: one small file, a few hundred microseconds."""
        path = self.state_file
        if path is None:
            return
        offset = (time.time() if wall is None else wall) - now
        rows = [
            {
                "user": b.user,
                "contact": b.contact,
                "source": [b.source[0], b.source[1]],
                "transport": b.transport,
                "expires": round(b.expires_at + offset, 3),
                "q": b.q,
                "call_id": b.call_id,
                "cseq": b.cseq,
            }
            for user in self.registrar.users()
            for b in self.registrar.contacts(user, now)
        ]
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps({"version": 1, "bindings": rows}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("registrations_not_saved", path=str(path), error=str(exc))

    def restore(self, now: float, *, wall: float | None = None) -> int:
        """Read :attr:`state_file` back at start-up: every binding not yet expired is live
        again (until its original expiry, or ``min_expires`` from now if that is sooner), so
        agents stay reachable without re-registering. Presence listeners are not called: the
        contact center logs in reachable agents when it starts. Returns the bindings restored."""
        path = self.state_file
        if path is None or not path.exists():
            return 0
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["bindings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("registrations_not_restored", path=str(path), error=str(exc))
            return 0
        offset = (time.time() if wall is None else wall) - now
        restored = dropped = 0
        for row in rows:
            try:
                left = float(row["expires"]) - offset - now
                if left <= 0:
                    dropped += 1
                    continue
                contacts = parse_contact_list([f"<{row['contact']}>;q={float(row['q'])}"])
                reg = self.registrar.register(
                    str(row["user"]),
                    contacts,
                    max(self.settings.min_expires, math.ceil(left)),
                    str(row["call_id"]),
                    int(row["cseq"]),
                    now,
                    source=(str(row["source"][0]), int(row["source"][1])),
                    transport=str(row["transport"]),
                )
            except (KeyError, TypeError, ValueError, IndexError, SipParseError):
                dropped += 1
                continue
            if reg.status == 200:
                restored += 1
            else:
                dropped += 1
        log.info("registrations_restored", restored=restored, dropped=dropped, path=str(path))
        return restored

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
