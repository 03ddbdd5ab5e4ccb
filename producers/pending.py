"""Events as the hot path hands them over: a tuple, materialized off the hot path.

Building a pydantic model (and a UUID, and a datetime) costs several microseconds; a
breaker's success path costs about one. So the SDK's hot path only records *what*
happened — the model class, the wall-clock time, the fields — and the publisher's
sender builds the model later. The bytes on the wire are those of the model built
with full validation, exactly as if it had been built on the hot path
(tests/unit/producers/test_pending.py checks this).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas import CallCompleted, Envelope, Source, Trace

__all__ = ["CALL_FIELDS", "PendingEvent", "materialize"]

# (model class, occurred_at as time.time(), fields, source, trace). Fields are a dict,
# or for the hottest event a tuple in the order POSITIONAL declares (no dict to build).
PendingEvent = tuple[type[Envelope], float, dict[str, Any] | tuple[Any, ...], Source, Trace | None]
CALL_FIELDS = ("service", "outcome", "task_id", "attempt", "duration_ms")
_POSITIONAL: dict[type[Envelope], tuple[str, ...]] = {CallCompleted: CALL_FIELDS}


def materialize(item: Envelope | PendingEvent) -> Envelope:
    """The model for a pending event (an Envelope passes through unchanged)."""
    if isinstance(item, Envelope):
        return item
    model, timestamp, fields, source, trace = item
    if isinstance(fields, tuple):
        fields = dict(zip(_POSITIONAL[model], fields, strict=True))
    occurred = datetime.fromtimestamp(timestamp, UTC)
    occurred = occurred.replace(microsecond=occurred.microsecond // 1000 * 1000)
    return model(
        event_id=str(uuid.uuid4()), occurred_at=occurred, source=source, trace=trace, **fields
    )
