"""The recovery manager of one partition of task events (pure, time in ms).

It keeps a record per live task (template, task data, recorded operations, errors) and
answers ``task.failed`` with the strategy table's action:

- retry: ``recovery.retry`` after a backoff, held in state and emitted when due — the
  delay survives restarts because the state does — and only while the failing
  service's fleet breaker is not open and the template's retry budget allows it (else
  it keeps waiting, up to ``max_park_ms``);
- queue: ``recovery.queued`` now; the task stays parked until capacity of its resource
  kind shows up (``resource.available``, or an idle worker's heartbeat), then
  ``recovery.retry``; after ``max_park_ms`` it is dead-lettered;
- fail_fast: ``recovery.fail_fast`` with the user-facing notification;
- dead_letter: ``task.dead_lettered`` (the full record, replayable) and
  ``recovery.dead_lettered``.

A final failure (dead letter, fail fast) starts the compensation saga of the task's
recorded operations (:mod:`streams.recovery.saga`) unless its operation type is exempt. Every
command id derives from the event that caused it, so reprocessing emits the same ids.
Recovery commands carry the optional fields ``template_id`` and ``category`` for the
per-template, per-category recovery stats (``sinks.queries.recovery_stats_by``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import (
    CompensationCompleted,
    CompensationFailed,
    DeadLetterTask,
    Envelope,
    FailTaskFast,
    QueueTask,
    Source,
    TaskFailed,
    command_id,
)
from streams.breakers.budget import BudgetConfig, FleetBudget
from streams.facts import epoch_ms
from streams.recovery.records import (
    TaskRecord,
    bounded_task_data,
    command_event,
    dead_letter_event,
    retry_event,
)
from streams.recovery.saga import Saga
from streams.recovery.sagas import SagaSteps
from streams.recovery.strategies import Decision, StrategyTable

__all__ = ["PROGRESS", "RecoveryConfig", "RecoveryEngine", "TaskRecord"]

_MAX_ERRORS = 20
_BUDGET_KEY = "~budgets"
PROGRESS = frozenset(
    {"task.started", "operation.recorded", "task.attempt_failed", "task.succeeded"}
)
_RECHECK_MS = 1_000


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    strategies: StrategyTable
    retry_base_ms: int = 1_000
    retry_cap_ms: int = 60_000
    max_park_ms: int = 3_600_000
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    saga_max_tries: int = 3
    saga_backoff_ms: int = 2_000
    no_compensation: frozenset[str] = frozenset()
    task_ttl_ms: int = 86_400_000
    # A retry no runner has taken (no task.started of its attempt) this long after it
    # was due is dead-lettered: no runner serves its template (never silently lost).
    command_max_wait_ms: int = 600_000


class RecoveryEngine(SagaSteps):
    def __init__(
        self, config: RecoveryConfig, source: Source, open_until: dict[str, int] | None = None
    ) -> None:
        self.config = config
        self.source = source
        # service → until when (ms) its fleet breaker counts as open; shared with the
        # stage, which follows errorflow.breaker-state.
        self.open_until = open_until if open_until is not None else {}
        self.tasks: dict[str, TaskRecord] = {}
        self.budgets: dict[str, FleetBudget] = {}
        self._out: list[Envelope] = []
        self._dirty: set[str] = set()
        self._persisted: set[str] = set()  # task keys the changelog holds

    # -- input ---------------------------------------------------------------------------

    def apply(self, event: Envelope, now_ms: int) -> None:
        if event.type in PROGRESS:
            self.progress(event.type, event.model_dump(mode="json"), epoch_ms(event.occurred_at))
        elif isinstance(event, TaskFailed):
            self._failed(event, now_ms)
        elif isinstance(event, CompensationCompleted | CompensationFailed):
            self._compensation_answer(event, now_ms)

    def progress(self, type_: str, data: Mapping[str, Any], at_ms: int) -> None:
        """``task.started``, ``operation.recorded``, ``task.attempt_failed`` and
        ``task.succeeded`` from their JSON fields: most of the traffic, so the stage
        hands them over without building models (see :func:`progress_fields`)."""
        task_id, template_id = data["task_id"], data["template_id"]
        if type_ == "task.succeeded":
            self._budget(template_id).record(ok=True, retry=False, at_ms=at_ms)
            self._dirty.add(_BUDGET_KEY)
            live = self.tasks.get(task_id)
            if live is None or live.saga is None:
                self._drop(task_id)  # done: nothing to recover or undo
            return
        record = self._record(task_id, template_id, data["operation_type"], data["attempt"], at_ms)
        claim = record.pending
        if claim is not None and claim["kind"] == "claim" and data["attempt"] >= claim["attempt"]:
            record.pending = None  # a runner took the retry
            self._dirty.add(task_id)
        if type_ == "task.started":
            record.running_on = (data.get("source") or {}).get("worker_id")
            if data.get("task_data") is not None:
                record.task_data = bounded_task_data(data["task_data"], task_id)
        elif type_ == "operation.recorded":
            if all(op["operation_id"] != data["operation_id"] for op in record.operations):
                record.operations.append(
                    {
                        "operation_id": data["operation_id"],
                        "operation_kind": data["operation_kind"],
                        "data": data["data"],
                    }
                )
        else:
            if data.get("will_retry") is False:
                record.running_on = None  # the runner gave up on it in process
            self._remember_error(record, data["error"])

    def capacity(self, kind: str, amount: float, where: str, at_ms: int, now_ms: int) -> None:
        """Capacity of ``kind`` seen at ``at_ms``: release tasks parked before it, oldest
        first, while the amount lasts."""
        parked = sorted(
            (
                record
                for record in self.tasks.values()
                if record.pending is not None
                and record.pending["kind"] == "park"
                and record.pending["resource_kind"] == kind
                and record.pending["since_ms"] < at_ms
            ),
            key=lambda r: r.pending["since_ms"],  # type: ignore[index]
        )
        for record in parked:
            pending = record.pending or {}
            if amount < pending["amount"]:
                break
            amount -= pending["amount"]
            record.pending = None
            record.retried = True
            self._dirty.add(record.task_id)
            self._emit_retry(
                record,
                cause=pending["cause"],
                qualifier="release",
                attempt=record.attempts + 1,
                not_before_ms=now_ms,
                reason=f"resource error: released, {kind} available on {where}",
                category="resource",
                now_ms=now_ms,
            )

    def worker_lost(self, worker_id: str, cause: str, now_ms: int) -> int:
        """``worker_id`` stopped heartbeating (self-healing sent its restart to the
        supervisor, ``cause`` being that command's id): every task whose current attempt
        ran there and never ended is retried elsewhere now, not forgotten. The retry's
        id derives from the command and the task, so hearing of the loss twice sends
        one command; it is claimed like any retry (dead-lettered if no runner takes
        it). Returns how many tasks were handed over."""
        handed = 0
        for record in list(self.tasks.values()):
            if record.running_on != worker_id or record.pending is not None or record.saga:
                continue
            record.running_on = None
            record.retried = True
            self._dirty.add(record.task_id)
            self._emit_retry(
                record,
                cause=f"{cause}|{record.task_id}",
                qualifier="lost",
                attempt=record.attempts + 1,
                not_before_ms=now_ms,
                reason=(
                    f"worker {worker_id} stopped heartbeating with attempt "
                    f"{record.attempts} in flight: retried elsewhere"
                ),
                category="transient",
                now_ms=now_ms,
            )
            handed += 1
        return handed

    # -- the clock -----------------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Envelope]:
        """Due retries, expired parks, due saga steps; then everything to send."""
        for record in list(self.tasks.values()):
            pending = record.pending
            if pending is not None and now_ms >= pending["due_ms"]:
                record.pending = None
                self._dirty.add(record.task_id)
                if pending["kind"] == "retry":
                    self._due_retry(record, pending, now_ms)
                elif pending["kind"] == "claim":
                    waited = (now_ms - pending["since_ms"]) // 1000
                    reason = (
                        f"no runner took the retry of {record.template_id} (attempt "
                        f"{pending['attempt']}) in {waited}s: no runner serves this template"
                    )
                    decision = Decision("dead_letter", reason)
                    self._final(record, pending["cause"], pending["category"], decision, now_ms)
                else:
                    waited = (now_ms - pending["since_ms"]) // 1000
                    decision = Decision(
                        "dead_letter",
                        f"resource error: no {pending['resource_kind']} capacity in {waited}s",
                    )
                    self._final(record, pending["cause"], "resource", decision, now_ms)
            if record.saga is not None:
                self._advance_saga(record, now_ms)
            if (
                record.pending is None
                and record.saga is None
                and now_ms - record.last_ms > self.config.task_ttl_ms
            ):
                self._drop(record.task_id)
        out, self._out = self._out, []
        return out

    def _due_retry(self, record: TaskRecord, pending: dict[str, Any], now_ms: int) -> None:
        """A retry whose backoff has passed goes out unless the service's fleet breaker
        is open or the template's retry budget is spent: then it waits (re-checked every
        second, so a backlog drains at the budget's pace, never as a storm) until its
        deadline, and is dead-lettered (replayable) after it."""
        service = pending.get("service")
        held = None
        if service and self.open_until.get(service, 0) > now_ms:
            held = f"the fleet breaker of {service} stayed open"
        elif not self._budget(record.template_id).try_spend(now_ms):
            budget = self._budget(record.template_id)
            held = (
                f"the fleet retry budget of {record.template_id} stayed spent "
                f"({budget.retries} retries, {budget.successes} successes)"
            )
        if held is None:
            self._dirty.add(_BUDGET_KEY)
            record.retried = True
            self._emit_retry(
                record,
                cause=pending["cause"],
                qualifier="retry",
                attempt=pending["attempt"],
                not_before_ms=now_ms,
                reason=pending["reason"],
                category=pending["category"],
                now_ms=now_ms,
            )
        elif now_ms < pending["deadline_ms"]:
            record.pending = {**pending, "due_ms": now_ms + _RECHECK_MS}
        else:
            category = pending["category"]
            reason = f"{category} error: {held} until the retry's deadline"
            self._final(record, pending["cause"], category, Decision("dead_letter", reason), now_ms)

    # -- decisions -----------------------------------------------------------------------

    def _failed(self, event: TaskFailed, now_ms: int) -> None:
        record = self._record(
            event.task_id,
            event.template_id,
            event.operation_type,
            event.attempt,
            epoch_ms(event.occurred_at),
        )
        record.attempts = max(record.attempts, event.attempts)
        record.running_on = None
        if event.task_data is not None:
            record.task_data = bounded_task_data(event.task_data, event.task_id)
        self._remember_error(record, event.error.model_dump(mode="json"))
        decision = self.config.strategies.decide(event)
        category = event.error.category
        cause = event.event_id
        if decision.action == "retry":
            record.pending = {
                "kind": "retry",
                "due_ms": now_ms + self._backoff_ms(cause, event.attempts),
                "deadline_ms": now_ms + self.config.max_park_ms,
                "cause": cause,
                "attempt": event.attempts + 1,
                "reason": decision.reason,
                "category": category,
                "service": event.error.service,
            }
            return
        if decision.action == "queue":
            need = event.resource
            kind = need.kind if need is not None else "unknown"
            record.pending = {
                "kind": "park",
                "since_ms": now_ms,
                "due_ms": now_ms + self.config.max_park_ms,
                "cause": cause,
                "resource_kind": kind,
                "amount": need.amount if need is not None else 1,
            }
            self._out.append(
                self._command(
                    QueueTask,
                    cause,
                    "queue",
                    now_ms,
                    task_id=record.task_id,
                    reason=decision.reason,
                    resource_kind=kind,
                    template_id=record.template_id,
                    category=category,
                )
            )
            return
        self._final(record, cause, category, decision, now_ms)

    def _final(
        self, record: TaskRecord, cause: str, category: str, decision: Decision, now_ms: int
    ) -> None:
        """Fail fast or dead-letter, then compensate what the task did."""
        common = {"task_id": record.task_id, "reason": decision.reason}
        if decision.action == "fail_fast":
            self._out.append(
                self._command(
                    FailTaskFast,
                    cause,
                    "fail_fast",
                    now_ms,
                    **common,
                    notification=decision.notification or decision.reason,
                    template_id=record.template_id,
                    category=category,
                )
            )
        else:
            self._out.append(
                dead_letter_event(record, cause, decision.reason, category, now_ms, self.source)
            )
            self._out.append(
                self._command(
                    DeadLetterTask,
                    cause,
                    "dead_letter",
                    now_ms,
                    **common,
                    template_id=record.template_id,
                    category=category,
                )
            )
        exempt = record.operation_type in self.config.no_compensation
        if record.operations and not exempt:
            record.saga = Saga.start(cause, record.operations).to_dict()
            self._advance_saga(record, now_ms)
        else:
            self._drop(record.task_id)

    def _emit_retry(self, record: TaskRecord, **fields: Any) -> None:
        self._out.append(retry_event(record, source=self.source, **fields))
        record.pending = {
            "kind": "claim",
            "cause": fields["cause"],
            "attempt": fields["attempt"],
            "category": fields["category"],
            "since_ms": fields["now_ms"],
            "due_ms": fields["not_before_ms"] + self.config.command_max_wait_ms,
        }

    # -- helpers -------------------------------------------------------------------------

    def _command(
        self, model: type[Envelope], cause: str, qualifier: str, now_ms: int, **fields: Any
    ) -> Envelope:
        cid = command_id(cause, qualifier)
        return command_event(model, cid, cause, now_ms, self.source, **fields)

    def _backoff_ms(self, cause: str, attempts: int) -> int:
        """Exponential with jitter — deterministic per cause, so a replay agrees."""
        ceiling = min(self.config.retry_cap_ms, self.config.retry_base_ms * 2 ** (attempts - 1))
        fraction = int(hashlib.sha1(cause.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF  # noqa: S324
        return int(ceiling * (0.5 + 0.5 * fraction))

    def _record(
        self, task_id: str, template_id: str, operation_type: str, attempt: int, at_ms: int
    ) -> TaskRecord:
        record = self.tasks.get(task_id)
        if record is None:
            record = self.tasks[task_id] = TaskRecord(task_id, template_id, operation_type)
        record.attempts = max(record.attempts, attempt)
        record.last_ms = at_ms
        self._dirty.add(task_id)
        return record

    def _remember_error(self, record: TaskRecord, error: dict[str, Any]) -> None:
        record.errors = [*record.errors, error][-_MAX_ERRORS:]

    def _budget(self, template_id: str) -> FleetBudget:
        budget = self.budgets.get(template_id)
        if budget is None:
            budget = self.budgets[template_id] = FleetBudget(self.config.budget)
        return budget

    def _drop(self, task_id: str) -> None:
        if self.tasks.pop(task_id, None) is not None:
            self._dirty.add(task_id)

    # -- state entries -------------------------------------------------------------------

    def changes(self) -> dict[str, Any | None]:
        """Changed entries since the last call. A task that began and ended between two
        checkpoints (most do) was never written, so it needs no tombstone either."""
        dirty, self._dirty = self._dirty, set()
        out: dict[str, Any | None] = {}
        for key in dirty:
            if key == _BUDGET_KEY:
                out[key] = {t: b.snapshot() for t, b in self.budgets.items()}
                continue
            record = self.tasks.get(key)
            if record is not None:
                out[key] = record.entry()
                self._persisted.add(key)
            elif key in self._persisted:
                out[key] = None
                self._persisted.discard(key)
        return out

    def load(self, entries: dict[str, Any]) -> None:
        for key, value in entries.items():
            if key == _BUDGET_KEY:
                self.budgets = {
                    t: FleetBudget.restore(self.config.budget, b) for t, b in value.items()
                }
            else:
                self.tasks[key] = TaskRecord(**value)
                self._persisted.add(key)
