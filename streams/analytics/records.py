"""Anomalies, alerts and closed windows as records, with ids derived from their cause.

Reprocessing after a crash produces the same ids, so consumers drop duplicates.
"""

from __future__ import annotations

import json
import uuid

from schemas import AlertFiring, AlertResolved, AnomalyDetected, Envelope, Source
from streams.analytics.alerting import AlertChange
from streams.analytics.detector import Anomaly, WindowResult
from streams.ids import NAMESPACE, utc

__all__ = ["alert_event", "anomaly_event", "window_row"]


def anomaly_event(anomaly: Anomaly, source: Source) -> AnomalyDetected:
    key = ",".join(f"{k}={v}" for k, v in sorted(anomaly.key.items()))
    return AnomalyDetected(
        event_id=str(
            uuid.uuid5(NAMESPACE, f"anomaly|{anomaly.kind}|{key}|{anomaly.window.start_ms}")
        ),
        occurred_at=utc(anomaly.window.end_ms),
        source=source,
        kind=anomaly.kind,
        key=anomaly.key,
        value=anomaly.value,
        baseline=anomaly.baseline,
        spread=anomaly.spread,
        score=min(anomaly.score, 1e9),
        window_start=utc(anomaly.window.start_ms),
        window_end=utc(anomaly.window.end_ms),
    )


_SEVERITY = {"high_error_rate": "high", "frequent_error": "medium", "recovery_failures": "high"}


def alert_event(change: AlertChange, source: Source) -> Envelope:
    model = AlertFiring if change.state == "firing" else AlertResolved
    where = ", ".join(f"{k} {v}" for k, v in change.labels.items() if k != "inhibited_by")
    if change.state == "firing":
        summary = f"{change.name} on {where}: {change.value:.3g} > {change.threshold:.3g}"
    else:
        summary = f"{change.name} on {where} resolved"
    if "inhibited_by" in change.labels:
        summary += f" (inhibited by {change.labels['inhibited_by']}: the breaker already paged)"
    severity = "low" if "inhibited_by" in change.labels else _SEVERITY.get(change.name, "medium")
    return model(
        event_id=str(
            uuid.uuid5(NAMESPACE, f"alert|{change.alert_id}|{change.state}|{change.at_ms}")
        ),
        occurred_at=utc(change.at_ms),
        source=source,
        alert_id=change.alert_id,
        name=change.name,
        severity=severity,
        labels=change.labels,
        value=change.value,
        threshold=change.threshold,
        summary=summary,
        # An optional field (readers keep unknown fields): what to do about it.
        **({"recommendation": change.recommendation} if change.recommendation else {}),
    )


def window_row(result: WindowResult) -> tuple[bytes, bytes]:
    """(key, value) of a closed window for the worker's windows topic."""
    counts = result.counts
    value = {
        "spec": result.spec,
        "key": result.key,
        "window_start_ms": result.window.start_ms,
        "window_end_ms": result.window.end_ms,
        **counts.to_dict(),
        "error_rate": counts.error_rate,
    }
    key = f"{result.spec}|{result.key}|{result.window.start_ms}"
    return key.encode(), json.dumps(value, separators=(",", ":")).encode()
