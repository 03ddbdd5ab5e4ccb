"""Safety before any healing action (pure, clock as an argument).

Self-healing done carelessly is dangerous (NVIDIA's NVSentinel added a remediation
circuit breaker; Kubernetes users fight CrashLoopBackOff). So a diagnosis becomes an
action only when

- the (worker, action) pair is out of its cooldown and under its hourly rate limit;
- the fleet budget holds: if more than ``fleet_fraction`` of the workers need the same
  action at once, none gets it — one alert instead, until the share falls back;
- the remediation has not failed ``max_failures`` times in a row for that worker (then
  it stops and alerts);
- dry-run is off (dry-run decides and reports what it would do, acts on nothing).

Every action carries ``expires_at`` (``ttl_s``), so a runner never replays a stale one
on a cold start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from healing.detectors import Diagnosis

__all__ = ["Decision", "HealingPolicy", "PolicyConfig"]

Verdict = Literal["act", "cooldown", "rate_limited", "budget", "gave_up", "dry_run"]


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    cooldown_s: float = 600.0
    max_per_hour: int = 3
    fleet_fraction: float = 0.5
    fleet_min_workers: int = 3  # below this many workers the budget does not apply
    max_failures: int = 3
    ttl_s: float = 300.0
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    diagnosis: Diagnosis
    verdict: Verdict
    expires_at_ms: int
    why: str = ""

    @property
    def acts(self) -> bool:
        return self.verdict == "act"


@dataclass(slots=True)
class HealingPolicy:
    config: PolicyConfig = field(default_factory=PolicyConfig)
    issued: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # times (ms)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def decide(
        self,
        diagnoses: Sequence[Diagnosis],
        fleet_size: int,
        now_ms: int,
        *,
        needing: Mapping[str, int] | None = None,
    ) -> list[Decision]:
        """One decision per diagnosis; the fleet budget looks at all of them together
        (or at ``needing``, the count per action across the fleet, when the diagnoses
        are one part of it)."""
        cfg = self.config
        by_action: dict[str, int] = dict(needing or {})
        if needing is None:
            for d in diagnoses:
                by_action[d.action] = by_action.get(d.action, 0) + 1
        out = []
        for d in diagnoses:
            verdict: Verdict
            key = (d.worker_id, d.action)
            times = [t for t in self.issued.get(key, []) if now_ms - t < 3_600_000]
            self.issued[key] = times
            share = by_action[d.action] / max(fleet_size, 1)
            if fleet_size >= cfg.fleet_min_workers and share > cfg.fleet_fraction:
                verdict, why = (
                    "budget",
                    f"{by_action[d.action]} of {fleet_size} workers need {d.action}",
                )
            elif self.failures.get(key, 0) >= cfg.max_failures:
                verdict, why = "gave_up", f"{d.action} failed {self.failures[key]} times in a row"
            elif times and now_ms - times[-1] < cfg.cooldown_s * 1000:
                verdict, why = "cooldown", f"last {d.action} {(now_ms - times[-1]) // 1000}s ago"
            elif len(times) >= cfg.max_per_hour:
                verdict, why = "rate_limited", f"{len(times)} {d.action} in the last hour"
            elif cfg.dry_run:
                verdict, why = "dry_run", "dry-run: would act"
            else:
                verdict, why = "act", ""
                times.append(now_ms)
            self._count(d.problem, d.action, verdict)
            out.append(Decision(d, verdict, now_ms + int(cfg.ttl_s * 1000), why))
        return out

    def outcome(self, worker: str, action: str, ok: bool) -> None:
        """A ``healing.result`` or a verification: failures in a row stop the remedy."""
        key = (worker, action)
        self.failures[key] = 0 if ok else self.failures.get(key, 0) + 1
        self._bump(action, "succeeded" if ok else "failed")

    def _count(self, problem: str, action: str, verdict: str) -> None:
        self._bump(problem, "diagnosed")
        self._bump(action, "issued" if verdict == "act" else f"suppressed_{verdict}")

    def _bump(self, name: str, what: str) -> None:
        counts = self.stats.setdefault(name, {})
        counts[what] = counts.get(what, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Cooldowns, rate limits, failures in a row and counts, as JSON-able data: a
        restarted stream worker keeps them (a restart must not reset a cooldown)."""
        return {
            "stats": self.stats,
            "failures": {f"{w}|{a}": n for (w, a), n in self.failures.items()},
            "issued": {f"{w}|{a}": times for (w, a), times in self.issued.items() if times},
        }

    def restore(self, data: dict[str, Any]) -> None:
        def pairs(raw: dict[str, Any]) -> dict[tuple[str, str], Any]:
            out = {}
            for key, value in raw.items():
                worker, _, action = key.rpartition("|")
                out[(worker, action)] = value
            return out

        self.stats = {k: dict(v) for k, v in data.get("stats", {}).items()}
        self.failures = {k: int(v) for k, v in pairs(data.get("failures", {})).items()}
        self.issued = {k: [int(t) for t in v] for k, v in pairs(data.get("issued", {})).items()}
