"""``create_app(settings)``: the one factory of the stream worker.

The worker runs two stages in one process (see :mod:`streams.ingest` and
:mod:`streams.detection`) over its own internal topics (``<app_id>-partials``,
``-state``, ``-windows``), created here if missing. Start more processes with
distinct ``ERRORFLOW_WORKER_NAME`` to share the partitions.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.topics import create_topics
from schemas import Source
from streams.detection import DetectionStage
from streams.ingest import IngestStage
from streams.settings import WorkerSettings

__all__ = ["WorkerApp", "create_app"]

log = logging.getLogger("errorflow.worker")


@dataclass
class WorkerApp:
    settings: WorkerSettings
    ingest: IngestStage
    detection: DetectionStage

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_topics()
        report = asyncio.create_task(self._report(stop))
        try:
            await asyncio.gather(self.ingest.run(stop), self.detection.run(stop))
        finally:
            report.cancel()

    async def _report(self, stop: asyncio.Event, every_s: float = 10.0) -> None:
        while not stop.is_set():
            await asyncio.sleep(every_s)
            log.info(
                "errorflow.worker.progress consumed=%d poisoned=%d engines=%d %s",
                self.ingest.consumed,
                self.ingest.poisoned,
                len(self.detection.engines),
                self.detection.counters,
            )

    async def ensure_topics(self) -> None:
        settings = self.settings
        await create_topics(settings.kafka_bootstrap_servers)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(settings.topic("partials"), settings.internal_partitions, 1),
                NewTopic(
                    settings.topic("state"),
                    settings.internal_partitions,
                    1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
                NewTopic(settings.topic("windows"), settings.internal_partitions, 1),
            ]
            missing = [t for t in wanted if t.name not in existing]
            if missing:
                await admin.create_topics(missing)
        finally:
            await admin.close()


def create_app(settings: WorkerSettings | None = None) -> WorkerApp:
    settings = settings or WorkerSettings()
    source = Source.here(runner_id=settings.app_id, worker_id=settings.name)
    return WorkerApp(settings, IngestStage(settings, source), DetectionStage(settings, source))
