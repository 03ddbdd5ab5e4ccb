"""Read endpoints: health, stats, trends, breakers, recovery, self-healing, task history,
thresholds, dead letters, metrics and the dashboard — all from ClickHouse."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path as PathLib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from api.context import ApiContext
from api.models import DEFAULT_THRESHOLDS
from sinks import queries
from sinks.analysis import analysis

__all__ = ["current_thresholds", "router"]

DASHBOARD = PathLib(__file__).with_name("static") / "dashboard.html"
Hours = Annotated[int, Query(ge=1, le=24 * 31)]


async def current_thresholds(ctx: ApiContext) -> dict[str, Any]:
    found = await ctx.query(queries.latest_thresholds)
    return found or dict(DEFAULT_THRESHOLDS)


def _since(hours: int) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(dependencies=ctx.read)

    @api.get("/api/v1/errors/health")
    async def health_check() -> JSONResponse:
        """ok when ClickHouse answers, Kafka is reachable and the sink keeps storing;
        503 with the failing parts otherwise."""
        problems: list[str] = []
        try:
            await asyncio.wait_for(ctx.ch.query_rows("SELECT 1"), 10)
            clickhouse_state = "ok"
        except Exception as exc:  # noqa: BLE001
            clickhouse_state = f"error: {type(exc).__name__}"
            problems.append("clickhouse")
        kafka = await ctx.kafka_reachable()
        if not kafka:
            problems.append("kafka")
        sink = ctx.health() if ctx.health else {}
        if sink.get("sink", {}).get("last_error"):
            problems.append("sink")
        body = {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "clickhouse": clickhouse_state,
            "kafka": "ok" if kafka else "unreachable",
            "workers_seen": await ctx.query(queries.workers_seen),
            **sink,
        }
        return JSONResponse(jsonable_encoder(body), status_code=503 if problems else 200)

    @api.get("/api/v1/errors/analysis")
    async def error_analysis(
        window_minutes: int = Query(5, ge=1, le=60 * 24 * 31),
    ) -> dict[str, Any]:
        return await ctx.query(analysis, window_minutes=window_minutes)

    @api.get("/api/v1/errors/stats")
    async def stats(hours: Hours = 24) -> dict[str, Any]:
        since = _since(hours)
        return {
            "by_category": await ctx.query(
                queries.error_trend, interval="hour", by="category", since=since
            ),
            "by_template": await ctx.query(queries.error_rate_by_template, since=since),
            "top_fingerprints": await ctx.query(queries.top_fingerprints, since=since),
        }

    @api.get("/api/v1/errors/trends")
    async def trends(
        interval: Literal["minute", "hour"] = "minute",
        by: Literal["category", "service", "template"] | None = None,
        hours: Hours = 24,
    ) -> list[dict[str, Any]]:
        """Attempts, errors and error rate per minute or hour (calls for ``by=service``)."""
        dimension = {"template": "template_id"}.get(by or "", by)
        kind = "call" if by == "service" else "task"
        return await ctx.query(
            queries.error_trend, interval=interval, by=dimension, since=_since(hours), kind=kind
        )

    @api.get("/api/v1/errors/top-fingerprints")
    async def fingerprints(
        hours: Hours = 24, limit: int = Query(20, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        return await ctx.query(queries.top_fingerprints, since=_since(hours), limit=limit)

    @api.get("/api/v1/errors/circuit-breakers")
    async def breakers() -> list[dict[str, Any]]:
        return await ctx.query(queries.latest_breaker_states)

    @api.get("/api/v1/errors/recovery/stats")
    async def recovery(hours: Hours = 24) -> dict[str, Any]:
        since = _since(hours)
        totals = await ctx.query(queries.recovery_stats, since=since)
        by = await ctx.query(queries.recovery_stats_by, since=since)
        return {**totals, "by_template_and_category": by}

    @api.get("/api/v1/errors/self-healing/stats")
    async def healing(
        hours: Hours = 24,
        worker_id: str | None = Query(None, min_length=1, max_length=200),
    ) -> dict[str, Any]:
        """Per detector and action: issued, dry-run, succeeded/failed/skipped (the
        executor's answer), verified/unverified, held back by cooldown, rate limit,
        budget or give-up (of one worker with ``worker_id``); plus the latest actions
        with their outcome."""
        since = _since(hours)
        found = await ctx.query(queries.healing_stats, since=since, worker_id=worker_id)
        recent = await ctx.query(queries.healing_history, since=since, limit=50)
        return {"hours": hours, **found, "recent": recent}

    @api.get("/api/v1/errors/task/{task_id}/history")
    async def task_history(
        task_id: Annotated[str, Path(min_length=1, max_length=500)],
    ) -> list[dict[str, Any]]:
        rows = await ctx.query(queries.task_history, task_id)
        if not rows:
            raise HTTPException(404, f"no events for task {task_id!r}")
        return rows

    @api.get("/api/v1/errors/alerts/thresholds")
    async def get_thresholds() -> dict[str, Any]:
        return await current_thresholds(ctx)

    @api.get("/api/v1/errors/dead-letters")
    async def dead_letters(limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """The newest dead letters (replay them with `errorflow dlq replay`)."""
        return await ctx.query(queries.dead_letters, limit=limit)

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        """The sink's counters in Prometheus text format."""
        state = (ctx.health() if ctx.health else {}).get("sink", {})
        lines = []
        for name, value in sorted(state.items()):
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            metric = f"errorflow_sink_{name}"
            lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
        lines += ["# TYPE errorflow_api_up gauge", f"errorflow_api_up 1 {int(time.time() * 1000)}"]
        return "\n".join(lines) + "\n"

    return api


def dashboard_router() -> APIRouter:
    """The dashboard page is public (it holds no data; its calls carry the token)."""
    api = APIRouter()

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        """The dashboard (one page, assets inside the package, no CDN)."""
        return DASHBOARD.read_text()

    return api
