"""SIP messages as plain data (RFC 3261 §7).

This module is the contract shared by the parser (``parser.py``), the transaction layer
(``transaction.py``), dialogs and the endpoint. It holds no I/O and no clock.

* ``Headers`` is an ordered, case-insensitive multi-map. Compact forms (``v``, ``i``, ``f``...,
  RFC 3261 §7.3.3) are stored under their full canonical names, so ``headers.get("via")``
  and a message that said ``v:`` agree. Values are kept as the peer sent them (after line
  unfolding); comma-joined values are split only by ``get_list`` for the headers whose
  grammar allows it (RFC 3261 §7.3.1).
* ``SipRequest`` and ``SipResponse`` serialise with ``to_bytes()``; the Content-Length is
  always recomputed from the body so a serialised message is framed correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# RFC 3261 §7.3.3 compact forms, plus RFC 3515 (Refer-To), RFC 3892 (Referred-By),
# RFC 3265/6665 (Event, Allow-Events), RFC 3841 (Request-Disposition, Accept-Contact,
# Reject-Contact) and RFC 4028 (Session-Expires) which define their own.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Canonical spelling for well-known headers (so serialised output looks like what phones send).
_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Type",
        "Content-Length",
        "Content-Encoding",
        "Route",
        "Record-Route",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Authentication-Info",
        "Expires",
        "Min-Expires",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "User-Agent",
        "Server",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Retry-After",
        "Subject",
        "Date",
        "Timestamp",
        "Warning",
        "Event",
        "Allow-Events",
        "Refer-To",
        "Referred-By",
        "Session-Expires",
        "Min-SE",
        "Reason",
        "Privacy",
        "P-Asserted-Identity",
        "Organization",
        "Priority",
        "In-Reply-To",
        "Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "MIME-Version",
        "Content-Disposition",
        "Content-Language",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Identity",
        "Path",
        "Service-Route",
        "RSeq",
        "RAck",
    )
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1 and §20). Others, such as
# WWW-Authenticate or Date, contain commas that do not separate values.
LIST_HEADERS: frozenset[str] = frozenset(
    h.lower()
    for h in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Content-Language",
        "Allow-Events",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "In-Reply-To",
        "Warning",
        "Path",
        "Service-Route",
        "Reason",
        "P-Asserted-Identity",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
    )
)


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; compact forms expand to their full name."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    known = _CANONICAL.get(lower)
    if known is not None:
        return known
    # Unknown names get one spelling whatever case the peer used, so lookups are
    # case-insensitive (RFC 3261 §7.3.1); header names carry no meaning in their case.
    canonical = _UNKNOWN_CACHE.get(name)
    if canonical is None:
        canonical = "-".join(part[:1].upper() + part[1:] for part in lower.split("-"))
        if len(_UNKNOWN_CACHE) < 4096:
            _UNKNOWN_CACHE[name] = canonical
    return canonical


_UNKNOWN_CACHE: dict[str, str] = {}


def split_list(value: str) -> list[str]:
    """Split a comma-joined header value, honouring quoted strings and ``<...>`` URIs."""
    items: list[str] = []
    depth_angle = False
    in_quote = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
            continue
        if ch == '"':
            in_quote = True
        elif ch == "<":
            depth_angle = True
        elif ch == ">":
            depth_angle = False
        elif ch == "," and not depth_angle:
            item = value[start:i].strip()
            if item:
                items.append(item)
            start = i + 1
    item = value[start:].strip()
    if item:
        items.append(item)
    return items


class Headers:
    """An ordered, case-insensitive multi-map of header fields.

    Keys are stored canonicalised; iteration yields ``(name, value)`` in message order.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(n == key for n, _ in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field's value with this name, or ``default``."""
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every field's value with this name, in order, without splitting commas."""
        key = canonical_name(name)
        return [v for n, v in self._items if n == key]

    def get_list(self, name: str) -> list[str]:
        """Every value with this name, comma-joined values split where the grammar allows."""
        values = self.get_all(name)
        if canonical_name(name).lower() not in LIST_HEADERS:
            return values
        out: list[str] = []
        for v in values:
            out.extend(split_list(v))
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field with this name by one field, kept at the first one's position."""
        key = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self._items:
            if n == key:
                if not placed:
                    out.append((key, value))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((key, value))
        self._items = out

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def names(self) -> list[str]:
        return [n for n, _ in self._items]


@dataclass(slots=True, eq=True)
class SipRequest:
    """A SIP request: request line, headers and body (RFC 3261 §7.1)."""

    method: str
    """The method token, case-sensitive (``INVITE``, ``ACK``...)."""
    uri: str
    """The Request-URI exactly as received or to be sent."""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def to_bytes(self) -> bytes:
        return _serialise(self.start_line(), self.headers, self.body)

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(slots=True, eq=True)
class SipResponse:
    """A SIP response: status line, headers and body (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def to_bytes(self) -> bytes:
        return _serialise(self.start_line(), self.headers, self.body)

    def __bytes__(self) -> bytes:
        return self.to_bytes()


SipMessage = SipRequest | SipResponse


def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    for name, value in headers:
        if name == "Content-Length":
            continue
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


# RFC 3261 §21 reason phrases for the codes this engine sends.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status, "Unknown")
