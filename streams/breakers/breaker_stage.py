"""Stage: every runner's calls → fleet breaker states and retry budgets, exactly once.

Consumes ``errorflow.call-events`` (keyed by service, so one partition owns a service)
with one :class:`~streams.breakers.board.BreakerBoard` per partition, and publishes each
transition, budget flip and re-publish to the compacted ``errorflow.breaker-state``. It
checkpoints right after every batch: the time from the call that crosses the threshold
to OPEN on the topic is one fetch plus one transaction (benchmarks/breaker_latency.py).
``breaker.config`` and ``breaker.reset`` come from the control topic, read group-less.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas import ConfigureBreaker, DecodeError, ResetBreaker, Source
from schemas.topics import CALL_EVENTS, CONTROL
from streams.breakers.board import BreakerBoard, breaker_config
from streams.breakers.fleet_breaker import FleetBreakerConfig
from streams.breakers.records import breaker_event
from streams.engine import EngineStage, Output
from streams.engine.stage import Record
from streams.facts import epoch_ms
from streams.fastpath import read_facts
from streams.follow import follow_events
from streams.outputs import output_of
from streams.settings import WorkerSettings

__all__ = ["BreakerStage"]

log = logging.getLogger("errorflow.worker.breakers")
_partitioner = DefaultPartitioner()


class BreakerStage(EngineStage[BreakerBoard]):
    urgent = True

    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(
            settings.engine(),
            name="breakers",
            topics=[CALL_EVENTS.name],
            start_from=settings.start_from,
        )
        self.settings = settings
        self.source = source
        self.board_config = settings.board()
        self.overrides: dict[str, FleetBreakerConfig] = {}
        self.resets: dict[str, int] = {}

    def new_engine(self, tp: TopicPartition) -> BreakerBoard:
        return BreakerBoard(self.board_config, self.overrides)

    def feed(self, engine: BreakerBoard, record: Record) -> None:
        try:
            facts = read_facts(record.value)
        except DecodeError:
            self.undecodable += 1  # the ingest stage sends it to errorflow.poison
            return
        if facts is not None and facts.type == "call.completed":
            engine.observe(facts)

    def has_news(self, engine: BreakerBoard) -> bool:
        return engine.has_news()

    def collect(self, engine: BreakerBoard, now_ms: int) -> list[Output]:
        return [output_of(breaker_event(p, self.source)) for p in engine.tick(now_ms)]

    def changes(self, engine: BreakerBoard) -> dict[str, Any | None]:
        return engine.changes()

    def load(self, engine: BreakerBoard, entries: dict[str, Any]) -> None:
        engine.load(entries)

    async def restore(self, tps: list[TopicPartition]) -> None:
        await super().restore(tps)
        for service, at_ms in self.resets.items():
            self._reset(service, at_ms)

    def _owner(self, service: str) -> TopicPartition | None:
        consumer = self._consumer
        partitions = consumer.partitions_for_topic(CALL_EVENTS.name) if consumer else None
        if not partitions:
            return None
        every = sorted(partitions)
        return TopicPartition(CALL_EVENTS.name, int(_partitioner(service.encode(), every, every)))

    def _reset(self, service: str, at_ms: int) -> None:
        tp = self._owner(service)
        board = self.engines.get(tp) if tp is not None else None
        if board is not None and tp is not None:
            board.reset(service, at_ms)
            self.touch(tp)  # checkpointed at once by the stage's loop

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
