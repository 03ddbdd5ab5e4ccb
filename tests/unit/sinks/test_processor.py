"""The sink's pure half: routing, RowBinary rows, poison reasons, resume filtering."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass

import schemas as s
from sinks.processor import RecordProcessor, unpack_row, varint
from sinks.service import _Resume
from sinks.tables import TABLES, table_for_type
from tests.samples import every_type


@dataclass
class Record:
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _decode_row(row: bytes) -> tuple[str, int, int, bytes]:
    """Parse one RowBinary row (_topic, _partition, _offset, payload)."""
    return unpack_row(row)


def test_every_record_type_has_exactly_one_table() -> None:
    """Each of the 26 types is stored in one table."""
    assert all(table_for_type(e.type) is not None for e in every_type())
    types = [t for spec in TABLES for t in spec.types]
    assert len(types) == len(set(types)) == len(s.MODELS)


def test_rows_carry_the_record_unchanged_and_its_position() -> None:
    """A routed row is (topic, partition, offset, the exact record bytes)."""
    processor = RecordProcessor(s.Source.here(runner_id="t"))
    tables: dict[str, list[bytes]] = defaultdict(list)
    events = every_type()
    records = [Record(i, s.encode(e), [("type", e.type.encode())]) for i, e in enumerate(events)]
    big = s.TaskStarted(
        task_id="t",
        template_id="x",
        operation_type="o",
        attempt=1,
        task_data={"blob": "x" * 20_000},
    )
    records.append(Record(99, s.encode(big), [("type", b"task.started")]))
    keys: dict[str, list[tuple[str, int]]] = defaultdict(list)
    assert processor.rows("errorflow.task-events", 3, records, tables, keys) == len(records)
    by_offset = {}
    for table, rows in tables.items():
        for row in rows:
            topic, partition, offset, payload = _decode_row(row)
            by_offset[offset] = (table, topic, partition, payload)
    for record, event in zip(records, [*events, big], strict=True):
        table, topic, partition, payload = by_offset[record.offset]
        assert (table, topic, partition, payload) == (
            table_for_type(event.type).name,
            "errorflow.task-events",
            3,
            record.value,
        )  # type: ignore[union-attr]


def test_records_without_header_are_routed_by_their_payload() -> None:
    """kcat without -H type: the type is read from the JSON."""
    processor = RecordProcessor(s.Source.here(runner_id="t"))
    event = every_type()[4]
    row = processor.process("errorflow.task-events", 0, 5, s.encode(event), [])
    assert row is not None
    assert row.table == "events"


def test_undecodable_records_become_poison_with_the_codec_reason() -> None:
    """Garbage without a header becomes a poison.record row saying why, keeping the bytes."""
    processor = RecordProcessor(s.Source.here(runner_id="t"))
    row = processor.process("errorflow.call-events", 2, 41, b"\xff not json", [])
    assert row is not None
    assert row.table == "poison_records"
    _, partition, offset, payload = _decode_row(row.row)
    poison = json.loads(payload)
    assert (poison["source_topic"], poison["partition"], poison["offset"]) == (
        "errorflow.call-events",
        2,
        41,
    )
    assert poison["reason"].startswith("record is not UTF-8")
    assert base64.b64decode(poison["raw_base64"]) == b"\xff not json"
    assert (partition, offset) == (2, 41)
    assert processor.poisoned == 1


def test_tombstones_store_nothing() -> None:
    """A compaction tombstone (no value) yields no row."""
    processor = RecordProcessor(s.Source.here(runner_id="t"))
    assert processor.process("errorflow.breaker-state", 0, 1, None, []) is None


def test_resume_keeps_exactly_what_is_not_stored_yet() -> None:
    """Below `below` nothing is kept; up to `floor` only offsets not stored; then all."""
    resume = _Resume(below=10, floor=20, stored={10, 11, 15})
    kept = [o for o in range(0, 25) if resume.keeps(o)]
    assert kept == [12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24]


def test_varint_matches_leb128() -> None:
    """RowBinary string lengths are LEB128."""
    assert [varint(n) for n in (0, 127, 128, 300, 16384)] == [
        b"\x00",
        b"\x7f",
        b"\x80\x01",
        b"\xac\x02",
        b"\x80\x80\x01",
    ]
