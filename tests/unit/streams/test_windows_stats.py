"""Window assignment, grace and closing; z and modified-z scores on known series."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from streams.analytics.stats import Baseline, modified_z, zscore
from streams.analytics.windows import WindowCounts, WindowSpec, WindowStore


def test_tumbling_and_hopping_assignment() -> None:
    """A tumbling window holds each instant once; a 5-min/1-min hopping window five times."""
    assert WindowSpec.tumbling(60_000).starts(125_000) == [120_000]
    assert WindowSpec.tumbling(60_000).starts(120_000) == [120_000]
    assert WindowSpec(300_000, 60_000).starts(125_000) == [-120_000, -60_000, 0, 60_000, 120_000]


def test_late_events_within_grace_count_beyond_grace_are_dropped() -> None:
    """An event 5 s late with 10 s grace lands in its window; 15 s late it is dropped."""
    store = WindowStore(WindowSpec.tumbling(60_000, grace_ms=10_000))
    store.add("k", 10_000, WindowCounts(attempts=1))
    store.advance(65_000)  # window [0, 60s) still open: end + grace = 70 s
    assert store.add("k", 55_000, WindowCounts(attempts=1))
    assert list(store.close()) == []
    store.advance(75_000)
    ((key, window, counts),) = list(store.close())
    assert (key, window.start_ms, counts.attempts) == ("k", 0, 2)
    assert not store.add("k", 59_000, WindowCounts(attempts=1))  # beyond grace
    assert store.late_dropped == 1


def test_windows_close_once() -> None:
    """A closed window is reported once, even if the watermark is advanced again."""
    store = WindowStore(WindowSpec.tumbling(1_000))
    store.add("k", 100, WindowCounts(errors=1))
    store.advance(5_000)
    assert len(list(store.close())) == 1
    store.advance(9_000)
    assert list(store.close()) == []


def test_zscore_matches_scipy() -> None:
    """Each point's z against the series equals scipy.stats.zscore on the same data."""
    series = [3.0, 5.0, 4.0, 6.0, 2.0, 5.0, 40.0, 4.0]
    expected = scipy.stats.zscore(series)
    ours = [zscore(x, series).score for x in series]
    np.testing.assert_allclose(ours, expected)


def test_modified_z_known_answer() -> None:
    """[1,2,3,4,100]: median 3, MAD 1, so 100 scores 0.6745·97 = 65.4265."""
    score = modified_z(100, [1, 2, 3, 4, 100])
    assert (score.centre, score.spread) == (3, 1)
    assert score.score == pytest.approx(65.4265)


def test_flat_history_scores() -> None:
    """On a flat series, no change scores 0 and any change is infinitely unusual."""
    assert modified_z(2, [2, 2, 2]).score == 0
    assert math.isinf(modified_z(3, [2, 2, 2]).score)
    assert math.isinf(zscore(3, [2, 2, 2]).score)


def test_baseline_running_moments_match_numpy() -> None:
    """The O(1) running mean/std over the last N values equals numpy's on that slice."""
    baseline = Baseline(size=5)
    values = [1.0, 7.0, 3.0, 9.0, 4.0, 2.0, 8.0]
    for v in values:
        baseline.push(v)
    assert baseline.mean == pytest.approx(np.mean(values[-5:]))
    assert baseline.std == pytest.approx(np.std(values[-5:]))
