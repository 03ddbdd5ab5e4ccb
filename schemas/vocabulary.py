"""errorflow's one vocabulary: categories, severities, breaker states, call outcomes.

Defined once here and imported everywhere (SDK, streams, sinks, API); the tuples are
derived from the literals, so a new value is added in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BREAKER_STATES",
    "CALL_OUTCOMES",
    "CATEGORIES",
    "HEALING_STATUSES",
    "SEVERITIES",
    "BreakerStateName",
    "CallOutcome",
    "Category",
    "HealingStatus",
    "Severity",
]

Category = Literal["transient", "resource", "validation", "permanent"]
Severity = Literal["low", "medium", "high", "critical"]
BreakerStateName = Literal["closed", "open", "half_open"]
CallOutcome = Literal["success", "failure", "timeout", "rejected", "fallback"]
HealingStatus = Literal["done", "failed", "skipped"]

CATEGORIES: tuple[Category, ...] = get_args(Category)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
BREAKER_STATES: tuple[BreakerStateName, ...] = get_args(BreakerStateName)
CALL_OUTCOMES: tuple[CallOutcome, ...] = get_args(CallOutcome)
HEALING_STATUSES: tuple[HealingStatus, ...] = get_args(HealingStatus)
