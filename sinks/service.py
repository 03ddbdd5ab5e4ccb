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
import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import Source
from schemas.topics import TOPICS
from sinks.clickhouse import AsyncClickHouse
from sinks.ddl import positions_sql, rollup_repair_sql, stored_offsets_sql
from sinks.dedup import RowKey, existing_ids_sql
from sinks.errors import SinkError, error_code, is_data_error
from sinks.processor import RecordProcessor

__all__ = ["ClickHouseSink", "SinkSettings", "SinkStopped"]

log = logging.getLogger("errorflow.sink")
_COLUMNS = ["_topic", "_partition", "_offset", "payload"]


class SinkSettings(BaseSettings):
    """``ERRORFLOW_SINK_*``: consumer group and batching."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="ERRORFLOW_SINK_")

    group_id: str = "errorflow-sink"
    max_batch_rows: int = Field(100_000, ge=1)
    max_batch_wait_s: float = Field(1.0, gt=0)
    retry_backoff_s: float = Field(1.0, gt=0)


class SinkStopped(SinkError):
    """Stop was asked while an insert kept failing: the flush is abandoned uncommitted,
    so the next run stores those records (nothing lost)."""

    def __init__(self, table: str) -> None:
        super().__init__(f"stopped while inserts into {table} were failing")
        self.table = table


@dataclass(slots=True)
class SinkStats:
    consumed: int = 0
    inserted: int = 0
    inserts: int = 0
    poisoned: int = 0
    insert_failures: int = 0
    skipped_already_stored: int = 0
    duplicates_dropped: int = 0  # an event_id already stored (or twice in one flush)
    commit_failures: int = 0
    rollup_repairs: int = 0
    last_flush_at: float | None = None  # wall clock of the last flush that committed
    last_error: str = ""  # the last insert or commit failure, cleared on success


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
        self._keys: dict[str, list[RowKey]] = defaultdict(list)
        self._buffered = 0
        self._oldest: float | None = None
        self._resume: dict[TopicPartition, _Resume] = {}
        self._resume_lock = asyncio.Lock()
        self._last_seen: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._in_flight: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._last_committed: dict[TopicPartition, int] = {}

    def state(self) -> dict[str, Any]:
        """What /health and /metrics report: the counters, the lag (records in Kafka not
        yet stored), how long ago the last flush committed, and the last failure."""
        out: dict[str, Any] = dataclasses.asdict(self.stats)
        lag = 0
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                lag += max(0, high - (self._last_committed.get(tp) or 0))
        out["lag"] = lag
        last = self.stats.last_flush_at
        out["last_flush_age_s"] = None if last is None else round(time.time() - last, 3)
        return out

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set; flushes what is buffered before returning."""
        stop = self._stop = stop or asyncio.Event()
        if not await self._connect(stop):
            with contextlib.suppress(Exception):  # never started: only close its client
                await self._consumer.stop()
            return
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
        except SinkStopped as exc:
            log.warning("errorflow.sink.stopped_uncommitted %s: the next run stores them", exc)
        finally:
            await self._consumer.stop()

    async def _connect(self, stop: asyncio.Event) -> bool:
        """Start consuming, waiting for a broker that is not there yet (a log line per
        try, backoff up to 30 s; /health shows it as the last error). Before, a sink
        started ahead of Kafka died on a traceback while ``serve`` went on answering.
        False when stopped first."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self._consumer.start()
                self.stats.last_error = ""
                return True
            except KafkaError as exc:
                self.stats.last_error = f"kafka: {type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "errorflow.sink.waiting_for_kafka retry_in_s=%.0f error=%s",
                    delay,
                    self.stats.last_error,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    def _buffer(self, tp: TopicPartition, records: list[Any]) -> None:
        if not records:
            return
        self.stats.consumed += len(records)
        resume = self._resume[tp]
        kept = [r for r in records if resume.keeps(r.offset)]
        self.stats.skipped_already_stored += len(records) - len(kept)
        resume.taken(records[-1].offset)
        self._buffered += self.processor.rows(
            tp.topic, tp.partition, kept, self._tables, self._keys
        )
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
            keys, self._keys = self._keys, defaultdict(list)
            seen, self._last_seen = self._last_seen, {}
            self._buffered, self._oldest = 0, None
            if tables or seen:
                self._in_flight = asyncio.create_task(self._write(tables, keys, seen))
            if wait and self._in_flight is not None:
                await self._in_flight
                self._in_flight = None

    async def _write(
        self,
        tables: dict[str, list[bytes]],
        keys: dict[str, list[RowKey]],
        seen: dict[TopicPartition, int],
    ) -> None:
        for table, rows in tables.items():
            fresh = await self._fresh(table, rows, keys[table])
            if fresh:
                await self._insert(table, fresh)
        self.stats.poisoned = self.processor.poisoned
        # Includes records that stored nothing (tombstones, records already stored).
        commits = {tp: offset + 1 for tp, offset in seen.items()}
        if commits:
            try:
                await self._consumer.commit(commits)
                self._last_committed.update(commits)
            except Exception as exc:  # noqa: BLE001 - e.g. mid-rebalance: replay is deduped
                self.stats.commit_failures += 1
                self.stats.last_error = f"commit: {type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "errorflow.sink.commit_failed partitions=%d error=%s: %s "
                    "(the records are stored; a replay of them is dropped as duplicate)",
                    len(commits),
                    type(exc).__name__,
                    exc,
                )
                return
        self.stats.last_flush_at = time.time()

    async def _fresh(self, table: str, rows: list[bytes], keys: list[RowKey]) -> list[bytes]:
        """``rows`` without the events already stored or repeated within the flush."""
        if not any(event_id for event_id, _ in keys):
            return rows
        sql = existing_ids_sql(self.database, table)
        parameters = {"seconds": sorted({t for i, t in keys if i and t >= 0})}
        delay = self.settings.retry_backoff_s
        while True:
            try:
                found = await self.clickhouse.query_rows(sql, parameters)
                break
            except Exception as exc:  # noqa: BLE001 - retried like an insert
                self.stats.last_error = f"dedup lookup {table}: {type(exc).__name__}: {exc}"[:500]
                log.error("errorflow.sink.lookup_failed table=%s error=%s", table, str(exc)[:300])
                if self._stop.is_set():
                    raise SinkStopped(table) from exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        stored = {event_id for (event_id,) in found}
        fresh, taken = [], set()
        for row, (event_id, _) in zip(rows, keys, strict=True):
            if event_id:
                if event_id in stored or event_id in taken:
                    continue
                taken.add(event_id)
            fresh.append(row)
        self.stats.duplicates_dropped += len(rows) - len(fresh)
        return fresh

    async def _insert(self, table: str, rows: list[bytes]) -> None:
        """Insert ``rows`` into ``table``: transient failures are retried with backoff
        (until stop: then :class:`SinkStopped`, nothing committed, nothing lost); rows
        ClickHouse refuses as data (:data:`sinks.errors.DATA_ERROR_CODES`) are found by
        halving the batch and stored as poison rows with ClickHouse's reason."""
        name = f"{self.database}.{table}"
        delay = self.settings.retry_backoff_s
        while True:
            try:
                await self.clickhouse.run(
                    self.clickhouse.client.raw_insert,
                    name,
                    column_names=_COLUMNS,
                    insert_block=b"".join(rows),
                    fmt="RowBinary",
                )
            except Exception as exc:  # noqa: BLE001 - classified below; nothing is dropped
                self.stats.insert_failures += 1
                self.stats.last_error = f"{name}: {type(exc).__name__}: {exc}"[:500]
                if is_data_error(exc) and table != "poison_records":
                    await self._split(table, rows, exc)
                    return
                log.error(
                    "errorflow.sink.insert_failed table=%s rows=%d code=%s retry_in_s=%.1f "
                    "error=%s",
                    name,
                    len(rows),
                    error_code(exc),
                    delay,
                    str(exc)[:300],
                )
                if self._stop.is_set():
                    raise SinkStopped(name) from exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 30.0)
                continue
            self.stats.inserts += 1
            self.stats.inserted += len(rows)
            self.stats.last_error = ""
            return

    async def _split(self, table: str, rows: list[bytes], exc: BaseException) -> None:
        if len(rows) > 1:
            half = len(rows) // 2
            await self._insert(table, rows[:half])
            await self._insert(table, rows[half:])
            return
        reason = f"ClickHouse refused the row (code {error_code(exc)}): {exc}"[:1000]
        await self._insert("poison_records", [self.processor.refused(rows[0], reason).row])

    async def resume(self, partitions: list[TopicPartition]) -> None:
        """Position each assigned partition so that nothing is stored twice — once per
        assignment, whether the rebalance listener or the fetch loop gets there first
        (aiokafka fetches newly assigned partitions while the listener still runs)."""
        async with self._resume_lock:
            fresh = [tp for tp in partitions if tp not in self._resume]
            if fresh:
                await self._position(fresh)

    async def _repair_rollup(self, doubt: list[tuple[TopicPartition, int, int]]) -> None:
        """Recompute, from the stored rows, the rollup minutes of offsets a crash left in
        doubt (stored, not committed): the view's part may be missing for them."""
        minutes_sql, delete_sql, rebuild_sql = rollup_repair_sql(self.database)
        minutes: set[Any] = set()
        for tp, low, high in doubt:
            params = {"topic": tp.topic, "partition": tp.partition, "low": low, "high": high}
            minutes |= {m for (m,) in await self.clickhouse.query_rows(minutes_sql, params)}
        if not minutes:
            return
        params = {"minutes": sorted(minutes)}
        await self.clickhouse.run(
            self.clickhouse.client.command,
            delete_sql,
            parameters=params,
            settings={"mutations_sync": 2},
        )
        await self.clickhouse.command(rebuild_sql, params)
        self.stats.rollup_repairs += 1
        log.warning(
            "errorflow.sink.rollup_repaired minutes=%d partitions=%d (offsets in doubt "
            "after a crash: their minutes were recomputed from the stored rows)",
            len(minutes),
            len(doubt),
        )

    async def _position(self, partitions: list[TopicPartition]) -> None:
        rows = await self.clickhouse.query_rows(positions_sql(self.database))
        highest = {(topic, partition): offset for topic, partition, offset in rows}
        doubt: list[tuple[TopicPartition, int, int]] = []
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
            if stored:
                doubt.append((tp, committed, top))
        if doubt:
            async with self._lock:  # no flush of other partitions while minutes are rebuilt
                if self._in_flight is not None:
                    await self._in_flight
                    self._in_flight = None
                await self._repair_rollup(doubt)
