"""Event-time windows: assignment, grace for late events, and closing (pure).

Vocabulary as in quix-streams: tumbling windows are hopping windows whose step equals
their size; timestamps are integer milliseconds; a window ``[start, start + size)``
accepts events until the watermark passes ``end + grace``, then it is closed and
reported once (``final``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Window", "WindowCounts", "WindowSpec", "WindowStore"]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    size_ms: int
    step_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.step_ms <= 0 or self.size_ms % self.step_ms:
            raise ValueError("size and step must be positive, size a multiple of step")
        if self.grace_ms < 0:
            raise ValueError("grace must not be negative")

    @classmethod
    def tumbling(cls, size_ms: int, grace_ms: int = 0) -> WindowSpec:
        return cls(size_ms, size_ms, grace_ms)

    @property
    def name(self) -> str:
        kind = "tumbling" if self.size_ms == self.step_ms else f"hopping{self.step_ms // 1000}s"
        return f"{kind}{self.size_ms // 1000}s"

    def starts(self, ts_ms: int) -> list[int]:
        """Start of every window containing ``ts_ms``, oldest first."""
        last = ts_ms - ts_ms % self.step_ms
        return list(range(last - self.size_ms + self.step_ms, last + 1, self.step_ms))


@dataclass(frozen=True, slots=True)
class Window:
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class WindowCounts:
    """What one key saw in one window."""

    attempts: int = 0
    errors: int = 0
    critical: int = 0
    recovery_failures: int = 0
    recovery_attempts: int = 0
    by_category: dict[str, int] = field(default_factory=dict)

    def add(self, other: WindowCounts) -> None:
        self.attempts += other.attempts
        self.errors += other.errors
        self.critical += other.critical
        self.recovery_failures += other.recovery_failures
        self.recovery_attempts += other.recovery_attempts
        for category, count in other.by_category.items():
            self.by_category[category] = self.by_category.get(category, 0) + count

    @property
    def error_rate(self) -> float:
        return self.errors / self.attempts if self.attempts else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "attempts": self.attempts,
            "errors": self.errors,
            "critical": self.critical,
            "recovery_failures": self.recovery_failures,
            "recovery_attempts": self.recovery_attempts,
            "by_category": self.by_category,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> WindowCounts:
        by_category = data.get("by_category") or {}
        return cls(
            int(data.get("attempts", 0)),  # type: ignore[call-overload]
            int(data.get("errors", 0)),  # type: ignore[call-overload]
            int(data.get("critical", 0)),  # type: ignore[call-overload]
            int(data.get("recovery_failures", 0)),  # type: ignore[call-overload]
            int(data.get("recovery_attempts", 0)),  # type: ignore[call-overload]
            dict(by_category),  # type: ignore[call-overload]
        )


@dataclass(slots=True)
class WindowStore:
    """Open windows per key; closes them as the watermark advances."""

    spec: WindowSpec
    open: dict[tuple[str, int], WindowCounts] = field(default_factory=dict)
    watermark_ms: int = 0
    late_dropped: int = 0

    def add(self, key: str, ts_ms: int, counts: WindowCounts) -> bool:
        """Count ``counts`` for ``key`` at event time ``ts_ms``; False when too late
        (every window it belongs to is already closed)."""
        accepted = False
        for start in self.spec.starts(ts_ms):
            if start + self.spec.size_ms + self.spec.grace_ms <= self.watermark_ms:
                continue  # that window was already closed and reported
            self.open.setdefault((key, start), WindowCounts()).add(counts)
            accepted = True
        if not accepted:
            self.late_dropped += 1
        return accepted

    def advance(self, ts_ms: int) -> None:
        """Event time moves on (the watermark never goes back)."""
        self.watermark_ms = max(self.watermark_ms, ts_ms)

    def close(self) -> Iterator[tuple[str, Window, WindowCounts]]:
        """Windows whose end + grace passed the watermark, oldest first; each once."""
        limit = self.watermark_ms - self.spec.size_ms - self.spec.grace_ms
        due = sorted((start, key) for key, start in self.open if start <= limit)
        for start, key in due:
            counts = self.open.pop((key, start))
            yield key, Window(start, start + self.spec.size_ms), counts
