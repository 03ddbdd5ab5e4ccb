"""The ClickHouse sink against the real broker and chDB: complete, exactly once, no poison lost."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import schemas as s
from tests.integration.kafka_io import produce, produce_raw
from tests.integration.serve_process import ROOT, TOKEN, ServeProcess

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

TOTAL = 100_000


def _dataset(
    run: str, total: int = TOTAL
) -> tuple[list[tuple[str, bytes, bytes, str]], Counter[tuple[str, str, str]]]:
    """``total`` task and call events of every type over ten minutes, and the ground
    truth of attempts and errors per (minute, kind, metric)."""
    rng = random.Random(42)
    source = s.Source(runner_id=f"r-{run}", worker_id="w", host="h", pid=1, sdk_version="0.1.0")
    template, service = f"tpl-{run}", f"svc-{run}"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=15)
    error = s.ErrorInfo(
        category="transient",
        error_type="builtins.ConnectionResetError",
        message="reset",
        fingerprint="f1",
        severity="medium",
        retryable=True,
        rule="builtin:network",
        service=service,
    )
    truth: Counter[tuple[str, str, str]] = Counter()
    records = []
    for i in range(total):
        at = start + timedelta(milliseconds=rng.randrange(600_000))
        minute = at.replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
        task = {
            "task_id": f"{run}-{i % 20_000}",
            "template_id": template,
            "operation_type": "image_generation",
            "attempt": 1 + i % 3,
            "source": source,
            "occurred_at": at,
        }
        pick = i % 8
        if pick == 0:
            event: s.Envelope = s.TaskStarted(**task, task_data={"i": i})
        elif pick == 1:
            event = s.OperationRecorded(
                **task, operation_id=f"op{i}", operation_kind="upload", data={"i": i}
            )
        elif pick == 2:
            event = s.TaskAttemptFailed(**task, error=error, will_retry=True, retry_delay_s=0.1)
        elif pick == 3:
            event = s.TaskSucceeded(**task, duration_ms=12.5)
        elif pick == 4:
            event = s.TaskFailed(**task, error=error, attempts=3)
        elif pick == 5:
            kind = s.CompensationCompleted if i % 16 == 5 else s.CompensationFailed
            event = kind(
                source=source,
                occurred_at=at,
                task_id=task["task_id"],
                operation_id=f"op{i}",
                command_id=f"c{i}",
            )
        else:
            outcome = ("success", "failure", "timeout", "rejected", "fallback")[i % 5]
            event = s.CallCompleted(
                source=source,
                occurred_at=at,
                service=service,
                outcome=outcome,
                duration_ms=3.0,
                error=None,
            )
        if event.type in ("task.succeeded", "task.attempt_failed", "task.failed"):
            truth[(minute, "task", "attempts")] += 1
            truth[(minute, "task", "errors")] += event.type != "task.succeeded"
        elif isinstance(event, s.CallCompleted) and event.outcome != "rejected":
            # A rejected call never reached the service; a fallback (no reason given)
            # answered a failed call: a failure of the service.
            truth[(minute, "call", "attempts")] += 1
            truth[(minute, "call", "errors")] += event.outcome != "success"
        records.append(
            (s.topic_of(event).name, s.key_of(event).encode(), s.encode(event), event.type)
        )
    return records, truth


async def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes, str]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks="all"
    )
    await producer.start()
    try:
        for topic, key, value, type_ in records:
            await producer.send(topic, value, key=key, headers=[("type", type_.encode())])
        await producer.flush()
    finally:
        await producer.stop()


def _stored(serve: ServeProcess, run: str) -> Any:
    return (
        f"SELECT uniqExact(event_id) FROM errorflow.events "
        f"WHERE runner_id = 'r-{run}' AND _error = ''"
    )


def _trends(serve: ServeProcess, run: str) -> Counter[tuple[str, str, str]]:
    rows = serve.sql(
        "SELECT toString(minute), kind, sum(attempts), sum(errors) FROM errorflow.events_per_minute "
        f"WHERE template_id = 'tpl-{run}' OR service = 'svc-{run}' GROUP BY minute, kind"
    )
    out: Counter[tuple[str, str, str]] = Counter()
    for minute, kind, attempts, errors in rows:
        out[(minute, kind, "attempts")] += int(attempts)
        out[(minute, kind, "errors")] += int(errors)
    return out


async def test_every_event_lands_exactly_once_through_crash_and_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """100k events → 100k distinct rows with exact per-minute trends; a SIGKILL mid-stream
    and a replay from offset 0 (a fresh consumer group) change nothing."""
    run = uuid.uuid4().hex[:8]
    records, truth = _dataset(run)
    await _produce(kafka_bootstrap, records)
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"sink-{run}").start()
    try:
        deadline = time.monotonic() + 120
        while serve.sql(_stored(serve, run))[0][0] < TOTAL // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        serve.kill()  # SIGKILL mid-stream
        partial = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"sink-{run}")
        serve = partial.start()
        assert serve.wait_for(_stored(serve, run), TOTAL) == TOTAL
        rows = serve.sql(f"SELECT count() FROM errorflow.events WHERE runner_id = 'r-{run}'")
        assert rows[0][0] == TOTAL  # no duplicate rows at all, not only distinct ids
        assert _trends(serve, run) == +truth
        serve.stop()
        # Replay every topic from offset 0 with a new consumer group.
        serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"replay-{run}").start()
        time.sleep(8)
        rows = serve.sql(f"SELECT count() FROM errorflow.events WHERE runner_id = 'r-{run}'")
        assert rows[0][0] == TOTAL
        assert _trends(serve, run) == +truth
    finally:
        serve.stop()


async def test_records_produced_twice_are_stored_once_with_an_exact_rollup(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The same 1,000 records produced twice (a producer retry, a replayed spool) → 1,000
    rows, and per-minute trends equal to the truth of one copy."""
    run = uuid.uuid4().hex[:8]
    records, truth = _dataset(run, 1000)
    await _produce(kafka_bootstrap, records)
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"sink-{run}").start()
    try:
        assert serve.wait_for(_stored(serve, run), 1000) == 1000
        await _produce(kafka_bootstrap, records)  # the second copy, at new offsets
        # Until the sink has judged every record of the second copy (a counter, no sleep).
        deadline = time.monotonic() + 120
        while serve.get("/api/v1/errors/health")["sink"]["duplicates_dropped"] < 1000:
            assert time.monotonic() < deadline, "the second copy was not read"
            time.sleep(0.3)
        rows = serve.sql(f"SELECT count() FROM errorflow.events WHERE runner_id = 'r-{run}'")
        assert rows[0][0] == 1000
        assert _trends(serve, run) == +truth
    finally:
        serve.stop()


async def test_poison_and_out_of_range_records_are_kept_with_reasons(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Garbage and an attempt of 70000 land in `poison` with reasons; the sink goes on."""
    run = uuid.uuid4().hex[:8]
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"poison-{run}").start()
    try:
        good = s.TaskStarted(
            task_id=f"p-{run}",
            template_id="t",
            operation_type="o",
            attempt=1,
            source=s.Source.here(runner_id=f"r-{run}"),
        )
        out_of_range = json.loads(s.encode(good))
        out_of_range.update(event_id=str(uuid.uuid4()), attempt=70_000)
        garbage = f"not json {run}".encode()
        await produce_raw(kafka_bootstrap, "errorflow.task-events", [garbage])
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(
            "errorflow.task-events",
            json.dumps(out_of_range).encode(),
            key=b"k",
            headers=[("type", b"task.started")],
        )
        await producer.send_and_wait(
            "errorflow.task-events", s.encode(good), key=b"k", headers=[("type", b"task.started")]
        )
        await producer.stop()
        assert (
            serve.wait_for(
                f"SELECT count() FROM errorflow.events WHERE task_id = 'p-{run}' AND _error = ''",
                1,
                timeout_s=60,
            )
            == 1
        ), "the sink stopped after the poison"
        serve.wait_for(
            "SELECT count() FROM errorflow.poison WHERE source_topic = 'errorflow.task-events'"
            f" AND (base64Decode(raw) LIKE '%{run}%')",
            2,
            timeout_s=60,
        )
        reasons = dict(
            serve.sql(
                "SELECT raw, reason FROM errorflow.poison WHERE source_topic = 'errorflow.task-events'"
                f" AND (base64Decode(raw) LIKE '%{run}%')"
            )
        )
        import base64

        by_raw = {base64.b64decode(raw): reason for raw, reason in reasons.items()}
        assert by_raw[garbage].startswith("record is not valid JSON")
        assert by_raw[json.dumps(out_of_range).encode()] == "attempt out of range (1..65535)"
    finally:
        serve.stop()


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ERRORFLOW_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
        "ERRORFLOW_API_TOKEN": TOKEN,
    }
    env.pop("CLICKHOUSE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _recovery_commands(template: str) -> list[s.Envelope]:
    """Two transient retries and a dead letter, a resource park and its release, a
    fail-fast — as the recovery manager sends them."""
    env = {"source": s.Source.here(runner_id="it"), "causation_id": "c"}
    retry = {**env, "template_id": template, "operation_type": "op", "attempt": 2}
    now = s.utc_now()
    return [
        s.RetryTask(
            **retry,
            command_id="r1",
            task_id="t1",
            not_before=now,
            reason="transient error, attempt 1 of 3",
            category="transient",
        ),
        s.RetryTask(
            **retry,
            command_id="r2",
            task_id="t1",
            not_before=now,
            reason="transient error, attempt 2 of 3",
            category="transient",
        ),
        s.DeadLetterTask(
            **env,
            command_id="d1",
            task_id="t1",
            reason="out of attempts",
            template_id=template,
            category="transient",
        ),
        s.QueueTask(
            **env,
            command_id="q1",
            task_id="t2",
            reason="resource error",
            resource_kind="gpu",
            template_id=template,
            category="resource",
        ),
        s.RetryTask(
            **retry,
            command_id="r3",
            task_id="t2",
            not_before=now,
            reason="resource error: released, gpu available on w",
            category="resource",
        ),
        s.FailTaskFast(
            **env,
            command_id="f1",
            task_id="t3",
            reason="bad input",
            notification="fix it",
            template_id=template,
            category="validation",
        ),
    ]


async def _recovery_rows(serve: ServeProcess, template: str) -> dict[str, tuple[int, ...]]:
    """(retries, released, queued, dead-lettered, failed fast) per category, from the API."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = await asyncio.to_thread(serve.get, "/api/v1/errors/recovery/stats?hours=1")
        rows = [r for r in stats["by_template_and_category"] if r["template_id"] == template]
        if sum(r["retries_issued"] + r["queued"] + r["failed_fast"] for r in rows) == 5:
            return {
                r["category"]: (
                    r["retries_issued"],
                    r["released"],
                    r["queued"],
                    r["dead_lettered"],
                    r["failed_fast"],
                )
                for r in rows
            }
        await asyncio.sleep(0.5)
    raise AssertionError(f"recovery commands of {template} not in the stats within 60 s")


async def test_sql_goes_through_serve_and_the_api_answers_the_seed_endpoints(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """While serve owns chDB, `errorflow sql` asks it; the analysis has the seed's shape;
    a write statement is refused (read-only); recovery stats come per template and
    category."""
    run = uuid.uuid4().hex[:8]
    await produce(kafka_bootstrap, _recovery_commands(f"tpl-{run}"))
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"sql-{run}").start()
    try:
        by = await _recovery_rows(serve, f"tpl-{run}")
        assert by == {
            "transient": (2, 0, 0, 1, 0),
            "resource": (1, 1, 1, 0, 0),
            "validation": (0, 0, 0, 0, 1),
        }
        out = _cli(tmp_path, "sql", "SELECT 40 + 2 AS answer", "--format", "json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [{"answer": 42}]
        refused = _cli(tmp_path, "sql", "DROP TABLE errorflow.events")
        assert refused.returncode != 0
        assert "only SELECT queries are allowed" in refused.stderr
        analysis = serve.get("/api/v1/errors/analysis?window_minutes=5")
        assert set(analysis) >= {"error_analysis", "circuit_breakers", "recovery", "self_healing"}
        assert set(analysis["error_analysis"]) == {
            "total_errors",
            "error_rate",
            "error_distribution",
            "anomalies",
            "recommendations",
        }
        assert set(analysis["error_analysis"]["error_distribution"]) == {
            "transient",
            "resource",
            "validation",
            "permanent",
        }
    finally:
        serve.stop()
    # Without serve, `errorflow sql` opens the embedded ClickHouse itself.
    direct = _cli(
        tmp_path,
        "sql",
        "SELECT count() > 0 AS has_rows FROM commands",
        "--format",
        "csv",
    )
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.splitlines()[1] in {"1", "True", "true"}
    # ... under the same guard: no system tables that way either.
    system = _cli(tmp_path, "sql", "SELECT count() FROM system.tables")
    assert system.returncode != 0
    assert "not one of errorflow's" in system.stderr


def test_retention_is_configurable_per_table(tmp_path: Path) -> None:
    """ERRORFLOW_RETENTION_DAYS sets a table's TTL; an unknown table name is refused."""
    env_days = {"ERRORFLOW_RETENTION_DAYS": json.dumps({"events": 30, "heartbeats": 7})}
    os.environ.update(env_days)
    # system.tables is out of `errorflow sql`'s reach (the SQL guard), so ask chDB directly.
    check = (
        "import json; from sinks import ClickHouseSettings, connect; c = connect(ClickHouseSettings()); "
        "print(json.dumps([dict(name=n, a=a, b=b) for n, a, b in c.query("
        "\"SELECT name, engine_full LIKE '%toIntervalDay(30)%', engine_full LIKE "
        "'%toIntervalDay(7)%' FROM system.tables WHERE database = 'errorflow' AND name IN "
        "('events', 'heartbeats') ORDER BY name\").result_rows]))"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", check],
            capture_output=True,
            text=True,
            env={**os.environ, "ERRORFLOW_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        os.environ["ERRORFLOW_RETENTION_DAYS"] = json.dumps({"evnets": 30})
        wrong = _cli(tmp_path, "sql", "SELECT 1")
    finally:
        os.environ.pop("ERRORFLOW_RETENTION_DAYS", None)
    assert out.returncode == 0, out.stderr
    rows = [list(r.values()) for r in json.loads(out.stdout)]
    assert rows == [["events", True, False], ["heartbeats", False, True]]
    assert wrong.returncode != 0
    assert "unknown table 'evnets'" in wrong.stderr
