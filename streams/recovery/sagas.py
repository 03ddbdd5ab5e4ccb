"""The recovery manager's saga half: answers to compensation commands, next steps.

Kept apart from :mod:`streams.recovery.manager` (which mixes it in) because it is its own
responsibility: :class:`streams.recovery.saga.Saga` is the pure step machine, this is how the
engine feeds it answers and turns its steps into commands and alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas import CompensationCompleted, CompensationFailed, Envelope, Source
from streams.recovery.records import TaskRecord, compensation_event, saga_alert
from streams.recovery.saga import Saga

if TYPE_CHECKING:
    from streams.recovery.manager import RecoveryConfig

__all__ = ["SagaSteps"]


class SagaSteps:
    """Mixed into :class:`streams.recovery.manager.RecoveryEngine`, whose state it uses."""

    config: RecoveryConfig
    source: Source
    tasks: dict[str, TaskRecord]
    _out: list[Envelope]
    _dirty: set[str]

    if TYPE_CHECKING:

        def _drop(self, task_id: str) -> None: ...

    def _compensation_answer(
        self, event: CompensationCompleted | CompensationFailed, now_ms: int
    ) -> None:
        record = self.tasks.get(event.task_id)
        if record is None or record.saga is None:
            return  # not ours, or long finished: a duplicate answer changes nothing
        saga = Saga.from_dict(record.saga)
        if isinstance(event, CompensationCompleted):
            saga.completed(event.command_id)
        else:
            error = event.error.message if event.error else str(getattr(event, "reason", ""))
            gave_up = saga.failed(
                event.command_id,
                error,
                now_ms,
                max_tries=self.config.saga_max_tries,
                backoff_ms=self.config.saga_backoff_ms,
            )
            if gave_up:
                self._out.append(
                    saga_alert(record, saga, self.config.saga_max_tries, now_ms, self.source)
                )
        record.saga = saga.to_dict()
        self._dirty.add(record.task_id)
        self._advance_saga(record, now_ms)

    def _advance_saga(self, record: TaskRecord, now_ms: int) -> None:
        saga = Saga.from_dict(record.saga or {})
        step = saga.next_step(now_ms)
        if step is None and saga.status not in ("done", "failed"):
            return  # waiting for an answer or a backoff: nothing changed
        if step is not None:
            self._out.append(compensation_event(record, step, saga.cause, now_ms, self.source))
        self._dirty.add(record.task_id)
        if saga.status in ("done", "failed"):
            self._drop(record.task_id)
        else:
            record.saga = saga.to_dict()
