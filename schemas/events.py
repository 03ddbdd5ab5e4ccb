"""Facts runners publish: task lifecycle, external calls, heartbeats and resources."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.envelope import Envelope, WireModel
from schemas.failure import ErrorInfo
from schemas.vocabulary import CallOutcome, HealingStatus

__all__ = [
    "CallCompleted",
    "CallOutcome",
    "CompensationCompleted",
    "CompensationFailed",
    "GpuStatus",
    "HealingResult",
    "ModelStatus",
    "OperationRecorded",
    "ResourceAvailable",
    "ResourceNeed",
    "TaskAttemptFailed",
    "TaskEvent",
    "TaskFailed",
    "TaskStarted",
    "TaskSucceeded",
    "WorkerHeartbeat",
]


class TaskEvent(Envelope):
    """Fields every ``task.*`` event carries (and ``operation.recorded``)."""

    task_id: str
    template_id: str
    operation_type: str
    attempt: int = Field(ge=1)


class TaskStarted(TaskEvent):
    TYPE: ClassVar[str] = "task.started"
    type: Literal["task.started"] = "task.started"
    task_data: dict[str, Any] | None = None


class OperationRecorded(TaskEvent):
    TYPE: ClassVar[str] = "operation.recorded"
    type: Literal["operation.recorded"] = "operation.recorded"
    operation_id: str
    operation_kind: str
    data: dict[str, Any]


class TaskAttemptFailed(TaskEvent):
    TYPE: ClassVar[str] = "task.attempt_failed"
    type: Literal["task.attempt_failed"] = "task.attempt_failed"
    error: ErrorInfo
    will_retry: bool
    retry_delay_s: float | None = None


class TaskSucceeded(TaskEvent):
    TYPE: ClassVar[str] = "task.succeeded"
    type: Literal["task.succeeded"] = "task.succeeded"
    duration_ms: float = Field(ge=0)  # the whole task, every attempt and backoff included
    # Optional: the last (successful) attempt alone.
    attempt_duration_ms: float | None = Field(default=None, ge=0)


class ResourceNeed(WireModel):
    """What a resource-starved task waits for, e.g. ``{"kind": "gpu", "amount": 1}``."""

    kind: str
    amount: float = 1


class TaskFailed(TaskEvent):
    TYPE: ClassVar[str] = "task.failed"
    type: Literal["task.failed"] = "task.failed"
    error: ErrorInfo
    attempts: int = Field(ge=1)
    task_data: dict[str, Any] | None = None
    resource: ResourceNeed | None = None


class CompensationCompleted(Envelope):
    TYPE: ClassVar[str] = "compensation.completed"
    type: Literal["compensation.completed"] = "compensation.completed"
    task_id: str
    operation_id: str
    command_id: str
    error: ErrorInfo | None = None


class CompensationFailed(Envelope):
    TYPE: ClassVar[str] = "compensation.failed"
    type: Literal["compensation.failed"] = "compensation.failed"
    task_id: str
    operation_id: str
    command_id: str
    error: ErrorInfo | None = None
    reason: str | None = None  # optional: why, when there is no error (no compensator)


class CallCompleted(Envelope):
    TYPE: ClassVar[str] = "call.completed"
    type: Literal["call.completed"] = "call.completed"
    service: str
    outcome: CallOutcome
    duration_ms: float = Field(ge=0)
    task_id: str | None = None
    error: ErrorInfo | None = None
    # Optional (DESIGN.md lets producers add optional fields): the task attempt the call
    # belongs to; above 1 it is a retry, which the fleet retry budget counts.
    attempt: int | None = Field(default=None, ge=1)
    # Optional: on a ``fallback`` outcome, why the fallback was served — ``rejected`` (the
    # breaker refused the call; it never reached the service) or the failed call's
    # outcome (``failure``/``timeout``: the service failed, the task was spared).
    fallback_reason: str | None = None


class ModelStatus(WireModel):
    name: str
    checksum_ok: bool | None = None  # None: not checked (only load errors known)
    # Failed loads of this model since the runner started (``model_load_failed``).
    load_errors: int | None = Field(None, ge=0)


class GpuStatus(WireModel):
    """One GPU as a heartbeat reports it; probes may add more fields."""

    index: int = 0
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    utilization_percent: float | None = None
    available: bool = True


class WorkerHeartbeat(Envelope):
    TYPE: ClassVar[str] = "worker.heartbeat"
    type: Literal["worker.heartbeat"] = "worker.heartbeat"
    worker_id: str
    interval_s: float = Field(gt=0)
    cpu_percent: float
    memory_rss_bytes: int
    disk_free_bytes: int
    disk_total_bytes: int
    queue_depth: int
    in_flight: int
    models: list[ModelStatus] | None = None
    gpu: list[GpuStatus] | None = None
    # The last beat of a worker shutting down on purpose: its silence afterwards is
    # not a failure (self-healing restarts no worker that was stopped or scaled down).
    stopping: bool | None = None
    # Command records its command groups have not read yet (part of its backlog).
    command_lag: int | None = Field(None, ge=0)


class ResourceAvailable(Envelope):
    TYPE: ClassVar[str] = "resource.available"
    type: Literal["resource.available"] = "resource.available"
    worker_id: str
    resource_kind: str
    amount: float


class HealingResult(Envelope):
    TYPE: ClassVar[str] = "healing.result"
    type: Literal["healing.result"] = "healing.result"
    command_id: str
    worker_id: str
    action: str
    status: HealingStatus
    details: dict[str, Any] | None = None
