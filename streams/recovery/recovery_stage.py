"""Stage: task events → recovery commands, dead letters and compensation sagas, exactly once.

Consumes ``errorflow.task-events`` (keyed by task id, so a task's record, timers and
saga live in one partition's :class:`~streams.recovery.manager.RecoveryEngine`). Timers — due
retries, park limits, saga backoffs — fire on the stage's tick; their state is in the
changelog, so a delay survives a restart. Capacity news (``resource.available``, and
heartbeats of idle workers with a free GPU) is read group-less from
``errorflow.heartbeats`` by every worker, because a parked task may sit in any
partition; a release's command id derives from the park, so two releases of one task
are one command to runners.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition

from schemas import (
    BreakerStateChanged,
    DecodeError,
    Envelope,
    ResourceAvailable,
    RunHealingAction,
    Source,
    WorkerHeartbeat,
    decode,
)
from schemas.topics import BREAKER_STATE, HEALING_COMMANDS, HEARTBEATS, TASK_EVENTS
from streams.engine import EngineStage, Output
from streams.engine.stage import Record
from streams.facts import epoch_ms
from streams.fastpath import read_progress
from streams.follow import follow_events
from streams.outputs import output_of
from streams.recovery.manager import RecoveryEngine
from streams.settings import WorkerSettings

__all__ = ["RecoveryStage", "capacity_of"]

log = logging.getLogger("errorflow.worker.recovery")


def capacity_of(event: Envelope) -> list[tuple[str, float, str]]:
    """(resource kind, amount, worker) that ``event`` shows free."""
    if isinstance(event, ResourceAvailable):
        return [(event.resource_kind, event.amount, event.worker_id)]
    if isinstance(event, WorkerHeartbeat) and event.in_flight == 0 and event.queue_depth == 0:
        free = sum(1 for gpu in event.gpu or [] if gpu.available)
        return [("gpu", free, event.worker_id)] if free else []
    return []


class RecoveryStage(EngineStage[RecoveryEngine]):
    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(
            settings.engine(),
            name="recovery",
            topics=[TASK_EVENTS.name],
            start_from=settings.start_from,
        )
        self.settings = settings
        self.source = source
        self.config = settings.recovery()
        self.open_until: dict[str, int] = {}

    def new_engine(self, tp: TopicPartition) -> RecoveryEngine:
        return RecoveryEngine(self.config, self.source, self.open_until)

    def feed(self, engine: RecoveryEngine, record: Record) -> None:
        progress = read_progress(record.value)
        if progress is not None:
            engine.progress(*progress)
            return
        try:
            event = decode(record.value or b"")
        except DecodeError:
            # The ingest stage judges this record the same way and sends it to
            # errorflow.poison (streams.fastpath: one verdict for every stage).
            self.undecodable += 1
            return
        engine.apply(event, self.now_ms())

    def collect(self, engine: RecoveryEngine, now_ms: int) -> list[Output]:
        return [output_of(event) for event in engine.tick(now_ms)]

    def changes(self, engine: RecoveryEngine) -> dict[str, Any | None]:
        return engine.changes()

    def load(self, engine: RecoveryEngine, entries: dict[str, Any]) -> None:
        engine.load(entries)

    async def background(self, stop: asyncio.Event) -> None:
        await asyncio.gather(  # each kept alive on its own (one failing stops no other)
            self.keep("capacity", self._follow_capacity, stop),
            self.keep("breakers", self._follow_breakers, stop),
            self.keep("lost_workers", self._follow_lost, stop),
        )

    async def _follow_lost(self, stop: asyncio.Event) -> None:
        """Workers self-healing declared lost (a ``restart_worker`` sent to the
        supervisor because the worker stopped heartbeating): their in-flight tasks may
        sit in any partition, so every engine hears of it. Read group-less from the
        commands still unexpired; repeats are harmless (ids derive from the command)."""
        lookback = self.settings.healing_ttl_s
        async for event in follow_events(
            self.settings, [HEALING_COMMANDS.name], stop, lookback_s=lookback
        ):
            if not isinstance(event, RunHealingAction) or not event.for_supervisor:
                continue
            now_ms = self.now_ms()
            if epoch_ms(event.expires_at) <= now_ms:
                continue
            for tp, engine in self.engines.items():
                handed = engine.worker_lost(event.worker_id, event.command_id, now_ms)
                if handed:
                    log.warning(
                        "errorflow.worker.worker_lost worker=%s partition=%d tasks_retried=%d",
                        event.worker_id,
                        tp.partition,
                        handed,
                    )
                    self.touch(tp)

    async def _follow_breakers(self, stop: asyncio.Event) -> None:
        """Which services' fleet breakers are open (or half-open): retries for them
        wait. A state holds for twice its recovery timeout unless said again (the
        breaker stage re-publishes non-closed states), like the SDK's lease."""
        async for event in follow_events(self.settings, [BREAKER_STATE.name], stop):
            if not isinstance(event, BreakerStateChanged):
                continue
            if event.state == "closed":
                self.open_until.pop(event.service, None)
            else:
                timeout = event.recovery_timeout_s or 60.0
                said = epoch_ms(event.occurred_at)
                self.open_until[event.service] = said + int(2000 * float(timeout))

    async def _follow_capacity(self, stop: asyncio.Event) -> None:
        """Capacity news, applied to every engine as it arrives."""
        lookback = self.settings.resource_lookback_s
        async for event in follow_events(
            self.settings, [HEARTBEATS.name], stop, lookback_s=lookback
        ):
            found = capacity_of(event)
            if not found:
                continue
            at_ms = epoch_ms(event.occurred_at)
            now_ms = self.now_ms()
            for tp, engine in self.engines.items():
                for kind, amount, where in found:
                    engine.capacity(kind, amount, where, at_ms, now_ms)
                self.touch(tp)
