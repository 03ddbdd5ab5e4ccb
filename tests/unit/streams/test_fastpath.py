"""The worker's JSON fast path reads exactly what the codec would, or defers to it."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas as s
from streams.facts import epoch_ms, facts_of
from streams.fastpath import judge, read_facts, read_progress
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


# -- one verdict: the fast path and the codec agree on any record -------------------------

FAST_TYPES = [
    e
    for e in every_type()
    if e.type.startswith(("task.", "call.", "operation.", "compensation.c", "compensation.f"))
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["critical", "bogus", "transient", "2026-11-28T22:42:55.123Z"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(data: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    return out


@st.composite
def mutated_record(draw: st.DrawFn) -> bytes:
    """A valid record of a type the stages count, with up to three fields removed or
    replaced by arbitrary JSON (a severity outside the enum, a text attempt...)."""
    data = json.loads(s.encode(draw(st.sampled_from(FAST_TYPES))))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(data).encode()


@settings(max_examples=1500, deadline=None)
@given(mutated_record())
def test_every_stage_gives_the_codecs_verdict(raw: bytes) -> None:
    """Whatever a record holds, read_facts (ingest, breakers), judge and read_progress
    (recovery) accept it exactly when the codec does, with the codec's facts — so nothing
    counted anywhere is refused anywhere, and poison is decided once."""
    try:
        model = s.decode(raw)
    except s.DecodeError as exc:
        with pytest.raises(s.DecodeError, match=re.escape(exc.reason)):
            read_facts(raw)
        assert judge(raw) is None
        assert read_progress(raw) is None
        return
    assert read_facts(raw) == facts_of(model)
    verdict = judge(raw)
    if verdict is not None:
        assert verdict == (model.type, epoch_ms(model.occurred_at))


def test_a_severity_outside_the_contract_is_poison_for_every_stage() -> None:
    """The issue's case: a task.failed whose severity is not low/medium/high/critical is
    refused by the fast path as by the codec (it was counted by analytics, dropped by
    recovery)."""
    data = json.loads(s.encode(every_type()[4]))
    data["error"]["severity"] = "catastrophic"
    raw = json.dumps(data).encode()
    with pytest.raises(s.DecodeError, match="error.severity"):
        read_facts(raw)
    assert judge(raw) is None
