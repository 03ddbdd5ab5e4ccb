"""The API of the original design, served by ``errorflow serve``.

Reads come from ClickHouse through :mod:`sinks.queries`; writes only produce control
events (``breaker.reset``, ``breaker.config``, ``alerts.thresholds``) to Kafka — the API
owns no state. Every mutation is token-protected and JSON-only (:mod:`api.security`);
user SQL runs on a connection of its own under :mod:`sinks.guard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path as PathLib
from typing import Annotated, Any, Literal

from aiokafka import AIOKafkaProducer
from fastapi import (
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

import schemas as s
from api.feed import Client, LiveFeed
from api.security import ApiSettings, Guard
from deploy.publish import send_event
from schemas.timestamps import UtcDateTime
from schemas.topics import CONTROL
from sinks import queries
from sinks.analysis import analysis
from sinks.clickhouse import AsyncClickHouse
from sinks.errors import error_code
from sinks.guard import LIMITS, SqlRefused, check_sql

__all__ = ["SqlRequest", "Thresholds", "create_app"]

DASHBOARD = PathLib(__file__).with_name("static") / "dashboard.html"
SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
ServiceName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=SERVICE.pattern,
        description="letters, digits and . _ : / - (at most 200)",
    ),
]
_STRICT = ConfigDict(extra="forbid", strict=True)
Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=1_000_000_000)]


class SqlRequest(BaseModel):
    model_config = _STRICT
    sql: str = Field(min_length=1, max_length=100_000)


class Thresholds(BaseModel):
    """The seed's three alert thresholds; PUT replaces all three."""

    model_config = _STRICT
    error_rate: Rate
    specific_error_count: Count
    recovery_failure_rate: Rate


class ThresholdsPatch(BaseModel):
    """A partial update, merged with the current thresholds."""

    model_config = _STRICT
    error_rate: Rate | None = None
    specific_error_count: Count | None = None
    recovery_failure_rate: Rate | None = None


class BreakerSettings(BaseModel):
    """The seed's ``add_breaker`` values for the fleet breaker of one service."""

    model_config = _STRICT
    failure_threshold: Count = 5
    recovery_timeout_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] = 60.0
    success_threshold: Count = 3
    failure_rate_threshold: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    window_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] | None = None
    minimum_calls: Count | None = None
    half_open_max_calls: Count | None = None
    quorum_workers: Count | None = None


class ReplayRequest(BaseModel):
    """The `errorflow dlq replay` selectors: at least one, or ``all``."""

    model_config = _STRICT
    task_ids: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=10_000
    )
    fingerprint: str | None = Field(None, min_length=1, max_length=200)
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    all: bool = False
    dry_run: bool = False
    force: bool = False
    rate_per_s: Annotated[float, Field(ge=1, le=10_000, allow_inf_nan=False)] = 50.0
    by: str = Field("api", min_length=1, max_length=200)


_DEFAULT_THRESHOLDS = {
    "error_rate": 0.15,
    "specific_error_count": 20,
    "recovery_failure_rate": 0.25,
}


def create_app(
    clickhouse: AsyncClickHouse,
    *,
    bootstrap_servers: str,
    database: str = "errorflow",
    health: Callable[[], dict[str, Any]] | None = None,
    query_clickhouse: AsyncClickHouse | None = None,
    settings: ApiSettings | None = None,
) -> FastAPI:
    """The app. ``health`` adds the sink's state to /health; ``query_clickhouse`` is the
    user-SQL connection (its own session and thread; the sink's otherwise)."""
    settings = settings or ApiSettings()
    guard = Guard(settings)
    producer: dict[str, AIOKafkaProducer] = {}
    ch = clickhouse
    user_ch = query_clickhouse or clickhouse

    feed = LiveFeed(bootstrap_servers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await feed.stop()
        if "p" in producer:
            await producer["p"].stop()

    app = FastAPI(title="errorflow", lifespan=lifespan)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with where and what, without echoing the input (a NaN in it made the
        default handler's JSON fail: a 500)."""
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    read = [Depends(guard.read)]
    mutate = [Depends(guard.mutation)]

    async def publish(event: s.Envelope) -> None:
        if "p" not in producer:
            started = AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers, acks="all", request_timeout_ms=10_000
            )
            try:
                await asyncio.wait_for(started.start(), 10)
            except Exception as exc:  # noqa: BLE001 - reported to the caller as 503
                await started.stop()
                raise HTTPException(503, f"Kafka unreachable: {type(exc).__name__}") from None
            producer["p"] = started
        try:
            await asyncio.wait_for(send_event(producer["p"], event), 15)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(
                503, f"Kafka did not take the event: {type(exc).__name__}"
            ) from None

    source = s.Source.here(runner_id="errorflow-api")

    async def kafka_reachable() -> bool:
        if "p" in producer:
            try:
                await asyncio.wait_for(producer["p"].partitions_for(CONTROL.name), 3)
                return True
            except Exception:  # noqa: BLE001
                return False
        probe = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(probe.start(), 3)
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            await probe.stop()

    @app.get("/api/v1/errors/health", dependencies=read)
    async def health_check() -> JSONResponse:
        """ok when ClickHouse answers, Kafka is reachable and the sink keeps storing;
        503 with the failing parts otherwise."""
        problems: list[str] = []
        try:
            await asyncio.wait_for(ch.query_rows("SELECT 1"), 10)
            clickhouse_state = "ok"
        except Exception as exc:  # noqa: BLE001
            clickhouse_state = f"error: {type(exc).__name__}"
            problems.append("clickhouse")
        kafka = await kafka_reachable()
        if not kafka:
            problems.append("kafka")
        sink = health() if health else {}
        state = sink.get("sink", {})
        if state.get("last_error"):
            problems.append("sink")
        workers = await ch.run(queries.workers_seen, ch.client, database=database)
        body = {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "clickhouse": clickhouse_state,
            "kafka": "ok" if kafka else "unreachable",
            "workers_seen": workers,
            **sink,
        }
        return JSONResponse(jsonable_encoder(body), status_code=503 if problems else 200)

    @app.get("/api/v1/errors/analysis", dependencies=read)
    async def error_analysis(
        window_minutes: int = Query(5, ge=1, le=60 * 24 * 31),
    ) -> dict[str, Any]:
        return await ch.run(analysis, ch.client, database=database, window_minutes=window_minutes)

    @app.get("/api/v1/errors/stats", dependencies=read)
    async def stats(hours: int = Query(24, ge=1, le=24 * 31)) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        return {
            "by_category": await ch.run(
                queries.error_trend,
                ch.client,
                database=database,
                interval="hour",
                by="category",
                since=since,
            ),
            "by_template": await ch.run(
                queries.error_rate_by_template, ch.client, database=database, since=since
            ),
            "top_fingerprints": await ch.run(
                queries.top_fingerprints, ch.client, database=database, since=since
            ),
        }

    @app.get("/api/v1/errors/trends", dependencies=read)
    async def trends(
        interval: Literal["minute", "hour"] = "minute",
        by: Literal["category", "service", "template"] | None = None,
        hours: int = Query(24, ge=1, le=24 * 31),
    ) -> list[dict[str, Any]]:
        """Attempts, errors and error rate per minute or hour (calls for ``by=service``)."""
        dimension = {"template": "template_id"}.get(by or "", by)
        kind = "call" if by == "service" else "task"
        return await ch.run(
            queries.error_trend,
            ch.client,
            database=database,
            interval=interval,
            by=dimension,
            since=datetime.now(UTC) - timedelta(hours=hours),
            kind=kind,
        )

    @app.get("/api/v1/errors/top-fingerprints", dependencies=read)
    async def fingerprints(
        hours: int = Query(24, ge=1, le=24 * 31), limit: int = Query(20, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        return await ch.run(
            queries.top_fingerprints, ch.client, database=database, since=since, limit=limit
        )

    @app.get("/api/v1/errors/circuit-breakers", dependencies=read)
    async def breakers() -> list[dict[str, Any]]:
        return await ch.run(queries.latest_breaker_states, ch.client, database=database)

    async def known_service(service: str) -> None:
        if not await ch.run(queries.service_known, ch.client, service, database=database):
            raise HTTPException(404, f"no breaker state or call events for service {service!r}")

    @app.post(
        "/api/v1/errors/circuit-breakers/{service}/reset", status_code=202, dependencies=mutate
    )
    async def reset_breaker(service: ServiceName) -> dict[str, Any]:
        await known_service(service)
        event = s.ResetBreaker(service=service, source=source)
        await publish(event)
        return {"accepted": True, "event_id": event.event_id}

    @app.put(
        "/api/v1/errors/circuit-breakers/{service}/config", status_code=202, dependencies=mutate
    )
    async def configure_breaker(service: ServiceName, body: BreakerSettings) -> dict[str, Any]:
        event = s.ConfigureBreaker(service=service, source=source, **body.model_dump())
        await publish(event)
        return {"accepted": True, "event_id": event.event_id, **body.model_dump()}

    @app.get("/api/v1/errors/recovery/stats", dependencies=read)
    async def recovery(hours: int = Query(24, ge=1, le=24 * 31)) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        totals = await ch.run(queries.recovery_stats, ch.client, database=database, since=since)
        by = await ch.run(queries.recovery_stats_by, ch.client, database=database, since=since)
        return {**totals, "by_template_and_category": by}

    @app.get("/api/v1/errors/self-healing/stats", dependencies=read)
    async def healing(
        hours: int = Query(24, ge=1, le=24 * 31),
        worker_id: str | None = Query(None, min_length=1, max_length=200),
    ) -> dict[str, Any]:
        """Per detector and action: issued, dry-run, succeeded/failed/skipped (the
        executor's answer), verified/unverified, held back by cooldown, rate limit,
        budget or give-up (of one worker with ``worker_id``); plus the latest actions
        with their outcome."""
        since = datetime.now(UTC) - timedelta(hours=hours)
        stats = await ch.run(
            queries.healing_stats, ch.client, database=database, since=since, worker_id=worker_id
        )
        recent = await ch.run(
            queries.healing_history, ch.client, database=database, since=since, limit=50
        )
        return {"hours": hours, **stats, "recent": recent}

    @app.post("/api/v1/errors/self-healing/diagnose", dependencies=mutate)
    async def diagnose() -> dict[str, Any]:
        """Every detector over the last hour of heartbeats; findings and what the safety
        policy would do, acting on nothing."""
        from healing import beats_by_worker, diagnose_fleet

        rows = await ch.run(queries.recent_heartbeats, ch.client, database=database)
        return diagnose_fleet(beats_by_worker(rows), int(time.time() * 1000))

    @app.get("/api/v1/errors/task/{task_id}/history", dependencies=read)
    async def task_history(
        task_id: Annotated[str, Path(min_length=1, max_length=500)],
    ) -> list[dict[str, Any]]:
        rows = await ch.run(queries.task_history, ch.client, task_id, database=database)
        if not rows:
            raise HTTPException(404, f"no events for task {task_id!r}")
        return rows

    async def current_thresholds() -> dict[str, Any]:
        found = await ch.run(queries.latest_thresholds, ch.client, database=database)
        return found or dict(_DEFAULT_THRESHOLDS)

    async def set_thresholds(values: dict[str, Any]) -> dict[str, Any]:
        event = s.SetAlertThresholds(source=source, **values)
        await publish(event)
        return {"accepted": True, "event_id": event.event_id, **values}

    @app.get("/api/v1/errors/alerts/thresholds", dependencies=read)
    async def get_thresholds() -> dict[str, Any]:
        return await current_thresholds()

    @app.put("/api/v1/errors/alerts/thresholds", status_code=202, dependencies=mutate)
    async def replace_thresholds(body: Thresholds) -> dict[str, Any]:
        """All three thresholds at once (a missing one is an error, never a reset)."""
        return await set_thresholds(body.model_dump())

    @app.patch("/api/v1/errors/alerts/thresholds", status_code=202, dependencies=mutate)
    async def update_thresholds(body: ThresholdsPatch) -> dict[str, Any]:
        """Some thresholds; the others keep their current values."""
        change = body.model_dump(exclude_none=True)
        if not change:
            raise HTTPException(422, "give at least one of " + ", ".join(_DEFAULT_THRESHOLDS))
        return await set_thresholds({**await current_thresholds(), **change})

    @app.post("/api/v1/sql", dependencies=mutate)
    async def sql(body: SqlRequest) -> dict[str, Any]:
        """One SELECT over errorflow's tables (:mod:`sinks.guard`), bounded in time,
        rows, bytes and memory; 400 when refused, 408 when it ran out of time."""
        try:
            tree = await user_ch.run(user_ch.client.query, f"EXPLAIN AST {body.sql}")
            check_sql([row[0] for row in tree.result_rows], database)
            result = await user_ch.run(user_ch.client.query, body.sql, settings=LIMITS)
        except SqlRefused as exc:
            raise HTTPException(400, f"query refused: {exc.reason}") from None
        except Exception as exc:  # noqa: BLE001 - the user's SQL error, reported as 4xx
            code = error_code(exc)
            status = 408 if code in (159, 160, 209) else 400
            raise HTTPException(status, str(exc).splitlines()[0][:2000]) from None
        return {
            "columns": list(result.column_names),
            "rows": [[_plain(v) for v in row] for row in result.result_rows],
        }

    @app.get("/api/v1/errors/dead-letters", dependencies=read)
    async def dead_letters(limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """The newest dead letters (replay them with `errorflow dlq replay`)."""
        return await ch.run(queries.dead_letters, ch.client, database=database, limit=limit)

    @app.post("/api/v1/errors/dead-letters/replay", dependencies=mutate)
    async def replay_dead_letters(body: ReplayRequest) -> dict[str, Any]:
        """Replay dead letters as `errorflow dlq replay` does: the newest letter per task
        that matches, held back while its service's fleet breaker is open (unless
        ``force``), paced at ``rate_per_s``; ``dry_run`` only says what it would do."""
        from streams.recovery.dead_letters import (
            Selection,
            plan_replay,
            read_letters,
            read_open_breakers,
            replay,
        )

        if not (body.task_ids or body.fingerprint or body.since or body.until or body.all):
            raise HTTPException(
                422, "say what to replay: task_ids, fingerprint, since/until, or all"
            )
        selection = Selection(
            task_ids=frozenset(body.task_ids),
            fingerprint=body.fingerprint,
            since=body.since,
            until=body.until,
        )
        letters = await read_letters(bootstrap_servers, selection)
        plan = plan_replay(letters, await read_open_breakers(bootstrap_servers), force=body.force)
        held = [{"task_id": letter.task_id, "open_service": svc} for letter, svc in plan.refused]
        if body.dry_run:
            return {
                "matched": len(letters),
                "would_replay": [letter.task_id for letter in plan.replay],
                "held_back": held,
                "dry_run": True,
            }
        sent = await replay(bootstrap_servers, plan.replay, who=body.by, rate_per_s=body.rate_per_s)
        return {
            "matched": len(letters),
            "replayed": [{"task_id": c.task_id, "command_id": c.command_id} for c in sent],
            "held_back": held,
        }

    @app.websocket("/api/v1/errors/ws")
    async def live(
        socket: WebSocket,
        service: str | None = None,
        template_id: str | None = None,
        type: str | None = None,  # noqa: A002 - the query parameter's documented name
        token: str | None = None,
    ) -> None:
        """Errors, anomalies, alerts, breaker transitions and healing actions, live:
        ``?type=error,alert&service=comfyui&template_id=...``; a ``ping`` every 15 s
        says how many items this client lost to its bounded queue."""
        if settings.protect_reads:
            given = token or socket.headers.get("authorization", "").partition(" ")[2]
            expected = settings.token.get_secret_value() if settings.token else None
            if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
                await socket.close(code=1008, reason="token required")
                return
        await socket.accept()
        kinds = frozenset(t for t in (type or "").split(",") if t)
        client = Client(service=service, template_id=template_id, types=kinds)
        await feed.join(client)
        await socket.send_json(
            {
                "type": "ready",
                "filters": {"service": service, "template_id": template_id, "types": sorted(kinds)},
            }
        )
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.ready.wait(), 15)
                client.ready.clear()
                if not client.queue:
                    await socket.send_json({"type": "ping", "dropped": client.dropped})
                while client.queue:
                    await socket.send_json(client.queue.popleft())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            feed.leave(client)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        """The dashboard (one page, assets inside the package, no CDN)."""
        return DASHBOARD.read_text()

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=read)
    async def metrics() -> str:
        """The sink's counters in Prometheus text format."""
        state = (health() if health else {}).get("sink", {})
        lines = []
        for name, value in sorted(state.items()):
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            metric = f"errorflow_sink_{name}"
            lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
        lines += ["# TYPE errorflow_api_up gauge", f"errorflow_api_up 1 {int(time.time() * 1000)}"]
        return "\n".join(lines) + "\n"

    return app


def _plain(value: Any) -> Any:
    """JSON-safe cell values (NaN/inf become null; datetimes ISO with their zone)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value
