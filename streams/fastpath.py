"""One verdict per record: the contract codec is the judge, this is its fast path (pure).

Validating a whole pydantic model costs ~17 µs per event on this machine, most of the
worker's budget. So every model a stage reads on the hot path gets a msgspec twin,
*derived from the pydantic model at import time* — the same fields, required where the
wire requires them, the same literals and bounds — that validates in C. The twin is
strict where pydantic is lax (no ``"3"`` for an int), so a record the twin accepts is
one the codec accepts; anything the twin refuses is handed to the codec, which either
reads it or says exactly why it is poison. Every stage judges through here, so a record
is counted everywhere or nowhere (tests/unit/streams/test_fastpath.py proves agreement
with hypothesis).
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

import annotated_types
import msgspec
import orjson
from pydantic import BaseModel

from schemas import (
    DecodeError,
    Envelope,
    decode,
)
from schemas.codec import MODELS
from schemas.envelope import ENVELOPE_FIELDS
from schemas.topics import CALL_EVENTS, TASK_EVENTS
from streams.facts import ATTEMPT_ENDS, Facts, facts_of

__all__ = ["judge", "read_facts", "read_progress", "twin_of"]

# -- timestamps ---------------------------------------------------------------------------

_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch ms, recent seconds
_MILLIS = {f"{n:03d}": n for n in range(1000)}  # validates and converts in one lookup
_FRACTION_SCALE = {1: 100, 2: 10, 3: 1, 4: 1, 5: 1, 6: 1}


def _ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 UTC timestamp (``...Z``). Events of one second
    share its date parse (a dict hit instead of ~2 µs of datetime work); the SDK's
    ``.mmmZ`` form takes one more lookup. Raises ValueError for anything else (offsets
    other than ``Z`` included): the codec then decides."""
    base = _SECONDS.get(text[:19])
    if base is None:
        base = _second(text)
    if len(text) == 24 and text[19] == "." and text[23] == "Z":
        millis = _MILLIS.get(text[20:23])
        if millis is not None:
            return base + millis
    if not text.endswith("Z"):
        raise ValueError("not UTC")
    fraction = text[19:-1]
    if not fraction:
        return base
    digits = fraction[1:]
    scale = _FRACTION_SCALE.get(len(digits))
    if fraction[0] != "." or not digits.isdigit() or not digits.isascii() or scale is None:
        raise ValueError("fraction")
    return base + int(digits[:3]) * scale


def _second(text: str) -> int:
    if len(text) < 20 or text[10] != "T" or not text[:19].isascii():
        raise ValueError("not a date and time")
    parsed = datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)
    if len(_SECONDS) > 4096:
        _SECONDS.clear()
    _SECONDS[text[:19]] = base = int(parsed.timestamp()) * 1000
    return base


# -- twins: msgspec Structs derived from the pydantic models ------------------------------

_BOUNDS = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}
_twins: dict[type[BaseModel], type[msgspec.Struct]] = {}


class _Unsupported(TypeError):
    """A model field the derivation cannot mirror exactly: that model has no twin."""


def _twin_type(annotation: Any, metadata: list[Any]) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return Union[tuple(_twin_type(a, metadata) for a in typing.get_args(annotation))]  # noqa: UP007
    if annotation is type(None):
        return annotation
    if annotation is datetime:
        return str  # checked by _ms after decoding (only UTC 'Z' forms pass)
    if annotation in (str, int, float, bool):
        bounds = {}
        for item in metadata:
            for kind, name in _BOUNDS.items():
                if isinstance(item, kind):
                    bounds[name] = getattr(item, name)
            if not isinstance(item, tuple(_BOUNDS)):
                raise _Unsupported(f"constraint {item!r}")
        return Annotated[annotation, msgspec.Meta(**bounds)] if bounds else annotation
    if origin is Literal:
        return annotation
    if origin is dict and typing.get_args(annotation)[0] is str:
        return dict[str, Any]  # pydantic's dict[str, Any] takes any JSON object
    if origin is list:
        (item,) = typing.get_args(annotation)
        return list[_twin_type(item, [])]  # type: ignore[misc]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return twin_of(annotation)
    raise _Unsupported(f"annotation {annotation!r}")


def twin_of(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The msgspec Struct mirroring ``model`` (an event model's carries its type as tag)."""
    if model in _twins:
        return _twins[model]
    envelope = issubclass(model, Envelope)
    fields: list[tuple[Any, ...]] = []
    for name, info in model.model_fields.items():
        if name == "type" and envelope:
            continue  # the tag
        kind = _twin_type(info.annotation, list(info.metadata))
        if name == "schema_version":
            kind = Annotated[int, msgspec.Meta(ge=1, le=model.SCHEMA_VERSION)]  # type: ignore[attr-defined]
        required = info.is_required() or (envelope and name in ENVELOPE_FIELDS)
        if required:
            fields.append((name, kind))
        else:
            # Defaults only fill what the twin is not asked about; None for factories.
            default = info.get_default(call_default_factory=False)
            fields.append((name, kind, default if isinstance(default, str | int | float) else None))
    struct = msgspec.defstruct(
        f"{model.__name__}Twin",
        fields,
        tag=model.TYPE if envelope else None,  # type: ignore[attr-defined]
        tag_field="type" if envelope else None,
        forbid_unknown_fields=False,
        kw_only=True,
    )
    _twins[model] = struct
    return struct


# Every type on task-events and call-events (the topic registry says which), judged
# without pydantic: derived, so a new type on those topics gets a twin by itself.
_FAST_MODELS = tuple(MODELS[t] for t in (*TASK_EVENTS.types, *CALL_EVENTS.types))
_read_twin = msgspec.json.Decoder(Union[tuple(twin_of(m) for m in _FAST_MODELS)]).decode  # noqa: UP007


def _facts_of_twin(event: Any) -> Facts | None:
    type_ = type(event).__struct_config__.tag
    ts = _ms(event.occurred_at)
    if type_ == "call.completed":
        error = event.error
        source = event.source
        # (type, ts_ms, template_id, attempt, service, outcome, category, fingerprint,
        #  severity, error_service, worker, fallback_reason): positional is cheapest.
        return Facts(
            type_,
            ts,
            "",
            event.attempt or 1,
            event.service,
            event.outcome,
            "" if error is None else error.category,
            "",
            "",
            "",
            source.worker_id or source.runner_id,
            event.fallback_reason or "",
        )
    if type_ not in ATTEMPT_ENDS:
        return None
    error = getattr(event, "error", None)  # task.succeeded has none
    if error is None:
        return Facts(type_, ts, event.template_id, event.attempt)
    return Facts(
        type_,
        ts,
        event.template_id,
        event.attempt,
        "",
        "",
        error.category,
        error.fingerprint,
        error.severity,
        error.service or "",
    )


def judge(raw: bytes | None) -> tuple[str, int] | None:
    """(type, occurred ms) of a valid record of a fast type, None when the twin cannot
    vouch for it (the caller then asks the codec)."""
    if raw is None:
        return None
    try:
        event = _read_twin(raw)
        return type(event).__struct_config__.tag, _ms(event.occurred_at)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None


def read_facts(raw: bytes | None) -> Facts | None:
    """The facts of one record, None when it is valid but counts for nothing.

    Raises :class:`schemas.DecodeError` (with the codec's reason) for poison — for every
    type, counted or not, so the ingest stage poisons what any stage would refuse.
    """
    if raw is None:
        raise DecodeError("record has no value")
    try:
        return _facts_of_twin(_read_twin(raw))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return facts_of(decode(raw))  # the codec decides, and explains what is wrong


_PROGRESS = {"task.started", "operation.recorded", "task.attempt_failed", "task.succeeded"}


def read_progress(raw: bytes | None) -> tuple[str, dict[str, Any], int] | None:
    """(type, fields, occurred ms) of a task's progress event the twin vouches for;
    None for any other record, which the caller then decodes with the codec."""
    verdict = judge(raw)
    if verdict is None or verdict[0] not in _PROGRESS:
        return None
    return verdict[0], orjson.loads(raw or b""), verdict[1]
