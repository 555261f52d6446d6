"""The four RFC 3261 §17 transaction state machines, as one transition table (h11's Rule 1).

Everything that decides a transaction's next state lives in ``TRANSITIONS`` below; the classes
only carry data and perform the side effects the RFC attaches to each transition (send, arm a
timer, report to the transaction user). Side effects go through ``TransactionUser`` (the
endpoint), which owns the timer heap and the outgoing queue: transactions never touch I/O.

Machines (``Kind``):

* ``ict``  INVITE client (§17.1.1, Figure 5, with RFC 6026's Accepted state: 2xx are passed
  up for Timer M so retransmitted 2xx reach the UAC core, which re-ACKs them),
* ``nict`` non-INVITE client (§17.1.2, Figure 6),
* ``ist``  INVITE server (§17.2.1, Figure 7, with RFC 6026's Accepted state, Timer L),
* ``nist`` non-INVITE server (§17.2.2, Figure 8).

Retransmission timers (A, E, G) run only over unreliable transports (§17.1.1.2); D, I, J, K
are zero over reliable ones.

Matching (§17.1.3, §17.2.3): server transactions are keyed by ``(branch, sent-by, method)``
with ACK mapped to INVITE; branch-less RFC 2543 requests by
``("2543", Call-ID, From tag, CSeq number, top Via, method)``; client transactions by
``(branch, CSeq method)``. One dict lookup per message.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, Protocol

from media_gateway.sip.builders import make_ack_for_non2xx
from media_gateway.sip.errors import TransactionError
from media_gateway.sip.message import SipRequest, SipResponse
from media_gateway.sip.timers import TimerValues

Kind = Literal["ict", "nict", "ist", "nist"]


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


S = State

# Inputs: "1xx", "2xx", "final" (3xx-6xx) received (client) or sent by the TU (server);
# "request" (a retransmission, server), "ack" (server INVITE), "timer_<x>".
TRANSITIONS: dict[tuple[Kind, State, str], State] = {
    # INVITE client, §17.1.1.2 (Figure 5) + RFC 6026 §7.2
    ("ict", S.CALLING, "timer_a"): S.CALLING,
    ("ict", S.CALLING, "timer_b"): S.TERMINATED,
    ("ict", S.CALLING, "1xx"): S.PROCEEDING,
    ("ict", S.PROCEEDING, "1xx"): S.PROCEEDING,
    ("ict", S.CALLING, "2xx"): S.ACCEPTED,
    ("ict", S.PROCEEDING, "2xx"): S.ACCEPTED,
    ("ict", S.ACCEPTED, "2xx"): S.ACCEPTED,
    ("ict", S.ACCEPTED, "timer_m"): S.TERMINATED,
    ("ict", S.CALLING, "final"): S.COMPLETED,
    ("ict", S.PROCEEDING, "final"): S.COMPLETED,
    ("ict", S.COMPLETED, "final"): S.COMPLETED,
    ("ict", S.COMPLETED, "timer_d"): S.TERMINATED,
    # Guard of a UA with no proxy Timer C: a PROCEEDING INVITE never answered (or cancelled
    # and never answered, §9.1 "64*T1") ends rather than leaking.
    ("ict", S.PROCEEDING, "timer_c"): S.TERMINATED,
    # non-INVITE client, §17.1.2.2 (Figure 6)
    ("nict", S.TRYING, "timer_e"): S.TRYING,
    ("nict", S.PROCEEDING, "timer_e"): S.PROCEEDING,
    ("nict", S.TRYING, "timer_f"): S.TERMINATED,
    ("nict", S.PROCEEDING, "timer_f"): S.TERMINATED,
    ("nict", S.TRYING, "1xx"): S.PROCEEDING,
    ("nict", S.PROCEEDING, "1xx"): S.PROCEEDING,
    ("nict", S.TRYING, "2xx"): S.COMPLETED,
    ("nict", S.PROCEEDING, "2xx"): S.COMPLETED,
    ("nict", S.TRYING, "final"): S.COMPLETED,
    ("nict", S.PROCEEDING, "final"): S.COMPLETED,
    ("nict", S.COMPLETED, "timer_k"): S.TERMINATED,
    # INVITE server, §17.2.1 (Figure 7) + RFC 6026 §7.1
    ("ist", S.PROCEEDING, "request"): S.PROCEEDING,
    ("ist", S.PROCEEDING, "1xx"): S.PROCEEDING,
    ("ist", S.PROCEEDING, "2xx"): S.ACCEPTED,
    ("ist", S.ACCEPTED, "2xx"): S.ACCEPTED,
    ("ist", S.ACCEPTED, "request"): S.ACCEPTED,
    ("ist", S.ACCEPTED, "ack"): S.ACCEPTED,
    ("ist", S.ACCEPTED, "timer_l"): S.TERMINATED,
    ("ist", S.PROCEEDING, "final"): S.COMPLETED,
    ("ist", S.COMPLETED, "request"): S.COMPLETED,
    ("ist", S.COMPLETED, "timer_g"): S.COMPLETED,
    ("ist", S.COMPLETED, "timer_h"): S.TERMINATED,
    ("ist", S.COMPLETED, "ack"): S.CONFIRMED,
    ("ist", S.CONFIRMED, "ack"): S.CONFIRMED,
    ("ist", S.CONFIRMED, "request"): S.CONFIRMED,
    ("ist", S.CONFIRMED, "timer_i"): S.TERMINATED,
    # A TU that never answers an INVITE (guard, not in the RFC): the endpoint sends 408.
    ("ist", S.PROCEEDING, "timer_c"): S.PROCEEDING,
    # non-INVITE server, §17.2.2 (Figure 8)
    ("nist", S.TRYING, "request"): S.TRYING,
    ("nist", S.TRYING, "1xx"): S.PROCEEDING,
    ("nist", S.PROCEEDING, "1xx"): S.PROCEEDING,
    ("nist", S.PROCEEDING, "request"): S.PROCEEDING,
    ("nist", S.TRYING, "2xx"): S.COMPLETED,
    ("nist", S.TRYING, "final"): S.COMPLETED,
    ("nist", S.PROCEEDING, "2xx"): S.COMPLETED,
    ("nist", S.PROCEEDING, "final"): S.COMPLETED,
    ("nist", S.COMPLETED, "request"): S.COMPLETED,
    ("nist", S.COMPLETED, "timer_j"): S.TERMINATED,
    # A TU that never answers a non-INVITE request (guard, 64*T1): dropped silently.
    ("nist", S.TRYING, "timer_c"): S.TERMINATED,
    ("nist", S.PROCEEDING, "timer_c"): S.TERMINATED,
}


def status_input(status: int) -> str:
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "final"


class TransactionUser(Protocol):
    """What a transaction needs from its endpoint (all side effects)."""

    timer_values: TimerValues

    def tx_send(self, tx: Transaction, data: bytes) -> None: ...

    def tx_set_timer(self, tx: Transaction, name: str, when: float) -> None: ...

    def tx_cancel_timer(self, tx: Transaction, name: str) -> None: ...

    def tx_response(self, tx: ClientTransaction, response: SipResponse, now: float) -> None: ...

    def tx_timeout(self, tx: Transaction, now: float) -> None: ...

    def tx_terminated(self, tx: Transaction) -> None: ...


class Transaction:
    """Common data of the four machines."""

    __slots__ = (
        "connection",
        "deadlines",
        "dest",
        "interval",
        "key",
        "kind",
        "owner",
        "reliable",
        "request",
        "state",
        "transport",
        "tu",
    )

    def __init__(
        self,
        tu: TransactionUser,
        kind: Kind,
        key: tuple[Any, ...],
        request: SipRequest,
        dest: tuple[str, int],
        transport: str,
        connection: object | None,
        state: State,
    ) -> None:
        self.tu = tu
        self.kind: Kind = kind
        self.key = key
        self.request = request
        self.dest = dest
        """Where this transaction sends: our request's destination, or the request's source."""
        self.transport = transport
        self.connection = connection
        self.reliable = transport != "udp"
        self.state = state
        self.deadlines: dict[str, float] = {}
        self.interval = 0.0
        self.owner: Any = None
        """The call (or None) this transaction works for; set by the endpoint."""

    @property
    def method(self) -> str:
        return self.request.method

    def _fire(self, event: str) -> State | None:
        """Apply ``event``; returns the new state, or ``None`` if the table has no such edge."""
        new = TRANSITIONS.get((self.kind, self.state, event))
        if new is not None:
            self.state = new
        return new

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self.deadlines.clear()
        self.tu.tx_terminated(self)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.request.method} {self.state.value} {self.key!r}>"


class ClientTransaction(Transaction):
    """INVITE (``ict``) and non-INVITE (``nict``) client transactions (§17.1)."""

    __slots__ = ("ack_data", "data", "last_response")

    def __init__(
        self,
        tu: TransactionUser,
        key: tuple[Any, ...],
        request: SipRequest,
        dest: tuple[str, int],
        transport: str,
        connection: object | None = None,
    ) -> None:
        kind: Kind = "ict" if request.method == "INVITE" else "nict"
        super().__init__(
            tu,
            kind,
            key,
            request,
            dest,
            transport,
            connection,
            S.CALLING if kind == "ict" else S.TRYING,
        )
        self.data = request.to_bytes()
        self.ack_data: bytes | None = None
        self.last_response: SipResponse | None = None

    def start(self, now: float) -> None:
        """Send the request and arm A/B (INVITE) or E/F (non-INVITE)."""
        tu, tv = self.tu, self.tu.timer_values
        tu.tx_send(self, self.data)
        if self.kind == "ict":
            if not self.reliable:
                self.interval = tv.timer_a
                tu.tx_set_timer(self, "timer_a", now + self.interval)
            tu.tx_set_timer(self, "timer_b", now + tv.timer_b)
        else:
            if not self.reliable:
                self.interval = tv.timer_e
                tu.tx_set_timer(self, "timer_e", now + self.interval)
            tu.tx_set_timer(self, "timer_f", now + tv.timer_f)

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response matched this transaction (§17.1.3)."""
        old = self.state
        new = self._fire(status_input(response.status))
        if new is None:
            return  # e.g. a late 1xx after the final: absorbed
        tu, tv = self.tu, self.tu.timer_values
        if self.kind == "ict":
            if new is S.COMPLETED:
                if old is not S.COMPLETED:
                    self.deadlines.clear()
                    self.ack_data = make_ack_for_non2xx(self.request, response).to_bytes()
                    tu.tx_send(self, self.ack_data)
                    self.last_response = response
                    d = tv.timer_d(self.reliable)
                    if d > 0:
                        tu.tx_set_timer(self, "timer_d", now + d)
                    tu.tx_response(self, response, now)
                    if d <= 0:
                        self._terminate()
                elif self.ack_data is not None:
                    tu.tx_send(self, self.ack_data)  # §17.1.1.2: re-ACK retransmitted finals
                return
            if new is S.PROCEEDING:
                if old is S.CALLING:
                    tu.tx_cancel_timer(self, "timer_a")
                    tu.tx_cancel_timer(self, "timer_b")
                tu.tx_response(self, response, now)
                return
            # ACCEPTED: every 2xx (first and retransmitted, every fork) goes to the UAC core.
            if old is not S.ACCEPTED:
                self.deadlines.clear()
                tu.tx_set_timer(self, "timer_m", now + tv.timer_m)
            self.last_response = response
            tu.tx_response(self, response, now)
            return
        # nict
        if new is S.PROCEEDING:
            if old is S.TRYING and not self.reliable:
                pass  # §17.1.2.2: E keeps running, capped at T2 from now on
            return
        self.deadlines.clear()
        self.last_response = response
        tu.tx_response(self, response, now)
        k = tv.timer_k(self.reliable)
        if k <= 0:
            self._terminate()
        else:
            tu.tx_set_timer(self, "timer_k", now + k)

    def on_timer(self, name: str, now: float) -> None:
        new = self._fire(name)
        if new is None:
            return
        tu, tv = self.tu, self.tu.timer_values
        if name == "timer_a":
            tu.tx_send(self, self.data)
            self.interval *= 2  # §17.1.1.2: A doubles without the T2 cap
            tu.tx_set_timer(self, "timer_a", now + self.interval)
        elif name == "timer_e":
            tu.tx_send(self, self.data)
            if self.state is S.PROCEEDING:
                self.interval = tv.t2
            else:
                self.interval = min(self.interval * 2, tv.t2)
            tu.tx_set_timer(self, "timer_e", now + self.interval)
        elif name in ("timer_b", "timer_f", "timer_c"):
            tu.tx_timeout(self, now)
            self._terminate()
        else:  # timer_d, timer_k, timer_m
            self._terminate()


class ServerTransaction(Transaction):
    """INVITE (``ist``) and non-INVITE (``nist``) server transactions (§17.2).

    ``dest`` is the packet's source address: responses always go back there (RFC 3581
    symmetric response; the endpoint never sends to an address read from a message).
    """

    __slots__ = ("last_data", "last_status")

    def __init__(
        self,
        tu: TransactionUser,
        key: tuple[Any, ...],
        request: SipRequest,
        source: tuple[str, int],
        transport: str,
        connection: object | None = None,
    ) -> None:
        kind: Kind = "ist" if request.method == "INVITE" else "nist"
        super().__init__(
            tu,
            kind,
            key,
            request,
            source,
            transport,
            connection,
            S.PROCEEDING if kind == "ist" else S.TRYING,
        )
        self.last_data: bytes | None = None
        self.last_status = 0

    @property
    def answered(self) -> bool:
        """True once a final response was sent."""
        return self.last_status >= 200

    def receive_retransmission(self) -> None:
        """The same request again (§17.2.1, §17.2.2): re-send the last response, if any."""
        if self._fire("request") is not None and self.last_data is not None:
            self.tu.tx_send(self, self.last_data)

    def receive_ack(self, now: float) -> bool:
        """An ACK matched this INVITE transaction; True when it confirmed a non-2xx final."""
        old = self.state
        new = self._fire("ack")
        if new is S.CONFIRMED and old is S.COMPLETED:
            self.deadlines.clear()
            i = self.tu.timer_values.timer_i(self.reliable)
            if i <= 0:
                self._terminate()
            else:
                self.tu.tx_set_timer(self, "timer_i", now + i)
            return True
        return False

    def send_response(self, response: SipResponse, now: float) -> bytes:
        """The TU's response (§17.2.1, §17.2.2). Raises TransactionError when not allowed."""
        old = self.state
        new = self._fire(status_input(response.status))
        if new is None:
            raise TransactionError(
                f"cannot send {response.status} in {self.kind} state {old.value}"
            )
        data = response.to_bytes()
        self.last_data = data
        self.last_status = response.status
        tu, tv = self.tu, self.tu.timer_values
        tu.tx_send(self, data)
        if new is old and new is not S.ACCEPTED:
            return data  # another provisional
        if response.status >= 200:
            tu.tx_cancel_timer(self, "timer_c")
        if self.kind == "ist":
            if new is S.ACCEPTED and old is not S.ACCEPTED:
                tu.tx_set_timer(self, "timer_l", now + tv.timer_l)
            elif new is S.COMPLETED:
                if not self.reliable:
                    self.interval = tv.timer_g
                    tu.tx_set_timer(self, "timer_g", now + self.interval)
                tu.tx_set_timer(self, "timer_h", now + tv.timer_h)
        elif new is S.COMPLETED:
            j = tv.timer_j(self.reliable)
            if j <= 0:
                self._terminate()
            else:
                tu.tx_set_timer(self, "timer_j", now + j)
        return data

    def on_timer(self, name: str, now: float) -> None:
        new = self._fire(name)
        if new is None:
            return
        tu, tv = self.tu, self.tu.timer_values
        if name == "timer_g":
            if self.last_data is not None:
                tu.tx_send(self, self.last_data)
            self.interval = min(self.interval * 2, tv.t2)
            tu.tx_set_timer(self, "timer_g", now + self.interval)
        elif name in ("timer_h", "timer_c"):
            tu.tx_timeout(self, now)  # H: no ACK for our final; C: the TU never answered
            if new is S.TERMINATED:
                self._terminate()
        else:  # timer_i, timer_j, timer_l
            self._terminate()


def server_key(
    branch: str | None,
    sent_by: str,
    method: str,
    request: SipRequest,
    top_via: str,
) -> tuple[Any, ...]:
    """§17.2.3 key: ``(branch, sent-by, method)``, ACK mapped to INVITE; RFC 2543 fallback."""
    m = "INVITE" if method == "ACK" else method
    if branch is not None and branch.startswith("z9hG4bK"):
        return (branch, sent_by, m)
    h = request.headers
    from_ = h.get("From") or ""
    tag_at = from_.find(";tag=")
    from_tag = from_[tag_at + 5 :].split(";")[0] if tag_at >= 0 else ""
    number = (h.get("CSeq") or "").split(" ")[0]
    return ("2543", h.get("Call-ID"), from_tag, number, top_via, m)
