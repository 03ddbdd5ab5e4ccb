"""The handler's behaviour with an in-memory publisher and a manual clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from producers import (
    CircuitOpenError,
    ErrorHandlingContext,
    ErrorHandlingIntegration,
    ManualClock,
    ResourceError,
    with_error_handling,
)
from producers.handler import ErrorHandler
from producers.testing import InMemoryPublisher, create_test_handler


def _events(handler: ErrorHandler) -> InMemoryPublisher:
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    return publisher


def _failing(times: int, exc: BaseException) -> Any:
    calls = {"n": 0}

    async def run(data: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        return f"done:{data['prompt']}"

    return run


async def test_transient_errors_are_retried_then_succeed() -> None:
    """Two resets then success: started, two attempt_failed (transient), succeeded."""
    handler = create_test_handler()
    result = await handler.wrap_task_execution(
        task_id="t1",
        template_id="sd",
        operation_type="image_generation",
        task_data={"prompt": "x"},
        execute_func=_failing(2, ConnectionResetError("reset")),
    )
    assert result == "done:x"
    events = _events(handler).events
    assert [e.type for e in events] == [
        "task.started",
        "task.attempt_failed",
        "task.attempt_failed",
        "task.succeeded",
    ]
    assert [getattr(e, "attempt", None) for e in events] == [1, 1, 2, 3]
    assert all(e.error.category == "transient" for e in events[1:3])  # type: ignore[attr-defined]


async def test_backoff_delays_are_slept_and_honour_retry_after() -> None:
    """The handler sleeps the planned delay; Retry-After sets its floor."""
    clock = ManualClock()
    handler = create_test_handler(clock=clock, backoff_base_s=0.01, backoff_cap_s=0.02)
    exc = ConnectionError("429")
    exc.retry_after = 3  # type: ignore[attr-defined]
    await handler.wrap_task_execution("t", "sd", "img", {"prompt": "p"}, _failing(1, exc))
    assert clock.slept == [3]
    failed = _events(handler).of_type("task.attempt_failed")[0]
    assert failed.retry_delay_s == 3  # type: ignore[attr-defined]


async def test_out_of_attempts_publishes_task_failed_and_raises_the_original() -> None:
    """After max_attempts the original exception propagates, annotated; task.failed says so."""
    handler = create_test_handler(max_attempts=2)
    with pytest.raises(ConnectionResetError) as info:
        await handler.wrap_task_execution(
            "t", "sd", "img", {"prompt": "p"}, _failing(5, ConnectionResetError("reset"))
        )
    assert info.value.errorflow_error.category == "transient"  # type: ignore[attr-defined]
    assert "attempt 2 of 2" in info.value.__notes__[0]
    failed = _events(handler).of_type("task.failed")[0]
    assert failed.attempts == 2  # type: ignore[attr-defined]
    assert failed.task_data == {"prompt": "p"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "category"),
    [
        (ValueError("bad size"), "validation"),
        (PermissionError("denied"), "permanent"),
        (ResourceError("no GPU", resource_kind="gpu"), "resource"),
    ],
)
async def test_non_transient_errors_are_not_retried(exc: Exception, category: str) -> None:
    """Validation, permanent and resource errors fail at once with one task.failed."""
    handler = create_test_handler()
    with pytest.raises(type(exc)):
        await handler.wrap_task_execution("t", "sd", "img", {"prompt": "p"}, _failing(1, exc))
    types = [e.type for e in _events(handler).events]
    assert types == ["task.started", "task.failed"]
    failed = _events(handler).of_type("task.failed")[0]
    assert failed.error.category == category  # type: ignore[attr-defined]
    if category == "resource":
        assert failed.resource.kind == "gpu"  # type: ignore[attr-defined]


async def test_deadline_stops_retries() -> None:
    """A retry that would end past the task deadline is not attempted. (Retry-After 10 s
    is the delay's floor: full jitter alone could draw a delay inside the deadline.)"""
    handler = create_test_handler(backoff_base_s=10, backoff_cap_s=10, task_deadline_s=1)
    handler.backoff = handler.backoff.__class__(10, 10, True)
    slow_down = ConnectionResetError()
    slow_down.retry_after = 10  # type: ignore[attr-defined]
    with pytest.raises(ConnectionResetError) as info:
        await handler.wrap_task_execution("t", "sd", "img", None, _failing(1, slow_down))
    assert "deadline" in info.value.__notes__[0]


async def test_retry_budget_prevents_a_retry_storm() -> None:
    """With the budget spent, failing tasks are not retried locally."""
    handler = create_test_handler(retry_budget_min_per_window=3, retry_budget_ratio=0.0)
    for i in range(5):
        with pytest.raises(ConnectionResetError):
            await handler.wrap_task_execution(
                f"t{i}", "sd", "img", None, _failing(99, ConnectionResetError())
            )
    assert len(_events(handler).of_type("task.attempt_failed")) == 3


async def test_sync_execute_func_runs_off_the_event_loop() -> None:
    """A blocking function runs in a worker thread, not the loop's thread."""
    handler = create_test_handler()
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def blocking(data: dict[str, Any]) -> int:
        seen.append(threading.get_ident())
        return len(data)

    assert await handler.wrap_task_execution("t", "sd", "img", {"a": 1}, blocking) == 1
    assert seen
    assert seen[0] != loop_thread


async def test_protect_external_call_publishes_every_outcome() -> None:
    """success, failure, then rejected and fallback once the breaker is open."""
    handler = create_test_handler()
    handler.circuit_breakers.add_breaker(
        "comfyui", failure_threshold=2, recovery_timeout=60, success_threshold=1
    )

    async def ok() -> str:
        return "ok"

    async def boom() -> str:
        raise ConnectionResetError("down")

    assert await handler.protect_external_call("comfyui", ok) == "ok"
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await handler.protect_external_call("comfyui", boom)
    with pytest.raises(CircuitOpenError):
        await handler.protect_external_call("comfyui", ok)
    assert await handler.protect_external_call("comfyui", ok, fallback="cached") == "cached"
    assert (
        await handler.protect_external_call("comfyui", ok, fallback=lambda: "computed")
        == "computed"
    )
    outcomes = [e.outcome for e in _events(handler).of_type("call.completed")]  # type: ignore[attr-defined]
    assert outcomes == ["success", "failure", "failure", "rejected", "fallback", "fallback"]


async def test_validation_errors_from_a_service_do_not_trip_its_breaker() -> None:
    """A 400-style error means the service is up: the breaker stays closed."""
    handler = create_test_handler()
    handler.circuit_breakers.add_breaker("svc", failure_threshold=1)

    async def bad() -> None:
        raise ValueError("bad workflow")

    for _ in range(3):
        with pytest.raises(ValueError, match="bad workflow"):
            await handler.protect_external_call("svc", bad)
    assert handler.circuit_breakers.get("svc").state == "closed"


async def test_decorator_and_context_manager_keep_the_seed_api() -> None:
    """@with_error_handling on a method and ErrorHandlingContext work as in the seed."""
    handler = create_test_handler()
    assert ErrorHandlingIntegration is ErrorHandler

    class ImageGenerator:
        def __init__(self) -> None:
            self._error_handler = handler

        @with_error_handling(operation_type="image_generation", service="comfyui")
        async def generate(self, task_id: str, template_id: str, prompt: str) -> str:
            return prompt.upper()

    assert await ImageGenerator().generate("task-9", "stable-diffusion", prompt="cat") == "CAT"
    started = _events(handler).of_type("task.started")[0]
    assert (started.task_id, started.task_data) == ("task-9", {"prompt": "cat"})  # type: ignore[attr-defined]
    assert _events(handler).of_type("call.completed")[0].task_id == "task-9"  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="bad frames"):  # noqa: PT012 - the block is the task
        async with ErrorHandlingContext(
            handler,
            task_id="task-456",
            template_id="video-gen",
            operation_type="video_generation",
            task_data={"frames": 0},
        ) as ctx:
            ctx.record_operation("file_upload", {"file_path": "/tmp/input.mp4"})
            ctx.record_operation("resource_allocation", {"allocation_id": "gpu-123"})
            raise ValueError("bad frames")
    tail = [e.type for e in _events(handler).events if getattr(e, "task_id", "") == "task-456"]
    assert tail == ["task.started", "operation.recorded", "operation.recorded", "task.failed"]
