"""Backoff bounds, Retry-After, and the retry budget."""

from __future__ import annotations

import random

from producers import Backoff, ManualClock, RetryBudget


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    """Every delay is in [0, min(cap, base*2^(n-1))], and the spread uses that range."""
    backoff = Backoff(base_s=0.5, cap_s=4.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [backoff.delay(retry, rng=rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling
        assert min(delays) < 0.2 * ceiling


def test_retry_after_is_a_floor_and_disabled_backoff_waits_nothing() -> None:
    """A server's Retry-After is never undercut; enabled=False returns 0."""
    assert Backoff(base_s=0.1, cap_s=0.2).delay(1, retry_after=5) == 5
    assert Backoff(enabled=False).delay(3, retry_after=5) == 0.0


def test_retry_budget_is_a_share_of_recent_successes() -> None:
    """With no successes only the floor is allowed; successes buy retries; old ones expire."""
    clock = ManualClock()
    budget = RetryBudget(ratio=0.1, min_per_window=2, window_s=60, clock=clock)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    for _ in range(30):
        budget.record_success()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    clock.advance(61)
    assert budget.try_spend()
