"""The recovery manager end to end: a worker process, SDK runners, the dlq command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas as s
from producers import ErrorHandlingContext, SDKConfig
from producers.handler import ErrorHandler
from tests.integration.kafka_io import produce
from tests.integration.process import ROOT
from tests.integration.worker_process import WorkerProcess, read_all, running_worker

pytestmark = pytest.mark.kafka

RECOVERY = {
    "ERRORFLOW_WORKER_RECOVERY_RETRY_BASE_S": "0.2",
    "ERRORFLOW_WORKER_SAGA_BACKOFF_S": "0.5",
    "ERRORFLOW_WORKER_RESOURCE_LOOKBACK_S": "0",
}


@pytest.fixture(scope="module")
def recovery_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log_dir = Path(tmp_path_factory.mktemp("recovery-worker"))
    with running_worker(kafka_bootstrap, log_dir, "it-recovery", RECOVERY, "recovery") as worker:
        yield worker


def _runner(bootstrap: str, tmp_path: Path) -> ErrorHandler:
    return ErrorHandler(
        SDKConfig(
            kafka_bootstrap_servers=bootstrap,
            data_dir=tmp_path,
            runner_id=f"it-runner-{uuid.uuid4().hex[:6]}",
            consume_commands=True,
            command_group=f"it-recovery-{uuid.uuid4().hex[:6]}",
            backoff_base_s=0.01,
        )
    )


async def _until(check: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s: {what}")


async def _of_task(bootstrap: str, topic: str, task_id: str) -> list[s.Envelope]:
    """The task's records on ``topic`` (other tests leave garbage there on purpose)."""
    events = []
    for record in await read_all(bootstrap, topic, timeout_ms=500):
        with contextlib.suppress(s.DecodeError):
            events.append(s.decode(record.value))
    return [e for e in events if getattr(e, "task_id", None) == task_id]


def _dlq(bootstrap: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "dlq", *args],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_resource_error_parks_until_resource_available_then_a_runner_reruns_it(
    kafka_bootstrap: str, tmp_path: Path, recovery_worker: WorkerProcess
) -> None:
    asyncio.run(_resource_scenario(kafka_bootstrap, tmp_path))


async def _resource_scenario(bootstrap: str, tmp_path: Path) -> None:
    task_id, template = f"it-park-{uuid.uuid4().hex[:8]}", f"video-{uuid.uuid4().hex[:6]}"
    runs: list[dict[str, Any]] = []
    async with _runner(bootstrap, tmp_path) as runner:

        @runner.executor(template)
        async def rerun(data: dict[str, Any]) -> str:
            runs.append(data)
            return "video.mp4"

        async def out_of_memory(data: dict[str, Any]) -> None:
            raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        with pytest.raises(MemoryError):
            await runner.wrap_task_execution(
                task_id, template, "video_generation", {"frames": 48}, out_of_memory
            )

        async def queued() -> bool:
            commands = await _of_task(bootstrap, "errorflow.recovery-commands", task_id)
            return [c.type for c in commands] == ["recovery.queued"]

        await _until(queued, 20, "recovery.queued for the task")
        await asyncio.sleep(1.0)
        assert runs == [], "released before any capacity showed up"
        free = s.ResourceAvailable(
            source=s.Source.here(runner_id="it"), worker_id="gpu-9", resource_kind="gpu", amount=1
        )
        await produce(bootstrap, [free])
        await _until(lambda: bool(runs), 20, "the parked task re-ran")
        await asyncio.sleep(0.5)
    assert runs == [{"frames": 48}]
    events = await _of_task(bootstrap, "errorflow.task-events", task_id)
    assert [(e.type, e.attempt) for e in events][-2:] == [  # type: ignore[attr-defined]
        ("task.started", 2),
        ("task.succeeded", 2),
    ]


def test_permanent_error_dead_letters_and_dlq_replay_reruns_it(
    kafka_bootstrap: str, tmp_path: Path, recovery_worker: WorkerProcess
) -> None:
    asyncio.run(_dlq_scenario(kafka_bootstrap, tmp_path))


async def _dlq_scenario(bootstrap: str, tmp_path: Path) -> None:
    task_id, template = f"it-dlq-{uuid.uuid4().hex[:8]}", f"sd-{uuid.uuid4().hex[:6]}"
    runs: list[dict[str, Any]] = []
    async with _runner(bootstrap, tmp_path) as runner:

        @runner.executor(template)
        async def rerun(data: dict[str, Any]) -> str:
            runs.append(data)
            return "image.png"

        async def forbidden(data: dict[str, Any]) -> None:
            raise PermissionError("model store: 403 forbidden for sdxl.safetensors")

        with pytest.raises(PermissionError):
            await runner.wrap_task_execution(
                task_id, template, "image_generation", {"prompt": "a fox"}, forbidden
            )

        async def lettered() -> bool:
            return bool(await _of_task(bootstrap, "errorflow.dead-letter", task_id))

        await _until(lettered, 20, "task.dead_lettered for the task")
        [letter] = await _of_task(bootstrap, "errorflow.dead-letter", task_id)
        assert letter.task_data == {"prompt": "a fox"}  # type: ignore[attr-defined]
        assert letter.errors[0].category == "permanent"  # type: ignore[attr-defined]
        assert task_id in await asyncio.to_thread(_dlq, bootstrap, "list", "--task-id", task_id)

        dry = await asyncio.to_thread(_dlq, bootstrap, "replay", "--task-id", task_id, "--dry-run")
        assert "to replay 1" in dry
        assert "nothing sent" in dry
        await asyncio.sleep(1.5)
        retries = await _of_task(bootstrap, "errorflow.recovery-commands", task_id)
        assert [c.type for c in retries] == ["recovery.dead_lettered"]
        assert runs == []

        done = await asyncio.to_thread(_dlq, bootstrap, "replay", "--task-id", task_id)
        assert "replayed 1 task(s)" in done
        await _until(lambda: bool(runs), 20, "the replayed task re-ran")
        await asyncio.sleep(0.5)
    assert runs == [{"prompt": "a fox"}]
    commands = await _of_task(bootstrap, "errorflow.recovery-commands", task_id)
    replayed = [c for c in commands if c.type == "recovery.retry"]
    assert len(replayed) == 1
    assert replayed[0].attempt == 1  # type: ignore[attr-defined]
    assert "dead letter queue" in replayed[0].reason  # type: ignore[attr-defined]


async def _three_operations_then_denied(runner: ErrorHandler, task_id: str, tag: str) -> None:
    async with ErrorHandlingContext(
        runner,
        task_id=task_id,
        template_id="video-gen",
        operation_type="video_generation",
        task_data={"prompt": "waves"},
    ) as ctx:
        for kind in ("upload", "allocate", "reserve"):
            ctx.record_operation(f"{kind}-{tag}", {"what": kind})
        raise PermissionError("permission denied: /models/private")


def test_saga_compensates_in_reverse_exactly_once_across_a_sigkill(
    kafka_bootstrap: str, tmp_path: Path, recovery_worker: WorkerProcess
) -> None:
    asyncio.run(_saga_scenario(kafka_bootstrap, tmp_path, recovery_worker))


async def _saga_scenario(bootstrap: str, tmp_path: Path, worker: WorkerProcess) -> None:
    task_id, tag = f"it-saga-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:6]
    undone: list[str] = []
    async with _runner(bootstrap, tmp_path) as runner:
        for kind in ("upload", "allocate", "reserve"):

            async def compensate(data: dict[str, Any], kind: str = kind) -> None:
                undone.append(data["what"])
                await asyncio.sleep(0.3)  # long enough to kill the worker mid-saga

            runner.register_compensator(f"{kind}-{tag}", compensate)

        with pytest.raises(PermissionError):
            await _three_operations_then_denied(runner, task_id, tag)

        await _until(lambda: bool(undone), 20, "the first compensation ran")
        worker.kill()
        await asyncio.sleep(1.0)
        worker.start()
        await _until(lambda: len(undone) >= 3, 60, "all three compensations ran")
        await asyncio.sleep(2.0)  # any duplicate would arrive by now
    assert undone == ["reserve", "allocate", "upload"]
    answers = await _of_task(bootstrap, "errorflow.task-events", task_id)
    completed = [a for a in answers if a.type == "compensation.completed"]
    assert len(completed) == 3
