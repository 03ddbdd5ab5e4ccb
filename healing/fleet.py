"""Every detector over the whole fleet's recent heartbeats (pure): what ``POST
/api/v1/errors/self-healing/diagnose`` answers, acting on nothing."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from healing.detectors import Beat, DetectorConfig, Diagnosis, diagnose
from healing.policy import HealingPolicy, PolicyConfig

__all__ = ["beats_by_worker", "diagnose_fleet"]


def _models(raw: Any) -> list[dict[str, Any]]:
    try:
        models = json.loads(raw) if isinstance(raw, str) and raw else raw
    except ValueError:
        return []
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def _bad_models(models: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(str(m.get("name")) for m in models if m.get("checksum_ok") is False)


def _load_errors(models: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    return tuple(
        (str(m.get("name")), int(m["load_errors"]))
        for m in models
        if isinstance(m.get("load_errors"), int) and m["load_errors"] > 0
    )


def beats_by_worker(rows: Iterable[dict[str, Any]]) -> dict[str, list[Beat]]:
    """Heartbeat rows (worker_id, at_ms, ...) grouped per worker, oldest first."""
    out: dict[str, list[Beat]] = {}
    for row in rows:
        models = _models(row.get("models"))
        out.setdefault(row["worker_id"], []).append(
            Beat(
                at_ms=int(row["at_ms"]),
                interval_s=float(row["interval_s"]) or 10.0,
                cpu_percent=float(row["cpu_percent"]),
                memory_rss_bytes=int(row["memory_rss_bytes"]),
                disk_free_bytes=int(row["disk_free_bytes"]),
                disk_total_bytes=int(row["disk_total_bytes"]),
                queue_depth=int(row["queue_depth"]),
                in_flight=int(row["in_flight"]),
                bad_models=_bad_models(models),
                stopping=bool(row.get("stopping")),
                load_errors=_load_errors(models),
                command_lag=int(row.get("command_lag") or 0),
            )
        )
    for beats in out.values():
        beats.sort(key=lambda b: b.at_ms)
    return out


def diagnose_fleet(
    beats: dict[str, list[Beat]],
    now_ms: int,
    config: DetectorConfig | None = None,
    policy: PolicyConfig | None = None,
) -> dict[str, Any]:
    """Findings per worker and what the policy would do with them (dry-run)."""
    config = config or DetectorConfig()
    findings: list[Diagnosis] = []
    for worker, history in sorted(beats.items()):
        findings += diagnose(worker, history, now_ms, config)
    decisions = HealingPolicy(PolicyConfig(**{**vars_of(policy), "dry_run": True})).decide(
        findings, fleet_size=len(beats), now_ms=now_ms
    )
    return {
        "workers": len(beats),
        "findings": [d.to_dict() for d in findings],
        "would_do": [
            {
                "worker_id": d.diagnosis.worker_id,
                "action": d.diagnosis.action,
                "verdict": "act" if d.verdict == "dry_run" else d.verdict,
                "why": d.why,
            }
            for d in decisions
        ],
    }


def vars_of(policy: PolicyConfig | None) -> dict[str, Any]:
    if policy is None:
        return {}
    return {name: getattr(policy, name) for name in policy.__dataclass_fields__}
