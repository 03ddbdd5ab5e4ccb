"""``POST /api/v1/sql``: one guarded SELECT over errorflow's tables (:mod:`sinks.guard`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from api.context import ApiContext
from api.models import SqlRequest
from sinks.errors import error_code
from sinks.guard import LIMITS, SqlRefused, check_sql

__all__ = ["router"]

_TIMEOUTS = (159, 160, 209)  # ClickHouse: TIMEOUT_EXCEEDED, TOO_SLOW, SOCKET_TIMEOUT


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(dependencies=ctx.mutate)  # the token, like a mutation

    @api.post("/api/v1/sql")
    async def sql(body: SqlRequest) -> dict[str, Any]:
        """One SELECT over errorflow's tables, bounded in time, rows, bytes and memory;
        400 when refused, 408 when it ran out of time."""
        user = ctx.user_ch
        try:
            tree = await user.run(user.client.query, f"EXPLAIN AST {body.sql}")
            check_sql([row[0] for row in tree.result_rows], ctx.database)
            result = await user.run(user.client.query, body.sql, settings=LIMITS)
        except SqlRefused as exc:
            raise HTTPException(400, f"query refused: {exc.reason}") from None
        except Exception as exc:  # noqa: BLE001 - the user's SQL error, reported as 4xx
            status = 408 if error_code(exc) in _TIMEOUTS else 400
            raise HTTPException(status, str(exc).splitlines()[0][:2000]) from None
        return {
            "columns": list(result.column_names),
            "rows": [[_plain(v) for v in row] for row in result.result_rows],
        }

    return api


def _plain(value: Any) -> Any:
    """JSON-safe cell values (NaN/inf become null; datetimes ISO with their zone)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value
