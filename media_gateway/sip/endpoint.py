"""The sans-IO SIP endpoint: transactions, dialogs and calls with no socket, loop or clock.

aioquic's shape (STYLE.md §2.3)::

    ep = SipEndpoint(EndpointConfig(host="127.0.0.1", port=5060), rng=random.Random(seed))
    ep.receive(data, source, now)            # or receive_message(msg, ...) from a TCP framer
    while (event := ep.next_event()) is not None: ...
    for out in ep.datagrams_to_send(): sock.sendto(out.data, out.dest)
    ep.next_deadline(); ep.handle_timer(now)

Where responses go (RFC 3261 §18.2.2, RFC 3581): **always to the packet's source address**
(IP and port), over the same connection for TCP. The top Via gets ``received=`` when its host
differs from the source IP and ``rport=<port>`` when it carried an empty ``rport``. This is
RFC 3581 symmetric response applied to every request: it works through NAT, and it means the
endpoint never sends to a host name or address read from a message. Requests we originate go
to the explicit ``dest`` the caller passes; in-dialog requests go to the dialog's peer address
(the initial INVITE's source or destination), never to a Contact or Record-Route address.

Overload (``overloaded`` flag set by the shell, or ``max_server_transactions`` reached): new
out-of-dialog INVITEs get a stateless 503 with Retry-After; in-dialog traffic keeps flowing.
Per-source limits and the set-up bound (``limits.py``): a source over its request rate or call
caps, or any INVITE while answering falls behind, gets a stateless 503 with Retry-After; a
source's retransmissions past its allowance are dropped and count against it alone.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from media_gateway.sip import events as ev
from media_gateway.sip.builders import (
    build_request,
    make_cancel,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
)
from media_gateway.sip.dialog import CallHandle, Dialog, tag_of
from media_gateway.sip.errors import SipParseError, TransactionError
from media_gateway.sip.headers import format_hostport, parse_via, quote_string
from media_gateway.sip.limits import LimitsConfig, SourceLimits
from media_gateway.sip.message import SipRequest, SipResponse
from media_gateway.sip.parser import parse_message, salvage_headers
from media_gateway.sip.timers import TimerHeap, TimerValues
from media_gateway.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    State,
    Transaction,
    server_key,
)

__all__ = ["EndpointConfig", "Outgoing", "SipEndpoint"]

_TU_METHODS = frozenset({"REGISTER", "MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REFER"})
_DIALOG_ONLY = frozenset({"BYE", "INFO", "UPDATE", "PRACK"})
_KNOWN = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "PRACK"} | _TU_METHODS
)


_URI_SCHEMES = frozenset({"sip", "sips", "tel"})

_SPENT = SipRequest("SPENT", "sip:spent.invalid")
"""Stands in for the request of an answered server transaction that only lingers (Timer J,
RFC 6026 Accepted) to absorb retransmissions with its cached bytes."""


def _release(tx: ServerTransaction) -> None:
    """Drop what an answered server transaction no longer needs (its parsed request, its call).

    Tens of thousands of them linger at 1,000 calls/s, and the cyclic garbage collector scans
    whatever they keep alive: releasing these cut its full-collection pauses (docs/benchmarks.md).
    """
    tx.request = _SPENT
    tx.owner = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointConfig:
    """Settings of one endpoint (one listening address)."""

    host: str = "127.0.0.1"
    """Our address as written in Via and Contact (an IP literal or our public name)."""
    port: int = 5060
    """Our port in Via and Contact."""
    transport: str = "udp"
    """Default transport for requests we originate (``udp`` or ``tcp``)."""
    user_agent: str = "hotline"
    """User-Agent / Server header value; empty to omit."""
    contact_user: str = "hotline"
    """User part of our Contact URI."""
    t1: float = 0.5
    """RFC 3261 T1 (§17.1.1.1)."""
    t2: float = 4.0
    """RFC 3261 T2."""
    t4: float = 5.0
    """RFC 3261 T4."""
    max_server_transactions: int = 50_000
    """Past this many server transactions still *awaiting a final response*, new INVITEs get
    503. Answered transactions lingering for Timers J/L/I (32 s at T1 = 0.5) do not count:
    at 1,000 calls/s they alone number ~64,000."""
    retry_after: int = 5
    """Retry-After seconds in overload 503s."""
    reject_max_forwards_zero: bool = False
    """Answer 483 to Max-Forwards: 0 (RFC 3261 §16.3, the proxy rule). A UA or B2BUA, which is
    what hotline is, processes such requests normally (RFC 4475 §3.3.11)."""
    handle_options: bool = False
    """When True, out-of-dialog OPTIONS go to the TU as RequestReceived instead of 200."""
    supported: frozenset[str] = frozenset()
    """Option tags we support; a Require naming another gets 420 (§8.2.2.3)."""
    allow: str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, MESSAGE, NOTIFY, REFER"
    """Allow header value in OPTIONS answers and 2xx to INVITE."""
    invite_server_timeout: float = 300.0
    """A TU that has not answered an inbound INVITE by then: the endpoint sends 408."""
    proceeding_timeout: float = 180.0
    """An outbound INVITE with a 1xx but no final by then fails with 408 (a UA's Timer C)."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """Per-source limits and the set-up bound (``limits.py``)."""
    tls_port: int = 5061
    """Our SIP-over-TLS port in Via and Contact for messages over TLS (RFC 3261 §26.2)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send."""

    data: bytes
    """The serialised message."""
    dest: tuple[str, int]
    """An (IP, port) the caller gave or a packet came from; never a name from a message."""
    transport: str
    """``udp`` or ``tcp``."""
    connection: object | None
    """For TCP: the connection the request came in on (reply on it), else None."""


def _stamp_top_via(request: SipRequest, source: tuple[str, int]) -> tuple[str | None, str, str]:
    """§18.2.1 / RFC 3581 §4: add received/rport to the top Via.

    Returns ``(branch, sent-by, top via text)``. Raises SipParseError on a bad Via.
    """
    items = request.headers._items  # in-place edit of the first Via field (same package)
    idx = next((i for i, item in enumerate(items) if item[0] == "Via"), -1)
    if idx < 0:
        raise SipParseError("message has no Via")
    value = items[idx][1]
    first, sep, rest = value.partition(",") if '"' not in value else (value, "", "")
    via = parse_via(first)
    ip, port = source
    changed = False
    if via.host != ip:
        via.params["received"] = ip
        changed = True
    if "rport" in via.params and via.params["rport"] is None:
        via.params["rport"] = str(port)
        changed = True
    text = via.to_str() if changed else first
    if changed:
        items[idx] = ("Via", f"{text}{sep}{rest}" if sep else text)
    return via.branch, via.sent_by, text


def _branch_of(via: str) -> str | None:
    """The branch of the first via-parm, by string search (responses: the parser already
    checked the Via grammar, and §17.1.3 matching needs nothing else)."""
    i = via.find(";branch=")
    if i < 0:
        low = via.lower()
        i = low.find(";branch=")
        if i < 0:
            return None
    start = i + 8
    end = len(via)
    for sep in (";", ",", " ", "\t"):
        j = via.find(sep, start, end)
        if j >= 0:
            end = j
    return via[start:end].strip() or None


def _cseq(message: SipRequest | SipResponse) -> tuple[int, str]:
    number, _, method = (message.headers.get("CSeq") or "").partition(" ")
    return int(number or "0"), method.strip()


class SipEndpoint:
    """Transactions (§17), dialogs (§12) and calls for one local address. See module doc."""

    def __init__(self, config: EndpointConfig | None = None, *, rng: random.Random) -> None:
        self.config = config or EndpointConfig()
        self.rng = rng
        self.timer_values = TimerValues(t1=self.config.t1, t2=self.config.t2, t4=self.config.t4)
        self.overloaded = False
        """Set by the shell (event-loop lag); new INVITEs get 503 while True."""
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "parse_errors",
                "bye_timeouts",
                "bad_requests_answered",
                "retransmissions_absorbed",
                "acks_absorbed",
                "stray_responses",
                "overload_rejections",
                "no_dialog_481",
                "ack_timeouts",
                "request_timeouts",
                "tu_unanswered",
                "keepalives",
                "limit_rejections",
                "retransmissions_dropped",
                "packets_dropped",
            ),
            0,
        )
        self.limits = SourceLimits(self.config.limits)
        """Per-source accounting and the set-up bound; the shell polls it and logs its changes."""
        self._server_tx: dict[tuple[Any, ...], ServerTransaction] = {}
        self._client_tx: dict[tuple[Any, ...], ClientTransaction] = {}
        self._unanswered = 0  # server transactions without a final response yet
        self._dialogs: dict[tuple[str, str, str], CallHandle] = {}
        self._calls: dict[CallHandle, None] = {}
        self._events: deque[ev.SipEvent] = deque()
        self._out: list[Outgoing] = []
        self._timers = TimerHeap()
        c = self.config
        hp = format_hostport(c.host, c.port)
        self._via_base = {t: f"SIP/2.0/{t.upper()} {hp}" for t in ("udp", "tcp")}
        self._contact = {
            "udp": f"<sip:{c.contact_user}@{hp}>",
            "tcp": f"<sip:{c.contact_user}@{hp};transport=tcp>",
        }
        tls_hp = format_hostport(c.host, c.tls_port)
        self._via_base["tls"] = f"SIP/2.0/TLS {tls_hp}"
        self._contact["tls"] = f"<sip:{c.contact_user}@{tls_hp};transport=tls>"

    # -- the sans-IO surface -----------------------------------------------------------------

    def receive(
        self,
        data: bytes,
        source: tuple[str, int],
        now: float,
        *,
        transport: str = "udp",
        connection: object | None = None,
    ) -> None:
        """One datagram (or one framed stream message) from ``source``."""
        if not self.limits.admit_packet(source[0], now):
            self.stats["packets_dropped"] += 1
            return
        if not data.strip(b"\r\n"):
            self.stats["keepalives"] += 1
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._bad_message(data, exc, source, transport, connection)
            return
        self.receive_message(message, source, now, transport=transport, connection=connection)

    def receive_message(
        self,
        message: SipRequest | SipResponse | SipParseError,
        source: tuple[str, int],
        now: float,
        *,
        transport: str = "udp",
        connection: object | None = None,
    ) -> None:
        """An already parsed message (a ``StreamFramer`` output, errors included)."""
        if isinstance(message, SipParseError):
            self.stats["parse_errors"] += 1
            return
        transport = transport.lower()
        try:
            if isinstance(message, SipRequest):
                self._on_request(message, source, now, transport, connection)
            else:
                self._on_response(message, now)
        except SipParseError:
            # A message built without the parser's checks (or a header the parser leaves to
            # us, such as CSeq numbers in odd places): counted, never a traceback.
            self.stats["parse_errors"] += 1

    def next_event(self) -> ev.SipEvent | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[ev.SipEvent]:
        """Drain every pending event."""
        out = list(self._events)
        self._events.clear()
        return out

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        for _ in range(1_000_000):
            due = self._timers.pop_due(now)
            if due is None:
                return
            owner, name = due
            if isinstance(owner, Transaction):
                owner.on_timer(name, now)  # type: ignore[attr-defined]
            elif isinstance(owner, CallHandle):
                self._call_timer(owner, name, now)

    def active_calls(self) -> list[CallHandle]:
        return list(self._calls)

    def transaction_count(self) -> int:
        """Live transactions of every kind (answered ones included until their timers end)."""
        return len(self._server_tx) + len(self._client_tx)

    def transaction_summary(self, limit: int = 20) -> list[str]:
        """The first ``limit`` live transactions as ``kind method state`` (leak diagnosis)."""
        out: list[str] = []
        for tx in (*self._server_tx.values(), *self._client_tx.values()):
            if len(out) >= limit:
                break
            out.append(
                f"{tx.kind} {tx.method} {tx.state.value} {tx.request.headers.get('Call-ID')}"
            )
        return out

    def unanswered_server_transactions(self) -> int:
        """Server transactions still waiting for a final response (the overload measure)."""
        return self._unanswered

    # -- TransactionUser (called by transactions) --------------------------------------------

    def tx_send(self, tx: Transaction, data: bytes) -> None:
        self._out.append(Outgoing(data, tx.dest, tx.transport, tx.connection))

    def tx_set_timer(self, tx: Transaction, name: str, when: float) -> None:
        self._timers.set(tx, name, when)

    def tx_cancel_timer(self, tx: Transaction, name: str) -> None:
        self._timers.cancel(tx, name)

    def tx_terminated(self, tx: Transaction) -> None:
        if isinstance(tx, ServerTransaction):
            if self._server_tx.get(tx.key) is tx:
                del self._server_tx[tx.key]
                if not tx.answered:
                    self._unanswered -= 1
        elif self._client_tx.get(tx.key) is tx:
            del self._client_tx[tx.key]

    def tx_response(self, tx: ClientTransaction, response: SipResponse, now: float) -> None:
        owner = tx.owner
        if isinstance(owner, CallHandle):
            if tx.kind == "ict":
                if tx.request is owner.invite:
                    self._initial_invite_response(owner, tx, response, now)
                else:
                    self._reinvite_response(owner, tx, response, now)
            return  # BYE/CANCEL responses: nothing to report
        if owner is None and response.status >= 200:  # an ep.request() handle
            self._events.append(ev.ResponseReceived(transaction=tx, response=response))

    def tx_timeout(self, tx: Transaction, now: float) -> None:
        owner = tx.owner
        if isinstance(tx, ServerTransaction):
            if tx.kind == "ist" and tx.state is State.PROCEEDING:
                self.stats["tu_unanswered"] += 1
                if isinstance(owner, CallHandle) and owner.invite_tx is tx:
                    self._reject_initial(owner, 408, now, "local", "timeout")
                else:
                    self._send_response(tx, 408, now)
                    if isinstance(owner, CallHandle):
                        owner.reinvite_in = None
            elif tx.kind == "nist":
                self.stats["tu_unanswered"] += 1
            return
        self.stats["request_timeouts"] += 1
        if owner == "bye":
            # Every copy of our BYE was lost: our side has ended, the peer's may still be up
            # (only a media timeout or session timer can end it there).
            self.stats["bye_timeouts"] += 1
        if isinstance(owner, CallHandle):
            if owner.invite_tx is tx:
                owner.invite_tx = None
                status, reason = (487, "cancelled") if owner.cancel_sent else (408, "timeout")
                self._events.append(
                    ev.CallFailed(call=owner, status=status, reason=reason, response=None)
                )
                self._end_call(owner, "local", reason)
            elif owner.pending_reinvite is tx:
                owner.pending_reinvite = None
                self._events.append(
                    ev.ReinviteResponded(call=owner, status=408, reason="Request Timeout", sdp=b"")
                )
            return
        if owner is None:
            self._events.append(ev.RequestTimedOut(transaction=tx))

    # -- UAC API -----------------------------------------------------------------------------

    def invite(
        self,
        target_uri: str,
        dest: tuple[str, int],
        *,
        from_uri: str,
        from_display: str | None = None,
        to_uri: str | None = None,
        sdp: bytes | None = None,
        headers: Any = (),
        now: float,
        transport: str | None = None,
        call_id: str | None = None,
    ) -> CallHandle:
        """Start an outbound call to ``dest`` (an IP address and port, never resolved)."""
        transport = (transport or self.config.transport).lower()
        tag = new_tag(self.rng)
        branch = new_branch(self.rng)
        cid = call_id or new_call_id(self.rng, self.config.host)
        display = f"{quote_string(from_display)} " if from_display else ""
        req = build_request(
            "INVITE",
            target_uri,
            via=f"{self._via_base[transport]};branch={branch};rport",
            from_=f"{display}<{from_uri}>;tag={tag}",
            to=f"<{to_uri or target_uri}>",
            call_id=cid,
            cseq=1,
            contact=self._contact[transport],
            user_agent=self.config.user_agent,
            headers=[("Allow", self.config.allow), *headers],
            body=sdp or b"",
            content_type="application/sdp",
        )
        call = CallHandle(
            call_id=cid,
            direction="outbound",
            invite=req,
            local_tag=tag,
            peer=dest,
            transport=transport,
        )
        tx = ClientTransaction(self, (branch, "INVITE"), req, dest, transport)
        tx.owner = call
        call.invite_tx = tx
        self._client_tx[tx.key] = tx
        self._calls[call] = None
        tx.start(now)
        return call

    def cancel(self, call: CallHandle, now: float) -> None:
        """Cancel an unanswered outbound call (§9.1); once answered this is ``bye``."""
        if call.ended:
            return
        if call.direction != "outbound":
            raise TransactionError("cancel() is for outbound calls; use respond() or bye()")
        tx = call.invite_tx
        if not isinstance(tx, ClientTransaction):
            if call.dialog is not None:
                self.bye(call, now)
            return
        call.cancel_requested = True
        if tx.state is State.PROCEEDING:
            self._send_cancel(call, tx, now)
        # In Calling, §9.1 says wait for a provisional; Timer B ends it otherwise.

    def bye(self, call: CallHandle, now: float, *, headers: Any = ()) -> None:
        """Hang up: BYE when established, CANCEL (outbound) or 480 (inbound) when not."""
        if call.ended:
            return
        if call.invite_tx is not None and (call.dialog is None or not call.dialog.confirmed):
            if call.direction == "outbound":
                self.cancel(call, now)
            else:
                self._reject_initial(call, 480, now, "local", "hangup")
            return
        if call.dialog is None or call.bye_deferred is not None:
            return
        if call.ok_data is not None:
            # §15: no BYE before the ACK for our 2xx arrives or its wait times out.
            call.bye_deferred = list(headers)
            return
        self._send_bye(call, now, headers)

    def _send_bye(self, call: CallHandle, now: float, headers: Any) -> None:
        tx = self._dialog_request(call, "BYE", now, headers=headers)
        tx.owner = "bye"
        self._end_call(call, "local", "bye")

    def reinvite(self, call: CallHandle, sdp: bytes, now: float, *, headers: Any = ()) -> None:
        """Send a re-INVITE (§14.1); the answer comes as ReinviteResponded."""
        dialog = call.dialog
        if call.ended or dialog is None or not dialog.confirmed:
            raise TransactionError("re-INVITE needs an established call")
        if call.pending_reinvite is not None or call.reinvite_in is not None:
            raise TransactionError("an INVITE transaction is already in progress (§14.1)")
        tx = self._dialog_request(
            call, "INVITE", now, headers=headers, body=sdp, content_type="application/sdp"
        )
        tx.owner = call
        call.pending_reinvite = tx

    def in_dialog_request(
        self,
        call: CallHandle,
        method: str,
        *,
        headers: Any = (),
        body: bytes = b"",
        content_type: str | None = None,
        now: float,
    ) -> ClientTransaction:
        """A non-INVITE request inside an established call (INFO, REFER, NOTIFY, MESSAGE...,
        §12.2.1.1). The final response comes as ResponseReceived, or RequestTimedOut."""
        if method in ("INVITE", "ACK", "CANCEL", "BYE"):
            raise TransactionError(f"use reinvite()/bye()/cancel() for {method}")
        if call.ended or call.dialog is None:
            raise TransactionError(f"{call!r} has no dialog")
        return self._dialog_request(
            call, method, now, headers=headers, body=body, content_type=content_type
        )

    def request(
        self,
        method: str,
        uri: str,
        dest: tuple[str, int],
        *,
        headers: Any = (),
        body: bytes = b"",
        now: float,
        call_id: str | None = None,
        cseq: int | None = None,
        from_uri: str | None = None,
        to_uri: str | None = None,
        transport: str | None = None,
    ) -> ClientTransaction:
        """An out-of-dialog non-INVITE request (REGISTER, OPTIONS, MESSAGE...).

        From/To/Contact in ``headers`` are used as given; otherwise From is
        ``<from_uri or sip:user@host>;tag=<random>`` and To ``<to_uri or uri>``. To resend with
        credentials after 401/407, pass the same ``call_id`` and a higher ``cseq``
        (§22.2). Returns the handle that ResponseReceived / RequestTimedOut carry.
        """
        if method in ("INVITE", "ACK", "CANCEL"):
            raise TransactionError(f"use invite()/cancel() for {method}")
        transport = (transport or self.config.transport).lower()
        extra: list[tuple[str, str]] = []
        given: dict[str, str] = {}
        for name, value in headers:
            low = name.lower()
            if low in ("from", "f", "to", "t", "contact", "m") and low[0] not in given:
                given[low[0]] = value
            else:
                extra.append((name, value))
        c = self.config
        from_ = given.get("f") or (
            f"<{from_uri or f'sip:{c.contact_user}@{format_hostport(c.host, c.port)}'}>"
            f";tag={new_tag(self.rng)}"
        )
        to = given.get("t") or f"<{to_uri or uri}>"
        contact = given.get("c")
        if contact is None and method in ("REGISTER", "SUBSCRIBE", "REFER"):
            contact = self._contact[transport]
        branch = new_branch(self.rng)
        req = build_request(
            method,
            uri,
            via=f"{self._via_base[transport]};branch={branch};rport",
            from_=from_,
            to=to,
            call_id=call_id or new_call_id(self.rng, c.host),
            cseq=cseq if cseq is not None else 1,
            contact=contact,
            user_agent=c.user_agent,
            headers=extra,
            body=body,
        )
        tx = ClientTransaction(self, (branch, method), req, dest, transport)
        self._client_tx[tx.key] = tx
        tx.start(now)
        return tx

    # -- UAS API -----------------------------------------------------------------------------

    def respond(
        self,
        handle: CallHandle | ServerTransaction,
        status: int,
        *,
        reason: str | None = None,
        headers: Any = (),
        body: bytes = b"",
        now: float,
    ) -> bool:
        """Answer an inbound call (its INVITE) or a server transaction from an event.

        Returns False, sending nothing, when the call or transaction is already over (the
        caller cancelled or hung up while the TU was deciding: a race, not a bug). Raises
        ``TransactionError`` for a response the transaction cannot send (e.g. a 1xx after a
        final one).
        """
        if isinstance(handle, CallHandle):
            call: CallHandle | None = handle
            tx = handle.invite_tx
            if not isinstance(tx, ServerTransaction) or handle.ended:
                return False
        else:
            tx = handle
            call = tx.owner if isinstance(tx.owner, CallHandle) else None
            if tx.state is State.TERMINATED or (call is not None and call.ended):
                return False
        if call is not None and call.invite_tx is tx:
            if status >= 300:
                self._reject_initial(
                    call, status, now, "local", f"rejected:{status}", headers, reason, body
                )
            else:
                self._answer_initial(call, tx, status, reason, headers, body, now)
            return True
        extra = list(headers)
        if (
            tx.method == "INVITE"
            and 100 < status < 300
            and not any(n.lower() in ("contact", "m") for n, _ in extra)
        ):
            extra.append(("Contact", self._contact.get(tx.transport, self._contact["udp"])))
        data = self._send_response(tx, status, now, reason=reason, headers=extra, body=body)
        if call is not None and call.reinvite_in is tx and status >= 200:
            call.reinvite_in = None
            if status < 300:
                self._start_2xx_retransmit(call, data, now)
        return True

    # -- receiving ---------------------------------------------------------------------------

    def _on_request(
        self,
        req: SipRequest,
        source: tuple[str, int],
        now: float,
        transport: str,
        connection: object | None,
    ) -> None:
        branch, sent_by, top = _stamp_top_via(req, source)
        method = req.method
        key = server_key(branch, sent_by, method, req, top)
        tx = self._server_tx.get(key)
        if tx is not None:
            if method == "ACK":
                accepted = tx.state is State.ACCEPTED
                if not tx.receive_ack(now) and not accepted:
                    self.stats["acks_absorbed"] += 1
                if accepted:
                    self._ack_in_dialog(req, now)
                return
            self.stats["retransmissions_absorbed"] += 1
            if not self.limits.retransmission(source[0], now):
                # Past the source's allowance: dropped unanswered, counted against it alone.
                self.stats["retransmissions_dropped"] += 1
                return
            tx.receive_retransmission()
            return
        if method == "ACK":
            self._ack_in_dialog(req, now)
            return
        if method == "CANCEL":
            self.limits.transaction(source[0], now)
            self._on_cancel(req, key, source, now, transport, connection)
            return
        h = req.headers
        to_tag = tag_of(h.get("To"))
        if to_tag is not None:
            self.limits.transaction(source[0], now)
        if (
            method == "INVITE"
            and to_tag is None
            and (self.overloaded or self._unanswered >= self.config.max_server_transactions)
        ):
            self.stats["overload_rejections"] += 1
            self._stateless(
                req,
                503,
                source,
                transport,
                connection,
                [("Retry-After", str(self.config.retry_after))],
            )
            return
        if to_tag is None:
            refusal = self.limits.admit_request(source[0], now)
            if refusal is None and method == "INVITE":
                refusal = self.limits.admit_invite(source[0], now)
            if refusal is not None:
                self.stats["limit_rejections"] += 1
                retry = str(max(1, math.ceil(refusal[1])))
                self._stateless(req, 503, source, transport, connection, [("Retry-After", retry)])
                return
        tx = ServerTransaction(self, key, req, source, transport, connection)
        self._server_tx[key] = tx
        self._unanswered += 1
        if self.config.reject_max_forwards_zero:
            mf = h.get("Max-Forwards")
            if mf is not None and mf.strip() == "0":
                self._send_response(tx, 483, now)
                return
        required = h.get_list("Require")
        if required:
            unsupported = [r for r in required if r not in self.config.supported]
            if unsupported:
                self._send_response(tx, 420, now, headers=[("Unsupported", ", ".join(unsupported))])
                return
        if to_tag is not None:
            call = self._dialogs.get((h.get("Call-ID") or "", to_tag, tag_of(h.get("From")) or ""))
            if call is None:
                self.stats["no_dialog_481"] += 1
                self._send_response(tx, 481, now)
                return
            self._in_dialog(call, tx, req, now)
            return
        scheme = req.uri.partition(":")[0].lower()
        if scheme not in _URI_SCHEMES:
            # RFC 3261 §8.2.2.1 and RFC 4475 §3.3.2-3.3.3: a scheme we cannot serve.
            self._send_response(tx, 416, now)
            return
        if method == "INVITE":
            self._new_inbound_call(tx, req, source, transport, now)
        elif method == "OPTIONS" and not self.config.handle_options:
            self._send_response(tx, 200, now, headers=self._capabilities())
        elif method in _TU_METHODS or method == "OPTIONS":
            self._guard(tx, now)
            self._events.append(
                ev.RequestReceived(transaction=tx, request=req, source=source, transport=transport)
            )
        elif method in _DIALOG_ONLY:
            self.stats["no_dialog_481"] += 1
            self._send_response(tx, 481, now)
        else:
            self._send_response(tx, 501, now)

    def _on_response(self, resp: SipResponse, now: float) -> None:
        via = resp.headers.get("Via")
        if via is None:
            raise SipParseError("response without Via")
        _, method = _cseq(resp)
        branch = _branch_of(via)
        tx = self._client_tx.get((branch, method))
        if tx is not None:
            tx.receive_response(resp, now)
            return
        if method == "INVITE" and 200 <= resp.status < 300:
            h = resp.headers
            key = (h.get("Call-ID") or "", tag_of(h.get("From")) or "", tag_of(h.get("To")) or "")
            call = self._dialogs.get(key)
            if call is not None and call.ack_data is not None:
                self.stats["retransmissions_absorbed"] += 1
                self._out.append(Outgoing(call.ack_data, call.peer, call.transport, None))
                return
        self.stats["stray_responses"] += 1

    def _bad_message(
        self,
        data: bytes,
        exc: SipParseError,
        source: tuple[str, int],
        transport: str,
        connection: object | None,
    ) -> None:
        """§8.2 / RFC 4475: answer what we can with the hinted status, drop the rest."""
        self.stats["parse_errors"] += 1
        start = data.lstrip(b"\r\n")[:16]
        method = start.split(b" ", 1)[0].decode("ascii", "replace")
        if start.upper().startswith(b"SIP/") or method == "ACK":
            return
        salvaged = salvage_headers(data)
        if salvaged is None:
            return
        fake = SipRequest(method=method, uri="sip:invalid", headers=salvaged)
        try:
            _stamp_top_via(fake, source)
        except SipParseError:
            return
        text = str(exc).replace('"', "'")[:120]
        resp = make_response(
            fake,
            exc.status_hint,
            to_tag=new_tag(self.rng),
            headers=[("Warning", f'399 {self.config.host} "{text}"')],
        )
        self.stats["bad_requests_answered"] += 1
        self._out.append(Outgoing(resp.to_bytes(), source, transport.lower(), connection))

    # -- inbound calls and dialogs -----------------------------------------------------------

    def _new_inbound_call(
        self,
        tx: ServerTransaction,
        req: SipRequest,
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        call = CallHandle(
            call_id=req.headers.get("Call-ID") or "",
            direction="inbound",
            invite=req,
            local_tag=new_tag(self.rng),
            peer=source,
            transport=transport,
        )
        tx.owner = call
        call.invite_tx = tx
        self._calls[call] = None
        self.limits.setup_started(call, source[0], now)
        self._send_response(tx, 100, now)
        self._timers.set(tx, "timer_c", now + self.config.invite_server_timeout)
        self._events.append(
            ev.InviteReceived(call=call, request=req, source=source, transport=transport)
        )

    def _answer_initial(
        self,
        call: CallHandle,
        tx: ServerTransaction,
        status: int,
        reason: str | None,
        headers: Any,
        body: bytes,
        now: float,
    ) -> None:
        if status > 100:
            self.limits.setup_done(call)
            if status >= 200:
                self.limits.call_up(call, call.peer[0])
        if status > 100 and call.dialog is None:
            dialog = Dialog.as_uas(
                tx.request,
                local_tag=call.local_tag,
                peer=tx.dest,
                transport=tx.transport,
                connection=tx.connection,
                confirmed=False,
            )
            call.dialog = dialog
            self._dialogs[dialog.key] = call
        extra = list(headers)
        if status > 100 and not any(n.lower() in ("contact", "m") for n, _ in extra):
            extra.append(("Contact", self._contact.get(tx.transport, self._contact["udp"])))
        if 200 <= status < 300:
            extra.append(("Allow", self.config.allow))
        data = self._send_response(
            tx, status, now, reason=reason, headers=extra, body=body, to_tag=call.local_tag
        )
        if status < 200:
            if status > 100:
                call.state = "early"
            return
        assert call.dialog is not None
        call.dialog.confirmed = True
        call.state = "answered"
        call.invite_tx = None
        # The transaction lingers in Accepted (RFC 6026) only to absorb INVITE retransmissions
        # and to answer a late CANCEL with our To-tag: keep that tag, not the call.
        tx.request = _SPENT
        tx.owner = call.local_tag
        self._start_2xx_retransmit(call, data, now)

    def _start_2xx_retransmit(self, call: CallHandle, data: bytes, now: float) -> None:
        """§13.3.1.4: the UAS core re-sends the 2xx T1, 2T1... T2 until the ACK, 64*T1 max."""
        call.ok_data = data
        tv = self.timer_values
        if call.transport == "udp":
            call.ok_interval = tv.t1
            self._timers.set(call, "ok_retransmit", now + tv.t1)
        self._timers.set(call, "ack_wait", now + 64 * tv.t1)

    def _reject_initial(
        self,
        call: CallHandle,
        status: int,
        now: float,
        by: Any,
        why: str,
        headers: Any = (),
        reason: str | None = None,
        body: bytes = b"",
    ) -> None:
        tx = call.invite_tx
        assert isinstance(tx, ServerTransaction)
        call.invite_tx = None
        self._send_response(
            tx, status, now, reason=reason, headers=headers, body=body, to_tag=call.local_tag
        )
        self._end_call(call, by, why)

    def _in_dialog(
        self, call: CallHandle, tx: ServerTransaction, req: SipRequest, now: float
    ) -> None:
        dialog = call.dialog
        assert dialog is not None
        tx.owner = call
        number, _ = _cseq(req)
        if not dialog.accept_remote_cseq(number):
            self._send_response(tx, 500, now, reason="CSeq Out of Order")
            return
        method = req.method
        if method == "BYE":
            self._send_response(tx, 200, now)
            if isinstance(call.invite_tx, ServerTransaction):
                pending = call.invite_tx
                call.invite_tx = None
                self._send_response(pending, 487, now, to_tag=call.local_tag)
            self._end_call(call, "remote", "bye")
        elif method == "INVITE":
            if call.pending_reinvite is not None:
                self._send_response(tx, 491, now)
            elif call.reinvite_in is not None or call.invite_tx is not None:
                self._send_response(
                    tx, 500, now, headers=[("Retry-After", str(self.rng.randint(0, 10)))]
                )
            else:
                call.reinvite_in = tx
                self._send_response(tx, 100, now)
                self._timers.set(tx, "timer_c", now + self.config.invite_server_timeout)
                dialog.update_target(req)
                self._events.append(
                    ev.ReinviteReceived(call=call, transaction=tx, request=req, sdp=req.body)
                )
        elif method == "INFO":
            self._send_response(tx, 200, now)
            self._events.append(
                ev.InfoReceived(
                    call=call,
                    content_type=req.headers.get("Content-Type") or "",
                    body=req.body,
                    request=req,
                )
            )
        elif method == "OPTIONS":
            self._send_response(tx, 200, now, headers=self._capabilities())
        elif method in _KNOWN:
            self._guard(tx, now)
            self._events.append(ev.InDialogRequestReceived(call=call, transaction=tx, request=req))
        else:
            self._send_response(tx, 501, now)

    def _ack_in_dialog(self, req: SipRequest, now: float) -> None:
        h = req.headers
        call = self._dialogs.get(
            (h.get("Call-ID") or "", tag_of(h.get("To")) or "", tag_of(h.get("From")) or "")
        )
        if call is None or call.ok_data is None:
            self.stats["acks_absorbed"] += 1
            return
        call.ok_data = None
        self._timers.cancel(call, "ok_retransmit")
        self._timers.cancel(call, "ack_wait")
        if call.state == "answered":
            call.state = "confirmed"
        self._events.append(ev.AckReceived(call=call, sdp=req.body))
        if call.bye_deferred is not None:
            self._send_bye(call, now, call.bye_deferred)

    def _on_cancel(
        self,
        req: SipRequest,
        key: tuple[Any, ...],
        source: tuple[str, int],
        now: float,
        transport: str,
        connection: object | None,
    ) -> None:
        """§9.2: 200 to the CANCEL and 487 to a pending INVITE; 481 when nothing matches."""
        ctx = ServerTransaction(self, key, req, source, transport, connection)
        self._server_tx[key] = ctx
        self._unanswered += 1
        inv = self._server_tx.get((*key[:-1], "INVITE"))
        if inv is None:
            self.stats["no_dialog_481"] += 1
            self._send_response(ctx, 481, now)
            return
        call = inv.owner
        if isinstance(call, CallHandle):
            to_tag: str | None = call.local_tag
        else:
            to_tag = call if isinstance(call, str) else None
        self._send_response(ctx, 200, now, to_tag=to_tag)
        if inv.answered:
            return  # too late: the final response stands (§9.2)
        if isinstance(call, CallHandle) and call.invite_tx is inv:
            call.invite_tx = None
            self._send_response(inv, 487, now, to_tag=call.local_tag)
            self._events.append(ev.CancelReceived(call=call))
            self._end_call(call, "remote", "cancelled")
        else:
            self._send_response(inv, 487, now)
            if isinstance(call, CallHandle) and call.reinvite_in is inv:
                call.reinvite_in = None

    # -- outbound calls ----------------------------------------------------------------------

    def _initial_invite_response(
        self, call: CallHandle, tx: ClientTransaction, resp: SipResponse, now: float
    ) -> None:
        status = resp.status
        if status < 200:
            if call.cancel_requested and not call.cancel_sent:
                self._send_cancel(call, tx, now)
            elif not call.cancel_sent:
                self._timers.set(tx, "timer_c", now + self.config.proceeding_timeout)
            if status > 100 and not call.ended:
                call.state = "early"
                self._events.append(
                    ev.CallProgress(call=call, status=status, reason=resp.reason, sdp=resp.body)
                )
            return
        if status >= 300:
            call.invite_tx = None
            if call.ended:
                return
            cancelled = call.cancel_sent and status == 487
            self._events.append(
                ev.CallFailed(call=call, status=status, reason=resp.reason, response=resp)
            )
            self._end_call(
                call,
                "local" if cancelled else "remote",
                "cancelled" if cancelled else f"failed:{status}",
            )
            return
        # 2xx (§13.2.2.4): ACK every one of them; the first one sets up the dialog.
        to_tag = tag_of(resp.headers.get("To")) or ""
        dialog = call.dialog
        if dialog is not None and dialog.remote_tag == to_tag and dialog.confirmed:
            if call.ack_data is not None:
                self.stats["retransmissions_absorbed"] += 1
                self._out.append(Outgoing(call.ack_data, call.peer, call.transport, None))
            return
        new = Dialog.as_uac(
            call.invite, resp, peer=call.peer, transport=call.transport, connection=None
        )
        ack = new.make_request(
            "ACK",
            via_base=self._via_base[call.transport],
            rng=self.rng,
            cseq=new.local_cseq,
            user_agent=self.config.user_agent,
        )
        ack_data = ack.to_bytes()
        self._out.append(Outgoing(ack_data, call.peer, call.transport, None))
        if call.ended or dialog is not None or call.cancel_requested:
            # A second fork, a call we gave up on, or a CANCEL that lost the race (§9.1):
            # ACK then BYE this dialog.
            bye = new.make_request(
                "BYE",
                via_base=self._via_base[call.transport],
                rng=self.rng,
                user_agent=self.config.user_agent,
            )
            btx = self._start_client(bye, call.peer, call.transport, now=now)
            btx.owner = "fork"
            if not call.ended:
                call.invite_tx = None
                self._events.append(
                    ev.CallFailed(call=call, status=487, reason="cancelled", response=resp)
                )
                self._end_call(call, "local", "cancelled")
            return
        call.invite_tx = None
        tx.ack_data = ack_data
        call.ack_data = ack_data
        call.dialog = new
        self._dialogs[new.key] = call
        call.state = "confirmed"
        self._events.append(ev.CallAnswered(call=call, status=status, sdp=resp.body, response=resp))

    def _reinvite_response(
        self, call: CallHandle, tx: ClientTransaction, resp: SipResponse, now: float
    ) -> None:
        status = resp.status
        if status < 200:
            return
        dialog = call.dialog
        if status < 300 and dialog is not None and not call.ended:
            if tx.ack_data is None:
                number, _ = _cseq(tx.request)
                ack = dialog.make_request(
                    "ACK", via_base=self._via_base[call.transport], rng=self.rng, cseq=number
                )
                tx.ack_data = ack.to_bytes()
                dialog.update_target(resp)
            else:
                self.stats["retransmissions_absorbed"] += 1
            self._out.append(Outgoing(tx.ack_data, call.peer, call.transport, None))
        if call.pending_reinvite is tx:
            call.pending_reinvite = None
            self._events.append(
                ev.ReinviteResponded(call=call, status=status, reason=resp.reason, sdp=resp.body)
            )

    def _send_cancel(self, call: CallHandle, tx: ClientTransaction, now: float) -> None:
        call.cancel_sent = True
        ctx = self._start_client(
            make_cancel(call.invite, self.config.user_agent),
            call.peer,
            call.transport,
            now=now,
            key=(tx.key[0], "CANCEL"),
        )
        ctx.owner = "cancel"
        # §9.1: no final response within 64*T1 of the CANCEL: the INVITE is over.
        self._timers.set(tx, "timer_c", now + 64 * self.timer_values.t1)

    # -- helpers -----------------------------------------------------------------------------

    def _start_client(
        self,
        req: SipRequest,
        dest: tuple[str, int],
        transport: str,
        *,
        now: float,
        key: tuple[Any, ...] | None = None,
    ) -> ClientTransaction:
        if key is None:
            branch = parse_via(req.headers.get_list("Via")[0]).branch
            key = (branch, req.method)
        tx = ClientTransaction(self, key, req, dest, transport)
        self._client_tx[key] = tx
        tx.start(now)
        return tx

    def _dialog_request(
        self,
        call: CallHandle,
        method: str,
        now: float,
        *,
        headers: Any = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> ClientTransaction:
        dialog = call.dialog
        assert dialog is not None
        branch = new_branch(self.rng)
        req = dialog.make_request(
            method,
            via_base=self._via_base[call.transport],
            rng=self.rng,
            branch=branch,
            contact=self._contact[call.transport] if method == "INVITE" else None,
            user_agent=self.config.user_agent,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        tx = ClientTransaction(
            self, (branch, method), req, call.peer, call.transport, dialog.connection
        )
        self._client_tx[tx.key] = tx
        tx.start(now)
        return tx

    def _send_response(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Any = (),
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> bytes:
        req = tx.request
        if to_tag is None and status > 100:
            to_tag = new_tag(self.rng)  # §8.2.6.2; ignored when the To already has a tag
        extra = list(headers)
        if self.config.user_agent:
            extra.append(("Server", self.config.user_agent))
        if (
            body
            and req.method == "INVITE"
            and not any(n.lower() in ("content-type", "c") for n, _ in extra)
        ):
            extra.append(("Content-Type", "application/sdp"))
        resp = make_response(req, status, reason, to_tag=to_tag, headers=extra, body=body)
        was_answered = tx.answered
        data = tx.send_response(resp, now)
        if status >= 200 and not was_answered:
            self._unanswered -= 1
            if tx.kind == "nist":
                _release(tx)
        return data

    def _stateless(
        self,
        req: SipRequest,
        status: int,
        source: tuple[str, int],
        transport: str,
        connection: object | None,
        headers: list[tuple[str, str]],
    ) -> None:
        resp = make_response(req, status, to_tag=new_tag(self.rng), headers=headers)
        self._out.append(Outgoing(resp.to_bytes(), source, transport, connection))

    def _capabilities(self) -> list[tuple[str, str]]:
        c = self.config
        caps = [("Allow", c.allow), ("Accept", "application/sdp")]
        if c.supported:
            caps.append(("Supported", ", ".join(sorted(c.supported))))
        return caps

    def _guard(self, tx: ServerTransaction, now: float) -> None:
        """A TU that never answers a non-INVITE request: forget it after 64*T1."""
        self._timers.set(tx, "timer_c", now + 64 * self.timer_values.t1)

    def _end_call(self, call: CallHandle, by: Any, reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        call.state = "ended"
        call.deadlines.clear()
        call.ok_data = None
        inv = call.invite_tx
        if isinstance(inv, ServerTransaction) and inv.answered:
            _release(inv)
        dialog = call.dialog
        if dialog is not None and self._dialogs.get(dialog.key) is call:
            del self._dialogs[dialog.key]
        self._calls.pop(call, None)
        self.limits.call_ended(call)
        self._events.append(ev.CallEnded(call=call, by=by, reason=reason))

    def _call_timer(self, call: CallHandle, name: str, now: float) -> None:
        if name == "ok_retransmit" and call.ok_data is not None:
            dialog = call.dialog
            conn = dialog.connection if dialog is not None else None
            self._out.append(Outgoing(call.ok_data, call.peer, call.transport, conn))
            call.ok_interval = min(call.ok_interval * 2, self.timer_values.t2)
            self._timers.set(call, "ok_retransmit", now + call.ok_interval)
        elif name == "ack_wait" and call.ok_data is not None:
            call.ok_data = None
            self._timers.cancel(call, "ok_retransmit")
            self.stats["ack_timeouts"] += 1
            if call.bye_deferred is not None:
                self._send_bye(call, now, call.bye_deferred)
            else:
                self._events.append(ev.AckTimedOut(call=call))
