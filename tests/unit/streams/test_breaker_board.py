"""The breaker board and the fleet retry budget: what the fleet publishes, and when."""

from __future__ import annotations

from datetime import timedelta

import schemas as s
from streams.breakers.board import BoardConfig, BreakerBoard, breaker_config
from streams.breakers.budget import BudgetConfig, FleetBudget
from streams.breakers.fleet_breaker import FleetBreakerConfig
from streams.facts import Facts
from streams.fastpath import read_facts
from tests.samples import SOURCE, T0, error

T0_MS = int(T0.timestamp() * 1000)


def _call(outcome: str, *, worker: str = "gpu-1", at_ms: int = 0, **extra: object) -> Facts:
    """A call event as the breaker stage reads it: encoded, then through the fast path."""
    event = s.CallCompleted(
        source=SOURCE.model_copy(update={"worker_id": worker}),
        occurred_at=T0 + timedelta(milliseconds=at_ms),
        service="comfyui",
        outcome=outcome,  # type: ignore[arg-type]
        duration_ms=1,
        **extra,  # type: ignore[arg-type]
    )
    facts = read_facts(s.encode(event))
    assert facts is not None
    return facts


def _board(**breaker: object) -> BreakerBoard:
    defaults = FleetBreakerConfig(**{"recovery_timeout_s": 10, **breaker})  # type: ignore[arg-type]
    return BreakerBoard(BoardConfig(defaults, BudgetConfig(0.1, 2, 60), 30_000), {})


def test_open_is_published_with_counters_and_half_open_names_recent_probers() -> None:
    """Five failures from two workers publish OPEN; the timer publishes HALF_OPEN naming
    the most recent caller as the one prober (half_open_max_calls=1)."""
    board = _board()
    for i in range(5):
        board.observe(_call("failure", worker=f"w{i % 2}", at_ms=i, error=error()))
    [opened] = board.tick(T0_MS + 10)
    assert (opened.transition.state, opened.transition.workers_failing) == ("open", 2)
    [half] = board.tick(T0_MS + 10_010)
    assert half.transition.state == "half_open"
    assert half.transition.probe_workers == ("w0",)


def test_rejected_calls_and_validation_errors_do_not_count() -> None:
    """Only real calls with transient/resource errors count against the service."""
    board = _board(failure_threshold=2)
    board.observe(_call("rejected"))
    board.observe(_call("failure", error=error("validation")))
    board.observe(_call("fallback", fallback_reason="rejected"))
    assert board.tick(T0_MS) == []
    assert "comfyui" not in board.breakers


def test_a_worker_started_after_the_opening_gets_named_when_the_prober_is_gone() -> None:
    """w0 opened the breaker and then died; w9, started later, only ever had its calls
    rejected. When w0 does not probe within a recovery timeout, w9 is named."""
    board = _board()
    for i in range(5):
        board.observe(_call("failure", worker="w0", at_ms=i, error=error()))
    board.tick(T0_MS + 10)
    [half] = board.tick(T0_MS + 10_010)
    assert half.transition.probe_workers == ("w0",)
    board.observe(_call("rejected", worker="w9", at_ms=12_000))
    board.observe(_call("fallback", worker="w9", at_ms=13_000, fallback_reason="rejected"))
    [renamed] = board.tick(T0_MS + 20_020)
    assert renamed.transition.probe_workers == ("w9",)
    assert renamed.transition.calls == 5  # rejected calls are still not calls


def test_reset_applies_once_even_when_the_control_topic_is_read_again() -> None:
    board = _board(failure_threshold=1)
    board.observe(_call("failure", error=error()))
    board.tick(T0_MS)
    board.reset("comfyui", T0_MS + 5)
    assert [p.transition.state for p in board.tick(T0_MS + 6)] == ["closed"]
    board.observe(_call("failure", at_ms=10, error=error()))
    board.reset("comfyui", T0_MS + 5)  # the same record, re-read after a restart
    assert board.breakers["comfyui"].state == "open"


def test_an_old_reset_does_not_touch_a_new_deployment_or_a_later_opening() -> None:
    """A reset read from the compacted topic by a fresh board publishes nothing; one
    issued before the breaker opened leaves it open."""
    board = _board(failure_threshold=1)
    board.reset("comfyui", T0_MS - 60_000)
    assert board.tick(T0_MS) == []
    board.observe(_call("failure", error=error()))
    board.tick(T0_MS)
    board.reset("comfyui", T0_MS - 1)
    assert board.breakers["comfyui"].state == "open"
    assert board.tick(T0_MS + 1) == []


def test_state_survives_changes_and_load() -> None:
    """What changes() wrote, load() rebuilds: an OPEN breaker stays OPEN."""
    board = _board(failure_threshold=2)
    for i in range(2):
        board.observe(_call("failure", at_ms=i, error=error()))
    board.tick(T0_MS + 2)
    entries = board.changes()
    again = _board(failure_threshold=2)
    again.load(entries)
    assert again.breakers["comfyui"].state == "open"
    assert [p.transition.state for p in again.tick(T0_MS + 10_002)] == ["half_open"]


def test_budget_flip_is_published_and_a_long_open_is_republished() -> None:
    board = _board(failure_threshold=100)
    for i in range(3):  # floor 2: the third retry exhausts it
        board.observe(_call("failure", at_ms=i, attempt=2, error=error()))
    [flip] = board.tick(T0_MS + 3)
    assert (flip.kind, flip.budget["exhausted"]) == ("budget", True)
    assert board.tick(T0_MS + 4) == []  # quiet until the republish period
    assert [p.kind for p in board.tick(T0_MS + 31_000)] == ["republish"]


def test_breaker_config_overrides_only_what_it_sets() -> None:
    event = s.ConfigureBreaker(source=SOURCE, service="x", failure_threshold=2, quorum_workers=2)
    config = breaker_config(event, FleetBreakerConfig(minimum_calls=7))
    assert (config.failure_threshold, config.quorum_workers, config.minimum_calls) == (2, 2, 7)


def test_fleet_budget_allows_a_share_of_successes_in_the_window() -> None:
    """min 10 + 10% of 200 successes = 30 retries; the 31st is refused; a minute later
    the window has slid and retries are allowed again."""
    budget = FleetBudget(BudgetConfig(ratio=0.1, min_retries=10, window_s=60))
    for i in range(200):
        budget.record(ok=True, retry=False, at_ms=i)
    granted = sum(budget.try_spend(1_000) for _ in range(50))
    assert granted == 30
    assert budget.exhausted
    assert budget.check(62_000) is False
    restored = FleetBudget.restore(budget.config, budget.snapshot())
    assert (restored.retries, restored.successes) == (budget.retries, budget.successes)
