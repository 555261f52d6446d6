"""SRTP (RFC 3711) for one RTP leg: libsrtp through pylibsrtp, the same library aiortc uses.

The engine keeps one :class:`SrtpStreams` per channel whose SDP negotiated SDES keys
(RFC 4568): everything the channel sends (RTP and RTCP) is protected with our key on its way
out, everything it receives is authenticated and decrypted with the peer's key before any
other use. A packet that fails (a wrong key, a forged or replayed packet) is dropped and
counted in ``failed``; it never raises, never latches the peer's address and never reaches
the relay, the recorder or the key detector.

No clock, no sockets, no randomness: the keys come from the signalling process in the
``Update`` operation (``control.SrtpKeys``, base64), where the SDP was negotiated.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Protocol

import pylibsrtp

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
"""RFC 4568 suite names and libsrtp's profiles (for SRTCP both use an 80-bit tag)."""
KEY_LENGTH = 30
"""Master key (16 bytes) and master salt (14 bytes)."""


class KeySpec(Protocol):
    """What the control protocol says about a leg's keys (``control.SrtpKeys``)."""

    @property
    def suite(self) -> str: ...
    @property
    def tx_key(self) -> str: ...
    @property
    def rx_key(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Keys:
    suite: str
    tx: bytes
    rx: bytes


def decode_keys(spec: KeySpec) -> Keys:
    """The suite and the raw keys; ValueError names what is wrong."""
    if spec.suite not in PROFILES:
        raise ValueError(f"SRTP suite {spec.suite!r} is not supported ({', '.join(PROFILES)})")
    out = []
    for name, text in (("tx_key", spec.tx_key), ("rx_key", spec.rx_key)):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"SRTP {name} is not base64") from None
        if len(raw) != KEY_LENGTH:
            raise ValueError(f"SRTP {name} has {len(raw)} bytes, not {KEY_LENGTH}")
        out.append(raw)
    return Keys(spec.suite, out[0], out[1])


class SrtpStreams:
    """Both directions of one leg: our outbound stream and the peer's inbound one."""

    __slots__ = ("_rx", "_tx", "failed", "keys", "protect_failed")

    def __init__(self, keys: Keys) -> None:
        profile = PROFILES[keys.suite]
        tx = pylibsrtp.Policy(
            key=keys.tx, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
        )
        # the relay may pass on a packet the peer sent twice: same sequence number again
        tx.allow_repeat_tx = True
        rx = pylibsrtp.Policy(
            key=keys.rx, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
        )
        self.keys = keys
        self._tx = pylibsrtp.Session(tx)
        self._rx = pylibsrtp.Session(rx)
        self.failed = 0
        """Packets received that failed authentication or the replay check (dropped)."""
        self.protect_failed = 0
        """Packets we could not protect (not sent); a bug if ever non-zero."""

    def protect(self, data: bytes, rtcp: bool) -> bytes | None:
        try:
            return self._tx.protect_rtcp(data) if rtcp else self._tx.protect(data)
        except (pylibsrtp.Error, ValueError, TypeError):
            self.protect_failed += 1
            return None

    def unprotect(self, data: bytes, rtcp: bool) -> bytes | None:
        """The plain packet, or None (counted) when it is not authentic."""
        try:
            return self._rx.unprotect_rtcp(data) if rtcp else self._rx.unprotect(data)
        except (pylibsrtp.Error, ValueError, TypeError):
            self.failed += 1
            return None


def streams_for(spec: KeySpec | None, current: SrtpStreams | None) -> SrtpStreams | None:
    """The streams for a channel after an ``Update``: None for plain RTP; the current ones
    when the keys did not change (a re-INVITE for hold keeps the rollover counter and the
    replay window); new ones for new keys. ValueError for unusable keys."""
    if spec is None:
        return None
    keys = decode_keys(spec)
    if current is not None and current.keys == keys:
        return current
    return SrtpStreams(keys)
