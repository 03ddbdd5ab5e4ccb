"""Create and describe the registry's topics (idempotent)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import TOPICS, TopicSpec

__all__ = ["TopicState", "create_topics", "describe_topics"]


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: str


def _new_topic(spec: TopicSpec, partitions: int | None) -> NewTopic:
    configs: dict[str, str] = {"cleanup.policy": spec.cleanup_policy}
    if spec.compacted:
        # Compacted state topics: roll segments often so compaction keeps them small.
        configs |= {"segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
    count = spec.partitions if spec.compacted or partitions is None else partitions
    return NewTopic(spec.name, num_partitions=count, replication_factor=1, topic_configs=configs)


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0
) -> None:
    # Producing right after creation fails with NotLeaderForPartition until every
    # partition has a leader; callers expect usable topics when this returns.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        meta = await admin.describe_topics(names)
        ready = all(
            m["error_code"] == 0
            and m["partitions"]
            and all(p["leader"] >= 0 for p in m["partitions"])
            for m in meta
        )
        if ready:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout_s:.0f}s: {names}")
        await asyncio.sleep(0.2)


async def create_topics(
    bootstrap: str, *, partitions: int | None = None, extra: Sequence[NewTopic] = ()
) -> list[str]:
    """Create every registry topic (and ``extra`` ones, e.g. a worker's internal topics)
    that does not exist yet, wait until all have leaders; return the names created.

    ``partitions`` overrides the registry default for non-compacted topics; compacted
    topics keep theirs (one partition keeps a state topic totally ordered).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [_new_topic(spec, partitions) for spec in TOPICS] + list(extra)
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            await admin.create_topics(missing)
        await _wait_for_leaders(admin, [topic.name for topic in wanted])
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def describe_topics(bootstrap: str) -> list[TopicState]:
    """Partitions and settings of every registry topic that exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [spec.name for spec in TOPICS if spec.name in existing]
        if not names:
            return []
        meta = await admin.describe_topics(names)
        partitions = {m["topic"]: len(m["partitions"]) for m in meta}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        responses = await admin.describe_configs(resources)
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                name, entries = resource[3], resource[4]
                configs[name] = {entry[0]: entry[1] for entry in entries}
        return [
            TopicState(
                name,
                partitions.get(name, 0),
                configs.get(name, {}).get("cleanup.policy", "?"),
                configs.get(name, {}).get("retention.ms", "?"),
            )
            for name in names
        ]
    finally:
        await admin.close()
