"""SDES (RFC 4568): the ``a=crypto`` attribute of SRTP streams, as plain data.

Grammar (RFC 4568 §9.1, for the SRTP key method of §6.1)::

    a=crypto:<tag> <crypto-suite> <key-params> [<session-param>]*
    tag        = 1*9DIGIT
    key-params = key-param *(";" key-param)
    key-param  = "inline:" key-salt ["|" lifetime] ["|" mki-value ":" mki-length]
    key-salt   = base64 of the master key and master salt
    lifetime   = ["2^"] 1*DIGIT          (packets)
    mki-length = 1*3DIGIT                (bytes, 1 to 128)

``CryptoAttribute.parse`` takes any SRTP suite and key method ``inline`` (the only one RFC 4568
defines); it raises :class:`CryptoError`, naming what is wrong, for anything else.
``unsupported`` then says why a well-formed attribute cannot be used here: hotline protects
media with libsrtp (through pylibsrtp) for ``AES_CM_128_HMAC_SHA1_80`` and ``_32``, one master
key per direction, no MKI, no re-keying (so a lifetime under 2^31 packets is refused) and none
of the session parameters but ``WSH`` (a hint, ignored).

Key material is an input: this module never draws random numbers (the shell does, with
``secrets``), so it stays deterministic.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from media_gateway.sdp.session import Media, SdpError

SUITES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
}
"""The crypto suites hotline can protect media with, in our order of preference, and the
length of their master key plus master salt in bytes (16 + 14, RFC 4568 §6.2.1-2)."""

SECURE_PROFILES = ("RTP/SAVP", "RTP/SAVPF")
"""Transport protocols of SRTP streams (RFC 3711 §12, RFC 5124)."""

MIN_LIFETIME = 2**31
"""Shortest key lifetime (packets) we accept: anything shorter needs re-keying within a call
(2^31 packets is more than a year of 20 ms audio)."""

_TAG = re.compile(r"[0-9]{1,9}")
_SUITE = re.compile(r"[A-Za-z0-9_]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class CryptoError(SdpError):
    """An ``a=crypto`` value that does not follow RFC 4568; the message says what."""


@dataclass(frozen=True, slots=True)
class SrtpKey:
    """One ``inline:`` key parameter."""

    key: bytes
    """Master key followed by master salt."""
    lifetime: int | None = None
    """Packets this key may protect; None: the suite's maximum."""
    mki: tuple[int, int] | None = None
    """(MKI value, MKI length in bytes) when the key has a master key identifier."""

    def to_text(self) -> str:
        text = "inline:" + base64.b64encode(self.key).decode("ascii")
        if self.lifetime is not None:
            n = self.lifetime.bit_length() - 1
            text += f"|2^{n}" if self.lifetime == 1 << n else f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki[0]}:{self.mki[1]}"
        return text


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` line's value."""

    tag: int
    suite: str
    keys: tuple[SrtpKey, ...]
    session_params: tuple[str, ...] = ()

    @property
    def key(self) -> bytes:
        """The (first) master key and salt."""
        return self.keys[0].key

    @classmethod
    def inline(cls, tag: int, suite: str, key: bytes) -> CryptoAttribute:
        """Ours: one key, no lifetime, no MKI, no session parameters."""
        return cls(tag, suite, (SrtpKey(key),))

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """The attribute in ``value`` (what follows ``a=crypto:``); CryptoError if malformed."""
        fields = value.strip().split()
        if len(fields) < 3:
            raise CryptoError(
                f"a=crypto needs a tag, a crypto suite and key parameters, got {value[:60]!r}"
            )
        tag_text, suite, key_text, *params = fields
        if not _TAG.fullmatch(tag_text):
            raise CryptoError(f"a=crypto tag must be 1 to 9 digits, got {tag_text[:20]!r}")
        if not _SUITE.fullmatch(suite):
            raise CryptoError(f"a=crypto suite {suite[:40]!r} is not a suite name")
        keys = tuple(_key_param(part, suite) for part in key_text.split(";"))
        return cls(int(tag_text), suite, keys, tuple(params))

    def to_value(self) -> str:
        keys = ";".join(k.to_text() for k in self.keys)
        return " ".join([str(self.tag), self.suite, keys, *self.session_params])

    def unsupported(self) -> str | None:
        """Why hotline cannot use this attribute, or None when it can."""
        if self.suite not in SUITES:
            return f"crypto suite {self.suite} is not supported (only {', '.join(SUITES)})"
        if len(self.keys) != 1:
            return "several master keys (MKI) are not supported"
        key = self.keys[0]
        if key.mki is not None:
            return "a master key identifier (MKI) is not supported"
        if key.lifetime is not None and key.lifetime < MIN_LIFETIME:
            return (
                f"a key lifetime of {key.lifetime} packets needs re-keying, which is not "
                "supported (at least 2^31)"
            )
        for param in self.session_params:
            if not param.startswith("WSH="):
                return f"session parameter {param[:40]} is not supported"
        return None


def _key_param(text: str, suite: str) -> SrtpKey:
    method, sep, info = text.partition(":")
    if not sep or method.lower() != "inline":
        raise CryptoError(f"a=crypto key method must be inline, got {text[:40]!r}")
    key_text, *rest = info.split("|")
    if len(rest) > 2:
        raise CryptoError(f"a=crypto key has too many '|' fields: {info[:60]!r}")
    if not _B64.fullmatch(key_text):
        raise CryptoError(f"a=crypto key is not base64: {key_text[:60]!r}")
    try:
        key = base64.b64decode(key_text + "=" * (-len(key_text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"a=crypto key is not base64: {key_text[:60]!r}") from None
    want = SUITES.get(suite)
    if want is not None and len(key) != want:
        raise CryptoError(
            f"{suite} needs {want} bytes of master key and salt, the key has {len(key)}"
        )
    if not key:
        raise CryptoError("a=crypto key is empty")
    lifetime: int | None = None
    mki: tuple[int, int] | None = None
    for part in rest:
        if ":" in part:
            if mki is not None:
                raise CryptoError(f"a=crypto key has two MKI fields: {info[:60]!r}")
            value_text, _, length_text = part.partition(":")
            if not _DIGITS.fullmatch(value_text) or not re.fullmatch(r"[0-9]{1,3}", length_text):
                raise CryptoError(f"a=crypto MKI must be <value>:<length>, got {part[:40]!r}")
            length = int(length_text)
            if not 1 <= length <= 128:
                raise CryptoError(f"a=crypto MKI length must be 1 to 128, got {length}")
            mki = (int(value_text), length)
        else:
            if lifetime is not None or mki is not None:
                raise CryptoError(
                    f"a=crypto lifetime must come once, before the MKI: {info[:60]!r}"
                )
            power = part.startswith("2^")
            digits = part[2:] if power else part
            if not _DIGITS.fullmatch(digits):
                raise CryptoError(f"a=crypto lifetime must be a number or 2^n, got {part[:40]!r}")
            if power and int(digits) > 64:
                raise CryptoError(f"a=crypto lifetime 2^{digits} is out of range")
            lifetime = 1 << int(digits) if power else int(digits)
            if lifetime == 0:
                raise CryptoError("a=crypto lifetime must not be 0")
    return SrtpKey(key, lifetime, mki)


@dataclass(frozen=True, slots=True)
class SrtpParams:
    """The SRTP keys both sides agreed on for one stream."""

    suite: str
    local_key: bytes
    """Ours: what we send is protected with it."""
    remote_key: bytes
    """The peer's: what we receive is checked and decrypted with it."""


def crypto_lines(media: Media) -> list[tuple[CryptoAttribute | None, str]]:
    """Every ``a=crypto`` of a media section: (attribute, "") or (None, why it is malformed)."""
    out: list[tuple[CryptoAttribute | None, str]] = []
    for value in media.attribute_values("crypto"):
        try:
            out.append((CryptoAttribute.parse(value), ""))
        except CryptoError as exc:
            out.append((None, str(exc)))
    return out


def choose_crypto(media: Media) -> tuple[CryptoAttribute | None, str]:
    """The first usable ``a=crypto`` of an offered media section (the offerer's preference,
    RFC 4568 §7.1.2), or None and why none is."""
    reasons: list[str] = []
    for attr, problem in crypto_lines(media):
        if attr is None:
            reasons.append(problem)
            continue
        why = attr.unsupported()
        if why is None:
            return attr, ""
        reasons.append(why)
    if not reasons:
        return None, "no a=crypto attribute"
    return None, reasons[0]


def offer_crypto(
    keys: Mapping[str, bytes], suites: Sequence[str] = tuple(SUITES)
) -> list[CryptoAttribute]:
    """Our offered attributes: one per suite, tags 1, 2, ... in ``suites`` order."""
    return [CryptoAttribute.inline(i, s, keys[s]) for i, s in enumerate(suites, start=1)]


def is_secure_profile(proto: str) -> bool:
    return proto.upper() in SECURE_PROFILES
