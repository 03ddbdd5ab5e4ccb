"""The fleet breaker's transitions, with time as an argument."""

from __future__ import annotations

from streams.breakers.fleet_breaker import FleetBreaker, FleetBreakerConfig


def _breaker(**config: object) -> FleetBreaker:
    settings = {"failure_threshold": 5, "recovery_timeout_s": 10, "success_threshold": 2, **config}
    return FleetBreaker("comfyui", FleetBreakerConfig(**settings))  # type: ignore[arg-type]


def test_five_failures_from_two_workers_open_then_the_clock_half_opens() -> None:
    """Consecutive failures across the fleet open it; after recovery_timeout the timer
    (not a call) moves it to half-open; success_threshold probes close it."""
    breaker = _breaker()
    changes = [breaker.observe(ok=False, worker=f"w{i % 2}", at_ms=i) for i in range(5)]
    assert [c.state for c in changes if c] == ["open"]
    assert changes[-1].workers_failing == 2  # type: ignore[union-attr]
    assert breaker.tick(9_000) is None
    assert breaker.tick(10_004).state == "half_open"  # type: ignore[union-attr]
    assert breaker.observe(ok=True, worker="w0", at_ms=10_100) is None
    closed = breaker.observe(ok=True, worker="w1", at_ms=10_200)
    assert closed is not None
    assert closed.state == "closed"


def test_quorum_keeps_one_bad_worker_from_tripping_the_fleet() -> None:
    """With quorum 2, any number of failures from one worker leave it closed."""
    breaker = _breaker(quorum_workers=2)
    assert all(breaker.observe(ok=False, worker="bad", at_ms=i) is None for i in range(20))
    assert breaker.state == "closed"
    assert breaker.observe(ok=False, worker="other", at_ms=21).state == "open"  # type: ignore[union-attr]


def test_probe_failure_reopens_and_reset_closes() -> None:
    """A failed half-open probe reopens; breaker.reset closes at once."""
    breaker = _breaker(failure_threshold=1)
    breaker.observe(ok=False, worker="w", at_ms=0)
    breaker.tick(10_000)
    assert breaker.observe(ok=False, worker="w", at_ms=10_001).state == "open"  # type: ignore[union-attr]
    reset = breaker.reset(10_002)
    assert reset is not None
    assert (reset.state, breaker.state) == ("closed", "closed")


def test_failure_rate_window_with_minimum_calls() -> None:
    """At 50% over >= 10 calls it opens though failures were never consecutive enough."""
    breaker = _breaker(failure_threshold=100, failure_rate_threshold=0.5, minimum_calls=10)
    results = [breaker.observe(ok=i % 2 == 0, worker="w", at_ms=i) for i in range(10)]
    assert [r.state for r in results if r] == ["open"]
    assert "failure rate" in results[-1].reason  # type: ignore[union-attr]
