"""Detection and alerting over synthetic traffic, with time moved by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import schemas as s
from streams.analytics.alerting import AlertBook
from streams.analytics.detector import AnalyticsConfig, ErrorAnalytics
from streams.analytics.windows import WindowCounts, WindowSpec

T0 = 1_790_000_000_000  # ms, on a minute boundary
ERROR = s.ErrorInfo(
    category="transient",
    error_type="builtins.ConnectionResetError",
    message="reset",
    fingerprint="fp1",
    severity="medium",
    retryable=True,
    rule="builtin:network",
    service="comfyui",
)


def _config() -> AnalyticsConfig:
    return AnalyticsConfig(
        tumbling=WindowSpec.tumbling(1_000, 0),
        hopping=WindowSpec(5_000, 1_000, 0),
        min_history=5,
        min_rate_attempts=10,
        hold_down_ms=3_000,
    )


def _call(ms: int, ok: bool) -> s.CallCompleted:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return s.CallCompleted(
        service="comfyui",
        outcome="success" if ok else "failure",
        duration_ms=1,
        occurred_at=at,
        error=None if ok else ERROR,
    )


def _second(analytics: ErrorAnalytics, second: int, errors: int, total: int = 20) -> None:
    for i in range(total):
        analytics.observe(_call(T0 + second * 1000 + i * 10, ok=i >= errors))


def _run(analytics: ErrorAnalytics, plan: list[int]) -> tuple[list, list]:
    anomalies, changes = [], []
    for second, errors in enumerate(plan):
        _second(analytics, second, errors)
        _, found, alerts = analytics.tick(T0 + (second + 1) * 1000)
        anomalies += found
        changes += alerts
    return anomalies, changes


def test_burst_after_calm_gives_one_spike_one_firing_then_resolved() -> None:
    """Ten calm seconds, a three-second burst, then calm: one error_spike for the
    service, one alert.firing, and alert.resolved after the hold-down."""
    analytics = ErrorAnalytics(_config())
    plan = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 15, 16, 15] + [0] * 6
    anomalies, changes = _run(analytics, plan)
    spikes = [a for a in anomalies if a.kind == "error_spike" and a.key == {"service": "comfyui"}]
    assert len(spikes) == 1
    assert spikes[0].value == 15
    assert spikes[0].score >= 3.5
    assert [(c.state, c.name) for c in changes] == [
        ("firing", "high_error_rate"),
        ("resolved", "high_error_rate"),
    ]
    assert changes[1].at_ms - changes[0].at_ms >= 3_000
    assert changes[0].recommendation == (
        "mostly transient errors on service=comfyui: check the service's health"
    )


def test_cold_start_never_fires_a_spike() -> None:
    """With fewer closed windows than min_history, a burst is not an error_spike."""
    analytics = ErrorAnalytics(_config())
    anomalies, _ = _run(analytics, [0, 1, 15])
    assert not [a for a in anomalies if a.kind == "error_spike"]


def test_threshold_change_takes_effect_without_restart() -> None:
    """10% errors is fine at the default 15% threshold, alerts after lowering it to 5%."""
    analytics = ErrorAnalytics(_config())
    _, changes = _run(analytics, [2, 2])
    assert changes == []
    analytics.set_thresholds(s.SetAlertThresholds(error_rate=0.05))
    _second(analytics, 2, 2)
    _, _, changes = analytics.tick(T0 + 3_000)
    assert [(c.state, c.labels) for c in changes] == [("firing", {"service": "comfyui"})]


def test_open_breaker_is_carried_as_inhibited_by() -> None:
    """An error-rate alert for a service whose breaker is open says so."""
    analytics = ErrorAnalytics(_config())
    analytics.set_breaker("comfyui", "open")
    _, changes = _run(analytics, [10])
    assert changes[0].labels == {"service": "comfyui", "inhibited_by": "breaker:comfyui"}
    assert "breaker for service=comfyui is open" in changes[0].recommendation
    from streams.analytics.records import alert_event

    event = alert_event(changes[0], s.Source.here(runner_id="t"))
    assert event.severity == "low"
    assert s.decode(s.encode(event)).recommendation == changes[0].recommendation  # type: ignore[attr-defined]


def test_alert_hysteresis_does_not_flap() -> None:
    """Violations interleaved with short quiet spells keep one alert firing."""
    book = AlertBook(hold_down_ms=1_000)
    states = []
    for t, violating in enumerate([1, 0, 1, 0, 1, 0, 0, 0]):
        change = book.observe(
            "x", {"service": "a"}, violating=bool(violating), value=1, threshold=0.5, now_ms=t * 400
        )
        states.append(change.state if change else None)
    assert states == ["firing", None, None, None, None, None, None, "resolved"]


def test_snapshot_restores_windows_baselines_and_alerts() -> None:
    """A restored engine continues exactly where the snapshot was taken."""
    first = ErrorAnalytics(_config())
    _run(first, [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 15])
    _second(first, 11, 3)
    second = ErrorAnalytics(_config())
    second.restore(first.snapshot())
    assert second.snapshot() == first.snapshot()
    assert second.tick(T0 + 12_000)[0] == first.tick(T0 + 12_000)[0]


def test_watermark_is_the_slowest_live_input() -> None:
    """With two inputs, windows close at the lower mark; an idle input stops holding
    them back; a restored engine treats its inputs as live again."""
    analytics = ErrorAnalytics(_config())
    analytics.observe_counts("service=a", T0 + 500, analytics_counts())
    analytics.mark_source("call-events:0", T0 + 5_000)
    analytics.mark_source("call-events:1", T0 + 800)
    windows, _, _ = analytics.tick(T0 + 60_000, idle_ms=10_000)
    # Input 1 has only reached 0.8 s, and a minute of silence is not idleness (its
    # records may be stuck upstream): window [0 s, 1 s) stays open.
    assert windows == []
    analytics.mark_source("call-events:1", T0 + 2_500)
    windows, _, _ = analytics.tick(T0 + 61_000, idle_ms=10_000)
    assert [(w.key, w.window.start_ms - T0) for w in windows if w.spec.startswith("tumbling")] == [
        ("service=a", 0)
    ]
    restored = ErrorAnalytics(_config())
    restored.restore(analytics.snapshot())
    assert restored.snapshot() == analytics.snapshot()


def analytics_counts() -> WindowCounts:
    return WindowCounts(attempts=3, errors=1)


def test_only_an_input_its_reader_calls_idle_stops_holding_windows() -> None:
    """An input whose reader says it sits at its end stops holding the watermark after
    ``idle_ms``; every input idle, the clock closes windows."""
    analytics = ErrorAnalytics(_config())
    analytics.observe_counts("service=a", T0 + 500, analytics_counts())
    analytics.mark_source("call-events:0", T0 + 800)
    assert analytics.tick(T0 + 60_000, idle_ms=10_000)[0] == []
    analytics.mark_source("call-events:0", T0 + 800, idle_since_ms=T0 + 55_000)
    assert analytics.tick(T0 + 60_000, idle_ms=10_000)[0] == []  # idle 5 s only
    closed = analytics.tick(T0 + 66_000, idle_ms=10_000)[0]
    assert [(w.key, w.window.start_ms - T0) for w in closed if w.spec.startswith("tumbling")] == [
        ("service=a", 0)
    ]
    assert closed[0].counts.attempts == 3


def test_an_idle_word_goes_stale_when_its_reader_falls_silent() -> None:
    """An input called idle counts as idle only while its reader keeps saying so: when
    the words stop (a broker outage — records appended just before it are still unread),
    the input holds the watermark again and no window closes by the clock. Before, one
    idle word held for good, and 12 partials of a broker-restart run arrived late."""
    analytics = ErrorAnalytics(_config())
    analytics.observe_counts("service=a", T0 + 500, analytics_counts())
    analytics.mark_source("task-events:0", T0 + 800, idle_since_ms=T0 + 50_000, said_ms=T0 + 50_000)
    # Still saying idle, fresh: idle for 10 s at 60 s (nothing closes yet at 59.9 s).
    analytics.mark_source("task-events:0", T0 + 800, idle_since_ms=T0 + 50_000, said_ms=T0 + 59_000)
    assert analytics.tick(T0 + 59_900, idle_ms=10_000, fresh_ms=1_500)[0] == []
    # The reader falls silent at 59 s: at 61 s its idleness is 2 s old, so not believed.
    assert analytics.tick(T0 + 61_000, idle_ms=10_000, fresh_ms=1_500)[0] == []
    assert analytics.tick(T0 + 90_000, idle_ms=10_000, fresh_ms=1_500)[0] == []
    # It speaks again: still idle, said just now, so the clock closes the window.
    analytics.mark_source("task-events:0", T0 + 800, idle_since_ms=T0 + 50_000, said_ms=T0 + 90_500)
    closed = analytics.tick(T0 + 91_000, idle_ms=10_000, fresh_ms=1_500)[0]
    assert [(w.key, w.window.start_ms - T0) for w in closed if w.spec.startswith("tumbling")] == [
        ("service=a", 0)
    ]
