"""What self-healing did, per detector (problem) and action: ``GET /self-healing/stats``
(pure; the rows come from ClickHouse).

From the ``healing.action`` commands and the ``healing.result`` answers:

- ``issued`` / ``dry_run``: actions sent (dry-run ones only reported);
- ``succeeded`` / ``failed`` / ``skipped``: the executor's answer per action (a runner,
  or the supervisor) — one per action, however many it sent (a throttle answers when
  applied and when lifted): failed if any answer failed, else done, else skipped;
- ``verified`` / ``unverified``: the stream worker's check afterwards (``details.kind =
  "verification"``): did the problem clear?
- ``suppressed_<verdict>``: diagnoses held back (``details.kind = "suppressed"``), once
  per episode — by ``cooldown``, ``rate_limited``, ``budget`` or ``gave_up``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["COUNTS", "tally"]

COUNTS = (
    "issued",
    "dry_run",
    "succeeded",
    "failed",
    "skipped",
    "verified",
    "unverified",
    "suppressed_cooldown",
    "suppressed_rate_limited",
    "suppressed_budget",
    "suppressed_gave_up",
)
_ANSWER = {"failed": 3, "done": 2, "skipped": 1}


def tally(actions: Iterable[dict[str, Any]], results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``actions``: rows (command_id, action, problem, dry_run); ``results``: rows
    (command_id, action, status, kind, problem, verdict). Returns the totals and one
    row per (problem, action)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    problem_of: dict[str, str] = {}

    def row(problem: str, action: str) -> dict[str, Any]:
        key = (problem or "unknown", action)
        if key not in rows:
            rows[key] = {"problem": key[0], "action": action, **dict.fromkeys(COUNTS, 0)}
        return rows[key]

    for a in actions:
        problem_of[a["command_id"]] = a["problem"]
        row(a["problem"], a["action"])["dry_run" if a["dry_run"] else "issued"] += 1
    answers: dict[tuple[str, str], str] = {}  # (command, action) → worst answer so far
    for r in results:
        kind, status = r["kind"], r["status"]
        problem = r["problem"] or problem_of.get(r["command_id"], "")
        if kind == "verification":
            row(problem, r["action"])["verified" if status == "done" else "unverified"] += 1
        elif kind == "suppressed":
            verdict = f"suppressed_{r['verdict']}"
            if verdict in COUNTS:
                row(problem, r["action"])[verdict] += 1
        elif status in _ANSWER:
            key = (r["command_id"], r["action"])
            if _ANSWER[status] > _ANSWER.get(answers.get(key, ""), 0):
                answers[key] = status
    for (command, action), status in answers.items():
        name = {"done": "succeeded", "failed": "failed", "skipped": "skipped"}[status]
        row(problem_of.get(command, ""), action)[name] += 1
    by_detector = sorted(rows.values(), key=lambda r: (r["problem"], r["action"]))
    totals = {name: sum(r[name] for r in by_detector) for name in COUNTS}
    return {"totals": totals, "by_detector": by_detector}
