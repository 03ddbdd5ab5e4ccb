"""What one event contributes to the analytics: its facts and its (key, counts) (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from schemas import CallCompleted, Envelope, TaskEvent
from streams.analytics.windows import WindowCounts

__all__ = ["ATTEMPT_ENDS", "Facts", "call_counts", "contributions", "epoch_ms", "facts_of"]

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


def call_counts(facts: Facts) -> WindowCounts | None:
    """What one ``call.completed`` adds to its service's window, or None when it is no
    attempt: a rejected call never reached the service (whether or not a fallback then
    answered it). A failed call answered by a fallback is still a failure of the
    service; only the task above it was spared."""
    outcome = facts.outcome
    if outcome == "rejected" or (outcome == "fallback" and facts.fallback_reason == "rejected"):
        return None
    failed = outcome != "success"
    return WindowCounts(
        attempts=1,
        errors=int(failed),
        by_category={facts.category: 1} if failed and facts.category else {},
    )


def contributions(event: Envelope | Facts | None) -> list[tuple[str, WindowCounts]]:
    """The (key, counts) an event adds: attempts and errors per template (task attempt
    ends) and per service (``call.completed`` only: a task failure that names a service
    was already counted by that call), errors per category and fingerprint. Every pair
    holds its own counts object: callers add them up in place."""
    facts = event if isinstance(event, Facts) or event is None else facts_of(event)
    if facts is None:
        return []
    if facts.type == "call.completed":
        counts = call_counts(facts)
        return [] if counts is None else [(f"service={facts.service}", counts)]
    failed = facts.type in _FAILED
    final = facts.type in ("task.failed", "task.succeeded")
    recovery = final and facts.attempt > 1
    has_error = failed and bool(facts.category)
    critical = int(has_error and facts.severity == "critical")
    out = [
        (
            f"template_id={facts.template_id}",
            WindowCounts(
                attempts=1,
                errors=int(failed),
                critical=critical,
                recovery_attempts=int(recovery),
                recovery_failures=int(recovery and facts.type == "task.failed"),
                by_category={facts.category: 1} if has_error else {},
            ),
        )
    ]
    if has_error:
        for key in (f"category={facts.category}", f"fingerprint={facts.fingerprint}"):
            out.append(
                (
                    key,
                    WindowCounts(
                        attempts=1, errors=1, critical=critical, by_category={facts.category: 1}
                    ),
                )
            )
    return out
