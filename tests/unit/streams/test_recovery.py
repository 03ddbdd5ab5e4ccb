"""The recovery manager and compensation sagas, with time as an argument."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import schemas as s
from streams.breakers.budget import BudgetConfig
from streams.recovery.manager import RecoveryConfig, RecoveryEngine
from streams.recovery.saga import Saga
from streams.recovery.strategies import DEFAULT_TABLE, Decision, StrategyTable
from tests.samples import SOURCE, T0, error

NOW = int(T0.timestamp() * 1000)
TASK = {"task_id": "t1", "template_id": "video-gen", "operation_type": "video_generation"}


def _engine(**config: Any) -> RecoveryEngine:
    settings = {
        "strategies": StrategyTable(DEFAULT_TABLE, max_attempts=3),
        "retry_base_ms": 1000,
        "max_park_ms": 60_000,
        "budget": BudgetConfig(0.1, 100, 60),
        **config,
    }
    return RecoveryEngine(RecoveryConfig(**settings), SOURCE)


def _at(ms: int) -> Any:
    return T0 + timedelta(milliseconds=ms)


def _failed(category: str = "transient", attempts: int = 1, **extra: Any) -> s.TaskFailed:
    return s.TaskFailed(
        source=SOURCE,
        occurred_at=_at(0),
        **TASK,
        attempt=attempts,
        attempts=attempts,
        error=error(category),  # type: ignore[arg-type]
        task_data={"prompt": "x"},
        **extra,
    )


def _ops(engine: RecoveryEngine, n: int) -> list[str]:
    ids = []
    for i in range(n):
        op = s.OperationRecorded(
            source=SOURCE,
            occurred_at=_at(i),
            **TASK,
            attempt=1,
            operation_id=f"op-{i}",
            operation_kind=f"kind-{i}",
            data={"i": i},
        )
        engine.apply(op, NOW)
        ids.append(op.operation_id)
    return ids


def test_transient_retry_is_emitted_when_due_and_survives_a_restart() -> None:
    """Nothing before the backoff; after it exactly one recovery.retry with attempt 2 and
    the task data — also from an engine rebuilt from the state entries in between."""
    engine = _engine()
    engine.apply(_failed(), NOW)
    assert engine.tick(NOW + 100) == []
    rebuilt = _engine()
    rebuilt.load({k: v for k, v in engine.changes().items() if v is not None})
    [retry] = rebuilt.tick(NOW + 1_000)
    assert isinstance(retry, s.RetryTask)
    assert (retry.attempt, retry.task_data) == (2, {"prompt": "x"})
    assert rebuilt.tick(NOW + 5_000) == []
    [again] = engine.tick(NOW + 1_000)  # the original engine, as after a crash replay
    assert (again.command_id, again.event_id) == (retry.command_id, retry.event_id)  # type: ignore[attr-defined]


def test_out_of_attempts_dead_letters_with_the_full_record() -> None:
    engine = _engine()
    engine.apply(_failed(attempts=3), NOW)
    letter, command = engine.tick(NOW)
    assert isinstance(letter, s.TaskDeadLettered)
    assert (letter.attempts, letter.task_data, len(letter.errors)) == (3, {"prompt": "x"}, 1)
    assert isinstance(command, s.DeadLetterTask)
    assert "out of attempts" in command.reason


def test_validation_fails_fast_with_a_notification() -> None:
    engine = _engine()
    engine.apply(_failed("validation"), NOW)
    [command] = engine.tick(NOW)
    assert isinstance(command, s.FailTaskFast)
    assert "Fix the input" in command.notification


def test_resource_error_parks_until_capacity_then_releases_once() -> None:
    """Queued now; capacity seen before parking releases nothing; capacity after it
    releases the task as recovery.retry; more capacity releases nothing more."""
    engine = _engine()
    engine.apply(_failed("resource", resource=s.ResourceNeed(kind="gpu", amount=1)), NOW)
    [queued] = engine.tick(NOW)
    assert isinstance(queued, s.QueueTask)
    assert queued.resource_kind == "gpu"
    engine.capacity("gpu", 4, "gpu-1", NOW - 1, NOW + 10)
    engine.capacity("disk", 4, "gpu-1", NOW + 5, NOW + 10)
    assert engine.tick(NOW + 10) == []
    engine.capacity("gpu", 1, "gpu-2", NOW + 20, NOW + 30)
    [released] = engine.tick(NOW + 30)
    assert isinstance(released, s.RetryTask)
    assert "released" in released.reason
    engine.capacity("gpu", 1, "gpu-2", NOW + 40, NOW + 50)
    assert engine.tick(NOW + 50) == []


def test_a_park_past_its_limit_is_dead_lettered() -> None:
    engine = _engine(max_park_ms=1_000)
    engine.apply(_failed("resource", resource=s.ResourceNeed(kind="gpu")), NOW)
    engine.tick(NOW)
    out = engine.tick(NOW + 1_000)
    assert [e.type for e in out] == ["task.dead_lettered", "recovery.dead_lettered"]


def test_permanent_failure_compensates_in_reverse_one_at_a_time_exactly_once() -> None:
    engine = _engine()
    ids = _ops(engine, 3)
    engine.apply(_failed("permanent"), NOW)
    out = engine.tick(NOW)
    steps = [e for e in out if isinstance(e, s.CompensateOperation)]
    assert [(c.operation_id, c.step, c.total_steps) for c in steps] == [(ids[2], 1, 3)]
    done = []
    for expected in (ids[1], ids[0]):
        answer = s.CompensationCompleted(
            source=SOURCE,
            task_id="t1",
            operation_id=done[-1] if done else ids[2],
            command_id=steps[-1].command_id,
        )
        engine.apply(answer, NOW)
        engine.apply(answer, NOW)  # a duplicate answer changes nothing
        [step] = engine.tick(NOW)
        assert isinstance(step, s.CompensateOperation)
        assert step.operation_id == expected
        steps.append(step)
        done.append(expected)
    last = s.CompensationCompleted(
        source=SOURCE, task_id="t1", operation_id=ids[0], command_id=steps[-1].command_id
    )
    engine.apply(last, NOW)
    assert engine.tick(NOW) == []
    assert "t1" not in engine.tasks


def test_failed_compensation_is_retried_with_backoff_then_alerts() -> None:
    engine = _engine(saga_max_tries=2, saga_backoff_ms=1_000)
    _ops(engine, 1)
    engine.apply(_failed("validation"), NOW)
    first = [e for e in engine.tick(NOW) if isinstance(e, s.CompensateOperation)][0]
    failure = s.CompensationFailed(
        source=SOURCE, task_id="t1", operation_id="op-0", command_id=first.command_id
    )
    engine.apply(failure, NOW)
    assert engine.tick(NOW + 500) == []
    [second] = engine.tick(NOW + 1_000)
    assert isinstance(second, s.CompensateOperation)
    assert second.command_id != first.command_id
    engine.apply(failure.model_copy(update={"command_id": second.command_id}), NOW + 1_100)
    [alert] = engine.tick(NOW + 1_100)
    assert isinstance(alert, s.AlertFiring)
    assert alert.name == "compensation_failed"


def test_over_budget_retries_wait_and_drain_at_the_budgets_pace() -> None:
    """With a floor of 1 retry: the first due retry goes out, the second waits (no dead
    letter) and goes out once a success earns budget... here the window slides instead:
    past its deadline it is dead-lettered with the reason."""
    engine = _engine(budget=BudgetConfig(0.1, 1, 60), max_park_ms=10_000)
    engine.apply(_failed(), NOW)
    engine.apply(_failed().model_copy(update={"task_id": "t2", "event_id": "e2"}), NOW)
    out = engine.tick(NOW + 1_000)
    assert [e.type for e in out] == ["recovery.retry"]
    assert engine.tick(NOW + 5_000) == []  # still waiting for budget
    late = engine.tick(NOW + 10_000)
    assert [e.type for e in late] == ["task.dead_lettered", "recovery.dead_lettered"]
    assert "retry budget of video-gen stayed spent" in late[1].reason  # type: ignore[attr-defined]
    ok = s.TaskSucceeded(source=SOURCE, occurred_at=_at(0), **TASK, attempt=2, duration_ms=1)
    engine.apply(ok, NOW)
    assert engine.budgets["video-gen"].successes == 1


def test_a_retry_waits_while_the_services_fleet_breaker_is_open() -> None:
    """The failing service's breaker is open until +3 s: the retry goes out at the first
    check after that, not at its backoff."""
    open_until = {"comfyui": NOW + 3_000}
    engine = RecoveryEngine(
        RecoveryConfig(StrategyTable(DEFAULT_TABLE, 3), retry_base_ms=100), SOURCE, open_until
    )
    engine.apply(_failed(), NOW)
    assert engine.tick(NOW + 1_000) == []
    assert engine.tick(NOW + 2_500) == []
    [retry] = engine.tick(NOW + 4_000)  # re-checked every second
    assert isinstance(retry, s.RetryTask)


def test_custom_strategy_overrides_the_table() -> None:
    def never_retry(failure: s.TaskFailed, left: int) -> Decision | None:
        return Decision("dead_letter", "policy: no retries for video") if left else None

    table = StrategyTable(DEFAULT_TABLE, 3, {"transient": never_retry})
    assert table.decide(_failed()).reason == "policy: no retries for video"
    assert table.decide(_failed("resource")).action == "queue"


def test_saga_ignores_answers_for_other_commands() -> None:
    saga = Saga.start("cause", [{"operation_id": "a"}, {"operation_id": "b"}])
    step = saga.next_step(0)
    assert step is not None
    assert step.operation["operation_id"] == "b"
    assert saga.completed("something-else") is False
    assert saga.next_step(0) is None  # still outstanding


def test_the_stages_json_fast_path_builds_the_same_state_as_the_models() -> None:
    """Progress events read straight from JSON (as the stage does) leave the engine in
    the state their validated models leave it in; anything odd is left to the codec."""
    from streams.fastpath import read_progress

    events: list[s.Envelope] = [
        s.TaskStarted(source=SOURCE, occurred_at=_at(0), **TASK, attempt=1, task_data={"p": 1}),
        s.OperationRecorded(
            source=SOURCE,
            occurred_at=_at(1),
            **TASK,
            attempt=1,
            operation_id="op",
            operation_kind="upload",
            data={"f": "/tmp/x"},
        ),
        s.TaskAttemptFailed(
            source=SOURCE, occurred_at=_at(2), **TASK, attempt=1, error=error(), will_retry=True
        ),
    ]
    by_model, by_json = _engine(), _engine()
    for event in events:
        by_model.apply(event, NOW)
        fast = read_progress(s.encode(event))
        assert fast is not None
        by_json.progress(*fast)
    assert by_json.changes() == by_model.changes()
    assert read_progress(b'{"type": "task.started", "schema_version": 2}') is None
    assert read_progress(s.encode(_failed())) is None  # not progress: the codec's job


def test_a_task_that_ends_between_checkpoints_writes_no_state() -> None:
    """Started and succeeded before a checkpoint: no entry, no tombstone (only the
    template budget changes). Written once, then ended: a tombstone."""
    engine = _engine()
    started = s.TaskStarted(source=SOURCE, occurred_at=_at(0), **TASK, attempt=1)
    ok = s.TaskSucceeded(source=SOURCE, occurred_at=_at(1), **TASK, attempt=1, duration_ms=1)
    engine.apply(started, NOW)
    engine.apply(ok, NOW)
    assert set(engine.changes()) == {"~budgets"}
    engine.apply(started, NOW)
    assert set(engine.changes()) == {"t1"}
    engine.apply(ok, NOW)
    changes = engine.changes()
    assert changes["t1"] is None


def test_a_retry_no_runner_takes_is_dead_lettered_after_the_max_wait() -> None:
    """A recovery.retry whose attempt never starts (no runner serves the template) is
    dead-lettered with a reason after command_max_wait; one that starts is not."""
    engine = _engine(command_max_wait_ms=30_000)
    engine.apply(_failed(), NOW)
    [retry] = engine.tick(NOW + 1_000)
    assert isinstance(retry, s.RetryTask)
    assert engine.tick(NOW + 30_000) == []  # still waiting for a runner
    out = engine.tick(NOW + 31_000)
    dead = [e for e in out if isinstance(e, s.DeadLetterTask)]
    assert len(dead) == 1
    assert "no runner took the retry" in dead[0].reason

    taken = _engine(command_max_wait_ms=30_000)
    taken.apply(_failed(), NOW)
    taken.tick(NOW + 1_000)
    started = s.TaskStarted(source=SOURCE, occurred_at=_at(2_000), **TASK, attempt=2)
    taken.apply(started, NOW + 2_000)
    assert taken.tick(NOW + 60_000) == []


def _started(task_id: str, worker: str) -> s.TaskStarted:
    source = SOURCE.model_copy(update={"worker_id": worker})
    return s.TaskStarted(
        source=source,
        occurred_at=_at(0),
        **{**TASK, "task_id": task_id},
        attempt=1,
        task_data={"prompt": task_id},
    )


def test_a_lost_workers_in_flight_tasks_are_retried_elsewhere_once() -> None:
    """Of three tasks started on a worker that is then lost, the two that never ended
    get one retry each (attempt 2, their task data, ids from the healing command); the
    finished one and a task on another worker get none; hearing of the loss again, or
    from an engine rebuilt from the state entries, sends nothing new."""
    engine = _engine()
    for task_id, worker in (("a", "w-lost"), ("b", "w-lost"), ("c", "w-lost"), ("d", "w-ok")):
        engine.apply(_started(task_id, worker), NOW)
    engine.apply(
        s.TaskSucceeded(
            source=SOURCE, occurred_at=_at(5), **{**TASK, "task_id": "c"}, attempt=1, duration_ms=5
        ),
        NOW,
    )
    entries = {k: v for k, v in engine.changes().items() if v is not None}
    assert engine.worker_lost("w-lost", "cmd-1", NOW + 30_000) == 2
    retries = engine.tick(NOW + 30_000)
    assert sorted((r.task_id, r.attempt, r.task_data["prompt"]) for r in retries) == [  # type: ignore[attr-defined]
        ("a", 2, "a"),
        ("b", 2, "b"),
    ]
    assert engine.worker_lost("w-lost", "cmd-1", NOW + 31_000) == 0
    rebuilt = _engine()
    rebuilt.load(entries)  # as after a crash before the handover committed
    assert rebuilt.worker_lost("w-lost", "cmd-1", NOW + 30_000) == 2
    again = rebuilt.tick(NOW + 30_000)
    assert sorted(r.command_id for r in again) == sorted(r.command_id for r in retries)  # type: ignore[attr-defined]
