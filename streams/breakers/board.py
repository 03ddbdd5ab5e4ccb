"""Every service's fleet breaker and retry budget in one partition of call events (pure).

The board turns ``call.completed`` outcomes into breaker transitions and budget flips,
and the clock into half-opens and periodic re-publishes (the SDK ignores a fleet state
older than ``cluster_state_max_age_s``, so a long OPEN is said again). It mirrors the
SDK's counting: rejected calls are not calls, and only transient and resource errors
count against a service (a validation error says the service is up). A call whose
``attempt`` is above 1 is a retry, for the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from schemas import ConfigureBreaker
from streams.breakers.budget import BudgetConfig, FleetBudget
from streams.breakers.fleet_breaker import FleetBreaker, FleetBreakerConfig, Transition
from streams.facts import Facts

__all__ = ["BoardConfig", "BreakerBoard", "Publication", "breaker_config"]

_NOT_AGAINST = frozenset({"validation", "permanent"})


@dataclass(frozen=True, slots=True)
class BoardConfig:
    defaults: FleetBreakerConfig = field(default_factory=FleetBreakerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    republish_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class Publication:
    """One ``breaker.state`` to publish: a transition, a budget flip or a re-publish."""

    transition: Transition
    budget: dict[str, Any]
    at_ms: int
    kind: str  # "transition" | "budget" | "republish"
    recovery_timeout_s: float = 60.0


def breaker_config(event: ConfigureBreaker, defaults: FleetBreakerConfig) -> FleetBreakerConfig:
    """A ``breaker.config`` record over the defaults (its unset optionals keep them)."""
    optional = {
        name: getattr(event, name)
        for name in (
            "failure_rate_threshold",
            "window_s",
            "minimum_calls",
            "half_open_max_calls",
            "quorum_workers",
        )
        if getattr(event, name) is not None
    }
    return replace(
        defaults,
        failure_threshold=event.failure_threshold,
        recovery_timeout_s=event.recovery_timeout_s,
        success_threshold=event.success_threshold,
        **optional,
    )


class BreakerBoard:
    def __init__(self, config: BoardConfig, overrides: dict[str, FleetBreakerConfig]) -> None:
        self.config = config
        self.overrides = overrides  # shared with the stage: breaker.config applies at once
        self.breakers: dict[str, FleetBreaker] = {}
        self.budgets: dict[str, FleetBudget] = {}
        self.published: dict[str, int] = {}
        self.resets: dict[str, int] = {}
        self._out: list[Publication] = []
        self._dirty: set[str] = set()

    def _breaker(self, service: str) -> FleetBreaker:
        breaker = self.breakers.get(service)
        if breaker is None:
            config = self.overrides.get(service, self.config.defaults)
            breaker = self.breakers[service] = FleetBreaker(service, config)
            self.budgets[service] = FleetBudget(self.config.budget)
        return breaker

    def observe(self, call: Facts) -> None:
        """One ``call.completed`` (as read by :mod:`streams.fastpath`)."""
        if call.outcome == "rejected" or call.fallback_reason == "rejected":
            # Not a call; but its worker is a candidate prober for a breaker not closed.
            rejected = self.breakers.get(call.service)
            if rejected is not None and rejected.state != "closed":
                rejected.wanted(worker=call.worker, at_ms=call.ts_ms)
                self._dirty.add(call.service)
            return
        if call.category in _NOT_AGAINST:
            return
        service, at_ms = call.service, call.ts_ms
        breaker = self._breaker(service)
        ok = call.outcome == "success"
        transition = breaker.observe(ok=ok, worker=call.worker, at_ms=at_ms)
        flipped = self.budgets[service].record(ok=ok, retry=call.attempt > 1, at_ms=at_ms)
        self._dirty.add(service)
        if transition is not None:
            self._publish(transition, at_ms, "transition")
        elif flipped is not None:
            self._publish(self._current(breaker, at_ms), at_ms, "budget")

    def configure(self, service: str, config: FleetBreakerConfig) -> None:
        breaker = self.breakers.get(service)
        if breaker is not None:
            breaker.configure(config)
            self._dirty.add(service)

    def reset(self, service: str, at_ms: int) -> None:
        """``breaker.reset`` issued at ``at_ms``. The control topic is compacted and
        re-read on every start, so a reset is applied once, and only to a breaker that
        opened before it was issued; for a closed one it just clears the counters."""
        if at_ms <= self.resets.get(service, 0):
            return
        self.resets[service] = at_ms
        breaker = self.breakers.get(service)
        if breaker is None:
            return  # nothing to reset: a new deployment reading an old reset
        self._dirty.add(service)
        if breaker.state == "closed":
            breaker.consecutive = 0
            breaker.failing_workers.clear()
            return
        if at_ms < breaker.since_ms:
            return  # issued before this opening: it was meant for an earlier one
        transition = breaker.reset(at_ms)
        if transition is not None:
            self._publish(transition, at_ms, "transition")

    def has_news(self) -> bool:
        """Whether calls just observed changed a published state (publish it now)."""
        return bool(self._out)

    def tick(self, now_ms: int) -> list[Publication]:
        """Timer transitions, budget flips by the window sliding, re-publishes; then
        everything ready to publish."""
        for service, breaker in self.breakers.items():
            transition = breaker.tick(now_ms)
            flipped = self.budgets[service].check(now_ms)
            if transition is not None:
                self._publish(transition, now_ms, "transition")
            elif flipped is not None:
                self._publish(self._current(breaker, now_ms), now_ms, "budget")
            elif self._stale(service, breaker, now_ms):
                self._publish(self._current(breaker, now_ms), now_ms, "republish")
            else:
                continue
            self._dirty.add(service)
        out, self._out = self._out, []
        return out

    def _stale(self, service: str, breaker: FleetBreaker, now_ms: int) -> bool:
        quiet = breaker.state == "closed" and not self.budgets[service].exhausted
        return not quiet and now_ms - self.published.get(service, 0) >= self.config.republish_ms

    def _current(self, breaker: FleetBreaker, at_ms: int) -> Transition:
        return Transition(
            breaker.service,
            breaker.state,
            breaker.since_ms,
            breaker.reason,
            breaker.consecutive,
            breaker.failure_rate(),
            breaker.calls,
            len(breaker.failing_workers),
            breaker.probe_workers,
        )

    def _publish(self, transition: Transition, at_ms: int, kind: str) -> None:
        service = transition.service
        self.published[service] = at_ms
        budget = self.budgets[service].describe()
        timeout = self.breakers[service].config.recovery_timeout_s
        self._out.append(Publication(transition, budget, at_ms, kind, timeout))

    # -- state entries -------------------------------------------------------------------

    def changes(self) -> dict[str, Any | None]:
        dirty, self._dirty = self._dirty, set()
        return {
            service: {
                "breaker": self.breakers[service].snapshot(),
                "budget": self.budgets[service].snapshot(),
                "published": self.published.get(service, 0),
                "reset": self.resets.get(service, 0),
            }
            for service in dirty
            if service in self.breakers
        }

    def load(self, entries: dict[str, Any]) -> None:
        for service, entry in entries.items():
            config = self.overrides.get(service, self.config.defaults)
            self.breakers[service] = FleetBreaker.restore(service, config, entry["breaker"])
            self.budgets[service] = FleetBudget.restore(self.config.budget, entry["budget"])
            self.published[service] = entry["published"]
            self.resets[service] = entry["reset"]
