"""Outbound registration of PSTN trunks (RFC 3261 §10 as a UAC), on the user agent's endpoint.

Each trunk that must register has a sans-IO ``sip/trunk.py`` ``TrunkRegistration`` (when to
send, how to answer a challenge, back-off); this shell sends its REGISTERs through the shared
``SipEndpoint``, feeds it the responses and timeouts, and polls it once a second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from media_gateway.sip.endpoint import SipEndpoint
from media_gateway.sip.trunk import SendRegister, TrunkRegistration

log = structlog.get_logger("hotline.trunks")


class Trunk(Protocol):
    """A carrier or PSTN gateway as the user agent sees it (the configuration provides it)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> tuple[str, int]:
        """IP literal and port calls go to and come from."""
        ...

    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def register(self) -> bool: ...
    @property
    def expires(self) -> int: ...
    @property
    def dids(self) -> Mapping[str, str]:
        """Dialled number (exact, or a prefix ending in ``*``) -> entry point number."""
        ...

    @property
    def caller_id(self) -> str: ...
    @property
    def caller_id_display(self) -> str: ...
    @property
    def withhold_caller_id(self) -> bool: ...


class TrunkRegistrations:
    """The trunks that register, and the REGISTER transactions in flight for them."""

    def __init__(
        self,
        trunks: Sequence[Trunk],
        endpoint: SipEndpoint,
        *,
        local_host: str,
        local_port: int,
        rng: Any,
        clock: Callable[[], float],
    ) -> None:
        self.trunks = list(trunks)
        self.endpoint = endpoint
        self.clock = clock
        self.registrations: dict[str, TrunkRegistration] = {
            t.name: TrunkRegistration(
                name=t.name,
                registrar=t.address,
                username=t.username,
                password=t.password,
                expires=t.expires,
                local_host=local_host,
                local_port=local_port,
                rng=rng,
            )
            for t in trunks
            if t.register
        }
        self._address = {t.name: t.address for t in trunks}
        self._requests: dict[object, str] = {}

    def poll(self) -> None:
        """Send what is due (called once a second)."""
        now = self.clock()
        for name, reg in self.registrations.items():
            self._send(name, reg.poll(now))

    def owns(self, transaction: object) -> bool:
        return transaction in self._requests

    def response(self, transaction: object, status: int, headers: Any) -> None:
        """A response (or 408 for a timeout) to one of our REGISTERs."""
        name = self._requests.pop(transaction, None)
        if name is None:
            return
        reg = self.registrations[name]
        resend = reg.on_response(status, headers, self.clock())
        log.info("trunk_registration", trunk=name, status=status, state=reg.state)
        self._send(name, resend)

    def _send(self, name: str, sends: list[SendRegister]) -> None:
        for send in sends:
            handle = self.endpoint.request(
                "REGISTER",
                send.uri,
                self._address[name],
                headers=send.headers,
                body=b"",
                now=self.clock(),
                call_id=send.call_id,
                cseq=send.cseq,
            )
            self._requests[handle] = name

    def snapshot(self) -> list[dict[str, Any]]:
        out = []
        for trunk in self.trunks:
            reg = self.registrations.get(trunk.name)
            out.append(
                {
                    "name": trunk.name,
                    "address": f"{trunk.address[0]}:{trunk.address[1]}",
                    "register": trunk.register,
                    "state": reg.state if reg else "not_registering",
                    "granted_seconds": reg.granted if reg else 0,
                    "failures": reg.failures if reg else 0,
                }
            )
        return out
