"""What the recovery manager keeps per task, and the records it sends (pure builders).

Every id derives from the causing event (``schemas.command_id``), so a worker that
reprocesses the same input after a crash builds the same records and runners drop the
repeat.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from schemas import (
    AlertFiring,
    CompensateOperation,
    Envelope,
    RetryTask,
    Source,
    TaskDeadLettered,
    command_id,
)
from streams.recovery.saga import Saga, SagaStep

__all__ = [
    "MAX_TASK_DATA",
    "TaskRecord",
    "bounded_task_data",
    "command_event",
    "compensation_event",
    "dead_letter_event",
    "retry_event",
    "saga_alert",
    "utc",
]

log = logging.getLogger("errorflow.worker.recovery")
C = TypeVar("C", bound=Envelope)
_NS = uuid.UUID("5b0c1d7e-2a43-4c1f-8e0b-9d6a3f7c2e15")
MAX_TASK_DATA = 512 * 1024  # bytes of JSON


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    template_id: str
    operation_type: str
    task_data: dict[str, Any] | None = None
    operations: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    last_ms: int = 0
    retried: bool = False
    # A timer: {"kind": "retry", due_ms, cause, attempt, reason} or
    # {"kind": "park", since_ms, due_ms (deadline), cause, resource_kind, amount} or
    # {"kind": "claim", since_ms, due_ms, cause, attempt, category}: a retry sent, not yet
    # taken by a runner (dead-lettered at due_ms).
    pending: dict[str, Any] | None = None
    saga: dict[str, Any] | None = None
    # The worker running the task (from its task.started) until the task ends there: if
    # that worker is lost, the task is retried elsewhere.
    running_on: str | None = None

    def entry(self) -> dict[str, Any]:
        """The state entry: a shallow dict (``asdict`` deep-copies task data and
        operations, a fifth of the worker's time; the stage encodes it at once)."""
        return {name: getattr(self, name) for name in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(f.name for f in fields(TaskRecord))


def bounded_task_data(task_data: dict[str, Any], task_id: str) -> dict[str, Any] | None:
    """The task data, unless it is too large to keep in the state (and to send back in a
    command): then None — a retry or replay runs without it — and a log line says so."""
    size = len(json.dumps(task_data, separators=(",", ":")))
    if size <= MAX_TASK_DATA:
        return task_data
    log.error("errorflow.worker.task_data_dropped task=%s bytes=%d", task_id, size)
    return None


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def command_event(
    model: type[C], cid: str, cause: str, now_ms: int, source: Source, **fields: Any
) -> C:
    """A command with id ``cid`` caused by ``cause``; its event id derives from ``cid``."""
    return model(
        event_id=str(uuid.uuid5(_NS, f"{cid}|event")),
        occurred_at=utc(now_ms),
        source=source,
        command_id=cid,
        causation_id=cause,
        **fields,
    )


def retry_event(
    record: TaskRecord,
    *,
    cause: str,
    qualifier: str,
    attempt: int,
    not_before_ms: int,
    reason: str,
    category: str,
    now_ms: int,
    source: Source,
) -> Envelope:
    return command_event(
        RetryTask,
        command_id(cause, qualifier),
        cause,
        now_ms,
        source,
        task_id=record.task_id,
        template_id=record.template_id,
        operation_type=record.operation_type,
        attempt=attempt,
        not_before=utc(not_before_ms),
        task_data=record.task_data,
        reason=reason,
        category=category,
    )


def dead_letter_event(
    record: TaskRecord, cause: str, reason: str, category: str, now_ms: int, source: Source
) -> TaskDeadLettered:
    """The full task record, enough to replay it."""
    return TaskDeadLettered(
        event_id=str(uuid.uuid5(_NS, f"{cause}|dead-letter")),
        occurred_at=utc(now_ms),
        source=source,
        task_id=record.task_id,
        template_id=record.template_id,
        operation_type=record.operation_type,
        attempts=max(1, record.attempts),
        errors=record.errors,
        task_data=record.task_data,
        reason=reason,
        category=category,
    )


def compensation_event(
    record: TaskRecord, step: SagaStep, cause: str, now_ms: int, source: Source
) -> Envelope:
    operation = step.operation
    return command_event(
        CompensateOperation,
        step.command_id,
        cause,
        now_ms,
        source,
        task_id=record.task_id,
        operation_id=operation["operation_id"],
        operation_kind=operation["operation_kind"],
        data=operation["data"],
        step=step.step,
        total_steps=step.total,
        template_id=record.template_id,
    )


def saga_alert(
    record: TaskRecord, saga: Saga, max_tries: int, now_ms: int, source: Source
) -> AlertFiring:
    """A saga that gave up: a person has to compensate the rest."""
    operation = saga.current or {}
    alert_id = hashlib.sha1(  # noqa: S324 - an id, not security
        f"compensation|{record.task_id}|{operation.get('operation_id')}".encode()
    ).hexdigest()[:16]
    return AlertFiring(
        event_id=str(uuid.uuid5(_NS, f"{saga.cause}|alert|{saga.index}")),
        occurred_at=utc(now_ms),
        source=source,
        alert_id=alert_id,
        name="compensation_failed",
        severity="high",
        labels={
            "task_id": record.task_id,
            "template_id": record.template_id,
            "operation_kind": str(operation.get("operation_kind")),
        },
        value=float(saga.tries),
        threshold=float(max_tries),
        summary=(
            f"compensating {operation.get('operation_kind')} of task {record.task_id} "
            f"failed {saga.tries} times ({saga.errors[-1] if saga.errors else 'no error'})"
            "; the saga stopped, compensate by hand"
        ),
    )
