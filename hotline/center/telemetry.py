"""Queue metrics and statistics from the engine's log, the one source of queue facts.

The engine's log records (``acd.model.LogRecord``) already say when a call joined, was
offered, answered, abandoned or sent to voicemail, with the waits measured on the engine's
clock. Counting from them (instead of from the shell's guesses) keeps the metrics, the
stored log and the statistics in agreement.
"""

from __future__ import annotations

from typing import Protocol

from acd.model import LogRecord
from acd.stats import StatsAccumulator


class QueueMetrics(Protocol):
    """The queue part of ``hotline.telemetry.HotlineMetrics``."""

    def queue_offered(self, queue: str) -> None: ...
    def queue_first_offer(self, queue: str, delay_seconds: float) -> None: ...
    def queue_answered(self, queue: str, waited_seconds: float) -> None: ...
    def queue_abandoned(self, queue: str, waited_seconds: float) -> None: ...
    def queue_voicemail(self, queue: str, waited_seconds: float | None = None) -> None: ...
    def offer_ended(self, queue: str, outcome: str, ring_seconds: float) -> None: ...


class QueueTelemetry:
    """Folds engine log records into :class:`StatsAccumulator` and, when given, metrics."""

    def __init__(self, metrics: QueueMetrics | None = None) -> None:
        self.metrics = metrics
        self.stats = StatsAccumulator()
        self._joined: dict[str, float] = {}
        """Calls queued and not offered yet: when they joined."""
        self._ringing: dict[tuple[str, str], float] = {}
        """(call, agent) offers in progress: when the ringing started."""

    def fold(self, record: LogRecord) -> None:
        self.stats.apply(record)
        m = self.metrics
        if m is None or record.queue is None or record.call_id is None:
            return
        queue, call = record.queue, record.call_id
        waited = float(record.data.get("waited", 0.0))
        match record.kind:
            case "call_queued" if record.data.get("kind", "call") == "call":
                m.queue_offered(queue)
                self._joined[call] = record.at
            case "call_offered" if record.agent_id is not None:
                joined = self._joined.pop(call, None)
                if joined is not None:
                    m.queue_first_offer(queue, record.at - joined)
                self._ringing[(call, record.agent_id)] = record.at
            case "offer_cancelled" if record.agent_id is not None:
                started = self._ringing.pop((call, record.agent_id), record.at)
                reason = str(record.data.get("reason", ""))
                outcome = "no_answer" if reason == "no_answer" else "cancelled"
                m.offer_ended(queue, outcome, record.at - started)
            case "call_answered" if record.agent_id is not None:
                started = self._ringing.pop((call, record.agent_id), record.at)
                m.offer_ended(queue, "answered", record.at - started)
                m.queue_answered(queue, waited)
            case "call_abandoned":
                self._joined.pop(call, None)
                m.queue_abandoned(queue, waited)
            case "call_voicemail":
                self._joined.pop(call, None)
                m.queue_voicemail(queue, waited)
            case "call_left" | "call_overflowed" | "call_ended":
                self._joined.pop(call, None)
