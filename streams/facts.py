"""What one event contributes to the analytics: its facts and its (key, counts) (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from schemas import CallCompleted, Envelope, TaskEvent
from streams.windows import WindowCounts

__all__ = ["ATTEMPT_ENDS", "Facts", "contributions", "epoch_ms", "facts_of"]

# Each task attempt ends with exactly one of these; each external call with one
# call.completed.
ATTEMPT_ENDS = {"task.succeeded", "task.attempt_failed", "task.failed"}
_FAILED = {"task.attempt_failed", "task.failed"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (``timestamp() * 1000`` is a float product
    that can land one below: .123 s read as 122 ms)."""
    return (moment - _EPOCH) // _MS


class Facts(NamedTuple):
    """What the analytics need of one event (from a model or straight from JSON).

    A named tuple, not a frozen dataclass: one is built per event per stage, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) cost ~5 % of the
    worker's time."""

    type: str
    ts_ms: int
    template_id: str = ""
    attempt: int = 1
    service: str = ""
    outcome: str = ""
    category: str = ""
    fingerprint: str = ""
    severity: str = ""
    error_service: str = ""
    # Calls only, for the fleet breakers: who called, and why a fallback was served.
    worker: str = ""
    fallback_reason: str = ""


def facts_of(event: Envelope) -> Facts | None:
    ts = epoch_ms(event.occurred_at)
    if isinstance(event, CallCompleted):
        error = event.error
        return Facts(
            "call.completed",
            ts,
            attempt=event.attempt or 1,
            service=event.service,
            outcome=event.outcome,
            category=error.category if error else "",
            worker=event.source.worker_id or event.source.runner_id,
            fallback_reason=str(getattr(event, "fallback_reason", "") or ""),
        )
    if not isinstance(event, TaskEvent) or event.type not in ATTEMPT_ENDS:
        return None
    error = getattr(event, "error", None)
    return Facts(
        event.type,
        ts,
        event.template_id,
        event.attempt,
        category=error.category if error else "",
        fingerprint=error.fingerprint if error else "",
        severity=error.severity if error else "",
        error_service=(error.service or "") if error else "",
    )


def contributions(event: Envelope | Facts | None) -> list[tuple[str, WindowCounts]]:
    """The (key, counts) an event adds: attempts and errors per service and template,
    errors per category and fingerprint."""
    facts = event if isinstance(event, Facts) or event is None else facts_of(event)
    if facts is None:
        return []
    if facts.type == "call.completed":
        failed = facts.outcome in ("failure", "timeout")
        counts = WindowCounts(attempts=1, errors=int(failed))
        if failed and facts.category:
            counts.by_category = {facts.category: 1}
        return [(f"service={facts.service}", counts)]
    failed = facts.type in _FAILED
    final = facts.type in ("task.failed", "task.succeeded")
    recovery = final and facts.attempt > 1
    has_error = failed and bool(facts.category)
    counts = WindowCounts(
        attempts=1,
        errors=int(failed),
        critical=int(has_error and facts.severity == "critical"),
        recovery_attempts=int(recovery),
        recovery_failures=int(recovery and facts.type == "task.failed"),
        by_category={facts.category: 1} if has_error else {},
    )
    out = [(f"template_id={facts.template_id}", counts)]
    if has_error:
        only_error = WindowCounts(
            attempts=1, errors=1, critical=counts.critical, by_category=dict(counts.by_category)
        )
        out.append((f"category={facts.category}", only_error))
        out.append((f"fingerprint={facts.fingerprint}", only_error))
        if facts.error_service:
            out.append((f"service={facts.error_service}", counts))
    return out
