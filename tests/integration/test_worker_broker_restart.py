"""The worker across a broker stop/start under load: every window equals the events produced.

A restart in the middle of a transaction used to commit offsets whose sends had failed
(``OutOfOrderSequenceNumber``): the window counted 90 of 592 attempts. Now a failed
checkpoint aborts and the stage resumes from its committed state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import schemas as s
from deploy.broker import LocalBroker
from tests.integration.kafka_io import produce_burst
from tests.integration.worker_process import WorkerProcess, windows_for

pytestmark = pytest.mark.kafka

SOURCE = s.Source(runner_id="it-load", worker_id="w", host="h", pid=1, sdk_version="0")


def _error(service: str | None = None) -> s.ErrorInfo:
    return s.ErrorInfo(
        category="transient",
        error_type="builtins.TimeoutError",
        message="timed out",
        fingerprint="fp-load",
        severity="medium",
        retryable=True,
        rule="builtin:timeout",
        service=service,
    )


def _load(service: str, template: str, n: int, at: datetime) -> list[s.Envelope]:
    """``n`` calls and ``n`` task attempt ends spread over two seconds from ``at``; every
    third fails."""
    out: list[s.Envelope] = []
    for i in range(n):
        when = at + timedelta(milliseconds=2000 * i // n)
        failed = i % 3 == 0
        out.append(
            s.CallCompleted(
                service=service,
                outcome="failure" if failed else "success",
                duration_ms=1,
                error=_error() if failed else None,
                source=SOURCE,
                occurred_at=when,
            )
        )
        task = {
            "task_id": f"t-{uuid.uuid4().hex[:8]}",
            "template_id": template,
            "operation_type": "image_generation",
            "attempt": 1,
            "source": SOURCE,
            "occurred_at": when,
        }
        if failed:
            # Names the service: counted for the template, not a second time for it.
            out.append(s.TaskFailed(**task, error=_error(service), attempts=1))
        else:
            out.append(s.TaskSucceeded(**task, duration_ms=5))
    return out


def _truth(events: list[s.Envelope], key: str) -> dict[int, tuple[int, int]]:
    """(attempts, errors) per 1-second window, counted by hand."""
    attempts: Counter[int] = Counter()
    errors: Counter[int] = Counter()
    for e in events:
        if key.startswith("service=") and isinstance(e, s.CallCompleted):
            failed = e.outcome != "success"
        elif key.startswith("template_id=") and isinstance(e, s.TaskFailed | s.TaskSucceeded):
            failed = isinstance(e, s.TaskFailed)
        else:
            continue
        ms = int(e.occurred_at.timestamp() * 1000)
        attempts[ms - ms % 1000] += 1
        errors[ms - ms % 1000] += int(failed)
    return {start: (n, errors[start]) for start, n in attempts.items()}


async def _windows_until(
    bootstrap: str, app_id: str, expected: dict[str, dict[int, tuple[int, int]]], timeout_s: float
) -> dict[str, dict[int, tuple[int, int]]]:
    """The closed windows (attempts, errors) of each expected key, read until they equal
    the truth or ``timeout_s`` passes; what was read last."""
    got: dict[str, dict[int, tuple[int, int]]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and got != expected:
        await asyncio.sleep(1)
        for key in expected:
            windows = await windows_for(bootstrap, app_id, key)
            got[key] = {w: (r["attempts"], r["errors"]) for w, r in windows.items()}
    return got


async def test_windows_are_exact_across_a_broker_restart_under_load(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    """Thousands of events in flight while the broker stops and starts: every closed
    window of the service and of the template equals the ground truth."""
    bootstrap = private_broker.bootstrap
    app_id = f"it-restart-{uuid.uuid4().hex[:6]}"
    service, template = f"svc-{uuid.uuid4().hex[:6]}", f"tpl-{uuid.uuid4().hex[:6]}"
    # The load is built and sent in seconds, so its records reach Kafka a few seconds
    # after their event time; an input is called idle only after 15 s at its end, so
    # that delay never lets the clock close a window before its records are read (an
    # idle close is for traffic that stopped, and counts arriving later are late).
    env = {"ERRORFLOW_WORKER_IDLE_CLOSE_S": "15"}
    worker = WorkerProcess(bootstrap, app_id, "w1", tmp_path, env).start()
    produced: list[s.Envelope] = []
    try:
        await worker.ready(("ingest", "detect"))
        now = datetime.now(UTC)
        first = _load(service, template, 15000, now)
        await produce_burst(bootstrap, first)
        produced += first
        # While the worker works through them: the broker goes away and comes back.
        await asyncio.to_thread(private_broker.stop)
        await asyncio.to_thread(private_broker.start)
        second = _load(service, template, 1500, datetime.now(UTC))
        await produce_burst(bootstrap, second)
        produced += second
        keys = (f"service={service}", f"template_id={template}")
        expected = {key: _truth(produced, key) for key in keys}
        got = await _windows_until(bootstrap, app_id, expected, timeout_s=120)
    finally:
        worker.stop()
    wrong = {
        key: {
            w: (got.get(key, {}).get(w), want)
            for w, want in expected[key].items()
            if got.get(key, {}).get(w) != want
        }
        for key in expected
    }
    late = [line for line in worker.log.read_text().splitlines() if "worker.late " in line]
    assert got == expected, f"windows (got, expected): {wrong}; late counts: {late[:3]}"


async def test_a_worker_started_before_kafka_waits_for_it_and_counts_exactly(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    """Started while the broker is down, the worker says it waits (it used to die on a
    traceback); once the broker is up it counts a load exactly."""
    bootstrap = private_broker.bootstrap
    app_id = f"it-early-{uuid.uuid4().hex[:6]}"
    service, template = f"svc-{uuid.uuid4().hex[:6]}", f"tpl-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(private_broker.stop)
    env = {"ERRORFLOW_WORKER_IDLE_CLOSE_S": "15"}  # as above: records sent late stay in
    worker = WorkerProcess(bootstrap, app_id, "w1", tmp_path, env).start()
    try:
        deadline = time.monotonic() + 60
        while "errorflow.worker.waiting_for_kafka" not in (
            worker.log.read_text() if worker.log.exists() else ""
        ):
            assert worker.proc is not None
            assert worker.proc.poll() is None, worker.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker never said it waits for Kafka"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(private_broker.start)
        await worker.ready(("ingest", "detect"), timeout_s=90)
        produced = _load(service, template, 1500, datetime.now(UTC))
        await produce_burst(bootstrap, produced)
        keys = (f"service={service}", f"template_id={template}")
        expected = {key: _truth(produced, key) for key in keys}
        got = await _windows_until(bootstrap, app_id, expected, timeout_s=90)
    finally:
        worker.stop()
    assert got == expected
