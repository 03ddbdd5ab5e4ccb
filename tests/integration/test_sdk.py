"""The runner SDK against the real broker: events in order, commands obeyed."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import schemas as s
from producers import CircuitOpenError, ErrorHandlingContext, SDKConfig
from producers.handler import ErrorHandler
from tests.integration.kafka_io import end_offsets, kcat_produce, read_since

pytestmark = pytest.mark.kafka

TASKS = "errorflow.task-events"


def _retries(template: str, n: int) -> list[s.RetryTask]:
    """``n`` recovery.retry commands for ``template``, task data ``{"i": i}``."""
    return [
        s.RetryTask(
            command_id=s.command_id(f"{template}-{i}"),
            causation_id=f"{template}-{i}",
            task_id=f"{template}-task-{i}",
            template_id=template,
            operation_type="video_generation",
            attempt=2,
            not_before=s.utc_now(),
            task_data={"i": i},
            reason="transient error: retry",
        )
        for i in range(n)
    ]


def _kcat_commands(bootstrap: str, commands: list[s.RetryTask]) -> None:
    """Each command onto its topic with kcat, as another team's producer would."""
    for command in commands:
        kcat_produce(
            bootstrap, "errorflow.recovery-commands", command.task_id, s.encode(command).decode()
        )


def _config(bootstrap: str, tmp_path: Path, **extra: Any) -> SDKConfig:
    settings: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "data_dir": tmp_path,
        "runner_id": "it-runner",
        "consume_commands": False,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        **extra,
    }
    return SDKConfig(**settings)


async def _task_events(bootstrap: str, since: Any, task_id: str, count: int) -> list[s.Envelope]:
    records = await read_since(bootstrap, since, count=count, timeout_s=20)
    events = [s.decode(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    return [e for e in events if getattr(e, "task_id", None) == task_id]


async def test_retried_task_events_arrive_in_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two ConnectionResetErrors then success: started, 2× attempt_failed, succeeded, in order."""
    since = await end_offsets(kafka_bootstrap, [TASKS])
    calls = {"n": 0}

    async def generate(data: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionResetError("Connection reset by peer")
        return "image.png"

    async with ErrorHandler(_config(kafka_bootstrap, tmp_path)) as handler:
        result = await handler.wrap_task_execution(
            task_id="it-retry",
            template_id="stable-diffusion",
            operation_type="image_generation",
            task_data={"prompt": "A beautiful landscape"},
            execute_func=generate,
        )
    assert result == "image.png"
    events = await _task_events(kafka_bootstrap, since, "it-retry", 4)
    assert [e.type for e in events] == [
        "task.started",
        "task.attempt_failed",
        "task.attempt_failed",
        "task.succeeded",
    ]
    assert {e.error.category for e in events[1:3]} == {"transient"}  # type: ignore[attr-defined]


async def test_validation_error_fails_once_after_recorded_operations(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """ValueError is not retried: operations recorded, then one task.failed (validation)."""
    since = await end_offsets(kafka_bootstrap, [TASKS])
    async with ErrorHandler(_config(kafka_bootstrap, tmp_path)) as handler:
        with pytest.raises(ValueError, match="negative"):  # noqa: PT012 - the block is the task
            async with ErrorHandlingContext(
                handler,
                task_id="it-validation",
                template_id="video-gen",
                operation_type="video_generation",
                task_data={"frames": -1},
            ) as ctx:
                ctx.record_operation("file_upload", {"file_path": "/tmp/input.mp4"})
                ctx.record_operation("resource_allocation", {"allocation_id": "gpu-123"})
                raise ValueError("frames must not be negative")
    events = await _task_events(kafka_bootstrap, since, "it-validation", 4)
    assert [e.type for e in events] == [
        "task.started",
        "operation.recorded",
        "operation.recorded",
        "task.failed",
    ]
    assert events[-1].error.category == "validation"  # type: ignore[attr-defined]


async def test_compensation_command_twice_runs_the_compensator_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """compensation.requested produced twice with kcat: one run, one compensation.completed."""
    ran: list[dict[str, Any]] = []
    config = _config(
        kafka_bootstrap, tmp_path, consume_commands=True, command_group=f"it-{time.time_ns()}"
    )
    command = s.CompensateOperation(
        command_id=s.command_id("it-comp-cause"),
        causation_id="it-comp-cause",
        task_id="it-comp",
        operation_id="op-1",
        operation_kind="file_upload",
        data={"file_path": "/tmp/in.mp4"},
        step=1,
        total_steps=1,
    )
    since = await end_offsets(kafka_bootstrap, [TASKS])
    async with ErrorHandler(config) as handler:
        handler.register_compensator("file_upload", lambda data: ran.append(data))
        for _ in range(2):
            kcat_produce(
                kafka_bootstrap,
                "errorflow.compensation-commands",
                "it-comp",
                s.encode(command).decode(),
            )
        for _ in range(100):
            if ran:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # time for the duplicate to arrive and be dropped
    assert ran == [{"file_path": "/tmp/in.mp4"}]
    events = await _task_events(kafka_bootstrap, since, "it-comp", 1)
    assert [e.type for e in events] == ["compensation.completed"]
    # A restarted runner (same ledger) does not run it again either.
    async with ErrorHandler(config) as handler:
        handler.register_compensator("file_upload", lambda data: ran.append(data))
        kcat_produce(
            kafka_bootstrap,
            "errorflow.compensation-commands",
            "it-comp",
            s.encode(command).decode(),
        )
        await asyncio.sleep(2.0)
    assert len(ran) == 1


async def test_cluster_open_state_short_circuits_within_a_second(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """breaker.state OPEN for a service, produced with kcat, makes the next call use the
    fallback within 1 s; CLOSED lets calls through again."""
    service = f"comfyui-{time.time_ns()}"
    calls: list[int] = []

    async def call_comfyui() -> str:
        calls.append(1)
        return "live"

    def state(value: str) -> str:
        return s.encode(
            s.BreakerStateChanged(
                service=service,
                state=value,
                since=s.utc_now(),
                reason="fleet",
                failure_count=5,
                calls=5,
            )
        ).decode()

    async with ErrorHandler(
        _config(
            kafka_bootstrap, tmp_path, consume_commands=True, command_group=f"it-{time.time_ns()}"
        )
    ) as handler:
        assert (
            await handler.protect_external_call(service, call_comfyui, fallback="cached") == "live"
        )
        await asyncio.sleep(1.0)  # the state consumer is assigned and at the end of the topic
        kcat_produce(kafka_bootstrap, "errorflow.breaker-state", service, state("open"))
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            result = await handler.protect_external_call(service, call_comfyui, fallback="cached")
            if result == "cached":
                break
            await asyncio.sleep(0.02)
        assert result == "cached", "cluster OPEN did not reach the SDK within 1 s"
        with pytest.raises(CircuitOpenError):
            await handler.protect_external_call(service, call_comfyui)
        kcat_produce(kafka_bootstrap, "errorflow.breaker-state", service, state("closed"))
        for _ in range(50):
            if handler.circuit_breakers.get(service).state == "closed":
                break
            await asyncio.sleep(0.05)
        assert (
            await handler.protect_external_call(service, call_comfyui, fallback="cached") == "live"
        )


async def test_retry_command_reruns_the_task_through_its_executor(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """recovery.retry (via kcat) re-runs the task in a runner, not before not_before,
    with the command's attempt number; the same command again is dropped."""
    task_id = f"it-retry-cmd-{time.time_ns()}"
    # A template of its own: a fresh command group reads the topic from the start, and
    # other runs (the demo's) leave retries for "video-gen" there.
    template = f"video-gen-{time.time_ns()}"
    runs: list[tuple[float, dict[str, Any]]] = []
    not_before = s.utc_now() + timedelta(seconds=1.5)
    command = s.RetryTask(
        command_id=s.command_id(f"{task_id}-failed"),
        causation_id=f"{task_id}-failed",
        task_id=task_id,
        template_id=template,
        operation_type="video_generation",
        attempt=4,
        not_before=not_before,
        task_data={"prompt": "sunset"},
        reason="transient error",
    )
    since = await end_offsets(kafka_bootstrap, [TASKS])
    config = _config(
        kafka_bootstrap, tmp_path, consume_commands=True, command_group=f"it-{time.time_ns()}"
    )
    async with ErrorHandler(config) as handler:

        @handler.executor(template)
        async def regenerate(data: dict[str, Any]) -> str:
            runs.append((time.time(), data))
            return "ok"

        for _ in range(2):
            kcat_produce(
                kafka_bootstrap, "errorflow.recovery-commands", task_id, s.encode(command).decode()
            )
        for _ in range(100):
            if runs:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    assert len(runs) == 1
    assert runs[0][1] == {"prompt": "sunset"}
    assert runs[0][0] >= not_before.timestamp() - 0.05
    events = await _task_events(kafka_bootstrap, since, task_id, 2)
    assert [(e.type, e.attempt) for e in events] == [  # type: ignore[attr-defined]
        ("task.started", 4),
        ("task.succeeded", 4),
    ]


async def test_retry_commands_reach_only_the_runner_that_can_run_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Twenty recovery.retry commands for video-gen, two runners in one command group:
    the one without a video-gen executor takes none; the other runs each exactly once."""
    template = f"video-gen-{time.time_ns()}"
    group = f"it-route-{time.time_ns()}"
    ran: list[str] = []
    other: list[str] = []
    commands = _retries(template, 20)
    incapable = _config(
        kafka_bootstrap, tmp_path / "a", runner_id="a", consume_commands=True, command_group=group
    )
    capable = _config(
        kafka_bootstrap, tmp_path / "b", runner_id="b", consume_commands=True, command_group=group
    )
    async with ErrorHandler(incapable) as a, ErrorHandler(capable) as b:
        a.register_executor(lambda data: other.append(data["i"]), template_id="stable-diffusion")
        b.register_executor(lambda data: ran.append(data["i"]), template_id=template)
        _kcat_commands(kafka_bootstrap, commands)
        deadline = time.monotonic() + 30
        while len(ran) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert b._background[0].counters["handled"] == 20  # type: ignore[attr-defined]
    assert sorted(ran) == list(range(20))
    assert other == []


async def test_heartbeats_count_the_commands_waiting_for_a_busy_runner(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Twenty retries for a runner whose executor is slow: while it works through them,
    its heartbeat's command_lag shows the unread command records (what the backlog
    detector adds to the queue depth), and it falls to zero once all ran."""
    from producers.heartbeat import HeartbeatEmitter

    template = f"slow-{time.time_ns()}"
    config = _config(
        kafka_bootstrap, tmp_path, consume_commands=True, command_group=f"it-lag-{time.time_ns()}"
    )
    ran: list[int] = []

    async def slow(data: dict[str, Any]) -> None:
        await asyncio.sleep(0.3)
        ran.append(data["i"])

    async with ErrorHandler(config) as runner:
        runner.register_executor(slow, template_id=template)
        _kcat_commands(kafka_bootstrap, _retries(template, 20))
        deadline = time.monotonic() + 30
        while len(ran) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        waiting = runner.commands.lag()
        since = await end_offsets(kafka_bootstrap, ["errorflow.heartbeats"])
        HeartbeatEmitter(runner, interval_s=5).beat()
        assert await runner.publisher.flush(timeout_s=20)
        # The lag falls as commands are run and committed (the commit follows the run).
        while (len(ran) < 20 or runner.commands.lag()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        done = runner.commands.lag()
        me = runner.source.worker_id
    records = await read_since(kafka_bootstrap, since, count=1, timeout_s=20)
    [beat] = [b for r in records if (b := s.decode(r.value)).worker_id == me]  # type: ignore[attr-defined]
    # The groups read the whole command topic (other templates' commands are skipped),
    # so the lag counts every unread record there, this run's and earlier tests'.
    assert beat.command_lag > 0  # type: ignore[attr-defined]
    assert waiting > 0
    assert (sorted(ran), done) == (list(range(20)), 0)
