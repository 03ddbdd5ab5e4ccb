"""Stage 1: task and call events → partial counts, exactly once.

Each fetched batch is decoded (undecodable records go to ``errorflow.poison`` with
topic, partition, offset and reason), summed per (key, time bucket), and the partial
counts, the poison records and the consumed offsets are committed in one Kafka
transaction: a crash repeats nothing and loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from schemas import DecodeError, PoisonRecorded, Source, encode, key_of
from schemas.topics import CALL_EVENTS, POISON, TASK_EVENTS
from streams.fastpath import read_facts
from streams.partials import aggregate, encode_mark, encode_partial
from streams.settings import WorkerSettings

__all__ = ["IngestStage"]

log = logging.getLogger("errorflow.worker.ingest")


class _PinStart(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits the starting position of partitions the group has never committed, so a
    restart resumes where the first run began — not at a later "latest"."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        fresh = {}
        for tp in assigned:
            if await self.consumer.committed(tp) is None:
                fresh[tp] = await self.consumer.position(tp)
        if fresh:
            await self.consumer.commit(fresh)


class IngestStage:
    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        self.settings = settings
        self.source = source
        self.group = f"{settings.app_id}-ingest"
        self.consumed = 0
        self.poisoned = 0
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=settings.start_from,
            isolation_level="read_committed",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(300, settings.session_timeout_ms // 5),
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            transactional_id=f"{settings.app_id}-ingest-{settings.name}",
            enable_idempotence=True,
            linger_ms=5,
            transaction_timeout_ms=15_000,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe(
            [TASK_EVENTS.name, CALL_EVENTS.name], listener=_PinStart(self._consumer)
        )
        try:
            while not stop.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=200, max_records=self.settings.batch_records
                )
                if batch:
                    await self._process(batch)
        finally:
            await self._consumer.stop()
            await self._producer.stop()

    async def _process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        events, poison = [], []
        offsets, marks = {}, {}
        for tp, records in batch.items():
            newest = 0
            for record in records:
                self.consumed += 1
                try:
                    facts = read_facts(record.value)
                except DecodeError as exc:
                    poison.append(self._poison(tp, record.offset, record.value, exc.reason))
                    continue
                if facts is not None:
                    events.append(facts)
                    newest = max(newest, facts.ts_ms)
            offsets[tp] = records[-1].offset + 1
            if newest:
                marks[f"{tp.topic}:{tp.partition}"] = newest
        partials = aggregate(events, self.settings.step_ms)
        topic = self.settings.topic("partials")
        partitions = sorted(await self._producer.partitions_for(topic))
        async with self._producer.transaction():
            for (key, bucket), counts in partials.items():
                await self._producer.send(
                    topic, encode_partial(key, bucket, counts), key=key.encode()
                )
            # Marks after the partials: an engine never sees a mark before the counts
            # it covers.
            for source, ts in marks.items():
                for partition in partitions:
                    await self._producer.send(topic, encode_mark(source, ts), partition=partition)
            for record in poison:
                await self._producer.send(
                    POISON.name,
                    encode(record),
                    key=key_of(record).encode(),
                    headers=[("type", record.type.encode())],
                )
            await self._producer.send_offsets_to_transaction(offsets, self.group)

    def _poison(
        self, tp: TopicPartition, offset: int, value: bytes | None, reason: str
    ) -> PoisonRecorded:
        self.poisoned += 1
        log.warning(
            "errorflow.worker.poison",
            extra={
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": offset,
                "reason": reason,
            },
        )
        return PoisonRecorded(
            source=self.source,
            source_topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            reason=reason,
            raw_base64=base64.b64encode(value or b"").decode(),
        )
