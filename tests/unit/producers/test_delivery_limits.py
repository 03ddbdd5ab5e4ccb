"""Every task ends, oversized events shrink, breakers agree: the SDK under bad luck."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import schemas as s
from producers.commands import CommandListener
from producers.limits import MAX_RECORD_BYTES, TRUNCATED_KEY, shrink
from producers.testing import InMemoryPublisher, create_test_handler
from tests.samples import SOURCE


def _published(handler: Any) -> InMemoryPublisher:
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    return publisher


async def test_a_cancelled_task_publishes_its_final_event() -> None:
    """asyncio.wait_for cancelling the task still ends it with task.failed (cancelled),
    so recovery and compensation follow; the cancellation propagates."""
    handler = create_test_handler()

    async def slow(data: dict[str, Any]) -> None:
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler.wrap_task_execution("t", "sd", "img", {}, slow), 0.05)
    types = [e.type for e in _published(handler).events]
    assert types == ["task.started", "task.failed"]
    failed = _published(handler).of_type("task.failed")[0]
    assert failed.error.rule == "builtin:cancelled"  # type: ignore[attr-defined]
    assert failed.error.error_type == "asyncio.exceptions.CancelledError"  # type: ignore[attr-defined]


async def test_a_cancelled_context_publishes_its_final_event() -> None:
    """The same with ErrorHandlingContext."""
    from producers import ErrorHandlingContext

    handler = create_test_handler()

    async def body() -> None:
        async with ErrorHandlingContext(
            handler, task_id="t", template_id="v", operation_type="video", task_data={}
        ) as ctx:
            ctx.record_operation("file_upload", {"path": "/tmp/x"})
            await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(body(), 0.05)
    types = [e.type for e in _published(handler).events]
    assert types == ["task.started", "operation.recorded", "task.failed"]


async def test_duration_is_the_whole_task_and_the_last_attempt_its_own_field() -> None:
    """Two failed attempts with backoff, then success: duration_ms covers all of it."""
    from producers import ManualClock

    clock = ManualClock()
    handler = create_test_handler(clock=clock, backoff_base_s=2.0, backoff_cap_s=2.0)
    calls = {"n": 0}

    async def flaky(data: dict[str, Any]) -> str:
        calls["n"] += 1
        clock.advance(1.0)  # each attempt takes a second
        if calls["n"] < 3:
            raise ConnectionResetError("reset")
        return "ok"

    await handler.wrap_task_execution("t", "sd", "img", {}, flaky)
    done = _published(handler).of_type("task.succeeded")[0]
    assert done.attempt_duration_ms == pytest.approx(1000)  # type: ignore[attr-defined]
    assert done.duration_ms == pytest.approx(3000 + sum(clock.slept) * 1000)  # type: ignore[attr-defined]


def test_oversized_task_data_is_replaced_by_a_marker() -> None:
    """A 2 MB task_data shrinks below the limit; the marker says how big it was."""
    event = s.TaskStarted(
        task_id="t",
        template_id="x",
        operation_type="o",
        attempt=1,
        source=SOURCE,
        task_data={"blob": "x" * 2_000_000},
    )
    value, truncated = shrink(event, s.encode(event))
    assert truncated
    assert len(value) < MAX_RECORD_BYTES
    data = json.loads(value)["task_data"]
    assert data[TRUNCATED_KEY] is True
    assert data["original_bytes"] > 2_000_000
    small = s.encode(event.model_copy(update={"task_data": {"a": 1}}))
    assert shrink(event, small) == (small, False)


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold": 0},
        {"failure_threshold": -3},
        {"recovery_timeout": 0},
        {"recovery_timeout": float("inf")},
        {"success_threshold": True},
        {"failure_rate_threshold": 1.5},
    ],
)
def test_invalid_breaker_settings_raise_at_add_breaker(options: dict[str, Any]) -> None:
    """Zero, negative, infinite or boolean settings are refused at once."""
    handler = create_test_handler()
    with pytest.raises(ValueError, match="must be"):
        handler.circuit_breakers.add_breaker("svc", **options)


def test_add_breaker_with_fleet_publishes_breaker_config() -> None:
    """fleet=True tells the stream worker the same settings."""
    handler = create_test_handler()
    handler.circuit_breakers.add_breaker("my_service", 7, 120, 2, fleet=True)
    (config,) = _published(handler).of_type("breaker.config")
    assert (config.service, config.failure_threshold, config.recovery_timeout_s) == (  # type: ignore[attr-defined]
        "my_service",
        7,
        120.0,
    )


def test_a_fleet_reset_closes_the_local_breaker() -> None:
    """A breaker.reset on the control topic closes this runner's own breaker too."""
    handler = create_test_handler()
    breaker = handler.circuit_breakers.add_breaker("comfyui", failure_threshold=1)
    breaker.record_failure()
    assert breaker.state == "open"
    listener = CommandListener(handler)
    listener._apply_breaker_state(s.encode(s.ResetBreaker(service="comfyui", source=SOURCE)))
    assert breaker.state == "closed"


def test_log_lines_carry_their_details_and_do_not_flood() -> None:
    """Extras are rendered into the line; after the burst, lines are held back and the
    next window's first line says how many."""
    import logging

    from producers.logs import RateLimit

    now = [0.0]
    limit = RateLimit(burst=3, window_s=10, clock=lambda: now[0])
    logger = logging.getLogger("errorflow.test-flood")
    logger.addFilter(limit)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.addHandler(Keep())
    logger.propagate = False
    for _ in range(1000):
        logger.warning("errorflow.publisher.delivery_failed", extra={"error": "timeout"})
    assert lines == ["errorflow.publisher.delivery_failed error=timeout"] * 3
    now[0] = 11.0
    logger.warning("errorflow.publisher.delivery_failed", extra={"error": "timeout"})
    assert lines[-1] == (
        "errorflow.publisher.delivery_failed (held back 997 similar in 10s) error=timeout"
    )
