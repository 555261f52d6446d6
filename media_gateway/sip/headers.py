"""Structured views of the header fields the SIP core relies on (RFC 3261 §20, §25.1).

The message model keeps every header value as text (``message.Headers``); the functions here
parse the few values the transaction and dialog layers need: ``Via``, name-addr headers
(``From``, ``To``, ``Contact``, ``Route``, ``Record-Route``...), ``CSeq`` and generic
parameters. Each raises ``SipParseError`` (status hint 400) on input that breaks the RFC 3261
grammar, so the endpoint can answer 400 instead of crashing.

Grammar excerpts (RFC 3261 §25.1)::

    token          =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
    quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
    quoted-pair    =  "\\" (%x00-09 / %x0B-0C / %x0E-7F)
    generic-param  =  token [ EQUAL gen-value ]
    gen-value      =  token / host / quoted-string

Liberal where the RFC (and RFC 4475 §3.1.1.1) says LWS may appear: around ``;``, ``=``, ``/``
and ``:``. Hosts are kept as text and never resolved. IPv6 references are accepted in brackets
(``[2001:db8::1]:5060``) and stored *without* the brackets; ``to_str`` adds them back.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.message import Headers, split_list

__all__ = [
    "TRANSPORTS",
    "NameAddr",
    "Via",
    "format_hostport",
    "format_params",
    "is_token",
    "parse_contact_list",
    "parse_cseq",
    "parse_hostport",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "quote_string",
    "read_quoted_string",
    "top_via",
]

TRANSPORTS: frozenset[str] = frozenset({"UDP", "TCP", "TLS", "SCTP", "WS", "WSS"})
"""Transports this engine knows by name; others still parse (RFC 3261 ``other-transport``)."""

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )   (RFC 3261 §25.1, absoluteURI)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")
# hostname = *( domainlabel "." ) toplabel [ "." ]; IPv4address. "_" is tolerated because
# real deployments use it in names (it is never resolved here anyway).
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?")
# An unquoted gen-value may be a token or a host (IPv6 references included). Anything with
# whitespace, a quote, a separator or a control character is not a gen-value.
_BAD_VALUE_RE = re.compile(r'[\x00-\x20\x7f",;<>\\]')
# Values that can be written back without quotes: token / host.
_PLAIN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
_MAX_CSEQ = 2**31  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31.
_WS = " \t"


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 3261 ``token`` (method names, header names, param names)."""
    return _TOKEN_RE.fullmatch(text) is not None


def read_quoted_string(text: str, start: int) -> tuple[str, int]:
    """Read the ``quoted-string`` opening at ``text[start]`` (which must be ``"``).

    Returns the unescaped content (quoted-pairs resolved, so ``\\"`` gives ``"``; NUL, BEL and
    DEL survive, RFC 4475 §3.1.1.2) and the index just after the closing quote. An
    unterminated string raises ``SipParseError`` (RFC 4475 §3.1.2.6).
    """
    if start >= len(text) or text[start] != '"':
        raise SipParseError(f"expected a quoted string at {text[start : start + 20]!r}")
    end = len(text)
    i = start + 1
    # Fast path: no backslash before the closing quote.
    close = text.find('"', i)
    if close < 0:
        raise SipParseError(f"unterminated quoted string in {text!r}")
    if text.find("\\", i, close) < 0:
        return text[i:close], close + 1
    out: list[str] = []
    while i < end:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= end:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def quote_string(value: str) -> str:
    """``value`` as a quoted-string, escaping ``"`` and ``\\`` (RFC 3261 §25.1)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_semicolons(text: str) -> list[str]:
    """Split on ``;`` outside quoted strings."""
    if '"' not in text:
        return text.split(";")
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            _, i = read_quoted_string(text, i)
            continue
        if ch == ";":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``, e.g. ``";branch=z9hG4bK1;rport;q = 0.5"``.

    Names are lower-cased (RFC 3261 §7.3.1: parameter names are case-insensitive); a flag
    parameter maps to ``None``; quoted values are returned unquoted. The first occurrence of a
    repeated name wins. An empty parameter (``;;``, RFC 4475 §3.1.2.1) raises SipParseError.
    """
    s = text.strip(_WS)
    if not s:
        return {}
    if s[0] != ";":
        raise SipParseError(f"parameters must start with ';': {text!r}")
    params: dict[str, str | None] = {}
    segments = _split_semicolons(s)
    for seg in segments[1:]:
        name, eq, value = seg.partition("=")
        name = name.strip(_WS)
        if not name:
            raise SipParseError(f"empty parameter in {text!r}")
        if _TOKEN_RE.fullmatch(name) is None:
            raise SipParseError(f"parameter name {name!r} is not a token")
        key = name.lower()
        if not eq:
            params.setdefault(key, None)
            continue
        value = value.strip(_WS)
        if value.startswith('"'):
            unquoted, end = read_quoted_string(value, 0)
            if value[end:].strip(_WS):
                raise SipParseError(f"junk after quoted value of parameter {name!r}")
            params.setdefault(key, unquoted)
            continue
        if _BAD_VALUE_RE.search(value) is not None:
            raise SipParseError(f"parameter {name!r} has an invalid value {value!r}")
        params.setdefault(key, value)
    return params


def format_params(params: Mapping[str, str | None]) -> str:
    """Serialise parameters as ``;name=value;flag``, quoting values that are not token/host."""
    out: list[str] = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _PLAIN_VALUE_RE.fullmatch(value) is not None:
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote_string(value)}")
    return "".join(out)


def _check_host(host: str, text: str) -> str:
    if not host:
        raise SipParseError(f"empty host in {text!r}")
    if _HOSTNAME_RE.fullmatch(host) is None:
        raise SipParseError(f"invalid host {host!r} in {text!r}")
    return host


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse ``host [ COLON port ]`` (RFC 3261 §25.1 ``hostport``/``sent-by``).

    ``COLON`` allows LWS around it. IPv6 references come back without brackets. The port must
    be 0-65535. The host is only checked for shape, never resolved.
    """
    s = text.strip(_WS)
    if s.startswith("["):
        close = s.find("]")
        if close < 0:
            raise SipParseError(f"unterminated IPv6 reference in {text!r}")
        host = s[1:close]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipParseError(f"invalid IPv6 reference {host!r}") from None
        rest = s[close + 1 :].strip(_WS)
    else:
        colon = s.find(":")
        if colon < 0:
            return _check_host(s, text), None
        host = _check_host(s[:colon].rstrip(_WS), text)
        rest = s[colon:]
    if not rest:
        return host, None
    if rest[0] != ":":
        raise SipParseError(f"junk after host in {text!r}")
    port_text = rest[1:].strip(_WS)
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise SipParseError(f"invalid port {port_text!r} in {text!r}")
    port = int(port_text)
    if port > 65535:
        raise SipParseError(f"port {port} out of range in {text!r}")
    return host, port


def format_hostport(host: str, port: int | None) -> str:
    """``host[:port]``, bracketing IPv6 addresses."""
    h = f"[{host}]" if ":" in host else host
    return h if port is None else f"{h}:{port}"


@dataclass(slots=True)
class Via:
    """One ``via-parm`` (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``.

    ``host`` is stored without IPv6 brackets. ``params`` keeps every via-param, names
    lower-cased, flags (a bare ``;rport``, RFC 3581) mapping to ``None``.
    """

    transport: str
    """Upper-cased transport (``UDP``, ``TCP``, ``TLS``, ``WS``, ``WSS`` or an extension)."""
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        """The transaction id (RFC 3261 §8.1.1.7); ``None`` for RFC 2543 peers."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The source address a server recorded (RFC 3261 §18.2.1)."""
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        """True when ``rport`` is present, even as a bare flag (RFC 3581 §3)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The port a server filled into ``rport`` (RFC 3581 §4), or ``None``."""
        value = self.params.get("rport")
        if value is None or not value.isdigit() or len(value) > 5:
            return None
        return int(value)

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as it would be written (IPv6 in brackets)."""
        return format_hostport(self.host, self.port)

    def to_str(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"

    def __str__(self) -> str:
        return self.to_str()


def parse_via(value: str) -> Via:
    """Parse ONE via-parm (split a Via header list first with ``Headers.get_list("Via")``).

    ``sent-protocol = protocol-name SLASH protocol-version SLASH transport`` where
    ``SLASH = SWS "/" SWS`` (so ``SIP / 2.0 / UDP`` is fine, RFC 4475 §3.1.1.1). Only SIP/2.0
    is accepted. ``rport`` and ``ttl`` must be numeric when given a value.
    """
    s = value.strip(_WS)
    p1 = s.find("/")
    p2 = s.find("/", p1 + 1) if p1 >= 0 else -1
    if p2 < 0:
        raise SipParseError(f"Via {value!r} has no SIP/2.0/transport")
    protocol = s[:p1].strip(_WS)
    version = s[p1 + 1 : p2].strip(_WS)
    if protocol.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"Via {value!r} is not SIP/2.0")
    rest = s[p2 + 1 :].lstrip(_WS)
    j = 0
    n = len(rest)
    while j < n and rest[j] not in _WS:
        j += 1
    transport = rest[:j]
    if _TOKEN_RE.fullmatch(transport) is None:
        raise SipParseError(f"Via {value!r} has an invalid transport {transport!r}")
    rest = rest[j:].lstrip(_WS)
    if not rest:
        raise SipParseError(f"Via {value!r} has no sent-by")
    if "," in rest and '"' not in rest:
        raise SipParseError(f"Via {value!r} holds several values; split it with get_list")
    semi = rest.find(";")
    if semi < 0:
        host, port = parse_hostport(rest)
        params: dict[str, str | None] = {}
    else:
        host, port = parse_hostport(rest[:semi])
        params = parse_params(rest[semi:])
    for numeric in ("rport", "ttl"):
        v = params.get(numeric)
        if v is not None and not (v.isdigit() and v.isascii()):
            raise SipParseError(f"Via parameter {numeric}={v!r} is not a number")
    return Via(transport=transport.upper(), host=host, port=port, params=params)


def top_via(headers: Headers) -> Via:
    """The first via-parm of a message (RFC 3261 §8.2.6.2, §18.2.2); raises if absent."""
    vias = headers.get_list("Via")
    if not vias:
        raise SipParseError("message has no Via")
    return parse_via(vias[0])


@dataclass(slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` with header parameters (RFC 3261 §20.10, §20.20).

    ``display`` is the display name without quotes or quoted-pair escapes (``None`` when
    absent). ``uri`` is the URI text as sent (not parsed; use ``uri.parse_uri``). ``params``
    are the header parameters (``tag``, ``expires``, ``q``...), not URI parameters.
    """

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``;tag=`` set (RFC 3261 §8.2.6.2, §12.1.1)."""
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(display=self.display, uri=self.uri, params=params)

    def to_str(self) -> str:
        """Always in ``name-addr`` form: ``"Display" <uri>;params`` or ``<uri>;params``."""
        if self.display is None:
            return f"<{self.uri}>{format_params(self.params)}"
        return f"{quote_string(self.display)} <{self.uri}>{format_params(self.params)}"

    def __str__(self) -> str:
        return self.to_str()


def _check_uri(uri: str, value: str) -> str:
    if not uri:
        raise SipParseError(f"empty URI in {value!r}")
    for ch in uri:
        if ch in ' \t\r\n<>"':
            raise SipParseError(f"URI {uri!r} contains {ch!r}")
    if _SCHEME_RE.match(uri) is None:
        raise SipParseError(f"URI {uri!r} has no scheme")
    return uri


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``( name-addr / addr-spec ) *( SEMI param )`` (From, To, Contact, Route...).

    ``"Bob" <sip:b@x>;tag=1``, ``Bob <sip:b@x>``, ``Bob<sip:b@x>`` (RFC 4475 §3.1.1.6) and
    ``sip:b@x;tag=1`` are accepted. In the addr-spec form everything after the first ``;`` is a
    header parameter (RFC 3261 §20.10), and a URI with ``?`` or ``,`` must be in ``<>``
    (RFC 4475 §3.1.2.13). Unquoted display names must be tokens (§3.1.2.15), the URI between
    ``<>`` may not contain spaces (§3.1.2.14).
    """
    s = value.strip(_WS)
    if not s:
        raise SipParseError("empty name-addr")
    display: str | None
    if s[0] == '"':
        display, end = read_quoted_string(s, 0)
        rest = s[end:].lstrip(_WS)
        if not rest.startswith("<"):
            raise SipParseError(f"quoted display name not followed by <URI> in {value!r}")
    else:
        lt = s.find("<")
        if lt < 0:
            semi = s.find(";")
            uri = s if semi < 0 else s[:semi].rstrip(_WS)
            _check_uri(uri, value)
            if "?" in uri or "," in uri:
                raise SipParseError(f"URI {uri!r} with '?' or ',' must be enclosed in <>")
            params = {} if semi < 0 else parse_params(s[semi:])
            return NameAddr(display=None, uri=uri, params=params)
        disp = s[:lt].strip(_WS)
        if disp:
            for word in disp.split():
                if _TOKEN_RE.fullmatch(word) is None:
                    raise SipParseError(f"display name {disp!r} must be quoted")
            display = disp
        else:
            display = None
        rest = s[lt:]
    gt = rest.find(">")
    if gt < 0:
        raise SipParseError(f"missing '>' in {value!r}")
    uri = _check_uri(rest[1:gt], value)
    return NameAddr(display=display, uri=uri, params=parse_params(rest[gt + 1 :]))


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq = 1*DIGIT LWS Method`` (RFC 3261 §20.16) into ``(number, method)``.

    Leading zeros are fine (``0009``, RFC 4475 §3.1.1.1); the number must be below 2**31
    (§8.1.1.5; RFC 4475 §3.1.2.4 sends 2**65).
    """
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError(f"CSeq {value!r} is not 'number method'")
    number, method = parts
    if not (number.isdigit() and number.isascii()):
        raise SipParseError(f"CSeq number {number!r} is not a number")
    digits = number.lstrip("0")
    if len(digits) > 10 or (digits and int(digits) >= _MAX_CSEQ):
        raise SipParseError(f"CSeq number {number} is not below 2**31")
    if _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError(f"CSeq method {method!r} is not a token")
    return int(digits or "0"), method


def parse_contact_list(values: Iterable[str]) -> list[NameAddr] | Literal["*"]:
    """Parse Contact values (raw or already split) into name-addrs, or ``"*"``.

    ``*`` (RFC 3261 §10.2.2, REGISTER removal) must be the only Contact.
    """
    items: list[str] = []
    for v in values:
        if "," in v:
            items.extend(split_list(v))
        else:
            v = v.strip(_WS)
            if v:
                items.append(v)
    if any(item == "*" for item in items):
        if len(items) != 1:
            raise SipParseError("Contact '*' must be the only Contact value")
        return "*"
    return [parse_name_addr(item) for item in items]
