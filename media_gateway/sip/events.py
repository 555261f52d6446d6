"""Events the sans-IO SIP endpoint reports to its transaction user (aioquic ``events.py`` style).

Past-tense facts, drained with ``SipEndpoint.next_event()``. ``call`` fields hold the
``CallHandle`` the endpoint created (``InviteReceived``) or returned (``SipEndpoint.invite``);
``transaction`` fields hold the transaction object to pass to ``SipEndpoint.respond`` (server
side) or the handle ``SipEndpoint.request`` returned (client side). Handles compare by identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from media_gateway.sip.message import SipRequest, SipResponse

if TYPE_CHECKING:
    from media_gateway.sip.dialog import CallHandle


@dataclass(frozen=True, slots=True, kw_only=True)
class SipEvent:
    """Base class of every endpoint event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteReceived(SipEvent):
    """A new out-of-dialog INVITE (100 Trying already sent). Answer with ``respond(call, ...)``."""

    call: CallHandle
    """The new inbound call."""
    request: SipRequest
    """The INVITE as received (top Via already carries received/rport, RFC 3581)."""
    source: tuple[str, int]
    """The packet's source address (where every response goes)."""
    transport: str
    """``udp`` or ``tcp`` (lower case)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived(SipEvent):
    """An out-of-dialog non-INVITE request the TU must answer (REGISTER, MESSAGE, SUBSCRIBE...)."""

    transaction: Any
    """The server transaction; pass it to ``respond``."""
    request: SipRequest
    """The request as received."""
    source: tuple[str, int]
    """The packet's source address."""
    transport: str
    """``udp`` or ``tcp``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InDialogRequestReceived(SipEvent):
    """A request inside a call the TU must answer (NOTIFY, REFER, MESSAGE, UPDATE...)."""

    call: CallHandle
    """The call whose dialog the request belongs to."""
    transaction: Any
    """The server transaction; pass it to ``respond``."""
    request: SipRequest
    """The request as received."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoReceived(SipEvent):
    """An in-dialog INFO (already answered 200), e.g. SIP INFO DTMF (``application/dtmf-relay``)."""

    call: CallHandle
    """The call."""
    content_type: str
    """The Content-Type header value, ``""`` when absent."""
    body: bytes
    """The INFO body."""
    request: SipRequest
    """The whole request, for other headers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteReceived(SipEvent):
    """A re-INVITE (RFC 3261 §14.2); answer with ``respond(transaction, ...)``."""

    call: CallHandle
    """The call being modified."""
    transaction: Any
    """The INVITE server transaction to answer."""
    request: SipRequest
    """The re-INVITE."""
    sdp: bytes
    """Its body (an offer, or empty for a late offer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteResponded(SipEvent):
    """The final response to our re-INVITE (2xx already ACKed; the call stays up either way)."""

    call: CallHandle
    """The call."""
    status: int
    """Final status code (491 means glare: retry later, RFC 3261 §14.1)."""
    reason: str
    """Reason phrase."""
    sdp: bytes
    """Response body."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived(SipEvent):
    """The ACK for our 2xx arrived (RFC 3261 §13.3.1.4); the call is confirmed."""

    call: CallHandle
    """The call."""
    sdp: bytes
    """ACK body (the answer when the INVITE had no offer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AckTimedOut(SipEvent):
    """No ACK for our 2xx within 64*T1 (§13.3.1.4): the TU should hang up with ``bye``."""

    call: CallHandle
    """The call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived(SipEvent):
    """The caller cancelled a ringing inbound call (§9.2); 200 and 487 were sent."""

    call: CallHandle
    """The call; a ``CallEnded(by="remote", reason="cancelled")`` follows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgress(SipEvent):
    """A provisional response (180/183...) to our INVITE."""

    call: CallHandle
    """The outbound call."""
    status: int
    """101-199."""
    reason: str
    """Reason phrase."""
    sdp: bytes
    """Early media SDP, may be empty."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(SipEvent):
    """A 2xx to our INVITE; the endpoint already sent the ACK (§13.2.2.4)."""

    call: CallHandle
    """The outbound call."""
    status: int
    """The 2xx code."""
    sdp: bytes
    """The answer SDP."""
    response: SipResponse
    """The whole response."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed(SipEvent):
    """Our INVITE got a final non-2xx, timed out (408, Timer B) or was cancelled (487)."""

    call: CallHandle
    """The outbound call; a ``CallEnded`` follows."""
    status: int
    """Final status (408 on Timer B)."""
    reason: str
    """Reason phrase."""
    response: SipResponse | None
    """The response, ``None`` on a local timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(SipEvent):
    """The call is over. Emitted exactly once per call, whatever the path."""

    call: CallHandle
    """The call."""
    by: Literal["remote", "local"]
    """Who ended it."""
    reason: str
    """``bye``, ``cancelled``, ``rejected:<status>``, ``failed:<status>``, ``timeout``..."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived(SipEvent):
    """The final response to an ``SipEndpoint.request`` (REGISTER, OPTIONS, MESSAGE...)."""

    transaction: Any
    """The handle ``request`` returned."""
    response: SipResponse
    """The response."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestTimedOut(SipEvent):
    """No final response to an ``SipEndpoint.request`` (Timer F, §17.1.2.2)."""

    transaction: Any
    """The handle ``request`` returned."""
