"""What the stream analytics publish: anomalies, alerts, dead letters and poison."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.failure import ErrorInfo, Severity
from schemas.timestamps import UtcDateTime

__all__ = [
    "AlertFiring",
    "AlertResolved",
    "AnomalyDetected",
    "AnomalyKind",
    "PoisonRecorded",
    "TaskDeadLettered",
]

AnomalyKind = Literal[
    "high_error_rate", "frequent_error", "error_spike", "critical_errors", "recovery_failures"
]


class AnomalyDetected(Envelope):
    TYPE: ClassVar[str] = "anomaly.detected"
    type: Literal["anomaly.detected"] = "anomaly.detected"
    kind: AnomalyKind
    key: dict[str, str]
    value: float
    baseline: float
    spread: float
    score: float
    window_start: UtcDateTime
    window_end: UtcDateTime


class _Alert(Envelope):
    alert_id: str
    name: str
    severity: Severity
    labels: dict[str, str] = Field(default_factory=dict)
    value: float
    threshold: float
    summary: str
    recommendation: str | None = None  # optional: what to do about it


class AlertFiring(_Alert):
    TYPE: ClassVar[str] = "alert.firing"
    type: Literal["alert.firing"] = "alert.firing"


class AlertResolved(_Alert):
    TYPE: ClassVar[str] = "alert.resolved"
    type: Literal["alert.resolved"] = "alert.resolved"


class TaskDeadLettered(Envelope):
    """The full task record, enough to replay it."""

    TYPE: ClassVar[str] = "task.dead_lettered"
    type: Literal["task.dead_lettered"] = "task.dead_lettered"
    task_id: str
    template_id: str
    operation_type: str
    attempts: int = Field(ge=1)
    errors: list[ErrorInfo]
    task_data: dict[str, Any] | None = None


class PoisonRecorded(Envelope):
    TYPE: ClassVar[str] = "poison.record"
    type: Literal["poison.record"] = "poison.record"
    source_topic: str
    partition: int
    offset: int
    reason: str
    raw_base64: str
