"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) as plain data.

Grammar (RFC 3261 §25.1)::

    SIP-URI          =  "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    SIPS-URI         =  "sips:" [ userinfo ] hostport uri-parameters [ headers ]
    userinfo         =  ( user / telephone-subscriber ) [ ":" password ] "@"
    user             =  1*( unreserved / escaped / user-unreserved )
    user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
    password         =  *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
    uri-parameter    =  transport-param / ... / other-param       ; pname [ "=" pvalue ]
    paramchar        =  param-unreserved / unreserved / escaped
    param-unreserved =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
    headers          =  "?" header *( "&" header )
    header           =  hname "=" hvalue
    hnv-unreserved   =  "[" / "]" / "/" / "?" / ":" / "+" / "$"

``%HH`` escapes are decoded once (never recursively, RFC 4475 §3.1.1.3) in the user, password,
parameters and headers; ``%00`` becomes a real NUL (RFC 4475 §3.1.1.4). ``str()`` escapes what
must be escaped again, so ``parse_uri(str(u)) == u``. Hosts are stored without IPv6 brackets and
never resolved. Other schemes raise ``SipParseError`` with status hint 416 (RFC 3261 §8.2.2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from media_gateway.sip.errors import SipParseError
from media_gateway.sip.headers import format_hostport, parse_hostport

__all__ = ["SipUri", "parse_uri", "uri_equal"]

_ALNUM = "A-Za-z0-9"
_MARK = r"\-_.!~*'()"
_USER_RE = re.compile(rf"[{_ALNUM}{_MARK}&=+$,;?/%]+")
_PASSWORD_RE = re.compile(rf"[{_ALNUM}{_MARK}&=+$,%]*")
_PARAM_RE = re.compile(rf"[{_ALNUM}{_MARK}\[\]/:&+$%]+")
_HEADER_RE = re.compile(rf"[{_ALNUM}{_MARK}\[\]/?:+$%]*")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# RFC 3966: global-number-digits = "+" *phonedigit DIGIT *phonedigit; local numbers may hold
# hex digits, "*" and "#". Visual separators are "-", "." and "()".
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
_TEL_VISUAL = str.maketrans("", "", "-.()")

# Characters written unescaped by str(); everything else becomes %HH of its UTF-8 bytes.
_SAFE_UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
)
_SAFE_USER = _SAFE_UNRESERVED | frozenset("&=+$,;?/")
_SAFE_PASSWORD = _SAFE_UNRESERVED | frozenset("&=+$,")
_SAFE_PARAM = _SAFE_UNRESERVED | frozenset("[]/:&+$")
_SAFE_HEADER = _SAFE_UNRESERVED | frozenset("[]/?:+$")

# RFC 3261 §19.1.4: these parameters must match when present in either URI.
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape(text: str, what: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text) is not None:
        raise SipParseError(f"bad %-escape in URI {what} {text!r}")
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def _escape(text: str, safe: frozenset[str]) -> str:
    if all(ch in safe for ch in text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


@dataclass(slots=True)
class SipUri:
    """A parsed ``sip:``/``sips:`` URI, or a minimal ``tel:`` URI.

    For ``tel:`` the number is in ``user`` and ``host`` is empty. Components are decoded
    (``%41`` -> ``A``); parameter names are lower-cased, parameter flags map to ``None``.
    """

    scheme: str
    """``sip``, ``sips`` or ``tel`` (lower case)."""
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    """URI headers (``?Subject=x&Priority=urgent``); a UAS ignores them (RFC 4475 §3.1.2.11)."""

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased."""
        value = self.params.get("transport")
        return value.lower() if value is not None else None

    @property
    def hostport(self) -> str:
        return format_hostport(self.host, self.port)

    def __str__(self) -> str:
        params = "".join(
            f";{_escape(k, _SAFE_PARAM)}"
            if v is None
            else f";{_escape(k, _SAFE_PARAM)}={_escape(v, _SAFE_PARAM)}"
            for k, v in self.params.items()
        )
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{params}"
        userinfo = ""
        if self.user is not None:
            userinfo = _escape(self.user, _SAFE_USER)
            if self.password is not None:
                userinfo += ":" + _escape(self.password, _SAFE_PASSWORD)
            userinfo += "@"
        headers = ""
        if self.headers:
            headers = "?" + "&".join(
                f"{_escape(k, _SAFE_HEADER)}={_escape(v, _SAFE_HEADER)}"
                for k, v in self.headers.items()
            )
        return f"{self.scheme}:{userinfo}{format_hostport(self.host, self.port)}{params}{headers}"


def _parse_uri_params(text: str, source: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for seg in text.split(";"):
        name, eq, value = seg.partition("=")
        if not name or _PARAM_RE.fullmatch(name) is None:
            raise SipParseError(f"invalid URI parameter {seg!r} in {source!r}")
        key = _unescape(name, "parameter").lower()
        if eq:
            if _PARAM_RE.fullmatch(value) is None:
                raise SipParseError(f"invalid value for URI parameter {name!r} in {source!r}")
            params.setdefault(key, _unescape(value, "parameter"))
        else:
            params.setdefault(key, None)
    return params


def _parse_tel(text: str, rest: str) -> SipUri:
    number, _, param_text = rest.partition(";")
    if _TEL_RE.fullmatch(number) is None:
        raise SipParseError(f"invalid telephone number in {text!r}")
    params = _parse_uri_params(param_text, text) if ";" in rest else {}
    return SipUri(scheme="tel", user=number, password=None, host="", port=None, params=params)


def parse_uri(text: str) -> SipUri:
    """Parse a SIP/SIPS URI (or a ``tel:`` URI) into a ``SipUri``.

    Raises ``SipParseError`` (400) on malformed input and ``SipParseError(status_hint=416)`` for
    any other scheme (RFC 4475 §3.3.2, §3.3.3).
    """
    colon = text.find(":")
    if colon <= 0 or _SCHEME_RE.fullmatch(text[:colon]) is None:
        raise SipParseError(f"URI {text!r} has no scheme")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme not in ("sip", "sips", "tel"):
        raise SipParseError(f"unsupported URI scheme {scheme!r}", status_hint=416)
    for ch in rest:
        if ch in ' \t\r\n<>"':
            raise SipParseError(f"URI {text!r} contains {ch!r}")
    if scheme == "tel":
        return _parse_tel(text, rest)
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user_text, has_pw, pw_text = userinfo.partition(":")
        if _USER_RE.fullmatch(user_text) is None:
            raise SipParseError(f"invalid user part {user_text!r} in {text!r}")
        user = _unescape(user_text, "user")
        if has_pw:
            if _PASSWORD_RE.fullmatch(pw_text) is None:
                raise SipParseError(f"invalid password in {text!r}")
            password = _unescape(pw_text, "password")
    question = rest.find("?")
    header_text = ""
    if question >= 0:
        header_text = rest[question + 1 :]
        rest = rest[:question]
    hostport, _, param_text = rest.partition(";")
    if not hostport:
        raise SipParseError(f"URI {text!r} has no host")
    host, port = parse_hostport(hostport)
    params = _parse_uri_params(param_text, text) if ";" in rest else {}
    headers: dict[str, str] = {}
    if question >= 0:
        for item in header_text.split("&"):
            hname, eq, hvalue = item.partition("=")
            if (
                not hname
                or not eq
                or _HEADER_RE.fullmatch(hname) is None
                or _HEADER_RE.fullmatch(hvalue) is None
            ):
                raise SipParseError(f"invalid URI header {item!r} in {text!r}")
            headers.setdefault(_unescape(hname, "header"), _unescape(hvalue, "header"))
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
    )


def _lower(v: str | None) -> str | None:
    return v.lower() if v is not None else None


def uri_equal(a: SipUri | str, b: SipUri | str) -> bool:
    """URI equivalence per RFC 3261 §19.1.4.

    Userinfo is case-sensitive (after unescaping); the host and everything else are not. An
    explicit port never equals an absent one. ``user``, ``ttl``, ``method``, ``maddr`` and
    ``transport`` must match when either URI has them; other parameters only when both have
    them. URI headers must all match. ``tel:`` numbers compare without visual separators.
    """
    ua = parse_uri(a) if isinstance(a, str) else a
    ub = parse_uri(b) if isinstance(b, str) else b
    if ua.scheme != ub.scheme:
        return False
    if ua.scheme == "tel":
        na = (ua.user or "").translate(_TEL_VISUAL).lower()
        nb = (ub.user or "").translate(_TEL_VISUAL).lower()
        pa = {k: _lower(v) for k, v in ua.params.items()}
        pb = {k: _lower(v) for k, v in ub.params.items()}
        return na == nb and pa == pb
    if ua.user != ub.user or ua.password != ub.password:
        return False
    if ua.host.lower() != ub.host.lower() or ua.port != ub.port:
        return False
    for name in _MUST_MATCH_PARAMS:
        if (name in ua.params) != (name in ub.params):
            return False
    for name, value in ua.params.items():
        if name in ub.params and _lower(value) != _lower(ub.params[name]):
            return False
    ha = {k.lower(): v for k, v in ua.headers.items()}
    hb = {k.lower(): v for k, v in ub.headers.items()}
    return ha == hb
