"""Fleet breakers and retry budgets: a worker process, runners in this and other processes."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas as s
from producers import SDKConfig
from producers.handler import ErrorHandler
from tests.integration.kafka_io import kcat_produce, produce
from tests.integration.process import ROOT
from tests.integration.worker_process import WorkerProcess, read_all, running_worker

pytestmark = pytest.mark.kafka

FLEET = {
    "ERRORFLOW_WORKER_BREAKER_FAILURE_THRESHOLD": "5",
    "ERRORFLOW_WORKER_BREAKER_RECOVERY_TIMEOUT_S": "2",
    "ERRORFLOW_WORKER_BREAKER_SUCCESS_THRESHOLD": "2",
    "ERRORFLOW_WORKER_RETRY_BUDGET_RATIO": "0.1",
    "ERRORFLOW_WORKER_RETRY_BUDGET_MIN_RETRIES": "10",
    "ERRORFLOW_WORKER_RETRY_BUDGET_WINDOW_S": "30",
}


@pytest.fixture(scope="module")
def fleet_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log_dir = Path(tmp_path_factory.mktemp("fleet-worker"))
    with running_worker(kafka_bootstrap, log_dir, "it-fleet", FLEET, "breakers") as worker:
        yield worker


def _runner(bootstrap: str, tmp_path: Path, worker: str, **extra: Any) -> ErrorHandler:
    settings: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "data_dir": tmp_path / worker,
        "runner_id": f"it-{worker}",
        "worker_id": worker,
        "consume_commands": True,
        "command_group": f"it-fleet-{uuid.uuid4().hex[:6]}",
        "backoff_base_s": 0.005,
        "backoff_cap_s": 0.01,
        **extra,
    }
    return ErrorHandler(SDKConfig(**settings))


async def _refuse() -> None:
    raise ConnectionRefusedError("refused")


async def _ok() -> str:
    return "ok"


async def _wait_state(handler: ErrorHandler, service: str, want: str, timeout_s: float) -> float:
    """Seconds until ``handler`` sees the fleet state ``want`` for ``service``."""
    started = time.monotonic()
    breaker = handler.circuit_breakers.get(service)
    while time.monotonic() - started < timeout_s:
        cluster = breaker._cluster
        if cluster is not None and cluster.state == want:
            return time.monotonic() - started
        await asyncio.sleep(0.005)
    raise AssertionError(f"{service}: fleet state {want} not seen in {timeout_s}s")


async def _states(bootstrap: str, service: str) -> list[str]:
    records = await read_all(bootstrap, "errorflow.breaker-state", timeout_ms=800)
    events = [s.decode(r.value) for r in records if r.key == service.encode()]
    return [e.state for e in events]  # type: ignore[attr-defined]


async def test_failures_from_two_workers_open_half_open_probe_and_close(
    kafka_bootstrap: str, tmp_path: Path, fleet_worker: WorkerProcess
) -> None:
    """3 failures from a runner process and 2 from this one open the fleet breaker; OPEN
    reaches this process's SDK within 1 s of the threshold-crossing failure; after the
    recovery timeout this runner (the named prober) probes twice and the fleet closes."""
    service = f"comfyui-{uuid.uuid4().hex[:6]}"
    async with _runner(kafka_bootstrap, tmp_path, "gpu-b") as runner:
        await asyncio.sleep(1.0)  # its breaker-state consumer reached the end of the topic
        child = subprocess.run(
            [sys.executable, "-m", "tests.integration.failing_runner", kafka_bootstrap]
            + [service, "gpu-a", "3", str(tmp_path / "a")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip()
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                await runner.protect_external_call(service, _refuse)
        crossed = time.monotonic()
        await _wait_state(runner, service, "open", timeout_s=5)
        assert time.monotonic() - crossed <= 1.0, "fleet OPEN took longer than 1 s"
        assert runner.circuit_breakers.get(service).local_state == "closed"  # 2 local failures
        assert await runner.protect_external_call(service, _ok, fallback="cached") == "cached"

        await _wait_state(runner, service, "half_open", timeout_s=5)
        for _ in range(2):
            assert await runner.protect_external_call(service, _ok) == "ok"
        await _wait_state(runner, service, "closed", timeout_s=3)
    assert await _states(kafka_bootstrap, service) == ["open", "half_open", "closed"]


async def test_quorum_two_ignores_one_bad_worker_and_reset_closes(
    kafka_bootstrap: str, tmp_path: Path, fleet_worker: WorkerProcess
) -> None:
    """With breaker.config quorum 2 (kcat), 12 failures from one worker leave the fleet
    breaker closed; a second worker's failure opens it; breaker.reset closes it."""
    service = f"quorum-{uuid.uuid4().hex[:6]}"
    source = s.Source.here(runner_id="it-operator")
    config = s.ConfigureBreaker(source=source, service=service, quorum_workers=2)
    kcat_produce(kafka_bootstrap, "errorflow.control", s.key_of(config), s.encode(config).decode())
    await asyncio.sleep(1.0)
    async with (
        _runner(kafka_bootstrap, tmp_path, "gpu-c") as bad,
        _runner(kafka_bootstrap, tmp_path, "gpu-d", consume_commands=False) as other,
    ):
        for _ in range(4):  # local threshold 5: keep the local breaker closed
            with pytest.raises(ConnectionRefusedError):
                await bad.protect_external_call(service, _refuse)
        bad.circuit_breakers.get(service).reset()
        for _ in range(4):
            with pytest.raises(ConnectionRefusedError):
                await bad.protect_external_call(service, _refuse)
        bad.circuit_breakers.get(service).reset()
        for _ in range(4):
            with pytest.raises(ConnectionRefusedError):
                await bad.protect_external_call(service, _refuse)
        await asyncio.sleep(1.5)
        assert await _states(kafka_bootstrap, service) == []
        with pytest.raises(ConnectionRefusedError):
            await other.protect_external_call(service, _refuse)
        await _wait_state(bad, service, "open", timeout_s=3)

        reset = s.ResetBreaker(source=source, service=service)
        await produce(kafka_bootstrap, [reset])
        await _wait_state(bad, service, "closed", timeout_s=3)
    assert await _states(kafka_bootstrap, service) == ["open", "closed"]


async def test_retry_storm_is_held_to_the_fleet_budget(
    kafka_bootstrap: str, tmp_path: Path, fleet_worker: WorkerProcess
) -> None:
    """Four runners whose local budgets would allow 2 retries for every one of 240
    failing tasks (480) retry about the fleet's floor of 10 instead: the budget state
    reaches them and local retries stop."""
    service = f"storm-{uuid.uuid4().hex[:6]}"
    config = s.ConfigureBreaker(
        source=s.Source.here(runner_id="it"), service=service, failure_threshold=100_000
    )
    await produce(kafka_bootstrap, [config])  # keep the breaker out of this test
    runners = [
        _runner(
            kafka_bootstrap,
            tmp_path,
            f"storm-{i}",
            retry_budget_min_per_window=10_000,
            max_attempts=3,
        )
        for i in range(4)
    ]
    for runner in runners:
        runner.circuit_breakers.add_breaker(service=service, failure_threshold=100_000)
        await runner.start()
    await asyncio.sleep(1.0)

    async def task(runner: ErrorHandler, n: int) -> None:
        async def execute() -> None:
            await runner.protect_external_call(service, _refuse)

        with contextlib.suppress(ConnectionRefusedError):
            await runner.wrap_task_execution(
                task_id=f"{service}-{runner.config.worker_id}-{n}",
                template_id="storm",
                operation_type="image_generation",
                task_data=None,
                execute_func=execute,
            )

    seen_at: dict[str, int] = {}  # runner → its retries when the spent budget reached it

    async def drive(runner: ErrorHandler) -> None:
        name = str(runner.config.worker_id)
        for n in range(60):
            await task(runner, n)
            if name not in seen_at and runner.circuit_breakers.get(service).fleet_budget_spent:
                seen_at[name] = runner.counters["retries"]
            await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(drive(r) for r in runners))
    finally:
        for runner in runners:
            await runner.close()
    retries = sum(r.counters["retries"] for r in runners)
    after = {
        str(r.config.worker_id): r.counters["retries"] - seen_at[str(r.config.worker_id)]
        for r in runners
        if str(r.config.worker_id) in seen_at
    }
    assert len(seen_at) == 4, f"the spent budget reached only {sorted(seen_at)}"
    assert after == dict.fromkeys(after, 0), f"local retries after the budget was spent: {after}"
    assert retries >= 10, "the floor of 10 retries was not granted"
    assert retries <= 240, f"{retries} retries: the budget did not hold the storm"
