"""Which recovery a failed task gets: the strategy table and custom strategies (pure).

The table maps an error category to an action (DESIGN.md's defaults: transient → retry,
resource → queue, validation → fail_fast, permanent → dead_letter). A retry is only
granted while attempts are left. Custom strategies plug in through the entry-point group
``errorflow.strategies``: an entry point named after a category (or ``*`` for all) is a
callable ``(failure: TaskFailed, attempts_left: int) -> Decision | None``; ``None``
falls through to the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Literal

from schemas import TaskFailed

__all__ = [
    "DEFAULT_TABLE",
    "Action",
    "Decision",
    "Strategy",
    "StrategyTable",
    "load_strategies",
]

log = logging.getLogger("errorflow.worker.strategies")

Action = Literal["retry", "queue", "fail_fast", "dead_letter"]
ENTRY_POINT_GROUP = "errorflow.strategies"
DEFAULT_TABLE: Mapping[str, Action] = {
    "transient": "retry",
    "resource": "queue",
    "validation": "fail_fast",
    "permanent": "dead_letter",
}


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    notification: str | None = None  # fail_fast: what the user is told


Strategy = Callable[[TaskFailed, int], "Decision | None"]


def _notification(failure: TaskFailed) -> str:
    return (
        f"Task {failure.task_id} ({failure.template_id}) was rejected: "
        f"{failure.error.message}. Fix the input and submit it again."
    )


@dataclass(frozen=True, slots=True)
class StrategyTable:
    table: Mapping[str, Action]
    max_attempts: int = 3
    custom: Mapping[str, Strategy] | None = None

    def decide(self, failure: TaskFailed) -> Decision:
        category = failure.error.category
        left = self.max_attempts - failure.attempts
        for name in (category, "*"):
            plugin = (self.custom or {}).get(name)
            decision = plugin(failure, left) if plugin is not None else None
            if decision is not None:
                return decision
        action = self.table.get(category, "dead_letter")
        if action == "retry" and left <= 0:
            return Decision(
                "dead_letter", f"{category} error, out of attempts ({failure.attempts})"
            )
        if action == "fail_fast":
            return Decision(action, f"{category} error: not retried", _notification(failure))
        reasons = {
            "retry": f"{category} error, attempt {failure.attempts} of {self.max_attempts}",
            "queue": f"{category} error: waiting for capacity",
            "dead_letter": f"{category} error: needs a person",
        }
        return Decision(action, reasons[action])


def load_strategies() -> dict[str, Strategy]:
    """Custom strategies from installed packages (a broken plugin is logged, skipped)."""
    found: dict[str, Strategy] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry.name] = entry.load()
        except Exception as exc:  # noqa: BLE001 - one bad plugin must not stop the worker
            log.error("errorflow.worker.strategy_failed name=%s: %r", entry.name, exc)
    return found
