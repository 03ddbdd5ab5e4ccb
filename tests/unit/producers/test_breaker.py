"""Breaker transitions with an injected clock, and the cluster-state merge."""

from __future__ import annotations

from producers import BreakerConfig, CircuitBreaker, CircuitBreakerRegistry, ManualClock


def _breaker(**config: float) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    settings = {"failure_threshold": 3, "recovery_timeout": 10, "success_threshold": 2, **config}
    return CircuitBreaker("svc", BreakerConfig(**settings), clock), clock  # type: ignore[arg-type]


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    """Two failures, a success, two failures: still closed; a third in a row opens it."""
    breaker, _ = _breaker()
    for ok in (False, False, True, False, False):
        (breaker.record_success if ok else breaker.record_failure)()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_half_open_after_timeout_admits_bounded_probes_then_closes() -> None:
    """After recovery_timeout one probe at a time; success_threshold successes close it."""
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record_failure()
    clock.advance(9.9)
    assert breaker.state == "open"
    assert 0 < breaker.retry_after() <= 0.11
    clock.advance(0.2)
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # one probe in flight
    breaker.record_success()
    assert breaker.state == "half_open"
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"


def test_probe_failure_reopens() -> None:
    """A failed half-open probe reopens for another full recovery_timeout."""
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.retry_after() == 10


def test_failure_rate_window_with_minimum_calls() -> None:
    """At 50% failures over >= 10 calls the breaker opens though failures were not consecutive."""
    breaker, clock = _breaker(
        failure_threshold=100, failure_rate_threshold=0.5, minimum_calls=10, window_s=30
    )
    for i in range(9):
        (breaker.record_failure if i % 2 else breaker.record_success)()
    assert breaker.state == "closed"  # 9 calls: below minimum
    breaker.record_failure()
    assert breaker.state == "open"
    assert "failure rate" in breaker.reason


def test_cluster_state_is_merged_stricter_wins() -> None:
    """A fleet-wide OPEN rejects calls on a runner whose local breaker is closed; CLOSED
    from the fleet does not override a locally open breaker."""
    registry = CircuitBreakerRegistry(clock=ManualClock())
    breaker = registry.get("comfyui")
    breaker.apply_cluster_state("open", reason="5 failures from 2 workers")
    assert breaker.state == "open"
    assert not breaker.allow()
    breaker.apply_cluster_state("closed")
    assert breaker.allow()
    for _ in range(5):
        breaker.record_failure()
    breaker.apply_cluster_state("closed")
    assert breaker.state == "open"


def test_a_lapsed_fleet_open_lets_probes_through_and_they_close_it() -> None:
    """A fleet OPEN with no news past its lease counts as half-open: one probe at a time;
    success_threshold good probes close the breaker and drop the lapsed fleet view."""
    breaker, clock = _breaker()
    breaker.apply_cluster_state("open", reason="fleet", open_for_s=5)
    assert not breaker.allow()
    clock.advance(5)
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # one probe in flight
    breaker.record_success()
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_a_fleet_half_open_naming_other_probers_rejects_here() -> None:
    breaker, _ = _breaker()
    breaker.apply_cluster_state("half_open", reason="timeout", may_probe=False)
    assert breaker.state == "open"
    breaker.apply_cluster_state("half_open", reason="timeout", may_probe=True)
    assert breaker.allow()


def test_a_failed_fleet_probe_does_not_keep_its_slot() -> None:
    """A runner whose own breaker is closed probes for the fleet's half-open; the probe
    fails (below the local threshold). When the fleet names it again, it probes again
    instead of rejecting every call forever (the demo's stuck fleet)."""
    breaker, clock = _breaker(failure_threshold=5)
    breaker.apply_cluster_state("open", reason="fleet")
    breaker.apply_cluster_state("half_open", reason="timeout", may_probe=True)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"  # a failed probe opens, as in half-open anywhere
    breaker.apply_cluster_state("open", reason="a probe failed")
    clock.advance(10)  # our own recovery timeout
    breaker.apply_cluster_state("half_open", reason="new probers", may_probe=True)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow()
    breaker.record_success()
    breaker.apply_cluster_state("closed", reason="probes succeeded")
    assert breaker.state == "closed"


def test_a_probe_slot_is_given_back_when_the_fleet_moves_on() -> None:
    """A probe admitted in the fleet's half-open whose outcome arrives after the fleet
    re-opened holds no slot into the next half-open."""
    breaker, _ = _breaker()
    breaker.apply_cluster_state("half_open", reason="timeout", may_probe=True)
    assert breaker.allow()
    breaker.apply_cluster_state("half_open", reason="timeout", may_probe=False)
    breaker.record_success()  # the outcome of the probe, now that others probe
    breaker.apply_cluster_state("half_open", reason="new probers", may_probe=True)
    assert breaker.allow()


def test_a_cancelled_probe_gives_its_slot_back() -> None:
    """A probe cancelled mid-call (task cancellation) does not keep the only slot."""
    import asyncio

    from producers.testing import create_test_handler

    async def scenario() -> None:
        handler = create_test_handler()
        breaker = handler.circuit_breakers.get("svc")
        breaker.apply_cluster_state("half_open", reason="timeout", may_probe=True)
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(3600)

        call = asyncio.create_task(handler.protect_external_call("svc", hang))
        await started.wait()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert breaker.allow()

    asyncio.run(scenario())


def test_add_breaker_uses_the_seed_signature() -> None:
    """add_breaker(service, failure_threshold, recovery_timeout, success_threshold)."""
    registry = CircuitBreakerRegistry(clock=ManualClock())
    registry.add_breaker(
        service="my_service", failure_threshold=5, recovery_timeout=120, success_threshold=3
    )
    status = registry.status()["my_service"]
    assert (
        status["failure_threshold"],
        status["recovery_timeout"],
        status["success_threshold"],
    ) == (5, 120, 3)
