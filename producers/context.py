"""``ErrorHandlingContext``: a task as an ``async with`` block (no retries: a block
cannot be re-run), with operations recorded for compensation."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from producers.handler import ErrorHandler
from producers.reporting import CANCELLED, annotate, error_info, resource_need
from producers.scope import TaskScope, current_scope
from schemas import TaskFailed, TaskStarted, TaskSucceeded

__all__ = ["ErrorHandlingContext"]


class ErrorHandlingContext:
    """Publishes ``task.started`` on entry, ``task.succeeded`` or ``task.failed`` on exit;
    the exception, if any, propagates annotated with its classification."""

    def __init__(
        self,
        handler: ErrorHandler,
        task_id: str,
        template_id: str,
        operation_type: str,
        task_data: dict[str, Any] | None = None,
        *,
        attempt: int = 1,
        service: str | None = None,
    ) -> None:
        self.handler = handler
        self.scope = TaskScope(task_id, template_id, operation_type, attempt)
        self.task_data = task_data
        self.service = service
        self._token: Any = None
        self._started = 0.0

    def _base(self) -> dict[str, Any]:
        s = self.scope
        return {
            "task_id": s.task_id,
            "template_id": s.template_id,
            "operation_type": s.operation_type,
            "attempt": s.attempt,
        }

    async def __aenter__(self) -> ErrorHandlingContext:
        self._token = current_scope.set(self.scope)
        self._started = self.handler.clock.monotonic()
        self.handler.in_flight += 1
        self.handler.counters["tasks"] += 1
        self.handler.emit(TaskStarted, **self._base(), task_data=self.task_data)
        return self

    def record_operation(self, operation_kind: str, data: dict[str, Any]) -> str:
        """Record a compensable operation (published before the task's later events)."""
        return self.handler.record_operation(operation_kind, data)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        handler = self.handler
        try:
            if exc is None:
                handler.retry_budget.record_success()
                handler.counters["succeeded"] += 1
                elapsed = (handler.clock.monotonic() - self._started) * 1000
                handler.emit(TaskSucceeded, **self._base(), duration_ms=elapsed)
            elif isinstance(exc, Exception):
                verdict = handler.classifier.classify(exc)
                info = error_info(exc, verdict, self.service)
                resource = resource_need(exc) if verdict.category == "resource" else None
                handler.counters["failed"] += 1
                handler.emit(
                    TaskFailed,
                    **self._base(),
                    error=info,
                    attempts=self.scope.attempt,
                    task_data=self.task_data,
                    resource=resource,
                )
                annotate(exc, info, "task.failed published")
            else:  # cancelled, KeyboardInterrupt, SystemExit: the task still ends
                handler.counters["failed"] += 1
                handler.emit(
                    TaskFailed,
                    **self._base(),
                    error=error_info(exc, CANCELLED, self.service),
                    attempts=self.scope.attempt,
                    task_data=self.task_data,
                )
        finally:
            handler.in_flight -= 1
            current_scope.reset(self._token)
        return False
