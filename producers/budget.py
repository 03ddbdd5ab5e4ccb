"""A retry budget: retries may not exceed a share of recent successes (Finagle-style)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from producers.clock import Clock, SystemClock

__all__ = ["RetryBudget"]


@dataclass(slots=True)
class RetryBudget:
    """Allows ``min_per_window + ratio * successes`` retries per sliding window.

    When the fleet fails, successes stop and the budget runs dry: local retries stop
    instead of multiplying the load on a struggling service.
    """

    ratio: float = 0.2
    min_per_window: int = 10
    window_s: float = 60.0
    clock: Clock = field(default_factory=SystemClock)
    _successes: deque[float] = field(default_factory=deque)
    _retries: deque[float] = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        for series in (self._successes, self._retries):
            while series and series[0] < horizon:
                series.popleft()

    def record_success(self) -> None:
        now = self.clock.monotonic()
        self._successes.append(now)
        if len(self._successes) > 4096:  # bound memory on a hot path; old ones trim anyway
            self._trim(now)

    def allowance(self) -> float:
        self._trim(self.clock.monotonic())
        return self.min_per_window + self.ratio * len(self._successes) - len(self._retries)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        if self.allowance() < 1:
            return False
        self._retries.append(self.clock.monotonic())
        return True
