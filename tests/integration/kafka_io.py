"""Small helpers to produce contract records and read exactly the new ones back."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

import schemas as s

Offsets = dict[TopicPartition, int]


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> Offsets:
    """The current end offset of every partition of ``topics``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await producer.start()
    await consumer.start()
    try:
        # The producer's partitions_for waits for metadata; the consumer's does not.
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(await producer.partitions_for(t))
        ]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()
        await producer.stop()


async def produce(bootstrap: str, events: Sequence[s.Envelope]) -> None:
    """Send each event to its registry topic with its contract key and type header."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                s.topic_of(event).name,
                s.encode(event),
                key=s.key_of(event).encode(),
                headers=[("type", event.type.encode())],
            )
    finally:
        await producer.stop()


async def produce_burst(bootstrap: str, events: Sequence[s.Envelope]) -> None:
    """Send every event (contract topic, key, type header), then wait for all: one burst,
    not one round trip per record."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(
                s.topic_of(e).name,
                s.encode(e),
                key=s.key_of(e).encode(),
                headers=[("type", e.type.encode())],
            )
            for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def produce_raw(bootstrap: str, topic: str, values: Sequence[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"raw")
    finally:
        await producer.stop()


async def read_since(
    bootstrap: str, since: Offsets, *, count: int, timeout_s: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read records after ``since`` until ``count`` arrived (or the timeout passed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < count and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


def kcat_read(bootstrap: str, topic: str, partition: int, offset: int, count: int) -> list[dict]:
    """Records read by kcat's JSON envelope mode (``kcat -C -J``)."""
    out = subprocess.run(
        [
            "kcat",
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-p",
            str(partition),
            "-o",
            str(offset),
            "-c",
            str(count),
            "-e",
            "-J",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def kcat_produce(bootstrap: str, topic: str, key: str, value: str) -> None:
    subprocess.run(
        ["kcat", "-b", bootstrap, "-P", "-t", topic, "-k", key],
        input=value,
        text=True,
        check=True,
        timeout=30,
    )
