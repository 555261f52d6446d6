"""The media engine, sans-IO: every call's RTP legs, what they play, hear, record and relay.

Fed datagrams (``receive``) and frame ticks (``tick``, every 20 ms of a monotonic clock), it
returns datagrams to send and events (``drain``). No sockets, no loop, no clock: the shell
(``media/server.py``) owns those, so the same code runs under tests at any speed.

A *channel* is one RTP leg (a SIP caller, an agent's phone) or one sample leg (a WebRTC peer
whose packets aiortc handles). What a channel sends comes from one source at a time:

* nothing (idle), a prompt being played (barge-in on DTMF when interruptible), music on hold
  (a looped play), or the bridged peer's media (relayed as received, headers rewritten into
  this channel's own SSRC/sequence/timestamp space, telephone-events passed through), or the
  channel's own media (echo).

What a channel hears goes, per packet, to the relay (bridge/echo), the RFC 4733 receiver and,
when keys come in the audio, the in-band DTMF detector (all that arrived, in sequence order);
and, when something needs the audio itself (a recording, a mix, a sample-leg peer), through a
playout buffer that is popped once per tick. Decoding, encoding and in-band detection are
batched across all channels per tick (one numpy operation each).

A conversation between two channels can be recorded as one stereo file (``record_call``):
what channel ``a`` hears (the caller's voice) on the left, what ``b`` hears (the agent's) on
the right, one 20 ms frame per side per tick, so both sides stay aligned. The engine keeps
about a second of it and hands each full second to the shell (``call_record_data`` events),
which appends it to the file; channels outside a recorded conversation pay nothing for it.

A channel can send a *mix* instead (``set_mix``, for a supervisor monitoring a call): the
sum of what some other channels hear this tick, clipped to 16 bits and encoded in one batch per
codec, in the channel's own SSRC/sequence/timestamp space. A mix replaces the relay from the
bridged peer (a whisper: the agent hears caller + supervisor) and yields to a prompt or music.

RTP sending is symmetric (RFC 4961): once a packet arrives, replies go to its source address,
whatever the SDP said, so callers behind NAT hear us.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from media_gateway.media.srtp import SrtpStreams, streams_for
from media_gateway.rtp import g711
from media_gateway.rtp.dtmf import DtmfDigit, DtmfReceiver, DtmfSender, DtmfStarted
from media_gateway.rtp.inband import BlockDetector, InbandDtmfDetector
from media_gateway.rtp.jitter import JitterBuffer
from media_gateway.rtp.packet import RtpPacket, seq_diff
from media_gateway.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_compound,
    cname_sdes,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
)
from media_gateway.rtp.stats import ReceiverStats

RATE = 8000
FRAME = 160  # samples per 20 ms
PTIME = 0.02
CODEC_PT = {"PCMU": 0, "PCMA": 8}
SILENCE_BYTE = {"PCMU": g711.ULAW_SILENCE, "PCMA": g711.ALAW_SILENCE}
SILENCE_DBFS = -45.0
CALL_CHUNK_FRAMES = 50
"""A recorded conversation reaches the shell (and the file) one second at a time."""
CALL_RECORD_MAX_SECONDS = 4 * 3600.0
_SOUND_LEVEL = int(32768 * 10 ** (SILENCE_DBFS / 20))
"""A sample above this (peak) counts as sound in a recorded conversation."""
_HDR = struct.Struct("!BBHII")
Address = tuple[str, int]
Samples = npt.NDArray[np.int16]


class MediaError(Exception):
    """A control request that cannot be carried out (unknown channel, bad argument)."""


@dataclass(slots=True)
class Play:
    op: str
    samples: Samples
    interruptible: bool
    loop: bool
    pos: int = 0
    started: float = 0.0


@dataclass(slots=True)
class Recording:
    op: str
    path: str
    max_frames: int
    silence_frames: int
    stop_digits: str
    chunks: list[Samples] = field(default_factory=list)
    frames: int = 0
    silent_run: int = 0
    heard_sound: bool = False


@dataclass(slots=True, eq=False)
class CallRecording:
    """A conversation being recorded: what ``a`` hears (left) and ``b`` hears (right).

    Frames go into ``buf`` (``CALL_CHUNK_FRAMES`` frames, stereo int16, zeros = silence) at
    ``pos``; a full buffer is handed to the shell and a new one started. While ``a`` and ``b``
    are not linked to each other (one side hears a prompt or music on hold) both sides are
    written as silence, so the file's timeline stays the call's."""

    op: str
    path: str
    a: Channel
    b: Channel
    max_frames: int
    buf: Samples
    pos: int = 0
    frames: int = 0
    heard_sound: bool = False
    fed_a: Samples | None = None
    fed_b: Samples | None = None
    carry_a: Samples | None = None
    """Samples a ``samples`` channel delivered beyond one frame (kept for the next tick)."""
    carry_b: Samples | None = None


@dataclass(slots=True)
class RtcpState:
    next_at: float = 0.0
    last_sr_ntp_mid: int = 0
    last_sr_at: float = 0.0
    peer_fraction_lost: float = 0.0
    peer_jitter_ms: float = 0.0
    peer_cumulative_lost: int = 0


@dataclass(slots=True, eq=False)
class Channel:
    """One leg. ``kind`` is ``rtp`` (our socket) or ``samples`` (audio frames, e.g. WebRTC)."""

    id: str
    kind: str
    codec: str = "PCMU"
    pt: int = 0
    te_pt: int | None = 101
    remote: Address | None = None
    rtcp_remote: Address | None = None
    latched: bool = False
    direction: str = "sendrecv"
    inband: bool = False
    ssrc: int = 0
    seq: int = 0
    ts: int = 0
    ts_anchor: float = 0.0
    sending: bool = False
    packets_out: int = 0
    octets_out: int = 0
    packets_in: int = 0
    bad_packets: int = 0
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    dtmf: DtmfReceiver = field(default_factory=DtmfReceiver)
    jitter: JitterBuffer | None = None
    detector: InbandDtmfDetector | None = None
    key_packets: list[tuple[int, int, bytes]] = field(default_factory=list)
    """Audio packets (SSRC, sequence number, payload) received for the in-band key detector
    since the last tick."""
    key_seq: tuple[int, int] | None = None
    """SSRC and sequence number of the newest packet given to the key detector."""
    key_audio: list[Samples] = field(default_factory=list)
    """Audio for the key detector not yet classified (less than a block, or a sample leg's)."""
    play: Play | None = None
    recording: Recording | None = None
    call_rec: CallRecording | None = None
    """The recorded conversation this channel is a side of."""
    peer: Channel | None = None
    muted: bool = False
    """What this channel hears is not passed on to its peer (silence instead); ``set_mute``."""
    mix: list[Channel] | None = None
    """What this channel sends is the sum of what these hear (``set_mix``); None: its usual
    source (the bridged peer, a prompt, its echo)."""
    mixed_by: int = 0
    """How many mixes hear this channel."""
    mix_carry: Samples | None = None
    """Samples a ``samples`` channel delivered beyond one frame, for the next tick's mixes."""
    echo: bool = False
    in_ssrc: int | None = None
    relay_ssrc: int | None = None
    seq_offset: int = 0
    ts_offset: int = 0
    relay_marker: bool = False
    rtcp: RtcpState = field(default_factory=RtcpState)
    samples_in: list[Samples] = field(default_factory=list)
    last_in_at: float = 0.0
    opened_at: float = 0.0
    srtp: SrtpStreams | None = None
    """SRTP (RFC 3711) both ways when the SDP negotiated keys; None: plain RTP."""

    @property
    def listens(self) -> bool:
        """Whether incoming audio must be decoded (playout buffer popped each tick). The in-band
        key detector needs no playout: it hears the packets as they arrive."""
        return (
            self.recording is not None
            or self.call_rec is not None
            or self.mixed_by > 0
            or (self.peer is not None and self.peer.kind == "samples" and self.kind == "rtp")
        )


class MediaEngine:
    """All channels of one media process."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        wallclock: Callable[[], float] | None = None,
        rtcp_interval: float = 5.0,
        cname: str = "hotline",
    ) -> None:
        self.rng = rng or random.Random()
        self.wallclock = wallclock or (lambda: 0.0)
        self.rtcp_interval = rtcp_interval
        self.cname = cname
        self.channels: dict[str, Channel] = {}
        self._blocks = BlockDetector()
        self._out: list[tuple[Channel, bytes, bool]] = []  # (channel, datagram, is_rtcp)
        self._events: list[dict[str, Any]] = []
        self._sample_out: list[tuple[Channel, Samples]] = []
        self.call_recordings: dict[str, CallRecording] = {}
        """Recorded conversations by op id."""
        self._mix_fed: dict[Channel, Samples] = {}
        """This tick's decoded audio of channels heard by a mix."""
        self.ticks = 0
        self.late_ticks = 0
        self._protecting = False
        """Some channel has had SRTP keys: ``drain`` protects what SRTP channels send."""

    # -- control -------------------------------------------------------------------------

    def open(
        self,
        chan_id: str,
        now: float,
        *,
        kind: str = "rtp",
        codec: str = "PCMU",
        pt: int | None = None,
        te_pt: int | None = 101,
        remote: Address | None = None,
        inband: bool | None = None,
        direction: str = "sendrecv",
    ) -> Channel:
        if chan_id in self.channels:
            raise MediaError(f"channel {chan_id!r} is already open")
        if codec not in CODEC_PT:
            raise MediaError(f"codec {codec!r} is not supported (PCMU, PCMA)")
        if kind not in ("rtp", "samples"):
            raise MediaError(f"channel kind {kind!r} is not rtp or samples")
        ch = Channel(
            id=chan_id,
            kind=kind,
            codec=codec,
            pt=CODEC_PT[codec] if pt is None else pt,
            te_pt=te_pt,
            remote=remote,
            direction=direction,
            ssrc=self.rng.getrandbits(32),
            seq=self.rng.getrandbits(16),
            ts=self.rng.getrandbits(32),
            ts_anchor=now,
            opened_at=now,
            last_in_at=now,
        )
        # The SDP decides: no telephone-event negotiated means keys come in the audio.
        self._set_inband(ch, te_pt is None if inband is None else inband)
        ch.rtcp.next_at = now + self.rtcp_interval * (0.5 + self.rng.random())
        self.channels[chan_id] = ch
        return ch

    def update(self, chan_id: str, **changes: Any) -> Channel:
        """New remote address, codec, telephone-event PT, direction or in-band setting (re-INVITE)."""
        ch = self.get(chan_id)
        if "remote" in changes and changes["remote"] is not None:
            ch.remote = (str(changes["remote"][0]), int(changes["remote"][1]))
            ch.latched = False
        if "codec" in changes and changes["codec"] is not None:
            codec = changes["codec"]
            if codec not in CODEC_PT:
                raise MediaError(f"codec {codec!r} is not supported (PCMU, PCMA)")
            ch.codec = codec
            ch.pt = int(changes.get("pt") or CODEC_PT[codec])
        if "te_pt" in changes:
            ch.te_pt = changes["te_pt"]
        if "direction" in changes and changes["direction"] is not None:
            ch.direction = str(changes["direction"])
        if changes.get("inband") is not None:
            self._set_inband(ch, bool(changes["inband"]))
        if "srtp" in changes:
            try:
                ch.srtp = streams_for(changes["srtp"], ch.srtp)
            except ValueError as exc:
                raise MediaError(str(exc)) from None
            self._protecting = self._protecting or ch.srtp is not None
        return ch

    def close(self, chan_id: str, now: float) -> dict[str, Any] | None:
        ch = self.channels.pop(chan_id, None)
        if ch is None:
            return None
        if ch.peer is not None:
            self._unlink(ch)
        if ch.mix is not None:
            self._clear_mix(ch)
        if ch.mixed_by:
            for other in self.channels.values():
                if other.mix is not None and ch in other.mix:
                    other.mix.remove(ch)
            ch.mixed_by = 0
        if ch.play is not None:
            self._finish_play(ch, "closed", now)
        if ch.recording is not None:
            self._finish_record(ch, "hangup", now)
        if ch.call_rec is not None:
            self._finish_call_record(ch.call_rec, "hangup")
        if ch.kind == "rtp" and ch.remote is not None and ch.packets_out:
            self._out.append((ch, self._rtcp_bye(ch, now), True))
        return self.channel_stats(ch)

    def get(self, chan_id: str) -> Channel:
        ch = self.channels.get(chan_id)
        if ch is None:
            raise MediaError(f"no channel {chan_id!r}")
        return ch

    def play(
        self,
        chan_id: str,
        samples: Samples,
        now: float,
        *,
        op: str,
        interruptible: bool = True,
        loop: bool = False,
    ) -> None:
        """Replace whatever the channel sends with ``samples`` (8 kHz int16)."""
        ch = self.get(chan_id)
        if ch.play is not None:
            self._finish_play(ch, "replaced", now)
        if ch.peer is not None:
            self._unlink(ch)
        ch.echo = False
        if samples.size == 0:
            self._events.append(
                {
                    "event": "play_done",
                    "chan": ch.id,
                    "op": op,
                    "reason": "finished",
                    "played_ms": 0,
                }
            )
            return
        ch.play = Play(
            op, np.ascontiguousarray(samples, dtype=np.int16), interruptible, loop, 0, now
        )

    def stop_play(self, chan_id: str, now: float) -> None:
        ch = self.get(chan_id)
        if ch.play is not None:
            self._finish_play(ch, "stopped", now)

    def record(
        self,
        chan_id: str,
        now: float,
        *,
        op: str,
        path: str,
        max_seconds: float = 120.0,
        silence_seconds: float = 0.0,
        stop_digits: str = "#",
    ) -> None:
        ch = self.get(chan_id)
        if ch.recording is not None:
            raise MediaError(f"channel {chan_id!r} is already recording")
        if max_seconds <= 0:
            raise MediaError("max_seconds must be positive")
        ch.recording = Recording(
            op=op,
            path=path,
            max_frames=max(1, round(max_seconds / PTIME)),
            silence_frames=round(silence_seconds / PTIME) if silence_seconds > 0 else 0,
            stop_digits=stop_digits,
        )
        self._ensure_jitter(ch)

    def stop_record(self, chan_id: str, now: float) -> None:
        ch = self.get(chan_id)
        if ch.recording is not None:
            self._finish_record(ch, "stopped", now)

    def record_call(
        self,
        a_id: str,
        b_id: str,
        now: float,
        *,
        op: str,
        path: str,
        max_seconds: float = CALL_RECORD_MAX_SECONDS,
    ) -> None:
        """Record the conversation between ``a`` and ``b`` (stereo: what ``a`` hears on the
        left, what ``b`` hears on the right) until :meth:`stop_record_call`, either channel
        closes, either is bridged to a third channel (``transferred``) or ``max_seconds``.
        Silence on both sides while they are not bridged to each other."""
        a, b = self.get(a_id), self.get(b_id)
        if a is b:
            raise MediaError("a conversation has two different channels")
        for ch in (a, b):
            if ch.call_rec is not None:
                raise MediaError(f"channel {ch.id!r} is already in a recorded conversation")
        if op in self.call_recordings:
            raise MediaError(f"a conversation is already recorded as {op!r}")
        if max_seconds <= 0:
            raise MediaError("max_seconds must be positive")
        rec = CallRecording(
            op=op,
            path=path,
            a=a,
            b=b,
            max_frames=max(1, round(max_seconds / PTIME)),
            buf=_stereo_chunk(),
        )
        a.call_rec = b.call_rec = rec
        self.call_recordings[op] = rec
        for ch in (a, b):
            self._ensure_jitter(ch)

    def stop_record_call(self, chan_id: str, now: float) -> None:
        """End the recorded conversation ``chan_id`` is a side of (if any)."""
        ch = self.get(chan_id)
        if ch.call_rec is not None:
            self._finish_call_record(ch.call_rec, "stopped")

    def bridge(self, a_id: str, b_id: str, now: float) -> None:
        """Media both ways between two channels (each stops playing first)."""
        a, b = self.get(a_id), self.get(b_id)
        if a is b:
            raise MediaError("a channel cannot be bridged to itself")
        for ch in (a, b):
            rec = ch.call_rec
            if rec is not None and {rec.a, rec.b} != {a, b}:
                self._finish_call_record(rec, "transferred")  # a side joins someone else
        for ch in (a, b):
            if ch.play is not None:
                self._finish_play(ch, "bridged", now)
            if ch.peer is not None:
                self._unlink(ch)
            ch.echo = False
        a.peer, b.peer = b, a
        for ch in (a, b):
            ch.relay_ssrc = None  # re-anchor sequence/timestamp mapping on the next packet
            if ch.kind == "rtp" and ch.peer is not None and ch.peer.kind == "samples":
                self._ensure_jitter(ch)

    def unbridge(self, chan_id: str) -> None:
        ch = self.get(chan_id)
        if ch.peer is not None:
            self._unlink(ch)

    def set_mute(self, chan_id: str, on: bool) -> None:
        """Mute (or unmute) what ``chan_id`` hears towards its bridged peer: the peer gets
        silence in its place (the stream goes on: same SSRC, sequence and timing) and none of
        its keys; the channel's far end still hears the peer."""
        self.get(chan_id).muted = on

    def set_mix(self, chan_id: str, sources: list[str], now: float) -> None:
        """``chan_id`` sends the sum of what ``sources`` hear (their far ends' voices), each
        tick, instead of its bridged peer's media; ``[]`` ends the mix and the relay from the
        peer resumes. The sources' own media are not disturbed. A source that closes leaves
        the mix; a prompt or music played to ``chan_id`` goes first while it lasts."""
        ch = self.get(chan_id)
        srcs = [self.get(s) for s in sources]
        if ch in srcs:
            raise MediaError(f"channel {chan_id!r} cannot hear itself in a mix")
        if len(set(sources)) != len(sources):
            raise MediaError("a mix names each source once")
        if ch.mix is not None:
            self._clear_mix(ch)
        if srcs:
            ch.mix = srcs
            for src in srcs:
                src.mixed_by += 1
                self._ensure_jitter(src)
        ch.relay_ssrc = None
        if ch.peer is not None:
            ch.peer.relay_ssrc = None  # the relay (when it resumes) continues our numbering

    def _clear_mix(self, ch: Channel) -> None:
        srcs, ch.mix = ch.mix or [], None
        for src in srcs:
            src.mixed_by = max(0, src.mixed_by - 1)
            if not src.mixed_by:
                src.mix_carry = None
                if src.jitter is not None and not src.listens:
                    src.jitter = None

    def set_echo(self, chan_id: str, on: bool, now: float) -> None:
        ch = self.get(chan_id)
        if on:
            if ch.play is not None:
                self._finish_play(ch, "stopped", now)
            if ch.peer is not None:
                self._unlink(ch)
            ch.relay_ssrc = None
        ch.echo = on

    def send_dtmf(self, chan_id: str, digits: str, now: float, *, duration_ms: int = 100) -> int:
        """Send keys as RFC 4733 events (or tones in the audio when none was negotiated).

        Returns the number of packets queued; events go out immediately, one digit after another
        at their RTP offsets, which the shell paces.
        """
        ch = self.get(chan_id)
        if ch.te_pt is None or ch.kind == "samples":
            from media_gateway.audio.tones import dtmf_sequence

            self.play(
                chan_id,
                dtmf_sequence(digits, on=duration_ms / 1000),
                now,
                op=f"dtmf-{digits}",
                interruptible=False,
            )
            return 0
        sender = DtmfSender(payload_type=ch.te_pt, ssrc=ch.ssrc)
        count = 0
        for i, digit in enumerate(digits):
            ts = self._next_ts(ch, now) + i * (duration_ms + 100) * RATE // 1000
            for sp in sender.packets(digit, seq=ch.seq, timestamp=ts, duration_ms=duration_ms):
                ch.seq = (ch.seq + 1) & 0xFFFF
                self._queue_rtp(ch, sp.packet.to_bytes())
                count += 1
        return count

    # -- input ---------------------------------------------------------------------------

    def receive(self, chan_id: str, data: bytes, addr: Address, now: float) -> None:
        """One datagram arrived on a channel's RTP socket."""
        ch = self.channels.get(chan_id)
        if ch is None:
            return
        if len(data) < 12 or data[0] >> 6 != 2:
            ch.bad_packets += 1
            return
        b1 = data[1]
        if 200 <= b1 <= 204:  # RTCP arriving on the RTP port (rtcp-mux)
            self.receive_rtcp(chan_id, data, addr, now, mux=True)
            return
        if ch.srtp is not None:  # nothing unauthenticated is used, not even its address
            plain = ch.srtp.unprotect(data, False)
            if plain is None:
                return
            data = plain
        if not ch.latched or ch.remote != addr:
            ch.remote = addr  # symmetric RTP: answer where the packets come from
            ch.latched = True
        ch.packets_in += 1
        ch.last_in_at = now
        pt = b1 & 0x7F
        _, _, seq, ts, ssrc = _HDR.unpack_from(data, 0)
        ch.in_ssrc = ssrc
        ch.stats.update(seq, ts, now)
        if ch.direction in ("sendonly", "inactive"):
            return  # on hold at our side: nothing heard is used
        if pt == ch.te_pt:
            try:
                packet = RtpPacket.parse(data)
            except ValueError:
                ch.bad_packets += 1
                return
            for item in ch.dtmf.feed(packet, now):
                self._dtmf_event(ch, item, now)
        elif pt != ch.pt:
            if pt == 13:  # comfort noise: nothing to play out
                return
            ch.bad_packets += 1
            return
        elif ch.jitter is not None or ch.inband:
            try:
                packet = RtpPacket.parse(data)
            except ValueError:
                ch.bad_packets += 1
                return
            if ch.jitter is not None:
                ch.jitter.put(packet, now)
            if ch.inband:
                ch.key_packets.append((packet.ssrc, packet.sequence_number, packet.payload))
        target = ch.peer if ch.peer is not None else (ch if ch.echo else None)
        if target is not None and target.kind == "rtp":
            self._relay(ch, target, data, pt, seq, ts, ssrc)

    def receive_rtcp(
        self, chan_id: str, data: bytes, addr: Address, now: float, *, mux: bool = False
    ) -> None:
        ch = self.channels.get(chan_id)
        if ch is None:
            return
        if ch.srtp is not None:
            plain = ch.srtp.unprotect(data, True)
            if plain is None:
                return
            data = plain
        if not mux:
            ch.rtcp_remote = addr  # symmetric RTCP too
        try:
            packets = parse_compound(data)
        except ValueError:
            ch.bad_packets += 1
            return
        for p in packets:
            if isinstance(p, SenderReport):
                ch.rtcp.last_sr_ntp_mid = ntp_middle32(p.ntp_timestamp)
                ch.rtcp.last_sr_at = now
                blocks = p.reports
            elif isinstance(p, ReceiverReport):
                blocks = p.reports
            else:
                continue
            for b in blocks:
                if b.ssrc == ch.ssrc:
                    ch.rtcp.peer_fraction_lost = b.fraction_lost / 256.0
                    ch.rtcp.peer_cumulative_lost = b.cumulative_lost
                    ch.rtcp.peer_jitter_ms = b.jitter * 1000.0 / RATE

    def receive_samples(self, chan_id: str, samples: Samples, now: float) -> None:
        """Audio frames from a sample leg (WebRTC): queued for the next tick."""
        ch = self.channels.get(chan_id)
        if ch is None or ch.kind != "samples":
            return
        ch.packets_in += 1
        ch.last_in_at = now
        ch.samples_in.append(np.asarray(samples, dtype=np.int16))

    def receive_digit(self, chan_id: str, digit: str, method: str, now: float) -> None:
        """A key that arrived through signalling (SIP INFO, a WebRTC data message)."""
        ch = self.channels.get(chan_id)
        if ch is None:
            return
        self._dtmf_event(ch, DtmfDigit(digit=digit, method=method, at=now, duration_ms=0.0), now)  # type: ignore[arg-type]

    # -- the 20 ms tick ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """One frame time: play out, decode, detect, record, generate, send reports."""
        self.ticks += 1
        heard = self._pop_heard(now)
        if heard:
            self._use_heard(heard, now)
        self._detect_keys(now)
        if self.call_recordings:
            self._record_calls()
        self._mix(now)
        self._generate(now)
        for ch in self.channels.values():
            if ch.dtmf.next_deadline() is not None:
                for d in ch.dtmf.poll(now):
                    self._dtmf_event(ch, d, now)
            if ch.kind == "rtp" and now >= ch.rtcp.next_at:
                ch.rtcp.next_at = now + self.rtcp_interval * (0.5 + self.rng.random())
                if ch.remote is not None:
                    self._out.append((ch, self._rtcp_report(ch, now), True))

    def drain(
        self,
    ) -> tuple[
        list[tuple[Channel, bytes, bool]], list[dict[str, Any]], list[tuple[Channel, Samples]]
    ]:
        """Datagrams to send (channel, bytes, is_rtcp), events, and frames for sample legs."""
        out, self._out = self._out, []
        if self._protecting:
            out = _protect(out)
        events, self._events = self._events, []
        samples, self._sample_out = self._sample_out, []
        return out, events, samples

    def channel_stats(self, ch: Channel) -> dict[str, Any]:
        snap = ch.stats
        jit = ch.jitter.stats if ch.jitter is not None else None
        return {
            "chan": ch.id,
            "packets_in": ch.packets_in,
            "packets_out": ch.packets_out,
            "lost": snap.lost if ch.packets_in else 0,
            "jitter_ms": round(snap.jitter_ms, 3) if ch.packets_in else 0.0,
            "peer_fraction_lost": ch.rtcp.peer_fraction_lost,
            "peer_jitter_ms": round(ch.rtcp.peer_jitter_ms, 3),
            "bad_packets": ch.bad_packets,
            "concealed": jit.lost if jit is not None else 0,
            "srtp_failed": ch.srtp.failed if ch.srtp is not None else 0,
            "remote": f"{ch.remote[0]}:{ch.remote[1]}" if ch.remote else None,
        }

    # -- internals -----------------------------------------------------------------------

    def _set_inband(self, ch: Channel, on: bool) -> None:
        ch.inband = on
        ch.key_packets = []
        ch.key_audio = []
        if on and ch.detector is None:
            ch.detector = InbandDtmfDetector(blocks=self._blocks)

    def _ensure_jitter(self, ch: Channel) -> None:
        if ch.jitter is None and ch.kind == "rtp":
            ch.jitter = JitterBuffer()

    def _unlink(self, ch: Channel) -> None:
        peer = ch.peer
        ch.peer = None
        if peer is not None and peer.peer is ch:
            peer.peer = None
        for c in (ch, peer):
            if c is not None and c.kind == "rtp" and not c.listens:
                c.jitter = None if not c.listens else c.jitter

    def _next_ts(self, ch: Channel, now: float) -> int:
        """The sending timestamp for a frame generated at ``now`` (follows the clock)."""
        return (ch.ts + round((now - ch.ts_anchor) * RATE)) & 0xFFFFFFFF

    def _queue_rtp(self, ch: Channel, data: bytes) -> None:
        if ch.remote is None or ch.direction in ("recvonly", "inactive"):
            return
        ch.packets_out += 1
        ch.octets_out += len(data) - 12
        self._out.append((ch, data, False))

    def _relay(
        self, src: Channel, dst: Channel, data: bytes, pt: int, seq: int, ts: int, ssrc: int
    ) -> None:
        """Forward one packet into ``dst``'s stream: its SSRC, a continuous seq/ts space."""
        if dst.remote is None or dst.direction in ("recvonly", "inactive"):
            return
        if dst.mix is not None:
            return  # dst sends a mix (monitoring) in place of its peer's media
        if dst.play is not None:
            return  # dst is hearing a prompt or music; the peer's media waits
        if src.relay_ssrc != ssrc:
            # New source or re-anchor: continue dst's own numbering from here.
            src.relay_ssrc = ssrc
            src.seq_offset = (dst.seq - seq) & 0xFFFF
            src.ts_offset = (self._next_ts(dst, src.last_in_at) - ts) & 0xFFFFFFFF
            src.relay_marker = True
        out_seq = (seq + src.seq_offset) & 0xFFFF
        out_ts = (ts + src.ts_offset) & 0xFFFFFFFF
        if pt == src.te_pt:
            out_pt = dst.te_pt
            if out_pt is None or src.muted:
                return  # the other side takes no telephone-events (it hears nothing of the key)
        elif pt == src.pt:
            out_pt = dst.pt
        else:
            return
        payload = data[12:] if data[0] == 0x80 else RtpPacket.parse(data).payload
        if src.muted:
            payload = bytes((SILENCE_BYTE[dst.codec],)) * len(payload)
        elif pt == src.pt and src.codec != dst.codec:
            payload = (
                g711.ulaw_to_alaw(payload) if src.codec == "PCMU" else g711.alaw_to_ulaw(payload)
            )
        marker = 0x80 if (src.relay_marker or data[1] & 0x80) else 0
        src.relay_marker = False
        dst.seq = (out_seq + 1) & 0xFFFF
        self._queue_rtp(dst, _HDR.pack(0x80, marker | out_pt, out_seq, out_ts, dst.ssrc) + payload)

    def _pop_heard(self, now: float) -> list[tuple[Channel, bytes | None]]:
        """One frame from every listening channel's playout buffer (payload or None = lost)."""
        heard: list[tuple[Channel, bytes | None]] = []
        for ch in self.channels.values():
            if ch.kind == "samples":
                if ch.samples_in:
                    heard.append((ch, None))
                continue
            jb = ch.jitter
            if jb is None:
                continue
            frame = jb.pop(now)
            if frame is None:
                if ch.recording is not None:
                    heard.append((ch, None))  # silence while nothing arrives: time still passes
                continue
            heard.append((ch, frame.payload))
        return heard

    def _use_heard(self, heard: list[tuple[Channel, bytes | None]], now: float) -> None:
        decoded = self._decode(heard)
        for ch, samples in decoded:
            if ch.inband and ch.kind == "samples":
                ch.key_audio.append(samples)  # (an RTP channel's arrive as they are received)
            if ch.recording is not None:
                self._record_frame(ch, samples, now)
            if ch.muted:  # not passed on, nor recorded (after the key detector above)
                samples = np.zeros_like(samples)
            if ch.mixed_by:
                self._mix_fed[ch] = samples
            rec = ch.call_rec
            if rec is not None:
                if ch is rec.a:
                    rec.fed_a = samples
                else:
                    rec.fed_b = samples
            peer = ch.peer
            if peer is not None and peer.mix is not None:
                pass  # the peer sends a mix (monitoring): _mix hears this channel if it should
            elif peer is not None and peer.play is None and peer.kind == "samples":
                self._sample_out.append((peer, samples))
            elif peer is not None and peer.kind == "rtp" and ch.kind == "samples":
                self._send_samples(peer, samples, now)
            elif ch.echo and ch.kind == "samples":
                self._sample_out.append((ch, samples))

    def _detect_keys(self, now: float) -> None:
        """In-band keys in what the channels received since the last tick: every channel's
        20 ms blocks classified in one batch, then each channel's detector stepped in order.

        The detector hears an RTP channel's packets as they arrive, in sequence order, rather
        than the playout buffer's frames: that buffer plays a packet that comes after its turn
        as a lost frame (and drops it), then inserts frames of nothing to grow its delay. Fed
        to the detector as silence, two such frames within one tone re-armed the key and the
        rest of the tone was reported as a second press; a tone that lost most of its frames
        went unheard (docs/load.md, "A key taken twice"). A late packet is no pause in the
        caller's tone."""
        fresh: dict[str, list[tuple[Channel, bytes]]] = {}
        for ch in self.channels.values():
            if ch.key_packets:
                fresh.setdefault(ch.codec, []).append((ch, _key_payloads(ch)))
        for codec, items in fresh.items():
            decoded = g711.decode(b"".join(data for _, data in items), codec)
            pos = 0
            for ch, data in items:
                if data:
                    ch.key_audio.append(decoded[pos : pos + len(data)])
                    pos += len(data)
        listening: list[tuple[Channel, int]] = []
        rows: list[Samples] = []
        for ch in self.channels.values():
            if not ch.key_audio:
                continue
            audio = np.concatenate(ch.key_audio) if len(ch.key_audio) > 1 else ch.key_audio[0]
            n = audio.size // FRAME
            ch.key_audio = [audio[n * FRAME :]] if audio.size % FRAME else []
            if n and ch.detector is not None:
                listening.append((ch, n))
                rows.append(audio[: n * FRAME].reshape(n, FRAME))
        if not listening:
            return
        keys = self._blocks.detect_blocks(np.concatenate(rows) if len(rows) > 1 else rows[0])
        i = 0
        for ch, n in listening:
            detector = ch.detector
            assert detector is not None
            for key in keys[i : i + n]:
                d = detector.step(key, now)
                if d is not None:
                    self._dtmf_event(ch, d, now)
            i += n

    def _decode(self, heard: list[tuple[Channel, bytes | None]]) -> list[tuple[Channel, Samples]]:
        out: list[tuple[Channel, Samples]] = []
        by_codec: dict[str, list[tuple[Channel, bytes]]] = {}
        silence = np.zeros(FRAME, dtype=np.int16)
        for ch, payload in heard:
            if ch.kind == "samples":
                frames = ch.samples_in
                ch.samples_in = []
                joined = np.concatenate(frames) if len(frames) > 1 else frames[0]
                out.append((ch, joined))
            elif payload is None or len(payload) != FRAME:
                out.append((ch, silence if payload is None else g711.decode(payload, ch.codec)))
            else:
                by_codec.setdefault(ch.codec, []).append((ch, payload))
        for codec, items in by_codec.items():
            rows = g711.decode_payloads([p for _, p in items], codec)
            out.extend((ch, rows[i]) for i, (ch, _) in enumerate(items))
        return out

    def _generate(self, now: float) -> None:
        """Frames for every channel that is playing; encoded in one lookup per codec."""
        rtp_rows: dict[str, list[tuple[Channel, Samples]]] = {}
        finished: list[Channel] = []
        for ch in self.channels.values():
            p = ch.play
            if p is None:
                continue
            chunk = p.samples[p.pos : p.pos + FRAME]
            p.pos += FRAME
            if chunk.size < FRAME:
                if p.loop:
                    p.pos = FRAME - chunk.size
                    chunk = np.concatenate([chunk, p.samples[: p.pos]])
                    if chunk.size < FRAME:  # a loop shorter than one frame
                        chunk = np.resize(p.samples, FRAME)
                        p.pos = 0
                else:
                    chunk = np.concatenate([chunk, np.zeros(FRAME - chunk.size, dtype=np.int16)])
            if ch.kind == "samples":
                self._sample_out.append((ch, chunk))
            else:
                rtp_rows.setdefault(ch.codec, []).append((ch, chunk))
            if not p.loop and p.pos >= p.samples.size:
                finished.append(ch)
        for codec, items in rtp_rows.items():
            encoded = g711.encode(np.stack([s for _, s in items]), codec)
            for i, (ch, _) in enumerate(items):
                self._send_payload(ch, encoded[i].tobytes(), now)
        for ch in finished:
            self._finish_play(ch, "finished", now)

    def _mix(self, now: float) -> None:
        """One frame for every channel that sends a mix: the sum of its sources' frames this
        tick (silence for a source that delivered none), clipped, encoded per codec."""
        fed, self._mix_fed = self._mix_fed, {}
        frames: dict[Channel, Samples] = {}
        rtp_rows: dict[str, list[tuple[Channel, Samples]]] = {}
        for ch in self.channels.values():
            if ch.mix is None:
                continue
            acc = np.zeros(FRAME, dtype=np.int32)
            for src in ch.mix:
                if src not in frames:
                    got, src.mix_carry = _one_frame(fed.get(src), src.mix_carry)
                    frames[src] = _SILENT_FRAME if got is None else got
                acc += frames[src]
            if ch.play is not None:
                continue  # a prompt or music to this channel goes first
            out = np.clip(acc, -32768, 32767).astype(np.int16)
            if ch.kind == "samples":
                self._sample_out.append((ch, out))
            else:
                rtp_rows.setdefault(ch.codec, []).append((ch, out))
        for codec, items in rtp_rows.items():
            encoded = g711.encode(np.stack([s for _, s in items]), codec)
            for i, (ch, _) in enumerate(items):
                self._send_payload(ch, encoded[i].tobytes(), now)

    def _send_payload(self, ch: Channel, payload: bytes, now: float) -> None:
        ts = self._next_ts(ch, now)
        marker = 0x80 if not ch.sending else 0
        ch.sending = True
        ch.relay_ssrc = None
        if ch.peer is not None:
            ch.peer.relay_ssrc = None  # relayed media continues after this frame's numbering
        data = _HDR.pack(0x80, marker | ch.pt, ch.seq, ts, ch.ssrc) + payload
        ch.seq = (ch.seq + 1) & 0xFFFF
        self._queue_rtp(ch, data)

    def _send_samples(self, ch: Channel, samples: Samples, now: float) -> None:
        if ch.play is not None or ch.mix is not None:
            return
        for start in range(0, samples.size - FRAME + 1, FRAME):
            self._send_payload(
                ch, g711.encode(samples[start : start + FRAME], ch.codec).tobytes(), now
            )

    def _record_frame(self, ch: Channel, samples: Samples, now: float) -> None:
        rec = ch.recording
        assert rec is not None
        rec.chunks.append(samples.copy())
        rec.frames += 1
        level = _dbfs(samples)
        if level > SILENCE_DBFS:
            rec.silent_run = 0
            rec.heard_sound = True
        else:
            rec.silent_run += 1
        if rec.frames >= rec.max_frames:
            self._finish_record(ch, "max_length", now)
        elif rec.silence_frames and rec.silent_run >= rec.silence_frames:
            self._finish_record(ch, "silence", now)

    def _finish_record(self, ch: Channel, reason: str, now: float) -> None:
        rec = ch.recording
        assert rec is not None
        ch.recording = None
        samples = np.concatenate(rec.chunks) if rec.chunks else np.zeros(0, dtype=np.int16)
        if reason == "silence":
            samples = samples[: max(0, samples.size - rec.silent_run * FRAME)]
        elif reason == "dtmf" and ch.inband:
            # the key's own tone: about three frames had arrived when it was found, those
            # still in the playout buffer are not recorded
            waiting = 0 if ch.jitter is None else round(ch.jitter.buffered_ms / (PTIME * 1000))
            samples = samples[: max(0, samples.size - max(0, 3 - waiting) * FRAME)]
        if not ch.listens:
            ch.jitter = None
        self._events.append(
            {
                "event": "record_done",
                "chan": ch.id,
                "op": rec.op,
                "path": rec.path,
                "reason": reason,
                "seconds": round(samples.size / RATE, 3),
                "heard_sound": rec.heard_sound,
                "samples": samples,
            }
        )

    def _record_calls(self) -> None:
        """One frame per side of every recorded conversation (after this tick's decoding)."""
        done: list[CallRecording] = []
        for rec in self.call_recordings.values():
            a, b = rec.a, rec.b
            row = rec.buf[rec.pos * FRAME : (rec.pos + 1) * FRAME]
            if a.peer is b:
                left, rec.carry_a = _one_frame(rec.fed_a, rec.carry_a)
                right, rec.carry_b = _one_frame(rec.fed_b, rec.carry_b)
                if left is not None:
                    row[:, 0] = left
                if right is not None:
                    row[:, 1] = right
            else:  # on hold, or a prompt to one side: silence on both (the buffer is zeros)
                rec.carry_a = rec.carry_b = None
            rec.fed_a = rec.fed_b = None
            rec.pos += 1
            rec.frames += 1
            if rec.pos == CALL_CHUNK_FRAMES:
                self._hand_over(rec)
            if rec.frames >= rec.max_frames:
                done.append(rec)
        for rec in done:
            self._finish_call_record(rec, "max_length")

    def _hand_over(self, rec: CallRecording) -> None:
        """Give the shell the audio recorded so far (it appends it to the file)."""
        chunk = rec.buf[: rec.pos * FRAME]
        if not rec.heard_sound and chunk.size:
            rec.heard_sound = int(chunk.max()) > _SOUND_LEVEL or int(chunk.min()) < -_SOUND_LEVEL
        self._events.append(
            {"event": "call_record_data", "op": rec.op, "path": rec.path, "samples": chunk}
        )
        rec.buf = _stereo_chunk()
        rec.pos = 0

    def _finish_call_record(self, rec: CallRecording, reason: str) -> None:
        self.call_recordings.pop(rec.op, None)
        if rec.pos:
            self._hand_over(rec)
        for ch in (rec.a, rec.b):
            if ch.call_rec is rec:
                ch.call_rec = None
                if ch.jitter is not None and not ch.listens:
                    ch.jitter = None
        self._events.append(
            {
                "event": "call_record_done",
                "chan": rec.a.id,
                "op": rec.op,
                "path": rec.path,
                "reason": reason,
                "seconds": round(rec.frames * PTIME, 3),
                "heard_sound": rec.heard_sound,
            }
        )

    def _finish_play(self, ch: Channel, reason: str, now: float, digit: str | None = None) -> None:
        p = ch.play
        assert p is not None
        ch.play = None
        ch.sending = False
        ev: dict[str, Any] = {
            "event": "play_done",
            "chan": ch.id,
            "op": p.op,
            "reason": reason,
            "played_ms": round(min(p.pos, p.samples.size) * 1000 / RATE),
        }
        if digit is not None:
            ev["digit"] = digit
        self._events.append(ev)

    def _dtmf_event(self, ch: Channel, item: DtmfDigit | DtmfStarted, now: float) -> None:
        p = ch.play
        if p is not None and p.interruptible and not p.loop:
            self._finish_play(ch, "dtmf", now, digit=item.digit)  # barge-in on the first packet
        if isinstance(item, DtmfStarted):
            return
        self._events.append(
            {
                "event": "dtmf",
                "chan": ch.id,
                "digit": item.digit,
                "method": item.method,
                "duration_ms": round(item.duration_ms),
            }
        )
        rec = ch.recording
        if rec is not None and item.digit in rec.stop_digits:
            self._finish_record(ch, "dtmf", now)

    def _rtcp_report(self, ch: Channel, now: float) -> bytes:
        blocks: list[ReportBlock] = []
        if ch.packets_in:
            dlsr = 0
            if ch.rtcp.last_sr_at:
                dlsr = int((now - ch.rtcp.last_sr_at) * 65536)
            blocks.append(
                ch.stats.report_block(ch.in_ssrc or 0, lsr=ch.rtcp.last_sr_ntp_mid, dlsr=dlsr)
            )
        sdes = cname_sdes(ch.ssrc, self.cname)
        if ch.packets_out:
            sr = SenderReport(
                ssrc=ch.ssrc,
                ntp_timestamp=ntp_from_unix(self.wallclock()),
                rtp_timestamp=self._next_ts(ch, now),
                packet_count=ch.packets_out & 0xFFFFFFFF,
                octet_count=ch.octets_out & 0xFFFFFFFF,
                reports=tuple(blocks),
            )
            return build_compound([sr, sdes])
        return build_compound([ReceiverReport(ssrc=ch.ssrc, reports=tuple(blocks)), sdes])

    def _rtcp_bye(self, ch: Channel, now: float) -> bytes:
        from media_gateway.rtp.rtcp import Bye

        return build_compound(
            [
                ReceiverReport(ssrc=ch.ssrc, reports=()),
                cname_sdes(ch.ssrc, self.cname),
                Bye(sources=(ch.ssrc,)),
            ]
        )


_SILENT_FRAME: Samples = np.zeros(FRAME, dtype=np.int16)


def _protect(out: list[tuple[Channel, bytes, bool]]) -> list[tuple[Channel, bytes, bool]]:
    """SRTP/SRTCP for the datagrams of channels with keys (in sending order)."""
    kept: list[tuple[Channel, bytes, bool]] = []
    for ch, data, is_rtcp in out:
        srtp = ch.srtp
        if srtp is not None:
            protected = srtp.protect(data, is_rtcp)
            if protected is None:
                continue
            data = protected
        kept.append((ch, data, is_rtcp))
    return kept


def _key_payloads(ch: Channel) -> bytes:
    """The payloads received since the last tick, in sequence order (a burst after a stall
    may come in any order), for the key detector: a duplicate, or a packet older than one the
    detector already heard, is left out (its moment has passed)."""
    packets, ch.key_packets = ch.key_packets, []
    ref = ch.key_seq[1] if ch.key_seq is not None else packets[0][1]
    packets.sort(key=lambda p: seq_diff(p[1], ref))
    kept: list[bytes] = []
    for ssrc, seq, payload in packets:
        last = ch.key_seq
        if last is not None and last[0] == ssrc and -100 <= seq_diff(seq, last[1]) <= 0:
            continue
        ch.key_seq = (ssrc, seq)
        kept.append(payload)
    return b"".join(kept)


def _stereo_chunk() -> Samples:
    return np.zeros((CALL_CHUNK_FRAMES * FRAME, 2), dtype=np.int16)


def _one_frame(fed: Samples | None, carry: Samples | None) -> tuple[Samples | None, Samples | None]:
    """This tick's frame of one side and what is left over: an RTP side delivers exactly one
    frame per tick (or nothing: silence); a ``samples`` side may deliver more or less, so the
    rest is carried to the next tick (at most five frames: older audio is dropped)."""
    if carry is None:
        if fed is None or fed.size == FRAME:
            return fed, None
        joined = fed
    elif fed is None:
        joined = carry
    else:
        joined = np.concatenate([carry, fed])
    if joined.size > 6 * FRAME:
        joined = joined[-6 * FRAME :]
    if joined.size < FRAME:
        return None, joined  # not a whole frame yet: silence now, the rest next tick
    return joined[:FRAME], (joined[FRAME:] if joined.size > FRAME else None)


def _dbfs(samples: Samples) -> float:
    if samples.size == 0:
        return -120.0
    x = samples.astype(np.float64)
    rms = math.sqrt(float(np.dot(x, x)) / x.size)
    return 20 * math.log10(max(rms, 1e-3) / 32768.0) + 3.01  # relative to a full-scale sine
