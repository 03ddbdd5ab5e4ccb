"""Test helpers for runners' own unit tests: an in-memory handler, no Kafka.

handler = create_test_handler()
await handler.wrap_task_execution(...)
assert [e.type for e in handler.publisher.events] == ["task.started", "task.succeeded"]
"""

from __future__ import annotations

from typing import Any

from producers.clock import Clock, ManualClock
from producers.config import SDKConfig
from producers.handler import ErrorHandler
from producers.pending import PendingEvent, materialize
from schemas import Envelope

__all__ = ["InMemoryPublisher", "create_test_handler"]


class InMemoryPublisher:
    """Keeps every published event in ``events``, in order."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []

    def publish(self, event: Envelope | PendingEvent) -> None:
        self.events.append(materialize(event))

    async def start(self) -> None:
        return None

    async def close(self, timeout_s: float = 10.0) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "published": len(self.events),
            "sent": len(self.events),
            "spooled": 0,
            "dropped": 0,
            "delivery_failures": 0,
            "pending": 0,
        }

    def of_type(self, type_: str) -> list[Envelope]:
        return [e for e in self.events if e.type == type_]


def create_test_handler(*, clock: Clock | None = None, **config: Any) -> ErrorHandler:
    """A handler publishing to an :class:`InMemoryPublisher`, with a manual clock (so
    backoff sleeps return at once) and no command consumption."""
    settings = SDKConfig(**{"consume_commands": False, "runner_id": "test", **config})
    return ErrorHandler(settings, publisher=InMemoryPublisher(), clock=clock or ManualClock())
