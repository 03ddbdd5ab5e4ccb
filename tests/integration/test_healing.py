"""Self-healing end to end: real broker, the worker as a process, an SDK-driven runner."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import schemas as s
from producers import SDKConfig
from producers.handler import ErrorHandler
from tests.integration.kafka_io import end_offsets, produce, produce_burst, read_since
from tests.integration.worker_process import WorkerProcess

pytestmark = pytest.mark.kafka

HEARTBEATS = "errorflow.heartbeats"
ALERTS = "errorflow.alerts"
COMMANDS = "errorflow.healing-commands"
SOURCE = s.Source(runner_id="it-heal", worker_id="probe", host="h", pid=1, sdk_version="0")


def _beats(
    worker: str,
    beats: int,
    *,
    every_s: float,
    cpu: float,
    in_flight: int = 1,
    source: s.Source = SOURCE,
) -> list[s.Envelope]:
    """``beats`` heartbeats ``every_s`` apart ending now."""
    now = datetime.now(UTC)
    return [
        s.WorkerHeartbeat(
            worker_id=worker,
            interval_s=every_s,
            cpu_percent=cpu,
            memory_rss_bytes=1 << 30,
            disk_free_bytes=500 << 30,
            disk_total_bytes=1000 << 30,
            queue_depth=0,
            in_flight=in_flight,
            source=source,
            occurred_at=now - timedelta(seconds=every_s * (beats - 1 - i)),
        )
        for i in range(beats)
    ]


def _hot(worker: str, beats: int = 15) -> list[s.Envelope]:
    """``beats`` heartbeats 10 s apart ending now, CPU at 97 %."""
    return _beats(worker, beats, every_s=10.0, cpu=97.0)


async def _events(bootstrap: str, since: Any, topic_types: set[str], count: int) -> list[Any]:
    records = await read_since(bootstrap, since, count=count, timeout_s=60)
    return [e for r in records if (e := s.decode(r.value)).type in topic_types]


async def _until(predicate: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_sustained_high_cpu_is_throttled_reported_and_lifted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Hot heartbeats of a runner → one throttle_processing action → the runner's gate
    takes a limit, answers done, lifts it after the throttle's duration and says so;
    an expired action sent to it is reported skipped."""
    config = SDKConfig(
        kafka_bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path,
        runner_id=f"heal-{uuid.uuid4().hex[:6]}",
        consume_commands=True,
        command_group=f"it-heal-{uuid.uuid4().hex[:6]}",
    )
    env = {"ERRORFLOW_WORKER_HEALING_THROTTLE_S": "2", "ERRORFLOW_WORKER_HEALING_VERIFY_S": "30"}
    app_id = f"it-heal-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(kafka_bootstrap, app_id, "w1", tmp_path, env).start()
    since = await end_offsets(kafka_bootstrap, [HEARTBEATS, COMMANDS])
    try:
        async with ErrorHandler(config) as handler:
            me = handler.source.worker_id
            # Once the scripted beats stop, the worker looks unresponsive: its restart
            # goes to the supervisor (none here), never to the runner itself.
            await worker.ready(("healing",))
            healer = handler._background[-1]
            await asyncio.wait_for(healer.ready.wait(), 30)  # type: ignore[attr-defined]
            await produce(kafka_bootstrap, _hot(me))
            await _until(lambda: handler.gate.limit is not None)
            assert handler.gate.limit == 1
            await _until(lambda: handler.gate.limit is None, timeout_s=30)
            stale = s.RunHealingAction(
                command_id=s.command_id(f"stale-{me}"),
                causation_id="test",
                worker_id=me,
                action="clear_caches",
                reason="test",
                expires_at=datetime.now(UTC) - timedelta(minutes=5),
                source=SOURCE,
            )
            await produce(kafka_bootstrap, [stale])
            await _until(lambda: healer.counters["skipped"] >= 1)  # type: ignore[attr-defined]
            assert await handler.publisher.flush(timeout_s=20)
    finally:
        worker.stop()
    events = await _events(kafka_bootstrap, since, {"healing.result", "healing.action"}, 50)
    actions = [e for e in events if e.type == "healing.action" and e.worker_id == me]
    results = [e for e in events if e.type == "healing.result" and e.worker_id == me]
    throttles = [a for a in actions if a.action == "throttle_processing"]
    assert len(throttles) == 1  # the cooldown holds: exactly one
    throttle = [  # the runner's answers (the stage's own say "kind")
        (r.status, r.details.get("restored", False))
        for r in results
        if r.action == "throttle_processing" and "kind" not in r.details
    ]
    assert throttle == [("done", False), ("done", True)]
    assert [
        (r.action, r.status, r.details["why"]) for r in results if r.command_id == stale.command_id
    ] == [("clear_caches", "skipped", "expired")]


async def test_when_most_of_the_fleet_is_hot_nothing_acts_and_one_alert_fires(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Four of four workers need the same action: the budget guard sends none and raises
    one healing_budget alert."""
    run = uuid.uuid4().hex[:6]
    worker = WorkerProcess(kafka_bootstrap, f"it-budget-{run}", "w1", tmp_path).start()
    since = await end_offsets(kafka_bootstrap, [ALERTS, COMMANDS])
    try:
        await worker.ready(("healing",))
        # Beat by beat across the four workers, in one burst: the problem shows on all of
        # them at once, as a fleet-wide one does.
        per_worker = [_hot(f"fleet-{run}-{i}") for i in range(4)]
        hot = [beats[n] for n in range(len(per_worker[0])) for beats in per_worker]
        await produce_burst(kafka_bootstrap, hot)
        deadline = time.monotonic() + 60
        alerts: list[Any] = []
        while not alerts and time.monotonic() < deadline:
            events = await _events(kafka_bootstrap, since, {"alert.firing", "healing.action"}, 1)
            alerts = [e for e in events if e.type == "alert.firing" and e.name == "healing_budget"]
        # The alert and the decisions for all four come from one tick (one transaction):
        # what is on the topics now includes every action that tick could have sent.
    finally:
        worker.stop()
    budget = [e for e in events if e.type == "alert.firing" and e.name == "healing_budget"]
    assert len(budget) == 1
    assert not [
        e for e in events if e.type == "healing.action" and e.worker_id.startswith(f"fleet-{run}")
    ]


async def test_a_silent_worker_is_restarted_once_by_the_supervisor_and_its_tasks_run_elsewhere(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker beats, has two tasks in flight (a third finished), and falls silent: the
    supervisor hook of another runner gets exactly one restart for it (a repeat within
    the cooldown is held back and said so), that runner re-runs the two unfinished
    tasks once each, and since the worker stays down one worker_down alert fires."""
    run = uuid.uuid4().hex[:6]
    lost = f"lost-{run}"
    template = f"tpl-lost-{run}"
    origin = s.Source(
        runner_id=f"r-{lost}", worker_id=lost, host=f"host-{run}", pid=2, sdk_version="0"
    )
    env = {"ERRORFLOW_WORKER_HEALING_VERIFY_S": "3"}
    worker = WorkerProcess(kafka_bootstrap, f"it-lost-{run}", "w1", tmp_path, env).start()
    since = await end_offsets(kafka_bootstrap, [ALERTS, COMMANDS, HEARTBEATS])
    ran: list[str] = []
    restarts: list[dict[str, Any]] = []
    config = SDKConfig(
        kafka_bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "b",
        runner_id=f"supervisor-{run}",
        consume_commands=True,
        command_group=f"it-lost-{run}",
    )
    try:
        async with ErrorHandler(config) as b:
            b.register_executor(lambda data: ran.append(data["task"]), template_id=template)
            await b.register_supervisor_hook(restarts.append)
            await asyncio.wait_for(b._supervisor.ready.wait(), 30)
            await worker.ready(("healing", "recovery"))
            now = datetime.now(UTC)
            task = {"template_id": template, "operation_type": "image_generation", "attempt": 1}
            events: list[s.Envelope] = [
                s.TaskStarted(
                    **task, task_id=t, task_data={"task": t}, source=origin, occurred_at=now
                )
                for t in ("t1", "t2", "t3")
            ]
            events.append(
                s.TaskSucceeded(**task, task_id="t3", duration_ms=5, source=origin, occurred_at=now)
            )
            events += _beats(lost, 3, every_s=1.0, cpu=10.0, in_flight=2, source=origin)
            await produce(kafka_bootstrap, events)
            alerts: list[Any] = []
            deadline = time.monotonic() + 60
            while not alerts and time.monotonic() < deadline:
                found = await _events(kafka_bootstrap, since, {"alert.firing"}, 1)
                alerts = [
                    e for e in found if e.name == "worker_down" and e.labels["worker_id"] == lost
                ]
            await _until(lambda: len(ran) >= 2, timeout_s=30)
            assert await b.publisher.flush(timeout_s=20)
    finally:
        worker.stop()
    found = await _events(
        kafka_bootstrap, since, {"healing.action", "healing.result", "alert.firing"}, 5
    )
    actions = [e for e in found if e.type == "healing.action" and e.worker_id == lost]
    results = [e for e in found if e.type == "healing.result" and e.worker_id == lost]
    assert [(a.action, a.params["via"], a.params["host"]) for a in actions] == [
        ("restart_worker", "supervisor", origin.host)
    ]
    assert [(r["worker_id"], r["runner_id"]) for r in restarts] == [(lost, origin.runner_id)]
    kinds = sorted((r.details.get("kind", "runner"), r.status) for r in results)
    # The supervisor's answer, the held-back repeat (cooldown), the failed verification.
    assert kinds == [("runner", "done"), ("suppressed", "skipped"), ("verification", "failed")]
    assert [
        e.name for e in found if e.type == "alert.firing" and e.labels.get("worker_id") == lost
    ] == ["worker_down"]
    assert sorted(ran) == ["t1", "t2"]
