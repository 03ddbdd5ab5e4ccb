"""Reading the few fields the analytics need straight from JSON (pure).

Validating a whole pydantic model costs ~17 µs per event on this machine, most of the
worker's budget. Records that pass these checks of the fields used (and of the
envelope) are counted from the parsed JSON; anything unusual is handed to the contract
codec, which either reads it or says exactly why it is poison.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from schemas import DecodeError, decode
from streams.facts import ATTEMPT_ENDS, Facts, facts_of

__all__ = ["read_facts", "read_progress"]

_TYPES = {*ATTEMPT_ENDS, "call.completed"}
_CATEGORIES = {"transient", "resource", "validation", "permanent"}
_OUTCOMES = {"success", "failure", "timeout", "rejected", "fallback"}


_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch ms, recent seconds
_MILLIS = {f"{n:03d}": n for n in range(1000)}  # validates and converts in one lookup
_FRACTION_SCALE = {1: 100, 2: 10, 3: 1, 4: 1, 5: 1, 6: 1}


def _ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 UTC timestamp (``...Z``). Events of one second
    share its date parse (a dict hit instead of ~2 µs of datetime work); the SDK's
    ``.mmmZ`` form takes one more lookup."""
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
    if len(text) < 20 or text[10] != "T":
        raise ValueError("not a date and time")
    parsed = datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)
    if len(_SECONDS) > 4096:
        _SECONDS.clear()
    _SECONDS[text[:19]] = base = int(parsed.timestamp()) * 1000
    return base


class _Source(msgspec.Struct):
    runner_id: str
    worker_id: str | None = None


class _Error(msgspec.Struct):
    category: str
    fingerprint: str = ""
    severity: str = ""
    service: str | None = None


class _Fields(msgspec.Struct):
    """The fields the analytics read. msgspec checks their types in C and skips every
    other field without building it (half the cost of parsing to dicts and looking
    fields up); anything it refuses goes to the codec."""

    type: str
    schema_version: int
    event_id: str
    occurred_at: str
    source: _Source
    template_id: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    service: str | None = None
    outcome: str | None = None
    error: _Error | None = None
    fallback_reason: str | None = None


_read_fields = msgspec.json.Decoder(_Fields).decode


def _fast(raw: bytes) -> Facts | None:
    event = _read_fields(raw)
    type_ = event.type
    source = event.source
    if event.schema_version != 1 or not event.event_id or not source.runner_id:
        raise ValueError("envelope")
    ts = _ms(event.occurred_at)
    if type_ not in _TYPES:
        return None  # another task event (started, operation...) or a command: nothing to count
    error = event.error
    attempt = event.attempt
    if type_ == "call.completed":
        if event.outcome not in _OUTCOMES or not event.service:
            raise ValueError("call")
        if attempt is None:
            attempt = 1
        elif attempt < 1:
            raise ValueError("call attempt")
        # (type, ts_ms, template_id, attempt, service, outcome, category, fingerprint,
        #  severity, error_service, worker, fallback_reason): positional is cheapest.
        return Facts(
            type_,
            ts,
            "",
            attempt,
            event.service,
            event.outcome,
            "" if error is None else error.category,
            "",
            "",
            "",
            source.worker_id or source.runner_id,
            event.fallback_reason or "",
        )
    if attempt is None or attempt < 1 or not event.task_id or event.template_id is None:
        raise ValueError("task")
    if error is None:
        if type_ != "task.succeeded":
            raise ValueError("error")
        return Facts(type_, ts, event.template_id, attempt)
    if type_ != "task.succeeded" and error.category not in _CATEGORIES:
        raise ValueError("error")
    return Facts(
        type_,
        ts,
        event.template_id,
        attempt,
        "",
        "",
        error.category,
        error.fingerprint,
        error.severity,
        error.service or "",
    )


def read_facts(raw: bytes | None) -> Facts | None:
    """The facts of one record, None when it counts for nothing.

    Raises :class:`schemas.DecodeError` (with the codec's reason) for poison.
    """
    if raw is None:
        raise DecodeError("record has no value")
    try:
        return _fast(raw)
    except (msgspec.DecodeError, ValueError):
        return facts_of(decode(raw))  # the codec decides, and explains what is wrong


_ERROR_KEYS = ("category", "error_type", "message", "fingerprint", "severity", "retryable", "rule")
_PROGRESS = {"task.started", "operation.recorded", "task.attempt_failed", "task.succeeded"}


def _texts(data: dict[str, Any], *names: str) -> None:
    for name in names:
        if not isinstance(data[name], str) or not data[name]:
            raise ValueError(name)


def _progress(raw: bytes) -> tuple[str, dict[str, Any], int] | None:
    data = orjson.loads(raw)
    type_ = data["type"]
    if data["schema_version"] != 1 or not data["event_id"] or not data["source"]["runner_id"]:
        raise ValueError("envelope")
    ts = _ms(data["occurred_at"])
    if type_ not in _PROGRESS:
        return None
    _texts(data, "task_id", "template_id", "operation_type")
    attempt = data["attempt"]
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise ValueError("attempt")
    if type_ == "task.started" and not isinstance(data.get("task_data") or {}, dict):
        raise ValueError("task_data")
    if type_ == "operation.recorded":
        _texts(data, "operation_id", "operation_kind")
        if not isinstance(data["data"], dict):
            raise ValueError("data")
    if type_ == "task.attempt_failed":
        error = data["error"]
        if error["category"] not in _CATEGORIES or any(k not in error for k in _ERROR_KEYS):
            raise ValueError("error")
    return type_, data, ts


def read_progress(raw: bytes | None) -> tuple[str, dict[str, Any], int] | None:
    """(type, fields, occurred ms) of a task's progress event read straight from JSON;
    None for any other record — or one these checks do not vouch for, which the caller
    then decodes with the codec."""
    if raw is None:
        return None
    try:
        return _progress(raw)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
