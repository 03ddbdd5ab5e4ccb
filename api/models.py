"""What the API accepts: strict request bodies and path values (validated, never coerced)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from schemas.timestamps import UtcDateTime

__all__ = [
    "DEFAULT_THRESHOLDS",
    "BreakerSettings",
    "ReplayRequest",
    "ServiceName",
    "SqlRequest",
    "Thresholds",
    "ThresholdsPatch",
]

SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
ServiceName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=SERVICE.pattern,
        description="letters, digits and . _ : / - (at most 200)",
    ),
]
_STRICT = ConfigDict(extra="forbid", strict=True)
Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=1_000_000_000)]

DEFAULT_THRESHOLDS = {
    "error_rate": 0.15,
    "specific_error_count": 20,
    "recovery_failure_rate": 0.25,
}


class SqlRequest(BaseModel):
    model_config = _STRICT
    sql: str = Field(min_length=1, max_length=100_000)


class Thresholds(BaseModel):
    """The seed's three alert thresholds; PUT replaces all three."""

    model_config = _STRICT
    error_rate: Rate
    specific_error_count: Count
    recovery_failure_rate: Rate


class ThresholdsPatch(BaseModel):
    """A partial update, merged with the current thresholds."""

    model_config = _STRICT
    error_rate: Rate | None = None
    specific_error_count: Count | None = None
    recovery_failure_rate: Rate | None = None


class BreakerSettings(BaseModel):
    """The seed's ``add_breaker`` values for the fleet breaker of one service."""

    model_config = _STRICT
    failure_threshold: Count = 5
    recovery_timeout_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] = 60.0
    success_threshold: Count = 3
    failure_rate_threshold: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    window_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] | None = None
    minimum_calls: Count | None = None
    half_open_max_calls: Count | None = None
    quorum_workers: Count | None = None


class ReplayRequest(BaseModel):
    """The `errorflow dlq replay` selectors: at least one, or ``all``."""

    model_config = _STRICT
    task_ids: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=10_000
    )
    fingerprint: str | None = Field(None, min_length=1, max_length=200)
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    all: bool = False
    dry_run: bool = False
    force: bool = False
    rate_per_s: Annotated[float, Field(ge=1, le=10_000, allow_inf_nan=False)] = 50.0
    by: str = Field("api", min_length=1, max_length=200)
