"""The API of the original design, served by ``errorflow serve``.

Reads come from ClickHouse through :mod:`sinks.queries`; writes only produce control
events (``breaker.reset``, ``alerts.thresholds``) to Kafka — the API owns no state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

import schemas as s
from deploy.publish import send_event
from sinks import queries
from sinks.analysis import analysis
from sinks.clickhouse import AsyncClickHouse

__all__ = ["SqlRequest", "create_app"]


class SqlRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)


class Thresholds(BaseModel):
    error_rate: float = Field(0.15, ge=0, le=1)
    specific_error_count: int = Field(20, ge=1)
    recovery_failure_rate: float = Field(0.25, ge=0, le=1)


def create_app(
    clickhouse: AsyncClickHouse,
    *,
    bootstrap_servers: str,
    database: str = "errorflow",
    health: Any = None,
) -> FastAPI:
    """The app; ``health`` is a callable adding the sink's state to /health."""
    producer: dict[str, AIOKafkaProducer] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if "p" in producer:
            await producer["p"].stop()

    app = FastAPI(title="errorflow", lifespan=lifespan)
    ch = clickhouse

    async def publish(event: s.Envelope) -> None:
        if "p" not in producer:
            started = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
            await started.start()
            producer["p"] = started
        await send_event(producer["p"], event)

    source = s.Source.here(runner_id="errorflow-api")

    @app.get("/api/v1/errors/health")
    async def health_check() -> dict[str, Any]:
        await ch.query_rows("SELECT 1")
        return {"status": "ok", "clickhouse": "ok", **(health() if health else {})}

    @app.get("/api/v1/errors/analysis")
    async def error_analysis(
        window_minutes: int = Query(5, ge=1, le=60 * 24 * 31),
    ) -> dict[str, Any]:
        return await ch.run(analysis, ch.client, database=database, window_minutes=window_minutes)

    @app.get("/api/v1/errors/stats")
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

    @app.get("/api/v1/errors/circuit-breakers")
    async def breakers() -> list[dict[str, Any]]:
        return await ch.run(queries.latest_breaker_states, ch.client, database=database)

    @app.post("/api/v1/errors/circuit-breakers/{service}/reset", status_code=202)
    async def reset_breaker(service: str) -> dict[str, Any]:
        event = s.ResetBreaker(service=service, source=source)
        await publish(event)
        return {"accepted": True, "event_id": event.event_id}

    @app.get("/api/v1/errors/recovery/stats")
    async def recovery(hours: int = Query(24, ge=1, le=24 * 31)) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        totals = await ch.run(queries.recovery_stats, ch.client, database=database, since=since)
        by = await ch.run(queries.recovery_stats_by, ch.client, database=database, since=since)
        return {**totals, "by_template_and_category": by}

    @app.get("/api/v1/errors/self-healing/stats")
    async def healing(hours: int = Query(24, ge=1, le=24 * 31)) -> list[dict[str, Any]]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        return await ch.run(queries.healing_history, ch.client, database=database, since=since)

    @app.get("/api/v1/errors/task/{task_id}/history")
    async def task_history(task_id: str) -> list[dict[str, Any]]:
        rows = await ch.run(queries.task_history, ch.client, task_id, database=database)
        if not rows:
            raise HTTPException(404, f"no events for task {task_id!r}")
        return rows

    @app.put("/api/v1/errors/alerts/thresholds", status_code=202)
    async def thresholds(body: Thresholds) -> dict[str, Any]:
        event = s.SetAlertThresholds(source=source, **body.model_dump())
        await publish(event)
        return {"accepted": True, "event_id": event.event_id, **body.model_dump()}

    @app.post("/api/v1/sql")
    async def sql(body: SqlRequest) -> dict[str, Any]:
        try:
            result = await ch.run(ch.client.query, body.sql, settings={"readonly": 2})
        except Exception as exc:  # noqa: BLE001 - the user's SQL error, reported as 400
            raise HTTPException(400, str(exc).splitlines()[0][:2000]) from None
        return {
            "columns": list(result.column_names),
            "rows": [list(row) for row in result.result_rows],
        }

    return app
