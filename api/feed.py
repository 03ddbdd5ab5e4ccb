"""The live feed behind ``/api/v1/errors/ws``: errors, anomalies, alerts, breaker
transitions and healing actions as they reach Kafka.

One group-less consumer per API process reads the topics from their end and fans every
item out to the connected clients. Each client has a bounded queue: a slow client loses
its *oldest* items (counted, and told in the next ping) and never slows the others or
the consumer. Items are JSON objects with a ``type`` field — ``error`` (a failed task
attempt or call), ``anomaly``, ``alert``, ``breaker``, ``healing`` — the original
design's client checks ``data.type === 'error'`` — plus ``service`` / ``template_id``
where the event has them, and the whole ``event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

import schemas as s
from schemas.topics import (
    ALERTS,
    ANOMALIES,
    BREAKER_STATE,
    CALL_EVENTS,
    HEALING_COMMANDS,
    HEARTBEATS,
    TASK_EVENTS,
)

__all__ = ["Client", "LiveFeed", "item_of"]

log = logging.getLogger("errorflow.api.feed")
QUEUE = 1000


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def item_of(event: s.Envelope) -> dict[str, Any] | None:
    """The feed item of one event, or None when it is not feed news."""
    if isinstance(event, s.TaskAttemptFailed | s.TaskFailed):
        kind = "error"
    elif isinstance(event, s.CallCompleted):
        if event.outcome == "success":
            return None
        kind = "error"
    elif isinstance(event, s.AnomalyDetected):
        kind = "anomaly"
    elif isinstance(event, s.AlertFiring | s.AlertResolved):
        kind = "alert"
    elif isinstance(event, s.BreakerStateChanged):
        kind = "breaker"
    elif isinstance(event, s.RunHealingAction | s.HealingResult):
        kind = "healing"
    else:
        return None
    body = event.model_dump(mode="json")
    key, labels, error = (_mapping(body.get(name)) for name in ("key", "labels", "error"))
    service = (
        body.get("service") or key.get("service") or labels.get("service") or error.get("service")
    )
    template = body.get("template_id") or key.get("template_id") or labels.get("template_id")
    return {
        "type": kind,
        "event_type": event.type,
        "occurred_at": body["occurred_at"],
        "service": service,
        "template_id": template,
        "event": body,
    }


@dataclass(eq=False)
class Client:
    """One connected socket's filters and queue."""

    service: str | None = None
    template_id: str | None = None
    types: frozenset[str] = frozenset()
    queue: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=QUEUE))
    dropped: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, item: dict[str, Any]) -> bool:
        return (
            (not self.types or item["type"] in self.types)
            and (self.service is None or item["service"] == self.service)
            and (self.template_id is None or item["template_id"] == self.template_id)
        )

    def offer(self, item: dict[str, Any]) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # the deque drops the oldest
        self.queue.append(item)
        self.ready.set()


class LiveFeed:
    """Started lazily by the first client; stopped with the app."""

    topics = [
        TASK_EVENTS.name,
        CALL_EVENTS.name,
        ANOMALIES.name,
        ALERTS.name,
        BREAKER_STATE.name,
        HEALING_COMMANDS.name,
        HEARTBEATS.name,
    ]

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.clients: set[Client] = set()
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._assigned = asyncio.Event()

    async def join(self, client: Client) -> None:
        self.clients.add(client)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="errorflow-live-feed")
        # Positioned at the topics' ends before the client hears "ready": nothing
        # produced after that is missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._assigned.wait(), 20)

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                *self.topics,
                bootstrap_servers=self.bootstrap,
                group_id=None,
                auto_offset_reset="latest",
                isolation_level="read_committed",
                fetch_max_wait_ms=100,
            )
            try:
                await consumer.start()
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=100)
                for tp in consumer.assignment():
                    await consumer.position(tp)  # resolve "latest" now
                self._assigned.set()
                delay = 0.5
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for records in batch.values():
                        for record in records:
                            self._fan_out(record.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Kafka away: retry, clients stay
                log.warning("errorflow.api.feed_failed error=%r retry_in_s=%.1f", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _fan_out(self, raw: bytes | None) -> None:
        if raw is None or not self.clients:
            return
        try:
            item = item_of(s.decode(raw))
        except s.DecodeError:
            return  # poison is the pipeline's to record, not the feed's
        if item is None:
            return
        for client in list(self.clients):
            if client.wants(item):
                client.offer(item)
                self.sent += 1
