"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760 for SHA-256).

Server side, ``DigestAuthenticator``:

* challenges offer SHA-256 first, then MD5 (RFC 8760 §2.4: one ``WWW-Authenticate`` per
  algorithm, in preference order), ``qop="auth"``;
* nonces are stateless: ``base64(timestamp || random || HMAC(secret, realm, use, source,
  timestamp, random))``: unique (96 random bits, not a clock: four phones challenged in the same
  instant get four nonces), bound to the realm, to their use (the method challenged: a nonce
  issued for a REGISTER does not serve an INVITE) and to the source address it was sent to (a
  digest captured on the wire and resent from another address is refused); any node that knows
  the secret can check them, and they expire after ``nonce_ttl`` seconds; a correct answer on an
  expired nonce gets ``stale=true`` so the phone retries without asking its user;
* ``qop=auth`` is required: an answer without it (RFC 2069) is refused and challenged again;
* ``nc`` must grow per nonce (replay protection; the table is bounded);
* an unknown user is checked against a dummy password, so the answer *and* the work done are the
  same as for a wrong password: the registrar does not reveal which user names exist;

Client side, ``build_authorization`` answers a challenge (outbound REGISTER to a trunk).
Pure: time is passed in, randomness (the cnonce) too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from media_gateway.sip.errors import SipParseError

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}


_RAND_LEN = 12
_MAC_LEN = 18


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest a=b, c="d,e"`` into ``("Digest", {"a": "b", "c": "d,e"})``.

    Parameter names are lower-cased; quoted strings may hold commas and escaped quotes
    (RFC 3261 §25.1 quoted-pair). Raises SipParseError on a malformed value.
    """
    text = value.strip()
    if not text:
        raise SipParseError("empty authentication header")
    head = text.split(None, 1)
    scheme, rest = head[0], (head[1] if len(head) > 1 else "")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise SipParseError(f"authentication parameter without '=': {rest[i : i + 30]!r}")
        name = rest[i:eq].strip().lower()
        if not name or any(c in name for c in ' \t,"'):
            raise SipParseError(f"bad authentication parameter name {name!r}")
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(rest[i])
                i += 1
            if i >= n:
                raise SipParseError(f"unterminated quoted string in parameter {name!r}")
            i += 1
            params[name] = "".join(buf)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return scheme, params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenge(
    *,
    realm: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    stale: bool = False,
    opaque: str | None = None,
) -> str:
    """One ``WWW-Authenticate``/``Proxy-Authenticate`` value (RFC 3261 §20.44, RFC 7616 §3.3).

    ``qop=None`` gives the RFC 2069 form that only very old phones need.
    """
    value = f"Digest realm={_quote(realm)}, nonce={_quote(nonce)}, algorithm={algorithm}"
    if qop:
        value += f", qop={_quote(qop)}"
    if opaque is not None:
        value += f", opaque={_quote(opaque)}"
    if stale:
        value += ", stale=true"
    return value


def _normalise_algorithm(text: str) -> str:
    upper = text.strip().upper()
    return "SHA-256" if upper in ("SHA-256", "SHA256") else upper


def digest_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """HA1 = H(username:realm:password) (RFC 7616 §3.4.2): what a user store may keep
    instead of the password."""
    return _HASHES[algorithm](f"{username}:{realm}:{password}".encode())


def digest_response_from_ha1(
    *,
    algorithm: str,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    """The ``response`` value from a stored HA1 (RFC 7616 §3.4.1, RFC 2069 without qop)."""
    h = _HASHES[algorithm]
    ha2 = h(f"{method}:{uri}".encode())
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return h(f"{ha1}:{nonce}:{ha2}".encode())


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    """The ``response`` value of RFC 7616 §3.4.1 (``-sess`` variants are not offered)."""
    return digest_response_from_ha1(
        algorithm=algorithm,
        ha1=digest_ha1(algorithm, username, realm, password),
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
    )


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    username: str | None = None
    """The authenticated user (only when ``ok``)."""
    stale: bool = False
    """Credentials were right but the nonce had expired: challenge again with stale=true."""
    reason: str = ""
    """Why it failed, for logs only (never sent to the peer)."""
    guess: bool = False
    """The response was checked on one of our nonces and was wrong: a wrong password or an
    unknown user (the same thing to the peer). What a brute-force lockout counts; malformed
    headers, stale or foreign nonces and replays are not guesses."""


class DigestAuthenticator:
    """Checks ``Authorization`` headers and builds challenges for one realm."""

    def __init__(
        self,
        *,
        realm: str,
        credentials_lookup: Callable[[str], str | None],
        secret: bytes,
        nonce_ttl: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_tracked_nonces: int = 50_000,
        ha1_lookup: Callable[[str, str], str | None] | None = None,
    ) -> None:
        """``credentials_lookup(user)`` gives a password (None: no such user). A store that
        keeps HA1 instead passes ``ha1_lookup(user, algorithm)`` (hex HA1 for that algorithm,
        None when unknown), which is used in place of ``credentials_lookup``."""
        for a in algorithms:
            if a not in _HASHES:
                raise ValueError(f"unsupported digest algorithm {a!r}")
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self.realm = realm
        self.lookup = credentials_lookup
        self.ha1_lookup = ha1_lookup
        self.secret = secret
        self.nonce_ttl = nonce_ttl
        self.algorithms = algorithms
        self.max_tracked = max_tracked_nonces
        self._nc: OrderedDict[str, int] = OrderedDict()

    # -- nonces ------------------------------------------------------------------------------

    def _nonce_mac(self, stamp: bytes, rand: bytes, use: str, source: str) -> bytes:
        bound = b"\x00".join(
            (self.realm.encode(), use.upper().encode(), source.encode(), stamp, rand)
        )
        return hmac.new(self.secret, bound, hashlib.sha256).digest()[:_MAC_LEN]

    def make_nonce(self, now: float, *, use: str = "REGISTER", source: str = "") -> str:
        """A fresh nonce for a challenge of method ``use`` sent to ``source`` (an IP address;
        empty when the caller does not bind nonces to addresses)."""
        stamp = struct.pack(">d", now)
        rand = secrets.token_bytes(_RAND_LEN)
        mac = self._nonce_mac(stamp, rand, use, source)
        return base64.urlsafe_b64encode(stamp + rand + mac).decode().rstrip("=")

    def _nonce_age(self, nonce: str, now: float, *, use: str, source: str) -> float | None:
        """Age in seconds of a nonce we issued for this use and source, or None if we did
        not."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 8 + _RAND_LEN + _MAC_LEN:
            return None
        stamp, rand, mac = raw[:8], raw[8 : 8 + _RAND_LEN], raw[8 + _RAND_LEN :]
        if not hmac.compare_digest(mac, self._nonce_mac(stamp, rand, use, source)):
            return None
        (issued,) = struct.unpack(">d", stamp)
        return now - issued

    # -- server side -------------------------------------------------------------------------

    def challenge(
        self, now: float, *, stale: bool = False, use: str = "REGISTER", source: str = ""
    ) -> list[str]:
        """``WWW-Authenticate`` (or ``Proxy-Authenticate``) values, one per algorithm,
        strongest first, sharing one fresh nonce bound to ``use`` and ``source``."""
        nonce = self.make_nonce(now, use=use, source=source)
        return [
            format_challenge(realm=self.realm, nonce=nonce, algorithm=algorithm, stale=stale)
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        method: str,
        authorization: str,
        now: float,
        *,
        request_uri: str | None = None,
        source: str = "",
    ) -> AuthResult:
        """Check one ``Authorization`` value for a request with this method.

        With ``request_uri`` the ``uri`` parameter must name the same resource (RFC 7616
        §3.4.6: a response captured for one URI is not replayed against another). Every
        failure for a user that exists, or does not, carries the same ``ok``/``stale``; only
        ``reason`` (for our logs) differs, and not between "unknown user" and "wrong password".
        The nonce must have been issued for this ``method`` and to this ``source``.
        """
        if not authorization:
            return AuthResult(False, reason="no credentials")
        try:
            scheme, p = parse_auth_header(authorization)
        except SipParseError as exc:
            return AuthResult(False, reason=f"malformed: {exc}")
        if scheme.lower() != "digest":
            return AuthResult(False, reason=f"unknown scheme {scheme!r}")
        username, nonce = p.get("username", ""), p.get("nonce", "")
        uri, response = p.get("uri", ""), p.get("response", "").lower()
        algorithm = _normalise_algorithm(p.get("algorithm", "MD5"))
        if algorithm not in self.algorithms:
            return AuthResult(False, reason=f"algorithm {algorithm!r} not offered")
        if not (username and nonce and uri and response):
            return AuthResult(False, reason="missing parameters")
        if p.get("realm") != self.realm:
            return AuthResult(False, reason="wrong realm")
        if request_uri is not None and not _same_uri(uri, request_uri):
            return AuthResult(False, reason="uri does not match the Request-URI")
        qop = p.get("qop")
        nc_text, cnonce = p.get("nc"), p.get("cnonce")
        if qop is None:
            return AuthResult(False, reason="qop=auth required")
        if qop.lower() != "auth" or not nc_text or not cnonce:
            return AuthResult(False, reason="bad qop/nc/cnonce")
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthResult(False, reason="bad nc")
        age = self._nonce_age(nonce, now, use=method, source=source)
        if age is None or age < -1.0:
            return AuthResult(False, reason="not our nonce")
        # An unknown user is checked against a dummy secret: same work, same answer.
        if self.ha1_lookup is not None:
            stored = self.ha1_lookup(username, algorithm)
            known = stored is not None
            dummy = _dummy_ha1(algorithm, username)  # computed for both, so timing matches
            ha1 = stored.strip().lower() if stored is not None else dummy
        else:
            password = self.lookup(username)
            known = password is not None
            ha1 = digest_ha1(
                algorithm,
                username,
                self.realm,
                password if password is not None else "\x00unknown-user\x00",
            )
        expected = digest_response_from_ha1(
            algorithm=algorithm,
            ha1=ha1,
            method=method,
            uri=uri,
            nonce=nonce,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
        )
        correct = hmac.compare_digest(expected.encode(), response.encode()) and known
        if not correct:
            return AuthResult(False, reason="wrong credentials", guess=True)
        if age > self.nonce_ttl:
            return AuthResult(False, stale=True, reason="nonce expired")
        last = self._nc.get(nonce)
        if last is not None and nc <= last:
            return AuthResult(False, reason="nonce count replayed")
        self._nc[nonce] = nc
        self._nc.move_to_end(nonce)
        while len(self._nc) > self.max_tracked:
            self._nc.popitem(last=False)
        return AuthResult(True, username=username)


def digest_username(authorization: str) -> str | None:
    """The ``username`` of a Digest ``Authorization`` value (None when there is none), read
    before the check: what a lockout is keyed on."""
    try:
        scheme, p = parse_auth_header(authorization)
    except SipParseError:
        return None
    if scheme.lower() != "digest":
        return None
    return p.get("username") or None


def _dummy_ha1(algorithm: str, username: str) -> str:
    return digest_ha1(algorithm, username, "\x00", "\x00unknown-user\x00")


def _same_uri(a: str, b: str) -> bool:
    """Loose URI equality for the digest ``uri`` check: case of scheme and host, default port
    and a trailing ``;transport=`` differ between phones and proxies (RFC 3261 §19.1.4)."""

    def key(u: str) -> str:
        u = u.strip().strip("<>").lower()
        u = re.sub(r";transport=(udp|tcp|tls)(?=;|\?|$)", "", u)
        return re.sub(r"(?<=[^:]):5060(?=;|\?|$)", "", u)

    return key(a) == key(b)


def build_authorization(
    challenge: str, *, method: str, uri: str, username: str, password: str, cnonce: str, nc: int = 1
) -> str:
    """An ``Authorization`` value answering one ``WWW-Authenticate``/``Proxy-Authenticate``."""
    scheme, p = parse_auth_header(challenge)
    if scheme.lower() != "digest":
        raise SipParseError(f"cannot answer a {scheme!r} challenge")
    realm, nonce = p.get("realm", ""), p.get("nonce", "")
    algorithm = _normalise_algorithm(p.get("algorithm", "MD5"))
    if algorithm not in _HASHES:
        raise SipParseError(f"unsupported digest algorithm {algorithm!r}")
    qops = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc_text if qop else None,
        cnonce=cnonce if qop else None,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if "opaque" in p:
        parts.append(f"opaque={_quote(p['opaque'])}")
    return "Digest " + ", ".join(parts)


def pick_challenge(values: list[str], supported: tuple[str, ...] = ("SHA-256", "MD5")) -> str:
    """The strongest Digest challenge among several ``WWW-Authenticate`` values."""
    best: tuple[int, str] | None = None
    for v in values:
        try:
            scheme, p = parse_auth_header(v)
        except SipParseError:
            continue
        if scheme.lower() != "digest":
            continue
        alg = _normalise_algorithm(p.get("algorithm", "MD5"))
        if alg in supported:
            rank = supported.index(alg)
            if best is None or rank < best[0]:
                best = (rank, v)
    if best is None:
        raise SipParseError("no Digest challenge with a supported algorithm")
    return best[1]
