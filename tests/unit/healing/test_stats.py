"""Self-healing stats from action and result rows, counted by hand here."""

from __future__ import annotations

from typing import Any

from healing.stats import tally


def _action(cid: str, action: str, problem: str, dry_run: bool = False) -> dict[str, Any]:
    return {"command_id": cid, "action": action, "problem": problem, "dry_run": dry_run}


def _result(
    cid: str, action: str, status: str, kind: str = "", problem: str = "", verdict: str = ""
) -> dict[str, Any]:
    return {
        "command_id": cid,
        "action": action,
        "status": status,
        "kind": kind,
        "problem": problem,
        "verdict": verdict,
    }


def test_each_action_counts_once_by_its_worst_answer_and_checks_count_apart() -> None:
    actions = [
        _action("a", "throttle_processing", "high_cpu"),
        _action("b", "throttle_processing", "high_cpu"),
        _action("c", "throttle_processing", "high_cpu", dry_run=True),
        _action("d", "restart_worker", "unresponsive_worker"),
    ]
    results = [
        # a throttle answers twice (applied, lifted): one success
        _result("a", "throttle_processing", "done"),
        _result("a", "throttle_processing", "done"),
        _result("a", "throttle_processing", "done", kind="verification"),
        # b: applied, then a failure: counted failed
        _result("b", "throttle_processing", "done"),
        _result("b", "throttle_processing", "failed"),
        _result("c", "throttle_processing", "skipped"),  # dry-run answered skipped
        _result("d", "restart_worker", "done"),
        _result("d", "restart_worker", "failed", kind="verification"),
        _result("x", "restart_worker", "skipped", "suppressed", "unresponsive_worker", "cooldown"),
        _result("y", "scale_resources", "skipped", "suppressed", "queue_backlog", "budget"),
        _result("z", "scale_resources", "skipped", "suppressed", "queue_backlog", "weird"),
    ]
    out = tally(actions, results)
    rows = {(r["problem"], r["action"]): r for r in out["by_detector"]}
    cpu = rows[("high_cpu", "throttle_processing")]
    assert (cpu["issued"], cpu["dry_run"], cpu["succeeded"], cpu["failed"], cpu["skipped"]) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert (cpu["verified"], cpu["unverified"]) == (1, 0)
    gone = rows[("unresponsive_worker", "restart_worker")]
    assert (gone["issued"], gone["succeeded"], gone["unverified"], gone["suppressed_cooldown"]) == (
        1,
        1,
        1,
        1,
    )
    assert rows[("queue_backlog", "scale_resources")]["suppressed_budget"] == 1
    assert out["totals"]["issued"] == 3
    assert out["totals"]["suppressed_budget"] + out["totals"]["suppressed_cooldown"] == 2
