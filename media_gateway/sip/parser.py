"""Bytes to ``SipRequest``/``SipResponse``: datagrams, streams and salvage (RFC 3261 §7, §18.3).

* ``parse_message(data)`` parses one UDP datagram (or one complete, framed stream message).
* ``StreamFramer`` cuts a TCP/TLS byte stream into messages by Content-Length (§18.3), absorbs
  RFC 5626 CRLF keep-alives and caps what an unframed peer can make us buffer.
* ``salvage_headers(data)`` pulls Via/From/To/Call-ID/CSeq out of a message that failed to
  parse, so the endpoint can still answer 400 (or 505, 501) as RFC 3261 §8.2 and RFC 4475 want.

Liberal where RFC 3261 allows it: leading CRLFs, compact names, any LWS around ``:``, line
folding (a line starting with SP/HTAB continues the previous one, §7.3.1), empty values,
repeated and comma-joined headers. Strict where it must be: the start line
(``Method SP Request-URI SP SIP-Version`` with single spaces, RFC 4475 §3.1.2.9/§3.1.2.10 are
rejected; ``Status-Code`` is three digits in 100-699), header names are tokens, requests and
responses carry exactly one From/To/Call-ID/CSeq and at least one Via (§8.1.1; RFC 4475 §3.3.1,
§3.3.8), the CSeq method equals the request method (§8.1.1.5; RFC 4475 §3.1.2.17), and there is
at most one well-formed Content-Length (§20.14; RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9). Via, From,
To, CSeq and Contact values are checked with ``headers.py`` so later layers see only parseable
ones; Route, Record-Route, Max-Forwards, Expires and the rest are left to the layer using them.

Header text is decoded as UTF-8 with ``surrogateescape``: invalid bytes survive a round trip
through ``to_bytes()``. Bodies stay bytes. Errors name the line: line 1 is the start line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import (
    is_token,
    parse_contact_list,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from media_gateway.sip.message import Headers, SipRequest, SipResponse, canonical_name, split_list

__all__ = [
    "KNOWN_METHODS",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "StreamFramer",
    "is_keepalive",
    "parse_message",
    "salvage_headers",
]

MAX_HEADER_BYTES = 16 * 1024
"""Stream cap on a head with no blank line yet (h11's 16 KiB); past it: 513 and close."""
MAX_BODY_BYTES = 1024 * 1024
"""Stream cap on a Content-Length; past it: 513 and close."""

KNOWN_METHODS: frozenset[str] = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)  # fmt: skip
"""Methods defined by RFC 3261 and its extensions. A CSeq mismatch on any other method hints
501 rather than 400 (RFC 4475 §3.1.2.18)."""

_T = TypeVar("_T")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLE = frozenset({"From", "To", "Call-ID", "CSeq"})
# absoluteURI / SIP-URI start: scheme ":" (RFC 3261 §25.1).
_RURI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\x00-\x20\x7f<>\"]+")
_VIA_PROTOCOL_RE = re.compile(r"^[ \t]*SIP[ \t]*/[ \t]*[0-9]+\.[0-9]+[ \t]*/[ \t]*", re.IGNORECASE)
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)


def is_keepalive(data: bytes) -> bool:
    """True for a datagram made only of CRLFs (an RFC 5626 §4.4.1 style keep-alive)."""
    return bool(data) and not data.strip(b"\r\n")


@lru_cache(maxsize=1024)
def _canonical_or_none(raw: str) -> str | None:
    """Canonical name for a raw header name (LWS before ':' included), None if not a token.

    Cached: peers send the same few dozen spellings, so most lines cost one lookup.
    """
    stripped = raw.rstrip(" \t")
    if not is_token(stripped):
        return None
    return canonical_name(stripped)


def _header_name(raw: str, line_no: int) -> str:
    name = _canonical_or_none(raw)
    if name is not None:
        return name
    stripped = raw.rstrip(" \t")
    if not stripped:
        raise SipParseError(f"header line {line_no} has an empty name")
    raise SipParseError(f"header line {line_no} name {stripped[:40]!r} is not a token")


def _check_version(version: str, where: str) -> None:
    if version == "SIP/2.0":
        return
    if _VERSION_RE.fullmatch(version) is None:
        raise SipParseError(f"{where} ends in {version!r}, not a SIP version")
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {version!r}", status_hint=505)


def _split_lines(text: str) -> list[str]:
    lines = text.split("\r\n")
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        for i, line in enumerate(lines):
            if "\n" in line or "\r" in line:
                raise SipParseError(f"line {i + 1} contains a bare CR or LF (lines end in CRLF)")
    return lines


def _parse_header_lines(lines: list[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for idx in range(1, len(lines)):
        line = lines[idx]
        if not line:
            raise SipParseError(f"header line {idx + 1} is empty")
        first = line[0]
        if first == " " or first == "\t":
            if not items:
                raise SipParseError(f"header line {idx + 1} continues a line that is no header")
            cont = line.strip(" \t")
            if cont:
                name, value = items[-1]
                items[-1] = (name, f"{value} {cont}" if value else cont)
            continue
        raw, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line {idx + 1} has no colon")
        items.append((_header_name(raw, idx + 1), value.strip(" \t")))
    return items


def _content_length(values: list[str]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError(f"{len(values)} Content-Length headers (framing is ambiguous)")
    text = values[0]
    if not (text.isdigit() and text.isascii()):
        raise SipParseError(f"Content-Length {text!r} is not a non-negative integer")
    digits = text.lstrip("0")
    if len(digits) > 10:
        raise SipParseError(f"Content-Length {text} is too large", status_hint=513)
    return int(digits or "0")


def _validate(method: str | None, items: list[tuple[str, str]]) -> tuple[int | None, Headers]:
    """Check the headers every layer relies on; returns (Content-Length, Headers)."""
    single: dict[str, str] = {}
    vias: list[str] = []
    lengths: list[str] = []
    contacts: list[str] = []
    for name, value in items:
        if name in _SINGLE:
            if name in single:
                raise SipParseError(f"more than one {name} header")
            single[name] = value
        elif name == "Via":
            vias.append(value)
        elif name == "Content-Length":
            lengths.append(value)
        elif name == "Contact":
            contacts.append(value)
    if not vias or len(single) != len(_SINGLE):
        missing = [
            n for n in _REQUIRED if (n == "Via" and not vias) or (n in _SINGLE and n not in single)
        ]
        raise SipParseError(f"missing required header(s): {', '.join(missing)}")
    _, cseq_method = _checked(parse_cseq, "CSeq", single["CSeq"])
    if method is not None and cseq_method != method:
        hint = 400 if method in KNOWN_METHODS else 501
        raise SipParseError(
            f"CSeq method {cseq_method} does not match request method {method}", status_hint=hint
        )
    call_id = single["Call-ID"]
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError(f"Call-ID {call_id!r} is not a single word")
    _checked(parse_name_addr, "From", single["From"])
    _checked(parse_name_addr, "To", single["To"])
    for value in vias:
        for parm in split_list(value) if "," in value else (value,):
            _checked(parse_via, "Via", parm)
    if contacts:
        try:
            parse_contact_list(contacts)
        except SipParseError as exc:
            raise SipParseError(f"bad Contact header: {exc}") from None
    return _content_length(lengths), Headers(items)


def _checked(func: Callable[[str], _T], name: str, value: str) -> _T:
    try:
        return func(value)
    except SipParseError as exc:
        raise SipParseError(f"bad {name} header: {exc}", status_hint=exc.status_hint) from None


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP message received as a datagram (RFC 3261 §7, §18.3).

    Leading CRLFs are skipped. With a Content-Length the body is cut to it (extra datagram bytes
    are ignored, RFC 4475 §3.1.1.8) and a larger value is an error (§3.1.2.2); without one the
    body is the rest of the datagram (RFC 2543 peers, RFC 4475 §3.4.1). A datagram with no blank
    line is read as headers only. Raises ``SipParseError`` with the status a server should send.
    """
    return _parse(data, stream=False)


def _parse(data: bytes, *, stream: bool) -> SipRequest | SipResponse:
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    if start >= len(data):
        raise SipParseError("empty message")
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        head = data[start:]
        if head.endswith(b"\r\n"):
            head = head[:-2]
        body = b""
        has_blank_line = False
    else:
        head = data[start:end]
        body = data[end + 4 :]
        has_blank_line = True
    lines = _split_lines(head.decode("utf-8", "surrogateescape"))
    first = lines[0]
    # The start line is judged first, so a 505 is not masked by a later 400.
    if first[:4].upper() == "SIP/":
        version, _, rest = first.partition(" ")
        _check_version(version, "status line")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not (code.isdigit() and code.isascii()):
            raise SipParseError(f"status code {code[:20]!r} is not three digits")
        status = int(code)
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} is not in 100-699")
        length, headers = _validate(None, _parse_header_lines(lines))
        message: SipRequest | SipResponse = SipResponse(
            status=status, reason=reason, headers=headers
        )
    else:
        parts = first.split(" ")
        if len(parts) != 3 or not all(parts):
            raise SipParseError(
                f"request line {first[:80]!r} is not 'Method SP Request-URI SP SIP-Version'"
            )
        method, uri, version = parts
        if not is_token(method):
            raise SipParseError(f"method {method[:40]!r} is not a token")
        _check_version(version, "request line")
        if _RURI_RE.fullmatch(uri) is None:
            raise SipParseError(f"Request-URI {uri[:80]!r} is not an absolute URI")
        length, headers = _validate(method, _parse_header_lines(lines))
        message = SipRequest(method=method, uri=uri, headers=headers)
    if length is None:
        if stream:
            raise SipParseError("Content-Length is required on a stream transport")
        message.body = body
    elif length > len(body):
        if not has_blank_line:
            raise SipParseError(f"Content-Length {length} but the message has no blank line")
        raise SipParseError(f"Content-Length {length} is larger than the {len(body)}-byte body")
    else:
        message.body = body if length == len(body) else body[:length]
    return message


# --- salvage ------------------------------------------------------------------------------


def _lenient_via(parm: str) -> str | None:
    """A via-parm with empty ``;;`` params dropped, if that makes it parse."""
    try:
        return parse_via(parm).to_str()
    except SipParseError:
        pass
    # Another protocol version (RFC 4475 §3.1.2.16): answer in ours.
    parm = _VIA_PROTOCOL_RE.sub("SIP/2.0/", parm, count=1)
    head, _, params = parm.partition(";")
    kept = [p for p in params.split(";") if p.strip(" \t")]
    cleaned = head.rstrip(" \t") + "".join(";" + p.strip(" \t") for p in kept)
    try:
        return parse_via(cleaned).to_str()
    except SipParseError:
        return None


def salvage_headers(data: bytes) -> Headers | None:
    """Best-effort Via/From/To/Call-ID/CSeq from a message that failed to parse.

    Lenient on purpose: any line ending, unparseable lines skipped, the first of repeated
    From/To/Call-ID/CSeq kept. Returns ``None`` unless the top Via parses (after dropping empty
    params), the CSeq looks like ``number method`` (the number may be out of range, copy it
    verbatim), and Call-ID, From and To are non-empty. From/To are returned as sent: they may
    not satisfy ``parse_name_addr`` (RFC 4475 §3.1.2.6), so add a To tag textually.
    """
    lines = data.decode("utf-8", "surrogateescape").lstrip("\r\n").split("\n")
    found: dict[str, str] = {}
    vias: list[str] = []
    pending: list[tuple[str, str]] = []
    continues = False
    for raw_line in lines[1:]:
        line = raw_line.rstrip("\r")
        if not line:
            break
        if line[0] in " \t":
            if continues:
                name, value = pending[-1]
                pending[-1] = (name, (value + " " + line.strip(" \t")).strip(" \t"))
            continue
        raw, colon, value = line.partition(":")
        stripped = raw.strip(" \t")
        continues = bool(colon) and is_token(stripped)
        if continues:
            pending.append((canonical_name(stripped), value.strip(" \t")))
    for name, value in pending:
        if name == "Via":
            vias.extend(split_list(value))
        elif name in _SINGLE and name not in found:
            found[name] = value
    if not vias or any(not found.get(n) for n in _SINGLE):
        return None
    top = _lenient_via(vias[0])
    if top is None:
        return None
    cseq = found["CSeq"].split()
    if len(cseq) != 2 or not (cseq[0].isdigit() and cseq[0].isascii()) or not is_token(cseq[1]):
        return None
    if " " in found["Call-ID"]:
        return None
    out = Headers([("Via", top)])
    for parm in vias[1:]:
        lower = _lenient_via(parm)
        if lower is not None:  # garbage such as a lone ";" (RFC 4475 §3.1.2.1) is dropped
            out.add("Via", lower)
    for name in ("From", "To", "Call-ID", "CSeq"):
        out.add(name, found[name])
    return out


# --- streams ------------------------------------------------------------------------------


def _scan_content_length(head: bytes) -> int | None:
    """The Content-Length of a framed head, read without a full parse (for framing only)."""
    text = head.decode("latin-1")
    values: list[str] = []
    in_cl = False
    for line in text.split("\r\n")[1:]:
        if line[:1] in (" ", "\t"):
            if in_cl:
                values[-1] += line
            continue
        raw, colon, value = line.partition(":")
        name = raw.strip(" \t").lower()
        in_cl = bool(colon) and (name == "content-length" or name == "l")
        if in_cl:
            values.append(value)
    if not values:
        return None
    distinct = {v.strip(" \t") for v in values}
    if len(distinct) > 1:
        raise SipParseError(f"{len(values)} different Content-Length headers on a stream")
    return _content_length([distinct.pop()])


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3).

    ``feed(data)`` returns the messages completed so far, and a ``SipParseError`` in place of
    each message that failed to parse. Content-Length is mandatory: a message without it is
    reported as an error and read as having no body. A framing error that loses sync (negative,
    non-numeric or conflicting Content-Length) or a peer that exceeds ``max_header_bytes``
    without a blank line or announces more than ``max_body_bytes`` (status hint 513) marks the
    framer ``broken``: the transport must close the connection; further input is ignored.

    RFC 5626 §4.4.1 keep-alives: each ``CRLF CRLF`` between messages counts one ping in
    ``keepalive_pings`` (cumulative); ``take_pings()`` returns and clears the unanswered ones so
    the transport can send one ``CRLF`` pong each.
    """

    def __init__(
        self, *, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.broken = False
        self.keepalive_pings = 0
        self._unanswered = 0
        self._crlfs = 0
        self._buf = bytearray()
        self._scan_from = 0
        self._need: int | None = None
        self._framing_error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    def take_pings(self) -> int:
        """Keep-alive pings received since the last call (answer each with ``CRLF``)."""
        n, self._unanswered = self._unanswered, 0
        return n

    def _fail(self, exc: SipParseError) -> SipParseError:
        self.broken = True
        self._buf.clear()
        return exc

    def feed(self, data: bytes) -> list[SipRequest | SipResponse | SipParseError]:
        if self.broken:
            return []
        buf = self._buf
        buf += data
        out: list[SipRequest | SipResponse | SipParseError] = []
        while buf:
            if self._need is None:
                i = 0
                n = len(buf)
                while i + 1 < n and buf[i] == 13 and buf[i + 1] == 10:
                    i += 2
                    self._crlfs += 1
                    if self._crlfs == 2:
                        self._crlfs = 0
                        self.keepalive_pings += 1
                        self._unanswered += 1
                if i:
                    del buf[:i]
                    n -= i
                if n == 0 or (n == 1 and buf[0] == 13):
                    break
                self._crlfs = 0
                end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
                if end < 0:
                    if n > self.max_header_bytes:
                        out.append(
                            self._fail(
                                SipParseError(
                                    f"no end of headers within {self.max_header_bytes} bytes",
                                    status_hint=513,
                                )
                            )
                        )
                    else:
                        self._scan_from = n
                    break
                self._scan_from = 0
                if end > self.max_header_bytes:
                    out.append(
                        self._fail(
                            SipParseError(
                                f"headers longer than {self.max_header_bytes} bytes",
                                status_hint=513,
                            )
                        )
                    )
                    break
                try:
                    length = _scan_content_length(bytes(buf[:end]))
                except SipParseError as exc:
                    out.append(self._fail(exc))
                    break
                if length is None:
                    self._framing_error = SipParseError(
                        "Content-Length is required on a stream transport"
                    )
                    length = 0
                elif length > self.max_body_bytes:
                    out.append(
                        self._fail(
                            SipParseError(
                                f"Content-Length {length} exceeds {self.max_body_bytes} bytes",
                                status_hint=513,
                            )
                        )
                    )
                    break
                self._need = end + 4 + length
            need = self._need
            if len(buf) < need:
                break
            chunk = bytes(buf[:need])
            del buf[:need]
            self._need = None
            if self._framing_error is not None:
                out.append(self._framing_error)
                self._framing_error = None
                continue
            try:
                out.append(_parse(chunk, stream=True))
            except SipParseError as exc:
                out.append(exc)
        return out
