"""The one codec: models to UTF-8 JSON bytes and back."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from schemas.analytics import (
    AlertFiring,
    AlertResolved,
    AnomalyDetected,
    PoisonRecorded,
    TaskDeadLettered,
)
from schemas.commands import (
    CompensateOperation,
    DeadLetterTask,
    FailTaskFast,
    QueueTask,
    RetryTask,
    RunHealingAction,
)
from schemas.control import BreakerStateChanged, ConfigureBreaker, ResetBreaker, SetAlertThresholds
from schemas.envelope import Envelope
from schemas.errors import DecodeError
from schemas.events import (
    CallCompleted,
    CompensationCompleted,
    CompensationFailed,
    HealingResult,
    OperationRecorded,
    ResourceAvailable,
    TaskAttemptFailed,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
    WorkerHeartbeat,
)

__all__ = ["MODELS", "decode", "encode"]

MODELS: dict[str, type[Envelope]] = {
    model.TYPE: model
    for model in (
        TaskStarted,
        OperationRecorded,
        TaskAttemptFailed,
        TaskSucceeded,
        TaskFailed,
        CompensationCompleted,
        CompensationFailed,
        CallCompleted,
        WorkerHeartbeat,
        ResourceAvailable,
        HealingResult,
        RetryTask,
        QueueTask,
        DeadLetterTask,
        FailTaskFast,
        CompensateOperation,
        RunHealingAction,
        BreakerStateChanged,
        ResetBreaker,
        ConfigureBreaker,
        SetAlertThresholds,
        AnomalyDetected,
        AlertFiring,
        AlertResolved,
        TaskDeadLettered,
        PoisonRecorded,
    )
}


def encode(event: Envelope) -> bytes:
    """The record value for ``event``: one UTF-8 JSON object."""
    return event.model_dump_json().encode()


def _parse(raw: bytes | str) -> dict[str, Any]:
    try:
        # Decode explicitly: json.loads would sniff UTF-16/32 from a BOM, and the
        # contract says UTF-8.
        text = raw.decode() if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise DecodeError(f"record is not UTF-8: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"record is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DecodeError(f"record is JSON {type(data).__name__}, not an object")
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode(raw: bytes | str) -> Envelope:
    """Decode one record value into its model.

    Raises :class:`schemas.DecodeError` (whose message says what is wrong) for invalid
    JSON, a missing or unknown ``type``, a ``schema_version`` newer than this reader,
    and missing or invalid fields. Unknown extra fields are kept, not rejected.
    """
    data = _parse(raw)
    type_ = data.get("type")
    if type_ is None:
        raise DecodeError("field 'type' is missing")
    model = MODELS.get(type_) if isinstance(type_, str) else None
    if model is None:
        raise DecodeError(f"unknown type {type_!r}", type=str(type_))
    version = data.get("schema_version")
    if (
        isinstance(version, int)
        and not isinstance(version, bool)
        and version > model.SCHEMA_VERSION
    ):
        raise DecodeError(
            f"{type_} schema_version {version} is newer than this reader understands "
            f"(up to {model.SCHEMA_VERSION}); upgrade errorflow",
            type=type_,
        )
    try:
        return model.model_validate(data, context={"wire": True})
    except ValidationError as exc:
        raise DecodeError(f"invalid {type_}: {_describe(exc)}", type=type_) from None
