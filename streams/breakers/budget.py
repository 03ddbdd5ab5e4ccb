"""The fleet's retry budget for one service or template (pure, time in ms).

Finagle's rule, fleet-wide: within a sliding window, retries may not exceed
``min_retries + ratio * successes``. When a service fails everywhere, successes stop,
the budget runs dry, and the SDKs (told through ``breaker.state``) stop retrying
locally, so a failing fleet cannot become a retry storm. The floor keeps a quiet
service able to retry at all. Counts are kept per second, so state stays small at any
call rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BudgetConfig", "FleetBudget"]


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    ratio: float = 0.1
    min_retries: int = 10
    window_s: float = 60.0


@dataclass(slots=True)
class FleetBudget:
    config: BudgetConfig = field(default_factory=BudgetConfig)
    # [second, successes, retries], oldest first
    buckets: deque[list[int]] = field(default_factory=deque)
    successes: int = 0
    retries: int = 0
    exhausted: bool = False

    def allowed(self) -> float:
        return self.config.min_retries + self.config.ratio * self.successes

    def record(self, *, ok: bool, retry: bool, at_ms: int) -> bool | None:
        """One attempt; returns the new ``exhausted`` value when it flips."""
        self._add(at_ms, int(ok), int(retry))
        return self.check(at_ms)

    def try_spend(self, at_ms: int) -> bool:
        """Take one retry if the budget allows it (the stream's own retries)."""
        self.check(at_ms)
        if self.exhausted:
            return False
        self._add(at_ms, 0, 1)
        self.check(at_ms)
        return True

    def check(self, now_ms: int) -> bool | None:
        """Slide the window to ``now_ms``; the new ``exhausted`` value when it flips."""
        horizon = (now_ms - self.config.window_s * 1000) // 1000
        while self.buckets and self.buckets[0][0] < horizon:
            _, ok, retry = self.buckets.popleft()
            self.successes -= ok
            self.retries -= retry
        exhausted = self.retries >= self.allowed()
        if exhausted == self.exhausted:
            return None
        self.exhausted = exhausted
        return exhausted

    def _add(self, at_ms: int, ok: int, retry: int) -> None:
        second = at_ms // 1000
        if self.buckets and self.buckets[-1][0] >= second:
            bucket = self.buckets[-1]  # late events count in the newest second
        else:
            bucket = [second, 0, 0]
            self.buckets.append(bucket)
        bucket[1] += ok
        bucket[2] += retry
        self.successes += ok
        self.retries += retry

    def describe(self) -> dict[str, Any]:
        """What ``breaker.state`` carries as its optional ``retry_budget`` field."""
        return {
            "exhausted": self.exhausted,
            "retries": self.retries,
            "successes": self.successes,
            "allowed": round(self.allowed(), 3),
            "ratio": self.config.ratio,
            "window_s": self.config.window_s,
        }

    def snapshot(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "exhausted": self.exhausted}

    @classmethod
    def restore(cls, config: BudgetConfig, data: dict[str, Any]) -> FleetBudget:
        buckets = deque([list(b) for b in data["buckets"]])
        return cls(
            config,
            buckets,
            sum(b[1] for b in buckets),
            sum(b[2] for b in buckets),
            data["exhausted"],
        )
