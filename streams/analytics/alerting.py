"""Alert state with hysteresis (pure): fire once, resolve after a quiet hold-down."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["AlertBook", "AlertChange", "alert_id"]


def alert_id(name: str, labels: dict[str, str]) -> str:
    """The alert's fingerprint: same condition, same id (dedup key downstream)."""
    text = name + "|" + "|".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertChange:
    state: str  # "firing" | "resolved"
    alert_id: str
    name: str
    labels: dict[str, str]
    value: float
    threshold: float
    at_ms: int
    recommendation: str = ""


@dataclass(slots=True)
class _Alert:
    name: str
    labels: dict[str, str]
    last_violation_ms: int
    value: float
    threshold: float


@dataclass(slots=True)
class AlertBook:
    """Firing alerts by id. ``observe`` each evaluation; ``expire`` resolves the quiet."""

    hold_down_ms: int = 120_000
    firing: dict[str, _Alert] = field(default_factory=dict)

    def observe(
        self,
        name: str,
        labels: dict[str, str],
        *,
        violating: bool,
        value: float,
        threshold: float,
        now_ms: int,
        recommendation: str = "",
    ) -> AlertChange | None:
        key = alert_id(name, labels)
        current = self.firing.get(key)
        if violating:
            if current is None:
                self.firing[key] = _Alert(name, labels, now_ms, value, threshold)
                return AlertChange(
                    "firing", key, name, labels, value, threshold, now_ms, recommendation
                )
            current.last_violation_ms, current.value = now_ms, value
            return None
        if current is not None and now_ms - current.last_violation_ms >= self.hold_down_ms:
            del self.firing[key]
            return AlertChange("resolved", key, name, labels, value, threshold, now_ms)
        return None

    def expire(self, now_ms: int) -> list[AlertChange]:
        """Resolve alerts with no violation for ``hold_down_ms`` (no traffic is quiet too)."""
        quiet = [
            k for k, a in self.firing.items() if now_ms - a.last_violation_ms >= self.hold_down_ms
        ]
        changes = []
        for key in quiet:
            alert = self.firing.pop(key)
            changes.append(
                AlertChange("resolved", key, alert.name, alert.labels, 0.0, alert.threshold, now_ms)
            )
        return changes
