"""``create_app(settings)``: the one factory of the stream worker.

The worker runs its stages in one process — :mod:`streams.analytics.ingest_stage` and
:mod:`streams.analytics.detection_stage` (windows, anomalies, alerts),
:mod:`streams.breakers.breaker_stage` (fleet breakers and retry budgets),
:mod:`streams.recovery.recovery_stage` (recovery commands, dead letters, compensation
sagas) — over its own internal topics
(``<app_id>-partials``, ``-windows`` and each stage's ``-<stage>-state`` changelog),
created here if missing. Start more processes with
distinct ``ERRORFLOW_WORKER_NAME`` to share the partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from deploy.topics import create_topics
from schemas import Source
from streams.analytics.detection_stage import DetectionStage
from streams.analytics.ingest_stage import IngestStage
from streams.breakers.breaker_stage import BreakerStage
from streams.engine.stage import EngineStage
from streams.healing.healing_stage import HealingStage
from streams.recovery.recovery_stage import RecoveryStage
from streams.settings import WorkerSettings

__all__ = ["WorkerApp", "create_app"]

log = logging.getLogger("errorflow.worker")


@dataclass
class WorkerApp:
    settings: WorkerSettings
    ingest: IngestStage
    detection: DetectionStage
    breakers: BreakerStage
    recovery: RecoveryStage
    healing: HealingStage | None = None

    @property
    def stages(self) -> list[EngineStage[Any]]:
        stages: list[EngineStage[Any]] = [self.ingest, self.detection, self.breakers, self.recovery]
        return [*stages, self.healing] if self.healing is not None else stages

    async def run(self, stop: asyncio.Event) -> None:
        if not await self._wait_for_kafka(stop):
            return
        report = asyncio.create_task(self._report(stop))
        side = []
        if self.settings.metrics_port:
            from streams.observe import serve_observer

            port = self.settings.metrics_port
            side.append(
                asyncio.create_task(serve_observer(self, self.settings.metrics_host, port, stop))
            )
        try:
            await asyncio.gather(*(s.run(stop) for s in self.stages))
        finally:
            report.cancel()
            for task in side:
                task.cancel()

    async def _report(self, stop: asyncio.Event, every_s: float = 10.0) -> None:
        while not stop.is_set():
            await asyncio.sleep(every_s)
            log.info(
                "errorflow.worker.progress consumed=%d poisoned=%d engines=%d %s late=%d "
                "breaker_states=%d recovery_outputs=%d aborts=%d",
                self.ingest.consumed,
                self.ingest.poisoned,
                len(self.detection.engines),
                self.detection.counters,
                self.detection.late_dropped(),
                self.breakers.emitted,
                self.recovery.emitted,
                sum(stage.aborts for stage in self.stages),
            )

    async def _wait_for_kafka(self, stop: asyncio.Event) -> bool:
        """Create the topics, waiting (with a log line per try, backoff up to 30 s) for
        a broker that is not there yet: a worker started before Kafka waits for it
        instead of dying. False when stopped first."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self.ensure_topics()
                return True
            except KafkaError as exc:
                log.warning(
                    "errorflow.worker.waiting_for_kafka bootstrap=%s retry_in_s=%.0f error=%s",
                    self.settings.kafka_bootstrap_servers,
                    delay,
                    exc,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    async def ensure_topics(self) -> None:
        """The contract's topics and the worker's internal ones, with leaders."""
        settings = self.settings
        internal = [topic for stage in self.stages for topic in stage.internal_topics()]
        await create_topics(settings.kafka_bootstrap_servers, extra=internal)


class _SpuriousNotEnoughReplicas(logging.Filter):
    """Brokers since Kafka 3.6 verify that a transactional produce's partition joined the
    transaction; while the coordinator is still finishing the previous transaction they
    answer NOT_ENOUGH_REPLICAS (KAFKA-15459), which aiokafka retries successfully but
    logs as a warning every time (aio-libs/aiokafka#1172). Nothing is lost; a worker
    that commits every few hundred milliseconds would log it constantly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NotEnoughReplicasError" not in record.getMessage()


def create_app(settings: WorkerSettings | None = None) -> WorkerApp:
    settings = settings or WorkerSettings()
    sender = logging.getLogger("aiokafka.producer.sender")
    if not any(isinstance(f, _SpuriousNotEnoughReplicas) for f in sender.filters):
        sender.addFilter(_SpuriousNotEnoughReplicas())
    source = Source.here(runner_id=settings.app_id, worker_id=settings.name)
    return WorkerApp(
        settings,
        IngestStage(settings, source),
        DetectionStage(settings, source),
        BreakerStage(settings, source),
        RecoveryStage(settings, source),
        HealingStage(settings, source) if settings.healing_enabled else None,
    )
