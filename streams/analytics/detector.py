"""Windowed error analytics and anomaly detection over task and call events (pure).

Feed decoded events to :meth:`ErrorAnalytics.observe`; call :meth:`ErrorAnalytics.tick`
with the current time to close due windows, score them and get anomalies and alert
changes. No Faust, no I/O: the agent decodes, calls these and emits.

Keys are ``dimension=value`` strings: ``service=comfyui``, ``template_id=video-gen``,
``category=resource``, ``fingerprint=3f2a…``. Windows are by event time
(``occurred_at``) with a grace period; the watermark also advances with the clock, so
windows close even when traffic stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from schemas import Envelope, SetAlertThresholds
from streams.analytics.alerting import AlertBook, AlertChange
from streams.analytics.stats import Baseline
from streams.analytics.windows import Window, WindowCounts, WindowSpec, WindowStore
from streams.facts import contributions, epoch_ms

__all__ = [
    "AnalyticsConfig",
    "Anomaly",
    "ErrorAnalytics",
    "Thresholds",
    "WindowResult",
]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The seed's alert thresholds (changed at run time by ``alerts.thresholds``)."""

    error_rate: float = 0.15
    specific_error_count: int = 20
    recovery_failure_rate: float = 0.25


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    tumbling: WindowSpec = field(default_factory=lambda: WindowSpec.tumbling(60_000, 10_000))
    hopping: WindowSpec = field(default_factory=lambda: WindowSpec(300_000, 60_000, 10_000))
    baseline_windows: int = 30
    min_history: int = 10  # cold start: fewer closed windows than this never fire
    spike_score: float = 3.5
    robust: bool = True  # modified z (median/MAD); False: classic z
    min_spike_errors: int = 5
    min_rate_attempts: int = 20
    critical_threshold: int = 5
    min_recovery_attempts: int = 5
    hold_down_ms: int = 120_000


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    key: dict[str, str]
    value: float
    baseline: float
    spread: float
    score: float
    window: Window


@dataclass(slots=True)
class WindowResult:
    """A closed window of one key, for rates, distributions and dashboards."""

    spec: str
    key: str
    window: Window
    counts: WindowCounts


_ADVICE = {
    "resource": "resource errors dominate on {key}: add GPU capacity or lower concurrency",
    "transient": "mostly transient errors on {key}: check the service's health",
    "validation": "mostly validation errors on {key}: check what clients send",
    "permanent": "mostly permanent errors on {key}: check permissions and model files",
}


def recommend_for_rate(key: str, counts: WindowCounts, breaker_open: bool) -> str:
    """What to do about a high error rate, from the window's own numbers."""
    if breaker_open:
        return f"the breaker for {key} is open already: check the service, then reset it"
    if not counts.by_category:
        return f"failures on {key} without a classified error: check the service"
    category = max(counts.by_category, key=lambda c: counts.by_category[c])
    return _ADVICE.get(category, "check {key}").format(key=key)


def _split(key: str) -> dict[str, str]:
    dimension, _, value = key.partition("=")
    return {dimension: value}


@dataclass(slots=True)
class ErrorAnalytics:
    config: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    open_breakers: set[str] = field(default_factory=set)
    tumbling: WindowStore = field(init=False)
    hopping: WindowStore = field(init=False)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    anomalous: set[tuple[str, str]] = field(default_factory=set)
    alerts: AlertBook = field(init=False)
    observed: int = 0
    source_marks: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tumbling = WindowStore(self.config.tumbling)
        self.hopping = WindowStore(self.config.hopping)
        self.alerts = AlertBook(self.config.hold_down_ms)

    # -- input ---------------------------------------------------------------------------

    def set_thresholds(self, event: SetAlertThresholds) -> None:
        self.thresholds = Thresholds(
            event.error_rate, event.specific_error_count, event.recovery_failure_rate
        )

    def set_breaker(self, service: str, state: str) -> None:
        if state == "open":
            self.open_breakers.add(service)
        else:
            self.open_breakers.discard(service)

    def observe(self, event: Envelope) -> None:
        """Count one task or call event into every window of every key it belongs to."""
        parts = contributions(event)
        if not parts:
            return
        self.observed += 1
        ts = epoch_ms(event.occurred_at)
        for key, counts in parts:
            self.observe_counts(key, ts, counts)
        self.advance(ts)

    def observe_counts(self, key: str, ts_ms: int, counts: WindowCounts) -> bool:
        """Count pre-aggregated ``counts`` of ``key`` at event time ``ts_ms``; False when
        they came too late for the tumbling window (it closed already)."""
        self.hopping.add(key, ts_ms, counts)
        return self.tumbling.add(key, ts_ms, counts)

    def advance(self, ts_ms: int) -> None:
        self.tumbling.advance(ts_ms)
        self.hopping.advance(ts_ms)

    # -- output --------------------------------------------------------------------------

    def mark_source(
        self,
        source: str,
        ts_ms: int,
        *,
        idle_since_ms: int | None = None,
        said_ms: int | None = None,
    ) -> None:
        """An input (e.g. ``errorflow.call-events:3``) has been read up to event time
        ``ts_ms``; with ``idle_since_ms``, its reader has been at its end with nothing
        new since then, as it said at ``said_ms``. The watermark is the lowest mark of
        the inputs that are not idle."""
        previous = self.source_marks.get(source)
        ts = max(ts_ms, previous[0] if previous else ts_ms)
        idle = -1 if idle_since_ms is None else idle_since_ms
        said = idle if said_ms is None else said_ms
        self.source_marks[source] = [ts, idle, said]

    def tick(
        self, now_ms: int, *, idle_ms: int | None = None, fresh_ms: int | None = None
    ) -> tuple[list[WindowResult], list[Anomaly], list[AlertChange]]:
        """Close due windows, detect, update alerts.

        With source marks, windows close at the lowest mark of the inputs that are not
        idle. An input is idle when its reader has said, within the last ``fresh_ms``,
        that it has been at the partition's end for ``idle_ms`` with nothing new.
        Silence is not idleness: while records are stuck upstream (a broker outage, a
        stalled ingest) no fresh word says idle, so no window closes early and nothing
        arriving afterwards is dropped as late. When every input is idle (or there are
        none), the clock closes windows (``now - grace``).
        """
        results: list[WindowResult] = []
        anomalies: list[Anomaly] = []
        changes: list[AlertChange] = []
        live = [
            ts
            for ts, idle_since, said in self.source_marks.values()
            if idle_since < 0
            or idle_ms is None
            or now_ms - idle_since < idle_ms
            or (fresh_ms is not None and now_ms - said > fresh_ms)
        ]
        if live:
            self.advance(min(live))
        else:
            for store in (self.tumbling, self.hopping):
                store.advance(now_ms - store.spec.grace_ms)
        for key, window, counts in self.tumbling.close():
            results.append(WindowResult(self.config.tumbling.name, key, window, counts))
            anomalies += self._detect(key, window, counts)
            changes += self._evaluate_alerts(key, counts, window.end_ms)
        for key, window, counts in self.hopping.close():
            results.append(WindowResult(self.config.hopping.name, key, window, counts))
        # Hold-down in event time, like the violations it is compared with (mixing in
        # the wall clock resolved alerts while windows were still on their way).
        changes += self.alerts.expire(self.tumbling.watermark_ms - self.config.tumbling.grace_ms)
        return results, anomalies, changes

    def _detect(self, key: str, window: Window, counts: WindowCounts) -> list[Anomaly]:
        """Anomalies of one closed window; each kind fires once per episode (until the key
        is back to normal), so a burst spanning windows is one anomaly, not several."""
        found = self._score(key, window, counts)
        kinds = {a.kind for a in found}
        for kind in {k for k_, k in self.anomalous if k_ == key} - kinds:
            self.anomalous.discard((key, kind))
        fresh = [a for a in found if (key, a.kind) not in self.anomalous]
        self.anomalous.update((key, a.kind) for a in fresh)
        return fresh

    def _score(self, key: str, window: Window, counts: WindowCounts) -> list[Anomaly]:
        cfg, out = self.config, []
        baseline = self.baselines.setdefault(key, Baseline(cfg.baseline_windows))
        labels = _split(key)
        if len(baseline) >= cfg.min_history and counts.errors >= cfg.min_spike_errors:
            score = baseline.score(counts.errors, robust=cfg.robust)
            if score.score >= cfg.spike_score:
                out.append(
                    Anomaly(
                        "error_spike",
                        labels,
                        counts.errors,
                        score.centre,
                        score.spread,
                        score.score,
                        window,
                    )
                )
        baseline.push(counts.errors)
        dimension = next(iter(labels))
        rate_key = dimension in ("service", "template_id")
        if (
            rate_key
            and counts.attempts >= cfg.min_rate_attempts
            and (counts.error_rate > self.thresholds.error_rate)
        ):
            out.append(
                Anomaly(
                    "high_error_rate",
                    labels,
                    counts.error_rate,
                    self.thresholds.error_rate,
                    0.0,
                    counts.error_rate / max(self.thresholds.error_rate, 1e-9),
                    window,
                )
            )
        if dimension == "fingerprint" and counts.errors > self.thresholds.specific_error_count:
            out.append(
                Anomaly(
                    "frequent_error",
                    labels,
                    counts.errors,
                    self.thresholds.specific_error_count,
                    0.0,
                    counts.errors / self.thresholds.specific_error_count,
                    window,
                )
            )
        if rate_key and counts.critical >= cfg.critical_threshold:
            out.append(
                Anomaly(
                    "critical_errors",
                    labels,
                    counts.critical,
                    cfg.critical_threshold,
                    0.0,
                    counts.critical / cfg.critical_threshold,
                    window,
                )
            )
        if rate_key and counts.recovery_attempts >= cfg.min_recovery_attempts:
            rate = counts.recovery_failures / counts.recovery_attempts
            if rate > self.thresholds.recovery_failure_rate:
                out.append(
                    Anomaly(
                        "recovery_failures",
                        labels,
                        rate,
                        self.thresholds.recovery_failure_rate,
                        0.0,
                        rate / max(self.thresholds.recovery_failure_rate, 1e-9),
                        window,
                    )
                )
        return out

    def _evaluate_alerts(self, key: str, counts: WindowCounts, now_ms: int) -> list[AlertChange]:
        cfg, th = self.config, self.thresholds
        labels = _split(key)
        dimension, value = next(iter(labels.items()))
        changes: list[AlertChange | None] = []
        if dimension in ("service", "template_id"):
            enough = counts.attempts >= cfg.min_rate_attempts
            alert_labels = dict(labels)
            if dimension == "service" and value in self.open_breakers:
                alert_labels["inhibited_by"] = f"breaker:{value}"
            change = self.alerts.observe(
                "high_error_rate",
                labels,
                violating=enough and counts.error_rate > th.error_rate,
                value=counts.error_rate,
                threshold=th.error_rate,
                now_ms=now_ms,
                recommendation=recommend_for_rate(key, counts, "inhibited_by" in alert_labels),
            )
            if change is not None and "inhibited_by" in alert_labels:
                change = replace(change, labels=alert_labels)
            changes.append(change)
            if counts.recovery_attempts >= cfg.min_recovery_attempts:
                rate = counts.recovery_failures / counts.recovery_attempts
                changes.append(
                    self.alerts.observe(
                        "recovery_failures",
                        labels,
                        violating=rate > th.recovery_failure_rate,
                        value=rate,
                        threshold=th.recovery_failure_rate,
                        now_ms=now_ms,
                        recommendation=(
                            f"retries on {key} fail {rate:.0%} of the time: lower "
                            "max_attempts for it or fix the cause; retrying costs "
                            "capacity without rescuing tasks"
                        ),
                    )
                )
        elif dimension == "fingerprint":
            changes.append(
                self.alerts.observe(
                    "frequent_error",
                    labels,
                    violating=counts.errors > th.specific_error_count,
                    value=counts.errors,
                    threshold=th.specific_error_count,
                    now_ms=now_ms,
                    recommendation=(
                        f"fingerprint {value} occurred {counts.errors} times in one "
                        "window: look at its task history; if retries never rescue "
                        "it, classify it as permanent"
                    ),
                )
            )
        return [c for c in changes if c is not None]

    # -- persistence ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, as plain JSON-able data."""

        def store(s: WindowStore) -> dict[str, Any]:
            return {
                "watermark": s.watermark_ms,
                "late_dropped": s.late_dropped,
                "open": [[k, start, c.to_dict()] for (k, start), c in s.open.items()],
            }

        return {
            "tumbling": store(self.tumbling),
            "hopping": store(self.hopping),
            "baselines": {k: list(b.values) for k, b in self.baselines.items()},
            "anomalous": sorted(list(pair) for pair in self.anomalous),
            "alerts": {
                k: [a.name, a.labels, a.last_violation_ms, a.value, a.threshold]
                for k, a in self.alerts.firing.items()
            },
            "thresholds": [
                self.thresholds.error_rate,
                self.thresholds.specific_error_count,
                self.thresholds.recovery_failure_rate,
            ],
            "open_breakers": sorted(self.open_breakers),
            "observed": self.observed,
            "source_marks": {k: m[0] for k, m in self.source_marks.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        from streams.analytics.alerting import _Alert

        for name, s in (("tumbling", self.tumbling), ("hopping", self.hopping)):
            saved = data.get(name, {})
            s.watermark_ms = int(saved.get("watermark", 0))
            s.late_dropped = int(saved.get("late_dropped", 0))
            s.open = {
                (k, int(start)): WindowCounts.from_dict(c) for k, start, c in saved.get("open", [])
            }
        self.baselines = {}
        for key, values in data.get("baselines", {}).items():
            baseline = Baseline(self.config.baseline_windows)
            for value in values:
                baseline.push(float(value))
            self.baselines[key] = baseline
        self.anomalous = {(k, kind) for k, kind in data.get("anomalous", [])}
        self.alerts.firing = {
            k: _Alert(n, dict(lb), int(t), float(v), float(th))
            for k, (n, lb, t, v, th) in data.get("alerts", {}).items()
        }
        if "thresholds" in data:
            self.thresholds = Thresholds(*data["thresholds"])
        self.open_breakers = set(data.get("open_breakers", []))
        self.observed = int(data.get("observed", 0))
        # Restored inputs are live until their reader says otherwise.
        self.source_marks = {k: [int(ts), -1, -1] for k, ts in data.get("source_marks", {}).items()}
