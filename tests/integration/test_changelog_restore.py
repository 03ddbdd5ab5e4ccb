"""Reading a changelog to its end right after a broker restart gives all of it.

A stage rebuilds its engines from its changelog and resumes at its committed offsets,
so a read that stops short would start the engines from an old snapshot while the
offsets are new, losing the counts in between. ``read_to_end`` used to stop after three
empty polls (0.9 s), which a broker still loading its logs can give; it now waits for
every partition's end or fails. This test guards that contract; it did not catch the
old version in three runs (the early stop is a race), so it is a guard, not a repro.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from deploy.broker import LocalBroker
from streams.engine.follow import read_to_end

pytestmark = pytest.mark.kafka


async def _write(bootstrap: str, topic: str, transactions: int, per: int) -> set[bytes]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 6, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{topic}")
    await producer.start()
    written: set[bytes] = set()
    try:
        for t in range(transactions):
            async with producer.transaction():
                for i in range(per):
                    value = f"{t}/{i}/{'x' * 2000}".encode()
                    await producer.send(topic, value, key=f"{t}/{i}".encode())
                    written.add(value)
    finally:
        await producer.stop()
    return written


async def test_a_changelog_read_right_after_a_broker_restart_is_complete(
    private_broker: LocalBroker,
) -> None:
    topic = f"it-changelog-{uuid.uuid4().hex[:6]}"
    written = await _write(private_broker.bootstrap, topic, transactions=40, per=100)
    await asyncio.to_thread(private_broker.stop)
    # As a stage does: read as soon as the broker takes connections, while it still
    # loads its logs.
    starting = asyncio.create_task(asyncio.to_thread(private_broker.start))
    while True:
        try:
            records = await read_to_end(private_broker.bootstrap, topic)
            break
        except KafkaError:
            await asyncio.sleep(0.05)
    await starting
    got = {r.value for r in records}
    assert len(records) == len(written), f"read {len(records)} of {len(written)} records"
    assert got == written
