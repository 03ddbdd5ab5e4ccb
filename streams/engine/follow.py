"""Reading topics without a consumer group: following them live, or reading to the end.

Every worker needs *all* of the control topic and the breaker states (and every
``resource.available``), not a share of them, so these are read group-less. Raw
records only: decoding is the caller's (see :mod:`streams.follow`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

__all__ = ["follow_records", "read_to_end"]


async def follow_records(
    bootstrap: str,
    topics: list[str],
    stop: asyncio.Event,
    *,
    lookback_s: float | None = None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Committed records of ``topics`` (tombstones skipped) from the beginning, or from
    ``lookback_s`` ago, until ``stop`` is set."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        if lookback_s is not None:
            await _seek_back(consumer, topics, lookback_s)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    if record.value is not None:  # None: a compaction tombstone
                        yield record
    finally:
        await consumer.stop()


async def _seek_back(consumer: AIOKafkaConsumer, topics: list[str], lookback_s: float) -> None:
    # Subscribed consumers get their partitions on the first fetch; wait for them.
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=50, max_records=1)
        await asyncio.sleep(0)
    parts: list[TopicPartition] = sorted(consumer.assignment())
    since_ms = int((time.time() - lookback_s) * 1000)
    found = await consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
    ends = await consumer.end_offsets(parts)
    for tp in parts:
        hit = found.get(tp)
        consumer.seek(tp, hit.offset if hit is not None else ends[tp])


async def read_to_end(
    bootstrap: str, topic: str, *, timeout_s: float = 120.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` up to its current end (read_committed).

    All of it or an error, never a part: a stage rebuilds its engines from this, and a
    partial read right after a broker restart (fetches answering nothing while the
    broker loads its logs) rebuilt them from an old snapshot while the committed offsets
    were newer, losing the counts in between. A partition is read when its position
    reaches the end taken at the start, or when the broker answered three fetches at an
    unchanged position with nothing (a compacted gap up to the end); silence from the
    broker never counts. Raises :class:`KafkaTimeoutError` after ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        # The producer's partitions_for waits for metadata; the consumer's does not.
        parts = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[ConsumerRecord[bytes, bytes]] = []
        answers: dict[TopicPartition, tuple[int, int | None, int]] = {}
        deadline = time.monotonic() + timeout_s
        while behind := [tp for tp in parts if not await _read_up(consumer, tp, ends, answers)]:
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"{topic}: not read to its end in {timeout_s:.0f}s")
            batch = await consumer.getmany(*behind, timeout_ms=300)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await producer.stop()
        await consumer.stop()


async def _read_up(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    ends: dict[TopicPartition, int],
    answers: dict[TopicPartition, tuple[int, int | None, int]],
) -> bool:
    position: int = await consumer.position(tp)
    if position >= ends[tp]:
        return True
    polled: int | None = consumer.last_poll_timestamp(tp)
    seen_at, seen_poll, empty = answers.get(tp, (position, polled, 0))
    if seen_at != position:
        empty = 0  # records came: count the broker's empty answers afresh
    elif polled is not None and polled != seen_poll:
        empty += 1  # one more answer from the broker, nothing in it
    answers[tp] = (position, polled, empty)
    return empty >= 3
