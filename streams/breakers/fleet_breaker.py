"""The fleet-wide circuit breaker of one service, from every runner's calls (pure).

The seed's consecutive ``failure_threshold``, ``recovery_timeout`` and
``success_threshold``, an optional failure-rate window with minimum calls, and a quorum
— the breaker opens only when failures come from at least ``quorum_workers`` distinct
workers, so one bad node cannot trip the fleet. OPEN becomes HALF_OPEN by the clock
(:meth:`FleetBreaker.tick`), not only when the next call arrives. HALF_OPEN names at
most ``half_open_max_calls`` probe workers (the most recent callers): only they may
probe, so the fleet sends a bounded number of probes, not one per runner. Time is an
argument (ms); nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from schemas.vocabulary import BreakerStateName

__all__ = ["FleetBreaker", "FleetBreakerConfig", "Transition"]

State = BreakerStateName


@dataclass(frozen=True, slots=True)
class FleetBreakerConfig:
    """Defaults are the seed's ``add_breaker``."""

    failure_threshold: int = 5
    recovery_timeout_s: float = 60.0
    success_threshold: int = 3
    failure_rate_threshold: float | None = None
    window_s: float = 60.0
    minimum_calls: int = 10
    quorum_workers: int = 1
    half_open_max_calls: int = 1


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change to publish as ``breaker.state``."""

    service: str
    state: State
    since_ms: int
    reason: str
    failure_count: int
    failure_rate: float | None
    calls: int
    workers_failing: int
    probe_workers: tuple[str, ...] = ()


@dataclass(slots=True)
class FleetBreaker:
    service: str
    config: FleetBreakerConfig = field(default_factory=FleetBreakerConfig)
    state: State = "closed"
    since_ms: int = 0
    consecutive: int = 0
    failing_workers: set[str] = field(default_factory=set)
    probe_successes: int = 0
    # The rate window as per-second [second, calls, failures], oldest first: its size is
    # bounded by window_s, whatever the call rate (it is part of the changelog state).
    window: deque[list[int]] = field(default_factory=deque)
    window_calls: int = 0
    window_failures: int = 0
    calls: int = 0
    # Recent callers (worker → last call, ms): the candidates for half-open probes.
    callers: dict[str, int] = field(default_factory=dict)
    probe_workers: tuple[str, ...] = ()
    reason: str = ""

    _MAX_CALLERS = 256

    def observe(self, *, ok: bool, worker: str, at_ms: int) -> Transition | None:
        """One call's outcome (success, or a failure/timeout) from ``worker``."""
        self.calls += 1
        self._remember(at_ms, ok)
        self.wanted(worker=worker, at_ms=at_ms)
        if ok:
            self.consecutive = 0
            self.failing_workers.clear()
            if self.state == "half_open":
                self.probe_successes += 1
                if self.probe_successes >= self.config.success_threshold:
                    return self._to("closed", at_ms, f"{self.probe_successes} successful probes")
            return None
        self.consecutive += 1
        self.failing_workers.add(worker)
        if self.state == "half_open":
            return self._to("open", at_ms, "a probe failed in half-open")
        if self.state != "closed" or len(self.failing_workers) < self.config.quorum_workers:
            return None
        if self.consecutive >= self.config.failure_threshold:
            return self._to(
                "open",
                at_ms,
                f"{self.consecutive} consecutive failures from "
                f"{len(self.failing_workers)} worker(s)",
            )
        rate = self.failure_rate()
        threshold = self.config.failure_rate_threshold
        if threshold is not None and rate is not None and rate >= threshold:
            return self._to(
                "open", at_ms, f"failure rate {rate:.0%} over {self.config.window_s:.0f}s"
            )
        return None

    def wanted(self, *, worker: str, at_ms: int) -> None:
        """``worker`` wants the service (it called, or its call was rejected): a
        candidate prober. Counting rejected callers matters: a worker that started
        after the breaker opened never makes a real call until it is named."""
        self.callers.pop(worker, None)
        self.callers[worker] = at_ms  # re-inserted: dict order is recency order
        if len(self.callers) > self._MAX_CALLERS:
            del self.callers[next(iter(self.callers))]

    def tick(self, now_ms: int) -> Transition | None:
        """OPEN → HALF_OPEN once ``recovery_timeout`` has passed, by the clock."""
        timeout_ms = self.config.recovery_timeout_s * 1000
        if self.state == "open" and now_ms - self.since_ms >= timeout_ms:
            return self._to("half_open", now_ms, "recovery timeout elapsed")
        if (
            self.state == "half_open"
            and self.probe_successes == 0
            and now_ms - self.since_ms >= timeout_ms
            and self.callers
        ):
            # The named probers never called (gone, or idle): name others.
            return self._to("half_open", now_ms, "no probe in a recovery timeout; new probers")
        return None

    def reset(self, now_ms: int) -> Transition | None:
        """``breaker.reset``: CLOSED now, whatever the state."""
        return self._to("closed", now_ms, "reset by an operator")

    def failure_rate(self) -> float | None:
        if self.window_calls < self.config.minimum_calls:
            return None
        return self.window_failures / self.window_calls

    def _remember(self, at_ms: int, ok: bool) -> None:
        second = at_ms // 1000
        if self.window and self.window[-1][0] >= second:
            bucket = self.window[-1]  # a late call counts in the newest second
        else:
            bucket = [second, 0, 0]
            self.window.append(bucket)
        bucket[1] += 1
        bucket[2] += 0 if ok else 1
        self.window_calls += 1
        self.window_failures += 0 if ok else 1
        horizon = (at_ms - self.config.window_s * 1000) // 1000
        while self.window and self.window[0][0] < horizon:
            _, calls, failures = self.window.popleft()
            self.window_calls -= calls
            self.window_failures -= failures

    def configure(self, config: FleetBreakerConfig) -> None:
        self.config = config

    def _to(self, state: State, at_ms: int, reason: str) -> Transition | None:
        renamed = reason.startswith("no probe")
        if state == self.state and state != "closed" and not renamed:
            return None
        changed = state != self.state or renamed
        if state == "half_open":
            recent = sorted(self.callers, key=self.callers.__getitem__, reverse=True)
            if renamed:  # others first: the named ones did not probe
                recent = [w for w in recent if w not in self.probe_workers] + list(
                    self.probe_workers
                )
            self.probe_workers = tuple(recent[: self.config.half_open_max_calls])
        else:
            self.probe_workers = ()
        transition = Transition(
            self.service,
            state,
            at_ms,
            reason,
            self.consecutive,
            self.failure_rate(),
            self.calls,
            len(self.failing_workers),
            self.probe_workers,
        )
        self.state, self.since_ms, self.probe_successes = state, at_ms, 0
        self.reason = reason
        if state == "closed":
            self.consecutive = 0
            self.failing_workers.clear()
        return transition if changed or reason.startswith("reset") else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since_ms": self.since_ms,
            "consecutive": self.consecutive,
            "failing_workers": sorted(self.failing_workers),
            "probe_successes": self.probe_successes,
            "window": list(self.window),
            "calls": self.calls,
            "callers": self.callers,
            "probe_workers": list(self.probe_workers),
            "reason": self.reason,
        }

    @classmethod
    def restore(
        cls, service: str, config: FleetBreakerConfig, data: dict[str, Any]
    ) -> FleetBreaker:
        return cls(
            service,
            config,
            state=data["state"],
            since_ms=data["since_ms"],
            consecutive=data["consecutive"],
            failing_workers=set(data["failing_workers"]),
            probe_successes=data["probe_successes"],
            window=deque(list(b) for b in data["window"]),
            window_calls=sum(b[1] for b in data["window"]),
            window_failures=sum(b[2] for b in data["window"]),
            calls=data["calls"],
            callers=dict(data["callers"]),
            probe_workers=tuple(data["probe_workers"]),
            reason=data["reason"],
        )
