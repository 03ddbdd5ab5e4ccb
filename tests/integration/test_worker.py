"""The stream worker on the real broker, as separate processes."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import schemas as s
from tests.integration.kafka_io import kcat_produce, produce, produce_raw
from tests.integration.worker_process import WorkerProcess, events_for, read_all, windows_for

pytestmark = pytest.mark.kafka


def _error(service: str) -> s.ErrorInfo:
    return s.ErrorInfo(
        category="transient",
        error_type="builtins.ConnectionResetError",
        message="reset",
        fingerprint=f"fp-{service}",
        severity="medium",
        retryable=True,
        rule="builtin:network",
        service=service,
    )


async def _traffic(
    bootstrap: str,
    service: str,
    plan: list[int],
    per_second: int = 20,
    truth: Counter[int] | None = None,
    errors_truth: Counter[int] | None = None,
) -> None:
    """One batch of call events per second (event time = now); plan[i] of them fail."""
    source = s.Source.here(runner_id="it-traffic")
    for errors in plan:
        started = time.monotonic()
        batch = [
            s.CallCompleted(
                service=service,
                outcome="failure" if i < errors else "success",
                duration_ms=1,
                error=_error(service) if i < errors else None,
                source=source,
            )
            for i in range(per_second)
        ]
        await produce(bootstrap, batch)
        for event in batch:
            ms = int(event.occurred_at.timestamp() * 1000)
            if truth is not None:
                truth[ms - ms % 1000] += 1
            if errors_truth is not None and event.outcome != "success":
                errors_truth[ms - ms % 1000] += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def test_burst_gives_one_spike_one_alert_then_resolved(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A calm baseline, a three-second burst, calm again: exactly one error_spike and one
    alert.firing for the service, and alert.resolved once it stayed calm. A garbage record
    in the middle goes to errorflow.poison and the worker carries on."""
    app_id, service = f"it-burst-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(kafka_bootstrap, app_id, "w1", tmp_path).start()
    garbage = f"garbage for {service}".encode()
    try:
        await asyncio.sleep(6)  # group join and topic creation
        await produce_raw(kafka_bootstrap, "errorflow.call-events", [garbage])
        await _traffic(
            kafka_bootstrap, service, [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 15, 16, 15] + [0] * 8
        )
        await asyncio.sleep(3)
    finally:
        worker.stop()
    anomalies = await events_for(kafka_bootstrap, "errorflow.anomalies", service)
    spikes = [a for a in anomalies if a.kind == "error_spike"]  # type: ignore[attr-defined]
    assert len(spikes) == 1, anomalies
    alerts = await events_for(kafka_bootstrap, "errorflow.alerts", service)
    assert [a.type for a in alerts] == ["alert.firing", "alert.resolved"]
    assert alerts[0].name == "high_error_rate"  # type: ignore[attr-defined]
    poison = [s.decode(r.value) for r in await read_all(kafka_bootstrap, "errorflow.poison")]
    ours = [p for p in poison if base64.b64decode(p.raw_base64) == garbage]  # type: ignore[attr-defined]
    assert len(ours) == 1
    assert ours[0].source_topic == "errorflow.call-events"  # type: ignore[attr-defined]
    assert ours[0].reason.startswith("record is not valid JSON")  # type: ignore[attr-defined]


async def test_threshold_change_by_kcat_applies_without_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """10% errors do not alert at 15%; alerts.thresholds 5% produced with kcat makes the
    running worker alert on the same traffic."""
    app_id, service = f"it-thr-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(kafka_bootstrap, app_id, "w1", tmp_path).start()
    try:
        await asyncio.sleep(6)
        await _traffic(kafka_bootstrap, service, [2] * 4)
        await asyncio.sleep(2)
        assert await events_for(kafka_bootstrap, "errorflow.alerts", service) == []
        lowered = s.SetAlertThresholds(error_rate=0.05, source=s.Source.here(runner_id="it"))
        kcat_produce(
            kafka_bootstrap, "errorflow.control", "alerts.thresholds", s.encode(lowered).decode()
        )
        await asyncio.sleep(1)
        await _traffic(kafka_bootstrap, service, [2] * 3)
        await asyncio.sleep(2)
        alerts = await events_for(kafka_bootstrap, "errorflow.alerts", service)
        assert [a.type for a in alerts][:1] == ["alert.firing"]
        assert alerts[0].threshold == 0.05  # type: ignore[attr-defined]
    finally:
        restore = s.SetAlertThresholds(source=s.Source.here(runner_id="it"))
        kcat_produce(
            kafka_bootstrap, "errorflow.control", "alerts.thresholds", s.encode(restore).decode()
        )
        worker.stop()


@pytest.mark.parametrize("scenario", ["sigkill", "two-workers", "join-leave"])
async def test_window_counts_equal_ground_truth(
    kafka_bootstrap: str, tmp_path: Path, scenario: str
) -> None:
    """Per-second window counts (attempts and errors) equal what was produced: across a
    SIGKILL and restart, with two worker processes sharing the partitions, and while a
    second worker joins and then leaves (two rebalances under traffic)."""
    app_id, service = f"it-{scenario}-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    workers = [WorkerProcess(kafka_bootstrap, app_id, "w1", tmp_path).start()]
    if scenario == "two-workers":
        workers.append(WorkerProcess(kafka_bootstrap, app_id, "w2", tmp_path).start())
    truth: Counter[int] = Counter()
    errors: Counter[int] = Counter()
    try:
        await asyncio.gather(*(w.ready(("ingest", "detect")) for w in workers))
        await _traffic(kafka_bootstrap, service, [1, 2, 3], truth=truth, errors_truth=errors)
        if scenario == "sigkill":
            workers[0].kill()
            await _traffic(kafka_bootstrap, service, [4, 5], truth=truth, errors_truth=errors)
            workers[0] = WorkerProcess(kafka_bootstrap, app_id, "w1", tmp_path).start()
        if scenario == "join-leave":
            workers.append(WorkerProcess(kafka_bootstrap, app_id, "w2", tmp_path).start())
            await _traffic(kafka_bootstrap, service, [4, 5, 6], truth=truth, errors_truth=errors)
            workers.pop().stop()
        await _traffic(kafka_bootstrap, service, [0, 1, 2, 0], truth=truth, errors_truth=errors)
        counts: dict[int, tuple[int, int]] = {}
        expected = {start: (n, errors[start]) for start, n in truth.items()}
        deadline = time.monotonic() + 60  # the last windows close when the input goes idle
        while time.monotonic() < deadline and counts != expected:
            await asyncio.sleep(2)
            windows = await windows_for(kafka_bootstrap, app_id, f"service={service}")
            counts = {start: (row["attempts"], row["errors"]) for start, row in windows.items()}
    finally:
        for worker in workers:
            worker.stop()
    assert counts == expected


async def test_a_running_worker_shows_its_metrics_and_live_state(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """/metrics is Prometheus text counting what was consumed; /state (and `errorflow
    inspect`) shows the fleet breaker the calls opened."""
    import json
    import subprocess
    import sys
    import urllib.request

    from tests.integration.process import ROOT
    from tests.integration.serve_process import free_port

    port = free_port()
    app_id, service = f"it-observe-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    env = {"ERRORFLOW_WORKER_METRICS_PORT": str(port)}
    worker = WorkerProcess(kafka_bootstrap, app_id, "w1", tmp_path, env).start()
    try:
        await worker.ready(("ingest", "breakers"))
        await _traffic(kafka_bootstrap, service, [20])  # 20 failures: the breaker opens
        deadline = time.monotonic() + 30
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/state") as r:  # noqa: S310
                state = json.loads(r.read())
            if state["breakers"].get(service, {}).get("state") == "open":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.3)
        assert state["breakers"][service]["state"] == "open"  # type: ignore[index]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:  # noqa: S310
            metrics = r.read().decode()
        consumed = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("errorflow_worker_consumed_total")
        )
        assert consumed >= 20
        out = subprocess.run(
            [sys.executable, "-m", "cli", "inspect", "--url", f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["breakers"][service]["state"] == "open"
    finally:
        worker.stop()
