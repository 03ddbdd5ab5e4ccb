"""A compensation saga: recorded operations undone in reverse, one at a time (pure).

Each step is a ``compensation.requested`` command; the next is sent only after the
runner answers ``compensation.completed`` for the outstanding command. A
``compensation.failed`` retries the same step with backoff under a new command id (the
runner's ledger only holds compensations that succeeded), up to ``max_tries``; then the
saga stops and raises an alert. An answer for any other command id (a duplicate, a
stale retry) changes nothing, so no operation is compensated twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from schemas import command_id

__all__ = ["Saga", "SagaStep"]

Status = Literal["running", "waiting", "done", "failed"]


@dataclass(frozen=True, slots=True)
class SagaStep:
    """What to send: compensate ``operation`` as step ``step`` of ``total``."""

    command_id: str
    operation: dict[str, Any]
    step: int
    total: int


@dataclass(slots=True)
class Saga:
    cause: str  # the event that ended the task; every command id derives from it
    operations: list[dict[str, Any]]  # in the order they are undone
    index: int = 0
    tries: int = 0
    outstanding: str | None = None
    due_ms: int | None = None
    status: Status = "running"
    errors: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, cause: str, recorded: list[dict[str, Any]]) -> Saga:
        return cls(cause, list(reversed(recorded)))

    def next_step(self, now_ms: int) -> SagaStep | None:
        """The step to send now, if one is due and none is outstanding."""
        if self.status not in ("running", "waiting") or self.outstanding is not None:
            return None
        if self.due_ms is not None and now_ms < self.due_ms:
            return None
        if self.index >= len(self.operations):
            self.status = "done"
            return None
        operation = self.operations[self.index]
        self.outstanding = command_id(
            self.cause, "compensate", operation["operation_id"], str(self.tries)
        )
        self.status, self.due_ms = "running", None
        return SagaStep(self.outstanding, operation, self.index + 1, len(self.operations))

    def completed(self, answered: str) -> bool:
        """``compensation.completed`` for ``answered``; True if it advanced the saga."""
        if answered != self.outstanding:
            return False
        self.index, self.tries, self.outstanding = self.index + 1, 0, None
        if self.index >= len(self.operations):
            self.status = "done"
        return True

    def failed(
        self, answered: str, error: str, now_ms: int, *, max_tries: int, backoff_ms: int
    ) -> bool | None:
        """``compensation.failed``: None if not ours; True if the saga gave up (alert),
        False if the step is retried after ``backoff_ms * 2**tries``."""
        if answered != self.outstanding:
            return None
        self.outstanding = None
        self.tries += 1
        self.errors.append(error)
        if self.tries >= max_tries:
            self.status = "failed"
            return True
        self.status, self.due_ms = "waiting", now_ms + backoff_ms * 2 ** (self.tries - 1)
        return False

    @property
    def current(self) -> dict[str, Any] | None:
        return self.operations[self.index] if self.index < len(self.operations) else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Saga:
        return cls(**data)
