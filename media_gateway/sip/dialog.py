"""Dialogs (RFC 3261 §12) and the call handle the endpoint hands to its transaction user.

A ``Dialog`` holds the state §12.1 lists: Call-ID, local and remote tags, local and remote
URIs, remote target, route set and both CSeq counters; ``make_request`` builds an in-dialog
request per §12.2.1.1. Where the request is *sent* is not taken from the message: it is the
peer address of the dialog's first transaction (the INVITE's source, or the destination our
caller gave), so the endpoint never sends to an address read from a message.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Literal

from media_gateway.sip.builders import build_request, new_branch
from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import parse_contact_list
from media_gateway.sip.message import SipRequest, SipResponse

DialogKey = tuple[str, str, str]
"""``(Call-ID, local tag, remote tag)``, §12."""

CallState = Literal["calling", "early", "answered", "confirmed", "ended"]


def tag_of(value: str | None) -> str | None:
    """The ``tag`` parameter of a From/To value, without a full name-addr parse (hot path)."""
    if not value:
        return None
    i = value.find(";tag=")
    if i < 0:
        i = value.lower().find(";tag=")
        if i < 0:
            return None
    rest = value[i + 5 :]
    end = len(rest)
    for sep in (";", " ", ">", "\t"):
        j = rest.find(sep)
        if 0 <= j < end:
            end = j
    return rest[:end] or None


def _contact_uri(message: SipRequest | SipResponse) -> str | None:
    values = message.headers.get_all("Contact")
    if not values:
        return None
    try:
        parsed = parse_contact_list(values)
    except SipParseError:
        return None
    if parsed == "*" or not parsed:
        return None
    return parsed[0].uri


class Dialog:
    """The dialog state of RFC 3261 §12.1 plus the peer address it talks to."""

    __slots__ = (
        "call_id",
        "confirmed",
        "connection",
        "local_cseq",
        "local_tag",
        "local_uri",
        "peer",
        "remote_cseq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "transport",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        route_set: list[str],
        local_cseq: int,
        remote_cseq: int,
        peer: tuple[str, int],
        transport: str,
        connection: object | None,
        confirmed: bool,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        """Our From value in requests we send (with our tag)."""
        self.remote_uri = remote_uri
        """Our To value in requests we send (with their tag)."""
        self.remote_target = remote_target
        """The Request-URI of in-dialog requests: the peer's Contact (§12.1.1, §12.1.2)."""
        self.route_set = route_set
        """Route values for in-dialog requests, in the order they are sent."""
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.peer = peer
        self.transport = transport
        self.connection = connection
        self.confirmed = confirmed
        """False while early (§12.1: 1xx with a To tag), True after a 2xx."""

    @property
    def key(self) -> DialogKey:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(
        cls,
        request: SipRequest,
        *,
        local_tag: str,
        peer: tuple[str, int],
        transport: str,
        connection: object | None,
        confirmed: bool,
    ) -> Dialog:
        """§12.1.1: the route set is the request's Record-Route, in order; target its Contact."""
        h = request.headers
        from_ = h.get("From") or ""
        to = h.get("To") or ""
        cseq = int((h.get("CSeq") or "0").split()[0])
        return cls(
            call_id=h.get("Call-ID") or "",
            local_tag=local_tag,
            remote_tag=tag_of(from_) or "",
            local_uri=f"{to};tag={local_tag}" if tag_of(to) is None else to,
            remote_uri=from_,
            remote_target=_contact_uri(request) or request.uri,
            route_set=h.get_list("Record-Route"),
            local_cseq=0,
            remote_cseq=cseq,
            peer=peer,
            transport=transport,
            connection=connection,
            confirmed=confirmed,
        )

    @classmethod
    def as_uac(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        peer: tuple[str, int],
        transport: str,
        connection: object | None,
    ) -> Dialog:
        """§12.1.2: the route set is the response's Record-Route reversed; target its Contact."""
        h = request.headers
        to = response.headers.get("To") or ""
        cseq = int((h.get("CSeq") or "0").split()[0])
        return cls(
            call_id=h.get("Call-ID") or "",
            local_tag=tag_of(h.get("From")) or "",
            remote_tag=tag_of(to) or "",
            local_uri=h.get("From") or "",
            remote_uri=to,
            remote_target=_contact_uri(response) or request.uri,
            route_set=list(reversed(response.headers.get_list("Record-Route"))),
            local_cseq=cseq,
            remote_cseq=-1,
            peer=peer,
            transport=transport,
            connection=connection,
            confirmed=200 <= response.status < 300,
        )

    def update_target(self, message: SipRequest | SipResponse) -> None:
        """A target refresh (re-INVITE or its 2xx, §12.2) replaces the remote target."""
        uri = _contact_uri(message)
        if uri is not None:
            self.remote_target = uri

    def accept_remote_cseq(self, number: int) -> bool:
        """§12.2.2: a request with a CSeq lower than the last one is out of order (500)."""
        if self.remote_cseq >= 0 and number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def make_request(
        self,
        method: str,
        *,
        via_base: str,
        rng: random.Random,
        contact: str | None = None,
        user_agent: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
        branch: str | None = None,
    ) -> SipRequest:
        """An in-dialog request (§12.2.1.1); ``via_base`` is ``SIP/2.0/UDP host:port``."""
        number = self.next_cseq() if cseq is None else cseq
        return build_request(
            method,
            self.remote_target,
            via=f"{via_base};branch={branch or new_branch(rng)};rport",
            from_=self.local_uri,
            to=self.remote_uri,
            call_id=self.call_id,
            cseq=number,
            contact=contact,
            routes=self.route_set,
            user_agent=user_agent,
            headers=headers,
            body=body,
            content_type=content_type,
        )


class CallHandle:
    """One call (INVITE dialog usage) as the transaction user sees it.

    Public, read-only for the TU: ``call_id``, ``direction`` (``inbound``/``outbound``),
    ``state``, ``dialog`` (None until a 1xx-with-tag/2xx), ``invite`` (the initial INVITE),
    ``peer`` (where its requests and responses go). The rest is the endpoint's bookkeeping.
    Handles compare and hash by identity.
    """

    __slots__ = (
        "__weakref__",
        "ack_data",
        "bye_deferred",
        "call_id",
        "cancel_requested",
        "cancel_sent",
        "deadlines",
        "dialog",
        "direction",
        "ended",
        "invite",
        "invite_tx",
        "local_tag",
        "ok_data",
        "ok_interval",
        "peer",
        "pending_reinvite",
        "reinvite_in",
        "state",
        "transport",
    )

    def __init__(
        self,
        *,
        call_id: str,
        direction: Literal["inbound", "outbound"],
        invite: SipRequest,
        local_tag: str,
        peer: tuple[str, int],
        transport: str,
    ) -> None:
        self.call_id = call_id
        self.direction: Literal["inbound", "outbound"] = direction
        self.invite = invite
        self.local_tag = local_tag
        self.peer = peer
        self.transport = transport
        self.state: CallState = "calling"
        self.dialog: Dialog | None = None
        self.invite_tx: object | None = None
        """The pending initial INVITE transaction (server or client)."""
        self.deadlines: dict[str, float] = {}
        self.ok_data: bytes | None = None
        """UAS: the 2xx retransmitted until the ACK (§13.3.1.4)."""
        self.ok_interval = 0.0
        self.ack_data: bytes | None = None
        """UAC: the ACK for the 2xx, re-sent on 2xx retransmissions (§13.2.2.4)."""
        self.cancel_requested = False
        self.cancel_sent = False
        self.pending_reinvite: object | None = None
        """Our outstanding re-INVITE client transaction."""
        self.reinvite_in: object | None = None
        """The peer's re-INVITE server transaction we have not answered finally."""
        self.ended = False
        self.bye_deferred: list[tuple[str, str]] | None = None
        """Headers of a BYE the TU asked for before the ACK arrived (§15)."""

    def __repr__(self) -> str:
        return f"<CallHandle {self.direction} {self.call_id} {self.state}>"


__all__ = ["CallHandle", "CallState", "Dialog", "DialogKey", "tag_of"]
