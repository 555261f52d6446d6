"""SIP trunks to the PSTN, pure parts: outbound registration, DID matching, caller-id rules.

``TrunkRegistration`` is a small state machine driven by the shell:

    for send in reg.poll(now): endpoint.request("REGISTER", send.uri, addr, headers=send.headers,
                                                call_id=send.call_id, cseq=send.cseq, now=now)
    reg.on_response(status, headers, now)     # headers None when the request timed out

* 401/407 → the same REGISTER again (same Call-ID, next CSeq) with digest credentials; a second
  challenge that is not ``stale`` means wrong credentials → ``failed`` and exponential backoff
  (``stale=true`` is answered again, at most ``MAX_STALE_RETRIES`` times);
* 200 → ``registered``; refresh at 80 % of the granted expiry (from the Contact's ``expires``
  or the Expires header), never later than 30 s before it ends;
* 423 → retry at once with the carrier's Min-Expires;
* anything else, or a timeout → ``failed``, retry after 30 s doubling to 10 minutes;
* provisional responses are ignored; ``unregister()`` sends ``Expires: 0`` on shutdown.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from media_gateway.sip.auth import build_authorization, pick_challenge
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import format_hostport, parse_contact_list
from media_gateway.sip.message import Headers

BACKOFF_FIRST = 30.0
BACKOFF_MAX = 600.0
MAX_STALE_RETRIES = 3
"""A carrier that answers every authenticated REGISTER with ``stale=true`` is broken: after
this many retries on one registration attempt we back off instead of looping."""


@dataclass(frozen=True, slots=True)
class SendRegister:
    uri: str
    headers: list[tuple[str, str]]
    call_id: str
    cseq: int


@dataclass
class TrunkRegistration:
    name: str
    registrar: tuple[str, int]
    username: str
    password: str
    expires: int = 600
    local_host: str = "127.0.0.1"
    local_port: int = 5060
    rng: random.Random = field(default_factory=random.Random)
    state: str = "idle"
    """idle → registering → registered | failed (→ registering again at the next deadline)."""
    granted: int = 0
    failures: int = 0
    _due: float | None = 0.0
    _cseq: int = 0
    _call_id: str = ""
    _challenged: bool = False
    _stale_retries: int = 0
    _pending: bool = False

    def __post_init__(self) -> None:
        self._call_id = f"trunk-{self.name}-{self.rng.getrandbits(64):016x}"

    @property
    def uri(self) -> str:
        return f"sip:{format_hostport(self.registrar[0], self.registrar[1])}"

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{format_hostport(self.registrar[0], self.registrar[1])}"

    def _register(self, authorization: str | None = None) -> SendRegister:
        self._cseq += 1
        self._pending = True
        self.state = "registering"
        headers = [
            ("From", f"<{self.aor}>;tag={self.rng.getrandbits(32):08x}"),
            ("To", f"<{self.aor}>"),
            (
                "Contact",
                f"<sip:{self.username}@{format_hostport(self.local_host, self.local_port)}>",
            ),
            ("Expires", str(self.expires)),
        ]
        if authorization:
            headers.append(("Authorization", authorization))
        return SendRegister(self.uri, headers, self._call_id, self._cseq)

    def poll(self, now: float) -> list[SendRegister]:
        """The REGISTERs due at ``now`` (none while one is in flight)."""
        if self._pending or self._due is None or now < self._due:
            return []
        self._due = None
        self._challenged = False
        self._stale_retries = 0
        return [self._register()]

    def unregister(self) -> list[SendRegister]:
        """A REGISTER with ``Expires: 0`` removing our binding (on shutdown); no refresh is
        scheduled afterwards. Nothing is sent if we were not registered."""
        was_registered = self.state == "registered"
        self._due = None
        self.state = "idle"
        if not was_registered:
            return []
        self._challenged = False
        self._stale_retries = 0
        self.expires = 0
        send = self._register()
        self.state = "unregistering"
        return [send]

    def next_deadline(self) -> float | None:
        return None if self._pending else self._due

    def on_response(self, status: int, headers: Headers | None, now: float) -> list[SendRegister]:
        """Feed the final response (or 408 with ``headers=None`` on timeout); may return a
        REGISTER to send at once (the authenticated retry)."""
        if status < 200:
            return []  # provisional: the final response is still to come
        self._pending = False
        if self.state == "unregistering":
            if status in (401, 407) and headers is not None and not self._challenged:
                retry = self._answer_challenge(status, headers, now)
                self.state = "unregistering" if retry else "idle"
                return retry
            self.state = "idle"
            return []
        if status in (401, 407) and headers is not None:
            return self._answer_challenge(status, headers, now) or self._fail(now)
        return self._on_final(status, headers, now)

    def _answer_challenge(self, status: int, headers: Headers, now: float) -> list[SendRegister]:
        """The authenticated retry (RFC 3261 §22.2), or [] when we must not retry."""
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        challenges = headers.get_all(name)
        stale = any("stale=true" in c.lower().replace(" ", "") for c in challenges)
        if stale:
            self._stale_retries += 1
            if self._stale_retries > MAX_STALE_RETRIES:
                return []
        if challenges and (not self._challenged or stale):
            try:
                challenge = pick_challenge(challenges)
                auth = build_authorization(
                    challenge,
                    method="REGISTER",
                    uri=self.uri,
                    username=self.username,
                    password=self.password,
                    cnonce=f"{self.rng.getrandbits(64):016x}",
                )
            except SipParseError:
                return []
            self._challenged = True
            send = self._register(auth)
            if status == 407:
                send.headers[-1] = ("Proxy-Authorization", auth)
            return [send]
        return []

    def _on_final(self, status: int, headers: Headers | None, now: float) -> list[SendRegister]:
        if status == 423 and headers is not None:
            value = headers.get("Min-Expires") or ""
            if value.isdigit() and int(value) > self.expires:
                self.expires = int(value)
                return [self._register()]
            return self._fail(now)
        if 200 <= status < 300:
            self.granted = self._granted(headers)
            self.state = "registered"
            self.failures = 0
            self._due = now + max(1.0, min(self.granted * 0.8, self.granted - 30.0))
            return []
        return self._fail(now)

    def _granted(self, headers: Headers | None) -> int:
        if headers is None:
            return self.expires
        mine = f"{format_hostport(self.local_host, self.local_port)}"
        try:
            contacts = parse_contact_list(headers.get_list("Contact"))
        except SipParseError:
            contacts = []
        if contacts != "*":
            for c in contacts:
                exp = c.params.get("expires")
                if mine in c.uri and exp and exp.isdigit():
                    return int(exp)
        value = headers.get("Expires")
        if value and value.isdigit():
            return int(value)
        return self.expires

    def _fail(self, now: float) -> list[SendRegister]:
        self.state = "failed"
        self.failures += 1
        self._due = now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        return []


def normalise_number(text: str) -> str:
    """Digits of a dialled number or DID, with a leading ``+`` kept (``tel:``/``sip:`` user
    parts, spaces, dashes, dots and parentheses removed)."""
    value = text.strip()
    for prefix in ("tel:", "sip:", "sips:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    value = value.split("@", 1)[0].split(";", 1)[0]
    plus = value.startswith("+")
    digits = "".join(c for c in value if c.isdigit() or c in "*#")
    return ("+" if plus else "") + digits


def match_did(dids: Mapping[str, str], dialled: str) -> str | None:
    """The entry point for a dialled number: an exact DID first, then the longest prefix
    pattern (a key ending in ``*``). Numbers compare normalised (``+1 800-555`` = ``+1800555``).
    """
    number = normalise_number(dialled)
    best: tuple[int, str] | None = None
    for pattern, entry in dids.items():
        if pattern.endswith("*"):
            prefix = normalise_number(pattern[:-1])
            if number.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), entry)
        elif normalise_number(pattern) == number:
            return entry
    return best[1] if best else None


@dataclass(frozen=True, slots=True)
class CallerIdRule:
    number: str = ""
    """Present this number instead of the caller's ("" keeps the caller's)."""
    display: str = ""
    strip_prefix: str = ""
    add_prefix: str = ""
    withhold: bool = False


def apply_caller_id(
    rule: CallerIdRule, caller: str, display: str | None
) -> tuple[str, str | None, list[tuple[str, str]]]:
    """(number, display, extra headers) for an outbound call through a trunk.

    Withholding presents ``anonymous`` and asks the carrier with ``Privacy: id`` (RFC 3325)
    while a ``P-Asserted-Identity`` still carries the real number to the trusted carrier.
    """
    number = rule.number or normalise_number(caller)
    if rule.strip_prefix and number.startswith(rule.strip_prefix):
        number = number[len(rule.strip_prefix) :]
    if rule.add_prefix and not number.startswith(rule.add_prefix):
        number = rule.add_prefix + number
    shown = rule.display or display
    if rule.withhold:
        return (
            "anonymous",
            "Anonymous",
            [("Privacy", "id"), ("P-Asserted-Identity", f"<tel:{number}>")],
        )
    return number, shown, []
