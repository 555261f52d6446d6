"""Building SIP messages: responses per RFC 3261 §8.2.6, our requests per §8.1.1, ACK/CANCEL.

Identifiers come from an injected ``random.Random`` (deterministic tests): branches carry the
RFC 3261 magic cookie ``z9hG4bK`` (§8.1.1.7), tags and Call-IDs are 64 random bits in hex
(§19.3 asks for at least 32).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from media_gateway.sip.message import Headers, SipRequest, SipResponse, reason_phrase

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 §8.1.1.7: a branch starting with this was made by an RFC 3261 element."""

DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
"""Methods whose 1xx/2xx copy Record-Route (§12.1.1; RFC 6665, RFC 3515)."""

_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")


def new_branch(rng: random.Random) -> str:
    return f"{MAGIC_COOKIE}{rng.getrandbits(64):016x}"


def new_tag(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def new_call_id(rng: random.Random, host: str) -> str:
    return f"{rng.getrandbits(64):016x}@{host}"


def add_tag(value: str, tag: str) -> str:
    """Append ``;tag=`` to a From/To value textually (works on salvaged, unparsed values)."""
    # In both name-addr and addr-spec forms, what follows is a header parameter (§20.10).
    return f"{value};tag={tag}"


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    request_headers: Headers | None = None,
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6.2).

    Copies every Via (in order), From, To, Call-ID and CSeq; adds ``;tag=to_tag`` to To when the
    request's To had none and status > 100 (§8.2.6.2: a 100 Trying carries no new tag).
    Record-Route is copied into 1xx/2xx to dialog-creating requests (§12.1.1). ``headers`` are
    appended; Content-Length is computed at serialisation. ``request_headers`` overrides the
    source of copied headers (a salvaged set when the request did not parse).
    """
    src = request_headers if request_headers is not None else request.headers
    out = Headers()
    items = out._items  # direct build: names are already canonical
    for name, value in src:
        if name in _COPIED:
            if name == "To" and to_tag is not None and status > 100 and ";tag=" not in value:
                value = add_tag(value, to_tag)
            items.append((name, value))
    if status < 300 and status > 100 and request.method in DIALOG_CREATING:
        items.extend((n, v) for n, v in src if n == "Record-Route")
    for name, value in headers:
        out.add(name, value)
    return SipResponse(
        status=status, reason=reason or reason_phrase(status), headers=out, body=body
    )


def build_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    contact: str | None = None,
    routes: Iterable[str] = (),
    user_agent: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    max_forwards: int = 70,
) -> SipRequest:
    """A request as a UAC sends it (RFC 3261 §8.1.1): Via, Max-Forwards, From, To, Call-ID, CSeq."""
    h = Headers()
    items = h._items
    items.append(("Via", via))
    items.append(("Max-Forwards", str(max_forwards)))
    for r in routes:
        items.append(("Route", r))
    items.append(("From", from_))
    items.append(("To", to))
    items.append(("Call-ID", call_id))
    items.append(("CSeq", f"{cseq} {method}"))
    if contact is not None:
        items.append(("Contact", contact))
    if user_agent:
        items.append(("User-Agent", user_agent))
    for name, value in headers:
        h.add(name, value)
    if body and content_type and "Content-Type" not in h:
        h.add("Content-Type", content_type)
    return SipRequest(method=method, uri=uri, headers=h, body=body)


def make_ack_for_non2xx(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK an INVITE client transaction sends for a 3xx-6xx (RFC 3261 §17.1.1.3).

    Same Request-URI, top Via (same branch), From, Call-ID, CSeq number and Route as the
    INVITE; To from the response (with its tag).
    """
    src = invite.headers
    h = Headers()
    items = h._items
    vias = src.get_list("Via")
    items.append(("Via", vias[0]))
    items.append(("Max-Forwards", "70"))
    for name, value in src:
        if name == "Route":
            items.append((name, value))
    items.append(("From", src.get("From") or ""))
    items.append(("To", response.headers.get("To") or src.get("To") or ""))
    items.append(("Call-ID", src.get("Call-ID") or ""))
    number = (src.get("CSeq") or "0").split()[0]
    items.append(("CSeq", f"{number} ACK"))
    return SipRequest(method="ACK", uri=invite.uri, headers=h)


def make_cancel(invite: SipRequest, user_agent: str | None = None) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, top Via, From, To,
    Call-ID, CSeq number and Route; method CANCEL."""
    src = invite.headers
    h = Headers()
    items = h._items
    items.append(("Via", src.get_list("Via")[0]))
    items.append(("Max-Forwards", "70"))
    for name, value in src:
        if name == "Route":
            items.append((name, value))
    for name in ("From", "To", "Call-ID"):
        items.append((name, src.get(name) or ""))
    number = (src.get("CSeq") or "0").split()[0]
    items.append(("CSeq", f"{number} CANCEL"))
    if user_agent:
        items.append(("User-Agent", user_agent))
    return SipRequest(method="CANCEL", uri=invite.uri, headers=h)
