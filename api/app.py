"""The API of the original design, served by ``errorflow serve``.

Reads come from ClickHouse through :mod:`sinks.queries` (:mod:`api.reads`); mutations
only produce control events (``breaker.reset``, ``breaker.config``,
``alerts.thresholds``) to Kafka (:mod:`api.mutations`) — the API owns no state. Every
mutation is token-protected and JSON-only (:mod:`api.security`); user SQL runs on a
connection of its own under :mod:`sinks.guard` (:mod:`api.sql`); the live feed is a
WebSocket (:mod:`api.live`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api import live, mutations, reads, sql
from api.context import ApiContext
from api.models import SqlRequest, Thresholds
from api.security import ApiSettings
from sinks.clickhouse import AsyncClickHouse

__all__ = ["SqlRequest", "Thresholds", "create_app"]


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
    ctx = ApiContext(
        ch=clickhouse,
        user_ch=query_clickhouse or clickhouse,
        bootstrap_servers=bootstrap_servers,
        settings=settings,
        database=database,
        health=health,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await ctx.close()

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

    for part in (reads.router, mutations.router, sql.router, live.router):
        app.include_router(part(ctx))
    app.include_router(reads.dashboard_router())
    return app
