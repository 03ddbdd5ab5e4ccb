"""Detectors: a worker's recent heartbeats (and model-load errors) → diagnoses (pure).

Every detector takes the time as an argument (no wall clock here) and returns a
:class:`Diagnosis` — which worker, what problem, the numbers that show it, and the
action that would heal it — or nothing. The issues the original design names:
unresponsive workers, queue backlogs, resource leaks, high CPU, low disk, model
corruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Beat",
    "DetectorConfig",
    "Diagnosis",
    "Problem",
    "diagnose",
    "high_cpu",
    "low_disk",
    "model_corruption",
    "queue_backlog",
    "resource_leak",
    "unresponsive",
]

Problem = Literal[
    "unresponsive_worker",
    "queue_backlog",
    "resource_leak",
    "high_cpu",
    "low_disk",
    "model_corruption",
]


@dataclass(frozen=True, slots=True)
class Beat:
    """What a detector needs of one ``worker.heartbeat``."""

    at_ms: int
    interval_s: float
    cpu_percent: float
    memory_rss_bytes: int
    disk_free_bytes: int
    disk_total_bytes: int
    queue_depth: int
    in_flight: int
    bad_models: tuple[str, ...] = ()
    stopping: bool = False  # the worker's last beat before a deliberate shutdown
    load_errors: tuple[tuple[str, int], ...] = ()  # (model, failed loads since start)
    command_lag: int = 0  # command records its command groups have not read yet

    @property
    def backlog(self) -> int:
        """Its queue plus its unread command records."""
        return self.queue_depth + self.command_lag


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    missed_beats: float = 3.0  # unresponsive after this many of its own intervals
    backlog_depth: int = 100  # queue depth above this ...
    backlog_growth: int = 3  # ... and growing over this many beats in a row
    leak_min_beats: int = 6
    leak_min_r2: float = 0.9  # a steady rise: linear fit at least this good
    leak_min_slope_bytes_per_s: float = 1 << 20  # 1 MiB/s
    leak_limit_bytes: int = 16 << 30  # projected to reach this ...
    leak_horizon_s: float = 3600.0  # ... within this long
    cpu_percent: float = 90.0
    cpu_window_s: float = 120.0  # sustained: every beat of this window above
    disk_free_fraction: float = 0.05
    disk_horizon_s: float = 3600.0  # or projected to run out within this long
    model_load_errors: int = 3  # repeated model-load errors for one model ...
    model_load_window_s: float = 60.0  # ... within this long


@dataclass(frozen=True, slots=True)
class Diagnosis:
    worker_id: str
    problem: Problem
    action: str
    evidence: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "problem": self.problem,
            "action": self.action,
            "evidence": self.evidence,
            "params": self.params,
        }


def unresponsive(
    worker: str, beats: Sequence[Beat], now_ms: int, config: DetectorConfig
) -> Diagnosis | None:
    """No heartbeat for ``missed_beats`` × the worker's own interval (unless its last
    beat said it was stopping)."""
    if not beats or beats[-1].stopping:
        return None  # never seen, or shut down on purpose
    last = beats[-1]
    silent_s = (now_ms - last.at_ms) / 1000
    limit_s = config.missed_beats * last.interval_s
    if silent_s < limit_s:
        return None
    return Diagnosis(
        worker,
        "unresponsive_worker",
        "restart_worker",
        {
            "silent_s": round(silent_s, 1),
            "interval_s": last.interval_s,
            "limit_s": limit_s,
            "in_flight": last.in_flight,
        },
    )


def queue_backlog(worker: str, beats: Sequence[Beat], config: DetectorConfig) -> Diagnosis | None:
    """Backlog (queue depth plus the worker's unread command records) above the
    threshold and growing over the last beats."""
    recent = list(beats[-(config.backlog_growth + 1) :])
    if len(recent) <= config.backlog_growth or recent[-1].backlog <= config.backlog_depth:
        return None
    depths = [b.backlog for b in recent]
    if any(b <= a for a, b in zip(depths, depths[1:], strict=False)):
        return None
    return Diagnosis(
        worker,
        "queue_backlog",
        "scale_resources",
        {
            "backlog": depths[-1],
            "queue_depth": recent[-1].queue_depth,
            "command_lag": recent[-1].command_lag,
            "depths": depths,
            "threshold": config.backlog_depth,
        },
    )


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """(slope, intercept, r²) of a least-squares line (scipy's linregress)."""
    from scipy.stats import linregress

    xs, ys = zip(*points, strict=True)
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return 0.0, float(ys[0]), 0.0
    fit = linregress(xs, ys)
    return float(fit.slope), float(fit.intercept), float(fit.rvalue) ** 2


def resource_leak(worker: str, beats: Sequence[Beat], config: DetectorConfig) -> Diagnosis | None:
    """Memory rising steadily (a good linear fit) and projected to hit the limit."""
    if len(beats) < config.leak_min_beats:
        return None
    t0 = beats[0].at_ms
    slope, _, r2 = _fit([((b.at_ms - t0) / 1000, float(b.memory_rss_bytes)) for b in beats])
    if slope < config.leak_min_slope_bytes_per_s or r2 < config.leak_min_r2:
        return None
    now_rss = beats[-1].memory_rss_bytes
    to_limit_s = max(0.0, (config.leak_limit_bytes - now_rss) / slope)
    if to_limit_s > config.leak_horizon_s:
        return None
    return Diagnosis(
        worker,
        "resource_leak",
        "restart_worker",
        {
            "slope_bytes_per_s": round(slope),
            "r2": round(r2, 4),
            "rss_bytes": now_rss,
            "limit_bytes": config.leak_limit_bytes,
            "seconds_to_limit": round(to_limit_s),
        },
    )


def high_cpu(
    worker: str, beats: Sequence[Beat], now_ms: int, config: DetectorConfig
) -> Diagnosis | None:
    """Every beat of the last ``cpu_window_s`` above the threshold (sustained)."""
    since = now_ms - int(config.cpu_window_s * 1000)
    window = [b for b in beats if b.at_ms >= since]
    covers = bool(window) and beats[0].at_ms <= since
    if not covers or any(b.cpu_percent <= config.cpu_percent for b in window):
        return None
    mean = sum(b.cpu_percent for b in window) / len(window)
    return Diagnosis(
        worker,
        "high_cpu",
        "throttle_processing",
        {
            "mean_cpu_percent": round(mean, 1),
            "beats": len(window),
            "threshold": config.cpu_percent,
            "window_s": config.cpu_window_s,
        },
        {"concurrency_factor": 0.5, "duration_s": 300},
    )


def low_disk(worker: str, beats: Sequence[Beat], config: DetectorConfig) -> Diagnosis | None:
    """Free space under the threshold, or projected to run out within the horizon."""
    last = beats[-1] if beats else None
    if last is None or last.disk_total_bytes <= 0:
        return None
    fraction = last.disk_free_bytes / last.disk_total_bytes
    evidence: dict[str, Any] = {
        "free_bytes": last.disk_free_bytes,
        "free_fraction": round(fraction, 4),
    }
    if fraction >= config.disk_free_fraction:
        if len(beats) < 3:
            return None
        t0 = beats[0].at_ms
        slope, _, r2 = _fit([((b.at_ms - t0) / 1000, float(b.disk_free_bytes)) for b in beats])
        if slope >= 0 or r2 < 0.8 or last.disk_free_bytes / -slope > config.disk_horizon_s:
            return None
        evidence |= {
            "slope_bytes_per_s": round(slope),
            "r2": round(r2, 4),
            "seconds_to_full": round(last.disk_free_bytes / -slope),
        }
    return Diagnosis(worker, "low_disk", "archive_old_files", evidence, {"older_than_days": 7})


def model_corruption(
    worker: str, beats: Sequence[Beat], load_errors: dict[str, int], config: DetectorConfig
) -> Diagnosis | None:
    """A model whose checksum failed in the last heartbeat, or that failed to load
    repeatedly."""
    bad = set(beats[-1].bad_models) if beats else set()
    repeated = {m for m, n in load_errors.items() if n >= config.model_load_errors}
    models = sorted(bad | repeated)
    if not models:
        return None
    return Diagnosis(
        worker,
        "model_corruption",
        "reload_model",
        {"checksum_failed": sorted(bad), "load_errors": {m: load_errors.get(m, 0) for m in models}},
        {"models": models},
    )


def recent_load_errors(beats: Sequence[Beat], config: DetectorConfig) -> dict[str, int]:
    """Failed loads per model within ``model_load_window_s`` of the last beat: the
    growth of each model's count since the oldest beat of that window."""
    if not beats:
        return {}
    since = beats[-1].at_ms - int(config.model_load_window_s * 1000)
    window = [b for b in beats if b.at_ms >= since]
    earlier = [b for b in beats if b.at_ms < since]
    base = dict(earlier[-1].load_errors) if earlier else {}
    last = dict(window[-1].load_errors)
    return {m: n - base.get(m, 0) for m, n in last.items() if n - base.get(m, 0) > 0}


def diagnose(
    worker: str,
    beats: Sequence[Beat],
    now_ms: int,
    config: DetectorConfig,
    load_errors: dict[str, int] | None = None,
) -> list[Diagnosis]:
    """Every detector on one worker's beats (oldest first); model-load errors from the
    beats' counts unless given."""
    gone = unresponsive(worker, beats, now_ms, config)
    if gone is not None:
        return [gone]  # its other numbers are stale
    found = [
        queue_backlog(worker, beats, config),
        resource_leak(worker, beats, config),
        high_cpu(worker, beats, now_ms, config),
        low_disk(worker, beats, config),
        model_corruption(
            worker,
            beats,
            recent_load_errors(beats, config) if load_errors is None else load_errors,
            config,
        ),
    ]
    return [d for d in found if d is not None]
