"""The API as a new user (and an attacker) drives it: real broker, real chDB, `errorflow serve`."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import schemas as s
from tests.integration.kafka_io import produce
from tests.integration.serve_process import ServeProcess

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

SOURCE = s.Source(runner_id="it-api", worker_id="w", host="h", pid=1, sdk_version="0")
MUTATIONS = [
    ("POST", "/api/v1/errors/circuit-breakers/comfyui/reset", None),
    ("PUT", "/api/v1/errors/circuit-breakers/comfyui/config", {"failure_threshold": 3}),
    (
        "PUT",
        "/api/v1/errors/alerts/thresholds",
        {"error_rate": 0.2, "specific_error_count": 5, "recovery_failure_rate": 0.3},
    ),
    ("PATCH", "/api/v1/errors/alerts/thresholds", {"error_rate": 0.2}),
    ("POST", "/api/v1/sql", {"sql": "SELECT 1"}),
    ("POST", "/api/v1/errors/self-healing/diagnose", None),
    ("POST", "/api/v1/errors/dead-letters/replay", {"all": True, "dry_run": True}),
]


@pytest.fixture(scope="module")
def serve(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> ServeProcess:
    data = tmp_path_factory.mktemp("api")
    process = ServeProcess(kafka_bootstrap, data, group_id=f"api-{uuid.uuid4().hex[:6]}").start()
    yield process  # type: ignore[misc]
    process.stop()


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS, ids=lambda v: str(v)[:40])
def test_every_mutation_needs_the_token(
    serve: ServeProcess, method: str, path: str, body: object
) -> None:
    """No token or a wrong one → 401, and the token never shows in the answer."""
    for token in (None, "wrong-token"):
        status, answer = serve.request(method, path, body, token=token)
        assert status == 401, (method, path, status, answer)
        assert "it-token" not in str(answer)


def test_a_cross_origin_form_post_cannot_reset_a_breaker(serve: ServeProcess) -> None:
    """What a foreign web page can send (a form, with its Origin) is refused."""
    status, _ = serve.request(
        "POST",
        "/api/v1/errors/circuit-breakers/comfyui/reset",
        token=None,
        raw=b"x=1",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example",
        },
    )
    assert status == 401
    # Even with the token, a form body is not a mutation this API takes.
    status, _ = serve.request(
        "POST",
        "/api/v1/errors/circuit-breakers/comfyui/reset",
        raw=b"x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", "table function url"),
        ("SELECT name FROM system.tables", "system.tables"),
        ("SELECT 1 WHERE 1 IN system.numbers", "system.numbers"),
        ("SET readonly = 0", "only SELECT"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT file('/etc/passwd')", "function file"),
        ("DROP TABLE events", "only SELECT"),
        ("SELECT 1; SELECT 2", ""),
    ],
)
def test_sql_reaches_only_errorflows_data(serve: ServeProcess, sql: str, why: str) -> None:
    """Files, URLs, system tables, SET and SETTINGS are refused with a reason (400)."""
    status, answer = serve.request("POST", "/api/v1/sql", {"sql": sql})
    assert status == 400, answer
    assert why in answer["detail"]
    assert "root:" not in str(answer)


async def test_a_slow_query_is_bounded_and_the_sink_keeps_inserting(
    serve: ServeProcess, kafka_bootstrap: str
) -> None:
    """A query that would run for minutes ends with 408 within the time limit; a SET
    before it changed nothing; meanwhile events keep landing in ClickHouse."""
    serve.request("POST", "/api/v1/sql", {"sql": "SET readonly = 1"})
    run = uuid.uuid4().hex[:8]
    rows = "(SELECT arrayJoin(range(1000000)) AS n)"
    slow = f"SELECT count() FROM {rows} AS a, {rows} AS b WHERE sipHash64(a.n, b.n) = 7"
    query = asyncio.to_thread(serve.request, "POST", "/api/v1/sql", {"sql": slow})
    events = [
        s.TaskStarted(
            task_id=f"{run}-{i}",
            template_id="t",
            operation_type="o",
            attempt=1,
            source=SOURCE,
        )
        for i in range(20)
    ]
    started = time.monotonic()
    (status, answer), _ = await asyncio.gather(query, produce(kafka_bootstrap, events))
    assert status == 408, answer
    assert time.monotonic() - started < 30
    counted = f"SELECT count() FROM events WHERE task_id LIKE '{run}-%'"
    assert serve.wait_for(counted, 20, timeout_s=60) == 20  # bare table names: errorflow's


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 0.5},
        {},
        {"error_rat": 0.5, "specific_error_count": 5, "recovery_failure_rate": 0.3},
        {"error_rate": True, "specific_error_count": 5, "recovery_failure_rate": 0.3},
        {"error_rate": 1.5, "specific_error_count": 5, "recovery_failure_rate": 0.3},
        {"error_rate": 0.5, "specific_error_count": 10**30, "recovery_failure_rate": 0.3},
        {"error_rate": "0.5", "specific_error_count": 5, "recovery_failure_rate": 0.3},
    ],
)
def test_thresholds_take_only_three_valid_numbers(serve: ServeProcess, body: object) -> None:
    """Missing, misspelt, boolean, out-of-range, huge or text values → 422, never 500."""
    status, _ = serve.request("PUT", "/api/v1/errors/alerts/thresholds", body)
    assert status == 422


@pytest.mark.parametrize("raw", [b'{"error_rate": NaN}', b'{"error_rate": 1e400}', b"{"])
def test_non_finite_or_broken_json_is_a_client_error(serve: ServeProcess, raw: bytes) -> None:
    """NaN, 1e400 and broken JSON → 422 (they gave 500)."""
    status, _ = serve.request(
        "PATCH",
        "/api/v1/errors/alerts/thresholds",
        raw=raw,
        headers={"Content-Type": "application/json"},
    )
    assert status == 422


def test_patch_merges_with_the_current_thresholds(serve: ServeProcess) -> None:
    """PUT sets all three; PATCH of one keeps the others (they were silently reset)."""
    full = {"error_rate": 0.3, "specific_error_count": 7, "recovery_failure_rate": 0.4}
    assert serve.request("PUT", "/api/v1/errors/alerts/thresholds", full)[0] == 202
    deadline = time.monotonic() + 60
    while serve.get("/api/v1/errors/alerts/thresholds") != full:
        assert time.monotonic() < deadline, "thresholds never reached ClickHouse"
        time.sleep(0.3)
    status, answer = serve.request("PATCH", "/api/v1/errors/alerts/thresholds", {"error_rate": 0.1})
    assert status == 202
    assert {k: answer[k] for k in full} == {**full, "error_rate": 0.1}


@pytest.mark.parametrize(
    ("service", "status"), [("x" * 3000, 422), ("bad%20name!", 422), ("never-seen-svc", 404)]
)
def test_reset_of_a_bad_or_unknown_service_is_refused(
    serve: ServeProcess, service: str, status: int
) -> None:
    """Overlong or odd names → 422; a service errorflow never saw → 404."""
    got, _ = serve.request("POST", f"/api/v1/errors/circuit-breakers/{service}/reset")
    assert got == status


async def test_reset_of_a_known_service_is_accepted(
    serve: ServeProcess, kafka_bootstrap: str
) -> None:
    """A service with calls on record is reset: 202 and the event id."""
    service = f"svc-{uuid.uuid4().hex[:6]}"
    call = s.CallCompleted(service=service, outcome="success", duration_ms=1, source=SOURCE)
    await produce(kafka_bootstrap, [call])
    counted = f"SELECT count() FROM events WHERE service = '{service}'"
    assert serve.wait_for(counted, 1, timeout_s=60) == 1
    status, answer = serve.request("POST", f"/api/v1/errors/circuit-breakers/{service}/reset")
    assert status == 202
    assert answer["accepted"] is True


def test_health_reports_its_parts(serve: ServeProcess) -> None:
    """/health names ClickHouse, Kafka, the sink's lag and last flush, and workers seen."""
    status, body = serve.request("GET", "/api/v1/errors/health")
    assert status == 200, body
    assert body["clickhouse"] == "ok"
    assert body["kafka"] == "ok"
    assert {"lag", "last_flush_age_s", "inserted", "last_error"} <= set(body["sink"])
    assert isinstance(body["workers_seen"], list)


def test_metrics_are_prometheus_text(serve: ServeProcess) -> None:
    """/metrics answers text a Prometheus scraper reads."""
    status, text = serve.request("GET", "/metrics")
    assert status == 200
    assert "# TYPE errorflow_sink_inserted gauge" in text


def _heartbeats(run: str) -> list[s.Envelope]:
    """A scripted fleet over the last 140 s: a leaking worker, a hot one, a silent
    one and a healthy one (10 s beats)."""
    now = datetime.now(UTC)
    out: list[s.Envelope] = []
    for i in range(15):
        at = now - timedelta(seconds=10 * (14 - i))
        base = {
            "interval_s": 10.0,
            "disk_free_bytes": 500 << 30,
            "disk_total_bytes": 1000 << 30,
            "queue_depth": 0,
            "in_flight": 1,
            "source": SOURCE,
            "occurred_at": at,
        }
        rows = {
            f"leak-{run}": {"cpu_percent": 20.0, "memory_rss_bytes": (15 << 30) + i * (60 << 20)},
            f"hot-{run}": {"cpu_percent": 98.0, "memory_rss_bytes": 2 << 30},
            f"ok-{run}": {"cpu_percent": 20.0, "memory_rss_bytes": 2 << 30},
        }
        if i < 4:
            rows[f"gone-{run}"] = {"cpu_percent": 20.0, "memory_rss_bytes": 2 << 30}
        for worker, fields in rows.items():
            out.append(s.WorkerHeartbeat(worker_id=worker, **base, **fields))
    return out


async def test_diagnose_returns_the_findings_of_a_scripted_fleet(
    serve: ServeProcess, kafka_bootstrap: str
) -> None:
    """Leak (with slope and fit), sustained CPU and silence are found; the healthy worker
    has none; nothing is acted on (dry-run verdicts)."""
    run = uuid.uuid4().hex[:6]
    beats = _heartbeats(run)
    await produce(kafka_bootstrap, beats)
    counted = f"SELECT count() FROM heartbeats WHERE worker_id LIKE '%-{run}'"
    assert serve.wait_for(counted, len(beats), timeout_s=60) == len(beats)
    status, body = serve.request("POST", "/api/v1/errors/self-healing/diagnose")
    assert status == 200, body
    found = {
        (f["worker_id"], f["problem"]) for f in body["findings"] if f["worker_id"].endswith(run)
    }
    assert found == {
        (f"leak-{run}", "resource_leak"),
        (f"hot-{run}", "high_cpu"),
        (f"gone-{run}", "unresponsive_worker"),
    }
    leak = next(f for f in body["findings"] if f["worker_id"] == f"leak-{run}")
    assert leak["evidence"]["slope_bytes_per_s"] > 0
    assert leak["evidence"]["r2"] > 0.99


async def test_healing_stats_count_what_the_stream_worker_and_runners_said(
    serve: ServeProcess, kafka_bootstrap: str
) -> None:
    """Actions, a runner's answers (a throttle answers twice), the stream worker's
    verification and a held-back repeat, through Kafka and the sink: the stats of that
    worker count each once."""
    worker = f"stats-{uuid.uuid4().hex[:6]}"
    later = datetime.now(UTC) + timedelta(minutes=5)

    def action(cid: str, name: str, problem: str, **params: object) -> s.Envelope:
        return s.RunHealingAction(
            **common(cid, name),
            causation_id=cid,
            params={"problem": problem, **params},
            reason=problem,
            expires_at=later,
        )

    def result(cid: str, name: str, status: str, **details: object) -> s.Envelope:
        return s.HealingResult(**common(cid, name), status=status, details=details)  # type: ignore[arg-type]

    def common(cid: str, name: str) -> dict[str, Any]:
        return {"command_id": cid, "worker_id": worker, "action": name, "source": SOURCE}

    events = [
        action(f"{worker}-1", "throttle_processing", "high_cpu"),
        result(f"{worker}-1", "throttle_processing", "done", limit=1),
        result(f"{worker}-1", "throttle_processing", "done", restored=True),
        result(
            f"{worker}-1", "throttle_processing", "done", kind="verification", problem="high_cpu"
        ),
        result(
            f"{worker}-h",
            "throttle_processing",
            "skipped",
            kind="suppressed",
            problem="high_cpu",
            verdict="cooldown",
        ),
        action(f"{worker}-2", "reload_model", "model_corruption", dry_run=True),
        result(f"{worker}-2", "reload_model", "skipped", why="dry-run"),
    ]
    await produce(kafka_bootstrap, events)
    counted = f"SELECT count() FROM healing_actions WHERE worker_id = '{worker}'"
    assert serve.wait_for(counted, 5, timeout_s=60) == 5
    counted = f"SELECT count() FROM commands WHERE worker_id = '{worker}'"
    assert serve.wait_for(counted, 2, timeout_s=60) == 2
    body = serve.get(f"/api/v1/errors/self-healing/stats?worker_id={worker}")
    rows = {(r["problem"], r["action"]): r for r in body["by_detector"]}
    cpu = rows[("high_cpu", "throttle_processing")]
    assert (cpu["issued"], cpu["succeeded"], cpu["verified"], cpu["suppressed_cooldown"]) == (
        1,
        1,
        1,
        1,
    )
    model = rows[("model_corruption", "reload_model")]
    assert (model["issued"], model["dry_run"], model["skipped"]) == (0, 1, 1)
    assert body["totals"]["issued"] == 1
    assert {r["command_id"] for r in body["recent"]} >= {f"{worker}-1", f"{worker}-2"}


async def test_dead_letters_are_listed_and_replayed_with_a_dry_run_first(
    serve: ServeProcess, kafka_bootstrap: str
) -> None:
    """A dead letter shows in GET /dead-letters; a dry run says it would replay it and
    sends nothing; the replay sends one recovery.retry with a new command id."""
    from tests.integration.kafka_io import end_offsets, read_since

    run = uuid.uuid4().hex[:6]
    letter = s.TaskDeadLettered(
        task_id=f"dlq-{run}",
        template_id=f"tpl-{run}",
        operation_type="img",
        attempts=3,
        errors=[],
        task_data={"prompt": "x"},
        source=SOURCE,
    )
    await produce(kafka_bootstrap, [letter])
    deadline = time.monotonic() + 60
    while not [
        d for d in serve.get("/api/v1/errors/dead-letters") if d["task_id"] == letter.task_id
    ]:
        assert time.monotonic() < deadline, "the dead letter never reached ClickHouse"
        await asyncio.sleep(0.3)
    since = await end_offsets(kafka_bootstrap, ["errorflow.recovery-commands"])
    body = {"task_ids": [letter.task_id]}
    status, dry = serve.request(
        "POST", "/api/v1/errors/dead-letters/replay", {**body, "dry_run": True}
    )
    assert status == 200, dry
    assert dry["would_replay"] == [letter.task_id]
    status, done = serve.request("POST", "/api/v1/errors/dead-letters/replay", body)
    assert status == 200, done
    [replayed] = done["replayed"]
    records = await read_since(kafka_bootstrap, since, count=1, timeout_s=30)
    commands = [s.decode(r.value) for r in records]
    assert [(c.task_id, c.command_id) for c in commands] == [
        (letter.task_id, replayed["command_id"])
    ]  # type: ignore[attr-defined]
    status, _ = serve.request("POST", "/api/v1/errors/dead-letters/replay", {})
    assert status == 422  # a replay says what to replay
