"""What a runner registers: executors that re-run tasks, compensators that undo operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Executor", "RunnerRegistry"]

Executor = Callable[..., Any]


class RunnerRegistry:
    """Executors by (template_id, operation_type) and compensators by operation kind."""

    def __init__(self) -> None:
        self.executors: dict[tuple[str | None, str | None], Executor] = {}
        self.compensators: dict[str, Executor] = {}
        #: Called after each registration (the command listener joins the new route).
        self.on_registered: Callable[[], None] | None = None

    def register_executor(
        self, func: Executor, *, template_id: str | None = None, operation_type: str | None = None
    ) -> Executor:
        """The function that re-runs a task on ``recovery.retry`` (receives task_data)."""
        if template_id is None and operation_type is None:
            raise ValueError("register an executor for a template_id, an operation_type or both")
        self.executors[(template_id, operation_type)] = func
        if self.on_registered is not None:
            self.on_registered()
        return func

    def executor(
        self, template_id: str | None = None, *, operation_type: str | None = None
    ) -> Callable[[Executor], Executor]:
        def decorate(func: Executor) -> Executor:
            return self.register_executor(
                func, template_id=template_id, operation_type=operation_type
            )

        return decorate

    def executor_for(self, template_id: str, operation_type: str) -> Executor | None:
        for key in ((template_id, operation_type), (template_id, None), (None, operation_type)):
            if key in self.executors:
                return self.executors[key]
        return None

    def register_compensator(self, operation_kind: str, func: Executor) -> Executor:
        """The function that undoes ``operation_kind`` (receives the recorded data)."""
        self.compensators[operation_kind] = func
        if self.on_registered is not None:
            self.on_registered()
        return func

    def compensator(self, operation_kind: str) -> Callable[[Executor], Executor]:
        def decorate(func: Executor) -> Executor:
            return self.register_compensator(operation_kind, func)

        return decorate
