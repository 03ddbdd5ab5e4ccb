"""Retry delays: exponential backoff with full jitter, Retry-After and deadlines."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n)`` for the n-th retry is uniform in ``[0, min(cap, base * 2**(n-1))]``
    (AWS "full jitter"); a server's Retry-After is a floor, and ``enabled=False`` turns
    waiting off (tests), as stamina does."""

    base_s: float = 0.5
    cap_s: float = 30.0
    enabled: bool = True

    def ceiling(self, retry: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** max(0, retry - 1))

    def delay(
        self, retry: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        if not self.enabled:
            return 0.0
        jittered: float = (rng or random).uniform(0.0, self.ceiling(retry))  # noqa: S311 - not crypto
        return max(jittered, retry_after or 0.0)
