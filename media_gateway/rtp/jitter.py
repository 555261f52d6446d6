"""Adaptive playout (jitter) buffer for where media terminates: IVR, recording, DTMF detection.

Pure and time-driven: ``put(packet, now)`` on arrival, ``pop(now)`` once per frame time (20 ms).
Frames are keyed by RTP timestamp and played from a pointer that advances one frame per pop, so
a missing packet costs exactly one concealed frame (``kind="lost"``) and never a stall.

Delay control:

* the target delay starts at ``initial_delay_ms`` and follows the spread of relative transit
  delay (arrival - timestamp) over the last ``window`` packets plus one frame, within
  ``[min_delay_ms, max_delay_ms]``; each packet arriving after its frame was played (late)
  also raises the floor by one frame, forgotten again at one frame per ``5 * window`` pops;
* growing the delay inserts concealment frames (``kind="stretch"``) without advancing;
* when the buffered audio stays above target + one frame for ``window`` pops, one frame is
  dropped to cut latency.

A new SSRC, a marker bit on an empty buffer (new talkspurt), or a timestamp/sequence jump
re-anchors the playout clock. After ``max_conceal`` consecutive frames with nothing buffered the
buffer goes idle (``pop`` returns None) until the next packet.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from media_gateway.rtp.packet import RtpPacket, seq_diff, ts_diff

FrameKind = Literal["audio", "lost", "stretch"]


class _WindowRange:
    """Max - min over the last ``size`` values in O(1) amortised (monotonic queues)."""

    __slots__ = ("_count", "_max", "_min", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._count = 0
        self._max: deque[tuple[int, float]] = deque()
        self._min: deque[tuple[int, float]] = deque()

    def push(self, value: float) -> None:
        i = self._count
        self._count += 1
        while self._max and self._max[-1][1] <= value:
            self._max.pop()
        self._max.append((i, value))
        while self._min and self._min[-1][1] >= value:
            self._min.pop()
        self._min.append((i, value))
        oldest = i - self.size
        if self._max[0][0] <= oldest:
            self._max.popleft()
        if self._min[0][0] <= oldest:
            self._min.popleft()

    def spread(self) -> float:
        return self._max[0][1] - self._min[0][1] if self._max else 0.0

    def clear(self) -> None:
        self._max.clear()
        self._min.clear()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutFrame:
    """One frame to play. For ``lost``/``stretch`` the caller conceals (silence or repeat)."""

    kind: FrameKind
    payload: bytes | None
    """The RTP payload for ``audio``; None otherwise."""
    timestamp: int
    """RTP timestamp of the frame slot (the slot being concealed for ``lost``)."""
    sequence_number: int | None = None
    """Sequence number for ``audio``."""


@dataclass(slots=True)
class JitterStats:
    """Counters since creation."""

    received: int = 0
    played: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    stretched: int = 0
    dropped_for_latency: int = 0
    resets: int = 0


class JitterBuffer:
    """Adaptive playout buffer for one incoming stream of fixed-``ptime`` audio."""

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        ptime_ms: int = 20,
        initial_delay_ms: float = 40.0,
        min_delay_ms: float = 20.0,
        max_delay_ms: float = 200.0,
        max_conceal: int = 5,
        window: int = 50,
        max_jump_s: float = 1.0,
    ) -> None:
        if not 0 < min_delay_ms <= initial_delay_ms <= max_delay_ms:
            raise ValueError(
                "jitter buffer delays must satisfy 0 < min <= initial <= max, got "
                f"{min_delay_ms}, {initial_delay_ms}, {max_delay_ms}"
            )
        self.clock_rate = clock_rate
        self.frame = clock_rate * ptime_ms // 1000
        self.ptime_ms = ptime_ms
        self.initial_delay_ms = initial_delay_ms
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.max_conceal = max_conceal
        self.window = window
        self.max_jump = int(max_jump_s * clock_rate)
        self.target_ms = initial_delay_ms
        self.stats = JitterStats()
        self._late_boost_ms = 0.0
        self._transits = _WindowRange(window)
        self._over = 0  # consecutive pops with more buffered than target + one frame
        self._reset_state()
        self._ssrc: int | None = None
        self._last_rtp_ts: int | None = None
        self._ts_acc = 0
        self._desired = float(initial_delay_ms)

    def _reset_state(self) -> None:
        self._buf: dict[int, tuple[int, bytes]] = {}  # unwrapped ts -> (seq, payload)
        self._base_ts = 0  # RTP ts of unwrapped 0
        self._next = 0  # unwrapped ts of the next frame to play
        self._newest = -1
        self._last_seq: int | None = None
        self._anchored = False
        self._start_at = 0.0
        self._playing = False
        self._empty_pops = 0
        self._stretch = 0
        self._over = 0

    # -- input -----------------------------------------------------------------------------
    def _unwrap(self, ts: int) -> int:
        return self._next + ts_diff(ts, (self._base_ts + self._next) & 0xFFFFFFFF)

    def put(self, packet: RtpPacket, now: float) -> None:
        """A packet arrived at ``now``."""
        self.stats.received += 1
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self.stats.resets += 1
            self._ssrc = packet.ssrc
            self._reset_state()
            self._transits.clear()
            self._last_rtp_ts = None
        self._note_transit(packet.timestamp, now)
        pos = 0
        if self._anchored:
            pos = self._unwrap(packet.timestamp)
            jump = abs(pos - self._next) > self.max_jump
            seq_jump = (
                self._last_seq is not None
                and abs(seq_diff(packet.sequence_number, self._last_seq)) > 100
            )
            talkspurt = packet.marker and not self._buf and pos > self._newest
            if jump or seq_jump or talkspurt:
                if jump or seq_jump:
                    self.stats.resets += 1
                    self._transits.clear()
                    self._last_rtp_ts = None
                    self._note_transit(packet.timestamp, now)
                self._reset_state()
        if not self._anchored:
            self._anchored = True
            self._base_ts = packet.timestamp
            self._next = 0
            self._newest = -1
            self._start_at = now + self._desired / 1000.0
            self.target_ms = self._desired
            pos = 0
        if pos < self._next:
            self.stats.late += 1
            self._late_boost_ms = min(self._late_boost_ms + self.ptime_ms, self.max_delay_ms)
            self._desired = self._desired_ms()
            return
        if pos in self._buf:
            self.stats.duplicate += 1
            return
        self._buf[pos] = (packet.sequence_number, packet.payload)
        self._newest = max(self._newest, pos)
        self._last_seq = packet.sequence_number

    def _note_transit(self, ts: int, now: float) -> None:
        # relative transit delay on an unwrapped timestamp axis (RFC 3550 §A.8 "transit")
        if self._last_rtp_ts is None:
            self._ts_acc = 0
        else:
            self._ts_acc += ts_diff(ts, self._last_rtp_ts)
        self._last_rtp_ts = ts
        self._transits.push(now - self._ts_acc / self.clock_rate)
        self._desired = self._desired_ms()

    def _desired_ms(self) -> float:
        spread = self._transits.spread() * 1000.0
        want = max(self.initial_delay_ms + self._late_boost_ms, spread + self.ptime_ms)
        step = self.ptime_ms
        want = math.ceil(want / step - 1e-6) * step  # whole frames (float noise tolerated)
        return float(min(max(want, self.min_delay_ms), self.max_delay_ms))

    # -- output ----------------------------------------------------------------------------
    def pop(self, now: float) -> PlayoutFrame | None:
        """The frame to play now, or None when idle / still filling before the first frame."""
        if not self._anchored:
            return None
        if not self._playing:
            if now + 1e-9 < self._start_at:
                return None
            self._playing = True
        if self._late_boost_ms > 0:  # forget one frame of late-packet boost per 5 windows
            self._late_boost_ms = max(0.0, self._late_boost_ms - self.ptime_ms / (5 * self.window))
            self._desired = self._desired_ms()
        desired = self._desired
        if desired > self.target_ms:
            self._stretch += round((desired - self.target_ms) / self.ptime_ms)
            self.target_ms = desired
        elif desired < self.target_ms:
            self.target_ms = desired  # shrinking happens through the latency drop below
        rtp_ts = (self._base_ts + self._next) & 0xFFFFFFFF
        if self._stretch > 0:
            self._stretch -= 1
            self.stats.stretched += 1
            return PlayoutFrame(kind="stretch", payload=None, timestamp=rtp_ts)
        ahead = (self._newest - self._next) // self.frame if self._newest >= self._next else -1
        if ahead * self.ptime_ms > self.target_ms + self.ptime_ms:
            self._over += 1
        else:
            self._over = 0
        if self._over >= self.window:
            self._buf.pop(self._next, None)
            self._next += self.frame
            self.stats.dropped_for_latency += 1
            self._over = 0
            rtp_ts = (self._base_ts + self._next) & 0xFFFFFFFF
        item = self._buf.pop(self._next, None)
        slot = self._next
        self._next += self.frame
        if item is not None:
            self._empty_pops = 0
            self.stats.played += 1
            return PlayoutFrame(
                kind="audio", payload=item[1], timestamp=rtp_ts, sequence_number=item[0]
            )
        if self._buf:
            self._empty_pops = 0
        else:
            self._empty_pops += 1
            if self._empty_pops > self.max_conceal:
                self._reset_state()
                return None
        self.stats.lost += 1
        return PlayoutFrame(
            kind="lost", payload=None, timestamp=(self._base_ts + slot) & 0xFFFFFFFF
        )

    @property
    def buffered_ms(self) -> float:
        """Audio held beyond the next frame to play."""
        if not self._buf:
            return 0.0
        return (self._newest - self._next + self.frame) * 1000.0 / self.clock_rate
