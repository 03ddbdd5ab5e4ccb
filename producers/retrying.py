"""Whether to retry a failed attempt locally, and after how long (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from producers.backoff import Backoff
from producers.breaker import CircuitBreakerRegistry
from producers.budget import RetryBudget
from producers.classify import Classification
from producers.clock import Clock
from producers.errors import CircuitOpenError

__all__ = ["RetryPolicy", "plan_retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff: Backoff
    budget: RetryBudget
    breakers: CircuitBreakerRegistry
    clock: Clock


def plan_retry(
    policy: RetryPolicy,
    exc: BaseException,
    verdict: Classification,
    *,
    attempt: int,
    limit: int,
    deadline: float | None,
) -> tuple[float | None, str]:
    """(delay, "") to retry locally, or (None, why not): only transient errors, within
    the attempt limit and the deadline, not while the service's breaker is open (the
    fleet decides then), and only while the local and the fleet's retry budget last."""
    if not verdict.retryable:
        return None, f"{verdict.category} errors are not retried locally"
    if attempt >= limit:
        return None, f"attempt {attempt} of {limit}"
    if isinstance(exc, CircuitOpenError):
        return None, f"breaker for {exc.service} is open; the fleet decides when to retry"
    service = getattr(exc, "service", None)
    breakers = policy.breakers
    if isinstance(service, str) and service in breakers:
        breaker = breakers.get(service)
        if breaker.state == "open":
            return None, f"breaker for {service} is open"
        if breaker.fleet_budget_spent:
            return None, f"the fleet's retry budget for {service} is spent; the fleet decides"
    delay = policy.backoff.delay(attempt, retry_after=verdict.retry_after)
    if deadline is not None and policy.clock.monotonic() + delay > deadline:
        return None, "the task deadline leaves no time for another attempt"
    if not policy.budget.try_spend():
        return None, "retry budget spent"
    return delay, ""
