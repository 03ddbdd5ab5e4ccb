"""The wire contract on the real broker: every type round-trips, kcat reads it all."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict

import pytest

import schemas as s
from schemas.topics import TOPICS
from tests.conftest import unavailable
from tests.integration.kafka_io import (
    end_offsets,
    kcat_produce,
    kcat_read,
    produce,
    produce_raw,
    read_since,
)
from tests.samples import every_type

pytestmark = pytest.mark.kafka

ALL_TOPICS = [spec.name for spec in TOPICS]


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        unavailable("kcat is not installed (Debian package kcat)")
    return path


async def test_every_type_round_trips_through_kafka(kafka_bootstrap: str) -> None:
    """Each of the 26 types, produced to its topic with its key, comes back equal."""
    events = every_type()
    since = await end_offsets(kafka_bootstrap, ALL_TOPICS)
    await produce(kafka_bootstrap, events)
    records = await read_since(kafka_bootstrap, since, count=len(events))
    decoded = {d.event_id: (d, r) for r in records if (d := s.decode(r.value))}
    for event in events:
        got, record = decoded[event.event_id]
        assert got == event
        assert record.topic == s.topic_of(event).name
        assert record.key == s.key_of(event).encode()
        assert dict(record.headers)["type"] == event.type.encode()


async def test_kcat_reads_and_decodes_every_topic(kafka_bootstrap: str, kcat: str) -> None:
    """Records on every topic are plain JSON that kcat -J shows and schemas.decode reads."""
    events = every_type()
    since = await end_offsets(kafka_bootstrap, ALL_TOPICS)
    await produce(kafka_bootstrap, events)
    records = await read_since(kafka_bootstrap, since, count=len(events))
    where: dict[tuple[str, int], list[int]] = defaultdict(list)
    for record in records:
        where[(record.topic, record.partition)].append(record.offset)
    seen = {}
    for (topic, partition), offsets in where.items():
        for row in kcat_read(kafka_bootstrap, topic, partition, min(offsets), len(offsets)):
            event = s.decode(row["payload"].encode())
            seen[event.event_id] = (topic, event)
    assert {e.event_id for e in events} <= seen.keys()
    assert {topic for topic, _ in seen.values()} == set(ALL_TOPICS)
    for event in events:
        assert seen[event.event_id][1] == event


async def test_hand_written_task_failed_from_kcat_decodes(kafka_bootstrap: str, kcat: str) -> None:
    """A task.failed typed by hand and produced with kcat decodes into TaskFailed."""
    hand_written = {
        "event_id": "0b7e3f0e-4a51-4c55-8a0c-2f6a6c1c9a11",
        "type": "task.failed",
        "schema_version": 1,
        "occurred_at": "2026-11-28T10:15:00.250Z",
        "source": {
            "runner_id": "r1",
            "worker_id": "w1",
            "host": "h",
            "pid": 1,
            "sdk_version": "0.1.0",
        },
        "task_id": "task-kcat",
        "template_id": "video-gen",
        "operation_type": "video_generation",
        "attempt": 3,
        "attempts": 3,
        "error": {
            "category": "permanent",
            "error_type": "builtins.PermissionError",
            "message": "Permission denied: '/models/x'",
            "fingerprint": "ab12",
            "severity": "high",
            "retryable": False,
            "rule": "builtin:permission",
        },
    }
    topic = "errorflow.task-events"
    since = await end_offsets(kafka_bootstrap, [topic])
    kcat_produce(kafka_bootstrap, topic, "task-kcat", json.dumps(hand_written))
    kcat_produce(kafka_bootstrap, topic, "task-kcat", '{"type": "task.failed", "task_id": "x"}')
    records = await read_since(kafka_bootstrap, since, count=2)
    good, bad = sorted(records, key=lambda r: r.offset)
    event = s.decode(good.value)
    assert isinstance(event, s.TaskFailed)
    assert event.error.category == "permanent"
    assert event.attempts == 3
    assert event.occurred_at.isoformat() == "2026-11-28T10:15:00.250000+00:00"
    with pytest.raises(s.DecodeError, match="envelope field"):
        s.decode(bad.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x01garbage\xff", "not UTF-8"),
        (b'{"type": "task.failed", "task_id": "t', "not valid JSON"),
        (b'{"type": "task.teleported", "schema_version": 1}', "unknown type"),
        (b'{"type": "task.failed", "schema_version": 7}', "newer than this reader"),
    ],
    ids=["garbage", "truncated", "unknown-type", "future-version"],
)
async def test_bad_records_through_kafka_raise_the_documented_error(
    kafka_bootstrap: str, raw: bytes, message: str
) -> None:
    """Garbage that travelled through the broker is rejected with DecodeError, not crashes."""
    topic = "errorflow.task-events"
    since = await end_offsets(kafka_bootstrap, [topic])
    await produce_raw(kafka_bootstrap, topic, [raw])
    (record,) = await read_since(kafka_bootstrap, since, count=1)
    assert record.value == raw
    with pytest.raises(s.DecodeError, match=message):
        s.decode(record.value)
