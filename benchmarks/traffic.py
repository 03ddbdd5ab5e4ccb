"""Benchmark traffic: a repeating mix of task and call events, produced fast."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

import schemas as s

__all__ = ["produce_mix", "records_on"]


async def produce_mix(bootstrap: str, count: int) -> None:
    """``count`` events: attempt failed, succeeded after retry, a ComfyUI call."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    source = s.Source.here(runner_id="bench")
    error = s.ErrorInfo(
        category="transient",
        error_type="builtins.ConnectionResetError",
        message="reset",
        fingerprint="f",
        severity="medium",
        retryable=True,
        rule="builtin:network",
        service="comfyui",
    )
    samples = [
        s.TaskAttemptFailed(
            task_id="t",
            template_id="sd",
            operation_type="img",
            attempt=1,
            error=error,
            will_retry=True,
            source=source,
        ),
        s.TaskSucceeded(
            task_id="t",
            template_id="sd",
            operation_type="img",
            attempt=2,
            duration_ms=5,
            source=source,
        ),
        s.CallCompleted(service="comfyui", outcome="success", duration_ms=3, source=source),
    ]
    encoded = [
        (
            s.topic_of(e).name,
            s.key_of(e).encode(),
            s.encode(e),
            e.type.encode(),
            e.event_id,
            s.format_utc(e.occurred_at),
        )
        for e in samples
    ]
    start = datetime.now(UTC) - timedelta(milliseconds=count)
    try:
        for i in range(count):
            topic, key, value, type_, sample_id, sample_time = encoded[i % len(encoded)]
            # Each record its own event_id and time, as real traffic has (the sink drops
            # repeated ids; its lookup is by event time).
            stamp = s.format_utc(start + timedelta(milliseconds=i))
            value = value.replace(sample_id.encode(), str(uuid.uuid4()).encode(), 1)
            value = value.replace(sample_time.encode(), stamp.encode(), 1)
            await producer.send(topic, value, key=key, headers=[("type", type_)])
        await producer.flush()
    finally:
        await producer.stop()


async def records_on(bootstrap: str, topics: list[str]) -> int:
    """How many records the topics hold (sum of end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    meta = AIOKafkaProducer(bootstrap_servers=bootstrap)  # its partitions_for waits for metadata
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await meta.start()
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in await meta.partitions_for(t)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()
        await meta.stop()
