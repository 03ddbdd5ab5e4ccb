"""Stage: every runner's calls → fleet breaker states and retry budgets, exactly once.

Consumes ``errorflow.call-events`` (keyed by service, so one partition owns a service)
with one :class:`~streams.breaker_board.BreakerBoard` per partition, and publishes each
transition, budget flip and re-publish to the compacted ``errorflow.breaker-state``. It
checkpoints right after every batch: the time from the call that crosses the threshold
to OPEN on the topic is one fetch plus one transaction (benchmarks/breaker_latency.py).
``breaker.config`` and ``breaker.reset`` come from the control topic, read group-less.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from schemas import ConfigureBreaker, DecodeError, ResetBreaker, Source
from schemas.topics import CALL_EVENTS, CONTROL
from streams.breaker_board import BreakerBoard, breaker_config
from streams.emit import breaker_event
from streams.facts import epoch_ms
from streams.fastpath import read_facts
from streams.fleet_breaker import FleetBreakerConfig
from streams.follow import follow_events
from streams.settings import WorkerSettings
from streams.stage import EngineStage, Output

__all__ = ["BreakerStage"]

log = logging.getLogger("errorflow.worker.breakers")
_partitioner = DefaultPartitioner()


class BreakerStage(EngineStage[BreakerBoard]):
    urgent = True

    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(
            settings,
            source,
            name="breakers",
            topics=[CALL_EVENTS.name],
            start_from=settings.start_from,
        )
        self.board_config = settings.board()
        self.overrides: dict[str, FleetBreakerConfig] = {}
        self.resets: dict[str, int] = {}

    def new_engine(self) -> BreakerBoard:
        return BreakerBoard(self.board_config, self.overrides)

    def feed(self, engine: BreakerBoard, value: bytes | None, key: bytes | None) -> None:
        try:
            facts = read_facts(value)
        except DecodeError:
            self.undecodable += 1  # the ingest stage sends it to errorflow.poison
            return
        if facts is not None and facts.type == "call.completed":
            engine.observe(facts)

    def has_news(self, engine: BreakerBoard) -> bool:
        return engine.has_news()

    def collect(self, engine: BreakerBoard, now_ms: int) -> list[Output]:
        return [Output.event(breaker_event(p, self.source)) for p in engine.tick(now_ms)]

    def changes(self, engine: BreakerBoard) -> dict[str, Any | None]:
        return engine.changes()

    def load(self, engine: BreakerBoard, entries: dict[str, Any]) -> None:
        engine.load(entries)

    async def restore(self, partitions: list[int]) -> None:
        await super().restore(partitions)
        for service, at_ms in self.resets.items():
            self._reset(service, at_ms)

    def _owner(self, service: str) -> int | None:
        partitions = self._consumer.partitions_for_topic(CALL_EVENTS.name)
        if not partitions:
            return None
        every = sorted(partitions)
        return int(_partitioner(service.encode(), every, every))

    def _reset(self, service: str, at_ms: int) -> None:
        partition = self._owner(service)
        board = self.engines.get(partition) if partition is not None else None
        if board is not None:
            board.reset(service, at_ms)
            self.touch(partition)  # type: ignore[arg-type]

    async def background(self, stop: asyncio.Event) -> None:
        """``breaker.config`` and ``breaker.reset``, applied as they arrive."""
        async for event in follow_events(self.settings, [CONTROL.name], stop):
            if isinstance(event, ConfigureBreaker):
                config = breaker_config(event, self.board_config.defaults)
                self.overrides[event.service] = config
                for board in self.engines.values():
                    board.configure(event.service, config)
                log.info("errorflow.worker.breaker_config service=%s", event.service)
            elif isinstance(event, ResetBreaker):
                at_ms = epoch_ms(event.occurred_at)
                self.resets[event.service] = at_ms
                self._reset(event.service, at_ms)
                await self.checkpoint()
