"""Detectors and the safety policy, with time as an argument (no broker, no clock)."""

from __future__ import annotations

from scipy.stats import linregress

from healing.detectors import Beat, DetectorConfig, diagnose
from healing.policy import HealingPolicy, PolicyConfig

T0 = 1_795_867_200_000
GB = 1 << 30
CFG = DetectorConfig()


def beat(i: int, **over: object) -> Beat:
    fields = {
        "at_ms": T0 + i * 10_000,
        "interval_s": 10.0,
        "cpu_percent": 30.0,
        "memory_rss_bytes": 2 * GB,
        "disk_free_bytes": 500 * GB,
        "disk_total_bytes": 1000 * GB,
        "queue_depth": 5,
        "in_flight": 1,
    }
    fields.update(over)
    return Beat(**fields)  # type: ignore[arg-type]


def problems(beats: list[Beat], now_ms: int | None = None, **kw: object) -> set[str]:
    now = now_ms if now_ms is not None else beats[-1].at_ms + 1000
    return {d.problem for d in diagnose("w1", beats, now, CFG, **kw)}  # type: ignore[arg-type]


def test_a_healthy_worker_has_no_findings() -> None:
    """Flat numbers, beats on time: nothing to heal."""
    assert problems([beat(i) for i in range(20)]) == set()


def test_silence_for_three_of_its_own_intervals_is_unresponsive() -> None:
    """Judged against the worker's interval_s: 25 s is fine, 30 s is not."""
    beats = [beat(i) for i in range(5)]
    assert problems(beats, beats[-1].at_ms + 25_000) == set()
    [d] = diagnose("w1", beats, beats[-1].at_ms + 30_000, CFG)
    assert (d.problem, d.action, d.evidence["silent_s"]) == (
        "unresponsive_worker",
        "restart_worker",
        30.0,
    )


def test_rising_rss_is_a_leak_with_slope_and_fit_in_the_evidence() -> None:
    """Memory up 5 MiB/s steadily, projected past the limit within the hour."""
    beats = [beat(i, memory_rss_bytes=14 * GB + i * 50 * (1 << 20)) for i in range(12)]
    [d] = [
        x
        for x in diagnose("w1", beats, beats[-1].at_ms + 1000, CFG)
        if x.problem == "resource_leak"
    ]
    xs = [(b.at_ms - T0) / 1000 for b in beats]
    expected = linregress(xs, [b.memory_rss_bytes for b in beats])
    assert d.evidence["slope_bytes_per_s"] == round(expected.slope)
    assert d.evidence["r2"] == round(expected.rvalue**2, 4)
    noisy = [beat(i, memory_rss_bytes=14 * GB + (i % 2) * 400 * (1 << 20)) for i in range(12)]
    assert "resource_leak" not in problems(noisy)


def test_cpu_must_stay_high_for_the_whole_window() -> None:
    """Two minutes above 90 % is throttled; one dip below is not sustained."""
    hot = [beat(i, cpu_percent=97.0) for i in range(15)]
    assert "high_cpu" in problems(hot)
    dip = [beat(i, cpu_percent=50.0 if i == 12 else 97.0) for i in range(15)]
    assert "high_cpu" not in problems(dip)


def test_disk_low_now_or_running_out_within_the_hour() -> None:
    """Under 5 % free, or a steady fall that reaches zero within the hour."""
    assert "low_disk" in problems([beat(0, disk_free_bytes=20 * GB)])
    falling = [beat(i, disk_free_bytes=300 * GB - i * 10 * GB) for i in range(10)]
    assert "low_disk" in problems(falling)
    slow = [beat(i, disk_free_bytes=300 * GB - i * (1 << 20)) for i in range(10)]
    assert "low_disk" not in problems(slow)


def test_backlog_needs_depth_and_growth_and_models_need_checksums() -> None:
    """A deep, growing queue; a model whose checksum failed or that keeps failing to load."""
    growing = [beat(i, queue_depth=90 + 20 * i) for i in range(6)]
    assert "queue_backlog" in problems(growing)
    steady = [beat(i, queue_depth=500) for i in range(6)]
    assert "queue_backlog" not in problems(steady)
    # Commands piling up for it count too (the lag of its command groups).
    lagging = [beat(i, queue_depth=5, command_lag=90 + 20 * i) for i in range(6)]
    [found] = diagnose("w1", lagging, lagging[-1].at_ms + 1000, CFG)
    assert (found.problem, found.evidence["command_lag"], found.evidence["backlog"]) == (
        "queue_backlog",
        190,
        195,
    )
    assert "model_corruption" in problems([beat(0, bad_models=("sdxl",))])
    assert "model_corruption" in problems([beat(0)], load_errors={"sdxl": 3})
    assert "model_corruption" not in problems([beat(0)], load_errors={"sdxl": 2})


def test_model_load_errors_count_within_their_window_only() -> None:
    """Three failed loads of one model within a minute of beats (the counts are totals
    since the runner started) are corruption; the same three spread over ten minutes,
    or old failures that stopped growing, are not."""
    fast = [beat(i, load_errors=(("sdxl", n),)) for i, n in enumerate([0, 1, 2, 3])]
    assert "model_corruption" in problems(fast)
    slow = [beat(i * 30, load_errors=(("sdxl", i),)) for i in range(4)]  # 5 min apart
    assert "model_corruption" not in problems(slow)
    stopped = [beat(i, load_errors=(("sdxl", 9),)) for i in range(12)]
    assert "model_corruption" not in problems(stopped)


def test_policy_cooldown_rate_limit_budget_and_dry_run() -> None:
    """One action per cooldown; most of the fleet at once → none (budget); dry-run acts
    on nothing; failures in a row stop the remedy."""
    beats = [beat(i, cpu_percent=97.0) for i in range(15)]
    finding = diagnose("w1", beats, beats[-1].at_ms + 1000, CFG)
    policy = HealingPolicy(PolicyConfig(cooldown_s=600))
    [first] = policy.decide(finding, fleet_size=10, now_ms=T0)
    assert first.acts
    assert first.expires_at_ms == T0 + 300_000
    [again] = policy.decide(finding, fleet_size=10, now_ms=T0 + 60_000)
    assert again.verdict == "cooldown"
    fleet = [
        d for w in ("a", "b", "c", "d") for d in diagnose(w, beats, beats[-1].at_ms + 1000, CFG)
    ]
    assert {d.verdict for d in policy.decide(fleet, fleet_size=5, now_ms=T0)} == {"budget"}
    dry = HealingPolicy(PolicyConfig(dry_run=True))
    assert [d.verdict for d in dry.decide(finding, 10, T0)] == ["dry_run"]
    for _ in range(3):
        policy.outcome("w1", "throttle_processing", ok=False)
    [stopped] = policy.decide(finding, fleet_size=10, now_ms=T0 + 3_600_000)
    assert stopped.verdict == "gave_up"
    assert policy.stats["throttle_processing"]["issued"] == 1
