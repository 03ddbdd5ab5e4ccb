"""What every route shares: ClickHouse, the Kafka producer for control events, the
access guard's dependencies, the live feed. The API owns no other state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import Depends, HTTPException

import schemas as s
from api.feed import LiveFeed
from api.security import ApiSettings, Guard
from deploy.publish import send_event
from schemas.topics import CONTROL
from sinks.clickhouse import AsyncClickHouse

__all__ = ["ApiContext"]

T = TypeVar("T")


@dataclass
class ApiContext:
    ch: AsyncClickHouse  # reads (the sink's client on chDB)
    user_ch: AsyncClickHouse  # user SQL (a session and thread of its own with a server)
    bootstrap_servers: str
    settings: ApiSettings
    database: str = "errorflow"
    #: The sink's state for /health and /metrics.
    health: Callable[[], dict[str, Any]] | None = None
    source: s.Source = field(default_factory=lambda: s.Source.here(runner_id="errorflow-api"))
    feed: LiveFeed = field(init=False)
    _producer: AIOKafkaProducer | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        guard = Guard(self.settings)
        self.read = [Depends(guard.read)]
        self.mutate = [Depends(guard.mutation)]
        self.feed = LiveFeed(self.bootstrap_servers)

    async def query(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One :mod:`sinks.queries` function on the reads' client, off the event loop."""
        result: T = await self.ch.run(func, self.ch.client, *args, database=self.database, **kwargs)
        return result

    async def publish(self, event: s.Envelope) -> None:
        """One control event to Kafka, confirmed; 503 when Kafka does not take it."""
        if self._producer is None:
            started = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers, acks="all", request_timeout_ms=10_000
            )
            try:
                await asyncio.wait_for(started.start(), 10)
            except Exception as exc:  # noqa: BLE001 - reported to the caller as 503
                await started.stop()
                raise HTTPException(503, f"Kafka unreachable: {type(exc).__name__}") from None
            self._producer = started
        try:
            await asyncio.wait_for(send_event(self._producer, event), 15)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(
                503, f"Kafka did not take the event: {type(exc).__name__}"
            ) from None

    async def kafka_reachable(self) -> bool:
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.partitions_for(CONTROL.name), 3)
                return True
            except Exception:  # noqa: BLE001
                return False
        probe = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(probe.start(), 3)
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            await probe.stop()

    async def close(self) -> None:
        await self.feed.stop()
        if self._producer is not None:
            await self._producer.stop()
