"""Commands the streams send back to runners.

A command's ``command_id`` is derived from its cause (see :func:`command_id`), so a
stream worker that reprocesses the same input after a crash emits the same id and
runners can drop the duplicate.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.timestamps import UtcDateTime
from schemas.vocabulary import Category

__all__ = [
    "Command",
    "CompensateOperation",
    "DeadLetterTask",
    "FailTaskFast",
    "QueueTask",
    "RetryTask",
    "SUPERVISOR",
    "RunHealingAction",
    "command_id",
]

#: ``params.via`` of a healing action addressed to the supervisor, not the worker.
SUPERVISOR = "supervisor"
_COMMAND_NAMESPACE = uuid.UUID("6f1c8a52-8f0e-4d55-9a3c-2b7e4e1d0c11")


def command_id(causation_id: str, *parts: str) -> str:
    """A deterministic UUID for the command caused by ``causation_id`` (plus any qualifiers)."""
    return str(uuid.uuid5(_COMMAND_NAMESPACE, "/".join((causation_id, *parts))))


class Command(Envelope):
    command_id: str
    causation_id: str
    expires_at: UtcDateTime | None = None


class RetryTask(Command):
    TYPE: ClassVar[str] = "recovery.retry"
    type: Literal["recovery.retry"] = "recovery.retry"
    task_id: str
    template_id: str
    operation_type: str
    attempt: int = Field(ge=1)
    not_before: UtcDateTime
    task_data: dict[str, Any] | None = None
    reason: str
    # Optional: the error category that led here, and — for a DLQ replay — who replayed
    # which dead letter in which run ({"run_id", "by", "dead_letter_event_id"}).
    category: Category | None = None
    replay: dict[str, Any] | None = None


class QueueTask(Command):
    TYPE: ClassVar[str] = "recovery.queued"
    type: Literal["recovery.queued"] = "recovery.queued"
    task_id: str
    reason: str
    resource_kind: str
    category: Category | None = None  # optional: the error category that led here
    template_id: str | None = None


class DeadLetterTask(Command):
    TYPE: ClassVar[str] = "recovery.dead_lettered"
    type: Literal["recovery.dead_lettered"] = "recovery.dead_lettered"
    task_id: str
    reason: str
    category: Category | None = None  # optional: the error category that led here
    template_id: str | None = None


class FailTaskFast(Command):
    TYPE: ClassVar[str] = "recovery.fail_fast"
    type: Literal["recovery.fail_fast"] = "recovery.fail_fast"
    task_id: str
    reason: str
    notification: str
    category: Category | None = None  # optional: the error category that led here
    template_id: str | None = None


class CompensateOperation(Command):
    TYPE: ClassVar[str] = "compensation.requested"
    type: Literal["compensation.requested"] = "compensation.requested"
    task_id: str
    operation_id: str
    operation_kind: str
    data: dict[str, Any]
    step: int = Field(ge=1)
    total_steps: int = Field(ge=1)


class RunHealingAction(Command):
    TYPE: ClassVar[str] = "healing.action"
    type: Literal["healing.action"] = "healing.action"
    worker_id: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str
    expires_at: UtcDateTime

    @property
    def for_supervisor(self) -> bool:
        """A restart of a worker that stopped heartbeating (``params.via ==
        "supervisor"``): it cannot restart itself, so a supervisor hook in another
        process does, and recovery retries the tasks it had in flight."""
        return (
            self.action == "restart_worker"
            and self.params.get("via") == SUPERVISOR
            and not self.params.get("dry_run")
        )
