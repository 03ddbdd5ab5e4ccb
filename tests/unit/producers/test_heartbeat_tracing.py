"""Heartbeats carry what the runner reports; events carry the active trace."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import schemas as s
from producers.heartbeat import HeartbeatEmitter
from producers.testing import InMemoryPublisher, create_test_handler


def test_heartbeat_reports_process_and_probe_values() -> None:
    """A beat has real cpu/memory/disk numbers, the in-flight count and probe values."""
    handler = create_test_handler()
    handler.in_flight = 2
    emitter = HeartbeatEmitter(handler, interval_s=5)
    emitter.probes.queue_depth = lambda: 7
    emitter.probes.models = lambda: [s.ModelStatus(name="sdxl", checksum_ok=False)]
    emitter.beat()
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    (beat,) = publisher.of_type("worker.heartbeat")
    assert isinstance(beat, s.WorkerHeartbeat)
    assert (beat.queue_depth, beat.in_flight, beat.interval_s) == (7, 2, 5)
    assert beat.memory_rss_bytes > 1_000_000
    assert 0 < beat.disk_free_bytes <= beat.disk_total_bytes
    assert beat.models == [s.ModelStatus(name="sdxl", checksum_ok=False)]


async def test_failed_model_loads_ride_on_beats_and_the_last_beat_says_stopping() -> None:
    """Counts from model_load_failed join the probe's models (or add the model with its
    checksum unknown); stopping the emitter sends one last beat that says stopping, and
    a worker whose last beat says so is never diagnosed unresponsive."""
    from healing.detectors import Beat, DetectorConfig, unresponsive

    handler = create_test_handler()
    emitter = HeartbeatEmitter(handler, interval_s=5)
    emitter.probes.models = lambda: [s.ModelStatus(name="sdxl", checksum_ok=True)]
    for model in ("sdxl", "flux", "flux"):
        handler.model_load_failed(model)
    emitter.beat()
    await emitter.start()
    await emitter.stop()
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    first, *_, last = publisher.of_type("worker.heartbeat")
    assert isinstance(first, s.WorkerHeartbeat)
    assert isinstance(last, s.WorkerHeartbeat)
    assert first.models == [
        s.ModelStatus(name="sdxl", checksum_ok=True, load_errors=1),
        s.ModelStatus(name="flux", load_errors=2),
    ]
    assert (first.stopping, last.stopping) == (None, True)
    beat = Beat(0, 5.0, 1.0, 1, 1, 2, 0, 0, stopping=True)
    assert unresponsive("w", [beat], 3_600_000, DetectorConfig()) is None
    assert unresponsive("w", [Beat(0, 5.0, 1.0, 1, 1, 2, 0, 0)], 3_600_000, DetectorConfig())


async def test_events_carry_the_active_opentelemetry_span() -> None:
    """Inside an active span, task events carry its W3C trace and span ids."""
    handler = create_test_handler()
    context = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(1),
    )

    async def work(data: Any) -> int:
        return 1

    with trace.use_span(NonRecordingSpan(context)):
        await handler.wrap_task_execution("t", "sd", "img", None, work)
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    started = publisher.events[0]
    assert started.trace == s.Trace(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7"
    )


async def test_without_a_span_events_have_no_trace() -> None:
    """No active span, no trace ids (never invented ones)."""
    handler = create_test_handler()

    async def work(data: Any) -> int:
        return 1

    await handler.wrap_task_execution("t", "sd", "img", None, work)
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    assert publisher.events[0].trace is None


async def test_baggage_without_a_span_gives_no_trace() -> None:
    """A non-empty OpenTelemetry context (baggage only) still has no span: no trace ids."""
    from opentelemetry import baggage, context

    handler = create_test_handler()

    async def work(data: Any) -> int:
        return 1

    token = context.attach(baggage.set_baggage("tenant", "a"))
    try:
        await handler.wrap_task_execution("t", "sd", "img", None, work)
    finally:
        context.detach(token)
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    assert publisher.events[0].trace is None


async def test_analysis_says_clearly_when_no_pipeline_is_configured() -> None:
    """get_error_analysis without API or ClickHouse raises AnalysisUnavailable saying so."""
    from producers import AnalysisUnavailable

    handler = create_test_handler()
    with pytest.raises(AnalysisUnavailable, match="ERRORFLOW_API_URL"):
        await handler.get_error_analysis()


def test_stale_fleet_breaker_states_are_ignored(tmp_path: Path) -> None:
    """An OPEN from the compacted topic older than the max age does not stop calls; a
    fresh one does."""
    from producers.commands import CommandListener

    handler = create_test_handler(data_dir=tmp_path, cluster_state_max_age_s=60)
    listener = CommandListener(handler)

    def state(age_s: float) -> bytes:
        at = s.utc_now() - timedelta(seconds=age_s)
        return s.encode(
            s.BreakerStateChanged(
                service="comfyui",
                state="open",
                since=at,
                reason="fleet",
                failure_count=5,
                calls=5,
                occurred_at=at,
            )
        )

    listener._apply_breaker_state(state(3600))
    assert handler.circuit_breakers.get("comfyui").state == "closed"
    assert listener.counters["stale"] == 1
    listener._apply_breaker_state(state(1))
    assert handler.circuit_breakers.get("comfyui").state == "open"


def test_a_fleet_half_open_naming_gone_probers_lapses(tmp_path: Path) -> None:
    """A HALF_OPEN naming other probers rejects calls here while fresh; one older than
    twice the fleet's recovery timeout (its probers never answered, and no stream named
    new ones) lets this runner probe."""
    from producers.commands import CommandListener

    handler = create_test_handler(data_dir=tmp_path)
    listener = CommandListener(handler)

    def state(age_s: float) -> bytes:
        at = s.utc_now() - timedelta(seconds=age_s)
        event = s.BreakerStateChanged(
            service="comfyui",
            state="half_open",
            since=at,
            reason="recovery timeout elapsed",
            failure_count=5,
            calls=5,
            occurred_at=at,
        )
        payload = json.loads(s.encode(event))
        payload.update(probe_workers=["gone-host:1"], recovery_timeout_s=5.0)
        return json.dumps(payload).encode()

    breaker = handler.circuit_breakers.get("comfyui")
    listener._apply_breaker_state(state(1))
    assert breaker.state == "open"
    assert not breaker.allow()
    listener._apply_breaker_state(state(11))
    assert breaker.state == "half_open"
    assert breaker.allow()
