"""SDP offer/answer (RFC 3264) for G.711 telephony with RFC 4733 telephone-event.

* ``answer_offer``: the first offered audio codec we support (the offerer's preference wins,
  RFC 3264 §6.1), the offerer's telephone-event payload type kept, every other ``m=`` line
  rejected with port 0, the direction mirrored (``sendonly`` → ``recvonly``, used for hold).
  No usable audio stream raises ``NoCommonCodec``: the transaction user answers 488.
* ``make_offer``: our offer for outbound calls and late-offer answers: PCMU, PCMA and
  telephone-event/8000 on payload type 101.
* ``negotiated_media``: what the media layer needs from an offer/answer pair.

SRTP (SDES, RFC 4568; ``crypto.py``) follows a policy per call: ``off`` (today's behaviour:
RTP/SAVP is refused, ``a=crypto`` ignored), ``optional`` (an RTP/SAVP offer, or an RTP/AVP one
carrying ``a=crypto`` as "best effort" phones send, is answered with our key; a plain offer is
answered plain) or ``required`` (only an offer with a usable ``a=crypto`` is accepted:
``NoCommonCodec`` names why, and the transaction user answers 488). Our offers carry
``a=crypto`` (RTP/SAVP) when the caller passes the attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from media_gateway.sdp.crypto import (
    SECURE_PROFILES,
    CryptoAttribute,
    SrtpParams,
    choose_crypto,
    crypto_lines,
    is_secure_profile,
)
from media_gateway.sdp.session import DIRECTIONS, Connection, Media, Origin, SessionDescription

# Static payload types of RFC 3551 that we can carry, by encoding name.
STATIC_PT = {"PCMU": 0, "PCMA": 8}
CODEC_NAMES = {0: "PCMU", 8: "PCMA"}
TELEPHONE_EVENT_PT = 101

SrtpPolicy = Literal["off", "optional", "required"]
SRTP_POLICIES: tuple[SrtpPolicy, ...] = ("off", "optional", "required")

_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class NoCommonCodec(Exception):
    """The offer has no audio stream with a codec we support (answer 488, RFC 3261 §13.3.1.3)."""


class SrtpRefused(NoCommonCodec):
    """No stream meets the SRTP policy, or its ``a=crypto`` cannot be used (answer 488); the
    message says why, for the Warning header."""


@dataclass(frozen=True, slots=True)
class MediaParams:
    """The negotiated audio stream, from our side's point of view."""

    remote_ip: str
    remote_port: int
    payload_type: int
    codec: str
    dtmf_pt: int | None
    ptime: int
    direction: str
    """Direction of the *remote* side's description (``sendonly`` means we are put on hold)."""
    srtp: SrtpParams | None = None
    """The SRTP keys (RFC 4568) when the stream is protected; None: plain RTP."""


def _codec_of(media: Media, fmt: str, rtpmap: dict[int, tuple[str, int, str]]) -> str | None:
    try:
        pt = int(fmt)
    except ValueError:
        return None
    if pt in rtpmap:
        name, rate, _ = rtpmap[pt]
        if rate == 8000 and name.upper() in STATIC_PT:
            return name.upper()
        return None
    return CODEC_NAMES.get(pt)


def _telephone_event(rtpmap: dict[int, tuple[str, int, str]]) -> int | None:
    for pt, (name, rate, _) in rtpmap.items():
        if name.lower() == "telephone-event" and rate == 8000:
            return pt
    return None


def _media_direction(sd: SessionDescription, media: Media) -> str:
    """The stream's direction: media level, else session level, else ``sendrecv``. An
    old-style hold (RFC 2543: ``c=IN IP4 0.0.0.0``) counts as ``sendonly`` (RFC 3264 §8.4)."""
    for n, v in media.attributes:
        if v is None and n in DIRECTIONS:
            return n
    direction = sd.session_direction() or "sendrecv"
    conn = sd.connection_for(media)
    if conn is not None and conn.address == "0.0.0.0" and direction == "sendrecv":
        return "sendonly"
    return direction


def _addr_type(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def _ptime(media: Media) -> int:
    value = media.attribute("ptime")
    if value and value.strip().isdigit() and 10 <= int(value) <= 120:
        return int(value)
    return 20


def answer_offer(
    offer: SessionDescription,
    *,
    local_ip: str,
    local_port: int,
    supported: tuple[str, ...] = ("PCMU", "PCMA"),
    telephone_event: bool = True,
    ptime: int = 20,
    session_id: str | None = None,
    version: int = 0,
    direction: str | None = None,
    prefer: str = "offerer",
    srtp: SrtpPolicy = "off",
    srtp_keys: Mapping[str, bytes] | None = None,
) -> SessionDescription:
    """Our answer to ``offer``; ``direction`` forces one (else the offer's is mirrored).

    ``prefer="offerer"`` takes the first offered codec we support (RFC 3264 §6.1 says the
    answerer SHOULD keep the offerer's order); ``prefer="local"`` takes the first of
    ``supported`` that the offer lists.

    ``srtp`` is the SRTP policy (module docstring); ``srtp_keys`` maps each crypto suite to
    our master key and salt for it (needed unless the policy is ``off``).
    """
    if prefer not in ("offerer", "local"):
        raise ValueError(f"prefer must be 'offerer' or 'local', got {prefer!r}")
    if srtp not in SRTP_POLICIES:
        raise ValueError(f"srtp must be one of {SRTP_POLICIES}, got {srtp!r}")
    refusal = ""
    answer = SessionDescription(
        origin=Origin(
            "hotline", session_id or str(local_port), version, "IN", _addr_type(local_ip), local_ip
        ),
        name="hotline",
        connection=Connection("IN", _addr_type(local_ip), local_ip),
    )
    accepted = False
    for media in offer.media:
        rejected = Media(media.media, 0, media.proto, list(media.formats) or ["0"])
        usable = (
            not accepted
            and media.media == "audio"
            and media.port != 0
            and media.proto.upper() in ("RTP/AVP", "RTP/AVPF", *SECURE_PROFILES)
            and offer.connection_for(media) is not None
        )
        if not usable:
            answer.media.append(rejected)
            continue
        crypto, why = _srtp_choice(media, srtp)
        if why:
            refusal = refusal or why
            answer.media.append(rejected)
            continue
        rtpmap = media.rtpmap()
        offered: list[tuple[str, str]] = []
        for fmt in media.formats:
            name = _codec_of(media, fmt, rtpmap)
            if name is not None and name in supported:
                offered.append((fmt, name))
        if prefer == "local":
            offered.sort(key=lambda item: supported.index(item[1]))
        chosen = offered[0] if offered else None
        if chosen is None:
            answer.media.append(rejected)
            continue
        fmt, name = chosen
        m = Media("audio", local_port, media.proto, [fmt])
        m.attributes.append(("rtpmap", f"{fmt} {name}/8000"))
        te = _telephone_event(rtpmap) if telephone_event else None
        if te is not None:
            m.formats.append(str(te))
            m.attributes.append(("rtpmap", f"{te} telephone-event/8000"))
            m.attributes.append(("fmtp", f"{te} 0-16"))
        if crypto is not None:
            if srtp_keys is None or crypto.suite not in srtp_keys:
                raise ValueError(f"no local SRTP key for {crypto.suite}")
            ours = CryptoAttribute.inline(crypto.tag, crypto.suite, srtp_keys[crypto.suite])
            m.attributes.append(("crypto", ours.to_value()))
        m.attributes.append(("ptime", str(ptime)))
        m.set_direction(direction or _MIRROR[_media_direction(offer, media)])
        answer.media.append(m)
        accepted = True
    if not accepted:
        if refusal:
            raise SrtpRefused(refusal)
        raise NoCommonCodec("no audio stream with PCMU or PCMA over RTP/AVP in the offer")
    return answer


def _srtp_choice(media: Media, srtp: SrtpPolicy) -> tuple[CryptoAttribute | None, str]:
    """The offered ``a=crypto`` we answer (None: plain RTP), or "" and why the stream is
    refused under ``srtp``."""
    secure = is_secure_profile(media.proto)
    if srtp == "off":
        if secure:
            return None, f"SRTP is off here: the offer asks for {media.proto}"
        return None, ""  # a=crypto in an RTP/AVP offer is ignored, as before
    crypto, why = choose_crypto(media)
    if crypto is not None:
        return crypto, ""
    if secure:
        return None, f"the offer's SRTP cannot be used: {why}"
    if srtp == "required":
        if why != "no a=crypto attribute":
            return None, f"SRTP is required and the offer's a=crypto cannot be used: {why}"
        return None, f"SRTP is required: the offer is plain RTP ({media.proto})"
    return None, ""


def make_offer(
    *,
    local_ip: str,
    local_port: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    telephone_event: bool = True,
    ptime: int = 20,
    direction: str = "sendrecv",
    session_id: str | None = None,
    version: int = 0,
    crypto: Sequence[CryptoAttribute] = (),
) -> SessionDescription:
    """Our offer (outbound calls, re-INVITEs for hold, answers to a late offer); with
    ``crypto``, an SRTP offer (RTP/SAVP and one ``a=crypto`` line each)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    proto = "RTP/SAVP" if crypto else "RTP/AVP"
    m = Media("audio", local_port, proto, [str(STATIC_PT[c]) for c in codecs])
    for c in codecs:
        m.attributes.append(("rtpmap", f"{STATIC_PT[c]} {c}/8000"))
    if telephone_event:
        m.formats.append(str(TELEPHONE_EVENT_PT))
        m.attributes.append(("rtpmap", f"{TELEPHONE_EVENT_PT} telephone-event/8000"))
        m.attributes.append(("fmtp", f"{TELEPHONE_EVENT_PT} 0-16"))
    for attr in crypto:
        m.attributes.append(("crypto", attr.to_value()))
    m.attributes.append(("ptime", str(ptime)))
    m.set_direction(direction)
    return SessionDescription(
        origin=Origin(
            "hotline", session_id or str(local_port), version, "IN", _addr_type(local_ip), local_ip
        ),
        name="hotline",
        connection=Connection("IN", _addr_type(local_ip), local_ip),
        media=[m],
    )


def negotiated_media(
    offer: SessionDescription, answer: SessionDescription, *, local_is_offerer: bool
) -> MediaParams:
    """The audio stream both sides agreed on; the codec is the answer's first (RFC 3264 §6.1)."""
    remote = answer if local_is_offerer else offer
    for index, am in enumerate(answer.media):
        if am.media != "audio" or am.port == 0 or not am.formats:
            continue
        rm = remote.media[index] if index < len(remote.media) else am
        conn = remote.connection_for(rm)
        if conn is None:
            raise NoCommonCodec("the remote description has no connection address")
        rtpmap = am.rtpmap()
        codec = None
        for fmt in am.formats:
            codec = _codec_of(am, fmt, rtpmap)
            if codec is not None:
                pt = int(fmt)
                break
        if codec is None:
            continue
        om = offer.media[index] if index < len(offer.media) else am
        return MediaParams(
            remote_ip=conn.address,
            remote_port=rm.port,
            payload_type=pt,
            codec=codec,
            dtmf_pt=_telephone_event(rtpmap),
            ptime=_ptime(am),
            direction=_media_direction(remote, rm),
            srtp=_negotiated_srtp(om, am, local_is_offerer=local_is_offerer),
        )
    raise NoCommonCodec("no accepted audio stream in the answer")


def _negotiated_srtp(om: Media, am: Media, *, local_is_offerer: bool) -> SrtpParams | None:
    """The keys of an accepted stream: the answer's one ``a=crypto`` and the offer's line with
    the same tag (RFC 4568 §7.1.3, §7.5); None when the answer has none (plain RTP)."""
    answered = [attr for attr, _ in crypto_lines(am)]
    secure = is_secure_profile(am.proto) or is_secure_profile(om.proto)
    if answered and not secure and not crypto_lines(om):
        answered = []  # a=crypto answering a plain offer that had none: ignored
    if not answered:
        if secure:
            raise SrtpRefused(f"the answer accepts {am.proto} without a usable a=crypto")
        return None
    attr = answered[0]
    if attr is None or len(answered) != 1:
        raise SrtpRefused("the answer must have exactly one valid a=crypto")
    why = attr.unsupported()
    if why is not None:
        raise SrtpRefused(f"the answer's SRTP cannot be used: {why}")
    offered = next((a for a, _ in crypto_lines(om) if a is not None and a.tag == attr.tag), None)
    if offered is None or offered.suite != attr.suite:
        raise SrtpRefused(f"the answer's a=crypto tag {attr.tag} matches no offered one")
    if local_is_offerer:
        return SrtpParams(attr.suite, local_key=offered.key, remote_key=attr.key)
    return SrtpParams(attr.suite, local_key=attr.key, remote_key=offered.key)


class LocalSession:
    """Our ``o=`` line across one call (RFC 4566 §5.2, RFC 3264 §8).

    Every description we send in a call keeps one session id; the version grows by one each
    time the description differs from the previous one we sent, and stays when it is the same
    (a re-INVITE answered with unchanged media).
    """

    __slots__ = ("_last", "session_id", "version")

    def __init__(self, *, session_id: str, version: int = 0) -> None:
        self.session_id = session_id
        self.version = version
        self._last: bytes | None = None

    def stamp(self, sd: SessionDescription) -> SessionDescription:
        """Set ``sd``'s session id and version (in place) and return it."""
        sd.origin.session_id = self.session_id
        sd.origin.version = 0
        body = sd.to_bytes()
        if self._last is not None and body != self._last:
            self.version += 1
        self._last = body
        sd.origin.version = self.version
        return sd
