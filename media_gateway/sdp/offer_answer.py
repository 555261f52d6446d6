"""SDP offer/answer (RFC 3264) for G.711 telephony with RFC 4733 telephone-event.

* ``answer_offer``: the first offered audio codec we support (the offerer's preference wins,
  RFC 3264 §6.1), the offerer's telephone-event payload type kept, every other ``m=`` line
  rejected with port 0, the direction mirrored (``sendonly`` → ``recvonly``, used for hold).
  No usable audio stream raises ``NoCommonCodec``: the transaction user answers 488.
* ``make_offer``: our offer for outbound calls and late-offer answers: PCMU, PCMA and
  telephone-event/8000 on payload type 101.
* ``negotiated_media``: what the media layer needs from an offer/answer pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_gateway.sdp.session import DIRECTIONS, Connection, Media, Origin, SessionDescription

# Static payload types of RFC 3551 that we can carry, by encoding name.
STATIC_PT = {"PCMU": 0, "PCMA": 8}
CODEC_NAMES = {0: "PCMU", 8: "PCMA"}
TELEPHONE_EVENT_PT = 101

_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class NoCommonCodec(Exception):
    """The offer has no audio stream with a codec we support (answer 488, RFC 3261 §13.3.1.3)."""


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
) -> SessionDescription:
    """Our answer to ``offer``; ``direction`` forces one (else the offer's is mirrored).

    ``prefer="offerer"`` takes the first offered codec we support (RFC 3264 §6.1 says the
    answerer SHOULD keep the offerer's order); ``prefer="local"`` takes the first of
    ``supported`` that the offer lists.
    """
    if prefer not in ("offerer", "local"):
        raise ValueError(f"prefer must be 'offerer' or 'local', got {prefer!r}")
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
            and media.proto.upper() in ("RTP/AVP", "RTP/AVPF")
            and offer.connection_for(media) is not None
        )
        if not usable:
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
        m.attributes.append(("ptime", str(ptime)))
        m.set_direction(direction or _MIRROR[_media_direction(offer, media)])
        answer.media.append(m)
        accepted = True
    if not accepted:
        raise NoCommonCodec("no audio stream with PCMU or PCMA over RTP/AVP in the offer")
    return answer


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
) -> SessionDescription:
    """Our offer (outbound calls, re-INVITEs for hold, answers to a late offer)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    m = Media("audio", local_port, "RTP/AVP", [str(STATIC_PT[c]) for c in codecs])
    for c in codecs:
        m.attributes.append(("rtpmap", f"{STATIC_PT[c]} {c}/8000"))
    if telephone_event:
        m.formats.append(str(TELEPHONE_EVENT_PT))
        m.attributes.append(("rtpmap", f"{TELEPHONE_EVENT_PT} telephone-event/8000"))
        m.attributes.append(("fmtp", f"{TELEPHONE_EVENT_PT} 0-16"))
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
        return MediaParams(
            remote_ip=conn.address,
            remote_port=rm.port,
            payload_type=pt,
            codec=codec,
            dtmf_pt=_telephone_event(rtpmap),
            ptime=_ptime(am),
            direction=_media_direction(remote, rm),
        )
    raise NoCommonCodec("no accepted audio stream in the answer")


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
