"""Scores for anomaly detection: z-score and the robust modified z-score (pure).

Baselines keep the last N window values; the mean and variance are maintained
incrementally (O(1) per window), the median/MAD with numpy when a window is scored
(once per closed window, never per event).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MAD_SCALE", "Baseline", "Score", "modified_z", "zscore"]

# Iglewicz & Hoaglin: 0.6745 is the 0.75 quantile of the standard normal, so the
# modified z of normal data is comparable to an ordinary z.
MAD_SCALE = 0.6745


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    centre: float
    spread: float
    score: float


def zscore(value: float, history: list[float] | np.ndarray) -> Score:
    """(x − mean) / std of the history (population std, as scipy.stats.zscore)."""
    data = np.asarray(history, dtype=float)
    mean = float(data.mean())
    std = float(data.std())
    score = 0.0 if std == 0 else (value - mean) / std
    if std == 0 and value != mean:
        score = math.inf
    return Score(value, mean, std, score)


def modified_z(value: float, history: list[float] | np.ndarray) -> Score:
    """0.6745 · (x − median) / MAD; when MAD is 0 (a flat series) any deviation is
    infinitely unusual and no deviation scores 0."""
    data = np.asarray(history, dtype=float)
    median = float(np.median(data))
    mad = float(np.median(np.abs(data - median)))
    if mad == 0:
        score = 0.0 if value == median else math.copysign(math.inf, value - median)
    else:
        score = MAD_SCALE * (value - median) / mad
    return Score(value, median, mad, score)


@dataclass(slots=True)
class Baseline:
    """The last ``size`` window values of one series, with a running mean/variance."""

    size: int = 30
    values: deque[float] = field(default_factory=deque)
    _sum: float = 0.0
    _sumsq: float = 0.0

    def push(self, value: float) -> None:
        self.values.append(value)
        self._sum += value
        self._sumsq += value * value
        if len(self.values) > self.size:
            old = self.values.popleft()
            self._sum -= old
            self._sumsq -= old * old

    def __len__(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return self._sum / len(self.values) if self.values else 0.0

    @property
    def std(self) -> float:
        n = len(self.values)
        if n == 0:
            return 0.0
        return math.sqrt(max(0.0, self._sumsq / n - self.mean**2))

    def score(self, value: float, *, robust: bool) -> Score:
        return (modified_z if robust else zscore)(value, list(self.values))
