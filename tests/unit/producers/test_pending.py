"""The hot path's pending events produce the same wire bytes as models built directly."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import schemas as s
from producers.pending import materialize
from tests.samples import SOURCE


def test_pending_call_event_encodes_like_a_validated_model() -> None:
    """A positional CallCompleted tuple materializes to the bytes of CallCompleted(...)."""
    now = time.time()
    pending = (s.CallCompleted, now, ("comfyui", "success", "task-1", 2, 12.5), SOURCE, None)
    event = materialize(pending)
    occurred = datetime.fromtimestamp(now, UTC)
    direct = s.CallCompleted(
        event_id=event.event_id,
        source=SOURCE,
        occurred_at=occurred.replace(microsecond=occurred.microsecond // 1000 * 1000),
        service="comfyui",
        outcome="success",
        task_id="task-1",
        attempt=2,
        duration_ms=12.5,
    )
    assert s.encode(event) == s.encode(direct)
    assert s.decode(s.encode(event)) == event


def test_pending_dict_event_keeps_every_field_and_validates() -> None:
    """A dict-field pending event round-trips and keeps millisecond UTC time."""
    pending = (
        s.TaskStarted,
        1_790_000_000.123456,
        {
            "task_id": "t",
            "template_id": "sd",
            "operation_type": "img",
            "attempt": 1,
            "task_data": {"prompt": "x"},
        },
        SOURCE,
        None,
    )
    wire = json.loads(s.encode(materialize(pending)))
    assert wire["occurred_at"].endswith(".123Z")
    assert wire["task_data"] == {"prompt": "x"}
