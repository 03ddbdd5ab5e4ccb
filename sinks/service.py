"""The sink service: every errorflow topic into ClickHouse, exactly once.

Lifecycle of a record: consumed → routed by :class:`~sinks.processor.RecordProcessor`
→ buffered per table → one INSERT per table per flush → offsets committed after every
insert of the flush succeeded. Buffers flush by size (``max_batch_rows``) or age
(``max_batch_wait_s``); the next batch is consumed while a flush is written.

Exactly once: every row stores its ``(_topic, _partition, _offset)``, and every INSERT
is atomic (one part: tables are partitioned by ingestion month). Only offsets between
the committed offset and the highest stored one can have been written without being
committed (a crash mid-flush); on assignment the sink resumes from the committed offset
and drops exactly the records of that range that are already stored. A consumer group
with no commits (a replay from offset 0) resumes after the highest stored offset.
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
from sinks.ddl import positions_sql, stored_offsets_sql
from sinks.processor import RecordProcessor

__all__ = ["ClickHouseSink", "SinkSettings"]

log = logging.getLogger("errorflow.sink")
_COLUMNS = ["_topic", "_partition", "_offset", "payload"]


class SinkSettings(BaseSettings):
    """``ERRORFLOW_SINK_*``: consumer group and batching."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="ERRORFLOW_SINK_")

    group_id: str = "errorflow-sink"
    max_batch_rows: int = Field(100_000, ge=1)
    max_batch_wait_s: float = Field(1.0, gt=0)
    retry_backoff_s: float = Field(1.0, gt=0)


@dataclass(slots=True)
class SinkStats:
    consumed: int = 0
    inserted: int = 0
    inserts: int = 0
    poisoned: int = 0
    insert_failures: int = 0
    skipped_already_stored: int = 0


@dataclass(slots=True)
class _Resume:
    """What of one partition is already stored: everything below ``below``, and the
    offsets in ``stored`` up to ``floor``. Filtering (not only seeking) makes this hold
    even when the client repositions the partition after our seek."""

    below: int
    floor: int
    stored: set[int] = field(default_factory=set)

    def keeps(self, offset: int) -> bool:
        return offset >= self.floor or (offset >= self.below and offset not in self.stored)

    def taken(self, offset: int) -> None:
        """Everything up to ``offset`` is now stored or buffered: a client that later
        repositions the partition (it was seen re-applying auto_offset_reset after our
        seek) cannot make the sink store a record twice."""
        self.below = max(self.below, offset + 1)
        if self.below >= self.floor:
            self.floor = self.below
            self.stored.clear()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.sink.flush()
        for tp in revoked:  # positioned afresh if it comes back
            self.sink._resume.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.sink.resume(assigned)


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
            # The stream worker writes in transactions: never store what it aborted.
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
        )
        self._tables: dict[str, list[bytes]] = defaultdict(list)
        self._buffered = 0
        self._oldest: float | None = None
        self._resume: dict[TopicPartition, _Resume] = {}
        self._resume_lock = asyncio.Lock()
        self._last_seen: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._in_flight: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set; flushes what is buffered before returning."""
        stop = stop or asyncio.Event()
        await self._consumer.start()
        try:
            self._consumer.subscribe([t.name for t in TOPICS], listener=_Rebalance(self))
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
                for tp, records in batch.items():
                    if tp not in self._consumer.assignment():
                        continue  # revoked meanwhile: its new owner stores them
                    if tp not in self._resume:
                        # Fetched before the rebalance listener positioned it (or the
                        # listener failed): position it now, before storing anything.
                        await self.resume([tp])
                    self._buffer(tp, records)
                if self._oldest is not None and (
                    self._buffered >= self.settings.max_batch_rows
                    or loop.time() - self._oldest >= self.settings.max_batch_wait_s
                ):
                    await self.flush(wait=False)
            await self.flush()
        finally:
            await self._consumer.stop()

    def _buffer(self, tp: TopicPartition, records: list[Any]) -> None:
        if not records:
            return
        self.stats.consumed += len(records)
        resume = self._resume[tp]
        kept = [r for r in records if resume.keeps(r.offset)]
        self.stats.skipped_already_stored += len(records) - len(kept)
        resume.taken(records[-1].offset)
        self._buffered += self.processor.rows(tp.topic, tp.partition, kept, self._tables)
        self._last_seen[tp] = records[-1].offset
        if self._oldest is None and self._buffered:
            self._oldest = asyncio.get_running_loop().time()

    async def flush(self, *, wait: bool = True) -> None:
        """Insert what is buffered (one INSERT per table), then commit the offsets.

        With ``wait=False`` the inserts run while the caller goes on consuming (chDB
        releases the GIL while it parses and writes); at most one flush is in flight.
        """
        async with self._lock:
            if self._in_flight is not None:
                await self._in_flight
                self._in_flight = None
            tables, self._tables = self._tables, defaultdict(list)
            seen, self._last_seen = self._last_seen, {}
            self._buffered, self._oldest = 0, None
            if tables or seen:
                self._in_flight = asyncio.create_task(self._write(tables, seen))
            if wait and self._in_flight is not None:
                await self._in_flight
                self._in_flight = None

    async def _write(self, tables: dict[str, list[bytes]], seen: dict[TopicPartition, int]) -> None:
        for table, rows in tables.items():
            await self._insert(table, rows)
        self.stats.poisoned = self.processor.poisoned
        # Includes records that stored nothing (tombstones, records already stored).
        commits = {tp: offset + 1 for tp, offset in seen.items()}
        if commits:
            with contextlib.suppress(Exception):  # e.g. mid-rebalance: the next flush commits
                await self._consumer.commit(commits)

    async def _insert(self, table: str, rows: list[bytes]) -> None:
        block = b"".join(rows)
        name = f"{self.database}.{table}"
        while True:
            try:
                await self.clickhouse.run(
                    self.clickhouse.client.raw_insert,
                    name,
                    column_names=_COLUMNS,
                    insert_block=block,
                    fmt="RowBinary",
                )
            except Exception as exc:  # noqa: BLE001 - retried: nothing is dropped
                self.stats.insert_failures += 1
                log.error("errorflow.sink.insert_failed", extra={"table": name, "error": repr(exc)})
                await asyncio.sleep(self.settings.retry_backoff_s)
                continue
            self.stats.inserts += 1
            self.stats.inserted += len(rows)
            return

    async def resume(self, partitions: list[TopicPartition]) -> None:
        """Position each assigned partition so that nothing is stored twice — once per
        assignment, whether the rebalance listener or the fetch loop gets there first
        (aiokafka fetches newly assigned partitions while the listener still runs)."""
        async with self._resume_lock:
            fresh = [tp for tp in partitions if tp not in self._resume]
            if fresh:
                await self._position(fresh)

    async def _position(self, partitions: list[TopicPartition]) -> None:
        rows = await self.clickhouse.query_rows(positions_sql(self.database))
        highest = {(topic, partition): offset for topic, partition, offset in rows}
        for tp in partitions:
            top = highest.get((tp.topic, tp.partition))
            if top is None:
                self._resume[tp] = _Resume(below=0, floor=0)  # nothing of it is stored
                continue
            committed = await self._consumer.committed(tp)
            if committed is None or committed > top:
                start = max(committed or 0, top + 1)
                self._resume[tp] = _Resume(below=start, floor=start)
                self._consumer.seek(tp, start)
                continue
            stored = await self.clickhouse.query_rows(
                stored_offsets_sql(self.database),
                {"topic": tp.topic, "partition": tp.partition, "low": committed, "high": top},
            )
            self._resume[tp] = _Resume(committed, top + 1, {offset for (offset,) in stored})
            self._consumer.seek(tp, committed)
