"""Fleet breaker states as contract records, with ids derived from their cause.

Reprocessing after a crash produces the same ids, so consumers drop duplicates.
"""

from __future__ import annotations

import uuid

from schemas import BreakerStateChanged, Source
from streams.breakers.board import Publication
from streams.ids import NAMESPACE, utc

__all__ = ["breaker_event"]


def breaker_event(publication: Publication, source: Source) -> BreakerStateChanged:
    """A fleet breaker's state; the optional ``retry_budget``, ``probe_workers`` and
    ``recovery_timeout_s`` fields tell SDKs whether local retries may continue, who may
    probe, and how long an OPEN holds without news."""
    t = publication.transition
    return BreakerStateChanged(
        event_id=str(
            uuid.uuid5(
                NAMESPACE,
                f"breaker|{t.service}|{t.state}|{t.since_ms}|{publication.kind}|"
                f"{publication.at_ms}",
            )
        ),
        occurred_at=utc(publication.at_ms),
        source=source,
        service=t.service,
        state=t.state,
        since=utc(t.since_ms),
        reason=t.reason,
        failure_count=t.failure_count,
        failure_rate=t.failure_rate,
        calls=t.calls,
        workers_failing=t.workers_failing,
        retry_budget=publication.budget,
        probe_workers=list(t.probe_workers),
        recovery_timeout_s=publication.recovery_timeout_s,
    )
