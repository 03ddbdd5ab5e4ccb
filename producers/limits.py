"""Record size limits: one oversized event must never stop a runner's delivery.

Kafka refuses a record above the broker's ``message.max.bytes`` (1 MiB by default) and
retrying it can never succeed. So before sending, a record over
:data:`MAX_RECORD_BYTES` has its bulky free-form fields (``task_data``, an operation's
``data``) replaced by a marker saying how big they were, plus a short preview — the
event itself (its type, ids, error) still arrives. A record still too big, or one the
broker refuses anyway, is written to the dead-letter file beside the spool with the
reason (:class:`producers.publisher.KafkaPublisher`), and delivery goes on.
"""

from __future__ import annotations

import json
from typing import Any

from schemas import Envelope, encode

__all__ = ["MAX_FIELD_PREVIEW", "MAX_RECORD_BYTES", "TRUNCATED_KEY", "shrink"]

#: Largest record value the SDK sends as is (room left under Kafka's 1 MiB default).
MAX_RECORD_BYTES = 900_000
#: Characters of a truncated field's JSON kept as a preview.
MAX_FIELD_PREVIEW = 1_000
#: The key of the marker object that replaces a truncated field.
TRUNCATED_KEY = "_errorflow_truncated"
_BULKY = ("task_data", "data")


def _marker(value: Any) -> dict[str, Any]:
    text = json.dumps(value, default=str)
    return {
        TRUNCATED_KEY: True,
        "original_bytes": len(text.encode()),
        "preview": text[:MAX_FIELD_PREVIEW],
    }


def shrink(event: Envelope, value: bytes) -> tuple[bytes, bool]:
    """``(value, truncated)``: the record as encoded, or — when over the limit — with its
    bulky fields replaced by markers. The caller checks the result's size again."""
    if len(value) <= MAX_RECORD_BYTES:
        return value, False
    update = {
        name: _marker(getattr(event, name))
        for name in _BULKY
        if isinstance(getattr(event, name, None), dict)
    }
    if not update:
        return value, False
    return encode(event.model_copy(update=update)), True
