"""Receiver statistics for one RTP source (RFC 3550 Appendix A.1, A.3, A.8).

Pure: fed ``(seq, rtp timestamp, arrival time in seconds)``; builds RTCP report blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_gateway.rtp.rtcp import ReportBlock

MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
RTP_SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceptionSnapshot:
    """Figures for one source at one moment (RFC 3550 §6.4.1, A.3)."""

    received: int
    """Packets received (duplicates included, as the RFC counts them)."""
    expected: int
    """Extended highest seq - base seq + 1."""
    lost: int
    """Cumulative lost (expected - received; negative with duplicates)."""
    fraction_lost: int
    """Lost in the interval since the previous snapshot, in 1/256."""
    highest_seq: int
    """Extended highest sequence number."""
    jitter: float
    """Interarrival jitter in timestamp units."""
    jitter_ms: float
    """Same in milliseconds."""


class ReceiverStats:
    """RFC 3550 A.1 ``source`` state plus A.8 jitter for one SSRC.

    A new source is on probation until ``MIN_SEQUENTIAL`` packets arrive in sequence;
    ``update`` returns False for packets that are not (yet) valid.
    """

    def __init__(self, *, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self._started = False

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0
        self._transit = None
        self.jitter = 0.0

    def update(self, seq: int, rtp_ts: int, arrival: float) -> bool:
        """Account one packet; True when it counts as valid (RFC 3550 A.1 ``update_seq``)."""
        if not self._started:
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
            self._started = True
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self._count(seq, rtp_ts, arrival)
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # a very large jump: accept it only when the next packet follows it (restart)
            if seq == self.bad_seq:
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted below
        self._count(seq, rtp_ts, arrival)
        return True

    def _count(self, seq: int, rtp_ts: int, arrival: float) -> None:
        self.received += 1
        # RFC 3550 A.8: transit = arrival (in ts units) - rtp ts; J += (|D| - J) / 16
        transit = arrival * self.clock_rate - rtp_ts
        if self._transit is not None:
            d = transit - self._transit
            # timestamps are 32-bit; fold a wrap back
            if d > 2**31:
                d -= 2**32
            elif d < -(2**31):
                d += 2**32
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def snapshot(self) -> ReceptionSnapshot:
        """Figures now; advances the interval used by ``fraction_lost`` (RFC 3550 A.3)."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        return ReceptionSnapshot(
            received=self.received,
            expected=expected,
            lost=expected - self.received,
            fraction_lost=min(fraction, 255),
            highest_seq=self.extended_max,
            jitter=self.jitter,
            jitter_ms=self.jitter_ms,
        )

    def report_block(self, ssrc: int, *, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """A report block for ``ssrc`` from a fresh snapshot."""
        s = self.snapshot()
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=s.fraction_lost,
            cumulative_lost=s.lost,
            highest_seq=s.highest_seq,
            jitter=int(s.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )
