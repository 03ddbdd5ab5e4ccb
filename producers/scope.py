"""The task an SDK call runs in, carried in a context variable.

``protect_external_call`` and ``record_operation`` find the current task here, so a
call made deep inside a task is attributed to it without passing ids around.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["TaskScope", "current_scope"]


@dataclass(slots=True)
class TaskScope:
    task_id: str
    template_id: str
    operation_type: str
    attempt: int = 1
    operations: int = 0


current_scope: ContextVar[TaskScope | None] = ContextVar("errorflow_task_scope", default=None)
