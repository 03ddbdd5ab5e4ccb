"""Fleet state and operator control: breaker state and the compacted control topic."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.timestamps import UtcDateTime
from schemas.vocabulary import BreakerStateName

__all__ = ["BreakerStateChanged", "ConfigureBreaker", "ResetBreaker", "SetAlertThresholds"]


class BreakerStateChanged(Envelope):
    TYPE: ClassVar[str] = "breaker.state"
    type: Literal["breaker.state"] = "breaker.state"
    service: str
    state: BreakerStateName
    since: UtcDateTime
    reason: str
    failure_count: int = Field(ge=0)
    failure_rate: float | None = None
    calls: int = Field(ge=0)
    workers_failing: int | None = None
    # Optional, for SDKs: the template retry budgets touching this service
    # ({"exhausted": bool, ...}), the workers allowed to probe a HALF_OPEN, and how long an
    # OPEN holds without news (a lease: twice this).
    retry_budget: dict[str, Any] | None = None
    probe_workers: list[str] | None = None
    recovery_timeout_s: float | None = Field(default=None, gt=0)


class ResetBreaker(Envelope):
    TYPE: ClassVar[str] = "breaker.reset"
    type: Literal["breaker.reset"] = "breaker.reset"
    service: str


class ConfigureBreaker(Envelope):
    """Per-service breaker settings; defaults are the seed's ``add_breaker`` values."""

    TYPE: ClassVar[str] = "breaker.config"
    type: Literal["breaker.config"] = "breaker.config"
    service: str
    failure_threshold: int = Field(default=5, ge=1)
    recovery_timeout_s: float = Field(default=60.0, gt=0)
    success_threshold: int = Field(default=3, ge=1)
    failure_rate_threshold: float | None = Field(default=None, gt=0, le=1)
    window_s: float | None = Field(default=None, gt=0)
    minimum_calls: int | None = Field(default=None, ge=1)
    half_open_max_calls: int | None = Field(default=None, ge=1)
    quorum_workers: int | None = Field(default=None, ge=1)


class SetAlertThresholds(Envelope):
    TYPE: ClassVar[str] = "alerts.thresholds"
    type: Literal["alerts.thresholds"] = "alerts.thresholds"
    error_rate: float = Field(default=0.15, ge=0, le=1)
    specific_error_count: int = Field(default=20, ge=1)
    recovery_failure_rate: float = Field(default=0.25, ge=0, le=1)
