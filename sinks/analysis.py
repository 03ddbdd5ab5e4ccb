"""The seed's error analysis, from ClickHouse: what ``get_error_analysis`` returns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.vocabulary import CATEGORIES
from sinks import queries
from sinks.recommendations import recommend

__all__ = ["analysis", "error_analysis"]


def analysis(
    client: Client, *, database: str = "errorflow", window_minutes: int = 5
) -> dict[str, Any]:
    """``{error_analysis: {total_errors, error_rate, error_distribution, anomalies,
    recommendations}, circuit_breakers, recovery, self_healing}`` over the last
    ``window_minutes``."""
    until = datetime.now(UTC)
    since = until - timedelta(minutes=window_minutes)
    trend = queries.error_trend(
        client, database=database, by="category", since=since, until=until, interval="hour"
    )
    attempts = sum(r["attempts"] for r in trend)
    distribution = dict.fromkeys(CATEGORIES, 0)
    for row in trend:
        if row["category"] in distribution:
            distribution[row["category"]] += row["errors"]
    total_errors = sum(distribution.values())
    anomalies = queries.recent_anomalies(client, database=database, since=since, until=until)
    hour_ago = until - timedelta(hours=1)
    recommendations = recommend(
        fingerprints=queries.top_fingerprints(
            client, database=database, since=hour_ago, until=until
        ),
        breaker_opens=queries.breaker_opens(client, database=database, since=hour_ago, until=until),
        resource_errors=queries.resource_errors_by_template(
            client, database=database, since=since, until=until
        ),
    )
    healing = queries.healing_history(
        client, database=database, since=until - timedelta(days=1), until=until
    )
    return {
        "window_minutes": window_minutes,
        "error_analysis": {
            "total_errors": total_errors,
            "error_rate": total_errors / attempts if attempts else 0.0,
            "error_distribution": distribution,
            "anomalies": anomalies,
            "recommendations": recommendations,
        },
        "circuit_breakers": {
            row["service"]: row for row in queries.latest_breaker_states(client, database=database)
        },
        "recovery": queries.recovery_stats(client, database=database, since=since, until=until),
        "self_healing": {
            "actions_24h": len(healing),
            "by_status": _count(healing, "status"),
            "by_action": _count(healing, "action"),
        },
    }


def _count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[key]] = counts.get(row[key], 0) + 1
    return counts


async def error_analysis(clickhouse_url: str, window_minutes: int) -> dict[str, Any]:
    """For the SDK: the analysis from a ClickHouse *server* (chDB belongs to one process)."""
    import clickhouse_connect

    def run() -> dict[str, Any]:
        client = clickhouse_connect.get_client(dsn=clickhouse_url)
        try:
            return analysis(
                client, database=client.database or "errorflow", window_minutes=window_minutes
            )
        finally:
            client.close()

    return await asyncio.to_thread(run)
