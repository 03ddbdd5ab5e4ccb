"""The worker's JSON fast path reads exactly what the codec would, or defers to it."""

from __future__ import annotations

import json
import re

import pytest

import schemas as s
from streams.facts import facts_of
from streams.fastpath import read_facts
from tests.samples import every_type


@pytest.mark.parametrize("event", every_type(), ids=lambda e: e.type)
def test_fast_path_agrees_with_the_codec(event: s.Envelope) -> None:
    """For every record type, the facts equal those of the decoded model."""
    assert read_facts(s.encode(event)) == facts_of(event)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("attempt"), "attempt: Field required"),
        (lambda d: d.update(schema_version=3), "newer than this reader"),
        (lambda d: d["error"].update(category="sometimes"), "error.category"),
    ],
    ids=["missing-attempt", "future-version", "bad-category"],
)
def test_unusual_records_get_the_codecs_verdict(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    """Anything the fast path is unsure of is decided, and explained, by the codec."""
    data = json.loads(s.encode(every_type()[2]))
    mutate(data)
    with pytest.raises(s.DecodeError, match=reason):
        read_facts(json.dumps(data).encode())


def test_garbage_is_poison() -> None:
    """Bytes that are not JSON raise DecodeError."""
    with pytest.raises(s.DecodeError, match="not valid JSON"):
        read_facts(b"\x00garbage")


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T22:42:55.123Z",
        "2026-11-28T22:42:55.1Z",
        "2026-11-28T22:42:55.12Z",
        "2026-11-28T22:42:55.999999Z",
        "2026-11-28T22:42:55Z",
        "1999-12-31T23:59:59.001Z",
    ],
)
def test_timestamps_read_straight_from_json_are_exact(text: str) -> None:
    """The fast path's milliseconds equal the exact ones of the parsed datetime."""
    from datetime import datetime

    from streams.facts import epoch_ms
    from streams.fastpath import _SECONDS, _ms

    exact = epoch_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    _SECONDS.clear()
    assert _ms(text) == exact  # parsing the second
    assert _ms(text) == exact  # from the cached second


@pytest.mark.parametrize(
    "text", ["2026-11-28T22:42:55+01:00", "2026-11-28 22:42:55Z", "2026-11-28T22:42:55,5Z"]
)
def test_unusual_timestamps_are_left_to_the_codec(text: str) -> None:
    """Offsets, a space separator or a comma fraction are not guessed at: the codec
    (through read_facts' fallback) decides."""
    from streams.fastpath import _ms

    with pytest.raises(ValueError, match="UTC|fraction|date and time"):
        _ms(text)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(attempt=True),
        lambda d: d.update(attempt="1"),
        lambda d: d.update(attempt=2**70),
        lambda d: d.update(template_id=7),
        lambda d: d["source"].pop("runner_id"),
        lambda d: d["error"].update(severity=None),
        lambda d: d.update(occurred_at="2026-11-28T22:42:55.123+00:00"),
    ],
    ids=[
        "bool-attempt",
        "text-attempt",
        "huge-attempt",
        "int-template",
        "no-runner",
        "null-severity",
        "offset-time",
    ],
)
def test_odd_types_get_the_same_answer_as_the_codec(mutate) -> None:  # type: ignore[no-untyped-def]
    """Where the typed fast path refuses a field, the codec's answer (its coercion or its
    refusal) is the one given — never a third one."""
    data = json.loads(s.encode(every_type()[2]))
    mutate(data)
    raw = json.dumps(data).encode()
    try:
        expected = facts_of(s.decode(raw))
    except s.DecodeError as exc:
        with pytest.raises(s.DecodeError, match=re.escape(exc.reason)):
            read_facts(raw)
    else:
        assert read_facts(raw) == expected
