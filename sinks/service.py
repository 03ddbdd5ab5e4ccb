"""The sink service: every errorflow topic into ClickHouse, exactly once.

Lifecycle of a record: consumed → routed by :class:`~sinks.processor.RecordProcessor`
→ buffered per partition → inserted (one INSERT per run of same-table records of one
partition) → the partition's offset committed. Buffers flush by size
(``max_batch_rows``) or age (``max_batch_wait_s``).

Exactly once: every row stores its ``(_topic, _partition, _offset)`` and every insert
is atomic (one table, one partition: tables are partitioned by ingestion month). On
assignment the sink seeks each partition to ``max(committed, highest stored offset +
1)``, so a crash between insert and commit — or a group reset to offset 0 — writes
nothing twice. The Kafka commit after each insert is kept for lag monitoring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import Source
from schemas.topics import TOPICS
from sinks.clickhouse import AsyncClickHouse
from sinks.ddl import positions_sql
from sinks.processor import RecordProcessor

__all__ = ["ClickHouseSink", "SinkSettings"]

log = logging.getLogger("errorflow.sink")
_COLUMNS = ["_topic", "_partition", "_offset", "payload"]


class SinkSettings(BaseSettings):
    """``ERRORFLOW_SINK_*``: consumer group and batching."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="ERRORFLOW_SINK_")

    group_id: str = "errorflow-sink"
    max_batch_rows: int = Field(50_000, ge=1)
    max_batch_wait_s: float = Field(0.5, gt=0)
    retry_backoff_s: float = Field(1.0, gt=0)


@dataclass(slots=True)
class _Run:
    table: str
    rows: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class SinkStats:
    consumed: int = 0
    inserted: int = 0
    inserts: int = 0
    poisoned: int = 0
    insert_failures: int = 0
    skipped_replayed: int = 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.sink.flush()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.sink.seek_to_stored(assigned)


class ClickHouseSink:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        clickhouse: AsyncClickHouse,
        database: str = "errorflow",
        settings: SinkSettings | None = None,
    ) -> None:
        self.settings = settings or SinkSettings()
        self.clickhouse = clickhouse
        self.database = database
        self.stats = SinkStats()
        self.processor = RecordProcessor(Source.here(runner_id="errorflow-sink"))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
        )
        self._buffers: dict[TopicPartition, list[_Run]] = defaultdict(list)
        self._buffered = 0
        self._oldest: float | None = None
        self._floor: dict[TopicPartition, int] = {}
        self._last_seen: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set; flushes what is buffered before returning."""
        stop = stop or asyncio.Event()
        await self._consumer.start()
        try:
            self._consumer.subscribe([t.name for t in TOPICS], listener=_Rebalance(self))
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
                if batch and not self.ready.is_set():
                    self.ready.set()
                for tp, records in batch.items():
                    self._buffer(tp, records)
                if self._oldest is not None and (
                    self._buffered >= self.settings.max_batch_rows
                    or loop.time() - self._oldest >= self.settings.max_batch_wait_s
                ):
                    await self.flush()
                if not batch and self._consumer.assignment():
                    self.ready.set()
            await self.flush()
        finally:
            await self._consumer.stop()

    def _buffer(self, tp: TopicPartition, records: list[Any]) -> None:
        floor = self._floor.get(tp, -1)
        runs = self._buffers[tp]
        process = self.processor.process
        for record in records:
            self.stats.consumed += 1
            if record.offset < floor:
                self.stats.skipped_replayed += 1
                continue
            row = process(tp.topic, tp.partition, record.offset, record.value, record.headers)
            if row is None:
                continue
            if not runs or runs[-1].table != row.table:
                runs.append(_Run(row.table))
            runs[-1].rows.append(row.row)
            self._buffered += 1
        if records:
            self._last_seen[tp] = records[-1].offset
        if self._oldest is None and self._buffered:
            self._oldest = asyncio.get_running_loop().time()

    async def flush(self) -> None:
        """Insert every buffered run, then commit each partition's offset."""
        async with self._lock:
            buffers, self._buffers = self._buffers, defaultdict(list)
            seen, self._last_seen = self._last_seen, {}
            self._buffered, self._oldest = 0, None
            for runs in buffers.values():
                for run in runs:
                    await self._insert(run)
            # Includes records that stored nothing (tombstones, replays below the floor).
            commits = {tp: offset + 1 for tp, offset in seen.items()}
            self.stats.poisoned = self.processor.poisoned
            if commits:
                with contextlib.suppress(Exception):  # e.g. mid-rebalance; stored offsets rule
                    await self._consumer.commit(commits)

    async def _insert(self, run: _Run) -> None:
        block = b"".join(run.rows)
        table = f"{self.database}.{run.table}"
        while True:
            try:
                await self.clickhouse.run(
                    self.clickhouse.client.raw_insert,
                    table,
                    column_names=_COLUMNS,
                    insert_block=block,
                    fmt="RowBinary",
                )
            except Exception as exc:  # noqa: BLE001 - retried: nothing is dropped
                self.stats.insert_failures += 1
                log.error(
                    "errorflow.sink.insert_failed", extra={"table": table, "error": repr(exc)}
                )
                await asyncio.sleep(self.settings.retry_backoff_s)
                continue
            self.stats.inserts += 1
            self.stats.inserted += len(run.rows)
            return

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Resume each partition after the highest offset already stored."""
        if not partitions:
            return
        rows = await self.clickhouse.query_rows(positions_sql(self.database))
        stored = {(topic, partition): offset for topic, partition, offset in rows}
        for tp in partitions:
            highest = stored.get((tp.topic, tp.partition))
            if highest is None:
                self._floor.pop(tp, None)
                continue
            committed = await self._consumer.committed(tp)
            target = max(highest + 1, committed or 0)
            self._floor[tp] = target
            self._consumer.seek(tp, target)
