"""The local circuit breaker, merged with the fleet's breaker state.

States follow the seed: CLOSED until ``failure_threshold`` consecutive failures (or,
optionally, a failure rate over a time window once ``minimum_calls`` were seen, as
Resilience4j does); OPEN rejects calls for ``recovery_timeout`` seconds; HALF_OPEN
admits at most ``half_open_max_calls`` concurrent probes and closes after
``success_threshold`` successes, reopening on any failure. The state the stream
workers publish for the whole fleet (``errorflow.breaker-state``) is merged in: the
stricter of the local and the cluster state wins.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from producers.clock import Clock, SystemClock
from schemas.vocabulary import BreakerStateName

__all__ = ["BreakerConfig", "CircuitBreaker", "CircuitBreakerRegistry", "State"]

State = BreakerStateName
_STRICTNESS: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    success_threshold: int = 3
    half_open_max_calls: int = 1
    failure_rate_threshold: float | None = None
    window_s: float = 60.0
    minimum_calls: int = 10

    def __post_init__(self) -> None:
        """Invalid settings raise here, at ``add_breaker``, not at the first call."""
        whole: dict[str, int] = {
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
            "half_open_max_calls": self.half_open_max_calls,
            "minimum_calls": self.minimum_calls,
        }
        for name, value in whole.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        seconds: dict[str, float] = {
            "recovery_timeout": self.recovery_timeout,
            "window_s": self.window_s,
        }
        for name, span in seconds.items():
            if isinstance(span, bool) or not isinstance(span, int | float) or not span > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {span!r}")
            if span == float("inf"):
                raise ValueError(f"{name} must be finite, not {span!r}")
        rate = self.failure_rate_threshold
        if rate is not None and (isinstance(rate, bool) or not 0 < rate <= 1):
            raise ValueError(f"failure_rate_threshold must be in (0, 1], not {rate!r}")


@dataclass(slots=True)
class _ClusterView:
    state: State
    since: float
    reason: str
    # A fleet OPEN is a lease: past this (monotonic) time without news it counts as
    # HALF_OPEN, so a stream that is gone or lost its state cannot stop a fleet forever.
    until: float = float("inf")

    def effective(self, now: float) -> State:
        return "half_open" if self.state == "open" and now >= self.until else self.state


@dataclass(slots=True)
class CircuitBreaker:
    """One service's breaker. Call :meth:`allow` before a call; report its outcome."""

    service: str
    config: BreakerConfig = field(default_factory=BreakerConfig)
    clock: Clock = field(default_factory=SystemClock)
    _state: State = "closed"
    _opened_at: float = 0.0
    _consecutive_failures: int = 0
    _half_open_successes: int = 0
    _probes_in_flight: int = 0
    _window: deque[tuple[float, bool]] = field(default_factory=deque)
    _cluster: _ClusterView | None = None
    reason: str = ""
    transitions: int = 0
    fleet_budget_spent: bool = False

    # True while both the local and the cluster state are closed: the success path
    # then costs two attribute reads (benchmarks/sdk_overhead.py).
    _fast_closed: bool = True
    _fast_success: bool = True

    def __post_init__(self) -> None:
        self._refresh_fast_path()

    @property
    def local_state(self) -> State:
        if (
            self._state == "open"
            and self.clock.monotonic() - self._opened_at >= self.config.recovery_timeout
        ):
            self._to("half_open", "recovery timeout elapsed")
        return self._state

    @property
    def state(self) -> State:
        """The effective state: the stricter of local and cluster."""
        local = self.local_state
        if self._cluster is not None:
            cluster = self._cluster.effective(self.clock.monotonic())
            if _STRICTNESS[cluster] > _STRICTNESS[local]:
                return cluster
        return local

    def retry_after(self) -> float:
        """Seconds until an open breaker may admit a probe (0 when not open)."""
        now = self.clock.monotonic()
        if self.local_state == "open":
            return max(
                0.0, self.config.recovery_timeout - (self.clock.monotonic() - self._opened_at)
            )
        if self._cluster is not None and self._cluster.state == "open":
            return max(0.0, min(self.config.recovery_timeout, self._cluster.until - now))
        return 0.0

    def allow(self) -> bool:
        """Whether a call may go out now; a half-open admission reserves a probe slot."""
        if self._fast_closed:
            return True
        state = self.state
        if state == "open":
            return False
        if state == "half_open":
            if self._probes_in_flight >= self.config.half_open_max_calls:
                return False
            self._probes_in_flight += 1
        return True

    def record_success(self) -> None:
        if self._fast_closed and self.config.failure_rate_threshold is None:
            self._consecutive_failures = 0
            return
        if self.config.failure_rate_threshold is not None:
            self._observe(self.clock.monotonic(), ok=True)
        self._consecutive_failures = 0
        if self._fast_closed:
            return
        if self._state == "half_open" or self.state == "half_open":
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                cluster = self._cluster
                if cluster is not None and cluster.effective(self.clock.monotonic()) != (
                    cluster.state
                ):
                    self._cluster = None  # the lapsed fleet OPEN: our probes answered it
                self._to("closed", f"{self._half_open_successes} successful probes")

    def record_failure(self) -> None:
        now = self.clock.monotonic()
        if self.config.failure_rate_threshold is not None:
            self._observe(now, ok=False)
        self._consecutive_failures += 1
        # A failed probe opens, whether the half-open was ours or the fleet's (a runner
        # whose own breaker is closed probes when the fleet names it). Opening also
        # frees the probe slot: a slot kept here once left a fleet rejecting every call.
        if self._state == "half_open" or (not self._fast_closed and self.state == "half_open"):
            self._open(now, "probe failed in half-open")
            return
        if self._state != "closed":
            return
        if self._consecutive_failures >= self.config.failure_threshold:
            self._open(now, f"{self._consecutive_failures} consecutive failures")
            return
        rate = self.failure_rate()
        threshold = self.config.failure_rate_threshold
        if threshold is not None and rate is not None and rate >= threshold:
            self._open(now, f"failure rate {rate:.0%} over {self.config.window_s:.0f}s")

    def release(self) -> None:
        """Give back a half-open probe slot for a call whose outcome does not count."""
        self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def failure_rate(self) -> float | None:
        """Failures / calls in the window, once ``minimum_calls`` were seen (None when
        no ``failure_rate_threshold`` is configured: the window is not kept then)."""
        if (
            self.config.failure_rate_threshold is None
            or len(self._window) < self.config.minimum_calls
        ):
            return None
        failures = sum(1 for _, ok in self._window if not ok)
        return failures / len(self._window)

    def reset(self) -> None:
        self._to("closed", "reset")
        self._window.clear()

    def apply_cluster_state(
        self,
        state: State,
        *,
        reason: str = "",
        may_probe: bool = True,
        budget_spent: bool = False,
        open_for_s: float | None = None,
    ) -> None:
        """Merge the fleet's view for this service (from ``errorflow.breaker-state``).

        A fleet HALF_OPEN that names other workers as its probers is OPEN here: the
        fleet sends a bounded number of probes, not one per runner. ``budget_spent``
        says the fleet's retry budget for the service is used up. ``open_for_s`` bounds
        how long a fleet OPEN holds without news (then it counts as HALF_OPEN).
        """
        if state == "half_open" and not may_probe:
            state, reason = "open", f"{reason}; other workers probe"
        now = self.clock.monotonic()
        until = now + open_for_s if open_for_s is not None else float("inf")
        self._cluster = _ClusterView(state, now, reason, until)
        self.fleet_budget_spent = budget_spent
        self._refresh_fast_path()
        if self.state != "half_open":
            # Probes admitted in a half-open that is over hold no slot into the next.
            self._probes_in_flight = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "local_state": self.local_state,
            "cluster_state": self._cluster.state if self._cluster else None,
            "reason": self._cluster.reason
            if self._cluster and self.state != self.local_state
            else self.reason,
            "consecutive_failures": self._consecutive_failures,
            "failure_rate": self.failure_rate(),
            "retry_after_s": round(self.retry_after(), 3),
            "failure_threshold": self.config.failure_threshold,
            "recovery_timeout": self.config.recovery_timeout,
            "success_threshold": self.config.success_threshold,
        }

    def _observe(self, now: float, *, ok: bool) -> None:
        self._window.append((now, ok))
        horizon = now - self.config.window_s
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()

    def _open(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._to("open", reason)

    def _to(self, state: State, reason: str) -> None:
        if state != self._state:
            self.transitions += 1
        self._state = state
        self.reason = reason
        if state != "half_open":
            self._probes_in_flight = 0
        self._half_open_successes = 0
        if state == "closed":
            self._consecutive_failures = 0
        self._refresh_fast_path()

    def _refresh_fast_path(self) -> None:
        cluster_closed = self._cluster is None or self._cluster.state == "closed"
        self._fast_closed = self._state == "closed" and cluster_closed
        # A success then only resets the consecutive-failure count.
        self._fast_success = self._fast_closed and self.config.failure_rate_threshold is None


class CircuitBreakerRegistry:
    """``handler.circuit_breakers``: one breaker per service, created on first use."""

    def __init__(self, *, default: BreakerConfig | None = None, clock: Clock | None = None) -> None:
        self._default = default or BreakerConfig()
        self._clock = clock or SystemClock()
        self.breakers: dict[str, CircuitBreaker] = {}
        #: Called with (service, config) by ``add_breaker(..., fleet=True)``; the handler
        #: publishes it as ``breaker.config`` so the fleet breaker uses the same settings.
        self.on_fleet_config: Callable[[str, BreakerConfig], None] | None = None

    def add_breaker(
        self,
        service: str,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        success_threshold: int = 3,
        *,
        fleet: bool = False,
        **options: Any,
    ) -> CircuitBreaker:
        """Configure ``service``'s breaker (the seed's signature, plus optional rate-window
        settings: ``failure_rate_threshold``, ``window_s``, ``minimum_calls``,
        ``half_open_max_calls``). Invalid values raise ``ValueError``. ``fleet=True``
        also publishes the settings as ``breaker.config``, so the fleet-wide breaker of
        the stream worker trips and recovers by the same numbers."""
        if not isinstance(service, str) or not service or len(service) > 200:
            raise ValueError(f"service must be a name of 1-200 characters, not {service!r}")
        config = BreakerConfig(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            success_threshold=success_threshold,
            **options,
        )
        if fleet:
            if self.on_fleet_config is None:
                raise RuntimeError("fleet=True needs a registry owned by an ErrorHandler")
            self.on_fleet_config(service, config)
        previous = self.breakers.get(service)
        breaker = CircuitBreaker(service, config, self._clock)
        if previous is not None and previous._cluster is not None:
            breaker._cluster = previous._cluster
            breaker._refresh_fast_path()
        self.breakers[service] = breaker
        return breaker

    def get(self, service: str) -> CircuitBreaker:
        breaker = self.breakers.get(service)
        if breaker is None:  # first use of a service: default settings
            breaker = self.breakers[service] = CircuitBreaker(service, self._default, self._clock)
        return breaker

    def __contains__(self, service: object) -> bool:
        return service in self.breakers

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: b.snapshot() for name, b in sorted(self.breakers.items())}

    def reset(self, service: str) -> None:
        self.get(service).reset()
