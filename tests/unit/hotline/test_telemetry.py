"""HotlineMetrics as a Prometheus server sees it: render, parse the text, check what a dashboard
would read (families, types, labels, values, histogram buckets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from acd.stats import CallFigures
from hotline.telemetry import (
    WAIT_BUCKETS,
    EngineReadings,
    HotlineMetrics,
    QueueReading,
    agent_activity,
)


@dataclass
class Families:
    """Parsed scrape: family name -> (type, samples)."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def value(self, sample_name: str, **labels: str) -> float:
        for samples in self.samples.values():
            for s in samples:
                if s.name == sample_name and s.labels == labels:
                    return s.value
        raise KeyError(f"{sample_name} {labels} not in scrape")

    def labelsets(self, sample_name: str) -> list[dict[str, str]]:
        return [
            s.labels for samples in self.samples.values() for s in samples if s.name == sample_name
        ]


def scrape(m: HotlineMetrics) -> Families:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out = Families()
    for fam in text_string_to_metric_families(body.decode()):
        out.types[fam.name] = fam.type
        out.samples[fam.name] = list(fam.samples)
    return out


@dataclass
class FakeAcd:
    readings: list[QueueReading]

    def queue_readings(self) -> list[QueueReading]:
        return self.readings


def test_event_counters_by_label() -> None:
    m = HotlineMetrics(process=False)
    m.sip_request("INVITE")
    m.sip_request("invite")
    m.sip_request("REGISTER")
    m.call_ended("inbound", "completed")
    m.call_ended("inbound", "completed")
    m.call_ended("outbound", "busy")
    m.registration("challenged")
    m.registration("200")
    m.refused("overload")

    f = scrape(m)
    assert f.types["hotline_sip_requests"] == "counter"
    assert f.value("hotline_sip_requests_total", method="INVITE") == 2
    assert f.value("hotline_sip_requests_total", method="REGISTER") == 1
    assert f.value("hotline_calls_total", direction="inbound", outcome="completed") == 2
    assert f.value("hotline_calls_total", direction="outbound", outcome="busy") == 1
    assert f.value("hotline_registrations_total", outcome="challenged") == 1
    assert f.value("hotline_refused_total", reason="overload") == 1


def test_queue_events_counters_and_wait_buckets() -> None:
    m = HotlineMetrics(process=False)
    for _ in range(3):
        m.queue_offered("sales")
    m.queue_first_offer("sales", 0.4)
    m.queue_answered("sales", 4.0)
    m.queue_answered("sales", 25.0)
    m.queue_abandoned("sales", 90.0)
    m.queue_voicemail("support")
    m.offer_ended("sales", "no_answer", 20.0)
    m.offer_ended("sales", "answered", 3.5)

    f = scrape(m)
    assert f.value("hotline_queue_calls_offered_total", queue="sales") == 3
    assert f.value("hotline_queue_calls_answered_total", queue="sales") == 2
    assert f.value("hotline_queue_calls_abandoned_total", queue="sales") == 1
    assert f.value("hotline_queue_calls_voicemail_total", queue="support") == 1
    assert f.value("hotline_queue_rona_total", queue="sales") == 1  # only the no-answer

    assert f.types["hotline_queue_wait_seconds"] == "histogram"
    answered = {
        s.labels["le"]: s.value
        for s in f.samples["hotline_queue_wait_seconds"]
        if s.name.endswith("_bucket") and s.labels["outcome"] == "answered"
    }
    # The buckets a wait dashboard needs, and cumulative counts: 4 s <= 5, 25 s <= 30.
    assert list(answered) == [*(f"{float(b)}" for b in WAIT_BUCKETS), "+Inf"]
    assert answered["2.0"] == 0
    assert answered["5.0"] == 1
    assert answered["20.0"] == 1
    assert answered["30.0"] == 1 + 1
    assert answered["+Inf"] == 2
    assert f.value("hotline_queue_wait_seconds_sum", queue="sales", outcome="answered") == 29.0
    assert f.value("hotline_queue_wait_seconds_count", queue="sales", outcome="abandoned") == 1
    assert (
        f.value("hotline_queue_wait_seconds_bucket", queue="sales", outcome="abandoned", le="60.0")
        == 0
    )
    assert f.value("hotline_queue_routing_delay_seconds_bucket", queue="sales", le="1.0") == 1
    assert f.value("hotline_offer_ring_seconds_count", queue="sales", outcome="no_answer") == 1


def test_call_setup_histogram() -> None:
    m = HotlineMetrics(process=False)
    m.call_setup(0.03)
    m.call_setup(3.0)
    f = scrape(m)
    assert f.types["hotline_call_setup_seconds"] == "histogram"
    assert f.value("hotline_call_setup_seconds_bucket", le="0.05") == 1
    assert f.value("hotline_call_setup_seconds_bucket", le="5.0") == 2
    assert f.value("hotline_call_setup_seconds_count") == 2


def test_live_sources_read_at_scrape_time() -> None:
    calls = [2]
    stats = {"parse_errors": 1, "overload_rejections": 0}
    m = HotlineMetrics(process=False, calls_active=lambda: calls[0])
    m.watch(
        sip_transactions=lambda: 5,
        registered_contacts=lambda: 7,
        loop_lag=lambda: 0.012,
        sip_endpoint_stats=lambda: stats,
    )
    f = scrape(m)
    assert f.types["hotline_calls_active"] == "gauge"
    assert f.value("hotline_calls_active") == 2
    assert f.value("hotline_sip_transactions") == 5
    assert f.value("hotline_registered_contacts") == 7
    assert f.value("hotline_event_loop_lag_seconds") == pytest.approx(0.012)
    assert f.types["hotline_sip_endpoint_events"] == "counter"
    assert f.value("hotline_sip_endpoint_events_total", event="parse_errors") == 1

    # No copy: the next scrape sees the objects as they are now.
    calls[0] = 0
    stats["overload_rejections"] = 4
    f = scrape(m)
    assert f.value("hotline_calls_active") == 0
    assert f.value("hotline_sip_endpoint_events_total", event="overload_rejections") == 4


def test_unwatched_families_are_absent_not_zero() -> None:
    f = scrape(HotlineMetrics(process=False))
    assert "hotline_calls_active" not in f.types
    assert "hotline_queue_waiting_calls" not in f.types


def test_failing_source_costs_only_its_family() -> None:
    def broken() -> int:
        raise RuntimeError("endpoint gone")

    m = HotlineMetrics(process=False, calls_active=broken, registered_contacts=lambda: 1)
    m.sip_request("OPTIONS")
    f = scrape(m)
    assert "hotline_calls_active" not in f.types
    assert f.value("hotline_registered_contacts") == 1
    assert f.value("hotline_sip_requests_total", method="OPTIONS") == 1


def test_acd_queues_agents_and_service_level() -> None:
    acd = FakeAcd(
        [
            QueueReading(
                queue="sales",
                waiting=3,
                longest_wait_seconds=42.5,
                agents={"idle": 2, "on_call": 1},
                answered_within_target=8,
                finished=10,
            ),
            QueueReading(queue="empty", waiting=0, longest_wait_seconds=0.0),
        ]
    )
    m = HotlineMetrics(process=False, acd=acd)
    f = scrape(m)
    assert f.value("hotline_queue_waiting_calls", queue="sales") == 3
    assert f.value("hotline_queue_longest_wait_seconds", queue="sales") == 42.5
    assert f.value("hotline_queue_agents", queue="sales", state="idle") == 2
    assert f.value("hotline_queue_agents", queue="sales", state="on_call") == 1
    # Every state is exported, so a series does not vanish when its last agent leaves it.
    assert f.value("hotline_queue_agents", queue="sales", state="paused") == 0
    assert f.value("hotline_queue_service_level_ratio", queue="sales") == pytest.approx(0.8)
    assert f.value("hotline_queue_answered_within_target_total", queue="sales") == 8
    assert f.value("hotline_queue_finished_calls_total", queue="sales") == 10
    # No finished call yet: no service level (not a misleading 0 % or 100 %).
    assert {"queue": "empty"} not in f.labelsets("hotline_queue_service_level_ratio")
    assert f.value("hotline_queue_waiting_calls", queue="empty") == 0


def test_engine_readings_adapter_from_snapshot_and_stats() -> None:
    snapshot: dict[str, Any] = {
        "queues": {"sales": {"waiting": 2, "oldest_wait": 17.0}, "vip": {"waiting": 0}},
        "agents": {
            "alice": {"status": "available", "state": "idle"},
            "bob": {"status": "paused", "state": "on_call"},
            "carol": {"status": "paused", "state": "idle"},
            "dave": {"status": "logged_out", "state": "idle"},
        },
    }
    sales = CallFigures(offered=5, answered=3, answered_in_sl=2, abandoned=1)

    @dataclass
    class Stats:
        queues: dict[str, CallFigures]

    adapter = EngineReadings(
        lambda: snapshot,
        lambda: {"sales": ["alice", "bob", "carol", "dave"], "vip": ["alice"]},
        Stats({"sales": sales}),
    )
    f = scrape(HotlineMetrics(process=False, acd=adapter))
    assert f.value("hotline_queue_waiting_calls", queue="sales") == 2
    assert f.value("hotline_queue_longest_wait_seconds", queue="sales") == 17.0
    assert f.value("hotline_queue_agents", queue="sales", state="idle") == 1
    assert f.value("hotline_queue_agents", queue="sales", state="on_call") == 1
    assert f.value("hotline_queue_agents", queue="sales", state="paused") == 1
    assert f.value("hotline_queue_agents", queue="sales", state="logged_out") == 1
    assert f.value("hotline_queue_agents", queue="vip", state="idle") == 1
    # 2 answered within target out of 4 finished (3 answered + 1 abandoned).
    assert f.value("hotline_queue_service_level_ratio", queue="sales") == pytest.approx(0.5)
    assert {"queue": "vip"} not in f.labelsets("hotline_queue_service_level_ratio")


@pytest.mark.parametrize(
    ("status", "state", "expected"),
    [
        ("available", "idle", "idle"),
        ("paused", "idle", "paused"),
        ("paused", "wrap_up", "wrap_up"),
        ("logged_out", "idle", "logged_out"),
        ("available", "reserved", "reserved"),
    ],
)
def test_agent_activity(status: str, state: str, expected: str) -> None:
    assert agent_activity(status, state) == expected


def test_two_instances_do_not_share_state() -> None:
    a = HotlineMetrics(process=False, calls_active=lambda: 1)
    b = HotlineMetrics(process=False)
    a.sip_request("INVITE")
    a.queue_offered("sales")
    fb = scrape(b)
    assert {"method": "INVITE"} not in fb.labelsets("hotline_sip_requests_total")
    assert fb.labelsets("hotline_queue_calls_offered_total") == []
    assert "hotline_calls_active" not in fb.types
    assert scrape(a).value("hotline_sip_requests_total", method="INVITE") == 1


def test_process_and_platform_collectors_present() -> None:
    a, b = HotlineMetrics(), HotlineMetrics()  # both register process metrics: no collision
    f = scrape(a)
    assert f.types["process_cpu_seconds"] == "counter"
    assert f.value("process_resident_memory_bytes") > 0
    assert "python_info" in f.types
    assert "process_cpu_seconds" in scrape(b).types
