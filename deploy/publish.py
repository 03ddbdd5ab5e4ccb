"""Sending contract records from tools (API, CLI, demo): topic, key and type header as
the registry says, acknowledged by all replicas before returning."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from schemas import Envelope, encode, key_of
from schemas.topics import topic_of

__all__ = ["publish_events", "send_event"]


async def send_event(producer: AIOKafkaProducer, event: Envelope) -> None:
    await producer.send_and_wait(
        topic_of(event).name,
        encode(event),
        key=key_of(event).encode(),
        headers=[("type", event.type.encode())],
    )


async def publish_events(bootstrap: str, events: Iterable[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await send_event(producer, event)
    finally:
        await producer.stop()
