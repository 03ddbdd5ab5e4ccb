"""Window counts equal a naive count of the same events, written here independently.

The reference below reads the events as a person would (DESIGN.md and the README's
definitions), never through ``streams``' own helpers: a template's attempts are its
attempt ends, a service's attempts its calls that reached it, and so on.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.analytics.detector import AnalyticsConfig, ErrorAnalytics
from streams.analytics.partials import aggregate, decode_partial, encode_partial
from streams.analytics.windows import WindowSpec
from streams.facts import Facts

T0 = 1_795_867_200_000
STEP = 10_000
SIZE = 60_000

TASK_TYPES = ["task.attempt_failed", "task.failed", "task.succeeded"]
OUTCOMES = ["success", "failure", "timeout", "rejected", "fallback"]


@st.composite
def event(draw: st.DrawFn) -> Facts:
    ts = T0 + draw(st.integers(0, 5 * SIZE))
    if draw(st.booleans()):
        outcome = draw(st.sampled_from(OUTCOMES))
        reason = draw(st.sampled_from(["", "rejected", "failure", "timeout"]))
        failed = outcome != "success"
        category = draw(st.sampled_from(["transient", "resource", ""])) if failed else ""
        return Facts(
            "call.completed",
            ts,
            service=draw(st.sampled_from(["comfyui", "s3"])),
            outcome=outcome,
            category=category,
            worker=draw(st.sampled_from(["w1", "w2"])),
            fallback_reason=reason if outcome == "fallback" else "",
        )
    type_ = draw(st.sampled_from(TASK_TYPES))
    failed = type_ != "task.succeeded"
    return Facts(
        type_,
        ts,
        template_id=draw(st.sampled_from(["sd", "video-gen"])),
        attempt=draw(st.integers(1, 4)),
        category=draw(st.sampled_from(["transient", "resource", "validation"])) if failed else "",
        fingerprint=draw(st.sampled_from(["f1", "f2"])) if failed else "",
        severity=draw(st.sampled_from(["low", "critical"])) if failed else "",
        # A task failure may name the service whose call failed: that call was counted
        # already (its call.completed), so this must not count again.
        error_service=draw(st.sampled_from(["", "comfyui"])) if failed else "",
    )


def naive(events: list[Facts], window_of) -> dict[tuple[str, int], Counter[str]]:  # type: ignore[no-untyped-def]
    """(key, window start) → Counter of attempts/errors/critical/recovery/by-category."""
    out: dict[tuple[str, int], Counter[str]] = {}

    def bump(key: str, start: int, **fields: int) -> None:
        counter = out.setdefault((key, start), Counter())
        for name, n in fields.items():
            counter[name] += n

    for e in events:
        start = window_of(e.ts_ms)
        if e.type == "call.completed":
            never_reached = e.outcome == "rejected" or (
                e.outcome == "fallback" and e.fallback_reason == "rejected"
            )
            if never_reached:
                continue
            failed = e.outcome != "success"
            fields = {"attempts": 1, "errors": int(failed)}
            if failed and e.category:
                fields[f"cat:{e.category}"] = 1
            bump(f"service={e.service}", start, **fields)
            continue
        failed = e.type != "task.succeeded"
        final = e.type != "task.attempt_failed"
        fields = {
            "attempts": 1,
            "errors": int(failed),
            "critical": int(failed and e.severity == "critical"),
            "recovery_attempts": int(final and e.attempt > 1),
            "recovery_failures": int(e.type == "task.failed" and e.attempt > 1),
        }
        if failed:
            fields[f"cat:{e.category}"] = 1
        bump(f"template_id={e.template_id}", start, **fields)
        if failed:
            only = {
                "attempts": 1,
                "errors": 1,
                "critical": fields["critical"],
                f"cat:{e.category}": 1,
            }
            bump(f"category={e.category}", start, **only)
            bump(f"fingerprint={e.fingerprint}", start, **only)
    return out


def as_counter(counts) -> Counter[str]:  # type: ignore[no-untyped-def]
    c: Counter[str] = Counter(
        attempts=counts.attempts,
        errors=counts.errors,
        critical=counts.critical,
        recovery_attempts=counts.recovery_attempts,
        recovery_failures=counts.recovery_failures,
    )
    for category, n in counts.by_category.items():
        c[f"cat:{category}"] = n
    return +c  # drop zeros, as the naive counter never stores them


@settings(max_examples=300, deadline=None)
@given(st.lists(event(), max_size=60), st.integers(1, 7))
def test_partials_sum_to_the_naive_counts(events: list[Facts], batches: int) -> None:
    """Partial counts over any split into batches, through the wire encoding, sum to the
    naive count per (key, bucket)."""
    total: dict[tuple[str, int], Counter[str]] = {}
    size = max(1, len(events) // batches)
    for i in range(0, len(events), size):
        for (key, bucket), counts in aggregate(events[i : i + size], STEP).items():
            k, b, decoded = decode_partial(encode_partial(key, bucket, counts))  # type: ignore[misc]
            total.setdefault((k, b), Counter()).update(as_counter(decoded))
    expected = naive(events, lambda ts: ts - ts % STEP)
    assert {k: +v for k, v in total.items() if +v} == {k: v for k, v in expected.items() if v}


@settings(max_examples=200, deadline=None)
@given(st.lists(event(), max_size=60))
def test_closed_tumbling_windows_equal_the_naive_counts(events: list[Facts]) -> None:
    """Every closed one-minute window of the analytics equals the naive count."""
    spec = WindowSpec.tumbling(SIZE, 0)
    analytics = ErrorAnalytics(AnalyticsConfig(tumbling=spec, hopping=WindowSpec(SIZE, STEP, 0)))
    for (key, bucket), counts in aggregate(events, STEP).items():
        analytics.observe_counts(key, bucket, counts)
    results, _, _ = analytics.tick(T0 + 10 * SIZE)
    got = {(r.key, r.window.start_ms): as_counter(r.counts) for r in results if r.spec == spec.name}
    expected = naive(events, lambda ts: ts - ts % SIZE)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}


def test_four_events_give_four_attempts_and_two_errors() -> None:
    """The issue's case: 2 failures and 2 successes of one template, each failure naming
    a service, count 4 attempts and 2 errors for the template, none for the service."""
    events = [
        Facts("task.failed", T0, "sd", 1, category="transient", fingerprint="f", error_service="c"),
        Facts("task.succeeded", T0 + 1, "sd", 1),
        Facts("task.attempt_failed", T0 + 2, "sd", 1, category="transient", fingerprint="f"),
        Facts("task.succeeded", T0 + 3, "sd", 1),
    ]
    sums = aggregate(events, STEP)
    template = sums[("template_id=sd", T0 - T0 % STEP)]
    assert (template.attempts, template.errors) == (4, 2)
    assert (sums[("fingerprint=f", T0 - T0 % STEP)].errors) == 2
    assert not any(key.startswith("service=") for key, _ in sums)
