"""DTMF: RFC 4733 telephone-events (payload codec, receiver, sender) and SIP INFO bodies.

Pure. :class:`DtmfReceiver` is fed the RTP packets of the negotiated telephone-event payload type
plus ``now`` and returns each key press exactly once, as :class:`DtmfDigit`. :class:`DtmfSender`
returns the packet train for one digit with the offsets at which to send each packet.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Literal

from media_gateway.rtp.packet import RtpPacket, ts_diff

EVENT_CODES = "0123456789*#ABCD"
"""RFC 4733 §3.2 event codes 0..15 for DTMF digits, by index."""
EVENT_FLASH = 16
DEFAULT_END_TIMEOUT = 0.25
DEFAULT_LONG_PRESS = 0.5
"""A key held longer than this is reported while still held (once)."""
"""Seconds without a packet after which an event whose end packets were lost is reported."""

_EVENT = struct.Struct("!BBH")

DtmfMethod = Literal["rfc4733", "info", "inband"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    """A key press, reported once."""

    digit: str
    """One of ``0123456789*#ABCD``."""
    method: DtmfMethod
    """How it arrived: RTP telephone-event, SIP INFO, or detected in the audio."""
    at: float
    """When the press started (the ``now`` of its first packet / block)."""
    duration_ms: float
    """Duration as signalled (RFC 4733 / INFO); for in-band, the length confirmed so far."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfStarted:
    """The first packet of a new telephone-event arrived (lets an IVR cut a prompt early)."""

    digit: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """RFC 4733 §2.3 payload: event, E bit, volume (0..63, -dBm0), duration in timestamp units."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload is shorter than 4 bytes")
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def to_bytes(self) -> bytes:
        if not 0 <= self.volume <= 63:
            raise ValueError(f"telephone-event volume must be 0..63, got {self.volume}")
        return _EVENT.pack(
            self.event & 0xFF, (0x80 if self.end else 0) | self.volume, min(self.duration, 0xFFFF)
        )

    @property
    def digit(self) -> str | None:
        """The DTMF digit for events 0..15, else None (flash and other tones)."""
        return EVENT_CODES[self.event] if self.event < 16 else None


def event_code(digit: str) -> int:
    """RFC 4733 event code for a DTMF digit (case-insensitive for A-D)."""
    idx = EVENT_CODES.find(digit.upper()) if len(digit) == 1 else -1
    if idx < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return idx


class DtmfReceiver:
    """RFC 4733 §2.5.2 receiver: one event = one RTP timestamp (per SSRC).

    ``feed`` returns a :class:`DtmfStarted` on the first packet of an event and one
    :class:`DtmfDigit` when its end packet arrives; the retransmitted end packets, and any late
    packet of an event already reported, are absorbed. When end packets are lost the digit is
    reported by ``poll(now)`` once ``end_timeout`` passes without packets, or as soon as a
    packet with a new timestamp starts the next event. A key held longer than ``long_press``
    (found with baresip, whose console sends one event until the next key) is reported while
    still held, once; its end is then absorbed.
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        end_timeout: float = DEFAULT_END_TIMEOUT,
        long_press: float = DEFAULT_LONG_PRESS,
    ) -> None:
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self.long_press_units = int(long_press * clock_rate)
        self._reported = False
        self._current: tuple[int, int, int] | None = None  # (ssrc, timestamp, event code)
        self._digit = ""
        self._started_at = 0.0
        self._last_at = 0.0
        self._duration = 0
        self._done: deque[tuple[int, int, int]] = deque(maxlen=16)

    def next_deadline(self) -> float | None:
        """When ``poll`` must run to finish an event whose end was lost, or None."""
        return self._last_at + self.end_timeout if self._current is not None else None

    def poll(self, now: float) -> list[DtmfDigit]:
        """Report an event whose end packets never came once ``end_timeout`` has passed."""
        if self._current is not None and now >= self._last_at + self.end_timeout:
            d = self._finish()
            return [d] if d is not None else []
        return []

    def _finish(self) -> DtmfDigit | None:
        assert self._current is not None
        self._done.append(self._current)
        self._current = None
        if self._reported:  # a long press, already reported while it was held
            return None
        return self._digit_now()

    def _digit_now(self) -> DtmfDigit:
        return DtmfDigit(
            digit=self._digit,
            method="rfc4733",
            at=self._started_at,
            duration_ms=self._duration * 1000.0 / self.clock_rate,
        )

    def feed(self, packet: RtpPacket, now: float) -> list[DtmfDigit | DtmfStarted]:
        """Account one telephone-event packet; malformed payloads and non-DTMF events are ignored."""
        try:
            ev = TelephoneEvent.parse(packet.payload)
        except ValueError:
            return []
        digit = ev.digit
        if digit is None:
            return []
        # An event is its SSRC and timestamp (RFC 4733 §2.5.2.1), and its code: a sender
        # that reuses a timestamp for the next key (a stalled clock) has still pressed a new key.
        key = (packet.ssrc, packet.timestamp, ev.event)
        out: list[DtmfDigit | DtmfStarted] = []
        if key in self._done:
            return out  # retransmitted end, or a straggler of a reported event
        if self._current is not None and key != self._current:
            cur_ssrc, cur_ts, _code = self._current
            if cur_ssrc == packet.ssrc and ts_diff(packet.timestamp, cur_ts) < 0:
                return out  # an older event arriving late: already superseded
            d = self._finish()
            if d is not None:
                out.append(d)
        if self._current is None:
            self._current = key
            self._digit = digit
            self._started_at = now
            self._duration = 0
            self._reported = False
            out.append(DtmfStarted(digit=digit, at=now))
        self._last_at = now
        self._duration = max(self._duration, ev.duration)
        if ev.end:
            d = self._finish()
            if d is not None:
                out.append(d)
        elif not self._reported and self._duration >= self.long_press_units:
            # A key held down (a phone that sends no end until the key is released, or a
            # console "press"): report it now, once, instead of waiting for the release.
            self._reported = True
            out.append(self._digit_now())
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledPacket:
    """A packet and when to send it, in seconds after the first one."""

    offset: float
    packet: RtpPacket


class DtmfSender:
    """RFC 4733 §2.5.1 sender: start packet with the marker bit, an update every ``interval_ms``,
    then the end packet three times (§2.5.1.4), all with the event's start timestamp."""

    def __init__(
        self,
        *,
        payload_type: int,
        ssrc: int,
        clock_rate: int = 8000,
        interval_ms: int = 50,
        volume: int = 10,
    ) -> None:
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.interval_ms = interval_ms
        self.volume = volume

    def packets(
        self, digit: str, *, seq: int, timestamp: int, duration_ms: int = 100
    ) -> list[ScheduledPacket]:
        """The packet train for one digit; sequence numbers start at ``seq`` (16-bit wrap)."""
        code = event_code(digit)
        if duration_ms <= 0:
            raise ValueError(f"DTMF duration must be positive, got {duration_ms} ms")
        total = min(duration_ms * self.clock_rate // 1000, 0xFFFF)
        step = self.interval_ms * self.clock_rate // 1000
        out: list[ScheduledPacket] = []
        elapsed = 0
        n = 0

        def add(offset_units: int, duration: int, end: bool, marker: bool) -> None:
            nonlocal n
            ev = TelephoneEvent(event=code, end=end, volume=self.volume, duration=duration)
            pkt = RtpPacket(
                payload_type=self.payload_type,
                sequence_number=(seq + n) & 0xFFFF,
                timestamp=timestamp & 0xFFFFFFFF,
                ssrc=self.ssrc,
                marker=marker,
                payload=ev.to_bytes(),
            )
            out.append(ScheduledPacket(offset=offset_units / self.clock_rate, packet=pkt))
            n += 1

        while elapsed < total:
            add(elapsed, min(elapsed + step, total), False, n == 0)
            elapsed += step
        for i in range(3):
            add(total + i * (20 * self.clock_rate // 1000), total, True, n == 0)
        return out


def parse_info_body(content_type: str, body: bytes | str, *, at: float) -> DtmfDigit:
    """A DTMF key from a SIP INFO body.

    ``application/dtmf-relay`` carries ``Signal=5`` and ``Duration=160`` (ms) lines;
    ``application/dtmf`` carries just the key. Raises ``ValueError`` for anything else.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/dtmf-relay":
        signal: str | None = None
        duration = 0.0
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if not sep:
                continue
            name = name.strip().lower()
            value = value.strip()
            if name == "signal":
                signal = value
            elif name == "duration":
                try:
                    duration = float(value)
                except ValueError:
                    raise ValueError(f"dtmf-relay Duration is not a number: {value!r}") from None
        if signal is None:
            raise ValueError("dtmf-relay body has no Signal line")
        return DtmfDigit(digit=_info_digit(signal), method="info", at=at, duration_ms=duration)
    if ctype == "application/dtmf":
        return DtmfDigit(digit=_info_digit(text.strip()), method="info", at=at, duration_ms=0.0)
    raise ValueError(f"not a DTMF INFO content type: {content_type!r}")


def _info_digit(signal: str) -> str:
    if signal.isdigit() and len(signal) <= 2 and int(signal) < 16:
        return EVENT_CODES[int(signal)]  # some phones send event codes (10 = *, 11 = #)
    return EVENT_CODES[event_code(signal)]


def build_dtmf_relay(digit: str, duration_ms: int = 160) -> tuple[str, bytes]:
    """Content type and body of an ``application/dtmf-relay`` INFO for one digit."""
    event_code(digit)
    return (
        "application/dtmf-relay",
        f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode(),
    )
