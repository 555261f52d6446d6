"""The media control protocol, typed: one class per operation, per reply and per event.

The signalling process drives the media process with *operations* (``Open``, ``Play``,
``Bridge``...); each names its reply type (``Open`` is a ``MediaOp[Opened]``), so
``await media.request(Open(chan="c1"))`` is an ``Opened`` to the type checker and at run time.
The media process reports *events* (``DtmfReceived``, ``PlayDone``, ``RecordDone``,
``RtpTimeout``, ``MediaLost``) to the subscriber of their channel.

The wire (the media process's stdin/stdout) is JSON lines, encoded and decoded here and only
here:

* a request ``{"id": 7, "op": "open", "chan": "c1", ...}``: the operation's wire tag
  (``TAG``) and its fields;
* its reply ``{"id": 7, "ok": true, ...reply fields}`` or ``{"id": 7, "ok": false,
  "error": "..."}``;
* an event ``{"event": "dtmf", "chan": "c1", ...}`` (no ``id``).

What crosses the process boundary is validated by pydantic (a ``TypeAdapter`` per class,
chosen by the tag): field types are strict (``"5"`` is not an int, ``1`` is not a bool),
unknown fields are refused, and any failure is a :class:`MediaError` naming the operation and
the field, never a ``KeyError``. Objects built in the same process (``LocalMedia``, the
engine's events) are trusted: the type checker has seen them.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import ConfigDict, Strict, TypeAdapter, ValidationError

from media_gateway.media.engine import MediaError

Str = Annotated[str, Strict()]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
"""An int is a float too (JSON writes 120.0 as 120 in some encoders)."""
Bool = Annotated[bool, Strict()]
Remote = tuple[Str, Int]
"""A peer address: an IP literal and a port (a JSON array on the wire)."""
Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]

_CONFIG = ConfigDict(extra="forbid")

R = TypeVar("R")


class MediaOp(Generic[R]):
    """An operation whose reply is an ``R``. ``TAG`` is its name on the wire."""

    __slots__ = ()
    __pydantic_config__ = _CONFIG
    TAG: ClassVar[str]


class MediaEvent:
    """Something the media process reports; ``TAG`` is its ``event`` on the wire."""

    __slots__ = ()
    __pydantic_config__ = _CONFIG
    TAG: ClassVar[str]


class _Reply:
    __slots__ = ()
    __pydantic_config__ = _CONFIG


# -- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(_Reply):
    """The operation was carried out; nothing to return."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened(_Reply):
    chan: Str
    port: Int | None = None
    """The local RTP port (RTCP is port + 1); None for a ``samples`` channel."""
    host: Str | None = None
    """The address the RTP socket is bound to; None for a ``samples`` channel."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStats:
    """A channel's RTP figures (RFC 3550 receiver statistics and the peer's RTCP reports)."""

    __pydantic_config__ = _CONFIG

    chan: Str
    packets_in: Int = 0
    packets_out: Int = 0
    lost: Int = 0
    jitter_ms: Float = 0.0
    peer_fraction_lost: Float = 0.0
    peer_jitter_ms: Float = 0.0
    bad_packets: Int = 0
    concealed: Int = 0
    """Frames the playout buffer made up for lost packets."""
    srtp_failed: Int = 0
    """SRTP/SRTCP packets dropped: failed authentication or replayed."""
    remote: Str | None = None
    """``ip:port`` the channel sends to, None before it knows."""

    def as_dict(self) -> dict[str, Any]:
        return _STATS.dump_python(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed(_Reply):
    stats: ChannelStats | None = None
    """The channel's final figures; None when it was not open."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats(_Reply):
    stats: ChannelStats


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus(_Reply):
    channels: Int
    ticks: Int
    late_ticks: Int
    """20 ms ticks skipped because the loop stalled for more than three frames."""
    ports_in_use: Int


@dataclass(frozen=True, slots=True, kw_only=True)
class Playing(_Reply):
    ms: Int
    """The length of what started playing (one pass of a loop)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfSent(_Reply):
    packets: Int


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(_Reply):
    pid: Int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcSdp(_Reply):
    chan: Str
    sdp: Str
    """Our answer (to ``WebRtcOffer``) or our offer (``WebRtcMakeOffer``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcStatus(_Reply):
    connection: Str
    ice: Str
    frames_in: Int
    queued_out: Int
    dropped_out: Int


# -- operations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Open(MediaOp[Opened]):
    """A new media channel: ``rtp`` (UDP socket pair) or ``samples`` (fed by a plug-in)."""

    TAG: ClassVar[str] = "open"
    chan: Str
    kind: Literal["rtp", "samples"] = "rtp"
    codec: Str = "PCMU"
    pt: Int | None = None
    """RTP payload type; None: the codec's static one."""
    te_pt: Int | None = 101
    """telephone-event payload type (RFC 4733); None: keys only in-band."""
    remote: Remote | None = None
    inband: Bool | None = None
    """In-band DTMF detection; None: on exactly when there is no ``te_pt``."""
    direction: Direction = "sendrecv"


@dataclass(frozen=True, slots=True, kw_only=True)
class SrtpKeys:
    """A leg's SRTP keys as negotiated in SDP: base64 master key and salt per direction."""

    __pydantic_config__ = _CONFIG

    suite: Str
    """``AES_CM_128_HMAC_SHA1_80`` or ``AES_CM_128_HMAC_SHA1_32``."""
    tx_key: Str
    """Ours: what the channel sends is protected with it."""
    rx_key: Str
    """The peer's: what the channel receives is checked with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Update(MediaOp[Ack]):
    """What an offer/answer exchange negotiated (``sip_leg.MediaUpdate.op`` builds it)."""

    TAG: ClassVar[str] = "update"
    chan: Str
    codec: Str
    pt: Int
    te_pt: Int | None
    """telephone-event payload type; None: the peer has none."""
    direction: Direction
    inband: Bool | None = None
    """In-band DTMF detection; None: on exactly when there is no ``te_pt``."""
    remote: Remote | None = None
    """Where to send RTP; None keeps the current address (symmetric RTP finds the peer)."""
    srtp: SrtpKeys | None = None
    """SRTP keys (RFC 4568 SDES) when the stream is protected; None: plain RTP."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Close(MediaOp[Closed]):
    TAG: ClassVar[str] = "close"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class Play(MediaOp[Playing]):
    """Send audio instead of whatever the channel sends: one of ``file`` (a WAV path),
    ``prompts`` (catalogue names or specs, in ``lang``) or ``spec`` (``tone:1000:400``...).
    A ``PlayDone`` with ``op_id`` follows when it ends."""

    TAG: ClassVar[str] = "play"
    chan: Str
    op_id: Str = "play"
    file: Str | None = None
    prompts: tuple[Str, ...] | None = None
    lang: Str | None = None
    spec: Str | None = None
    interruptible: Bool = True
    """A key stops it (barge-in)."""
    loop: Bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPlay(MediaOp[Ack]):
    TAG: ClassVar[str] = "stop_play"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class Record(MediaOp[Ack]):
    """Record what the channel hears into a WAV file; a ``RecordDone`` with ``op_id``
    follows (after the file is written)."""

    TAG: ClassVar[str] = "record"
    chan: Str
    path: Str
    op_id: Str = "record"
    max_seconds: Float = 120.0
    silence_seconds: Float = 0.0
    """Stop after this much silence; 0: never."""
    stop_digits: Str = "#"


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRecord(MediaOp[Ack]):
    TAG: ClassVar[str] = "stop_record"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCall(MediaOp[Ack]):
    """Record the conversation between channels ``a`` and ``b`` into one stereo WAV (8 kHz,
    16-bit, 2 channels): what ``a`` hears (its caller's voice) on the left, what ``b`` hears
    on the right. It ends on ``StopRecordCall``, when either channel closes (``hangup``), when
    either is bridged to a third channel (``transferred``) or at ``max_seconds``
    (``max_length``); both sides are silent while ``a`` and ``b`` are not bridged to each
    other (hold, a prompt). The file is written as the call goes (``.<name>.part`` beside
    ``path``, a valid WAV after every second) and renamed to ``path`` at the end; then a
    ``RecordDone`` with ``op_id`` is sent to ``a``'s subscriber."""

    TAG: ClassVar[str] = "record_call"
    a: Str
    b: Str
    path: Str
    op_id: Str = "record_call"
    max_seconds: Float = 4 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRecordCall(MediaOp[Ack]):
    """End the recorded conversation ``chan`` is a side of (nothing when there is none)."""

    TAG: ClassVar[str] = "stop_record_call"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridge(MediaOp[Ack]):
    """Media both ways between channels ``a`` and ``b``."""

    TAG: ClassVar[str] = "bridge"
    a: Str
    b: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbridge(MediaOp[Ack]):
    TAG: ClassVar[str] = "unbridge"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class Mute(MediaOp[Ack]):
    """While ``on``, what ``chan`` hears (its far end's voice and keys) is not passed on to the
    bridged peer, which gets silence in its place; the far end still hears the peer."""

    TAG: ClassVar[str] = "mute"
    chan: Str
    on: Bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Mix(MediaOp[Ack]):
    """``chan`` sends the sum of what ``sources`` hear (their far ends' voices, clipped) in
    place of its bridged peer's media: a supervisor monitoring a call, an agent hearing a
    whisper. ``()`` ends the mix (the relay from the peer resumes)."""

    TAG: ClassVar[str] = "mix"
    chan: Str
    sources: tuple[Str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo(MediaOp[Ack]):
    TAG: ClassVar[str] = "echo"
    chan: Str
    on: Bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDtmf(MediaOp[DtmfSent]):
    """Send keys to the far end (RFC 4733 events)."""

    TAG: ClassVar[str] = "send_dtmf"
    chan: Str
    digits: Str
    duration_ms: Int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Digit(MediaOp[Ack]):
    """A key that came by signalling (SIP INFO, a WebRTC message): same event, same barge-in."""

    TAG: ClassVar[str] = "digit"
    chan: Str
    digit: Str
    method: Str = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchRtp(MediaOp[Ack]):
    """The call is answered: from now on, no RTP at all within the server's
    ``rtp_start_timeout`` ends it (an ``RtpTimeout`` with ``no_media``), so a caller that
    never sends media does not hold its ports for the whole ``rtp_timeout``. Only ``rtp``
    channels are watched; a ``samples`` channel ignores it."""

    TAG: ClassVar[str] = "watch_rtp"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats(MediaOp[Stats]):
    TAG: ClassVar[str] = "stats"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStats(MediaOp[ServerStatus]):
    TAG: ClassVar[str] = "server_stats"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(MediaOp[Pong]):
    TAG: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcOffer(MediaOp[WebRtcSdp]):
    """A browser called: open a ``samples`` channel with a peer connection, answer ``sdp``."""

    TAG: ClassVar[str] = "webrtc_offer"
    chan: Str
    sdp: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcMakeOffer(MediaOp[WebRtcSdp]):
    """We call a browser: open the channel and its peer connection, return our offer."""

    TAG: ClassVar[str] = "webrtc_make_offer"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcAnswer(MediaOp[Ack]):
    """The browser's answer to ``WebRtcMakeOffer``'s offer."""

    TAG: ClassVar[str] = "webrtc_answer"
    chan: Str
    sdp: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcClose(MediaOp[Closed]):
    TAG: ClassVar[str] = "webrtc_close"
    chan: Str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcStats(MediaOp[WebRtcStatus]):
    TAG: ClassVar[str] = "webrtc_stats"
    chan: Str


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived(MediaEvent):
    """A key, whichever way it came (``method``: rfc4733, inband, info, webrtc)."""

    TAG: ClassVar[str] = "dtmf"
    chan: Str
    digit: Str
    method: Str = ""
    duration_ms: Int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayDone(MediaEvent):
    TAG: ClassVar[str] = "play_done"
    chan: Str
    op: Str
    """The ``op_id`` of the ``Play``."""
    reason: Str
    """finished, stopped, replaced, dtmf (barge-in, with ``digit``), closed."""
    played_ms: Int = 0
    digit: Str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDone(MediaEvent):
    TAG: ClassVar[str] = "record_done"
    chan: Str
    op: Str
    """The ``op_id`` of the ``Record``."""
    path: Str
    reason: Str
    """dtmf, silence, max_length, hangup, stopped; for a ``RecordCall`` also transferred."""
    seconds: Float = 0.0
    heard_sound: Bool = False
    error: Str | None = None
    """Why the file could not be written, if it could not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpTimeout(MediaEvent):
    TAG: ClassVar[str] = "rtp_timeout"
    chan: Str
    silent_seconds: Float
    no_media: Bool = False
    """No RTP at all arrived since the call was answered (``WatchRtp``): the start timeout,
    not the silence of a peer that used to send."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaLost(MediaEvent):
    """The channel's media is gone (the media process died, ICE failed): hang up."""

    TAG: ClassVar[str] = "media_lost"
    chan: Str
    reason: Str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready(MediaEvent):
    """The media process is up (its first line)."""

    TAG: ClassVar[str] = "ready"
    pid: Int
    loop: Str = ""


ChannelEvent = DtmfReceived | PlayDone | RecordDone | RtpTimeout | MediaLost
"""The events a channel's subscriber receives."""

OPERATIONS: tuple[type[MediaOp[Any]], ...] = (
    Open,
    Update,
    Close,
    Play,
    StopPlay,
    Record,
    StopRecord,
    RecordCall,
    StopRecordCall,
    Bridge,
    Unbridge,
    Mute,
    Mix,
    Echo,
    SendDtmf,
    Digit,
    WatchRtp,
    GetStats,
    ServerStats,
    Ping,
    WebRtcOffer,
    WebRtcMakeOffer,
    WebRtcAnswer,
    WebRtcClose,
    WebRtcStats,
)
EVENTS: tuple[type[MediaEvent], ...] = (
    DtmfReceived,
    PlayDone,
    RecordDone,
    RtpTimeout,
    MediaLost,
    Ready,
)


# -- the wire ---------------------------------------------------------------------------------


def _reply_type(op: type[MediaOp[Any]]) -> type[Any]:
    for base in getattr(op, "__orig_bases__", ()):
        if typing.get_origin(base) is MediaOp:
            (reply,) = typing.get_args(base)
            return reply
    raise TypeError(f"{op.__name__} does not name its reply type")


_OPS: dict[str, type[MediaOp[Any]]] = {cls.TAG: cls for cls in OPERATIONS}
_EVENTS: dict[str, type[MediaEvent]] = {cls.TAG: cls for cls in EVENTS}
_REPLY_OF: dict[type[MediaOp[Any]], type[Any]] = {cls: _reply_type(cls) for cls in OPERATIONS}
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {
    cls: TypeAdapter(cls) for cls in (*OPERATIONS, *EVENTS, *set(_REPLY_OF.values()))
}
_STATS: TypeAdapter[ChannelStats] = TypeAdapter(ChannelStats)


def reply_type(op: MediaOp[R]) -> type[R]:
    """The class of the reply ``op`` gets."""
    return _REPLY_OF[type(op)]


def _problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(the message)"
        if err["type"] == "missing":
            parts.append(f"field {where!r} is missing")
        elif err["type"] == "unexpected_keyword_argument":
            parts.append(f"field {where!r} is unknown")
        else:
            parts.append(f"field {where!r}: {err['msg']} (got {err.get('input')!r:.60})")
    return "; ".join(parts)


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:  # a class the protocol does not list: the far end will say so
        try:
            adapter = _ADAPTERS[cls] = TypeAdapter(cls)
        except Exception as exc:
            raise MediaError(f"{cls.__name__} cannot be sent to the media process") from exc
    return adapter


def _fields(obj: object) -> dict[str, Any]:
    return _adapter(type(obj)).dump_python(obj, mode="json")


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def encode_request(rid: int, op: MediaOp[Any]) -> bytes:
    """A request line: ``{"id": rid, "op": TAG, ...fields}``."""
    return _line({"id": rid, "op": op.TAG, **_fields(op)})


def encode_reply(rid: Any, reply: object) -> bytes:
    return _line({"id": rid, "ok": True, **_fields(reply)})


def encode_error(rid: Any, error: str) -> bytes:
    return _line({"id": rid, "ok": False, "error": error})


def encode_event(event: MediaEvent) -> bytes:
    return _line({"event": event.TAG, **_fields(event)})


def decode_request(msg: dict[str, Any]) -> MediaOp[Any]:
    """The operation in a request (its ``id`` is the caller's business); MediaError if the
    op is unknown or a field is missing, unknown or of the wrong type."""
    tag = msg.get("op")
    cls = _OPS.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise MediaError(f"unknown operation {tag!r}")
    fields = {k: v for k, v in msg.items() if k not in ("id", "op")}
    try:
        return _ADAPTERS[cls].validate_python(fields)
    except ValidationError as exc:
        raise MediaError(f"bad {tag!r} request: {_problem(exc)}") from None


def decode_reply(op: MediaOp[R], fields: dict[str, Any]) -> R:
    """The reply to ``op`` from its wire fields (without ``id`` and ``ok``)."""
    cls = _REPLY_OF[type(op)]
    try:
        return _ADAPTERS[cls].validate_python(fields)
    except ValidationError as exc:
        raise MediaError(f"bad reply to {op.TAG!r}: {_problem(exc)}") from None


def decode_event(msg: dict[str, Any]) -> MediaEvent:
    """An event from its wire form (or the engine's dict)."""
    tag = msg.get("event")
    cls = _EVENTS.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise MediaError(f"unknown event {tag!r}")
    fields = {k: v for k, v in msg.items() if k != "event"}
    try:
        return _ADAPTERS[cls].validate_python(fields)
    except ValidationError as exc:
        raise MediaError(f"bad {tag!r} event: {_problem(exc)}") from None


def decode_line(line: bytes) -> dict[str, Any]:
    """One JSON object from a line; MediaError when it is not one."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise MediaError(f"bad line: {exc}") from None
    if not isinstance(msg, dict):
        raise MediaError("a line is a JSON object")
    return msg
