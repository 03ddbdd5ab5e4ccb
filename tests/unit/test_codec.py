"""The codec: every type round-trips; bad records raise DecodeError saying what is wrong."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import schemas as s
from tests.samples import every_type


def test_every_model_type_has_a_sample() -> None:
    """The samples cover every type the codec knows, so round-trip tests miss none."""
    assert {e.type for e in every_type()} == set(s.MODELS)


@pytest.mark.parametrize("event", every_type(), ids=lambda e: e.type)
def test_round_trip_is_equal(event: s.Envelope) -> None:
    """encode then decode gives back an equal model of the same class."""
    decoded = s.decode(s.encode(event))
    assert type(decoded) is type(event)
    assert decoded == event


@pytest.mark.parametrize("event", every_type(), ids=lambda e: e.type)
def test_every_type_has_a_topic_and_key(event: s.Envelope) -> None:
    """Each record type maps to one registry topic and a non-empty string key."""
    assert event.type in s.topic_of(event).types
    assert s.key_of(event)


def test_wire_timestamps_are_utc_with_milliseconds() -> None:
    """occurred_at is written as RFC 3339 UTC with milliseconds and a Z."""
    event = every_type()[0]
    wire = json.loads(s.encode(event))
    assert wire["occurred_at"] == "2026-11-28T12:00:00.123Z"


def test_offsets_are_normalised_to_utc() -> None:
    """A timestamp with another offset is converted to UTC."""
    plus2 = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = s.ResetBreaker(service="x", occurred_at=plus2)
    assert json.loads(s.encode(event))["occurred_at"] == "2026-01-01T12:00:00.000Z"


def test_naive_timestamps_are_refused() -> None:
    """A naive datetime is ambiguous and refused with a clear message."""
    with pytest.raises(ValueError, match="no UTC offset"):
        s.ResetBreaker(service="x", occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_unknown_fields_are_kept() -> None:
    """A newer producer's extra fields do not break an older reader."""
    wire = json.loads(s.encode(every_type()[3]))
    wire["gpu_seconds"] = 12
    decoded = s.decode(json.dumps(wire).encode())
    assert decoded.model_extra == {"gpu_seconds": 12}


def _wire(**changes: object) -> bytes:
    data = json.loads(s.encode(every_type()[4]))
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"garbage", "not valid JSON"),
        (b'{"type": "task.failed", "task_id"', "not valid JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"event_id": "x"}', "field 'type' is missing"),
        (_wire(type="task.exploded"), "unknown type 'task.exploded'"),
        (_wire(schema_version=2), "schema_version 2 is newer than this reader"),
        (_wire(task_id=None), "task_id: Field required"),
        (_wire(event_id=None), "envelope field(s) missing: event_id"),
        (_wire(occurred_at="2026-01-01T00:00:00"), "no UTC offset"),
        (_wire(attempt=0), "attempt: Input should be greater than or equal to 1"),
    ],
    ids=[
        "not-utf8",
        "garbage",
        "truncated",
        "not-object",
        "no-type",
        "unknown-type",
        "future-version",
        "missing-field",
        "missing-envelope",
        "naive-time",
        "bad-value",
    ],
)
def test_bad_records_raise_decode_error(raw: bytes, message: str) -> None:
    """Every kind of bad record raises DecodeError whose message says what is wrong."""
    with pytest.raises(s.DecodeError) as info:
        s.decode(raw)
    assert message in str(info.value)
    assert info.value.reason == str(info.value)


def test_command_ids_are_derived_from_their_cause() -> None:
    """The same cause gives the same command id; another cause or step another id."""
    assert s.command_id("evt-1") == s.command_id("evt-1")
    assert s.command_id("evt-1") != s.command_id("evt-2")
    assert s.command_id("evt-1", "step-1") != s.command_id("evt-1", "step-2")
